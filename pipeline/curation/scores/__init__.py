"""Clip-quality scores of paper App. B: blur, optical flow, OCR text ratio, aesthetic.

``make_scorer(metric, backend)`` builds a scorer (embedded default when backend is None),
``score_clip(video, start, end, scorers)`` scores one clip with all of them,
``score_video_clips(video, clips, scorers)`` every clip of a video in one pass (each frame decoded once), and
``DEFAULT_THRESHOLDS[metric][backend]`` is the keep-rule for each score.
"""

from .base import (
    DEFAULT_BACKENDS,
    DEFAULT_FLOW_LONG_SIDE,
    DEFAULT_THRESHOLDS,
    METRICS,
    SCORER_BACKENDS,
    ClipScorer,
    FrameSampling,
    KeepRule,
    keep_rule,
    make_scorer,
    resize_long_side,
    sample_indices,
)
from .score_clips import ClipToScore, score_clip, score_video_clips

__all__ = [
    "DEFAULT_BACKENDS", "DEFAULT_FLOW_LONG_SIDE", "DEFAULT_THRESHOLDS", "METRICS", "SCORER_BACKENDS", "ClipScorer",
    "ClipToScore", "FrameSampling", "KeepRule", "keep_rule", "make_scorer", "resize_long_side", "sample_indices", "score_clip",
    "score_video_clips",
]
