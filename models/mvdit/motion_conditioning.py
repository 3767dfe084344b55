"""What both MV-DiT classes (CogVideoX 6B, Wan 18B) add to their backbone for the motion condition (Sec. 3.2,
App. A.1): which parameters train, and the dataset-mean joints the 4D motion RoPE is placed at."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

import torch
from torch import nn

from models.mvdit.motion_attention import MotionAttentionConfig
from models.mvdit.rope4d import RopeConfig


class MotionConditioning:
    """Mixin of ``MVDiTCogVideoX`` and ``MVDiTWan`` (diffusers models whose config has ``motion_layout``,
    ``num_layers``, the attention shape, ``motion_pe``, ``motion_position_scale``, ``motion_token_dim`` and
    ``num_joints``, with an ``unconditional_motion_token`` c_m∅ or None). A class names its
    `MotionAttentionConfig` presets and where the release layout puts motion blocks; it gives
    ``motion_trainable_modules`` and the release layout's RoPE axis split."""

    PAPER_PRESET: str  # the MotionAttentionConfig preset of the paper layout (full size), e.g. "paper_6b"
    RELEASE_PRESET: str  # ... of the official release layout, e.g. "release_7b"
    RELEASE_BLOCK_STEP: int  # the release layout has motion attention in every n-th block (paper: every 2nd)

    @property
    def motion_block_indices(self) -> list[int]:
        """Paper: every second block starting at 0; release: every ``RELEASE_BLOCK_STEP``-th."""
        step = 2 if self.config.motion_layout == "paper" else self.RELEASE_BLOCK_STEP
        return list(range(0, self.config.num_layers, step))

    def release_rope_axes(self, head_dim: int) -> dict[str, tuple[int, ...]]:
        """``axis_dims`` / ``vision_axis_dims`` of the release layout's RoPE (`RopeConfig`) for ``head_dim``."""
        raise NotImplementedError

    @property
    def motion_attention_config(self) -> MotionAttentionConfig:
        """Eq. 5-7 settings for this backbone's shape (at full size: the class's paper / release preset)."""
        c = self.config
        heads, head_dim = c.num_attention_heads, c.attention_head_dim
        if c.motion_layout == "release":
            base = getattr(MotionAttentionConfig, self.RELEASE_PRESET)()
            rope = RopeConfig(position_scale=c.motion_position_scale, **self.release_rope_axes(head_dim))
        else:
            base = getattr(MotionAttentionConfig, self.PAPER_PRESET)()
            rope = RopeConfig(pe=c.motion_pe, position_scale=c.motion_position_scale)
        return replace(
            base, dim=heads * head_dim, heads=heads, head_dim=head_dim, motion_dim=c.motion_token_dim,
            num_joints=c.num_joints, rope=rope,
        )

    def motion_trainable_modules(self) -> Iterable[nn.Module]:
        """The modules the motion condition adds (they always train)."""
        raise NotImplementedError

    def set_trainable(self, backbone: bool) -> None:
        """The motion modules and c_m∅ always train; the backbone only when ``backbone`` (the paper fine-tunes
        the whole 6B and freezes the 18B's backbone)."""
        self.requires_grad_(backbone)
        for module in self.motion_trainable_modules():
            module.requires_grad_(True)
        if self.unconditional_motion_token is not None:
            self.unconditional_motion_token.requires_grad_(True)

    def set_mean_joints(self, mean_joints: Any) -> None:
        """Store the dataset-mean joints (J, 3), metres, in the config (saved with ``save_pretrained``)."""
        joints = torch.as_tensor(mean_joints, dtype=torch.float64)
        if joints.shape != (self.config.num_joints, 3):
            raise ValueError(f"mean_joints must be ({self.config.num_joints}, 3), got {tuple(joints.shape)}")
        self.register_to_config(motion_mean_joints=joints.tolist())
