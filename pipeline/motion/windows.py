"""Training windows for 4DMoT: bucketed lengths, strides and scale/shift augmentation (paper App. A.2).

"The sampling frames of video and motion sequence are randomly chosen from
{33, 49, 81, 97, 129}, with the stride randomly selected from {1, 2}" and
"joint coordinates are randomly scaled and shifted within a range of 0-10%".

Buckets: every batch has one (length, stride) pair, so its windows stack into
one tensor; pairs that no clip can supply (a window spans (length - 1) *
stride + 1 frames) are never drawn. Inside a batch, each window is a uniform
draw over all (clip, start) positions that fit, so long clips give more
windows than short ones, as when cutting a long video.

Augmentation (our reading of "scaled and shifted within 0-10%"), per window:
- scale: the whole window is scaled isotropically by s, |s - 1| <= 0.10, about
  the pelvis of its first frame (so the subject stays where it stands; bone
  lengths and displacements change by the factor s: a larger or smaller
  person making the same motion);
- shift: the whole window is translated by d, |d_k| <= 0.10 * body size per
  axis k, where body size is the largest extent of the first frame's joints
  (about the person's height). With the paper's differential representation
  (first frame subtracted) a constant shift cancels exactly; it changes the
  input only for the absolute representation (``differential=False``: the
  release and the "w/o differential motion" ablation).

Camera-space augmentation beyond the paper (config switches, all off by
default, so the defaults draw exactly the App. A.2 batches):
- ``max_yaw`` (radians): the window is turned about the camera's vertical
  axis (y) through its first-frame pelvis by an angle uniform in +-max_yaw: the
  same motion filmed from another side (real footage has every facing, the
  demo motions mostly face the camera);
- ``max_bone_scale``: every bone (parent -> child offset) is scaled by its own
  factor uniform in 1 +- max_bone_scale, the same factor in every frame of the
  window, re-chained from the pelvis: people with other proportions (the NLF
  joints keep each person's own bone lengths; a global scale does not cover that);
- ``max_drift`` (metres): a translation growing linearly from 0 at the first
  frame to d at the last, |d_k| <= max_drift per axis: the person moving
  through the scene (camera-space root travel, including in depth). Unlike
  the constant shift it does not cancel in the differential representation.
Order: bones, yaw, scale/shift, drift. Their draws come after the paper's,
so switching them on leaves each window's clip, start, scale and unit shift as they were.

Determinism: given the same clips, a batch is a pure function of (seed, step,
rank); the sampler state saved in checkpoints is just (seed, step) plus a
fingerprint of the clips, so a resumed run draws the same batches as an
uninterrupted one (and can tell when the clip set changed). All ranks of a DDP run draw the same
bucket at a step (it depends on (seed, step) only) and different windows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.motion.skeleton import SMPL_PARENTS

BUCKET_LENGTHS: tuple[int, ...] = (33, 49, 81, 97, 129)
"""Window lengths of App. A.2; each gives 1 + (f - 1) / 4 latent frames."""

STRIDES: tuple[int, ...] = (1, 2)
"""Frame strides of App. A.2 (2 = every other frame: faster apparent motion)."""

MIN_FRAMES = min(BUCKET_LENGTHS)


def usable_length(frames: int) -> int:
    """The longest 1 + 8k <= ``frames``: both the VAE (1 + 4k) and 4DMoT's sliding window of 8 keep it."""
    return 1 + (frames - 1) // 8 * 8


@dataclass(frozen=True)
class WindowConfig:
    """How training windows are drawn (App. A.2 defaults)."""

    lengths: tuple[int, ...] = BUCKET_LENGTHS
    strides: tuple[int, ...] = STRIDES
    max_scale: float = 0.10  # |s - 1| <= max_scale
    max_shift: float = 0.10  # |d_k| <= max_shift * body size
    augment: bool = True
    max_yaw: float = 0.0  # radians; turn about the vertical (camera y) axis, 0 = off
    max_bone_scale: float = 0.0  # per-bone length factor 1 +- this, 0 = off
    max_drift: float = 0.0  # metres of linear travel over the window per axis, 0 = off

    def __post_init__(self) -> None:
        if not self.lengths or any(n < 2 for n in self.lengths):
            raise ValueError(f"WindowConfig.lengths must be frame counts >= 2, got {self.lengths}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"WindowConfig.strides must be >= 1, got {self.strides}")
        for name in ("max_scale", "max_shift"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"WindowConfig.{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.max_bone_scale < 1.0:
            raise ValueError(f"WindowConfig.max_bone_scale must lie in [0, 1), got {self.max_bone_scale}")
        if not 0.0 <= self.max_yaw <= np.pi:
            raise ValueError(f"WindowConfig.max_yaw must lie in [0, pi] radians, got {self.max_yaw}")
        if self.max_drift < 0.0:
            raise ValueError(f"WindowConfig.max_drift must be >= 0 metres, got {self.max_drift}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "WindowConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class SamplerState:
    """Everything needed to redraw the same batches: the seed and the next step."""

    seed: int
    step: int


@dataclass
class WindowBatch:
    """One bucket of windows: ``joints`` (B, length, 24, 3) float32 metres, augmented."""

    joints: np.ndarray
    length: int
    stride: int
    clip_index: np.ndarray  # (B,) which clip each window comes from
    start: np.ndarray  # (B,) first frame in its clip
    scale: np.ndarray  # (B,) isotropic scale factor s
    shift: np.ndarray  # (B, 3) translation, metres
    yaw: np.ndarray | None = None  # (B,) radians about camera y, when max_yaw > 0
    drift: np.ndarray | None = None  # (B, 3) metres of travel over the window, when max_drift > 0


def window_span(length: int, stride: int) -> int:
    """Frames of the source clip one window covers."""
    return (length - 1) * stride + 1


def body_size(frame: np.ndarray) -> float:
    """Largest extent (max - min over joints) of one frame's joints (24, 3): about the body height."""
    return float((frame.max(axis=0) - frame.min(axis=0)).max())


def augment_window(joints: np.ndarray, scale: float, shift: np.ndarray) -> np.ndarray:
    """Scale a window (F, 24, 3) by ``scale`` about its first-frame pelvis, then translate it by ``shift`` (3,)."""
    centre = joints[0, 0]
    return ((joints - centre) * scale + centre + np.asarray(shift)).astype(np.float32)


def rotate_yaw(joints: np.ndarray, angle: float) -> np.ndarray:
    """Turn a window (F, 24, 3) by ``angle`` radians about the camera's vertical axis through its first-frame pelvis."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    centre = joints[0, 0]
    return ((joints - centre) @ rot.T + centre).astype(np.float32)


def rescale_bones(joints: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Scale each bone of (..., 24, 3) joints by ``factors`` (24,) (entry j: the bone parent(j) -> j), pelvis fixed."""
    out = np.array(joints, dtype=np.float32, copy=True)
    for j, p in enumerate(SMPL_PARENTS):
        if p >= 0:  # parents precede children in SMPL order
            out[..., j, :] = out[..., p, :] + factors[j] * (joints[..., j, :] - joints[..., p, :])
    return out


def add_drift(joints: np.ndarray, drift: np.ndarray) -> np.ndarray:
    """Translate a window (F, 24, 3) by ``drift`` (3,) scaled from 0 at the first frame to 1 at the last."""
    ramp = np.linspace(0.0, 1.0, len(joints), dtype=np.float64)[:, None, None]
    return (joints + ramp * np.asarray(drift)).astype(np.float32)


def _check_clips(clips: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, clip in enumerate(clips):
        arr = np.asarray(clip, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[1:] != (24, 3):
            raise ValueError(f"clip {i}: joints must have shape (T, 24, 3) in metres, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"clip {i}: joints contain non-finite values")
        out.append(arr)
    return out


def step_bucket(buckets: list[tuple[int, int]], seed: int, step: int) -> tuple[int, int]:
    """The (length, stride) bucket of training step ``step``: drawn from (seed, step) alone, so every rank and a
    resumed run agree."""
    rng = np.random.default_rng([seed, step])
    return buckets[int(rng.integers(len(buckets)))]


class WindowSampler:
    """Draws bucketed, augmented training windows from joint sequences; deterministic in (seed, step, rank)."""

    def __init__(
        self,
        clips: list[np.ndarray],
        batch_size: int,
        config: WindowConfig | None = None,
        seed: int = 0,
        rank: int = 0,
        prepare: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    ) -> None:
        """``prepare(window, rng)``, when given, turns each raw window into camera-frame joints before the
        augmentation (world-frame motion capture, `pipeline.motion.camera_placement`); its draws come after the others."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.clips = _check_clips(clips)
        self.batch_size = batch_size
        self.config = config or WindowConfig()
        self.seed = seed
        self.rank = rank
        self.prepare = prepare
        lengths = np.array([len(c) for c in self.clips], dtype=np.int64)
        # (length, stride) buckets some clip can supply, with the start positions each clip offers.
        self.buckets: list[tuple[int, int]] = []
        self._starts: dict[tuple[int, int], np.ndarray] = {}
        for n in self.config.lengths:
            for s in self.config.strides:
                starts = np.maximum(lengths - window_span(n, s) + 1, 0)
                if starts.sum() > 0:
                    self.buckets.append((n, s))
                    self._starts[(n, s)] = starts
        if not self.buckets:
            longest = int(lengths.max()) if len(lengths) else 0
            raise ValueError(
                f"no clip can supply a training window: the shortest needs {min(self.config.lengths)} frames, "
                f"the longest of {len(self.clips)} clips has {longest}"
            )

    def state(self, step: int) -> SamplerState:
        return SamplerState(seed=self.seed, step=step)

    def fingerprint(self) -> str:
        """SHA-256 over the clips' shapes and values: a resumed run checks it has the same data."""
        digest = hashlib.sha256()
        for clip in self.clips:
            digest.update(np.int64(len(clip)).tobytes())
            digest.update(np.ascontiguousarray(clip).tobytes())
        return digest.hexdigest()

    def bucket(self, step: int) -> tuple[int, int]:
        """The (length, stride) of the batch at ``step``; the same on every rank."""
        return step_bucket(self.buckets, self.seed, step)

    def batch(self, step: int) -> WindowBatch:
        """The batch at ``step`` for this rank."""
        length, stride = self.bucket(step)
        return self.draw(length, stride, self.batch_size, np.random.default_rng([self.seed, step, self.rank, 1]))

    def draw(self, length: int, stride: int, count: int, rng: np.random.Generator) -> WindowBatch:
        """``count`` augmented windows of one (length, stride) bucket, drawn from ``rng``."""
        starts = self._starts[(length, stride)]
        # Uniform over all (clip, start) positions: pick a clip in proportion to its start count.
        clip_index = rng.choice(len(self.clips), size=count, p=starts / starts.sum())
        start = (rng.random(count) * starts[clip_index]).astype(np.int64)
        cfg = self.config
        scale, unit_shift = np.ones(count), np.zeros((count, 3))
        if cfg.augment:
            scale = 1.0 + rng.uniform(-cfg.max_scale, cfg.max_scale, count)
            unit_shift = rng.uniform(-cfg.max_shift, cfg.max_shift, (count, 3))
        # Camera-space switches: drawn after the paper's draws, only when on.
        on = cfg.augment
        yaw = rng.uniform(-cfg.max_yaw, cfg.max_yaw, count) if on and cfg.max_yaw > 0 else None
        bones = (1.0 + rng.uniform(-cfg.max_bone_scale, cfg.max_bone_scale, (count, 24))
                 if on and cfg.max_bone_scale > 0 else None)
        drift = rng.uniform(-cfg.max_drift, cfg.max_drift, (count, 3)) if on and cfg.max_drift > 0 else None
        place_rng = np.random.default_rng(rng.integers(2**63)) if self.prepare is not None else None
        windows, shifts = [], []
        for b in range(count):
            clip = self.clips[clip_index[b]]
            w = clip[start[b] : start[b] + window_span(length, stride) : stride]
            if self.prepare is not None:
                w = self.prepare(w, place_rng)
            if bones is not None:
                w = rescale_bones(w, bones[b])
            if yaw is not None:
                w = rotate_yaw(w, yaw[b])
            d = unit_shift[b] * body_size(w[0])
            if cfg.augment:
                w = augment_window(w, scale[b], d)  # unaugmented: exact copies
            if drift is not None:
                w = add_drift(w, drift[b])
            windows.append(w)
            shifts.append(d)
        return WindowBatch(
            joints=np.stack(windows).astype(np.float32),
            length=length,
            stride=stride,
            clip_index=clip_index,
            start=start,
            scale=scale,
            shift=np.stack(shifts),
            yaw=yaw,
            drift=drift,
        )


def tile_windows(clip: np.ndarray, length: int) -> list[np.ndarray]:
    """Non-overlapping stride-1 windows of ``length`` frames covering a clip from its start (evaluation)."""
    return [clip[s : s + length] for s in range(0, len(clip) - length + 1, length)]


def eval_windows(clips: list[np.ndarray], length: int = 49) -> dict[int, np.ndarray]:
    """Held-out windows grouped by length: ``length``-frame tiles, or the longest bucket a shorter clip supplies.

    Returns {length: (N, length, 24, 3)}; clips shorter than 33 frames give nothing.
    """
    groups: dict[int, list[np.ndarray]] = {}
    for clip in _check_clips(clips):
        shorter = [n for n in BUCKET_LENGTHS if n <= len(clip)]
        if len(clip) >= length:
            n = length
        elif shorter:
            n = max(shorter)
        else:
            continue
        groups.setdefault(n, []).extend(tile_windows(clip, n))
    return {n: np.stack(ws) for n, ws in sorted(groups.items())}
