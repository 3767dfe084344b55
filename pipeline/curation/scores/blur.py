"""Laplacian blur score of paper App. B: the variance of OpenCV's Laplacian of the grey frame.

A sharp frame has strong edges, so its Laplacian (second derivative) varies a lot; a
blurred one has a nearly flat Laplacian. This is the paper's own method (OpenCV's
``Laplacian`` as in its tutorial, 3x3 aperture ``[[0,1,0],[1,-4,1],[0,1,0]]``), kept when >= 100.

Resolution: frames larger than ``max_side`` (default 512) are shrunk to it first (INTER_AREA),
never enlarged. The paper does not say at which size it measured, and the variance depends
strongly on it: a soft 604x1080 upload scores 25-40 at full size and 90-160 at 512 (real
sample 00001), while the clips are trained and evaluated around 512 px (paper: 512x512 crops), so
sharpness is judged at that size. ``max_side=None`` measures at native size.

Clip score: the 25th percentile of the sampled frames, not the mean. Laplacian variance is
heavy-tailed (one busy frame can be ten times another), so a mean lets a few sharp frames
hide a clip that is blurred most of the time; the 25th percentile keeps a clip only if
three quarters of its sampled frames are at least that sharp, and still ignores one odd
frame (a transition, a single motion-blurred frame) among the usual 9-16.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import resize_long_side

DEFAULT_PERCENTILE = 25.0
DEFAULT_MAX_SIDE = 512


def laplacian_variance(frame: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian (float64, reflect-101 borders) of an RGB or grey uint8 frame, as given."""
    if frame.ndim == 3:
        if frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame (H, W, 3) or a grey one (H, W), got shape {frame.shape}")
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    elif frame.ndim != 2:
        raise ValueError(f"expected an RGB frame (H, W, 3) or a grey one (H, W), got shape {frame.shape}")
    return float(cv2.Laplacian(frame, cv2.CV_64F).var())


class LaplacianBlur:
    """Embedded and production backend "opencv-laplacian" (the paper's method; no weights)."""

    metric = "blur"
    backend = "opencv-laplacian"
    needs_pairs = False

    def __init__(self, percentile: float = DEFAULT_PERCENTILE, max_side: int | None = DEFAULT_MAX_SIDE) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"blur percentile must be in [0, 100], got {percentile}")
        if max_side is not None and max_side < 8:
            raise ValueError(f"blur max_side must be >= 8 pixels or None, got {max_side}")
        self.percentile = percentile
        self.max_side = max_side
        self.version = f"opencv {cv2.__version__}; laplacian variance at max side {max_side}, p{percentile:g} over frames"

    def setup(self) -> None:
        """Nothing to load."""

    def frame_scores(self, frames: list[np.ndarray]) -> list[float]:
        return [laplacian_variance(self._shrink(frame)) for frame in frames]

    def _shrink(self, frame: np.ndarray) -> np.ndarray:
        if self.max_side is None or max(frame.shape[:2]) <= self.max_side:
            return frame
        return resize_long_side(frame, self.max_side)

    def score(self, frames: list[np.ndarray], pairs: list | None = None) -> float:
        values = self.frame_scores(frames)
        return float(np.percentile(values, self.percentile)) if values else float("nan")
