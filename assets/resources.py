"""The one Dagster resource: pipeline settings, with environment-variable defaults (DESIGN.md "Configuration")."""


import os
from dataclasses import fields
from typing import Optional

from dagster import ConfigurableResource, EnvVar

from pipeline.core.config import (
    ENV_DATA_ROOT,
    ENV_MOCAP,
    ENV_MOTION_VIDEO_VERSION,
    ENV_RAW_VIDEOS,
    ENV_RAY_ADDRESS,
    ENV_TIKTOK,
    ENV_UBC_FASHION,
    ENV_VIDEO_LATENTS,
    ENV_WEIGHTS,
    PipelineSettings,
    env_bool,
    env_int,
)


class MTVCraftSettings(ConfigurableResource):
    """Where data lives and which backends run; empty strings mean the embedded defaults."""

    data_root: str = "./data"
    raw_videos: str = ""
    weights: str = ""
    ray_address: str = ""
    shot_detector: str = "scenedetect"
    pose_backend: str = "auto"
    pose_frame_step: int = 1
    sample_seed: int = 0
    sample_preset: str = "demo"
    min_clip_frames: int = 33
    blur_backend: str = "opencv-laplacian"
    flow_backend: str = "dis"
    ocr_backend: str = "rapidocr"
    aesthetic_backend: str = "classical-iq"
    min_aesthetic: Optional[float] = None
    min_flow: Optional[float] = None
    min_blur: Optional[float] = None
    max_text_ratio: Optional[float] = None
    uncertainty_drop: float = 0.10
    body_coverage: str = "full"
    flow_region: str = "subject"
    score_every_k: int = 4
    score_max_frames: int = 16
    flow_long_side: int = 512
    motion_video_version: int = 0
    tokenizer_model: str = "tiny"
    tokenizer_steps: int = 400
    tokenizer_lr: float = 1e-3
    tokenizer_batch_size: int = 8
    train_workers: int = 1
    train_backend: str = "ray"
    mvdit_model: str = "tiny"
    mvdit_steps: int = 400
    mvdit_backbone: str = ""
    mvdit_vae: str = ""
    mvdit_encoders: str = ""
    mvdit_unconditional_from: str = ""
    mvdit_strategy: str = ""
    video_latents: bool = False
    tiktok_root: str = ""
    ubc_fashion_root: str = ""
    mocap: str = ""
    tokenizer_sources: str = "auto"
    tokenizer_mocap_weight: float = 0.5
    real_motions: str = ""

    def settings(self) -> PipelineSettings:
        """The validated pipeline settings; a bad value raises ConfigError naming it."""
        names = {f.name for f in fields(PipelineSettings)}
        return PipelineSettings(**{k: v for k, v in self.dict().items() if k in names}).validated()


def settings_resource() -> MTVCraftSettings:
    """The resource, reading each setting from its environment variable when that is set (shown as such in the UI)."""
    def env_or(name: str, default: str):
        return EnvVar(name) if os.environ.get(name) else default

    return MTVCraftSettings(
        data_root=env_or(ENV_DATA_ROOT, "./data"),
        raw_videos=env_or(ENV_RAW_VIDEOS, ""),
        weights=env_or(ENV_WEIGHTS, ""),
        ray_address=env_or(ENV_RAY_ADDRESS, ""),
        motion_video_version=env_int(ENV_MOTION_VIDEO_VERSION),
        tiktok_root=env_or(ENV_TIKTOK, ""),
        ubc_fashion_root=env_or(ENV_UBC_FASHION, ""),
        mocap=env_or(ENV_MOCAP, ""),
        video_latents=env_bool(ENV_VIDEO_LATENTS),
    )
