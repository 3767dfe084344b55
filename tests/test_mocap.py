"""Motion capture for 4DMoT: reading files (corpus npz, AMASS, BVH) with rejections, the held-out split,
the virtual-camera placement and bone augmentation, mixed-source training, the evaluation metrics, and the
``mocap_motions`` asset on ../shared/mocap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from scipy.spatial import procrustes
from scipy.spatial.transform import Rotation

from models.motion.skeleton import SMPL_JOINT_NAMES
from pipeline.core.rejects import Reject
from pipeline.motion import camera_placement as cp
from pipeline.motion.mocap import bone_lengths, heldout_split, read_motion_file, read_sources

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def world_motion(frames: int = 60, seed: int = 0) -> np.ndarray:
    """A generated motion (camera frame) turned into a +Y-up world, metres, feet near y = 0."""
    from pipeline.synthetic.motions import make_motion

    cam = make_motion("dance", frames, 30.0, np.random.default_rng(seed)).joints().astype(np.float64)
    world = cam @ cp.WORLD_TO_CAMERA_AXES  # the axis flip is its own inverse
    world[..., 1] -= world[..., 1].min()
    return world.astype(np.float32)


def write_corpus(folder: Path, arrays: dict[str, np.ndarray], units: str = "millimetres", **sidecar) -> Path:
    path = folder / "corpus.npz"
    np.savez(path, **arrays)
    meta = {"corpus": "testcorp", "units": units, "fps": 30.0, "up_axis": "+Y (world)",
            "licence": "Creative Commons Attribution-NonCommercial 4.0 (CC BY-NC 4.0)", **sidecar}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


# ---- reading -------------------------------------------------------------------------------------------
def test_corpus_npz_round_trips_in_metres_with_licence_split_and_fps(tmp_path):
    a, b = world_motion(60, 0), world_motion(40, 1)
    path = write_corpus(tmp_path, {"cmu_daz_salsa_61_01": a * 1000, "cmu_daz_salsa_60_01": b * 1000})
    items = read_motion_file(path)
    assert [type(i).__name__ for i in items] == ["MocapSequence", "MocapSequence"]
    by_name = {i.sequence: i for i in items}
    np.testing.assert_allclose(by_name["cmu_daz_salsa_61_01"].joints, a, atol=1e-6)
    np.testing.assert_allclose(by_name["cmu_daz_salsa_60_01"].joints, b, atol=1e-6)
    seq = by_name["cmu_daz_salsa_61_01"]
    assert seq.id == "testcorp/cmu_daz_salsa_61_01" and seq.fps == 30.0 and seq.licence == "CC-BY-NC-4.0"
    assert seq.split == "train"  # the corpus is not named cmu*: the performer rule applies to CMU sources only
    # a z-up corpus comes back +Y up: (x, y, z)_z-up = (x, -z, y)_y-up
    z_up = np.stack([a[..., 0], -a[..., 2], a[..., 1]], axis=-1)
    (tmp_path / "z").mkdir()
    item = read_motion_file(write_corpus(tmp_path / "z", {"m": z_up}, units="metres", up_axis="+Z"))[0]
    np.testing.assert_allclose(item.joints, a, atol=1e-6)


def test_heldout_split_by_performer_and_bandai_style():
    assert heldout_split("cmu_bvh_smpl24", "cmu_daz_salsa_61_07") == "heldout"
    assert heldout_split("cmu_bvh_smpl24", "cmu_daz_salsa_60_07") == "train"
    assert heldout_split("cmu_bvh_smpl24", "cmu_daz_indian_06") == "train"
    assert heldout_split("bandai_smpl24", "bandai2_raise-up-left-hand_youthful_003") == "heldout"
    assert heldout_split("bandai_smpl24", "bandai1_bow_sad_001") == "heldout"
    assert heldout_split("bandai_smpl24", "bandai2_walk_normal_001") == "train"


def test_amass_file_comes_back_as_its_fk_joints_with_y_up(tmp_path):
    from pipeline.synthetic.motions import make_motion, motion_joints

    motion = make_motion("walk", 40, 30.0, np.random.default_rng(2))
    # an AMASS world is z-up: give the camera-frame motion a z-up world by the inverse of Rx(+90)
    z_up_to_cam = Rotation.from_euler("x", 90, degrees=True)
    pose = motion.pose.astype(np.float64).copy()
    pose[:, 0] = (z_up_to_cam.inv() * Rotation.from_rotvec(pose[:, 0])).as_rotvec()
    rest0 = motion_joints(np.zeros((1, 24, 3)))[0, 0].astype(np.float64)
    trans = z_up_to_cam.inv().apply(rest0 + motion.transl) - rest0
    np.savez(tmp_path / "walk.npz", poses=pose.reshape(40, 72), trans=trans, mocap_framerate=np.float64(30.0))
    (item,) = read_motion_file(tmp_path / "walk.npz")
    world_z = motion_joints(pose, trans).astype(np.float64)  # z-up world joints
    expected = np.stack([world_z[..., 0], world_z[..., 2], -world_z[..., 1]], axis=-1)
    assert item.source == "amass" and item.licence == "unknown" and item.fps == 30.0
    np.testing.assert_allclose(item.joints, expected, atol=1e-5)


def test_bvh_file_comes_back_y_up_in_metres(tmp_path):
    from test_motion_import import bvh_text, cmu_skeleton, count_channels

    root = cmu_skeleton()
    width = count_channels(root)
    frames = [[0.5 * k, 16.5, 0.0] + [0.0] * (width - 3) for k in range(40)]  # T-pose sliding along x
    path = tmp_path / "walk.bvh"
    path.write_text(bvh_text(root, frames))
    (item,) = read_motion_file(path)
    assert item.source == "bvh" and item.joints.shape == (40, 24, 3)
    unit = 0.0254 / 0.45  # the CMU unit, metres
    np.testing.assert_allclose(item.joints[:, J["pelvis"]], [[0.5 * k * unit, 16.5 * unit, 0.0] for k in range(40)], atol=1e-6)
    rest = item.joints[0]
    assert rest[J["head"], 1] > rest[J["neck"], 1] > rest[J["pelvis"], 1] > rest[J["left_knee"], 1]  # +Y up
    assert rest[J["left_hip"], 0] > rest[J["right_hip"], 0]


def test_bad_files_and_sequences_are_recorded_rejections(tmp_path):
    good = world_motion(50)
    bad_nan = good.copy()
    bad_nan[3, 4] = np.nan
    write_corpus(tmp_path, {"ok": good * 1000, "nan": bad_nan * 1000, "short": good[:20] * 1000,
                            "flat": good[:, :, :2] * 1000, "metres_as_mm": good})
    np.savez(tmp_path / "nosidecar.npz", thing=np.zeros((50, 24, 3)))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    (tmp_path / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n")
    sequences, rejects = read_sources(tmp_path)
    assert [s.sequence for s in sequences] == ["ok"]
    reasons = {Path(r.item_id).name if "/" not in r.item_id else r.item_id.split("/")[-1]: r.reason for r in rejects}
    assert all(isinstance(r, Reject) and r.stage == "mocap_motions" for r in rejects)
    assert reasons == {"nan": "non_finite", "short": "too_short", "flat": "bad_shape", "metres_as_mm": "implausible_size",
                       "nosidecar.npz": "no_sidecar", "broken.npz": "unreadable", "broken.bvh": "unreadable"}


def test_a_manifest_names_files_relative_to_itself(tmp_path):
    (tmp_path / "data").mkdir()
    write_corpus(tmp_path / "data", {"a": world_motion(40) * 1000})
    manifest = tmp_path / "list.txt"
    manifest.write_text("# mocap\n\ndata/corpus.npz\n")
    sequences, rejects = read_sources(manifest)
    assert [s.id for s in sequences] == ["testcorp/a"] and not rejects
    with pytest.raises(FileNotFoundError, match="MTVCRAFT_MOCAP"):
        read_sources(tmp_path / "missing")


# ---- camera placement ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_placed_window_projects_inside_the_frame_and_up_maps_to_minus_y(seed):
    world = world_motion(49, seed)
    level = cp.CameraPlacement(pitch_deg=(0.0, 0.0), roll_deg=(0.0, 0.0), bone_scale=0.0)
    cam = cp.place_window(world, np.random.default_rng(seed), level)
    assert cp.in_frame(cam, level)
    uv = cp.project(cam, cp.intrinsics(level))
    assert (uv >= 0).all() and (uv <= 1023).all() and (cam[..., 2] > 0).all()
    # the world's up axis (pelvis -> head direction per frame) becomes -y exactly with a level camera
    up_w, up_c = world[:, J["head"]] - world[:, J["pelvis"]], cam[:, J["head"]] - cam[:, J["pelvis"]]
    np.testing.assert_allclose(up_c[:, 1], -up_w[:, 1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(up_c[:, [0, 2]], axis=1), np.linalg.norm(up_w[:, [0, 2]], axis=1), atol=1e-5)
    # a pitched and rolled camera: framing() reads the angles back from a figure standing straight up
    upright = np.zeros((3, 24, 3))
    upright[..., 1] = np.linspace(0.0, 1.6, 24)
    f = cp.framing(cp.world_to_camera(upright, 0.3, 3.0, 1.0, 0.0, pitch_deg=5.0, roll_deg=-2.0), 1024, 1024)
    assert f["tilt_deg"] == pytest.approx(5.0, abs=0.2) and f["roll_deg"] == pytest.approx(-2.0, abs=0.2)


def test_placement_keeps_bone_lengths_and_augmentation_scales_them_consistently():
    world = world_motion(49, 3)
    rng = np.random.default_rng(0)
    plain = cp.place_window(world, rng, cp.CameraPlacement(bone_scale=0.0))
    np.testing.assert_allclose(bone_lengths(plain), bone_lengths(world), atol=1e-5)  # rigid: lengths kept
    placed = cp.place_window(world, np.random.default_rng(1), cp.CameraPlacement(bone_scale=0.15))
    ratio = bone_lengths(placed.astype(np.float64)) / bone_lengths(world.astype(np.float64))
    np.testing.assert_allclose(ratio, ratio[:1].repeat(len(ratio), 0), atol=1e-4)  # one factor per bone, every frame
    assert ratio.min() >= 0.85 - 1e-4 and ratio.max() <= 1.15 + 1e-4 and ratio[0].std() > 0.01
    mirror = cp.MIRROR[1:] - 1  # bone j -> its twin
    np.testing.assert_allclose(ratio[0], ratio[0][mirror], atol=1e-4)  # left and right bones alike


def test_a_walk_out_of_view_is_pushed_back_until_it_fits():
    world = world_motion(49, 0)
    world[..., 0] += np.linspace(0, 4.0, 49)[:, None]  # 4 m sideways in 49 frames
    p = cp.CameraPlacement(max_yaw=0.0, distance=(2.0, 2.0), lateral=(0.0, 0.0), bone_scale=0.0)
    cam = cp.place_window(world, np.random.default_rng(0), p)
    assert cp.in_frame(cam, p) and cam[0, 0, 2] > 2.5


# ---- training on several sources -----------------------------------------------------------------------
def test_mixed_sampler_draws_by_weight_places_mocap_and_is_deterministic():
    from pipeline.motion.sources import MixedWindowSampler, flatten, make_sampler
    from pipeline.motion.windows import WindowConfig, WindowSampler

    curated = [world_motion(80, s) @ cp.WORLD_TO_CAMERA_AXES.astype(np.float32) + [0, 0.9, 3.0] for s in range(3)]
    mocap = [world_motion(80, s + 10) for s in range(3)]
    clips, slices = flatten({"curated": curated, "mocap": mocap}, {"curated": 0.25, "mocap": 0.75})
    cfg = WindowConfig(lengths=(33, 49))
    sampler = make_sampler(clips, slices, 64, cfg, seed=0, rank=0)
    assert isinstance(sampler, MixedWindowSampler)
    batch = sampler.batch(5)
    from_mocap = batch.clip_index >= 3
    assert 0.6 < from_mocap.mean() < 0.9 and batch.joints.shape == (64, batch.length, 24, 3)
    up = batch.joints[:, :, J["head"], 1] - batch.joints[:, :, J["pelvis"], 1]
    assert (up[from_mocap] < 0).all() and (batch.joints[from_mocap][..., 2] > 0).all()  # placed: upright, in front
    np.testing.assert_array_equal(sampler.batch(5).joints, batch.joints)
    # the paper's recipe: curated clips alone use the plain sampler, unchanged
    assert type(make_sampler(curated, None, 8, cfg, 0, 0)) is WindowSampler
    one, one_slices = flatten({"curated": curated}, {"curated": 1.0})
    assert type(make_sampler(one, one_slices, 8, cfg, 0, 0)) is WindowSampler


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_mixed_source_training_step_runs_and_records_its_sources(tmp_path, backend):
    from pipeline.core.checkpoints import load_checkpoint
    from pipeline.tokenizer.config import TokenizerTrainConfig
    from pipeline.tokenizer.loop import train_tokenizer

    curated = [world_motion(60, s) @ cp.WORLD_TO_CAMERA_AXES.astype(np.float32) + [0, 0.9, 3.0] for s in range(3)]
    mocap = [world_motion(60, s + 10) for s in range(2)]
    cfg = TokenizerTrainConfig(model="tiny", backend=backend, use_gpu=False if backend == "local" else None, steps_lr1=2,
                               steps_lr2=0, batch_size=4, checkpoint_every=2, log_every=1, run_name="tokenizer-mixed",
                               sources={"curated": 0.5, "mocap": 0.5}, camera={"bone_scale": 0.05})
    ray = pytest.importorskip("ray") if backend == "ray" else None
    started_here = ray is not None and not ray.is_initialized()
    try:
        result = train_tokenizer({"curated": curated, "mocap": mocap}, None, cfg, tmp_path, log=lambda m: None)
    finally:
        if started_here:
            ray.shutdown()
    assert result.ray_run_name == (None if backend == "local" else "tokenizer-mixed")
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.step == 2 and np.isfinite(result.heldout_mpjpe_mm)
    assert ckpt.train_config["sources"] == {"curated": 0.5, "mocap": 0.5}
    assert ckpt.train_config["camera"] == {"bone_scale": 0.05}
    with pytest.raises(ValueError, match="no training clips"):
        train_tokenizer({"curated": curated}, None, cfg, tmp_path / "b", log=lambda m: None)


def test_source_settings():
    from pipeline.core.config import ConfigError, PipelineSettings
    from pipeline.tokenizer.stage import config_key, source_weights, tokenizer_train_config

    base = PipelineSettings()
    assert source_weights(base) == {"curated": 1.0}
    assert source_weights(base.with_overrides(mocap=str(Path(__file__)))) == {"curated": 0.5, "mocap": 0.5}
    assert source_weights(base.with_overrides(tokenizer_sources="mocap")) == {"mocap": 1.0}
    with pytest.raises(ConfigError, match="tokenizer_sources"):
        base.with_overrides(tokenizer_sources="videos")
    with pytest.raises(ConfigError, match="MTVCRAFT_MOCAP"):
        base.with_overrides(mocap="/no/such/folder")
    # the paper's recipe keeps the training folder key it had before these settings existed
    config = tokenizer_train_config(base)
    data = {k: v for k, v in config.to_dict().items() if k not in ("sources", "camera")}
    assert config_key(config) == config_key(type("Old", (), {"to_dict": lambda self: data,
                                                              "tokenizer_config": config.tokenizer_config})())
    assert config_key(tokenizer_train_config(base.with_overrides(tokenizer_sources="mocap"))) != config_key(config)


# ---- evaluation metrics --------------------------------------------------------------------------------
def test_pa_mpjpe_matches_scipy_procrustes_and_closed_forms():
    from pipeline.tokenizer.evaluation import accel_error, codebook_usage, mpjpe, pa_mpjpe, procrustes_align

    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 24, 3))
    rot = Rotation.random(5, random_state=1).as_matrix()
    similar = 1.7 * np.einsum("fij,fkj->fki", rot, target) + rng.normal(size=(5, 1, 3))
    assert pa_mpjpe(similar, target) == pytest.approx(0.0, abs=1e-6) and mpjpe(similar, target) > 100
    noisy = similar + rng.normal(scale=0.05, size=similar.shape)
    aligned = procrustes_align(noisy, target)
    for f in range(5):  # scipy: both standardised, the second aligned to the first; disparity = squared error
        _, _, disparity = procrustes(target[f], noisy[f])
        t0 = target[f] - target[f].mean(0)
        assert np.sum((aligned[f] - target[f]) ** 2) / np.sum(t0**2) == pytest.approx(disparity, rel=1e-6)
    # acceleration error: pred = target + t^2 v has second difference 2 v everywhere
    windows = rng.normal(size=(2, 10, 24, 3))
    v = np.array([0.003, 0.0, 0.004])
    shifted = windows + (np.arange(10) ** 2)[None, :, None, None] * v
    assert accel_error(shifted, windows) == pytest.approx(2 * 0.005 * 1000)
    usage = codebook_usage([np.array([[0, 1], [2, 3]])], 8)
    assert usage == {"active_codes": 0.5, "perplexity": pytest.approx(4.0)}


# ---- the asset on the shared motion capture ------------------------------------------------------------
def test_mocap_motions_asset_ingests_shared_mocap_and_is_empty_without_it(tmp_path):
    from pipeline.core import tables
    from pipeline.core.config import PipelineSettings
    from pipeline.motion.stage import MOCAP_MOTIONS, build_mocap_motions, read_mocap

    settings = PipelineSettings(data_root=str(tmp_path))
    empty = build_mocap_motions(settings, log=lambda m: None)
    assert empty.num_rows == 0 and tables.count(settings.table_uri(MOCAP_MOTIONS)) == 0 and read_mocap(settings) == []

    folder = shared_path("mocap")
    result = build_mocap_motions(settings.with_overrides(mocap=str(folder)), log=lambda m: None)
    meta = {p.stem: json.loads(p.with_suffix(".json").read_text()) for p in folder.glob("*.npz")}
    expected_minutes = sum(m["total_minutes"] for m in meta.values())
    kept_minutes = sum(result.extra["minutes"].values())
    assert kept_minutes == pytest.approx(expected_minutes, abs=0.5)  # only a few sequences < 33 frames are rejected
    assert result.rejected == sum(result.extra["rejections_by_reason"].values()) and result.preview_png
    table = tables.read(settings.table_uri(MOCAP_MOTIONS), columns=["id", "source", "licence", "fps", "num_frames", "split"])
    assert table.num_rows == result.num_rows > 3000
    rows = table.to_pylist()
    assert {r["licence"] for r in rows} == {"CMU-mocap", "CC-BY-NC-4.0"} and {r["fps"] for r in rows} == {30.0}
    held = {r["id"] for r in rows if r["split"] == "heldout"}
    assert "cmu_bvh_smpl24/cmu_daz_salsa_61_01" in held and "cmu_bvh_smpl24/cmu_daz_salsa_60_01" not in held
    stats = result.extra["per_source"]["cmu_bvh_smpl24"]
    assert 1.4 < stats["height_m_median"] < 1.7 and 0 < stats["root_speed_m_s_median_p95"][0] < 2
    rejected = tables.read(settings.table_uri("rejects"), filter="stage = 'mocap_motions'")
    assert rejected.num_rows == result.rejected
    held_clips = read_mocap(settings.with_overrides(mocap=str(folder)), split="heldout")
    assert len(held_clips) == len(held) and all(c.shape[1:] == (24, 3) for c in held_clips)


def test_place_clips_places_each_piece_in_view_and_keeps_its_motion():
    world = world_motion(130, 5)
    pieces = cp.place_clips([world], cp.CameraPlacement(), seed=0, chunk=49)
    assert [len(p) for p in pieces] == [49, 49]  # the 32-frame remainder is left out
    for k, piece in enumerate(pieces):
        assert cp.in_frame(piece, cp.CameraPlacement())
        np.testing.assert_allclose(bone_lengths(piece), bone_lengths(world[49 * k:49 * (k + 1)]), atol=1e-5)
    assert len(cp.place_clips([world] * 10, cp.CameraPlacement(), chunk=49, limit=5)) == 5
