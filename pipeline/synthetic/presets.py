"""What the generated sample holds: its presets of videos and shots, and the curation fate of each kind of shot.

A preset is a small data structure (DESIGN.md, "Generated sample data"): videos of shots, each shot a kind
(a normal dancer, a gap, blur, burnt-in text, a still camera, nobody, two people, noisy poses) and a motion;
`pipeline.synthetic.sample.make_sample` renders it. ``KIND_REJECT`` says which curation stage should drop
each kind and why, so the tests can check the pipeline against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .motions import MOTIONS

SHOT_KINDS = ("normal", "gap", "blur", "text", "static", "no_person", "two_people", "noisy_pose")
"""normal: one person, a swaying hand-held camera. gap: normal with ``gap`` person-free frames in the middle.
blur / text: normal plus a strong Gaussian blur / a large burnt-in caption. static: a still
camera and a near-still person. no_person: background only. two_people: two people.
noisy_pose: normal rendering with a high simulated pose uncertainty in the sidecar."""

# Which stage should drop a shot of each kind, and why (stage, reason).
KIND_REJECT: dict[str, tuple[str, str] | None] = {
    "normal": None,
    "gap": None,
    "blur": ("clip_scores", "blur"),
    "text": ("clip_scores", "text"),
    "static": ("clip_scores", "static"),
    "no_person": ("subclips", "no_person"),
    "two_people": ("subclips", "multiple_people"),
    "noisy_pose": ("clip_scores", "pose_uncertainty"),
}


# --- Presets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShotSpec:
    """One shot: its kind, length in frames, motion (``motion2`` for the second of two people), gap length."""

    kind: str
    frames: int
    motion: str | None = None
    motion2: str | None = None
    gap: int = 10

    def __post_init__(self) -> None:
        if self.kind not in SHOT_KINDS:
            raise ValueError(f"unknown shot kind {self.kind!r}; expected one of {SHOT_KINDS}")
        if self.frames < 1:
            raise ValueError(f"a shot needs >= 1 frame, got {self.frames}")
        for name in (self.motion, self.motion2):
            if name is not None and name not in MOTIONS:
                raise ValueError(f"unknown motion {name!r}; expected one of {sorted(MOTIONS)}")
        if self.kind != "no_person" and self.motion is None:
            raise ValueError(f"a {self.kind!r} shot needs a motion")
        if self.kind == "static" and self.motion != "static":
            raise ValueError("a 'static' shot must use the 'static' motion")
        if self.kind == "gap" and not 0 < self.gap < self.frames:
            raise ValueError(f"a gap shot needs 0 < gap < frames, got gap={self.gap}, frames={self.frames}")

    @property
    def num_people(self) -> int:
        return {"no_person": 0, "two_people": 2}.get(self.kind, 1)

    @property
    def motion_label(self) -> str | None:
        if self.kind == "two_people":
            return f"{self.motion}+{self.motion2 or self.motion}"
        return self.motion

    def absent(self) -> tuple[int, int] | None:
        """Person-free frame range [start, end) within a gap shot, else None."""
        if self.kind != "gap":
            return None
        start = (self.frames - self.gap) // 2
        return start, start + self.gap


@dataclass(frozen=True)
class VideoSpec:
    name: str
    shots: tuple[ShotSpec, ...]
    width: int = 320
    height: int = 240

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            size = f"{self.width}x{self.height}"
            raise ValueError(f"video {self.name!r}: yuv420p needs even width and height, got {size}")


@dataclass(frozen=True)
class Preset:
    """A named set of videos; ``tempo`` and ``amplitude`` vary the motions (held-out sets use other values)."""

    name: str
    videos: tuple[VideoSpec, ...]
    fps: float = 25.0
    tempo: float = 1.0
    amplitude: float = 1.0

    @property
    def total_frames(self) -> int:
        return sum(s.frames for v in self.videos for s in v.shots)


S = ShotSpec
PRESETS: dict[str, Preset] = {
    "demo": Preset(
        "demo",
        (
            VideoSpec("three_shots", (S("normal", 60, "walk"), S("normal", 50, "wave"), S("normal", 56, "squat"))),
            VideoSpec(
                "four_shots_gap",
                (
                    S("normal", 56, "dance"),
                    S("normal", 52, "jump"),
                    S("gap", 86, "turn", gap=10),  # person parts of 38 frames before and after the gap
                    S("normal", 56, "dance"),
                ),
            ),
            VideoSpec(
                "effects",
                (S("blur", 48, "wave"), S("text", 48, "squat"), S("static", 48, "static"), S("normal", 56, "walk")),
            ),
            VideoSpec(
                "people",
                (
                    S("no_person", 36),
                    S("two_people", 48, "walk", "dance"),
                    S("normal", 20, "wave"),  # too short for a sub-clip
                    S("normal", 56, "squat"),
                ),
            ),
            VideoSpec("noisy", (S("normal", 50, "walk"), S("noisy_pose", 50, "dance"), S("normal", 52, "jump"))),
            VideoSpec("portrait_dance", (S("normal", 120, "dance"),), width=240, height=320),
            VideoSpec(
                "more_motion",
                (S("normal", 60, "turn"), S("normal", 56, "wave"), S("normal", 64, "dance"), S("normal", 60, "walk")),
            ),
        ),
    ),
    # Held-out motions for evaluation: other seeds (the preset name salts them), tempo and amplitude.
    "benchmark": Preset(
        "benchmark",
        (
            VideoSpec("bench_walk", (S("normal", 52, "walk"),)),
            VideoSpec("bench_dance", (S("normal", 56, "dance"),)),
            VideoSpec("bench_squat", (S("normal", 50, "squat"),)),
            VideoSpec("bench_wave", (S("normal", 60, "wave"),)),
        ),
        tempo=1.15,
        amplitude=0.9,
    ),
    # A few short shots of every kind, for fast tests.
    "tiny": Preset(
        "tiny",
        (
            VideoSpec(
                "tiny_cuts",
                (
                    S("normal", 12, "walk"),
                    S("normal", 12, "dance"),
                    S("blur", 10, "wave"),
                    S("text", 10, "squat"),
                    S("static", 10, "static"),
                ),
            ),
            VideoSpec(
                "tiny_people",
                (
                    S("no_person", 8),
                    S("two_people", 10, "walk", "dance"),
                    S("noisy_pose", 10, "jump"),
                    S("gap", 16, "turn", gap=4),
                ),
            ),
        ),
    ),
}
