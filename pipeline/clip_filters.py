"""The App. B quality filters as pure rules: pose uncertainty, aesthetic, optical flow, blur, OCR text.

"We compute the average of the maximum joint uncertainty across all frames for each video and discard
the top 10% most uncertain [...] The thresholds for these metrics [aesthetic, optical flow magnitude,
Laplacian blur, OCR text ratio] are set to 5.0, 2.0, 100, and 0.05, respectively. Clips that fail to meet
any of the above quality thresholds are discarded."

Filters run in the paper's order; a clip's reason is the first filter it fails, and the funnel counts
the clips left after each filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Reject reasons (rejects.reason) per filter, in the paper's order.
FILTER_ORDER = ("pose_uncertainty", "aesthetic", "flow", "blur", "ocr")
REASONS = {"pose_uncertainty": "pose_uncertainty", "aesthetic": "aesthetic", "flow": "static", "blur": "blur", "ocr": "text"}


@dataclass(frozen=True)
class Thresholds:
    """Keep-rules of one curation run. ``uncertainty_drop`` is the share of most uncertain clips dropped."""

    uncertainty_drop: float = 0.10
    min_aesthetic: float = 5.0
    min_flow: float = 2.0
    min_blur: float = 100.0
    max_text_ratio: float = 0.05

    def validated(self) -> "Thresholds":
        if not 0.0 <= self.uncertainty_drop < 1.0:
            raise ValueError(f"uncertainty_drop = {self.uncertainty_drop}; must be in [0, 1)")
        for name in ("min_aesthetic", "min_flow", "min_blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)}; must be >= 0")
        if not 0.0 <= self.max_text_ratio <= 1.0:
            raise ValueError(f"max_text_ratio = {self.max_text_ratio}; must be in [0, 1]")
        return self


def clip_pose_uncertainty(joint_uncertainty: np.ndarray) -> float:
    """App. B: mean over frames of the maximum joint uncertainty, for one clip's (T, 24) array."""
    return float(np.nanmean(np.nanmax(joint_uncertainty, axis=1)))


def uncertainty_cut(values: np.ndarray, drop: float) -> float:
    """The value above which clips are among the ``drop`` most uncertain (recomputed every run).

    Clips with uncertainty strictly above the (1 - drop) quantile are dropped, so ties at the cut are
    kept and a set of identical values (e.g. a backend without uncertainty) loses nothing.
    """
    if len(values) == 0 or drop <= 0:
        return float("inf")
    return float(np.quantile(values, 1.0 - drop))


def first_failure(scores: dict, thresholds: Thresholds, cut: float) -> str | None:
    """The first filter (paper order) a clip fails, or None when it passes all; NaN scores fail."""
    checks = {
        "pose_uncertainty": scores["pose_uncertainty"] <= cut,
        "aesthetic": scores["aesthetic"] >= thresholds.min_aesthetic,
        "flow": scores["flow"] >= thresholds.min_flow,
        "blur": scores["blur"] >= thresholds.min_blur,
        "ocr": scores["text_ratio"] <= thresholds.max_text_ratio,
    }
    for name in FILTER_ORDER:
        if not bool(checks[name]):
            return name
    return None


def funnel(failures: list[str | None]) -> list[tuple[str, int]]:
    """Clips in, then clips left after each filter in order, ending with the kept count."""
    left = len(failures)
    out = [("clips in", left)]
    for name in FILTER_ORDER:
        left -= sum(1 for f in failures if f == name)
        out.append((f"after {name}", left))
    return out
