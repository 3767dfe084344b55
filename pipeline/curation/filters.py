"""The App. B quality filters as pure rules: pose uncertainty, aesthetic, optical flow, blur, OCR text.

"We compute the average of the maximum joint uncertainty across all frames for each video and discard
the top 10% most uncertain [...] The thresholds for these metrics [aesthetic, optical flow magnitude,
Laplacian blur, OCR text ratio] are set to 5.0, 2.0, 100, and 0.05, respectively. Clips that fail to meet
any of the above quality thresholds are discarded."

Filters run in the paper's order; a clip's reason is the first filter it fails, and the funnel counts
the clips left after each filter.

The threshold numbers live in one place, ``pipeline.curation.scores.base.DEFAULT_THRESHOLDS`` (per metric and
backend: the paper's values for the paper's backends, the embedded backends' own with the reason);
``Thresholds`` takes its defaults from there (``Thresholds.for_backends``), never from copies.
Beyond the paper, the flow filter reads the subject's flow by default (``flow_region``, see
``pipeline.curation.scores.flow``); "frame" is the paper's whole-frame score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Reject reasons (rejects.reason) per filter, in the paper's order.
FILTER_ORDER = ("pose_uncertainty", "aesthetic", "flow", "blur", "ocr")
REASONS = {"pose_uncertainty": "pose_uncertainty", "aesthetic": "aesthetic", "flow": "static", "blur": "blur", "ocr": "text"}


FLOW_REGIONS = ("subject", "frame")  # which flow score the flow filter reads
FLOW_SCORE = {"subject": "subject_flow", "frame": "flow"}
_THRESHOLD_METRIC = {"min_aesthetic": "aesthetic", "min_flow": "flow", "min_blur": "blur", "max_text_ratio": "ocr"}


def default_threshold(metric: str, backend: str | None = None) -> float:
    """The keep-rule value of ``metric`` scored by ``backend`` (None: the embedded default backend),
    from ``scores.base.DEFAULT_THRESHOLDS``."""
    from pipeline.curation.scores.base import DEFAULT_BACKENDS, keep_rule

    return keep_rule(metric, backend or DEFAULT_BACKENDS[metric]).value


@dataclass(frozen=True)
class Thresholds:
    """Keep-rules of one curation run. ``uncertainty_drop`` is the share of most uncertain clips dropped;
    the other defaults are the embedded backends' keep-rules (``for_backends`` for other backends)."""

    uncertainty_drop: float = 0.10
    min_aesthetic: float = field(default_factory=lambda: default_threshold("aesthetic"))
    min_flow: float = field(default_factory=lambda: default_threshold("flow"))
    min_blur: float = field(default_factory=lambda: default_threshold("blur"))
    max_text_ratio: float = field(default_factory=lambda: default_threshold("ocr"))
    flow_region: str = "subject"

    @classmethod
    def for_backends(cls, backends: dict[str, str], uncertainty_drop: float = 0.10, flow_region: str = "subject",
                     **explicit: float | None) -> "Thresholds":
        """Each threshold given in ``explicit`` (min_aesthetic=..., None = not given), else the default
        keep-rule of the backend in ``backends`` ({metric: backend}) that produced the score."""
        unknown = set(explicit) - set(_THRESHOLD_METRIC)
        if unknown:
            raise ValueError(f"unknown thresholds {sorted(unknown)}; expected {sorted(_THRESHOLD_METRIC)}")
        values = {name: explicit[name] if explicit.get(name) is not None else default_threshold(metric, backends.get(metric))
                  for name, metric in _THRESHOLD_METRIC.items()}
        return cls(uncertainty_drop=uncertainty_drop, flow_region=flow_region, **values).validated()

    def validated(self) -> "Thresholds":
        if not 0.0 <= self.uncertainty_drop < 1.0:
            raise ValueError(f"uncertainty_drop = {self.uncertainty_drop}; must be in [0, 1)")
        for name in ("min_aesthetic", "min_flow", "min_blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)}; must be >= 0")
        if not 0.0 <= self.max_text_ratio <= 1.0:
            raise ValueError(f"max_text_ratio = {self.max_text_ratio}; must be in [0, 1]")
        if self.flow_region not in FLOW_REGIONS:
            raise ValueError(f"flow_region = {self.flow_region!r}; choose one of {FLOW_REGIONS}")
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
        "flow": scores[FLOW_SCORE[thresholds.flow_region]] >= thresholds.min_flow,
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
