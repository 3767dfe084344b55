"""Inference on its device (issue 13, item 5): --device / --dtype, cast before move, the VAE's tiling and
slicing and posterior mode, a full-size model without its VAE, the held-out animation's length and worker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer

from pipeline.animation.cli import main
from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline, resolve_device, resolve_dtype
from pipeline.animation.loading import load_train_checkpoint
from pipeline.core.checkpoints import load_tokenizer
from pipeline.evaluation import held_out
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import build_model, model_kwargs
from pipeline.mvdit.latents import PoolLatentMap, VAELatentMap
from pipeline.mvdit.train import train_mvdit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def joints(frames: int = 33, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.2, (1, 24, 3)) + np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0)).astype(np.float32)


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def pipe(tokenizer_ckpt):
    torch.manual_seed(0)
    model = build_model(model_kwargs(MVDiTTrainConfig.tiny(), 64, 4))
    model.set_mean_joints(joints().mean(axis=0))
    vq, normalizer, _ = load_tokenizer(tokenizer_ckpt)
    return MTVCraftPipeline(model, PoolLatentMap(), (vq, normalizer))


def image(h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_auto_device_and_dtype():
    cuda = torch.cuda.is_available()
    assert resolve_device("auto").type == ("cuda" if cuda else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("fp8", torch.device("cpu"))
    if not cuda:
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cli_device_cuda_without_cuda_is_a_clear_error(tmp_path, capsys, tokenizer_ckpt):
    import cv2

    cv2.imwrite(str(tmp_path / "ref.png"), image())
    np.savez(tmp_path / "motion.npz", joints=joints())
    (tmp_path / "weights").mkdir()
    code = main(["--image", str(tmp_path / "ref.png"), "--motion", str(tmp_path / "motion.npz"), "--out",
                 str(tmp_path / "out.mp4"), "--weights", str(tmp_path / "weights"), "--device", "cuda"])
    assert code == 2 and "--device" in capsys.readouterr().err


def test_train_checkpoint_in_bfloat16_samples(tokenizer_ckpt, tmp_path):
    """dtype passes through load_train_checkpoint: the model is bf16, the sampler still steps in float32."""
    video = np.random.default_rng(0).integers(0, 256, (33, 32, 32, 3), dtype=np.uint8)
    result = train_mvdit([(video, joints())], tokenizer_ckpt, None, MVDiTTrainConfig.tiny(steps=1), tmp_path,
                         log=lambda s: None)
    pipe = load_train_checkpoint(result.checkpoint, device="cpu", dtype="bfloat16")
    assert pipe.model.dtype == torch.bfloat16 and pipe.device.type == "cpu"
    frames = pipe(image(), joints(), num_frames=33, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (33, 32, 32, 3) and frames.dtype == np.uint8
    assert load_train_checkpoint(result.checkpoint, device="auto").model.dtype == (
        resolve_dtype("auto", resolve_device("auto")))


class SpyLatentMap(PoolLatentMap):
    """The pool map, recording whether each encode asked for the posterior's mode."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.modes: list[bool] = []

    def encode(self, frames, generator=None, mode: bool = False):
        self.modes.append(mode)
        return super().encode(frames, generator, mode)


def test_reference_latent_is_the_posterior_mode(pipe):
    spy = SpyLatentMap()
    spied = MTVCraftPipeline(pipe.model, spy, pipe.tokenizer)
    spied(image(), joints(), num_frames=33, num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert spy.modes == [True]


def test_vae_tiling_slicing_and_mode():
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                                 norm_num_groups=4)
    lm = VAELatentMap(vae)  # training default: sample the posterior
    assert vae.use_tiling and vae.use_slicing
    frames = np.random.default_rng(0).integers(0, 256, (1, 9, 16, 16, 3), dtype=np.uint8)
    a = lm.encode(frames, torch.Generator().manual_seed(1), mode=True)
    b = lm.encode(frames, torch.Generator().manual_seed(2), mode=True)
    sampled = lm.encode(frames, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, sampled)
    with torch.no_grad():
        x = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3)
        mode = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    torch.testing.assert_close(a, mode.permute(0, 2, 1, 3, 4))


def test_full_size_folder_without_vae_is_an_error(tmp_path):
    """A model with the real VAE's 16 latent channels never falls back to the pool map."""
    from models.mvdit.cogvideox import COGVIDEOX_5B

    folder = tmp_path / "mvdit"
    (folder / "transformer").mkdir(parents=True)
    config = {"_class_name": "MVDiTCogVideoX", **COGVIDEOX_5B}
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"no vae/config\.json.*16 latent channels"):
        MTVCraftPipeline.from_pretrained(folder)


@pytest.mark.parametrize("available", range(33, 61))
def test_held_out_frames_suit_the_vae_and_4dmot(available):
    frames = held_out.held_out_frames(available, 49)
    assert frames <= min(available, 49) and (frames - 1) % 8 == 0
    assert frames == max(n for n in range(33, 50, 8) if n <= available)


def test_held_out_lengths_that_crashed_now_animate(pipe):
    """37-40 and 45-48 frames: the old rounding (1 + 4k) gave 37 / 45, which 4DMoT's windows of 8 cannot take."""
    for available in (38, 47):
        frames = held_out.held_out_frames(available, 49)
        old = 1 + 4 * ((available - 1) // 4)
        with pytest.raises(ValueError, match="cannot be reconstructed at their own length"):
            pipe(image(), joints(available), num_frames=old, num_inference_steps=1, motion_guidance_scale=1.0)
        out = pipe(image(), joints(available)[:frames], num_frames=frames, num_inference_steps=1,
                   motion_guidance_scale=1.0)  # the tiny c_m∅ covers 33 frames
        assert out.shape[0] == frames
    with pytest.raises(ValueError, match="at least 33"):
        held_out.held_out_frames(32, 49)


@pytest.fixture
def full_config(monkeypatch, tmp_path):
    """Settings of a full model with a checkpoint in place, and Ray replaced by recording stand-ins."""
    from pipeline.core.config import PipelineSettings

    settings = PipelineSettings(data_root=str(tmp_path), mvdit_model="cogvideox_5b")
    monkeypatch.setattr(held_out, "current_mvdit_checkpoint", lambda s: tmp_path / "step_1.safetensors")
    monkeypatch.setattr("pipeline.core.ray_runtime.ensure_ray", lambda address="": None)
    calls: dict = {}

    def animate(settings, checkpoint, device, log):
        calls["device"] = device
        return "result"

    monkeypatch.setattr(held_out, "_animate", animate)
    return settings, calls


def test_full_model_animation_is_skipped_without_a_gpu(full_config, monkeypatch):
    import ray

    settings, calls = full_config
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    messages = []
    result = held_out.animate_held_out(settings, messages.append)
    assert "no GPU" in result.extra["skipped"] and "cogvideox_5b" in result.extra["skipped"]
    assert calls == {} and messages and "skipped" in messages[0]


def test_full_model_animation_runs_in_a_one_gpu_ray_task(full_config, monkeypatch):
    import ray

    settings, calls = full_config
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 8.0})
    asked = {}

    def remote(**options):
        asked.update(options)

        class Task:
            def __init__(self, fn):
                self.remote = fn
        return Task

    monkeypatch.setattr(ray, "remote", remote)
    monkeypatch.setattr(ray, "get", lambda ref: ref)
    assert held_out.animate_held_out(settings) == "result"
    assert asked == {"num_gpus": 1} and calls["device"] == "cuda"
