"""Building blocks of the 4DMoT encoder and decoder (paper Sec. 3.1, Fig. 3).

All operations are 2D over (frames, joints) with the coordinate axes as
channels: tensors are ``(batch, channels, frames, joints)``. Module and
attribute names follow the released checkpoint (``block.0`` ... ``block.5``,
``conv_short``, ``joint_downsample``, ``upsampler``) so that it loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Residual block: GroupNorm, SiLU, dilated 3x3 conv, GroupNorm, SiLU, 1x1 conv.

    The dilated 3x3 convolution widens the receptive field along frames and
    joints ("dilated convolutions", Sec. 3.1). A 1x1 shortcut convolution exists
    only where the channel count changes.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 1, groups: int = 32, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(groups, in_channels, eps=eps, affine=True),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation),
            nn.GroupNorm(groups, out_channels, eps=eps, affine=True),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1),
        )
        self.conv_short: nn.Module = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_short(x) + self.block(x)


def _per_frame_joint_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1D convolution along the joint axis, independently for each frame."""
    b, c, t, j = x.shape
    y = conv(x.permute(0, 2, 1, 3).reshape(b * t, c, j))
    return y.reshape(b, t, y.shape[1], y.shape[2]).permute(0, 2, 1, 3)


class Downsample(nn.Module):
    """Average-pool frames in pairs keeping the first frame, then a joint convolution.

    With an odd frame count, frame 0 passes unchanged and the remaining frames
    are averaged in pairs, so f frames become 1 + (f - 1) / 2 (two such stages
    give the paper's 1 + (f - 1) / 4 latent frames, "first frame not
    downsampled"); an even count is pooled entirely. A kernel-3 Conv1d along
    the joints (stride ``joint_rate``) follows, per frame.
    """

    def __init__(self, channels: int, frame_rate: int, joint_rate: int) -> None:
        super().__init__()
        self.frame_rate = frame_rate
        self.joint_downsample = nn.Conv1d(channels, channels, kernel_size=3, stride=joint_rate, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_rate > 1 and x.shape[2] > 1:
            if x.shape[2] % 2 == 1:
                first, rest = x[:, :, :1], x[:, :, 1:]
                x = torch.cat([first, F.avg_pool2d(rest, kernel_size=(2, 1))], dim=2)
            else:
                x = F.avg_pool2d(x, kernel_size=(2, 1))
        return _per_frame_joint_conv(self.joint_downsample, x)


class Upsample(nn.Module):
    """Inverse of `Downsample`: bilinear x2 in time keeping the first frame, then a joint convolution.

    With an odd latent count, frame 0 passes unchanged and the others are
    interpolated to twice their number (bilinear, ``align_corners=True``, as in
    the release), so t latents become 1 + 2 (t - 1); an even count is
    interpolated entirely. The joint axis is interpolated by ``joint_rate``.
    """

    def __init__(self, channels: int, frame_rate: int, joint_rate: int) -> None:
        super().__init__()
        self.frame_rate = frame_rate
        self.joint_rate = joint_rate
        self.upsampler = nn.Conv1d(channels, channels, kernel_size=3, padding=1)

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2] * self.frame_rate, x.shape[3] * self.joint_rate)
        if size == tuple(x.shape[2:]):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_rate > 1 and x.shape[2] % 2 == 1:
            first, rest = x[:, :, :1], x[:, :, 1:]
            if self.joint_rate > 1:
                first = F.interpolate(first, size=(1, x.shape[3] * self.joint_rate), mode="bilinear", align_corners=True)
            x = torch.cat([first, self._interpolate(rest)], dim=2) if rest.shape[2] else first
        else:
            x = self._interpolate(x)
        return _per_frame_joint_conv(self.upsampler, x)
