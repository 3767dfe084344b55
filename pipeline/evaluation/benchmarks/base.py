"""What every benchmark adapter returns (``BenchmarkVideo``) and where the local dataset copies live.

A benchmark (paper Sec. 4 "Benchmarks", App. A.3) is a list of test videos, each
with its ground-truth frames and the 3D joints that drive the animation. Frames
load lazily (a TikTok sequence or a Fashion video can be long; the protocol uses
only its first frames); joints come from a sidecar when the dataset ships one,
else ``None``, and the pose backend estimates them (``pipeline.motion.driving_motion``).

Dataset folders are settings: ``MTVCRAFT_TIKTOK`` and ``MTVCRAFT_UBC_FASHION``
(default ``<data_root>/benchmarks/tiktok`` and ``<data_root>/benchmarks/ubc_fashion``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.core.config import ENV_TIKTOK, ENV_UBC_FASHION, PipelineSettings

BENCHMARKS = ("generated", "tiktok", "ubc_fashion")
DATASET_ENV = {"tiktok": ENV_TIKTOK, "ubc_fashion": ENV_UBC_FASHION}


class DatasetMissing(FileNotFoundError):
    """A benchmark's local copy is absent, empty or not in the documented layout; the message names the setting."""


@dataclass(frozen=True)
class BenchmarkVideo:
    """One test video: ``load_frames(count)`` gives its first ``count`` frames (None: all) as uint8 (T, H, W, 3) RGB;
    ``joints`` (T, 24, 3) metres (OpenCV camera frame, neutral-shape FK + root translation, Sec. 3.1) from a sidecar,
    or None when the pose backend must estimate them."""

    id: str
    source: Path  # the video file or the folder of frames
    fps: float
    load_frames: Callable[[int | None], np.ndarray]
    joints: np.ndarray | None = None
    joints_source: str = ""  # the sidecar file the joints came from ("" when None)

    def __post_init__(self) -> None:
        if self.joints is not None:
            shape = np.shape(self.joints)
            if len(shape) != 3 or shape[1:] != (24, 3):
                raise ValueError(f"benchmark video {self.id}: joints must be (T, 24, 3) metres, got {shape}")


def dataset_root(settings: PipelineSettings, benchmark: str, override: str | os.PathLike | None = None) -> Path:
    """The local copy of ``benchmark``: ``override``, else the setting (``tiktok_root`` / ``ubc_fashion_root``),
    else its environment variable, else under the data root."""
    if benchmark not in DATASET_ENV:
        raise ValueError(f"benchmark {benchmark!r} has no dataset folder; choose one of {tuple(DATASET_ENV)}")
    override = override or getattr(settings, f"{benchmark}_root", "")
    if override:
        return Path(override).expanduser()
    from_env = os.environ.get(DATASET_ENV[benchmark], "").strip()
    return Path(from_env).expanduser() if from_env else settings.root / "benchmarks" / benchmark


def require_folder(root: Path, benchmark: str, layout: str) -> Path:
    """``root`` if it is a non-empty folder; else ``DatasetMissing`` naming the setting, the path and the layout."""
    setting = f"{benchmark}_root / {DATASET_ENV[benchmark]}" if benchmark in DATASET_ENV else "dataset_root"
    if not root.is_dir():
        raise DatasetMissing(f"{benchmark} benchmark folder ({setting}) = {root} does not exist; expected:\n{layout}")
    if not any(root.iterdir()):
        raise DatasetMissing(f"{benchmark} benchmark folder ({setting}) = {root} is empty; expected:\n{layout}")
    return root


def natural_key(name: str) -> list:
    """Sort key that orders "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
