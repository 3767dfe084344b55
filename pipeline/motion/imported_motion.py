"""The shared record of an imported motion (Sec. 3.1 input): `ImportedMotion`, up-axis rotations, placement, resampling.

Every format (`pipeline.motion.amass`, `pipeline.motion.bvh`) becomes an
`ImportedMotion`: SMPL-24 joint positions ``(T, 24, 3)``
in metres in the frame the curated ``motion_video`` table uses, the OpenCV
camera frame of the pose estimator (+x right, +y down, +z forward; see
`models.motion.skeleton`), at the file's frame rate or resampled to ``fps``.

Axis conversion (a proper rotation, no mirroring; the subject's left stays +x):
- AMASS worlds are z-up: ``(x, y, z) -> (x, -z, y)``, the rotation ``Rx(+90 deg)``.
  Up (+z) becomes -y (up in an image); world +y becomes depth. A body facing
  world -y (AMASS's usual start) then faces the camera.
- BVH worlds are y-up (``up_axis="z"`` for the few z-up exports):
  ``(x, y, z) -> (x, -y, -z)``, the rotation ``Rx(180 deg)``, the same flip that
  turns the SMPL rest body (+Y up, +Z forward) upright in camera space: a
  character facing +z faces the camera.

Then, by default (`ViewPlacement`), one rigid motion for the whole clip puts
the subject where the curated clips have people: turned about the vertical
axis so that the first frame faces the camera (hips along +x), the first
frame's pelvis ``distance`` metres in front of the camera on its axis, the
lowest joint of the first frame ``camera_height`` metres below the camera
centre (the floor). ``placement=None`` keeps the converted world coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from models.motion.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_NEUTRAL_REST_JOINTS
from pipeline.curation.subclips import neutral_joints

# Z-up world -> camera (Rx(+90 deg)); y-up world -> camera (Rx(180 deg)). Rows are camera axes.
Z_UP_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
Y_UP_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
UP_TO_CAMERA = {"z": Z_UP_TO_CAMERA, "y": Y_UP_TO_CAMERA}

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@dataclass(frozen=True)
class ViewPlacement:
    """Where an imported clip is put in the camera frame (module docstring); metres."""

    distance: float = 3.5  # first-frame pelvis depth (curated clips: people 3-4 m away)
    camera_height: float = 0.85  # floor below the camera centre (the generated sample's camera)
    face_camera: bool = True  # turn the clip about the vertical so frame 0 faces the camera


@dataclass
class ImportedMotion:
    """A motion file as 4DMoT input: ``joints`` (T, 24, 3) float32 metres, camera frame, at ``fps``.

    ``pose`` (T, 24, 3) axis-angle and ``transl`` (T, 3) metres in the same
    frame, when the file has SMPL rotations (AMASS), else None (BVH).
    """

    joints: np.ndarray
    fps: float
    source: str
    format: str  # "amass" | "bvh"
    pose: np.ndarray | None = None
    transl: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.joints)
        if self.joints.ndim != 3 or self.joints.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"ImportedMotion.joints must be (T, {NUM_JOINTS}, 3), got {self.joints.shape}")
        if self.pose is not None and self.pose.shape != (t, NUM_JOINTS, 3):
            raise ValueError(f"ImportedMotion.pose must be ({t}, {NUM_JOINTS}, 3), got {self.pose.shape}")
        if self.transl is not None and self.transl.shape != (t, 3):
            raise ValueError(f"ImportedMotion.transl must be ({t}, 3), got {self.transl.shape}")
        if not self.fps > 0:
            raise ValueError(f"ImportedMotion.fps must be > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(len(self.joints))


# ---- shared geometry -----------------------------------------------------------------------------
def rigid_transform(motion: ImportedMotion, rot: np.ndarray, shift: np.ndarray) -> ImportedMotion:
    """Apply ``x -> rot @ x + shift`` to a whole motion; SMPL root rotation and translation follow.

    FK puts joint 0 at ``rest0 + transl``, so the new translation is
    ``rot @ (rest0 + transl) + shift - rest0`` and the new root ``rot * root``.
    """
    joints = motion.joints.astype(np.float64) @ rot.T + shift
    pose, transl = motion.pose, motion.transl
    if pose is not None and transl is not None:
        rest0 = SMPL_NEUTRAL_REST_JOINTS[0].astype(np.float64)
        pose = pose.astype(np.float64).copy()
        pose[:, 0] = (Rotation.from_matrix(rot) * Rotation.from_rotvec(pose[:, 0])).as_rotvec()
        transl = (rest0 + transl.astype(np.float64)) @ rot.T + shift - rest0
        pose, transl = pose.astype(np.float32), transl.astype(np.float32)
    return replace(motion, joints=joints.astype(np.float32), pose=pose, transl=transl)


def place_in_view(motion: ImportedMotion, placement: ViewPlacement) -> ImportedMotion:
    """Turn and shift a camera-frame motion as `ViewPlacement` says (one rigid motion for the clip)."""
    first = motion.joints[0].astype(np.float64)
    rot = np.eye(3)
    if placement.face_camera:
        across = first[_J["left_hip"]] - first[_J["right_hip"]]
        theta = math.atan2(across[2], across[0])  # Ry(theta) takes (ax, 0, az) onto +x
        c, s = math.cos(theta), math.sin(theta)
        rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    turned = first @ rot.T
    pelvis = turned[_J["pelvis"]]
    floor = turned[:, 1].max()  # +y is down: the lowest joint has the largest y
    shift = np.array([-pelvis[0], placement.camera_height - floor, placement.distance - pelvis[2]])
    return rigid_transform(motion, rot, shift)


def resample(motion: ImportedMotion, fps: float) -> ImportedMotion:
    """The motion at ``fps``: frames at times k / fps within the original span.

    SMPL rotations are interpolated on the sphere (slerp per joint), the root
    translation linearly, and the joints recomputed by FK; joints-only motions
    (BVH) are interpolated linearly.
    """
    if not fps > 0:
        raise ValueError(f"resample fps must be > 0, got {fps}")
    if motion.num_frames < 2 or math.isclose(fps, motion.fps):
        return replace(motion, fps=float(fps))
    src_t = np.arange(motion.num_frames) / motion.fps
    count = int(math.floor(src_t[-1] * fps + 1e-6)) + 1
    new_t = np.minimum(np.arange(count) / fps, src_t[-1])
    if motion.pose is not None and motion.transl is not None:
        pose = np.stack(
            [Slerp(src_t, Rotation.from_rotvec(motion.pose[:, j].astype(np.float64)))(new_t).as_rotvec()
             for j in range(NUM_JOINTS)],
            axis=1,
        )
        transl = np.stack([np.interp(new_t, src_t, motion.transl[:, k]) for k in range(3)], axis=1)
        joints = neutral_joints(pose, transl)
        return replace(motion, joints=joints.astype(np.float32), pose=pose.astype(np.float32),
                       transl=transl.astype(np.float32), fps=float(fps))
    flat = motion.joints.reshape(motion.num_frames, -1).astype(np.float64)
    joints = np.stack([np.interp(new_t, src_t, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return replace(motion, joints=joints.reshape(count, NUM_JOINTS, 3).astype(np.float32), fps=float(fps))


def place_and_resample(motion: ImportedMotion, fps: float | None, placement: ViewPlacement | None) -> ImportedMotion:
    """The last step of every importer: put the motion in view (``placement``), then resample it to ``fps``."""
    if placement is not None:
        motion = place_in_view(motion, placement)
    if fps is not None:
        motion = resample(motion, fps)
    return motion

