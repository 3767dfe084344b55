"""Clip-quality scores of paper App. B ("Visual and Motion Quality Assessment"): the shared parts.

The paper keeps a clip only if its LAION aesthetic score is >= 5.0, its UniMatch
optical-flow magnitude >= 2.0, its OpenCV Laplacian blur score >= 100 and its
CRAFT OCR text ratio <= 0.05. Each of the four metrics has backends behind one
``ClipScorer`` protocol: an embedded default that runs offline on a CPU and, where
the paper used a learned model, a production backend loading real weights from
``MTVCRAFT_WEIGHTS`` (DESIGN.md, "Models with real weights"). This module holds
the protocol, frame sampling, the backend factory, the keep-rules and
``score_clip``, which decodes a clip once and runs every scorer on it.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np

from pipeline.core.config import ENV_WEIGHTS, weights_folder
from pipeline.core.video_io import iter_frames_at, iter_selected_frames

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


# --- Scoring a clip --------------------------------------------------------------------------------


REPEAT_LEVEL = 0.2
"""Mean absolute grey-level difference (0-255 scale, at the flow size) below which two frames
count as the same picture. Videos converted to a higher frame rate repeat frames (real samples
00006 and 00021, stored at 44 fps, repeat most frames two or three times: such pairs differ by
0.02-0.15); a pair of them shows no motion even while the person dances."""
REPEAT_WINDOW = 3


def _next_distinct(frames: dict[int, Frame], first: int, level: float, window: int) -> int:
    """The first frame after ``first`` (at most ``window`` ahead) that is not a repeat of it; else first + 1."""
    reference = cv2.cvtColor(frames[first], cv2.COLOR_RGB2GRAY).astype(np.int16)
    for other in range(first + 1, first + window + 1):
        if other not in frames:
            break
        grey = cv2.cvtColor(frames[other], cv2.COLOR_RGB2GRAY).astype(np.int16)
        if np.abs(grey - reference).mean() >= level:
            return other
    return first + 1


def subject_boxes(joints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 4) boxes x0, y0, x1, y1 in pixels around a clip's SMPL joints (T, 24, 3), camera frame,
    projected through the App. B camera (55 degrees on the longer side); NaN rows where unknown."""
    from pipeline.core.camera import camera_intrinsics, project

    pixels = project(np.asarray(joints, np.float64), camera_intrinsics(width, height))
    with np.errstate(invalid="ignore"):
        return np.concatenate([pixels.min(axis=1), pixels.max(axis=1)], axis=1)


@dataclass(frozen=True)
class _ClipPlan:
    """Which frames of clip [start, end) ``score_clip`` decodes: offsets from ``start``."""

    start: int
    end: int
    frame_offsets: frozenset[int]  # frames every scorer gets (at native size)
    pair_starts: tuple[int, ...]  # first frames of the flow pairs
    pair_offsets: frozenset[int]  # frames the pairs may use (kept at the flow size)
    repeat_window: int

    @property
    def last(self) -> int:
        return max(self.frame_offsets | self.pair_offsets)

    @property
    def offsets(self) -> list[int]:
        return sorted(self.frame_offsets | self.pair_offsets)


def _plan(start: int, end: int, scorers: Sequence[ClipScorer], sampling: FrameSampling, repeat_window: int) -> _ClipPlan:
    if not 0 <= start < end:
        raise ValueError(f"a clip needs 0 <= start < end, got start={start}, end={end}")
    if repeat_window < 1:
        raise ValueError(f"repeat_window must be >= 1, got {repeat_window}")
    metrics = [scorer.metric for scorer in scorers]
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"one scorer per metric, got metrics {metrics}")
    num_frames = end - start
    frame_offsets = set(sample_indices(num_frames, sampling))
    wants_pairs = any(scorer.needs_pairs for scorer in scorers)
    # Pair starts leave room for a full look-ahead window when the clip is long enough.
    span = num_frames - repeat_window if num_frames > repeat_window else num_frames - 1
    pair_starts = sample_indices(span, sampling) if wants_pairs else []
    pair_offsets = {i + step for i in pair_starts for step in range(repeat_window + 1) if i + step < num_frames}
    return _ClipPlan(start, end, frozenset(frame_offsets), tuple(pair_starts), frozenset(pair_offsets), repeat_window)


class _ClipFrames:
    """The decoded frames of one planned clip: native-size sampled frames and flow-size pair frames."""

    def __init__(self, plan: _ClipPlan, flow_long_side: int | None):
        self.plan, self.flow_long_side = plan, flow_long_side
        self.full: dict[int, Frame] = {}
        self.small: dict[int, Frame] = {}  # pair frames at the flow size (kept small: up to 16 x 4 of them)
        self.small_scale = 1.0  # flow-size pixels per video pixel
        self.decoded = 0  # offsets seen so far (last one + 1)

    def add(self, offset: int, frame: Frame) -> None:
        self.decoded = offset + 1
        if offset in self.plan.frame_offsets:
            self.full[offset] = frame
        if offset in self.plan.pair_offsets:
            self.small[offset] = resize_long_side(frame, self.flow_long_side)
            self.small_scale = self.small[offset].shape[1] / frame.shape[1]

    def check_complete(self, video_path) -> None:
        if self.decoded <= self.plan.last:
            start, end = self.plan.start, self.plan.end
            raise ValueError(
                f"{video_path}: clip [{start}, {end}) needs frame {start + self.plan.last}, "
                f"but the video ends at frame {start + self.decoded}"
            )


def score_clip(
    video_path: str | os.PathLike,
    start: int,
    end: int,
    scorers: Sequence[ClipScorer],
    sampling: FrameSampling = FrameSampling(),
    flow_long_side: int | None = DEFAULT_FLOW_LONG_SIDE,
    repeat_window: int = REPEAT_WINDOW,
    boxes: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Scores {metric: value} of frames [start, end) of a video, each scorer run once.

    Only the frames scored are decoded for RGB, from the keyframe at or before the clip
    (``video_io.iter_frames_at``), up to the last frame needed. Every scorer gets the
    frames at ``sample_indices(end - start)``. A scorer that needs pairs gets, for each i
    in ``sample_indices(end - start - repeat_window)``, the pair (i, j) with j the next frame that is
    not a repeat of frame i (see ``REPEAT_LEVEL``; at most ``repeat_window`` frames ahead,
    else i + 1; ``repeat_window=1`` gives plain (i, i + 1)), both resized to
    ``flow_long_side`` (None: native size). Flow is thus measured per step between
    distinct frames.

    ``boxes`` (end - start, 4): the subject's box x0, y0, x1, y1 in video pixels on each frame of
    the clip (NaN where unknown), e.g. ``subject_boxes``. With them the flow scorer also gives
    "subject_flow" and "camera_flow" (``flow.region_scores``, on each pair's two boxes joined
    and grown by ``flow.SUBJECT_MARGIN``).

    ``timings``, when given, gets the seconds spent decoding ("decode") and in each scorer (its metric)
    added to it: where a clip's time goes. ``score_video_clips`` scores many clips of one video in
    one pass.
    """
    plan = _plan(start, end, scorers, sampling, repeat_window)
    if not scorers:
        return {}
    timings = {} if timings is None else timings
    clip = _ClipFrames(plan, flow_long_side)
    clock = time.perf_counter()
    for offset, frame in iter_selected_frames(video_path, start, plan.offsets):
        clip.add(offset, frame)
    timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - clock
    clip.check_complete(video_path)
    return _score_frames(clip, scorers, boxes, timings)


@dataclass(frozen=True)
class ClipToScore:
    """One clip of a video for ``score_video_clips``: frames [start, end) and optional subject boxes."""

    start: int
    end: int
    boxes: np.ndarray | None = None


def score_video_clips(
    video_path: str | os.PathLike,
    clips: Sequence[ClipToScore],
    scorers: Sequence[ClipScorer],
    sampling: FrameSampling = FrameSampling(),
    flow_long_side: int | None = DEFAULT_FLOW_LONG_SIDE,
    repeat_window: int = REPEAT_WINDOW,
    timings: dict[str, float] | None = None,
) -> list[dict[str, float] | Exception]:
    """``score_clip`` of every clip of one video, in one pass over the video: each frame is decoded at
    most once (the clips' frames merged, sorted, and decoded by ``video_io.iter_frames_at``, which seeks
    over gaps wider than a group of pictures), and a clip is scored as soon as its last frame arrives, so
    only the open clips' sampled frames are held (bounded memory for a long video). Returns each clip's
    scores, in the given order, or the exception that clip raised (a bad clip does not stop the others)."""
    plans: list[_ClipPlan | Exception] = []
    for clip in clips:
        try:
            plans.append(_plan(clip.start, clip.end, scorers, sampling, repeat_window))
        except ValueError as error:
            plans.append(error)
    results: list = [error if isinstance(error, Exception) else None for error in plans]
    timings = {} if timings is None else timings
    users: dict[int, list[int]] = {}  # frame number -> the clips that use it
    for k, plan in enumerate(plans):
        if not isinstance(plan, Exception):
            for offset in plan.offsets:
                users.setdefault(plan.start + offset, []).append(k)
    open_clips: dict[int, _ClipFrames] = {}
    by_last = sorted((plan.start + plan.last, k) for k, plan in enumerate(plans) if not isinstance(plan, Exception))
    done = 0  # clips of ``by_last`` scored so far

    def close_through(number: int) -> None:
        nonlocal done
        while done < len(by_last) and by_last[done][0] <= number:
            k = by_last[done][1]
            clip = open_clips.pop(k)
            try:
                clip.check_complete(video_path)
                results[k] = _score_frames(clip, scorers, clips[k].boxes, timings)
            except Exception as error:  # noqa: BLE001 (one bad clip is recorded, the video's other clips go on)
                results[k] = error
            done += 1

    frames = iter_frames_at(video_path, sorted(users))
    clock = time.perf_counter()
    for number, frame in frames:
        for k in users[number]:
            plan = plans[k]
            open_clips.setdefault(k, _ClipFrames(plan, flow_long_side)).add(number - plan.start, frame)
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - clock
        close_through(number)
        clock = time.perf_counter()
    timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - clock
    for k, plan in enumerate(plans):  # clips the video ended before
        if results[k] is None:
            clip = open_clips.pop(k, None) or _ClipFrames(plan, flow_long_side)
            try:
                clip.check_complete(video_path)
            except ValueError as error:
                results[k] = error
    return results


def _score_frames(clip: _ClipFrames, scorers: Sequence[ClipScorer], boxes: np.ndarray | None,
                  timings: dict[str, float]) -> dict[str, float]:
    """Every scorer on one clip's decoded frames (``score_clip``)."""
    plan, small, small_scale = clip.plan, clip.small, clip.small_scale
    start, end, num_frames = plan.start, plan.end, plan.end - plan.start
    pair_starts = list(plan.pair_starts)
    frames = [clip.full[i] for i in sorted(plan.frame_offsets)]
    ends = [_next_distinct(small, i, REPEAT_LEVEL, plan.repeat_window) for i in pair_starts]
    pairs = [(small[i], small[j]) for i, j in zip(pair_starts, ends)]
    scores = {}
    for scorer in scorers:
        clock = time.perf_counter()
        if scorer.needs_pairs and boxes is not None and hasattr(scorer, "pair_flows"):
            from pipeline.curation.scores.flow import grow_box, region_scores

            boxes = np.asarray(boxes, np.float64)
            if boxes.shape != (num_frames, 4):
                raise ValueError(f"boxes must be ({num_frames}, 4) for clip [{start}, {end}), got {boxes.shape}")
            pair_boxes = []
            for i, j in zip(pair_starts, ends):
                # The pair's two boxes joined (fmin / fmax: a frame without a box leaves the other's).
                joined = np.concatenate([np.fmin(boxes[i, :2], boxes[j, :2]), np.fmax(boxes[i, 2:], boxes[j, 2:])])
                pair_boxes.append(grow_box(joined) * small_scale if np.all(np.isfinite(joined)) else None)
            scores.update(region_scores(scorer, pairs, pair_boxes))
        else:
            scores[scorer.metric] = float(scorer.score(frames, pairs if scorer.needs_pairs else []))
        timings[scorer.metric] = timings.get(scorer.metric, 0.0) + time.perf_counter() - clock
    return scores
