"""Short pose gaps filled by slerp (`pipeline.curation.pose.gap_filling`): closed forms, the short way round, edges, long gaps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.curation.pose.gap_filling import fill_pose_gaps, missing_runs


def steady_turn(frames: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Every joint turning at its own constant rate about its own fixed axis; the root walking in a line."""
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(24, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    rates = rng.uniform(-0.08, 0.08, 24)  # radians per frame
    t = np.arange(frames)[:, None, None]
    pose = axes[None] * (rates[None, :, None] * t + rng.uniform(-0.5, 0.5, (1, 24, 1)))
    transl = np.float64([0.1, -0.2, 3.0]) + np.arange(frames)[:, None] * np.float64([0.01, 0.0, -0.02])
    return pose, transl


def test_runs():
    assert missing_runs(np.array([0, 1, 1, 0, 0, 1, 0, 1], bool)) == [(1, 3), (5, 6), (7, 8)]
    assert missing_runs(np.zeros(4, bool)) == []


def test_interior_gap_matches_the_steady_turn_it_cut():
    """Slerp between two rotations about one axis is the rotation at the linearly interpolated angle (closed form),
    so the filled frames equal the removed ones."""
    pose, transl = steady_turn()
    cut_pose, cut_transl = pose.copy(), transl.copy()
    cut_pose[6:12], cut_transl[9:11] = np.nan, np.nan  # frames 6-11 miss a pose, 9-10 a translation
    filled_pose, filled_transl, count = fill_pose_gaps(cut_pose, cut_transl)
    assert count == 6
    same = Rotation.from_rotvec(filled_pose.reshape(-1, 3)).inv() * Rotation.from_rotvec(pose.reshape(-1, 3))
    assert np.degrees(same.magnitude()).max() < 1e-3
    np.testing.assert_allclose(filled_transl, transl, atol=1e-5)


def test_fill_turns_the_short_way_round():
    """Rotation vectors of 170 and -170 degrees about one axis are 20 degrees apart: the filled frame between them
    is the half-turn (the shortest path), where averaging the vectors would give no rotation at all."""
    pose, transl = steady_turn(3)
    axis = np.float64([0.0, 0.6, 0.8])
    pose[0, 5], pose[2, 5] = np.radians(170) * axis, -np.radians(170) * axis
    pose[1] = np.nan
    filled, _, _ = fill_pose_gaps(pose, transl)
    mid = Rotation.from_rotvec(filled[1, 5])
    assert abs(np.degrees(mid.magnitude()) - 180) < 1e-3
    assert abs(abs(np.dot(mid.as_rotvec() / mid.magnitude(), axis)) - 1) < 1e-6


def test_edges_hold_the_nearest_pose_and_long_gaps_are_errors():
    pose, transl = steady_turn()
    pose[:3], transl[17:] = np.nan, np.nan
    filled_pose, filled_transl, count = fill_pose_gaps(pose, transl)
    assert count == 6
    np.testing.assert_allclose(filled_pose[:3], np.broadcast_to(pose[3], (3, 24, 3)), atol=1e-6)
    np.testing.assert_allclose(filled_transl[17:], np.broadcast_to(transl[16], (3, 3)), atol=1e-6)
    pose, transl = steady_turn()
    pose[4:13] = np.nan
    with pytest.raises(ValueError, match="no person in frames 4-12 \\(9 frames; at most 8"):
        fill_pose_gaps(pose, transl)
    assert fill_pose_gaps(pose, transl, max_gap=9)[2] == 9
    with pytest.raises(ValueError, match="no pose in any of the 20 frames"):
        fill_pose_gaps(np.full_like(pose, np.nan), transl)
