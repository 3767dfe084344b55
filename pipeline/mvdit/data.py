"""Training data that stays lazy (DESIGN.md "One machine to many"; App. A.2's 30K clips x 600 frames).

The driver hands the trainer clip references: (uri, first frame, end frame) with the clip's joints (and
caption); never decoded frames. Each Ray Train worker takes its shard of the references (`worker_shard`) and
decodes the clips its batches draw, once, into a bounded per-process cache (`ClipCache`, least recently used
clips evicted past ``MAX_CACHE_BYTES``): a laptop's few clips stay decoded, a cluster's table streams.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MAX_CACHE_BYTES = 2 << 30  # decoded clips kept per worker process


class ClipCache:
    """Decoded clips by (uri, first, end), least recently used evicted beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.clips: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self.nbytes = 0  # bytes of the clips held, kept as they come and go

    def clip(self, uri: str, first: int, end: int) -> np.ndarray:
        """Frames [first, end) of ``uri`` (T, H, W, 3) uint8, decoded on first use."""
        from pipeline.core.video_io import read_frames

        key = (str(uri), int(first), int(end))
        if key in self.clips:
            self.clips.move_to_end(key)
            return self.clips[key]
        frames = read_frames(uri, first, end)
        self.clips[key] = frames
        self.nbytes += frames.nbytes
        while len(self.clips) > 1 and self.nbytes > self.max_bytes:
            self.nbytes -= self.clips.popitem(last=False)[1].nbytes
        return frames


CLIP_CACHE = ClipCache()


@dataclass
class Sample:
    """One training clip: video frames uint8 (T, H, W, 3) (or a (uri, start, end) to decode), joints (T, 24, 3)
    and an optional caption (the text of the Wan models; None: ``MVDiTTrainConfig.prompt``)."""

    video: Any
    joints: np.ndarray
    caption: str | None = None

    def frames(self, start: int, stop: int, stride: int) -> np.ndarray:
        """Frames [start, stop) every ``stride`` of the clip (a reference decodes through `CLIP_CACHE`)."""
        if isinstance(self.video, np.ndarray):
            return self.video[start:stop:stride]
        return CLIP_CACHE.clip(*self.video)[start:stop:stride]


def as_samples(samples: Sequence[Any]) -> list[Sample]:
    """Check and wrap (video, joints) pairs or (video, joints, caption) triples; errors name the sample and the
    expected shape."""
    out = []
    for i, item in enumerate(samples):
        if isinstance(item, Sample):
            video, joints, caption = item.video, item.joints, item.caption
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            video, joints, caption = (*item, None) if len(item) == 2 else item
        else:
            raise ValueError(f"sample {i}: expected (video, joints) or (video, joints, caption)")
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"sample {i}: caption must be a str or None, got {type(caption).__name__}")
        joints = np.asarray(joints, dtype=np.float32)
        if joints.ndim != 3 or joints.shape[1:] != (24, 3):
            raise ValueError(f"sample {i}: joints must be (T, 24, 3) metres, got {joints.shape}")
        if isinstance(video, np.ndarray):
            if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or len(video) != len(joints):
                raise ValueError(
                    f"sample {i}: frames must be uint8 (T={len(joints)}, H, W, 3), got {video.dtype} {video.shape}"
                )
        elif not (isinstance(video, (tuple, list)) and len(video) == 3):
            raise ValueError(f"sample {i}: video must be frames (T, H, W, 3) uint8 or (uri, start, end)")
        out.append(Sample(video, joints, caption))
    return out


def worker_shard(samples: list[Sample], rank: int, world: int) -> list[Sample]:
    """This worker's share of the clips (every ``world``-th from ``rank``), all of them when there are fewer
    clips than workers."""
    return samples[rank::world] if len(samples) >= world else samples
