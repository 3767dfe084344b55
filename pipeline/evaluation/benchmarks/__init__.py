"""Benchmark adapters (paper Sec. 4 "Benchmarks", App. A.3): each gives a list of ``BenchmarkVideo``.

- ``generated``: held-out motions rendered by ``pipeline.synthetic`` (works offline, the demo's benchmark);
- ``tiktok``: a local copy of TikTok in DisCo's test-split layout (``benchmarks.tiktok``);
- ``ubc_fashion``: a local copy of UBC Fashion with its test list (``benchmarks.ubc_fashion``).

``load_benchmark(name, settings)`` picks the adapter; ``benchmark_eval.evaluate_benchmark`` runs the protocol.
"""

from __future__ import annotations

import os

from pipeline.core.config import PipelineSettings
from pipeline.motion.driving_motion import PoseUnavailable, estimate_joints, motion_joints

from .base import BENCHMARKS, DATASET_ENV, ENV_TIKTOK, ENV_UBC_FASHION, BenchmarkVideo, DatasetMissing, dataset_root
from .generated import load_generated
from .tiktok import DISCO_TEST_SEQUENCES, load_tiktok
from .ubc_fashion import load_ubc_fashion


def load_benchmark(name: str, settings: PipelineSettings, root: str | os.PathLike | None = None,
                   max_videos: int | None = None, seed: int = 0) -> list[BenchmarkVideo]:
    """The test videos of benchmark ``name`` (the first ``max_videos`` when given).

    ``root`` overrides the dataset folder (TikTok / Fashion) or the render folder (generated); ``seed`` picks the
    generated benchmark's rendering.
    """
    if name == "generated":
        return load_generated(settings, seed=seed, max_videos=max_videos, root=root)
    if name == "tiktok":
        videos = load_tiktok(dataset_root(settings, name, root))
    elif name == "ubc_fashion":
        videos = load_ubc_fashion(dataset_root(settings, name, root))
    else:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {BENCHMARKS}")
    return videos[:max_videos]


__all__ = [
    "BENCHMARKS", "DATASET_ENV", "DISCO_TEST_SEQUENCES", "ENV_TIKTOK", "ENV_UBC_FASHION", "BenchmarkVideo",
    "DatasetMissing", "PoseUnavailable", "dataset_root", "estimate_joints", "load_benchmark", "load_generated",
    "load_tiktok", "load_ubc_fashion", "motion_joints",
]
