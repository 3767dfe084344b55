"""Skeleton and FK against smplx itself, on a synthetic SMPL model file of the real array shapes."""

from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from conftest import shared_path
from smplx.utils import Struct

from models.motion.skeleton import (
    NUM_JOINTS,
    SMPL_JOINT_NAMES,
    SMPL_NEUTRAL_REST_JOINTS,
    SMPL_PARENTS,
    forward_kinematics,
    rest_joints_from_model_file,
)

NUM_VERTS = 6890


def synthetic_smpl_npz(path: Path, seed: int = 0) -> dict:
    """An SMPL-shaped model: random template and regressor, real kinematic tree."""
    rng = np.random.default_rng(seed)
    v_template = rng.normal(0, 0.3, (NUM_VERTS, 3))
    regressor = rng.random((NUM_JOINTS, NUM_VERTS)) * (rng.random((NUM_JOINTS, NUM_VERTS)) < 0.01)
    regressor /= regressor.sum(axis=1, keepdims=True)
    arrays = {
        "v_template": v_template,
        "J_regressor": regressor,
        "shapedirs": rng.normal(0, 0.01, (NUM_VERTS, 3, 10)),
        "posedirs": rng.normal(0, 0.001, (NUM_VERTS, 3, 207)),
        "weights": rng.dirichlet(np.ones(NUM_JOINTS), NUM_VERTS),
        "kintree_table": np.stack([np.array(SMPL_PARENTS) % (2**32), np.arange(NUM_JOINTS)]).astype(np.int64),
        "f": rng.integers(0, NUM_VERTS, (100, 3)).astype(np.int64),
    }
    np.savez(path, **arrays)
    return arrays


def test_tree_is_the_standard_smpl_tree():
    assert len(SMPL_JOINT_NAMES) == len(SMPL_PARENTS) == 24
    assert SMPL_PARENTS[0] == -1
    assert all(SMPL_PARENTS[j] < j for j in range(1, 24))  # parents come first
    assert SMPL_PARENTS == (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


def test_rest_joints_match_published_table():
    rows = np.genfromtxt(shared_path("smpl/neutral_rest_joints.csv"), delimiter=",", names=True, dtype=None, encoding="utf-8")
    np.testing.assert_allclose(SMPL_NEUTRAL_REST_JOINTS, np.stack([rows["x_m"], rows["y_m"], rows["z_m"]], 1), atol=1e-8)
    assert tuple(rows["parent"]) == SMPL_PARENTS


def test_rest_joints_from_model_file_match_regressor(tmp_path):
    arrays = synthetic_smpl_npz(tmp_path / "SMPL_NEUTRAL.npz")
    rest = rest_joints_from_model_file(tmp_path / "SMPL_NEUTRAL.npz")
    np.testing.assert_allclose(rest, arrays["J_regressor"] @ arrays["v_template"], atol=1e-5)


def test_missing_model_file_names_what_reads_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_path: an SMPL neutral model"):
        rest_joints_from_model_file(tmp_path / "nope.npz")


def test_forward_kinematics_matches_smplx(tmp_path):
    arrays = synthetic_smpl_npz(tmp_path / "model.npz", seed=1)
    model = smplx.SMPL(model_path="", data_struct=Struct(**arrays), num_betas=10)
    rng = np.random.default_rng(2)
    batch = 8
    pose = torch.from_numpy(rng.normal(0, 0.6, (batch, 24, 3))).float()
    transl = torch.from_numpy(rng.normal(0, 1.0, (batch, 3))).float()
    with torch.no_grad():
        ref = model(global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(batch, -1), transl=transl).joints[:, :24]
    rest = rest_joints_from_model_file(tmp_path / "model.npz")
    ours = forward_kinematics(pose.double(), torch.from_numpy(rest).double(), transl.double())
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)


def test_forward_kinematics_identities():
    rest = torch.from_numpy(SMPL_NEUTRAL_REST_JOINTS).double()
    zero = torch.zeros(3, 5, 24, 3, dtype=torch.float64)
    # zero pose is the rest pose, batched over any leading shape
    np.testing.assert_allclose(forward_kinematics(zero).numpy(), np.broadcast_to(rest.numpy(), (3, 5, 24, 3)), atol=1e-7)
    # a global rotation rotates every joint about the pelvis; bone lengths are preserved by any pose
    pose = torch.zeros(24, 3, dtype=torch.float64)
    pose[0] = torch.tensor([np.pi, 0, 0])
    rotated = forward_kinematics(pose)
    expected = (rest - rest[0]) * torch.tensor([1.0, -1.0, -1.0]) + rest[0]
    np.testing.assert_allclose(rotated.numpy(), expected.numpy(), atol=1e-7)
    random_pose = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (24, 3)))
    posed = forward_kinematics(random_pose)
    parents = list(SMPL_PARENTS[1:])
    np.testing.assert_allclose((posed[1:] - posed[parents]).norm(dim=-1).numpy(), (rest[1:] - rest[parents]).norm(dim=-1).numpy(), atol=1e-7)


def test_forward_kinematics_is_differentiable():
    pose = torch.zeros(2, 24, 3, dtype=torch.float64, requires_grad=True)
    transl = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, t: forward_kinematics(p + 0.1, transl=t), (pose, transl))
