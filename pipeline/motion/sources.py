"""4DMoT training on several motion sources at once: curated clips, motion capture, or both (beyond the paper).

The paper trains 4DMoT on curated NLF motion only (Sec. 3.1); that stays the
default (``{"curated": 1.0}``), drawn by `WindowSampler` exactly as before.
With other sources, `MixedWindowSampler` draws each batch's windows from the
sources in proportion to their mixing weights (each window picks its source),
all in one (length, stride) bucket that every source can supply.
World-frame sources (`WORLD_SOURCES`: motion capture, +Y up) get each window
placed in front of a virtual camera first (`pipeline.motion.camera_placement`), then
the same App. A.2 augmentation as curated windows.

Determinism as for `WindowSampler`: a batch is a pure function of (seed, step, rank).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial

import numpy as np

from pipeline.motion.camera_placement import CameraPlacement, place_window
from pipeline.motion.windows import WindowBatch, WindowConfig, WindowSampler, step_bucket

SOURCE_NAMES = ("curated", "mocap")
WORLD_SOURCES = ("mocap",)
PAPER_SOURCES = {"curated": 1.0}


@dataclass(frozen=True)
class SourceSlice:
    """Clips ``[start, stop)`` of the job's clip list belong to source ``name``, drawn with ``weight``."""

    name: str
    start: int
    stop: int
    weight: float

    @property
    def world(self) -> bool:
        return self.name in WORLD_SOURCES


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Mixing weights by source name: known names, non-negative, some positive."""
    unknown = sorted(set(weights) - set(SOURCE_NAMES))
    if unknown:
        raise ValueError(f"unknown motion sources {unknown}; expected names from {SOURCE_NAMES}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"source mixing weights must be >= 0 with one > 0, got {weights}")
    return {k: float(v) for k, v in weights.items()}


def parse_sources(text: str, mocap_weight: float) -> dict[str, float]:
    """``tokenizer_sources`` ("curated", "mocap" or "curated+mocap") -> mixing weights.

    With both, ``mocap_weight`` is the share of windows drawn from motion capture.
    """
    names = [n.strip() for n in text.split("+") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"tokenizer_sources = {text!r}; expected 'curated', 'mocap' or 'curated+mocap'")
    if len(names) == 1:
        return check_weights({names[0]: 1.0})
    if not 0.0 < mocap_weight < 1.0:
        raise ValueError(f"tokenizer_mocap_weight = {mocap_weight}; must lie in (0, 1) when mixing sources")
    return check_weights({n: (mocap_weight if n == "mocap" else 1.0 - mocap_weight) for n in names})


def flatten(sources: dict[str, list[np.ndarray]], weights: dict[str, float]) -> tuple[list[np.ndarray], list[SourceSlice]]:
    """One clip list and its source slices, in the order of ``weights``; every weighted source must have clips."""
    clips: list[np.ndarray] = []
    slices = []
    for name, weight in check_weights(weights).items():
        if weight == 0:
            continue
        part = sources.get(name) or []
        if not part:
            raise ValueError(f"motion source {name!r} has weight {weight} but no training clips")
        slices.append(SourceSlice(name, len(clips), len(clips) + len(part), weight))
        clips.extend(part)
    return clips, slices


class MixedWindowSampler:
    """Batches whose windows come from several sources in proportion to their weights (module docstring)."""

    def __init__(self, clips: list[np.ndarray], slices: list[SourceSlice], batch_size: int,
                 config: WindowConfig | None = None, seed: int = 0, rank: int = 0,
                 placement: CameraPlacement | None = None) -> None:
        if not slices:
            raise ValueError("MixedWindowSampler needs at least one source")
        self.slices, self.batch_size, self.seed, self.rank = slices, batch_size, seed, rank
        placement = placement or CameraPlacement()
        self.samplers = [
            WindowSampler(clips[s.start:s.stop], 1, config, seed=seed, rank=rank,
                          prepare=partial(place_window, placement=placement) if s.world else None)
            for s in slices
        ]
        common = set.intersection(*(set(s.buckets) for s in self.samplers))
        self.buckets = [b for b in self.samplers[0].buckets if b in common]
        if not self.buckets:
            raise ValueError("the motion sources share no (length, stride) bucket: some source's clips are all too short")
        weights = np.array([s.weight for s in slices], dtype=np.float64)
        self.p = weights / weights.sum()

    def fingerprint(self) -> str:
        """SHA-256 over each source's name, weight and clips (a resumed run checks it has the same data)."""
        digest = hashlib.sha256()
        for s, sampler in zip(self.slices, self.samplers):
            digest.update(f"{s.name}:{s.weight}:{sampler.fingerprint()}".encode())
        return digest.hexdigest()

    def bucket(self, step: int) -> tuple[int, int]:
        return step_bucket(self.buckets, self.seed, step)

    def batch(self, step: int) -> WindowBatch:
        """The batch at ``step`` for this rank: windows grouped by source, ``clip_index`` into the joint clip list."""
        length, stride = self.bucket(step)
        which = np.random.default_rng([self.seed, step, self.rank, 3]).choice(len(self.slices), size=self.batch_size, p=self.p)
        parts = []
        for i, (s, sampler) in enumerate(zip(self.slices, self.samplers)):
            count = int((which == i).sum())
            if count:
                part = sampler.draw(length, stride, count, np.random.default_rng([self.seed, step, self.rank, 1, i]))
                part.clip_index = part.clip_index + s.start
                parts.append(part)
        cat = lambda name: (None if getattr(parts[0], name) is None  # noqa: E731
                            else np.concatenate([getattr(p, name) for p in parts]))
        return WindowBatch(joints=cat("joints"), length=length, stride=stride, clip_index=cat("clip_index"),
                           start=cat("start"), scale=cat("scale"), shift=cat("shift"), yaw=cat("yaw"), drift=cat("drift"))


def make_sampler(clips: list[np.ndarray], slices: list[SourceSlice] | None, batch_size: int, config: WindowConfig,
                 seed: int, rank: int, placement: CameraPlacement | None = None) -> WindowSampler | MixedWindowSampler:
    """The paper's `WindowSampler` for curated clips alone (no slices, or one curated slice), else the mixed one."""
    if not slices or (len(slices) == 1 and not slices[0].world):
        return WindowSampler(clips, batch_size, config, seed=seed, rank=rank)
    return MixedWindowSampler(clips, slices, batch_size, config, seed=seed, rank=rank, placement=placement)
