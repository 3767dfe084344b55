"""The SMPL 24-joint skeleton and its forward kinematics (paper Sec. 3.1).

The paper feeds 4DMoT with joint coordinates computed by forward kinematics of
the estimated SMPL joint rotations on the *neutral* SMPL shape, plus the root
translation, so that motion is decoupled from each person's body shape.

Conventions (the same as smplx, so results agree with it to float precision):
- ``pose_aa`` is axis-angle, ``(..., 24, 3)``; joint 0 is the global orientation.
- rotations act about the rest joints; the root rotates about its own rest
  position, so ``joints[..., 0, :] == rest_joints[0] + transl``.
- units are metres. Rest joints are in the SMPL model frame (+Y up, +X the
  subject's left, +Z forward); a global orientation maps them into whatever
  frame the pose estimator uses (NLF: OpenCV camera, +Y down, +Z forward).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
NUM_JOINTS = len(SMPL_JOINT_NAMES)

# Parent of each joint in the SMPL kinematic tree; -1 marks the root.
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)

# Rest joints of the SMPL neutral model with zero shape (J_regressor @ v_template),
# metres, model frame. Source: ../shared/smpl/neutral_rest_joints.csv, which
# agrees with the SMPL-H neutral zero-beta joints published by StableMotion /
# nv-tlabs stmc (joints 0-21, to 1e-7 m) and with PHC's smpl_humanoid.xml offsets.
SMPL_NEUTRAL_REST_JOINTS = np.array(
    [
        [-0.00179506, -0.22333345, 0.02821913],
        [0.06772468, -0.31473968, 0.02140379],
        [-0.06946554, -0.31385513, 0.02389931],
        [-0.00432792, -0.11437022, 0.00152282],
        [0.10200123, -0.68993828, 0.01690799],
        [-0.10775559, -0.69642414, 0.01504928],
        [0.00115911, 0.02081021, 0.00261529],
        [0.08840553, -1.08789864, -0.02678534],
        [-0.09198182, -1.09483879, -0.02726252],
        [0.00261611, 0.07373244, 0.02803986],
        [0.11476367, -1.14368952, 0.09250306],
        [-0.11735357, -1.14298275, 0.09608543],
        [-0.00016228, 0.28760280, -0.01481717],
        [0.08146085, 0.19548174, -0.00604975],
        [-0.07914308, 0.19256527, -0.01057543],
        [0.00498956, 0.35257241, 0.03653180],
        [0.17243778, 0.22595064, -0.01491790],
        [-0.17515546, 0.22511644, -0.01971850],
        [0.43205003, 0.21317858, -0.04237434],
        [-0.42889742, 0.21178722, -0.04111948],
        [0.68128366, 0.22216461, -0.04354526],
        [-0.68419550, 0.21955951, -0.04667867],
        [0.76532584, 0.21400307, -0.05849063],
        [-0.76881743, 0.21344225, -0.05699375],
    ],
    dtype=np.float32,
)

# Bones drawn by previews and renderers: (parent, child) for every non-root joint.
SMPL_BONES: tuple[tuple[int, int], ...] = tuple(
    (p, j) for j, p in enumerate(SMPL_PARENTS) if p >= 0
)


def forward_kinematics(
    pose_aa: torch.Tensor,
    rest_joints: torch.Tensor | np.ndarray | None = None,
    transl: torch.Tensor | None = None,
) -> torch.Tensor:
    """Joint positions of a posed skeleton: ``(..., 24, 3)`` axis-angle -> ``(..., 24, 3)``.

    Each joint's world transform is its parent's transform composed with its
    own rotation about its rest offset from the parent (the kinematic chain of
    SMPL, Loper et al. 2015, Eq. 4 without the skinning). Batched over any
    leading dimensions and differentiable in ``pose_aa``, ``rest_joints`` and
    ``transl``. ``rest_joints`` defaults to the neutral SMPL shape.
    """
    if pose_aa.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"pose_aa must be (..., {NUM_JOINTS}, 3), got {tuple(pose_aa.shape)}")
    if rest_joints is None:
        rest_joints = SMPL_NEUTRAL_REST_JOINTS
    rest = torch.as_tensor(rest_joints, dtype=pose_aa.dtype, device=pose_aa.device)
    batch_shape = pose_aa.shape[:-2]
    rest = rest.expand(*batch_shape, NUM_JOINTS, 3)

    rotations = axis_angle_to_rotation_matrix(pose_aa.reshape(-1, 3)).reshape(*batch_shape, NUM_JOINTS, 3, 3)
    # Global rotation and position of each joint, filled root-first (parents precede children).
    global_rot = [rotations[..., 0, :, :]]
    global_pos = [rest[..., 0, :]]
    for j in range(1, NUM_JOINTS):
        p = SMPL_PARENTS[j]
        offset = rest[..., j, :] - rest[..., p, :]
        global_rot.append(global_rot[p] @ rotations[..., j, :, :])
        global_pos.append(global_pos[p] + (global_rot[p] @ offset.unsqueeze(-1)).squeeze(-1))
    joints = torch.stack(global_pos, dim=-2)
    if transl is not None:
        joints = joints + transl.unsqueeze(-2)
    return joints


def rest_joints_from_model_file(model_path: str | Path) -> np.ndarray:
    """Zero-shape rest joints (24 x 3, metres) of a real SMPL/SMPL-H/SMPL-X model file, through smplx.

    Accepts a cleaned SMPL pickle (no chumpy objects) or an ``.npz`` of the
    model arrays (``v_template``, ``shapedirs``, ``J_regressor``, ``kintree_table``,
    ``weights``, ``posedirs``, ``f``). Official SMPL pickles hold chumpy
    objects, which do not import with numpy >= 1.24: convert them to ``.npz`` first.
    """
    import smplx
    from smplx.utils import Struct

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SMPL model file not found: {path} (rest_joints_from_model_file's model_path: an SMPL neutral "
            "model as .npz or a chumpy-free .pkl; no pipeline setting reads one, the stages use the published "
            "neutral rest joints SMPL_NEUTRAL_REST_JOINTS)"
        )
    if path.suffix == ".npz":
        arrays = dict(np.load(path, allow_pickle=False))
        model = smplx.SMPL(model_path="", data_struct=Struct(**arrays), num_betas=10)
    else:
        try:
            model = smplx.SMPL(model_path=str(path), num_betas=10)
        except ModuleNotFoundError as err:  # chumpy pickles
            raise ValueError(
                f"{path} needs chumpy to unpickle; convert it to .npz (plain numpy arrays) first"
            ) from err
    with torch.no_grad():
        out = model(return_verts=False)
    return out.joints[0, :NUM_JOINTS].cpu().numpy().astype(np.float32)
