"""Motion import: AMASS npz and BVH -> camera-frame SMPL-24 joints, resampling, errors.

Modules: pipeline.motion.amass, .bvh, .imported_motion (the record, placement, resampling) and .motion_import (dispatch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from models.motion.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS, forward_kinematics
from pipeline.motion.amass import import_amass
from pipeline.motion.bvh import bvh_positions, import_bvh, read_bvh
from pipeline.motion.imported_motion import ImportedMotion, ViewPlacement, resample
from pipeline.motion.motion_import import import_folder, import_motion

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
# z-up world -> camera, written out: x stays, camera y = -world z (up is -y), camera z = world y.
Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)


def fk(pose: np.ndarray, transl: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return forward_kinematics(torch.from_numpy(np.asarray(pose, np.float64)),
                                  transl=torch.from_numpy(np.asarray(transl, np.float64))).numpy()


def amass_sequence(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A standing body in AMASS's z-up world (root Rx(90 deg) turns SMPL's +Y up onto +Z) with random joint motion."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.25, size=(frames, 24, 3))
    pose[:, 0] = (Rotation.from_rotvec([np.pi / 2, 0, 0]) * Rotation.from_rotvec(rng.normal(0, 0.1, (frames, 3)))).as_rotvec()
    trans = np.cumsum(rng.normal(0, 0.01, (frames, 3)), axis=0) + [0.3, -1.2, 0.9]
    return pose, trans


def write_amass(path, pose, trans, fps=120.0, width=156, **extra):
    poses = np.zeros((len(pose), width))
    poses[:, :66] = pose[:, :22].reshape(len(pose), 66)
    if width == 72:
        poses[:, 66:] = pose[:, 22:].reshape(len(pose), 6)
    elif width > 72:
        poses[:, 66:] = np.random.default_rng(1).normal(0, 0.3, (len(pose), width - 66))  # hands, jaw: ignored
    np.savez(path, poses=poses, trans=trans, mocap_framerate=np.array(fps), betas=np.zeros(16),
             gender=np.array("neutral"), **extra)
    return path


# ---- AMASS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [66, 72, 156, 165])
def test_amass_joints_are_fk_of_the_pose_rotated_into_the_camera_frame(tmp_path, width):
    pose, trans = amass_sequence(12)
    if width != 72:
        pose[:, 22:] = 0.0  # SMPL's hand joints: only the 72-wide SMPL layout carries them
    path = write_amass(tmp_path / "m.npz", pose, trans, width=width)
    motion = import_amass(path, placement=None)
    expected = fk(pose, trans) @ Z_UP.T
    assert motion.joints.shape == (12, 24, 3) and motion.fps == 120.0 and motion.format == "amass"
    np.testing.assert_allclose(motion.joints, expected, atol=2e-6)
    # the camera-frame pose and translation reproduce the joints through the same FK
    np.testing.assert_allclose(fk(motion.pose, motion.transl), expected, atol=2e-5)
    np.testing.assert_allclose(motion.pose[:, 1:], pose[:, 1:], atol=1e-6)  # only the root rotates
    assert motion.meta["gender"] == "neutral" and motion.meta["body_model"]


def test_amass_hand_rotations_do_not_move_smpl_joints(tmp_path):
    pose, trans = amass_sequence(5)
    a = import_amass(write_amass(tmp_path / "a.npz", pose, trans, width=156), placement=None)
    pose[:, 22:] = 0.0
    b = import_amass(write_amass(tmp_path / "b.npz", pose, trans, width=66), placement=None)
    np.testing.assert_allclose(a.joints, b.joints, atol=1e-6)


def test_amass_upright_body_stands_up_in_camera_frame_and_placement_is_rigid(tmp_path):
    pose, trans = amass_sequence(8)
    raw = import_amass(write_amass(tmp_path / "m.npz", pose, trans), placement=None)
    # +y is down in the camera frame: the head is above (smaller y than) the pelvis and the ankles
    assert (raw.joints[:, J["head"], 1] < raw.joints[:, J["pelvis"], 1]).all()
    assert (raw.joints[:, J["pelvis"], 1] < raw.joints[:, J["left_ankle"], 1]).all()

    placed = import_amass(tmp_path / "m.npz", placement=ViewPlacement(distance=3.0, camera_height=0.9))
    first = placed.joints[0]
    np.testing.assert_allclose(first[J["pelvis"], [0, 2]], [0.0, 3.0], atol=1e-5)
    assert first[:, 1].max() == pytest.approx(0.9, abs=1e-5)  # lowest joint on the floor
    across = first[J["left_hip"]] - first[J["right_hip"]]
    assert across[0] > 0 and abs(across[2]) < 1e-5  # facing the camera: the left hip on image right
    # one rigid motion: all pairwise joint distances over the clip are unchanged
    d = lambda x: np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(placed.joints), d(raw.joints), atol=1e-5)
    np.testing.assert_allclose(fk(placed.pose, placed.transl), placed.joints, atol=2e-5)


# ---- resampling --------------------------------------------------------------------------------------
def test_resample_120_to_30_fps_keeps_every_fourth_frame(tmp_path):
    pose, trans = amass_sequence(121)
    full = import_amass(write_amass(tmp_path / "m.npz", pose, trans, fps=120), placement=None)
    down = import_amass(tmp_path / "m.npz", fps=30, placement=None)
    assert down.num_frames == 31 and down.fps == 30
    np.testing.assert_allclose(down.joints, full.joints[::4], atol=2e-5)


def test_resample_slerps_a_constant_rate_turn_exactly():
    """A root turning about the vertical at a constant rate: slerp at new times gives the exact angles."""
    fps, rate = 50.0, 1.3  # rad/s
    t = np.arange(51) / fps
    pose = np.zeros((51, 24, 3))
    pose[:, 0, 1] = rate * t
    transl = np.stack([0.4 * t, np.zeros_like(t), 2.0 + 0.1 * t], axis=1)
    motion = ImportedMotion(joints=fk(pose, transl).astype(np.float32), fps=fps, source="-", format="amass",
                            pose=pose.astype(np.float32), transl=transl.astype(np.float32))
    out = resample(motion, 30.0)
    new_t = np.arange(31) / 30.0
    assert out.num_frames == 31
    exp_pose = np.zeros((31, 24, 3))
    exp_pose[:, 0, 1] = rate * new_t
    exp_transl = np.stack([0.4 * new_t, np.zeros_like(new_t), 2.0 + 0.1 * new_t], axis=1)
    np.testing.assert_allclose(out.joints, fk(exp_pose, exp_transl), atol=1e-5)


def test_resample_joints_only_is_linear_in_time():
    t = np.arange(25) / 24.0
    joints = np.zeros((25, 24, 3), np.float32) + np.linspace(0, 1, 72, dtype=np.float32).reshape(24, 3)
    joints = joints + (t[:, None, None] * np.array([1.0, -2.0, 0.5])).astype(np.float32)
    motion = ImportedMotion(joints=joints, fps=24.0, source="-", format="bvh")
    out = resample(motion, 30.0)
    new_t = np.arange(31) / 30.0
    assert out.num_frames == 31  # 1 s at 30 fps
    np.testing.assert_allclose(out.joints[:, 5] - joints[0, 5], new_t[:, None] * [1.0, -2.0, 0.5], atol=1e-5)


# ---- BVH ---------------------------------------------------------------------------------------------
Node = tuple  # (name, offset, channels, children); a None name is an End Site


def bvh_text(root: Node, frames: list[list[float]], frame_time: float = 1 / 30) -> str:
    lines = ["HIERARCHY"]

    def emit(node: Node, depth: int, is_root: bool = False) -> None:
        name, offset, channels, children = node
        pad = "  " * depth
        lines.append(pad + ("End Site" if name is None else f"{'ROOT' if is_root else 'JOINT'} {name}"))
        lines.append(pad + "{")
        lines.append(pad + "  OFFSET " + " ".join(f"{v:.5f}" for v in offset))
        if channels:
            lines.append(pad + f"  CHANNELS {len(channels)} " + " ".join(channels))
        for child in children:
            emit(child, depth + 1)
        lines.append(pad + "}")

    emit(root, 0, is_root=True)
    lines += ["MOTION", f"Frames: {len(frames)}", f"Frame Time: {frame_time:.6f}"]
    lines += [" ".join(f"{v:.6f}" for v in f) for f in frames]
    return "\n".join(lines) + "\n"


POS6 = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
ROT3 = ("Zrotation", "Xrotation", "Yrotation")


def chain_bvh(tmp_path, frames):
    root = ("Root", (0, 0, 0), POS6, [("Mid", (0, 2, 0), ROT3, [("Tip", (0, 1, 0), ROT3, [(None, (0, 0.5, 0), (), [])])])])
    path = tmp_path / "chain.bvh"
    path.write_text(bvh_text(root, frames))
    return path


def test_bvh_chain_positions_match_a_hand_computation(tmp_path):
    # frame 0: root at (1, 2, 3) turned Rz(90) then Rx(90) (listed order Z, X: R = Rz @ Rx); Mid bent Rx(90)
    # Rx(90): (0, 2, 0) -> (0, 0, 2); Rz(90): (0, 0, 2) -> (0, 0, 2)  => Mid = (1, 2, 5)
    # Mid global = Rz Rx Rx = Rz Rx(180): (0, 1, 0) -> Rx(180) (0, -1, 0) -> Rz(90) (1, 0, 0) => Tip = (2, 2, 5)
    # End site: Tip has no rotation, same global; (0, 0.5, 0) -> (0.5, 0, 0)         => end = (2.5, 2, 5)
    # frame 1: all zero rotations, root at (0, 0, 0): straight up the y axis.
    frames = [[1, 2, 3, 90, 90, 0, 0, 90, 0, 0, 0, 0], [0] * 12]
    bvh = read_bvh(chain_bvh(tmp_path, frames))
    assert bvh.names == ["Root", "Mid", "Tip", "Tip_end"] and bvh.parents == [-1, 0, 1, 2]
    assert bvh.fps == pytest.approx(30.0, rel=1e-4) and bvh.num_frames == 2
    pos = bvh_positions(bvh)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, 2, 5], [2, 2, 5], [2.5, 2, 5]], atol=1e-9)
    np.testing.assert_allclose(pos[1], [[0, 0, 0], [0, 2, 0], [0, 3, 0], [0, 3.5, 0]], atol=1e-9)
    # a non-humanoid chain does not map onto SMPL-24, and the error says what is missing
    with pytest.raises(ValueError, match="do not map onto SMPL-24.*pelvis"):
        import_bvh(tmp_path / "chain.bvh")


def cmu_skeleton() -> Node:
    """A CMU-named skeleton in CMU units (1/0.45 inch), our own round numbers, facing +z, T-pose."""
    def leg(s: str, x: float) -> Node:
        return (f"{s[0]}HipJoint", (0, 0, 0), ROT3, [
            (f"{s}UpLeg", (x * 1.8, -1.7, 0.8), ROT3, [
                (f"{s}Leg", (x * 2.4, -6.6, 0), ROT3, [
                    (f"{s}Foot", (x * 2.5, -6.9, 0), ROT3, [
                        (f"{s}ToeBase", (0.1, -0.4, 2.0), ROT3, [(None, (0, 0, 1.0), (), [])])])])])])

    def arm(s: str, x: float) -> Node:
        return (f"{s}Shoulder", (0, 0, 0), ROT3, [
            (f"{s}Arm", (x * 3.2, 0.9, 0.1), ROT3, [
                (f"{s}ForeArm", (x * 5.0, 0, 0), ROT3, [
                    (f"{s}Hand", (x * 3.4, 0, 0), ROT3, [
                        (f"{s}FingerBase", (0, 0, 0), ROT3, [
                            (f"{s}HandIndex1", (x * 0.8, 0, 0), ROT3, [(None, (x * 0.6, 0, 0), (), [])])]),
                        (f"{s[0]}Thumb", (0, 0, 0), ROT3, [(None, (x * 0.6, 0, 0.6), (), [])])])])])])

    head = ("Neck", (0, 0, 0), ROT3, [("Neck1", (0, 1.4, 0.2), ROT3, [
        ("Head", (0, 1.5, -0.3), ROT3, [(None, (0, 1.5, -0.1), (), [])])])])
    back = ("LowerBack", (0, 0, 0), ROT3, [("Spine", (0, 2.2, 0), ROT3, [
        ("Spine1", (0, 2.2, -0.2), ROT3, [head, arm("Left", 1), arm("Right", -1)])])])
    return ("Hips", (0, 0, 0), POS6, [leg("Left", 1), leg("Right", -1), back])


def count_channels(node: Node) -> int:
    return len(node[2]) + sum(count_channels(c) for c in node[3])


def test_cmu_named_bvh_maps_to_24_joints_with_plausible_bones(tmp_path):
    root = cmu_skeleton()
    width = count_channels(root)
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        f = rng.normal(0, 15, width)  # degrees
        f[:3] = [k * 0.5, 16.5, 0.0]  # hips about 0.93 m up, walking along x
        frames.append(f.tolist())
    path = tmp_path / "cmu.bvh"
    path.write_text(bvh_text(root, frames, frame_time=1 / 120))
    motion = import_bvh(path, placement=None)
    assert motion.joints.shape == (6, 24, 3) and motion.fps == pytest.approx(120.0, rel=1e-4)
    assert motion.meta["skeleton"] == "cmu" and motion.meta["units"] == "cmu" and motion.pose is None
    bones = {j: np.linalg.norm(motion.joints[:, j] - motion.joints[:, SMPL_PARENTS[j]], axis=-1)
             for j in range(1, 24)}
    for j, length in bones.items():
        np.testing.assert_allclose(length, length[0], atol=1e-5)  # rigid bones in every frame
    thigh, shin = bones[J["left_knee"]][0], bones[J["left_ankle"]][0]
    upper_arm, forearm = bones[J["left_elbow"]][0], bones[J["left_wrist"]][0]
    assert 0.3 < thigh < 0.5 and 0.3 < shin < 0.5 and 0.2 < upper_arm < 0.4 and 0.15 < forearm < 0.3
    # camera frame: root position channel y = 16.5 CMU units up -> y = -0.93 m
    np.testing.assert_allclose(motion.joints[0, J["pelvis"]], [0.0, -16.5 * 0.0254 / 0.45, 0.0], atol=1e-6)

    # zero rotations: head above pelvis (smaller y), left hip on +x, toes toward the camera (-z)
    zero = [f[:3] + [0.0] * (width - 3) for f in frames[:1]]
    path.write_text(bvh_text(root, zero))
    rest = import_bvh(path, placement=None).joints[0]
    assert rest[J["head"], 1] < rest[J["neck"], 1] < rest[J["spine3"], 1] < rest[J["pelvis"], 1] < rest[J["left_knee"], 1]
    assert rest[J["left_hip"], 0] > rest[J["right_hip"], 0] and rest[J["left_wrist"], 0] > 0.5
    assert rest[J["left_foot"], 2] < rest[J["left_ankle"], 2]


def test_mixamo_names_in_centimetres_and_resampling(tmp_path):
    def side(s: str, x: float) -> list[Node]:
        leg = (f"mixamorig:{s}UpLeg", (x * 9, -6, 0), ROT3, [(f"mixamorig:{s}Leg", (0, -42, 0), ROT3, [
            (f"mixamorig:{s}Foot", (0, -40, 0), ROT3, [(f"mixamorig:{s}ToeBase", (0, -6, 12), ROT3, [])])])])
        arm = (f"mixamorig:{s}Shoulder", (x * 6, 10, 0), ROT3, [(f"mixamorig:{s}Arm", (x * 11, 0, 0), ROT3, [
            (f"mixamorig:{s}ForeArm", (x * 27, 0, 0), ROT3, [(f"mixamorig:{s}Hand", (x * 25, 0, 0), ROT3, [
                (f"mixamorig:{s}HandMiddle1", (x * 9, 0, 0), ROT3, [])])])])])
        return [leg, arm]

    spine2 = ("mixamorig:Spine2", (0, 12, 0), ROT3, [
        ("mixamorig:Neck", (0, 15, 0), ROT3, [("mixamorig:Head", (0, 10, 0), ROT3, [])])] + side("Left", 1)[1:] + side("Right", -1)[1:])
    root = ("mixamorig:Hips", (0, 100, 0), POS6, [side("Left", 1)[0], side("Right", -1)[0],
                                                   ("mixamorig:Spine", (0, 10, 0), ROT3, [("mixamorig:Spine1", (0, 12, 0), ROT3, [spine2])])])
    width = count_channels(root)
    frames = [[0, 100, 2.0 * k] + [0.0] * (width - 3) for k in range(13)]  # 2 cm per frame toward +z
    path = tmp_path / "mixamo.bvh"
    path.write_text(bvh_text(root, frames, frame_time=1 / 60))
    motion = import_bvh(path, fps=30, placement=None)
    assert motion.meta["skeleton"] == "mixamo" and motion.meta["units"] == "cm"
    assert motion.num_frames == 7 and motion.fps == 30.0
    # 2 cm per 60 fps frame = 4 cm per 30 fps frame, toward -z in the camera frame
    np.testing.assert_allclose(np.diff(motion.joints[:, J["pelvis"], 2]), -0.04, atol=1e-6)
    np.testing.assert_allclose(motion.joints[0, J["left_wrist"], 0], (6 + 11 + 27 + 25) / 100, atol=1e-6)


# ---- folders and errors ------------------------------------------------------------------------------
def test_import_folder_reads_npz_and_bvh_and_skips_amass_shape_files(tmp_path):
    pose, trans = amass_sequence(10)
    (tmp_path / "sub").mkdir()
    write_amass(tmp_path / "sub" / "b.npz", pose, trans, fps=60)
    np.savez(tmp_path / "sub" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    chain_bvh(tmp_path, [[0] * 12])
    (tmp_path / "notes.txt").write_text("not a motion")
    with pytest.raises(ValueError, match="do not map onto SMPL-24"):
        import_folder(tmp_path)
    messages = []
    motions = import_folder(tmp_path, fps=30, skip_invalid=True, log=messages.append)
    assert [m.format for m in motions] == ["amass"] and motions[0].num_frames == 5
    assert len(messages) == 1 and "chain.bvh" in messages[0]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"trans": np.zeros((5, 3)), "mocap_framerate": 30.0}, "needs arrays 'poses'"),
        ({"poses": np.zeros((5, 70)), "trans": np.zeros((5, 3)), "mocap_framerate": 30.0}, "W in"),
        ({"poses": np.zeros((5, 72)), "trans": np.zeros((4, 3)), "mocap_framerate": 30.0}, r"'trans' must be \(5, 3\)"),
        ({"poses": np.zeros((5, 72)), "trans": np.zeros((5, 3))}, "no frame rate"),
        ({"poses": np.full((5, 72), np.nan), "trans": np.zeros((5, 3)), "mocap_framerate": 30.0}, "non-finite"),
    ],
)
def test_malformed_amass_files_fail_clearly(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        import_amass(path)


def test_not_an_npz_and_unknown_suffix_fail_clearly(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable .npz"):
        import_motion(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="unsupported motion file type"):
        import_motion(tmp_path / "x.fbx")
    with pytest.raises(FileNotFoundError, match="BVH file not found"):
        import_bvh(tmp_path / "missing.bvh")


GOOD_HEAD = "HIERARCHY\nROOT A\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n End Site\n {\n  OFFSET 0 1 0\n }\n}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD_HEAD, "no MOTION section"),
        (GOOD_HEAD + "MOTION\nFrames: 2\nFrame Time: 0.1\n0 0 0\n", "header says 2 frames, found 1"),
        (GOOD_HEAD + "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0\n", "has 2 values; the hierarchy declares 3"),
        (GOOD_HEAD + "MOTION\nFrames: 1\nFrame Time: 0.1\n0 a 0\n", "not all numbers"),
        (GOOD_HEAD + "MOTION\nFrames: 1\n0 0 0\n", "Frame Time"),
        (GOOD_HEAD.replace("Xposition", "Wposition") + "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n", "unknown channel"),
        (GOOD_HEAD.replace("OFFSET 0 0 0", "OFFSET 0 0") + "MOTION\n", "OFFSET of A needs 3 numbers"),
        (GOOD_HEAD[:-2] + "MOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n", "ends early"),
    ],
)
def test_malformed_bvh_files_fail_clearly(tmp_path, text, message):
    path = tmp_path / "bad.bvh"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_bvh(path)


def test_a_generated_motion_written_as_amass_comes_back_unchanged(tmp_path):
    """Round trip: a camera-frame synthetic motion -> z-up AMASS world (inverse rotation) -> import."""
    from models.motion.skeleton import SMPL_NEUTRAL_REST_JOINTS
    from pipeline.synthetic.motions import make_motion

    motion = make_motion("dance", 20, 30.0, np.random.default_rng(4))
    rest0 = SMPL_NEUTRAL_REST_JOINTS[0].astype(np.float64)
    pose = motion.pose.astype(np.float64).copy()
    pose[:, 0] = (Rotation.from_matrix(Z_UP.T) * Rotation.from_rotvec(pose[:, 0])).as_rotvec()
    trans = (rest0 + motion.transl) @ Z_UP - rest0  # row vectors: x @ R == R.T @ x
    path = write_amass(tmp_path / "dance.npz", pose, trans, fps=30.0, width=72)
    back = import_amass(path, placement=None)
    np.testing.assert_allclose(back.joints, motion.joints(), atol=1e-5)
    np.testing.assert_allclose(back.transl, motion.transl, atol=1e-5)
