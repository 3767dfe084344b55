"""The one Dagster resource: pipeline settings, with environment-variable defaults (DESIGN.md "Configuration")."""


import os

from dagster import ConfigurableResource, EnvVar

from pipeline.config import ENV_DATA_ROOT, ENV_RAW_VIDEOS, ENV_RAY_ADDRESS, ENV_WEIGHTS, PipelineSettings


class MTVCraftSettings(ConfigurableResource):
    """Where data lives and which backends run; empty strings mean the embedded defaults."""

    data_root: str = "./data"
    raw_videos: str = ""
    weights: str = ""
    ray_address: str = ""
    shot_detector: str = "scenedetect"
    pose_backend: str = "auto"
    min_clip_frames: int = 33

    def settings(self) -> PipelineSettings:
        return PipelineSettings(
            data_root=self.data_root, raw_videos=self.raw_videos, weights=self.weights, ray_address=self.ray_address,
            shot_detector=self.shot_detector, pose_backend=self.pose_backend, min_clip_frames=self.min_clip_frames,
        ).validated()


def settings_resource() -> MTVCraftSettings:
    """The resource, reading each setting from its environment variable when that is set (shown as such in the UI)."""
    def env_or(name: str, default: str):
        return EnvVar(name) if os.environ.get(name) else default

    return MTVCraftSettings(
        data_root=env_or(ENV_DATA_ROOT, "./data"),
        raw_videos=env_or(ENV_RAW_VIDEOS, ""),
        weights=env_or(ENV_WEIGHTS, ""),
        ray_address=env_or(ENV_RAY_ADDRESS, ""),
    )
