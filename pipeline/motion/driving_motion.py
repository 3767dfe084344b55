"""Driving motion: a motion file's joints, or a video's: sidecar joints, else the project's pose backend (App. A.3:
a benchmark's motion comes from the test video's poses). Used by the animate CLI and the benchmarks.

A motion file (`load_motion_file`) is an ``.npz`` of ``joints`` (T, 24, 3) metres, or ``pose`` (T, 24, 3) / (T, 72)
axis-angle + ``transl`` (T, 3) metres turned into joints by forward kinematics on the neutral SMPL shape.

Sidecars, checked in this order (the first one found is used):

- ``<video stem>.smpl.npz``: the project's SMPL contract (``pipeline.curation.pose.annotations``: ``pose`` (T, P, 24, 3),
  ``transl`` (T, P, 3), NaN where a person is absent); the primary person is taken;
- ``<video stem>.joints.npz`` (or ``joints.npz`` inside a frame folder): ``joints`` (T, 24, 3) metres, or
  single-person ``pose`` (T, 24, 3) / (T, 72) axis-angle + ``transl`` (T, 3) (`load_motion_file`).

Joints are forward kinematics on the neutral SMPL shape plus the root translation (Sec. 3.1), exactly what
training used (``pipeline.curation.subclips.neutral_joints``). Without a sidecar, ``estimate_joints`` runs the pose
backend of the settings: ``pose_backend="auto"`` picks NLF when ``nlf_l_multi.torchscript`` is in
``MTVCRAFT_WEIGHTS``, else the embedded MediaPipe + SMPL IK fit when installed, as the curation stage does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.motion.skeleton import NUM_JOINTS
from pipeline.core.config import NLF_WEIGHTS_FILE, PipelineSettings
from pipeline.curation.subclips import neutral_joints
from pipeline.motion.windows import MIN_FRAMES

if TYPE_CHECKING:
    from pipeline.curation.pose import PoseTrack

JOINTS_SUFFIX = ".joints.npz"
log = logging.getLogger(__name__)


def load_motion_file(path: str | Path) -> np.ndarray:
    """Joints (T, 24, 3) float32 metres from an ``.npz`` with ``joints`` or ``pose`` + ``transl``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"motion file not found: {path} (expected an .npz with 'joints' or 'pose' + 'transl')")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "joints" in arrays:
        joints = arrays["joints"]
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"{path}: 'joints' must have shape (T, {NUM_JOINTS}, 3) in metres, got {joints.shape}")
    elif "pose" in arrays and "transl" in arrays:
        joints = _joints_from_pose(arrays["pose"], arrays["transl"], path)
    else:
        raise ValueError(f"{path}: expected arrays 'joints' (T, 24, 3) or 'pose' + 'transl', found {sorted(arrays)}")
    if not np.isfinite(joints).all():
        raise ValueError(f"{path}: joints contain non-finite values")
    if len(joints) < MIN_FRAMES:
        raise ValueError(f"{path}: {len(joints)} frames is too few; 4DMoT needs at least {MIN_FRAMES}")
    return joints.astype(np.float32)


def _joints_from_pose(pose: np.ndarray, transl: np.ndarray, path: Path) -> np.ndarray:
    if pose.ndim == 2 and pose.shape[1] == 3 * NUM_JOINTS:
        pose = pose.reshape(len(pose), NUM_JOINTS, 3)
    if pose.ndim != 3 or pose.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{path}: 'pose' must have shape (T, 24, 3) or (T, 72) axis-angle, got {pose.shape}")
    if transl.shape != (len(pose), 3):
        raise ValueError(f"{path}: 'transl' must have shape ({len(pose)}, 3) in metres, got {transl.shape}")
    return neutral_joints(pose, transl)


class PoseUnavailable(RuntimeError):
    """A benchmark video has no joints sidecar and no pose backend can estimate its poses."""


def video_sidecar_joints(video: Path) -> tuple[np.ndarray | None, str]:
    """(joints (T, 24, 3), sidecar path) of a video file from its sidecar, or (None, "") when it has none."""
    from pipeline.curation.pose.annotations import AnnotationPoses, load_sidecar, sidecar_path

    smpl = sidecar_path(video)
    if smpl.is_file():
        track = AnnotationPoses().estimate(str(video), 0, load_sidecar(smpl).num_frames)
        return neutral_joints(track.pose, track.transl), str(smpl)
    plain = video.with_name(video.stem + JOINTS_SUFFIX)
    return (joints_file(plain), str(plain)) if plain.is_file() else (None, "")


def joints_file(path: Path) -> np.ndarray:
    """Joints (T, 24, 3) float32 from an ``.npz`` with ``joints`` or ``pose`` + ``transl``."""

    return load_motion_file(path)


def pose_backend_for(settings: PipelineSettings) -> str:
    """The backend that estimates benchmark poses; ``PoseUnavailable`` naming the settings when none can."""
    from pipeline.curation.pose import choose_backend

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
    from pipeline.curation.pose import estimator_options, make_pose_estimator

    backend = pose_backend_for(settings)
    try:
        estimator = make_pose_estimator(backend, **estimator_options(backend, settings.weights))
    except (ImportError, AttributeError) as err:  # e.g. a mediapipe wheel that does not import here
        raise PoseUnavailable(f"{what}: the {backend} pose backend does not start: {err}") from err
    track = estimator.estimate_frames(np.ascontiguousarray(frames))
    return track_joints(track, what, f"the {backend} pose backend")


def track_joints(track: PoseTrack, what: str, source: str) -> np.ndarray:
    """FK joints of a primary-person `PoseTrack`, the frames without a person filled when the gap is short
    (`pipeline.curation.pose.gap_filling`: slerp between the poses around it); a long absence is ``PoseUnavailable``."""
    from pipeline.curation.pose.gap_filling import fill_pose_gaps

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
