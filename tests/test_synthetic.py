"""Tests of the generated sample (pipeline/synthetic): determinism, camera, sidecars, manifest, effects."""

from __future__ import annotations

import math

import av
import cv2
import numpy as np
import pytest
import torch

from models.motion.skeleton import SMPL_JOINT_NAMES, forward_kinematics
from pipeline.synthetic import (
    MOTIONS,
    PRESETS,
    SampleManifest,
    ShotSpec,
    camera_intrinsics,
    make_motion,
    make_sample,
    read_sidecar,
    render_shot,
)
from pipeline.synthetic.motions import GROUND_Y, SOLE
from pipeline.synthetic.render import HEAD_CENTRE_OFFSET, HEAD_RADII
from pipeline.synthetic.sample import expected_fate, shot_rng

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def decode(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def fk_joints(pose: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """Sidecar pose + transl -> joints through the project's FK (smplx convention)."""
    pose_t, transl_t = torch.from_numpy(pose.astype(np.float64)), torch.from_numpy(transl.astype(np.float64))
    return forward_kinematics(pose_t, transl=transl_t).numpy()


def laplacian_var(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SampleManifest:
    return make_sample(tmp_path_factory.mktemp("tiny_a"), seed=0, preset="tiny")


@pytest.fixture(scope="module")
def tiny_again(tmp_path_factory) -> SampleManifest:
    return make_sample(tmp_path_factory.mktemp("tiny_b"), seed=0, preset="tiny")


@pytest.fixture(scope="module")
def tiny_seed1(tmp_path_factory) -> SampleManifest:
    return make_sample(tmp_path_factory.mktemp("tiny_c"), seed=1, preset="tiny")


def shots_of(manifest: SampleManifest, kind: str):
    return [(v, s) for v in manifest.videos for s in v.shots if s.kind == kind]


# --- camera -----------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(320, 240), (240, 320), (848, 480)])
def test_camera_has_55_degree_fov_on_long_side(width, height):
    k = camera_intrinsics(width, height)
    long_side = max(width, height)
    # The long side spans 55 degrees between the outer pixel edges: 2 atan((L/2) / f).
    assert math.degrees(2 * math.atan(long_side / 2 / k[0, 0])) == pytest.approx(55.0, abs=1e-4)
    assert k[0, 0] == k[1, 1] == pytest.approx(long_side / (2 * math.tan(math.radians(27.5))), rel=1e-6)
    assert (k[0, 2], k[1, 2]) == ((width - 1) / 2, (height - 1) / 2)
    assert k[2].tolist() == [0, 0, 1] and k[0, 1] == k[1, 0] == 0


def test_camera_rejects_bad_sizes():
    with pytest.raises(ValueError):
        camera_intrinsics(0, 240)


# --- motions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MOTIONS))
def test_motions_are_upright_in_front_of_camera_and_plausible(kind):
    motion = make_motion(kind, 40, 25.0, np.random.default_rng(3))
    assert motion.pose.shape == (40, 24, 3) and motion.pose.dtype == np.float32
    joints = fk_joints(motion.pose, motion.transl)
    head, pelvis = joints[:, J["head"]], joints[:, J["pelvis"]]
    assert (head[:, 1] < pelvis[:, 1] - 0.3).all(), "camera +y is down: the head must be above the pelvis"
    assert ((pelvis[:, 2] > 2.5) & (pelvis[:, 2] < 4.5)).all()
    lowest_sole = joints[:, [J["left_foot"], J["right_foot"], J["left_ankle"], J["right_ankle"]], 1].max(1) + SOLE
    if kind == "jump":
        assert lowest_sole.max() == pytest.approx(GROUND_Y, abs=1e-4) and lowest_sole.min() < GROUND_Y - 0.1
    else:
        np.testing.assert_allclose(lowest_sole, GROUND_Y, atol=1e-4)  # feet on the floor
    if kind != "turn":  # facing the camera: the subject's left shoulder is on the image right
        left, right = joints[:, J["left_shoulder"]], joints[:, J["right_shoulder"]]
        forward = np.cross(left - right, joints[:, J["neck"]] - pelvis)
        assert (forward[:, 2] < 0).all() and (left[:, 0] > right[:, 0]).all()
    knees = motion.pose[:, [J["left_knee"], J["right_knee"]], 0]
    assert knees.min() > -0.05 and knees.max() < 2.5, "knees bend one way, within range"


def test_unknown_motion_and_preset_are_named_in_errors(tmp_path):
    with pytest.raises(ValueError, match="moonwalk"):
        make_motion("moonwalk", 10, 25.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="nope"):
        make_sample(tmp_path, preset="nope")
    with pytest.raises(ValueError, match="needs a motion"):
        ShotSpec("normal", 10)


# --- determinism and caching ------------------------------------------------------------------


def test_same_seed_gives_identical_sample(tiny, tiny_again):
    assert tiny.to_dict() == tiny_again.to_dict()
    for video in tiny.videos:
        a, b = read_sidecar(tiny.sidecar_path(video)), read_sidecar(tiny_again.sidecar_path(video))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])  # NaNs compare equal here
        np.testing.assert_array_equal(decode(tiny.video_path(video))[0], decode(tiny_again.video_path(video))[0])
        assert tiny.video_path(video).read_bytes() == tiny_again.video_path(video).read_bytes()


def test_different_seed_gives_different_sample(tiny, tiny_seed1):
    assert tiny.hash != tiny_seed1.hash
    for video in tiny.videos:
        a, b = read_sidecar(tiny.sidecar_path(video)), read_sidecar(tiny_seed1.sidecar_path(video))
        assert not np.array_equal(a["pose"], b["pose"])
        assert not np.array_equal(decode(tiny.video_path(video))[0], decode(tiny_seed1.video_path(video))[0])


def test_existing_sample_is_not_rendered_again(tiny):
    mtimes = [tiny.video_path(v).stat().st_mtime_ns for v in tiny.videos]
    again = make_sample(tiny.root, seed=0, preset="tiny")
    assert again.hash == tiny.hash
    assert [again.video_path(v).stat().st_mtime_ns for v in again.videos] == mtimes


# --- manifest and sidecars --------------------------------------------------------------------


def test_manifest_cuts_are_shot_starts_and_match_the_video(tiny):
    for video in tiny.videos:
        starts = [s.start_frame for s in video.shots]
        assert video.cuts == starts[1:]
        assert starts[0] == 0 and all(a.end_frame == b.start_frame for a, b in zip(video.shots, video.shots[1:]))
        assert video.shots[-1].end_frame == video.num_frames
        with av.open(str(tiny.video_path(video))) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
            assert (stream.width, stream.height) == (video.width, video.height)
            assert float(stream.average_rate) == video.fps == 25.0
            assert sum(1 for _ in container.decode(video=0)) == video.num_frames
        assert video.num_bytes == tiny.video_path(video).stat().st_size


def test_manifest_expected_fates():
    """The fate rules on the demo preset's shots, where every feature appears at full length."""
    demo = PRESETS["demo"]
    fates = {(s.kind, s.frames): expected_fate(s, 0) for v in demo.videos for s in v.shots}
    assert fates[("no_person", 36)][0] == {"stage": "subclips", "reason": "no_person"}
    assert fates[("two_people", 48)][0] == {"stage": "subclips", "reason": "multiple_people"}
    assert fates[("normal", 20)][0] == {"stage": "subclips", "reason": "too_short"}
    assert fates[("blur", 48)][0]["reason"] == "blur" and fates[("text", 48)][0]["reason"] == "text"
    assert fates[("static", 48)][0]["reason"] == "static"
    assert fates[("noisy_pose", 50)][0] == {"stage": "clip_scores", "reason": "pose_uncertainty"}
    reject, subclips = fates[("gap", 86)]
    assert reject is None and subclips == [[0, 38], [48, 86]]
    normal_long = [s for v in demo.videos for s in v.shots if s.kind == "normal" and s.frames >= 40]
    assert len(normal_long) >= 8 and 900 <= demo.total_frames <= 1400


def test_sidecar_shapes_and_nan_pattern(tiny):
    video = next(v for v in tiny.videos if any(s.kind == "two_people" for s in v.shots))
    side = read_sidecar(tiny.sidecar_path(video))
    n = video.num_frames
    assert side["pose"].shape == (n, 2, 24, 3) and side["pose"].dtype == np.float32
    assert side["transl"].shape == (n, 2, 3) and side["joint_uncertainty"].shape == (n, 2, 24)
    np.testing.assert_array_equal(side["betas"], np.zeros((2, 10), np.float32))
    np.testing.assert_allclose(side["intrinsics"], camera_intrinsics(video.width, video.height))
    assert (side["fps"], side["width"], side["height"]) == (25.0, video.width, video.height)
    present = np.isfinite(side["pose"]).all(axis=(2, 3))  # (T, P)
    # The NaN pattern is the same in every array.
    assert (np.isfinite(side["transl"]).all(-1) == present).all()
    assert (np.isfinite(side["joint_uncertainty"]).all(-1) == present).all()
    assert (np.isnan(side["pose"]).all(axis=(2, 3)) == ~present).all()
    for shot in video.shots:
        p = present[shot.start_frame : shot.end_frame]
        unc = side["joint_uncertainty"][shot.start_frame : shot.end_frame]
        if shot.kind == "no_person":
            assert not p.any()
        elif shot.kind == "two_people":
            assert p.all()
            tr = side["transl"][shot.start_frame : shot.end_frame]
            assert (tr[:, 0, 0] < tr[:, 1, 0]).all(), "two people side by side"
        elif shot.kind == "gap":
            a, b = shot.absent_frames
            expected = np.ones(len(p), bool)
            expected[a - shot.start_frame : b - shot.start_frame] = False
            assert b - a == 4 and (p[:, 0] == expected).all() and not p[:, 1].any()
        else:
            assert p[:, 0].all() and not p[:, 1].any()
        if shot.kind == "noisy_pose":
            assert np.nanmin(unc[:, 0]) >= 0.15
        elif shot.kind != "no_person":
            assert np.nanmax(unc[:, 0]) <= 0.03 and np.nanmin(unc[:, 0]) >= 0.005


def test_gap_shot_has_person_free_middle():
    spec = ShotSpec("gap", 30, "turn", gap=6)
    shot = render_shot(spec, 160, 120, 25.0, np.random.default_rng(0))
    present = np.isfinite(shot.pose[:, 0]).all(axis=(1, 2))
    assert present.tolist() == [True] * 12 + [False] * 6 + [True] * 12


# --- rendering against the sidecar ------------------------------------------------------------


@pytest.mark.parametrize("motion,seed", [("walk", 11), ("squat", 13)])
def test_rendered_person_lies_around_projected_sidecar_joints(motion, seed):
    """Project the sidecar's FK joints with the sidecar camera; compare with the person's pixels.

    The person's pixels are where the frame differs from a person-free render of
    the same background. A 5% focal error or a few cm of translation fails this.
    """
    spec = ShotSpec("normal", 6, motion)
    width, height = 320, 240
    with_person = render_shot(spec, width, height, 25.0, np.random.default_rng(seed))
    background = render_shot(spec, width, height, 25.0, np.random.default_rng(seed), draw_persons=False)
    k = camera_intrinsics(width, height).astype(np.float64)
    joints = fk_joints(with_person.pose[:, 0], with_person.transl[:, 0])

    def project(p: np.ndarray) -> np.ndarray:
        return np.stack([k[0, 0] * p[..., 0] / p[..., 2] + k[0, 2], k[1, 1] * p[..., 1] / p[..., 2] + k[1, 2]], -1)

    for t in range(spec.frames):
        mask = (np.abs(with_person.frames[t].astype(int) - background.frames[t]).max(-1) > 20).astype(np.uint8)
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        uv = project(joints[t])
        # 1. Every projected joint falls on (or within 3 px of) the person's pixels.
        dist_to_person = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
        u, v = np.clip(np.round(uv).astype(int).T, 0, [[width - 1], [height - 1]])
        assert dist_to_person[v, u].max() <= 3.0
        # 2. The figure spans from the top of the head (the head ellipse above the SMPL head
        #    joint) to the soles (the foot capsules below the foot joints), to a few pixels.
        up = joints[t, J["head"]] - joints[t, J["neck"]]
        top = project(joints[t, J["head"]] + (HEAD_CENTRE_OFFSET + HEAD_RADII[1]) * up / np.linalg.norm(up))[1]
        feet = joints[t, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]]
        bottom = (project(feet)[:, 1] + SOLE * k[1, 1] / feet[:, 2]).max()
        assert -3.5 <= rows[0] - top <= 0.5
        assert -0.5 <= rows[-1] - bottom <= 2.5
        # 3. Sideways, nothing lies further than a limb's thickness outside the projected joints.
        slack = 0.1 * k[0, 0] / joints[t, 0, 2] + 2
        assert uv[:, 0].min() - slack <= cols[0] and cols[-1] <= uv[:, 0].max() + slack


def test_no_person_shot_is_only_background():
    spec = ShotSpec("no_person", 4)
    a = render_shot(spec, 160, 120, 25.0, np.random.default_rng(2))
    b = render_shot(spec, 160, 120, 25.0, np.random.default_rng(2), draw_persons=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.pose.shape == (4, 0, 24, 3)


# --- effects on the decoded videos ------------------------------------------------------------


def test_blurred_shot_is_blurry_and_normal_shots_are_sharp(tiny):
    for video in tiny.videos:
        frames = decode(tiny.video_path(video))
        for shot in video.shots:
            sharpness = np.mean([laplacian_var(f) for f in frames[shot.start_frame : shot.end_frame]])
            if shot.kind == "blur":
                assert sharpness < 100
            elif shot.kind in ("normal", "gap", "two_people", "static", "noisy_pose", "no_person"):
                assert sharpness > 100


def test_text_shot_has_a_large_text_area(tiny):
    (video, shot), = shots_of(tiny, "text")
    area = np.zeros((video.height, video.width), bool)
    for x0, y0, x1, y1 in shot.text_boxes:
        area[max(0, y0) : y1, max(0, x0) : x1] = True
    assert area.mean() >= 0.15
    frames = decode(tiny.video_path(video))
    white = (frames.min(-1) > 225)  # the letters are white
    in_text = white[shot.start_frame : shot.end_frame][:, area].mean()
    others = [s for s in video.shots if s.kind == "normal"]
    elsewhere = np.mean([white[s.start_frame : s.end_frame][:, area].mean() for s in others])
    assert in_text > 0.1 and in_text > 5 * elsewhere
    # The caption is an overlay: the same letters on every frame of the shot.
    letters = white[shot.start_frame : shot.end_frame][:, area]
    assert (letters == letters[0]).mean() > 0.97


def test_static_shot_joints_barely_move(tiny):
    (video, shot), = shots_of(tiny, "static")
    side = read_sidecar(tiny.sidecar_path(video))
    sl = slice(shot.start_frame, shot.end_frame)
    joints = fk_joints(side["pose"][sl, 0], side["transl"][sl, 0])
    assert np.linalg.norm(joints - joints.mean(0), axis=-1).max() < 0.02
    (walk_video, walk), = [(v, s) for v, s in shots_of(tiny, "normal") if s.motion == "walk"]
    ws = slice(walk.start_frame, walk.end_frame)
    walk_side = read_sidecar(tiny.sidecar_path(walk_video))
    walk_joints = fk_joints(walk_side["pose"][ws, 0], walk_side["transl"][ws, 0])
    assert np.linalg.norm(walk_joints - walk_joints.mean(0), axis=-1).max() > 0.1
    assert shot.camera_drift_px == 0 and walk.camera_drift_px > 2


def test_benchmark_preset_is_normal_single_shots_with_held_out_motion_settings():
    bench, demo = PRESETS["benchmark"], PRESETS["demo"]
    assert 3 <= len(bench.videos) <= 4
    assert all(len(v.shots) == 1 and v.shots[0].kind == "normal" and 49 <= v.shots[0].frames <= 60 for v in bench.videos)
    assert (bench.tempo, bench.amplitude) != (demo.tempo, demo.amplitude)
    # Same motion kind and length, other preset: a different motion.
    spec = bench.videos[0].shots[0]
    a = render_shot(spec, 160, 120, 25.0, shot_rng(0, bench, 0, 0), tempo=bench.tempo, amplitude=bench.amplitude)
    b = render_shot(spec, 160, 120, 25.0, shot_rng(0, demo, 0, 0))
    assert not np.allclose(a.pose, b.pose)


# --- The swaying camera: person and background move together ----------------------------------


def test_rotate_view_turns_the_joints_with_the_camera():
    from scipy.spatial.transform import Rotation

    from pipeline.synthetic.motions import rotate_view

    motion = make_motion("dance", 12, 25.0, np.random.default_rng(3))
    rotations = Rotation.from_rotvec(np.random.default_rng(4).normal(0, 0.2, (12, 3))).as_matrix()
    turned = rotate_view(motion, rotations)
    expected = np.einsum("tij,tnj->tni", rotations, motion.joints().astype(np.float64))
    np.testing.assert_allclose(turned.joints(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="rotations must be"):
        rotate_view(motion, rotations[:5])


def test_sway_moves_a_far_background_point_where_the_camera_projects_it():
    from pipeline.synthetic.render import CameraSway
    from pipeline.synthetic.scenery import Background

    width, height, num = 160, 120, 30
    k = camera_intrinsics(width, height).astype(np.float64)
    sway = CameraSway(amplitude_px=(18.0, 7.0), period=24.0, phase=0.4)
    rotations = sway.rotations(num, k[0, 0])
    plate = np.zeros((height + 80, width + 80, 3), np.uint8)
    origin = (40, 40)
    dot = np.array([100.0, 50.0])  # where the still camera sees a far point
    plate[origin[1] + int(dot[1]), origin[0] + int(dot[0])] = 255
    background = Background(plate, origin, k, rotations)
    direction = np.linalg.solve(k, np.array([*dot, 1.0]))
    for t in range(num):
        image = background.frame(t, width, height)[..., 0]
        seen = np.argwhere(image == 255)[:, ::-1].mean(axis=0)  # (u, v)
        expected = k @ rotations[t] @ direction
        np.testing.assert_allclose(seen, expected[:2] / expected[2], atol=1.0)


def test_sway_speed_never_drops_below_the_short_axis():
    from pipeline.synthetic.render import CameraSway

    sway = CameraSway(amplitude_px=(40.0, 16.0), period=50.0, phase=1.0)
    shift = sway.angles(200, 300.0) * 300.0
    speed = np.linalg.norm(np.diff(shift, axis=0), axis=1)
    omega = 2 * np.pi / 50.0
    assert speed.min() >= 16.0 * omega * 0.99 and speed.max() <= 40.0 * omega * 1.01
    assert 16.0 * omega < sway.mean_speed_px(200, 300.0) < 40.0 * omega


def test_a_normal_shot_sidecar_projects_onto_the_drawn_person_while_the_camera_turns():
    spec = ShotSpec("normal", 30, "wave")
    shot = render_shot(spec, 160, 120, 25.0, np.random.default_rng(11))
    empty = render_shot(spec, 160, 120, 25.0, np.random.default_rng(11), draw_persons=False)
    k = camera_intrinsics(160, 120).astype(np.float64)
    joints = fk_joints(shot.pose[:, 0], shot.transl[:, 0])
    pelvis = joints[:, J["pelvis"]] @ k.T
    uv = pelvis[:, :2] / pelvis[:, 2:]
    drawn = np.abs(shot.frames.astype(int) - empty.frames.astype(int)).sum(-1) > 30
    for t in range(30):
        u, v = np.round(uv[t]).astype(int)
        assert drawn[t, v - 1 : v + 2, u - 1 : u + 2].any(), f"frame {t}: no person at the projected pelvis"
    assert np.ptp(uv[:, 0]) > 8  # the camera's sway moves the person in the picture
    assert shot.drift_px > 1.0
