"""MV-DiT parts (paper Sec. 3.2-3.3): 4D RoPE (``rope4d``) and 4D motion attention (``motion_attention``)."""

from models.mvdit.motion_attention import (
    MotionAttention,
    MotionAttentionConfig,
    motion_attention_param_count,
    release_key_map,
)
from models.mvdit.rope4d import (
    LearnableMotionPE,
    RopeConfig,
    RopeTables,
    apply_rope,
    build_rope_tables,
    motion_rope_4d,
    rope_1d,
    vision_rope_4d,
)

__all__ = [
    "LearnableMotionPE",
    "MotionAttention",
    "MotionAttentionConfig",
    "RopeConfig",
    "RopeTables",
    "apply_rope",
    "build_rope_tables",
    "motion_attention_param_count",
    "motion_rope_4d",
    "release_key_map",
    "rope_1d",
    "vision_rope_4d",
]
