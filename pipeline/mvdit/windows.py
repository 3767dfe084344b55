"""The frames of one training window, as MV-DiT sees them (App. A.2): the resolution bucket, the resize and crop
to it, and the frames the reference latent is encoded from (Eq. 3 / Eq. 9).

Shared by the per-step path of `pipeline.mvdit.batches` (random crop) and the fixed windows of the
`video_latents` table (`pipeline.mvdit.latent_table`, centre crop), so both cut frames the same way.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch

from pipeline.mvdit.latents import frames_to_unit


def nearest_bucket(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest (in log) to the frame's."""
    return min(buckets, key=lambda b: abs(math.log((b[0] / b[1]) / (height / width))))


def resize_crop(frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None) -> np.ndarray:
    """Resize (T, H, W, 3) so it covers ``size`` (H, W), then crop an (H, W) window: at a random place drawn from
    ``rng``, or in the centre when ``rng`` is None (the fixed windows of the latents table)."""
    th, tw = size
    h, w = frames.shape[1:3]
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        frames = np.stack([cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA) for f in frames])
    if rng is None:
        top, left = (nh - th) // 2, (nw - tw) // 2
    else:
        top, left = int(rng.integers(0, nh - th + 1)), int(rng.integers(0, nw - tw + 1))
    return frames[:, top : top + th, left : left + tw]


def zero_padded_video(video: torch.Tensor) -> torch.Tensor:
    """Eq. 9's ZeroPad(x_0) in the latent map's layout: uint8 (B, T, H, W, 3) -> float [-1, 1], frames >= 1 zero."""
    from models.mvdit.wan import zero_padded_reference

    first = frames_to_unit(video[:, :1]).permute(0, 4, 1, 2, 3)  # (B, 3, 1, H, W)
    return zero_padded_reference(first, video.shape[1]).permute(0, 2, 3, 4, 1)


def reference_video(video: torch.Tensor, zero_padded: bool) -> torch.Tensor:
    """What the reference latent encodes: frame 0 alone (6B, Eq. 3) or ZeroPad(x_0) (18B, Eq. 9)."""
    return zero_padded_video(video) if zero_padded else video[:, :1]
