"""Motion representation fed to 4DMoT (paper Sec. 3.1).

M = (J - mean) / std - (J_1 - mean) / std: joints are normalised with the
dataset's statistics (per joint and axis, (24, 3), as ``motion_stats`` and the
release store them; per axis (3,) also works), then the first normalised frame is subtracted so
that frame 0 is all zeros ("differential joint coordinates"). The release
skips the subtraction (``differential=False``) and uses per-joint, per-axis
statistics in millimetres (``release_mean_mm.npy``, shape (24, 3)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

ArrayLike = np.ndarray | torch.Tensor | list | tuple


def _stat(value: ArrayLike, name: str, num_joints: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float64) if not isinstance(value, torch.Tensor) else value)
    if tuple(t.shape) not in ((3,), (num_joints, 3)):
        raise ValueError(f"MotionNormalizer {name} must have shape (3,) or ({num_joints}, 3), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"MotionNormalizer {name} contains non-finite values")
    return t.to(torch.float64).reshape(-1, 3)


class MotionNormalizer(nn.Module):
    """Normalise joints (..., F, J, 3) and, if ``differential``, subtract the first frame.

    ``mean`` / ``std`` are per joint and axis (J, 3) (``motion_stats``, the release) or per axis (3,).
    The statistics are float64 buffers (saved with a model) and are cast to
    the input's dtype at use.
    """

    def __init__(self, mean: ArrayLike, std: ArrayLike, differential: bool = True, num_joints: int = 24) -> None:
        super().__init__()
        std_t = _stat(std, "std", num_joints)
        if (std_t <= 0).any():
            raise ValueError("MotionNormalizer std must be strictly positive")
        self.register_buffer("mean", _stat(mean, "mean", num_joints))
        self.register_buffer("std", std_t)
        self.differential = differential
        self.num_joints = num_joints

    @classmethod
    def from_files(
        cls, mean_path: str | Path, std_path: str | Path, differential: bool = True, num_joints: int = 24
    ) -> "MotionNormalizer":
        """Statistics from ``.npy`` files (e.g. the release's ``mean.npy`` / ``std.npy``)."""
        for p in (mean_path, std_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"motion statistics file not found: {p} (expected a .npy of shape (3,) or (24, 3))")
        return cls(np.load(mean_path), np.load(std_path), differential, num_joints)

    def _check(self, x: torch.Tensor, name: str, frames: bool = True) -> None:
        tail = 3 if frames else 2
        if x.ndim < tail or tuple(x.shape[-2:]) != (self.num_joints, 3):
            what = "(..., frames, joints, 3)" if frames else "(..., joints, 3)"
            raise ValueError(f"{name} must have shape {what} with {self.num_joints} joints, got {tuple(x.shape)}")

    def normalize(self, joints: torch.Tensor) -> torch.Tensor:
        """(J - mean) / std, no first-frame subtraction."""
        return (joints - self.mean.to(joints.dtype)) / self.std.to(joints.dtype)

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        """Joints (..., F, J, 3) in the statistics' units -> representation M of the same shape."""
        self._check(joints, "joints")
        x = self.normalize(joints)
        return x - x[..., :1, :, :] if self.differential else x

    def inverse(self, repr_: torch.Tensor, first_frame: torch.Tensor | None = None) -> torch.Tensor:
        """Joints from a representation; ``first_frame`` (..., J, 3) are the original frame-0 joints.

        ``first_frame`` is required when ``differential`` (it restores the
        absolute position that the subtraction removed) and ignored otherwise.
        """
        self._check(repr_, "representation")
        x = repr_
        if self.differential:
            if first_frame is None:
                raise ValueError("MotionNormalizer.inverse needs first_frame (..., J, 3) when differential=True")
            self._check(first_frame, "first_frame", frames=False)
            x = x + self.normalize(first_frame.to(x.dtype))[..., None, :, :]
        return x * self.std.to(x.dtype) + self.mean.to(x.dtype)
