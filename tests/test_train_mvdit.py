"""MV-DiT training (App. A.2): latent map round trip, loss going down, resume, c_m∅ gradients, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer

from pipeline.core.checkpoints import load_checkpoint
from pipeline.mvdit.batches import jitter_colours
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.data import as_samples
from pipeline.mvdit.factory import build_model, make_scheduler, model_kwargs
from pipeline.mvdit.latents import PoolLatentMap, latent_map_from_spec
from pipeline.mvdit.losses import diffusion_loss
from pipeline.mvdit.train import train_mvdit

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores



def synthetic_samples(n: int = 2, frames: int = 33, size: int = 32, seed: int = 0):
    """A bright square whose position follows the pelvis joint: motion and video agree."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        path = np.cumsum(rng.normal(0, 0.02, (frames, 2)), axis=0)
        joints = rng.normal(0, 0.2, (1, 24, 3)).repeat(frames, 0).astype(np.float32)
        joints[:, :, :2] += path[:, None]
        video = np.full((frames, size, size, 3), 40, np.uint8)
        for t in range(frames):
            cx, cy = (np.clip(path[t] * 40 + size / 2, 6, size - 6)).astype(int)
            video[t, cy - 6 : cy + 6, cx - 6 : cx + 6] = (220, 180, 60)
        samples.append((video, joints))
    return samples


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_pool_latent_map_round_trips_shapes_and_pooled_content():
    lm = PoolLatentMap(latent_channels=4)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 33, 32, 48, 3), dtype=np.uint8)
    z = lm.encode(frames)
    assert z.shape == (2, 9, 4, 4, 6)
    out = lm.decode(z)
    assert out.shape == (2, 33, 32, 48, 3) and out.dtype == torch.uint8
    # A video constant on 8x8 blocks and 4-frame groups comes back exactly (up to uint8 rounding).
    blocks = rng.integers(0, 256, (1, 9, 4, 6, 3), dtype=np.uint8)
    video = np.repeat(np.repeat(np.repeat(blocks, [1] + [4] * 8, axis=1), 8, axis=2), 8, axis=3)
    z = lm.encode(video)
    assert torch.allclose(lm.encode(lm.decode(z).numpy()), z, atol=2e-2 * lm.scaling_factor)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        lm.encode(frames[:, :32])


def test_pool_latent_map_scaling_and_legacy_spec():
    frames = np.random.default_rng(1).integers(0, 256, (1, 5, 16, 16, 3), dtype=np.uint8)
    scaled, unscaled = PoolLatentMap(scaling_factor=3.0), PoolLatentMap(scaling_factor=1.0)
    assert torch.allclose(scaled.encode(frames), 3.0 * unscaled.encode(frames), atol=1e-6)
    assert torch.equal(scaled.decode(scaled.encode(frames)), unscaled.decode(unscaled.encode(frames)))
    # A spec written before the scale existed rebuilds the unscaled map it was trained with.
    legacy = {k: v for k, v in scaled.spec().items() if k != "scaling_factor"}
    assert latent_map_from_spec(legacy).scaling_factor == 1.0
    assert latent_map_from_spec(scaled.spec()).scaling_factor == 3.0


def test_block_dct_latent_map_matches_pooling_scipy_dct_and_keeps_more_detail():
    import torch.nn.functional as F
    from scipy.fft import dctn

    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (1, 5, 16, 24, 3), dtype=np.uint8)
    unit = torch.from_numpy(frames).float() / 127.5 - 1.0
    # k = 1 is average pooling (the legacy map), checked against torch's avg_pool2d.
    pool = PoolLatentMap(latent_channels=4)
    mean0 = F.avg_pool2d(unit[0, :1].permute(0, 3, 1, 2), 8)  # first latent frame: frame 0 alone
    coef = torch.einsum("cd,nchw->ndhw", pool.embedding, pool.encode(frames)[0, :1]) / pool.scaling_factor
    assert torch.allclose(coef, mean0, atol=1e-5)
    # k = 2: the 12 values of a block are scipy's orthonormal DCT-II coefficients (u, v < 2) over the block side.
    dct2 = PoolLatentMap(latent_channels=12, frequencies=2, scaling_factor=1.0)
    z = torch.einsum("cd,nchw->ndhw", dct2.embedding, dct2.encode(frames)[0, :1])[0]  # (12, h, w)
    block = unit[0, 0, 8:16, 0:8].numpy().astype(np.float64)  # block (1, 0), (8, 8, 3)
    expected = np.stack([dctn(block[..., c], norm="ortho")[:2, :2] for c in range(3)]) / 8
    np.testing.assert_allclose(z[:, 1, 0].reshape(3, 2, 2).numpy(), expected, atol=1e-5)
    # k = 8 keeps every coefficient: a lossless round trip of one frame; more frequencies, less error.
    full = PoolLatentMap(latent_channels=192, frequencies=8)
    one = frames[:, :1]
    assert torch.equal(full.decode(full.encode(one)), torch.from_numpy(one))
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (1, 1, 4, 6, 3)), 4, 2), 4, 3).astype(np.uint8)
    errors = [float((PoolLatentMap(latent_channels=max(4, 3 * k * k), frequencies=k).decode(
        PoolLatentMap(latent_channels=max(4, 3 * k * k), frequencies=k).encode(smooth)).float()
        - torch.from_numpy(smooth).float()).abs().mean()) for k in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
    assert latent_map_from_spec(dct2.spec()).frequencies == 2
    assert latent_map_from_spec({k: v for k, v in pool.spec().items() if k != "frequencies"}).frequencies == 1
    with pytest.raises(ValueError, match="latent_channels >= 12"):
        PoolLatentMap(latent_channels=4, frequencies=2)


def test_colour_jitter_is_one_affine_change_per_window():
    rng = np.random.default_rng(0)
    window = rng.integers(60, 140, (5, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(jitter_colours(window, rng, 0.0), window)
    out = jitter_colours(window, np.random.default_rng(3), 0.5)
    assert out.shape == window.shape and out.dtype == np.uint8 and not np.array_equal(out, window)
    # Each output channel is gain * (some input channel) + offset, the same map on every frame (no clipping here).
    for c in range(3):
        fits = []
        for src in range(3):
            a = np.stack([window[..., src].ravel().astype(float), np.ones(window[..., src].size)], 1)
            coef, res, *_ = np.linalg.lstsq(a, out[..., c].ravel().astype(float), rcond=None)
            fits.append(float(res[0]) if len(res) else 0.0)
        assert min(fits) / out[..., c].size < 0.5  # only uint8 rounding / clipping left


def test_warmup_schedule():
    cfg = MVDiTTrainConfig(lr=2e-5, warmup_steps=300)
    assert cfg.learning_rate(0) == pytest.approx(2e-5 / 300)
    assert cfg.learning_rate(299) == pytest.approx(2e-5)
    assert cfg.learning_rate(5000) == pytest.approx(2e-5)
    with pytest.raises(ValueError, match="strategy"):
        MVDiTTrainConfig(strategy="zero3")


def test_unconditional_tokens_change_only_on_steps_that_use_them():
    from pipeline.mvdit.sharding import finish_gradients, make_optimizer

    torch.manual_seed(0)
    model = build_model(model_kwargs(MVDiTTrainConfig.tiny(), 64, 4))
    model.set_mean_joints(np.zeros((24, 3)))
    for attn in model.motion_modules().values():  # zero-initialised output: no gradient reaches c_m∅ at init
        torch.nn.init.normal_(attn.to_out[0].weight, std=0.02)
    optimizer = make_optimizer(model, 1e-2, (0.9, 0.99), 1e-2)
    sched = make_scheduler()
    latents, ref = torch.randn(2, 9, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    tokens = torch.randn(2, 9 * 24, 64)
    g = torch.Generator().manual_seed(0)
    token = model.unconditional_motion_token

    def step(keep):
        optimizer.zero_grad(set_to_none=True)
        diffusion_loss(model, sched, latents, ref, tokens, keep, g).backward()
        grad = None if token.grad is None else token.grad.clone()
        used = finish_gradients(model, keep)
        optimizer.step()
        return grad, used

    before = token.detach().clone()
    grad, used = step(torch.tensor([True, True]))  # no drop: a zero gradient (same on every rank), then none
    assert not used and grad is not None and not grad.any() and token.grad is None
    assert torch.equal(token, before) and token not in optimizer.state
    grad, used = step(torch.tensor([True, False]))  # a drop: c_m∅ learns (its dropped rows' gradient)
    assert used and grad.abs().sum() > 0 and not torch.equal(token, before)
    moved = token.detach().clone()
    # Another step without drops: momentum and weight decay would move it; AdamW skips it instead.
    step(torch.tensor([True, True]))
    assert torch.equal(token, moved) and int(optimizer.state[token]["step"]) == 1


def test_training_reduces_loss_and_resume_matches(tokenizer_ckpt, tmp_path):
    samples = synthetic_samples()
    cfg = MVDiTTrainConfig.tiny(steps=40, log_every=10, checkpoint_every=40, lr=2e-3)
    result = train_mvdit(samples, tokenizer_ckpt, None, cfg, tmp_path / "long", log=lambda s: None)
    losses = [p["loss"] for p in result.loss_curve]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses

    # Resume: 6 steps straight vs 3 steps, stop, then resume to 6: identical weights and AdamW state.
    short = MVDiTTrainConfig.tiny(steps=6, checkpoint_every=3, log_every=3)
    straight = train_mvdit(samples, tokenizer_ckpt, None, short, tmp_path / "a", log=lambda s: None)
    train_mvdit(samples, tokenizer_ckpt, None, MVDiTTrainConfig.tiny(steps=3, checkpoint_every=3, log_every=3),
                tmp_path / "b", log=lambda s: None)
    resumed = train_mvdit(samples, tokenizer_ckpt, None, short, tmp_path / "b", log=lambda s: None)
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a.step == b.step == 6
    for name, value in a.model_state.items():
        assert torch.equal(value, b.model_state[name]), name
    assert a.extra["loss_curve"] == b.extra["loss_curve"]


def test_resume_refuses_a_checkpoint_of_another_rope_unit(tokenizer_ckpt, tmp_path, monkeypatch):
    """A run killed before the RoPE unit became millimetres must not continue with the new angles."""
    import pipeline.mvdit.train as train_module

    samples = synthetic_samples(n=1)
    original = train_module.model_kwargs
    monkeypatch.setattr(train_module, "model_kwargs",
                        lambda *a, **k: {**original(*a, **k), "motion_position_scale": 1.0})  # the old metres
    train_mvdit(samples, tokenizer_ckpt, None, MVDiTTrainConfig.tiny(steps=1, checkpoint_every=1), tmp_path,
                log=lambda s: None)
    monkeypatch.setattr(train_module, "model_kwargs", original)
    with pytest.raises(ValueError, match="motion_position_scale=1.0"):
        train_mvdit(samples, tokenizer_ckpt, None, MVDiTTrainConfig.tiny(steps=2, checkpoint_every=1), tmp_path,
                    log=lambda s: None)


def test_preview_sample_and_bad_inputs(tokenizer_ckpt, tmp_path):
    samples = synthetic_samples(n=1)
    cfg = MVDiTTrainConfig.tiny(steps=1, sample_steps=2)
    from pipeline.animation.loading import preview_sample

    assert train_mvdit(samples, tokenizer_ckpt, None, cfg, tmp_path / "n", log=print).sample_frames is None
    result = train_mvdit(samples, tokenizer_ckpt, None, cfg, tmp_path, log=lambda s: None, preview=preview_sample)
    assert result.sample_frames.shape == (33, 32, 32, 3) and result.sample_frames.dtype == np.uint8
    video, joints = samples[0]
    with pytest.raises(ValueError, match="joints must be \\(T, 24, 3\\)"):
        train_mvdit([(video, joints[:, :10])], tokenizer_ckpt, None, cfg, tmp_path, log=print)
    with pytest.raises(ValueError, match="shortest window needs 33"):
        train_mvdit([(video[:20], joints[:20])], tokenizer_ckpt, None, cfg, tmp_path / "x", log=print)
    with pytest.raises(FileNotFoundError, match="MVDiTTrainConfig.wan_encoders \\(or .backbone\\) is empty"):
        train_mvdit(samples, tokenizer_ckpt, None, MVDiTTrainConfig.tiny(model="wan_tiny"), tmp_path / "w", log=print)


def test_diffusers_vae_latent_maps_round_trip_shapes(tmp_path):
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan

    from pipeline.mvdit.latents import VAELatentMap, load_vae

    torch.manual_seed(0)
    frames = np.random.default_rng(0).integers(0, 256, (1, 9, 16, 16, 3), dtype=np.uint8)
    cog = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                                 norm_num_groups=4)
    wan = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           latents_mean=[0.1] * 4, latents_std=[2.0] * 4)
    for vae in (cog, wan):
        lm = VAELatentMap(vae)
        z = lm.encode(frames)
        assert (lm.spatial_factor, lm.temporal_factor) == (8, 4)
        assert z.shape == (1, 3, 4, 2, 2)
        out = lm.decode(z)
        assert out.shape == (1, 9, 16, 16, 3) and out.dtype == torch.uint8
    cog.save_pretrained(tmp_path / "pipe" / "vae")
    assert load_vae(tmp_path / "pipe").spec()["class"] == "AutoencoderKLCogVideoX"
    with pytest.raises(FileNotFoundError, match="no diffusers VAE config.json"):
        load_vae(tmp_path / "missing")


def test_ray_train_one_cpu_worker(tokenizer_ckpt, tmp_path):
    """The same loop under Ray Train's TorchTrainer (DDP, 1 CPU worker); ~55 s, mostly Ray start-up."""
    cfg = MVDiTTrainConfig.tiny(steps=2, backend="ray", num_workers=1, use_gpu=False, checkpoint_every=2, log_every=1)
    result = train_mvdit(synthetic_samples(n=1), tokenizer_ckpt, None, cfg, tmp_path, log=lambda s: None)
    assert result.ray_run_name and result.checkpoint.name == "step_00000002.safetensors"
    assert [p["step"] for p in result.loss_curve] == [1, 2]


def test_pe_variant_reaches_the_model_and_dynamic_pe_uses_first_frame_joints(tokenizer_ckpt, tmp_path):
    from pipeline.animation.loading import load_train_checkpoint

    with pytest.raises(ValueError, match="motion_pe"):
        MVDiTTrainConfig.tiny(motion_pe="5d")
    assert model_kwargs(MVDiTTrainConfig.tiny(motion_pe="2d_spatial"), 64, 4)["motion_pe"] == "2d_spatial"
    cfg = MVDiTTrainConfig.tiny(steps=2, checkpoint_every=2, log_every=1, motion_pe="dynamic")
    result = train_mvdit(synthetic_samples(n=1), tokenizer_ckpt, None, cfg, tmp_path, log=lambda s: None)
    pipe = load_train_checkpoint(result.checkpoint)
    assert pipe.model.config.motion_pe == "dynamic"
    video, joints = synthetic_samples(n=1, seed=3)[0]
    # Two steps leave the zero-initialised motion-attention output near zero; give it weight so positions show.
    with torch.no_grad():
        for name, param in pipe.model.named_parameters():
            if "attn0.to_out" in name:  # the motion attention (Sec. 3.2)
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))

    def sample(motion):
        return pipe(video[0], motion, num_frames=33, height=32, width=32, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0))

    out = sample(joints)
    assert torch.equal(pipe.rope_joints, torch.as_tensor(joints[0], dtype=torch.float64))
    # The same displacements from another first-frame skeleton (a fixed per-joint offset): the differential
    # tokens are unchanged, so any change in the video comes from the "dynamic" RoPE positions.
    offset = np.random.default_rng(5).normal(0, 0.3, (1, 24, 3)).astype(np.float32)
    assert torch.equal(pipe.motion_tokens(joints, 33), pipe.motion_tokens(joints + offset, 33))
    assert not np.array_equal(out, sample(joints + offset))


def test_full_models_need_a_backbone_and_never_preview_on_the_driver_cpu(tokenizer_ckpt, tmp_path, monkeypatch):
    from pipeline.animation.loading import preview_sample

    full = MVDiTTrainConfig(model="cogvideox_5b", vae="", backend="local")
    assert (full.strategy, full.checkpoint_blocks, full.reshard_after_forward) == ("fsdp", True, False)
    tiny = MVDiTTrainConfig.tiny()
    assert (tiny.strategy, tiny.checkpoint_blocks) == ("ddp", False)
    with pytest.raises(ValueError, match="MVDiTTrainConfig.strategy"):
        MVDiTTrainConfig(strategy="deepspeed_zero2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lines = []
    sample = as_samples(synthetic_samples(n=1))[0]
    assert preview_sample(tmp_path / "step_00000001.safetensors", sample, full, lines.append) is None
    assert "preview skipped: model 'cogvideox_5b' is full size" in lines[0] and "driver's CPU" in lines[0]


@pytest.mark.parametrize("model_name", ["tiny", "wan_tiny"])
def test_block_gradient_checkpointing_gives_the_same_gradients(model_name):
    """Per-block checkpointing (on by default at full size) recomputes activations in backward: same gradients."""
    from pipeline.mvdit.losses import flow_matching_loss

    cfg = MVDiTTrainConfig.tiny(model=model_name)
    kwargs = model_kwargs(cfg, 64, 4, (16, 24)) if cfg.is_wan else model_kwargs(cfg, 64, 4)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model(kwargs)
        model.set_mean_joints(np.zeros((24, 3)))
        calls = []
        if checkpointing:
            model.enable_gradient_checkpointing()
            run = model._gradient_checkpointing_func
            model._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or run(*a, **k)
        g = torch.Generator().manual_seed(0)
        latents, ref = torch.randn(2, 9, 4, 4, 4, generator=g), torch.randn(2, 9 if cfg.is_wan else 1, 4, 4, 4, generator=g)
        tokens, keep = torch.randn(2, 9 * 24, 64, generator=g), torch.tensor([True, False])
        if cfg.is_wan:
            text, image = torch.randn(2, 512, 16, generator=g), torch.randn(2, 257, 24, generator=g)
            loss = flow_matching_loss(model, latents, ref, tokens, keep, text, image, g)
        else:
            loss = diffusion_loss(model, make_scheduler(), latents, ref, tokens, keep, g)
        loss.backward()
        assert len(calls) == (cfg.tiny_layers if checkpointing else 0)  # every block ran checkpointed
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, value in grads[0].items():
        torch.testing.assert_close(grads[1][name], value, atol=1e-6, rtol=1e-5, msg=name)
