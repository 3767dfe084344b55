"""4DMoT training (App. A.2): windows, schedule, Eq. 2 loss going down, checkpoints, resume, Ray Train, CLI."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models.motion.skeleton import SMPL_PARENTS
from models.tokenizer import VQVAE, MotionNormalizer, TokenizerConfig, latent_frames
from pipeline.core.checkpoints import (
    CorruptCheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_tokenizer,
    save_checkpoint,
)
from pipeline.motion.windows import (
    BUCKET_LENGTHS,
    WindowConfig,
    WindowSampler,
    add_drift,
    body_size,
    rescale_bones,
    rotate_yaw,
    window_span,
)
from pipeline.synthetic.motion_mix import mixed_motions
from pipeline.synthetic.motions import make_motion
from pipeline.tokenizer.config import TokenizerTrainConfig
from pipeline.tokenizer.loop import train_tokenizer
from pipeline.tokenizer.tokenize_clips import main as tokenize_main

TINY = TokenizerConfig.tiny()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


def motions(kinds: tuple[str, ...], frames: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_motion(kind, frames, 30.0, rng).joints() for kind in kinds]


def tiny_run(**changes) -> TokenizerTrainConfig:
    base = dict(
        model="tiny", steps_lr1=6, steps_lr2=2, lr1=3e-3, lr2=3e-4, batch_size=2, backend="local",
        log_every=1, checkpoint_every=4, seed=3, windows=WindowConfig(lengths=(33,), strides=(1,)),
    )
    return TokenizerTrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 4DMoT trained for a few steps (shared by the checkpoint and CLI tests)."""
    out = tmp_path_factory.mktemp("tok")
    clips = motions(("wave", "squat"), 60)
    result = train_tokenizer(clips, None, tiny_run(), out, log=lambda _: None, heldout=motions(("dance",), 60, seed=1))
    return result


# ---- windows ----------------------------------------------------------------------------
def test_buckets_skip_lengths_clips_cannot_supply_and_latents_follow_one_plus_f_minus_1_over_4():
    clips = [np.random.default_rng(i).normal(size=(n, 24, 3)).astype(np.float32) for i, n in enumerate((40, 70))]
    sampler = WindowSampler(clips, batch_size=3, config=WindowConfig(augment=False), seed=1)
    # spans: (33,1)=33 (33,2)=65 (49,1)=49 fit; (49,2)=97 and every 81+ window do not.
    assert set(sampler.buckets) == {(33, 1), (33, 2), (49, 1)}
    drawn = set()
    for step in range(60):
        batch = sampler.batch(step)
        drawn.add((batch.length, batch.stride))
        assert batch.joints.shape == (3, batch.length, 24, 3)
        for b in range(3):
            clip = clips[batch.clip_index[b]]
            assert batch.start[b] + window_span(batch.length, batch.stride) <= len(clip)
            expect = clip[batch.start[b] : batch.start[b] + window_span(batch.length, batch.stride) : batch.stride]
            np.testing.assert_array_equal(batch.joints[b], expect)
    assert drawn == set(sampler.buckets)

    model = VQVAE(TINY).eval()
    for n in BUCKET_LENGTHS:
        ids = model.encode(torch.zeros(1, n, 24, 3))
        assert ids.shape == (1, 1 + (n - 1) // 4, 24) and latent_frames(TINY, n) == 1 + (n - 1) // 4


def test_sampler_is_a_function_of_seed_step_and_rank():
    clips = motions(("walk", "dance"), 140)
    a, b = WindowSampler(clips, 4, seed=7), WindowSampler(clips, 4, seed=7)
    other_rank = WindowSampler(clips, 4, seed=7, rank=1)
    for step in (0, 5, 123):
        np.testing.assert_array_equal(a.batch(step).joints, b.batch(step).joints)
        assert a.bucket(step) == other_rank.bucket(step)  # DDP ranks share the bucket ...
        assert not np.array_equal(a.batch(step).joints, other_rank.batch(step).joints)  # ... not the windows
    assert {a.bucket(s) for s in range(200)} == {(n, s) for n in BUCKET_LENGTHS for s in (1, 2) if window_span(n, s) <= 140}
    with pytest.raises(ValueError, match="33 frames"):
        WindowSampler([np.zeros((20, 24, 3), np.float32)], 2)


def test_augmentation_scales_about_the_first_pelvis_and_shifts_within_ten_percent():
    clips = motions(("jump",), 120)
    raw = WindowSampler(clips, 64, WindowConfig(lengths=(49,), strides=(1,), augment=False), seed=2).batch(0)
    aug = WindowSampler(clips, 64, WindowConfig(lengths=(49,), strides=(1,)), seed=2).batch(0)
    np.testing.assert_array_equal(raw.start, aug.start)  # same windows, only augmented
    assert np.all(np.abs(aug.scale - 1) <= 0.10) and np.ptp(aug.scale) > 0.1  # spread over the range
    for b in range(64):
        x, y = raw.joints[b].astype(np.float64), aug.joints[b].astype(np.float64)
        # bone vectors (and every displacement) scale by s ...
        np.testing.assert_allclose(y[:, 1:] - y[:, :1], aug.scale[b] * (x[:, 1:] - x[:, :1]), atol=2e-6)
        # ... about the first-frame pelvis, which moves by the shift alone
        np.testing.assert_allclose(y[0, 0] - x[0, 0], aug.shift[b], atol=2e-6)
        assert np.all(np.abs(aug.shift[b]) <= 0.10 * body_size(raw.joints[b][0]) + 1e-9)
    # With the differential representation a constant shift cancels (first frame subtracted).
    norm = MotionNormalizer(np.zeros(3), np.full(3, 0.5))
    shifted = torch.from_numpy(raw.joints[:1] + np.float32([0.1, -0.05, 0.08]))
    torch.testing.assert_close(norm(shifted), norm(torch.from_numpy(raw.joints[:1])), atol=1e-6, rtol=0)


# ---- schedule and loss ---------------------------------------------------------------------
def test_two_stage_learning_rate():
    cfg = tiny_run(steps_lr1=200_000, steps_lr2=100_000, lr1=1e-4, lr2=1e-5)
    assert [cfg.learning_rate(s) for s in (0, 199_999, 200_000, 299_999)] == [1e-4, 1e-4, 1e-5, 1e-5]
    defaults = TokenizerTrainConfig()
    assert (defaults.steps_lr1, defaults.steps_lr2, defaults.lr1, defaults.lr2) == (200_000, 100_000, 1e-4, 1e-5)
    assert (defaults.betas, defaults.weight_decay, defaults.float32) == ((0.9, 0.99), 1e-4, True)


def test_training_loss_decreases_and_result_is_complete(tmp_path):
    clips = motions(("wave", "squat"), 60)
    cfg = tiny_run(steps_lr1=40, steps_lr2=0, batch_size=4, log_every=10, checkpoint_every=100,
                   windows=WindowConfig(lengths=(33,), strides=(1,), augment=False))
    result = train_tokenizer(clips, None, cfg, tmp_path, log=lambda _: None, heldout=clips[:1])
    losses = [p["loss"] for p in result.loss_curve]
    assert [p["step"] for p in result.loss_curve] == [10, 20, 30, 40]
    assert losses[-1] < 0.8 * losses[0], losses
    for p in result.loss_curve:  # Eq. 2 with the tiny config's beta
        assert p["loss"] == pytest.approx(p["recon"] + TINY.commitment_beta * p["commit"], rel=1e-5)
    assert result.checkpoint == tmp_path / "checkpoints" / "step_00000040.safetensors"
    assert 0 < result.heldout_mpjpe_mm < 1000 and 0 < result.active_code_share <= 1
    assert result.heldout_windows == 1 and result.ray_run_name is None
    assert result.analytics_files["usage_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_changes_at_steps_lr1_in_the_loop(trained):
    assert [p["lr"] for p in trained.loss_curve] == [3e-3] * 6 + [3e-4] * 2
    ckpt = load_checkpoint(trained.checkpoint)
    assert ckpt.optimizer_state["param_groups"][0]["lr"] == 3e-4
    assert ckpt.optimizer_state["param_groups"][0]["betas"] == (0.9, 0.99)


# ---- checkpoints and resume -------------------------------------------------------------------
def test_resume_after_a_kill_gives_the_uninterrupted_weights(tmp_path):
    clips = motions(("wave", "turn"), 60)
    # reset dead codes every 3 steps so that resets (torch RNG) happen on both sides of the kill
    cfg = tiny_run(model=TINY.replace(reset_every=3).to_dict())
    straight = train_tokenizer(clips, None, cfg, tmp_path / "a", log=lambda _: None, heldout=clips)

    def kill_at_first_checkpoint(message: str) -> None:
        if message.startswith("checkpoint saved"):
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(clips, None, cfg, tmp_path / "b", log=kill_at_first_checkpoint, heldout=clips)
    half = load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert half.step == 4 and (half.sampler["seed"], half.sampler["step"]) == (3, 4)
    assert half.sampler["clips"] == WindowSampler(clips, 2).fingerprint()
    messages: list[str] = []
    resumed = train_tokenizer(clips, None, cfg, tmp_path / "b", log=messages.append, heldout=clips)
    assert any(m.startswith("resuming from") and "step_00000004" in m for m in messages)
    assert not any(m.startswith("warning") for m in messages)

    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.step == b.step == 8 and a.model_state.keys() == b.model_state.keys()
    for name in a.model_state:
        torch.testing.assert_close(a.model_state[name], b.model_state[name], rtol=0, atol=1e-6, msg=name)
    assert int(a.model_state["vq.steps"]) == 8
    for pid, state in a.optimizer_state["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"], b.optimizer_state["state"][pid]["exp_avg_sq"], rtol=0, atol=1e-9)
    assert straight.loss_curve == resumed.loss_curve


def test_corrupted_checkpoint_is_refused(trained, tmp_path):
    good = trained.checkpoint
    bad = tmp_path / good.name
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the tensor data
    bad.write_bytes(bytes(data))
    (tmp_path / (good.name + ".sha256")).write_bytes((good.parent / (good.name + ".sha256")).read_bytes())
    with pytest.raises(CorruptCheckpointError, match=f"{bad.name}.*corrupted"):
        load_checkpoint(bad)
    assert tokenize_main(["--checkpoint", str(bad), "--input", str(bad)]) == 2  # CLI: error, no traceback
    (tmp_path / (good.name + ".sha256")).unlink()
    with pytest.raises(CorruptCheckpointError, match="no checksum"):
        load_checkpoint(bad)


def test_checkpoint_round_trip_and_keep_last_k(tmp_path):
    model = VQVAE(TINY)
    model.vq.codebook.normal_()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.randn(2, 33, 24, 3))[1]["loss"].backward()
    opt.step()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, stats_mean=torch.zeros(3), stats_std=torch.ones(3),
                        sampler={"seed": 0, "step": step}, train_config={}, tokenizer_config=TINY.to_dict(), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004.safetensors", "step_00000005.safetensors"]
    assert len(list(tmp_path.iterdir())) == 4
    ckpt = load_checkpoint(latest_checkpoint(tmp_path))
    for name, value in model.state_dict().items():
        assert torch.equal(ckpt.model_state[name], value), name
    fresh = torch.optim.AdamW(VQVAE(TINY).parameters(), lr=1.0)
    fresh.load_state_dict(ckpt.optimizer_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    loaded, normalizer, _ = load_tokenizer(latest_checkpoint(tmp_path))
    assert torch.equal(loaded.vq.codebook, model.vq.codebook) and not loaded.training
    raw = (tmp_path / "step_00000005.safetensors").read_bytes()
    assert raw[8:9] == b"{" and raw[:2] != b"\x80\x04"  # a safetensors JSON header, not a pickle stream


# ---- the tokenize CLI -------------------------------------------------------------------------
def test_tokenize_cli_on_joints_and_on_pose(trained, tmp_path, capsys):
    rng = np.random.default_rng(5)
    motion = make_motion("dance", 60, 30.0, rng)
    np.savez(tmp_path / "joints.npz", joints=motion.joints())
    np.savez(tmp_path / "pose.npz", pose=motion.pose.reshape(60, 72), transl=motion.transl)
    ckpt = str(trained.checkpoint)

    assert tokenize_main(["--checkpoint", ckpt, "--input", str(tmp_path / "joints.npz"), "--out", str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr().out
    assert "token ids shape: (15, 24) (first 57 of 60 frames)" in out  # 57 = 8 * 7 + 1 -> 1 + 56 / 4 latents
    saved = np.load(tmp_path / "t.npz")
    assert f"MPJPE: {float(saved['mpjpe_mm']):.2f} mm" in out

    # independent reference: normalise, encode, decode, undo the normalisation by hand
    model, _, ck = load_tokenizer(ckpt)
    mean, std = ck.stats_mean.double().numpy(), ck.stats_std.double().numpy()
    joints = motion.joints()[:57].astype(np.float64)
    rep = (joints - mean) / std - (joints[:1] - mean) / std
    ids = model.encode(torch.from_numpy(rep[None]).float())
    np.testing.assert_array_equal(saved["ids"], ids[0].numpy())
    recon = model.decode_ids(ids)[0].double().detach().numpy() * std + joints[:1]
    expect = np.linalg.norm(recon - joints, axis=-1).mean() * 1000
    assert float(saved["mpjpe_mm"]) == pytest.approx(expect, rel=1e-4)

    assert tokenize_main(["--checkpoint", ckpt, "--input", str(tmp_path / "pose.npz"), "--out", str(tmp_path / "p.npz")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p.npz")["ids"], saved["ids"])


@pytest.mark.parametrize(
    "arrays, message",
    [
        (None, "not found"),
        ({"joints": np.zeros((40, 23, 3))}, r"\(T, 24, 3\)"),
        ({"joints": np.zeros((20, 24, 3))}, "too few"),
        ({"pose": np.zeros((40, 24, 3)), "transl": np.zeros((39, 3))}, "transl"),
        ({"poses": np.zeros((40, 72))}, "expected arrays"),
    ],
)
def test_tokenize_cli_errors(trained, tmp_path, capsys, arrays, message):
    path = tmp_path / "m.npz"
    if arrays is not None:
        np.savez(path, **arrays)
    assert tokenize_main(["--checkpoint", str(trained.checkpoint), "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(message, err) and "m.npz" in err


# ---- Ray Train -------------------------------------------------------------------------------
def test_ray_train_one_cpu_worker(tmp_path):
    ray = pytest.importorskip("ray")
    started_here = not ray.is_initialized()
    clips = motions(("wave", "squat"), 60)
    cfg = tiny_run(backend="ray", num_workers=1, use_gpu=None, steps_lr1=3, steps_lr2=1, checkpoint_every=2,
                   run_name="tokenizer-test")  # use_gpu=None: CPU workers on a cluster without GPUs
    t0 = time.time()
    messages: list[str] = []
    try:
        result = train_tokenizer(clips, None, cfg, tmp_path, log=messages.append, heldout=clips[:1])
    finally:
        if started_here:
            ray.shutdown()
    print(f"Ray Train run (start + 4 steps + eval): {time.time() - t0:.1f} s")
    assert result.ray_run_name == "tokenizer-test" and result.ray_run_dir
    assert "Ray Train: 1 CPU worker(s), run tokenizer-test" in messages
    assert sum(m.startswith("step ") for m in messages) == 4  # the loss curve reaches the driver's log
    assert (tmp_path / "ray" / "tokenizer-test").is_dir()
    assert [p["step"] for p in result.loss_curve] == [1, 2, 3, 4]
    assert result.checkpoint.name == "step_00000004.safetensors" and result.heldout_mpjpe_mm > 0


# ---- camera-space augmentation switches (beyond App. A.2) -------------------------------------
def test_camera_switches_keep_the_paper_draws_and_change_the_windows():
    clips = motions(("dance", "walk"), 60)
    plain = WindowSampler(clips, 4, WindowConfig(lengths=(33,), strides=(1,)), seed=5).batch(2)
    on = WindowSampler(clips, 4, WindowConfig(lengths=(33,), strides=(1,), max_yaw=0.5, max_bone_scale=0.1,
                                              max_drift=0.2), seed=5).batch(2)
    np.testing.assert_array_equal(plain.clip_index, on.clip_index)
    np.testing.assert_array_equal(plain.start, on.start)
    np.testing.assert_array_equal(plain.scale, on.scale)
    assert plain.yaw is None and on.yaw.shape == (4,) and np.abs(on.yaw).max() <= 0.5
    assert np.abs(on.drift).max() <= 0.2 and not np.allclose(plain.joints, on.joints)
    with pytest.raises(ValueError, match="max_bone_scale"):
        WindowConfig(max_bone_scale=1.5)
    with pytest.raises(ValueError, match="max_yaw"):
        WindowConfig(max_yaw=4.0)


def test_yaw_rotation_matches_scipy_about_the_first_pelvis():
    from scipy.spatial.transform import Rotation

    w = motions(("turn",), 10)[0]
    out = rotate_yaw(w, 0.7)
    expected = Rotation.from_euler("y", 0.7).apply((w - w[0, 0]).reshape(-1, 3)).reshape(w.shape) + w[0, 0]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out[..., 1], w[..., 1], atol=1e-6)  # the vertical axis is kept


def test_bone_rescaling_scales_each_bone_and_keeps_directions():
    w = motions(("wave",), 5)[0]
    factors = np.random.default_rng(0).uniform(0.8, 1.2, 24)
    out = rescale_bones(w, factors)
    np.testing.assert_array_equal(out[:, 0], w[:, 0])
    for j, p in enumerate(SMPL_PARENTS):
        if p < 0:
            continue
        before, after = w[:, j] - w[:, p], out[:, j] - out[:, p]
        np.testing.assert_allclose(after, factors[j] * before, atol=1e-5)


def test_drift_is_zero_at_the_first_frame_and_full_at_the_last():
    w = motions(("static",), 33)[0]
    out = add_drift(w, np.array([0.1, -0.2, 0.3]))
    np.testing.assert_allclose(out[0], w[0], atol=1e-7)
    np.testing.assert_allclose(out[-1] - w[-1], np.broadcast_to([0.1, -0.2, 0.3], (24, 3)), atol=1e-6)


def test_mixed_motions_are_deterministic_and_human_sized():
    a, b = mixed_motions(3, 40, seed=7, demo_share=0.0), mixed_motions(3, 40, seed=7, demo_share=0.0)
    assert len(a) == 3 and all(c.shape == (40, 24, 3) and np.isfinite(c).all() for c in a)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], mixed_motions(3, 40, seed=8, demo_share=0.0)[0])
    for clip in a:
        bones = [np.linalg.norm(clip[:, j] - clip[:, p], axis=-1) for j, p in enumerate(SMPL_PARENTS) if p >= 0]
        assert np.ptp(np.stack(bones), axis=1).max() < 1e-4  # rigid bones: neutral-shape FK
        assert (clip[..., 2] > 0.2).all()  # in front of the camera


def test_init_checkpoint_starts_from_its_weights(trained, tmp_path):
    clips = motions(("wave",), 60)
    frozen = tiny_run(lr1=0.0, lr2=0.0, weight_decay=0.0, init_checkpoint=str(trained.checkpoint))
    result = train_tokenizer(clips, None, frozen, tmp_path / "ft", log=lambda _: None, heldout=clips)
    init, tuned = load_checkpoint(trained.checkpoint), load_checkpoint(result.checkpoint)
    name = "encoder.conv_in.weight"
    assert name in init.model_state
    torch.testing.assert_close(tuned.model_state[name], init.model_state[name], rtol=0, atol=0)
    torch.testing.assert_close(tuned.stats_std, init.stats_std)  # no stats given: the initial checkpoint's
    scratch = train_tokenizer(clips, None, tiny_run(lr1=0.0, lr2=0.0, weight_decay=0.0), tmp_path / "s",
                              log=lambda _: None, heldout=clips)
    assert not torch.equal(load_checkpoint(scratch.checkpoint).model_state[name], init.model_state[name])


# ---- training folder per (motion_video version, config) ----------------------------------------
def test_tokenizer_folder_is_keyed_by_data_version_and_config(tmp_path):
    import lance
    import pyarrow as pa

    from pipeline.core.config import PipelineSettings
    from pipeline.tokenizer.stage import tokenizer_dir

    settings = PipelineSettings(data_root=str(tmp_path), train_backend="local")
    v1, v2 = settings.with_overrides(motion_video_version=1), settings.with_overrides(motion_video_version=2)
    assert tokenizer_dir(v1) != tokenizer_dir(v2)
    assert tokenizer_dir(v1).name.startswith("v1-tiny-") and tokenizer_dir(v2).name.startswith("v2-tiny-")
    assert tokenizer_dir(v1) == tokenizer_dir(v1.with_overrides(train_backend="ray"))  # how, not what: same key
    assert tokenizer_dir(v1) != tokenizer_dir(v1.with_overrides(tokenizer_steps=401))
    assert tokenizer_dir(v1) != tokenizer_dir(v1.with_overrides(tokenizer_model="full"))
    # 0 = the latest version of the table: a new version moves to a new folder
    with pytest.raises(FileNotFoundError, match="motion_video"):
        tokenizer_dir(settings)
    uri = settings.table_uri("motion_video")
    lance.write_dataset(pa.table({"id": ["a"]}), uri)
    first = tokenizer_dir(settings)
    lance.write_dataset(pa.table({"id": ["b"]}), uri, mode="append")
    assert tokenizer_dir(settings) != first
    assert tokenizer_dir(settings) == tokenizer_dir(settings.with_overrides(motion_video_version=2))


def test_same_key_resumes_and_the_current_checkpoint_follows_the_key(tmp_path):
    from pipeline.core.config import PipelineSettings
    from pipeline.tokenizer.stage import current_tokenizer_checkpoint, tokenizer_dir, tokenizer_train_config

    settings = PipelineSettings(data_root=str(tmp_path), train_backend="local", tokenizer_steps=8,
                                tokenizer_batch_size=2, motion_video_version=3)
    other = settings.with_overrides(motion_video_version=4)
    clips = motions(("wave", "squat"), 60)
    config = tokenizer_train_config(settings)
    assert current_tokenizer_checkpoint(settings) is None

    def kill_at_first_checkpoint(message: str) -> None:
        if message.startswith("checkpoint saved"):
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(clips, None, config, tokenizer_dir(settings), log=kill_at_first_checkpoint, heldout=clips)
    assert load_checkpoint(current_tokenizer_checkpoint(settings)).step == 2
    messages: list[str] = []
    result = train_tokenizer(clips, None, tokenizer_train_config(settings), tokenizer_dir(settings),
                             log=messages.append, heldout=clips)
    assert any(m.startswith("resuming from") and "step_00000002" in m for m in messages)
    assert current_tokenizer_checkpoint(settings) == result.checkpoint and load_checkpoint(result.checkpoint).step == 8
    assert current_tokenizer_checkpoint(other) is None  # another data version: nothing to resume, nothing to use
