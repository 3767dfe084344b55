"""The evaluation protocol of App. A.3: ``EvalProtocol``, the protocol's frame crop (``fit_frames``), the run
id that names a checkpoint + protocol, and the ``device`` the model and metric networks run on.

Protocol (App. A.3, ``EvalProtocol``): the reference image is the test video's first frame; the motion is the
test video's own poses (sidecar joints or the pose backend, ``pipeline.motion.driving_motion``); sampling takes
50 steps with motion CFG 3.0 (the 6B model: the pipeline's ``CogVideoXDDIMScheduler``). The text prompt "a person
is dancing" with text CFG 6.0 belongs to the 18B model (a Wan checkpoint loads as
`pipeline.animation.wan_pipeline.WanMotionPipeline`: rectified flow, two-condition CFG); the 6B (CogVideoX) MV-DiT has no
text branch, so for it both are recorded but unused. Resolution and stride are config; their defaults are the
released 7B inference's (512 x 512 centre crop; the paper states neither).

Every test sequence is animated whole (``num_frames=None``): the long-motion windows of
`pipeline.animation.long_motion` (the model's longest pass, overlap 9, as the released 17B sampler) cover every
frame, and the frame metrics are averaged over every frame. Why whole: the test sets are small. DisCo's
TikTok split, which the later papers (MagicAnimate, Champ, UniAnimate, RealisDance-DiT ...) cite, is 10
sequences (DisCo issues #27, #103: TikTok 335-340 plus company-collected ones never released), the UBC
Fashion test split 100 videos (500 train / 100 test as DreamPose and Animate Anyone describe it); RealisDance-DiT's evaluation code is not public (its issue #73 asks how
sequences longer than its 81 frames were sampled, unanswered). Cut to 49 frames, 5 TikTok sequences give
240 frames for Inception's 2048-d covariance, 15 segments for I3D's 400-d one and 5 vectors for FID-VID.
Whole sequences give the most samples the set has; the report prints each distribution metric's sample
count and feature dimension, and a metric fitted to fewer samples than dimensions (a rank-deficient
covariance) is listed apart, never in the row beside the paper's published values. ``num_frames=N`` keeps
the old protocol (the first N frames, one pass).

The run id hashes the checkpoint's checksum and the protocol.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.animation.long_motion import RELEASE_OVERLAP, check_window


@dataclass(frozen=True)
class EvalProtocol:
    """App. A.3 evaluation settings; defaults are the published ones (see the module docstring)."""

    num_inference_steps: int = 50         # DDIM steps (App. A.3)
    motion_guidance_scale: float = 3.0    # motion CFG (App. A.3)
    text_prompt: str = "a person is dancing"  # 18B model only (App. A.3)
    text_guidance_scale: float = 6.0      # 18B model only (App. A.3)
    num_frames: int | None = None         # None: every frame of each test video (long-motion windows);
                                          # N (1 + 8k): its first N frames, one pass (the former protocol)
    window: int | None = None             # frames per pass (1 + 8k); None: the longest the model's c_m∅ covers
    overlap: int = RELEASE_OVERLAP        # frames consecutive windows share (held and cross-faded)
    height: int = 512                     # released 7B inference: 512 x 512 centre crop
    width: int = 512
    frame_stride: int = 1                 # take every k-th frame of the test video
    max_videos: int | None = None         # None: every test video
    skip_reference_frame: bool = True     # frame 0 is the condition: leave it out of every metric
    ssim_mode: str = "per_channel"        # App. J Eq. 13-14; "grayscale" is DisCo's
    frechet_method: str = "sqrtm"         # "eigh" is the same quantity, faster for 2048-d on a CPU
    seed: int = 0                         # noise of video i: seed + i (the same for mtvcraft and null_motion)

    def __post_init__(self) -> None:
        if self.num_frames is not None and (self.num_frames < 9 or (self.num_frames - 1) % 8):
            raise ValueError(f"EvalProtocol.num_frames must be None (whole videos) or 1 + 8k (e.g. 33, 49), "
                             f"got {self.num_frames}")
        try:  # window None: the model's own
            check_window(self.window, self.overlap)
        except ValueError as err:
            raise ValueError(f"EvalProtocol.window / overlap: {err}") from err
        if self.height < 16 or self.width < 16:
            raise ValueError(f"EvalProtocol.height and width must be >= 16, got {self.height}x{self.width}")
        if self.num_inference_steps < 1 or self.frame_stride < 1:
            raise ValueError("EvalProtocol.num_inference_steps and frame_stride must be >= 1")
        if self.max_videos is not None and self.max_videos < 1:
            raise ValueError(f"EvalProtocol.max_videos must be >= 1 or None, got {self.max_videos}")
        if self.ssim_mode not in ("per_channel", "grayscale"):
            raise ValueError(f"EvalProtocol.ssim_mode must be 'per_channel' or 'grayscale', got {self.ssim_mode!r}")
        if self.frechet_method not in ("sqrtm", "eigh"):
            raise ValueError(f"EvalProtocol.frechet_method must be 'sqrtm' or 'eigh', got {self.frechet_method!r}")

    @classmethod
    def tiny(cls, **changes) -> EvalProtocol:
        """Laptop preset for the tiny demo model: 4 whole videos at 48 x 64, DDIM 50, eigh Fréchet."""
        base = dict(height=48, width=64, num_inference_steps=50, max_videos=4, frechet_method="eigh")
        return cls(**{**base, **changes})

    def with_changes(self, **changes) -> EvalProtocol:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def first_frame_evaluated(self) -> int:
        return 1 if self.skip_reference_frame else 0


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop (T, H, W, 3) frames to the aspect ratio of height x width, then resize (area filter)."""
    h, w = frames.shape[1:3]
    scale = min(h / height, w / width)
    ch, cw = round(height * scale), round(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    cropped = frames[:, top:top + ch, left:left + cw]
    if (ch, cw) == (height, width):
        return np.ascontiguousarray(cropped)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in cropped])


def run_id(checkpoint: Path, protocol: EvalProtocol) -> str:
    """12 hex digits from the checkpoint's identity (its SHA-256 file, else name/size/mtime) and the protocol."""
    from pipeline.core.checkpoints import checksum_path

    if checkpoint.is_file() and checksum_path(checkpoint).is_file():
        identity = checksum_path(checkpoint).read_text().strip()
    else:
        target = checkpoint / "config.json" if checkpoint.is_dir() else checkpoint
        stat = target.stat() if target.exists() else None
        identity = f"{checkpoint.resolve()}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"
    payload = json.dumps({"checkpoint": identity, "protocol": protocol.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def device() -> str:
    """Where the model and the metric networks run: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"
