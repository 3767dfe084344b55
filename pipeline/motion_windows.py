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

Determinism: given the same clips, a batch is a pure function of (seed, step,
rank); the sampler state saved in checkpoints is just (seed, step) plus a
fingerprint of the clips, so a resumed run draws the same batches as an
uninterrupted one (and can tell when the clip set changed). All ranks of a DDP run draw the same
bucket at a step (it depends on (seed, step) only) and different windows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

BUCKET_LENGTHS: tuple[int, ...] = (33, 49, 81, 97, 129)
"""Window lengths of App. A.2; each gives 1 + (f - 1) / 4 latent frames."""

STRIDES: tuple[int, ...] = (1, 2)
"""Frame strides of App. A.2 (2 = every other frame: faster apparent motion)."""

MIN_FRAMES = min(BUCKET_LENGTHS)


@dataclass(frozen=True)
class WindowConfig:
    """How training windows are drawn (App. A.2 defaults)."""

    lengths: tuple[int, ...] = BUCKET_LENGTHS
    strides: tuple[int, ...] = STRIDES
    max_scale: float = 0.10  # |s - 1| <= max_scale
    max_shift: float = 0.10  # |d_k| <= max_shift * body size
    augment: bool = True

    def __post_init__(self) -> None:
        if not self.lengths or any(n < 2 for n in self.lengths):
            raise ValueError(f"WindowConfig.lengths must be frame counts >= 2, got {self.lengths}")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"WindowConfig.strides must be >= 1, got {self.strides}")
        for name in ("max_scale", "max_shift"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"WindowConfig.{name} must lie in [0, 1), got {getattr(self, name)}")

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


class WindowSampler:
    """Draws bucketed, augmented training windows from joint sequences; deterministic in (seed, step, rank)."""

    def __init__(
        self,
        clips: list[np.ndarray],
        batch_size: int,
        config: WindowConfig | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.clips = _check_clips(clips)
        self.batch_size = batch_size
        self.config = config or WindowConfig()
        self.seed = seed
        self.rank = rank
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
        rng = np.random.default_rng([self.seed, step])
        return self.buckets[int(rng.integers(len(self.buckets)))]

    def batch(self, step: int) -> WindowBatch:
        """The batch at ``step`` for this rank."""
        length, stride = self.bucket(step)
        rng = np.random.default_rng([self.seed, step, self.rank, 1])
        starts = self._starts[(length, stride)]
        # Uniform over all (clip, start) positions: pick a clip in proportion to its start count.
        clip_index = rng.choice(len(self.clips), size=self.batch_size, p=starts / starts.sum())
        start = (rng.random(self.batch_size) * starts[clip_index]).astype(np.int64)
        cfg = self.config
        scale, unit_shift = np.ones(self.batch_size), np.zeros((self.batch_size, 3))
        if cfg.augment:
            scale = 1.0 + rng.uniform(-cfg.max_scale, cfg.max_scale, self.batch_size)
            unit_shift = rng.uniform(-cfg.max_shift, cfg.max_shift, (self.batch_size, 3))
        windows, shifts = [], []
        for b in range(self.batch_size):
            clip = self.clips[clip_index[b]]
            w = clip[start[b] : start[b] + window_span(length, stride) : stride]
            d = unit_shift[b] * body_size(w[0])
            windows.append(augment_window(w, scale[b], d) if cfg.augment else w)  # unaugmented: exact copies
            shifts.append(d)
        return WindowBatch(
            joints=np.stack(windows).astype(np.float32),
            length=length,
            stride=stride,
            clip_index=clip_index,
            start=start,
            scale=scale,
            shift=np.stack(shifts),
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
