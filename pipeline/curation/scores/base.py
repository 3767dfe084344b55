"""Clip-quality scores of paper App. B ("Visual and Motion Quality Assessment"): the shared parts.

The paper keeps a clip only if its LAION aesthetic score is >= 5.0, its UniMatch
optical-flow magnitude >= 2.0, its OpenCV Laplacian blur score >= 100 and its
CRAFT OCR text ratio <= 0.05. Each of the four metrics has backends behind one
``ClipScorer`` protocol: an embedded default that runs offline on a CPU and, where
the paper used a learned model, a production backend loading real weights from
``MTVCRAFT_WEIGHTS`` (DESIGN.md, "Models with real weights"). This module holds
the protocol, frame sampling, the backend factory and the keep-rules; `pipeline.curation.scores.score_clips`
decodes the clips and runs every scorer on them.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from pipeline.core.config import ENV_WEIGHTS, weights_folder

METRICS = ("blur", "flow", "ocr", "aesthetic")

DEFAULT_FLOW_LONG_SIDE = 512
"""Frames are resized to this long side before optical flow, so that a magnitude in
pixels per frame means the same motion on a 320x240 and a 1920x1080 video (the paper
does not say at which resolution it measured; 512 is a usual flow-network input)."""

Frame = np.ndarray  # RGB uint8 (H, W, 3)
FramePair = tuple[np.ndarray, np.ndarray]


# --- Which frames of a clip are scored -------------------------------------------------------------


@dataclass(frozen=True)
class FrameSampling:
    """Score every ``every_k``-th frame of a clip, at most ``max_frames`` frames (evenly spread).

    Bounds the cost per clip: a 33-frame clip is scored on 9 frames, a 600-frame
    one on 16, whatever its length.
    """

    every_k: int = 4
    max_frames: int = 16

    def __post_init__(self) -> None:
        if self.every_k < 1:
            raise ValueError(f"FrameSampling.every_k must be >= 1, got {self.every_k}")
        if self.max_frames < 1:
            raise ValueError(f"FrameSampling.max_frames must be >= 1, got {self.max_frames}")


def sample_indices(num_frames: int, sampling: FrameSampling = FrameSampling()) -> list[int]:
    """Sorted, distinct frame offsets in [0, num_frames): first and last included, evenly spread.

    The count is ceil(num_frames / every_k) capped at max_frames; with num_frames =
    every_k * m + 1 this is exactly every every_k-th frame (33 frames, k=4: 0, 4, ..., 32).
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if num_frames == 0:
        return []
    count = min(sampling.max_frames, math.ceil(num_frames / sampling.every_k))
    if count == 1:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, count)})


def resize_long_side(frame: Frame, long_side: int | None) -> Frame:
    """``frame`` scaled (aspect kept) so that its longer side is ``long_side``; None keeps it as is.

    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging.
    """
    if long_side is None:
        return frame
    if long_side < 8:
        raise ValueError(f"long_side must be >= 8 pixels, got {long_side}")
    height, width = frame.shape[:2]
    scale = long_side / max(height, width)
    if scale == 1.0:
        return frame
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


# --- The scorer contract ---------------------------------------------------------------------------


@runtime_checkable
class ClipScorer(Protocol):
    """One metric computed by one backend on the sampled frames of a clip.

    ``version`` (library versions, settings, weight file) is stored beside the score.
    ``setup`` loads models once (idempotent; ``score`` calls it when needed), so that a
    scorer can be built on the driver and shipped to a Ray actor before loading anything.
    ``score`` gets the sampled frames and, if ``needs_pairs``, pairs of successive frames
    (``score_clip`` says which); it returns NaN when it has nothing to score (e.g. flow on
    a one-frame clip).
    """

    metric: str  # one of METRICS
    backend: str
    version: str
    needs_pairs: bool  # flow needs pairs of successive frames

    def setup(self) -> None: ...

    def score(self, frames: list[Frame], pairs: list[FramePair]) -> float: ...


# Setting "<metric>_backend" -> {backend name: "module:class"}; the embedded default comes first.
# A backend's module is imported only when chosen, so optional packages stay optional.
SCORER_BACKENDS: dict[str, dict[str, str]] = {
    "blur": {"opencv-laplacian": "pipeline.curation.scores.blur:LaplacianBlur"},
    "flow": {"dis": "pipeline.curation.scores.flow:DISFlow", "raft": "pipeline.curation.scores.flow:RAFTFlow"},
    "ocr": {"rapidocr": "pipeline.curation.scores.ocr:RapidOCRText", "craft": "pipeline.curation.scores.ocr:CRAFTText"},
    "aesthetic": {
        "classical-iq": "pipeline.curation.scores.aesthetic:ClassicalIQ",
        "laion-clip-vit-l14": "pipeline.curation.scores.aesthetic:LaionAesthetic",
    },
}

DEFAULT_BACKENDS: dict[str, str] = {metric: next(iter(names)) for metric, names in SCORER_BACKENDS.items()}


def _backend_class(metric: str, backend: str) -> type:
    if metric not in SCORER_BACKENDS:
        raise ValueError(f"unknown clip-score metric {metric!r}; choose one of {METRICS}")
    choices = SCORER_BACKENDS[metric]
    if backend not in choices:
        raise ValueError(f"{metric}_backend = {backend!r} is unknown; choose one of {tuple(choices)}")
    module_name, class_name = choices[backend].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _resolve_weight_files(
    metric: str, backend: str, wanted: dict[str, str], weights_dir: str | os.PathLike | None
) -> dict[str, Path]:
    """Paths of a backend's weight files; one FileNotFoundError naming the setting and every missing file.

    A file name is relative to the weights folder; an absolute path is used as is.
    """
    folder = weights_folder(weights_dir)
    paths, missing = {}, []
    for option, name in wanted.items():
        path = Path(name) if Path(name).is_absolute() else (folder / name if folder else None)
        if path is None or not path.is_file():
            missing.append(str(path) if Path(name).is_absolute() else f"{ENV_WEIGHTS}/{name}")
        paths[option] = path
    if missing:
        where = f"{ENV_WEIGHTS} = {folder}" if folder else f"{ENV_WEIGHTS} is not set"
        raise FileNotFoundError(
            f"{metric}_backend = {backend!r} needs {' and '.join(missing)}, not found ({where}); "
            f"put the file(s) there or choose the embedded backend {DEFAULT_BACKENDS[metric]!r}"
        )
    return paths


def make_scorer(
    metric: str, backend: str | None = None, weights_dir: str | os.PathLike | None = None, **options
) -> ClipScorer:
    """Build the scorer named by the setting ``<metric>_backend`` (None: the embedded default).

    ``options`` go to the backend's constructor. A production backend lists its weight
    files in ``WEIGHT_FILES`` ({constructor option: file name in the weights folder});
    passing that option overrides the file name (or gives an absolute path). The files
    must exist now: a missing one fails here, naming the setting and the file.
    ``weights_dir`` None means ``$MTVCRAFT_WEIGHTS``.
    """
    backend = DEFAULT_BACKENDS.get(metric) if backend is None else backend
    backend_class = _backend_class(metric, backend)
    wanted = {option: str(options.pop(option, name)) for option, name in getattr(backend_class, "WEIGHT_FILES", {}).items()}
    if wanted:
        options.update(_resolve_weight_files(metric, backend, wanted, weights_dir))
    return backend_class(**options)


# --- Keep-rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepRule:
    """A clip is kept when ``score <op> value``; a NaN score (nothing to score) is never kept."""

    op: str  # ">=" or "<="
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"KeepRule.op must be '>=' or '<=', got {self.op!r}")

    def keeps(self, score: float) -> bool:
        if score is None or math.isnan(score):
            return False
        return score >= self.value if self.op == ">=" else score <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    @classmethod
    def parse(cls, text: str) -> "KeepRule":
        """'>= 100' -> KeepRule('>=', 100.0)."""
        op, _, value = text.strip().partition(" ")
        try:
            return cls(op, float(value))
        except ValueError as error:
            raise ValueError(f"a keep-rule looks like '>= 100' or '<= 0.05', got {text!r}") from error


DEFAULT_THRESHOLDS: dict[str, dict[str, KeepRule]] = {
    # The paper's method and threshold; measured at a long side of at most 512 px (blur.py says
    # why) and taken as the 25th percentile of the sampled frames.
    "blur": {"opencv-laplacian": KeepRule(">=", 100.0)},
    # Mean |flow| in pixels per frame between consecutive frames at DEFAULT_FLOW_LONG_SIDE.
    # NOT the paper's 2.0: the paper gives no unit for its UniMatch score, and the public
    # UniMatch scorer of video-curation pipelines (Open-Sora's) averages |flow components| over
    # frames 10 apart at 320x576. On the smoothly moving sample videos that unit reads ~5.4x
    # ours, so its 2.0 is ~0.37 px/frame here: 0.4. With 2.0 px/frame, 3 of the 5 real dance
    # videos in shared/real would be dropped as static (1.1-1.5); with 0.4 all pass (1.1-5.5)
    # and the generated near-static shot (0.04) fails. RAFT measures the same unit as DIS.
    "flow": {"dis": KeepRule(">=", 0.4), "raft": KeepRule(">=", 0.4)},
    # Union of text boxes / frame area, max over frames. CRAFT is the paper's detector: 0.05.
    # PP-OCR's DB boxes are grown by a margin like CRAFT's (unclip ratio 1.6), so the area
    # fraction is on the same scale and keeps 0.05 (see ocr.py).
    "ocr": {"rapidocr": KeepRule("<=", 0.05), "craft": KeepRule("<=", 0.05)},
    # The LAION predictor (paper): 5.0 on its 1-10 scale. "classical-iq" is NOT that score:
    # its own 0-10 scale (aesthetic.py) with its own threshold 4.0: the real dance videos score
    # 5.9-8.3 and the generated sample's shots 5.6-8.2, while a dark, flat, blurred frame
    # scores about 1.
    "aesthetic": {"classical-iq": KeepRule(">=", 4.0), "laion-clip-vit-l14": KeepRule(">=", 5.0)},
}


def keep_rule(metric: str, backend: str) -> KeepRule:
    """The default keep-rule of ``metric`` scored by ``backend``."""
    _backend_class(metric, backend)  # validates both names with the usual message
    return DEFAULT_THRESHOLDS[metric][backend]
