"""The generated benchmark: held-out procedural motions rendered by ``pipeline.synthetic`` (its "benchmark" preset).

Its motions are drawn from streams salted by the preset name and played at another tempo and amplitude than
the demo's training sample, so no test motion was seen in training; the videos are rendered once under
``<data_root>/benchmarks/generated/seed_<seed>`` and reused (same seed, same bytes). Ground truth is the
rendered video; the driving motion is its sidecar's SMPL (pose + translation -> neutral-shape joints, Sec. 3.1),
the reference image its first frame (App. A.3).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.config import PipelineSettings
from pipeline.motion.driving_motion import video_sidecar_joints

from .base import BenchmarkVideo

PRESET = "benchmark"


def generated_root(settings: PipelineSettings, seed: int) -> Path:
    return settings.root / "benchmarks" / "generated" / f"seed_{seed}"


def load_generated(settings: PipelineSettings, seed: int = 0, max_videos: int | None = None,
                   root: str | Path | None = None) -> list[BenchmarkVideo]:
    """The benchmark's videos (rendered on first use), the first ``max_videos`` of them when given."""
    from pipeline.core.video_io import read_frames
    from pipeline.synthetic import PRESETS, make_sample

    available = len(PRESETS[PRESET].videos)
    if max_videos is not None and not 1 <= max_videos <= available:
        raise ValueError(f"the generated benchmark has {available} videos; max_videos={max_videos} is out of range")
    manifest = make_sample(Path(root) if root else generated_root(settings, seed), seed=seed, preset=PRESET)
    videos = []
    for info in manifest.videos[:max_videos]:
        path = manifest.video_path(info)
        joints, sidecar = video_sidecar_joints(path)

        def load(count: int | None, path: Path = path):
            return read_frames(path, 0, count)

        videos.append(BenchmarkVideo(f"{info.name}@seed{seed}", path, info.fps, load, joints, sidecar))
    return videos
