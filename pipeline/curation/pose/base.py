"""The pose stage's contract: a per-frame SMPL track of the primary person (paper Sec. 3.1, App. B).

For each clip the paper estimates frame-wise SMPL joint rotations, root
translation and per-joint confidence with NLF, through a camera with a 55 degree
field of view on the image's longer side and a centred principal point (App. B).
Every backend returns the same ``PoseTrack`` so that the stages after it
(subclips, pose-uncertainty filter, forward kinematics) do not care which
backend ran; the backend's name and version travel with the columns.

Primary person: where several people are found in a frame, the track keeps the
most confident detection (highest detector score for NLF; see each backend for
its score) and ``num_people`` still counts everyone, so that the single-person
filter downstream can drop those frames.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from models.motion.skeleton import NUM_JOINTS


@dataclass
class PoseTrack:
    """Primary-person SMPL for a run of frames of one video.

    Coordinates are the OpenCV camera frame (+x right, +y down, +z forward).
    Rows where ``num_people == 0`` hold NaN in ``pose``, ``transl`` and
    ``joint_uncertainty``.
    """

    frame_index: np.ndarray  # (T,) int64, strictly increasing video frame numbers
    num_people: np.ndarray  # (T,) int16, people detected in the frame (all of them)
    pose: np.ndarray  # (T, 24, 3) float32, axis-angle; joint 0 is the global orientation
    transl: np.ndarray  # (T, 3) float32, root translation in metres
    joint_uncertainty: np.ndarray  # (T, 24) float32, metres
    backend: str  # e.g. "nlf:nlf_l_multi.torchscript", "annotations"
    # (T,) int8 body coverage seen by the backend (body_coverage.py: 2 full, 1 upper, 0 partial, -1 unknown);
    # None: the backend gives none and the sub-clip stage judges the projected SMPL joints.
    body_coverage: np.ndarray | None = None
    seconds: dict | None = None  # where the backend's time went, e.g. {"decode": 1.2, "pose": 30.5} (not data)

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    def validate(self) -> "PoseTrack":
        """Check shapes, dtypes and the NaN convention; raise ValueError naming the field."""
        t = self.frame_index.shape[0] if self.frame_index.ndim == 1 else -1
        expected = {
            "frame_index": ((t,), np.int64),
            "num_people": ((t,), np.int16),
            "pose": ((t, NUM_JOINTS, 3), np.float32),
            "transl": ((t, 3), np.float32),
            "joint_uncertainty": ((t, NUM_JOINTS), np.float32),
        }
        for field, (shape, dtype) in expected.items():
            value = getattr(self, field)
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
                raise ValueError(f"PoseTrack.{field} must be {np.dtype(dtype)} {shape}, got {got}")
        if self.body_coverage is not None and (self.body_coverage.shape != (t,) or self.body_coverage.dtype != np.int8):
            raise ValueError(f"PoseTrack.body_coverage must be int8 ({t},) or None, got {self.body_coverage.dtype} "
                             f"{self.body_coverage.shape}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError("PoseTrack.backend must name the backend that produced the track")
        if t > 1 and np.any(np.diff(self.frame_index) <= 0):
            raise ValueError("PoseTrack.frame_index must be strictly increasing")
        if np.any(self.num_people < 0):
            raise ValueError("PoseTrack.num_people must be >= 0")
        absent = self.num_people == 0
        for field in ("pose", "transl", "joint_uncertainty"):
            if not np.all(np.isnan(_rows(getattr(self, field))[absent])):
                raise ValueError(f"PoseTrack.{field} must be NaN on frames with no person")
        for field in ("pose", "transl"):
            if not np.all(np.isfinite(_rows(getattr(self, field))[~absent])):
                raise ValueError(f"PoseTrack.{field} must be finite on frames with a person")
        return self

    @classmethod
    def concat(cls, tracks: Sequence["PoseTrack"]) -> "PoseTrack":
        """Join consecutive tracks of the same video and backend (e.g. decoded batches)."""
        if not tracks:
            raise ValueError("PoseTrack.concat needs at least one track")
        backends = {track.backend for track in tracks}
        if len(backends) != 1:
            raise ValueError(f"PoseTrack.concat: tracks come from different backends {sorted(backends)}")
        joined = cls(
            frame_index=np.concatenate([t.frame_index for t in tracks]),
            num_people=np.concatenate([t.num_people for t in tracks]),
            pose=np.concatenate([t.pose for t in tracks]),
            transl=np.concatenate([t.transl for t in tracks]),
            joint_uncertainty=np.concatenate([t.joint_uncertainty for t in tracks]),
            backend=tracks[0].backend,
            body_coverage=None if any(t.body_coverage is None for t in tracks)
            else np.concatenate([t.body_coverage for t in tracks]),
        )
        return joined.validate()


def _rows(values: np.ndarray) -> np.ndarray:
    """(T, ...) -> (T, rest) flattened, also for T = 0."""
    return values.reshape(values.shape[0], int(np.prod(values.shape[1:])))


@dataclass
class FrameDetections:
    """Everyone a backend found in one frame; ``score`` ranks them (higher = more confident)."""

    pose: np.ndarray  # (n, 24, 3) axis-angle
    transl: np.ndarray  # (n, 3) metres
    joint_uncertainty: np.ndarray  # (n, 24) metres
    score: np.ndarray  # (n,)


def track_from_detections(
    frame_index: Sequence[int] | np.ndarray, detections: Sequence[FrameDetections], backend: str
) -> PoseTrack:
    """Keep the most confident person of each frame (first one on ties); NaN rows where nobody was found."""
    num_frames = len(detections)
    if len(frame_index) != num_frames:
        raise ValueError(f"{len(frame_index)} frame indices for {num_frames} frames of detections")
    pose = np.full((num_frames, NUM_JOINTS, 3), np.nan, np.float32)
    transl = np.full((num_frames, 3), np.nan, np.float32)
    uncertainty = np.full((num_frames, NUM_JOINTS), np.nan, np.float32)
    num_people = np.zeros(num_frames, np.int16)
    for row, found in enumerate(detections):
        num_people[row] = len(found.score)
        if len(found.score) == 0:
            continue
        best = int(np.argmax(found.score))
        pose[row] = found.pose[best]
        transl[row] = found.transl[best]
        uncertainty[row] = found.joint_uncertainty[best]
    track = PoseTrack(
        frame_index=np.asarray(frame_index, dtype=np.int64),
        num_people=num_people,
        pose=pose,
        transl=transl,
        joint_uncertainty=uncertainty,
        backend=backend,
    )
    return track.validate()


@runtime_checkable
class PoseEstimator(Protocol):
    """A pose backend: frames ``[start_frame, end_frame)`` of a video -> its ``PoseTrack``."""

    name: str

    def estimate(self, video_path: str, start_frame: int, end_frame: int) -> PoseTrack: ...


# Setting `pose_backend` -> "module:class". Add a backend by adding a line
# (its module is imported only when chosen, so optional packages stay optional).
POSE_BACKENDS: dict[str, str] = {
    "annotations": "pipeline.curation.pose.annotations:AnnotationPoses",
    "nlf": "pipeline.curation.pose.nlf:NLFPoses",
    "mediapipe": "pipeline.curation.pose.mediapipe_pose:MediaPipePoses",
}



def mediapipe_available() -> bool:
    """Whether the embedded MediaPipe pose backend can run (its wheel is installed ``--no-deps`` by the Makefile)."""
    return importlib.util.find_spec("mediapipe") is not None


def choose_backend(requested: str, weights: str, has_sidecar: bool = False) -> str:
    """The pose backend for one video, or "" when none can run.

    ``requested`` is the setting ``pose_backend``; "auto" picks the sidecar annotations when the video has one,
    else NLF when ``nlf_l_multi.torchscript`` is in the ``weights`` folder (the paper's estimator), else the
    embedded MediaPipe + SMPL IK fit. Curation, benchmarks and the animate CLI all choose this way.
    """
    from pathlib import Path

    from pipeline.core.config import NLF_WEIGHTS_FILE

    if requested != "auto":
        return requested
    if has_sidecar:
        return "annotations"
    if weights and (Path(weights) / NLF_WEIGHTS_FILE).is_file():
        return "nlf"
    return "mediapipe" if mediapipe_available() else ""


def estimator_options(name: str, weights: str, frame_step: int = 1) -> dict:
    """Constructor options of a backend from the settings: NLF's model path in the weights folder
    (``weights``), MediaPipe's ``frame_step`` (the setting ``pose_frame_step``)."""
    from pathlib import Path

    from pipeline.core.config import NLF_WEIGHTS_FILE

    if frame_step < 1:
        raise ValueError(f"pose_frame_step = {frame_step}; must be >= 1")
    if name == "nlf" and weights:
        return {"model_path": str(Path(weights) / NLF_WEIGHTS_FILE)}
    if name == "mediapipe":
        return {"frame_step": frame_step}
    return {}


def make_pose_estimator(name: str, **options) -> PoseEstimator:
    """Build the backend named by the setting ``pose_backend``, passing ``options`` to its constructor."""
    if name not in POSE_BACKENDS:
        raise ValueError(f"pose_backend = {name!r} is unknown; choose one of {tuple(POSE_BACKENDS)}")
    module_name, class_name = POSE_BACKENDS[name].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(**options)
