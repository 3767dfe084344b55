"""What both MV-DiT classes (CogVideoX 6B, Wan 18B) add to their backbone for the motion condition (Sec. 3.2,
App. A.1): which parameters train, and the dataset-mean joints the 4D motion RoPE is placed at."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


class MotionConditioning:
    """Mixin of ``MVDiTCogVideoX`` and ``MVDiTWan`` (diffusers models with a ``config.num_joints``, an
    ``unconditional_motion_token`` c_m∅ or None, and ``motion_trainable_modules``)."""

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
