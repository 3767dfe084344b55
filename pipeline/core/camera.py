"""The pinhole camera of App. B: 55 degrees of field of view on the image's longer side, centred principal point.

Shared by the pose backends (NLF, the MediaPipe IK fit), the skeleton previews, the synthetic renderer and the
virtual camera that places motion capture in view, so that all of them see joints through the same camera.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_FOV_DEG = 55.0  # App. B: field of view along the image's longer side


def camera_intrinsics(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Pinhole matrix K (3, 3) of App. B: ``fov_deg`` along the longer side, centred principal point.

    f = max(H, W) / (2 tan(fov / 2)); principal point ((W - 1) / 2, (H - 1) / 2),
    the pixel-centre convention NLF uses for its own default camera.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    focal = max(width, height) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def project(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points (..., 3) (OpenCV axes) to pixel coordinates (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    z = pts[..., 2:3]
    return np.concatenate([k[0, 0] * pts[..., 0:1] / z + k[0, 2], k[1, 1] * pts[..., 1:2] / z + k[1, 2]], axis=-1)
