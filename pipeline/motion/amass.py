"""Import AMASS ``.npz`` motions as camera-frame SMPL-24 joints (Sec. 3.1 input; DESIGN.md "a motion file").

AMASS: ``poses`` (T, 66 | 72 | 156 | 165) axis-angle: the first 22 joints
(root + 21 body joints) are SMPL's joints 0-21 in SMPL-H / SMPL-X order; SMPL's
hand joints 22/23 take ``poses[:, 66:72]`` for 72-wide SMPL files and zero
rotation otherwise (they are leaves: their rotation never moves a joint
position). Joints are forward kinematics on the *neutral* SMPL shape plus
``trans``, as the paper makes its joints (Sec. 3.1): ``betas`` and ``gender``
are kept in ``meta`` but not applied. The camera-frame ``pose`` and ``transl``
come along, so that ``forward_kinematics(pose, transl=transl) == joints``.
The z-up world turns into the camera frame and is placed in view as
`pipeline.motion.imported_motion` describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.motion.skeleton import NUM_JOINTS
from pipeline.curation.subclips import neutral_joints
from pipeline.motion.imported_motion import (
    Z_UP_TO_CAMERA,
    ImportedMotion,
    ViewPlacement,
    place_and_resample,
    rigid_transform,
)

# Width of AMASS ``poses`` -> body model (all start with root + 21 body joints).
AMASS_POSE_WIDTHS = {66: "smpl-body", 72: "smpl", 156: "smplh", 165: "smplx"}
AMASS_FPS_KEYS = ("mocap_framerate", "mocap_frame_rate", "fps")


def import_amass(path: str | Path, fps: float | None = None,
                 placement: ViewPlacement | None = ViewPlacement()) -> ImportedMotion:
    """An AMASS-style ``.npz`` (``poses``, ``trans``, ``mocap_framerate``) as camera-frame SMPL-24 joints."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AMASS motion file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from err
    with data:
        keys = set(data.files)
        if "poses" not in keys or "trans" not in keys:
            raise ValueError(f"{path}: an AMASS motion needs arrays 'poses' (T, 66|72|156|165) and 'trans' (T, 3); "
                             f"found {sorted(keys)}")
        poses = np.asarray(data["poses"], dtype=np.float64)
        trans = np.asarray(data["trans"], dtype=np.float64)
        fps_key = next((k for k in AMASS_FPS_KEYS if k in keys), None)
        if fps_key is None:
            raise ValueError(f"{path}: no frame rate; expected one of {AMASS_FPS_KEYS}")
        source_fps = float(np.asarray(data[fps_key]).reshape(-1)[0])
        meta: dict[str, Any] = {}
        if "betas" in keys:
            meta["betas"] = np.asarray(data["betas"], dtype=np.float32)
        if "gender" in keys:
            try:
                gender = np.asarray(data["gender"]).reshape(-1)[0]
                meta["gender"] = gender.decode() if isinstance(gender, bytes) else str(gender)
            except ValueError:  # an object array that would need pickle
                pass
    if poses.ndim != 2 or poses.shape[1] not in AMASS_POSE_WIDTHS:
        raise ValueError(f"{path}: 'poses' must be (T, W) with W in {sorted(AMASS_POSE_WIDTHS)} "
                         f"(SMPL body / SMPL / SMPL-H / SMPL-X axis-angle), got {poses.shape}")
    if len(poses) < 1 or trans.shape != (len(poses), 3):
        raise ValueError(f"{path}: 'trans' must be ({len(poses)}, 3) metres, got {trans.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all()):
        raise ValueError(f"{path}: 'poses' or 'trans' contain non-finite values")
    if not source_fps > 0:
        raise ValueError(f"{path}: '{fps_key}' must be > 0, got {source_fps}")

    model = AMASS_POSE_WIDTHS[poses.shape[1]]
    pose = np.zeros((len(poses), NUM_JOINTS, 3))
    pose[:, :22] = poses[:, :66].reshape(-1, 22, 3)
    if model == "smpl":
        pose[:, 22:] = poses[:, 66:72].reshape(-1, 2, 3)
    world = ImportedMotion(joints=neutral_joints(pose, trans), fps=source_fps, source=str(path),
                           format="amass", pose=pose.astype(np.float32), transl=trans.astype(np.float32),
                           meta={**meta, "body_model": model, "source_fps": source_fps, "up_axis": "z"})
    return place_and_resample(rigid_transform(world, Z_UP_TO_CAMERA, np.zeros(3)), fps, placement)
