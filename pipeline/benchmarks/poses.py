"""Driving motion of a benchmark video: sidecar joints, else the project's pose backend (App. A.3: the motion
comes from the test video's poses).

Sidecars, checked in this order (the first one found is used):

- ``<video stem>.smpl.npz``: the project's SMPL contract (``pipeline.pose.annotations``: ``pose`` (T, P, 24, 3),
  ``transl`` (T, P, 3), NaN where a person is absent); the primary person is taken;
- ``<video stem>.joints.npz`` (or ``joints.npz`` inside a frame folder): ``joints`` (T, 24, 3) metres, or
  single-person ``pose`` (T, 24, 3) / (T, 72) axis-angle + ``transl`` (T, 3) (``tokenize_motion.load_motion_file``).

Joints are forward kinematics on the neutral SMPL shape plus the root translation (Sec. 3.1), exactly what
training used (``pipeline.subclips.neutral_joints``). Without a sidecar, ``estimate_joints`` runs the pose
backend of the settings: ``pose_backend="auto"`` picks NLF when ``nlf_l_multi.torchscript`` is in
``MTVCRAFT_WEIGHTS``, else the embedded MediaPipe + SMPL IK fit when installed, as the curation stage does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import NLF_WEIGHTS_FILE, PipelineSettings
from pipeline.subclips import neutral_joints

if TYPE_CHECKING:
    from pipeline.pose import PoseTrack

JOINTS_SUFFIX = ".joints.npz"
log = logging.getLogger(__name__)


class PoseUnavailable(RuntimeError):
    """A benchmark video has no joints sidecar and no pose backend can estimate its poses."""


def video_sidecar_joints(video: Path) -> tuple[np.ndarray | None, str]:
    """(joints (T, 24, 3), sidecar path) of a video file from its sidecar, or (None, "") when it has none."""
    from pipeline.pose.annotations import AnnotationPoses, load_sidecar, sidecar_path

    smpl = sidecar_path(video)
    if smpl.is_file():
        track = AnnotationPoses().estimate(str(video), 0, load_sidecar(smpl).num_frames)
        return neutral_joints(track.pose, track.transl), str(smpl)
    plain = video.with_name(video.stem + JOINTS_SUFFIX)
    return (joints_file(plain), str(plain)) if plain.is_file() else (None, "")


def joints_file(path: Path) -> np.ndarray:
    """Joints (T, 24, 3) float32 from an ``.npz`` with ``joints`` or ``pose`` + ``transl``."""
    from pipeline.tokenize_motion import load_motion_file

    return load_motion_file(path)


def pose_backend_for(settings: PipelineSettings) -> str:
    """The backend that estimates benchmark poses; ``PoseUnavailable`` naming the settings when none can."""
    from pipeline.pose import choose_backend

    backend = choose_backend(settings.pose_backend, settings.weights)
    nlf_ready = bool(settings.weights) and (Path(settings.weights) / NLF_WEIGHTS_FILE).is_file()
    if backend == "annotations" or not backend:
        raise PoseUnavailable(
            f"pose_backend={settings.pose_backend!r} cannot estimate poses: give each test video a joints sidecar "
            f"(<stem>.smpl.npz or <stem>{JOINTS_SUFFIX}), put {NLF_WEIGHTS_FILE} in MTVCRAFT_WEIGHTS, or install mediapipe"
        )
    if backend == "nlf" and not nlf_ready:
        settings.weight_file(NLF_WEIGHTS_FILE, "pose_backend=nlf")  # raises, naming the file and the setting
    return backend


def estimate_joints(frames: np.ndarray, settings: PipelineSettings, what: str = "video") -> np.ndarray:
    """Joints (T, 24, 3) of the primary person in uint8 (T, H, W, 3) frames, with the settings' pose backend."""
    from pipeline.pose import estimator_options, make_pose_estimator

    backend = pose_backend_for(settings)
    try:
        estimator = make_pose_estimator(backend, **estimator_options(backend, settings.weights))
    except (ImportError, AttributeError) as err:  # e.g. a mediapipe wheel that does not import here
        raise PoseUnavailable(f"{what}: the {backend} pose backend does not start: {err}") from err
    track = estimator.estimate_frames(np.ascontiguousarray(frames))
    return track_joints(track, what, f"the {backend} pose backend")


def track_joints(track: PoseTrack, what: str, source: str) -> np.ndarray:
    """FK joints of a primary-person `PoseTrack`, the frames without a person filled when the gap is short
    (`pipeline.pose.gap_filling`: slerp between the poses around it); a long absence is ``PoseUnavailable``."""
    from pipeline.pose.gap_filling import fill_pose_gaps

    absent = (track.num_people == 0)[:, None]
    pose = np.where(absent[:, :, None], np.nan, track.pose)
    transl = np.where(absent, np.nan, track.transl)
    try:
        pose, transl, filled = fill_pose_gaps(pose, transl)
    except ValueError as err:
        raise PoseUnavailable(f"{what}: {source} found {err}") from err
    if filled:
        log.warning("%s: %s missed the person in %d of %d frames; filled by interpolation",
                    what, source, filled, len(pose))
    return neutral_joints(pose, transl)


def motion_joints(joints: np.ndarray | None, frames: np.ndarray, settings: PipelineSettings, what: str) -> np.ndarray:
    """The joints of ``frames`` (the same frames, same count): the sidecar's first rows, else estimated."""
    if joints is None:
        return estimate_joints(frames, settings, what)
    if len(joints) < len(frames):
        raise ValueError(f"{what}: the joints sidecar holds {len(joints)} frames, fewer than the {len(frames)} used")
    joints = np.asarray(joints[: len(frames)], dtype=np.float32)
    if not np.isfinite(joints).all():
        raise ValueError(f"{what}: the joints sidecar has no person (NaN) in some of the first {len(frames)} frames")
    return joints
