"""Ground-truth SMPL read from a sidecar file beside the video: the pose backend for the
generated sample and for datasets that ship SMPL fits.

Sidecar ``<video stem>.smpl.npz`` (next to the video):

- ``pose`` ``(T, P, 24, 3)`` axis-angle, OpenCV camera frame (+x right, +y down, +z forward);
- ``transl`` ``(T, P, 3)`` metres;
- optional ``joint_uncertainty`` ``(T, P, 24)`` metres (zeros when absent, and the
  backend is then recorded as ``annotations(no-uncertainty)``);
- optional ``betas``, ``intrinsics`` (3, 3), ``fps``.

Person ``p`` is absent from frame ``t`` where its pose is NaN; the frame's person
count is the number of people with a finite pose. The primary person is the one
with the lowest mean joint uncertainty (the most confident), the first person in
the file on ties (always, when there is no uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.motion.skeleton import NUM_JOINTS
from pipeline.curation.pose.base import FrameDetections, PoseTrack, track_from_detections

SIDECAR_SUFFIX = ".smpl.npz"


def sidecar_path(video_path: str | Path) -> Path:
    """Where the ground-truth SMPL of a video lives: ``<folder>/<video stem>.smpl.npz``."""
    video = Path(video_path)
    return video.with_name(video.stem + SIDECAR_SUFFIX)


@dataclass
class SmplAnnotation:
    """The arrays of one sidecar file; NaN marks a person absent from a frame."""

    pose: np.ndarray  # (T, P, 24, 3) float32
    transl: np.ndarray  # (T, P, 3) float32
    joint_uncertainty: np.ndarray | None  # (T, P, 24) float32 metres, or None when not annotated
    betas: np.ndarray | None = None
    intrinsics: np.ndarray | None = None  # (3, 3)
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    @property
    def present(self) -> np.ndarray:
        """(T, P) bool: person p is in frame t (finite pose)."""
        return np.isfinite(self.pose).all(axis=(2, 3))


def load_sidecar(path: str | Path) -> SmplAnnotation:
    """Read and check a ``.smpl.npz`` sidecar; errors name the file and the expected shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pose_backend 'annotations' expects ground-truth SMPL in {path} "
            f"(the video's stem + '{SIDECAR_SUFFIX}'), not found"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    for key in ("pose", "transl"):
        if key not in arrays:
            raise ValueError(f"{path}: missing array '{key}'")
    pose = arrays["pose"].astype(np.float32)
    if pose.ndim != 4 or pose.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(f"{path}: 'pose' must be (T, P, {NUM_JOINTS}, 3), got {pose.shape}")
    num_frames, num_people = pose.shape[:2]
    transl = arrays["transl"].astype(np.float32)
    if transl.shape != (num_frames, num_people, 3):
        raise ValueError(f"{path}: 'transl' must be (T, P, 3) = {(num_frames, num_people, 3)}, got {transl.shape}")
    uncertainty = arrays.get("joint_uncertainty")
    if uncertainty is not None:
        uncertainty = uncertainty.astype(np.float32)
        if uncertainty.shape != (num_frames, num_people, NUM_JOINTS):
            raise ValueError(
                f"{path}: 'joint_uncertainty' must be (T, P, {NUM_JOINTS}) = "
                f"{(num_frames, num_people, NUM_JOINTS)}, got {uncertainty.shape}"
            )
    annotation = SmplAnnotation(
        pose=pose,
        transl=transl,
        joint_uncertainty=uncertainty,
        betas=arrays.get("betas"),
        intrinsics=arrays.get("intrinsics"),
        fps=float(arrays["fps"]) if "fps" in arrays else None,
    )
    present = annotation.present
    if not np.isfinite(transl).all(axis=2)[present].all():
        raise ValueError(f"{path}: 'transl' is not finite for a person whose pose is")
    if uncertainty is not None and not np.isfinite(uncertainty).all(axis=2)[present].all():
        raise ValueError(f"{path}: 'joint_uncertainty' is not finite for a person whose pose is")
    return annotation


class AnnotationPoses:
    """Pose backend that reads ``<video stem>.smpl.npz`` instead of running a model."""

    name = "annotations"

    def estimate(self, video_path: str, start_frame: int, end_frame: int) -> PoseTrack:
        """Primary-person track for frames ``[start_frame, end_frame)`` of the sidecar."""
        path = sidecar_path(video_path)
        annotation = load_sidecar(path)
        if not 0 <= start_frame <= end_frame <= annotation.num_frames:
            raise ValueError(
                f"{path} holds {annotation.num_frames} frames; cannot give frames "
                f"[{start_frame}, {end_frame})"
            )
        rows = slice(start_frame, end_frame)
        present = annotation.present[rows]
        uncertainty = annotation.joint_uncertainty
        if uncertainty is None:
            uncertainty = np.zeros(annotation.pose.shape[:3], np.float32)
        detections = []
        for t, people in enumerate(present):
            frame = start_frame + t
            found_uncertainty = uncertainty[frame, people]
            detections.append(
                FrameDetections(
                    pose=annotation.pose[frame, people],
                    transl=annotation.transl[frame, people],
                    joint_uncertainty=found_uncertainty,
                    score=-found_uncertainty.mean(axis=1),
                )
            )
        backend = self.name if annotation.joint_uncertainty is not None else f"{self.name}(no-uncertainty)"
        return track_from_detections(np.arange(start_frame, end_frame), detections, backend)
