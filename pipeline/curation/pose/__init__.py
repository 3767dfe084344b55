"""Pose estimation stage (paper Sec. 3.1, App. B): per-frame SMPL of the primary person.

Backends share the ``PoseEstimator`` protocol and return a ``PoseTrack``; choose one
by the setting ``pose_backend`` through ``make_pose_estimator``.
"""

from pipeline.core.camera import DEFAULT_FOV_DEG, camera_intrinsics
from pipeline.curation.pose.base import (
    POSE_BACKENDS,
    FrameDetections,
    PoseEstimator,
    PoseTrack,
    choose_backend,
    estimator_options,
    make_pose_estimator,
    mediapipe_available,
    track_from_detections,
)

__all__ = [
    "DEFAULT_FOV_DEG",
    "POSE_BACKENDS",
    "FrameDetections",
    "PoseEstimator",
    "PoseTrack",
    "camera_intrinsics",
    "choose_backend",
    "estimator_options",
    "make_pose_estimator",
    "mediapipe_available",
    "track_from_detections",
]
