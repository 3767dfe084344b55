"""Pipeline settings: one place, read from the environment, usable with or without Dagster.

DESIGN.md "Configuration": ``MTVCRAFT_DATA_ROOT`` (tables, checkpoints, outputs;
default ``./data``), ``MTVCRAFT_RAW_VIDEOS`` (a folder or a manifest of videos;
default: the generated sample under the data root), ``MTVCRAFT_WEIGHTS`` (a
folder of real model weights; absent means embedded defaults) and
``RAY_ADDRESS`` (absent: a local Ray on this machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

SHOT_DETECTORS = ("scenedetect", "transnetv2")
POSE_BACKENDS = ("auto", "annotations", "nlf")

ENV_DATA_ROOT = "MTVCRAFT_DATA_ROOT"
ENV_RAW_VIDEOS = "MTVCRAFT_RAW_VIDEOS"
ENV_WEIGHTS = "MTVCRAFT_WEIGHTS"
ENV_RAY_ADDRESS = "RAY_ADDRESS"

NLF_WEIGHTS_FILE = "nlf_l_multi.torchscript"


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the setting."""


@dataclass(frozen=True)
class PipelineSettings:
    """Settings shared by every stage.

    ``raw_videos`` empty means "the generated sample" (rendered on first use
    under ``<data_root>/sample``); ``weights`` empty means "embedded defaults".
    """

    data_root: str = "./data"
    raw_videos: str = ""
    weights: str = ""
    ray_address: str = ""
    shot_detector: str = "scenedetect"
    pose_backend: str = "auto"
    min_clip_frames: int = 33
    sample_seed: int = 0
    sample_preset: str = "demo"

    @classmethod
    def from_env(cls, **overrides) -> "PipelineSettings":
        """Settings from the environment variables of DESIGN.md, then ``overrides``."""
        env = {
            "data_root": os.environ.get(ENV_DATA_ROOT, "") or cls.data_root,
            "raw_videos": os.environ.get(ENV_RAW_VIDEOS, ""),
            "weights": os.environ.get(ENV_WEIGHTS, ""),
            "ray_address": os.environ.get(ENV_RAY_ADDRESS, ""),
        }
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env).validated()

    def validated(self) -> "PipelineSettings":
        """Check every setting; raise ConfigError naming the first bad one."""
        if not self.data_root:
            raise ConfigError(f"data_root ({ENV_DATA_ROOT}) must not be empty")
        if self.raw_videos and not Path(self.raw_videos).exists():
            raise ConfigError(
                f"raw_videos ({ENV_RAW_VIDEOS}) = {self.raw_videos!r} does not exist: "
                "expected a folder of videos or a manifest file (one path per line)"
            )
        if self.weights and not Path(self.weights).is_dir():
            raise ConfigError(f"weights ({ENV_WEIGHTS}) = {self.weights!r} is not a folder")
        if self.shot_detector not in SHOT_DETECTORS:
            raise ConfigError(f"shot_detector = {self.shot_detector!r}; choose one of {SHOT_DETECTORS}")
        if self.pose_backend not in POSE_BACKENDS:
            raise ConfigError(f"pose_backend = {self.pose_backend!r}; choose one of {POSE_BACKENDS}")
        if self.min_clip_frames < 2:
            raise ConfigError(f"min_clip_frames = {self.min_clip_frames}; must be >= 2 (the paper uses 33)")
        return self

    def with_overrides(self, **changes) -> "PipelineSettings":
        return replace(self, **changes).validated()

    # Where things live under the data root.
    @property
    def root(self) -> Path:
        return Path(self.data_root).expanduser().resolve()

    def table_uri(self, name: str) -> str:
        return str(self.root / "tables" / f"{name}.lance")

    @property
    def sample_dir(self) -> Path:
        return self.root / "sample"

    @property
    def previews_dir(self) -> Path:
        return self.root / "previews"

    def weight_file(self, file_name: str, setting: str) -> Path:
        """Path of a production weight file; a clear error when it is not there."""
        if not self.weights:
            raise ConfigError(f"{setting} needs {ENV_WEIGHTS} set to a folder holding {file_name}")
        path = Path(self.weights) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"{setting}: expected {file_name} in {ENV_WEIGHTS} = {self.weights}, not found: {path}")
        return path

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
