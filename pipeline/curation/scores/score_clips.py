"""Score sub-clips with every App. B scorer, each frame decoded once: ``score_clip`` for one clip,
``score_video_clips`` for all clips of a video in one seeking pass (what the ``clip_scores`` stage runs).

Frames are sampled by `FrameSampling`, flow pairs skip repeated frames (``REPEAT_LEVEL``), and with the pose
stage's joints the flow and blur scores look at the person's box (``subject_boxes``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from pipeline.core.video_io import iter_frames_at, iter_selected_frames
from pipeline.curation.scores.base import (
    DEFAULT_FLOW_LONG_SIDE,
    ClipScorer,
    Frame,
    FrameSampling,
    resize_long_side,
    sample_indices,
)

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
