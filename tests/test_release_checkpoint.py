"""The official release end to end (pipeline/animation/release_checkpoint.py) on tiny random weights saved in the release's
own formats (../shared/release-format/README.md): the 4DMoT DeepSpeed pickle, the 7B diffusers folder with a
stock-style config.json and a .bin, the 17B folder with original Wan key names; the release mm statistics."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import shared_path
from tiny_models import tiny_wan_encoders

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.rope4d import motion_rope_4d
from models.mvdit.wan import MVDiTWanConfig, to_release_state_dict
from models.tokenizer import VQVAE, TokenizerConfig
from pipeline.animation.cli import main as animate_main
from pipeline.animation.release_checkpoint import (
    ReleaseCogVideoXPipeline,
    load_release_pipeline,
    load_release_tokenizer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_4DMOT = TokenizerConfig.release().replace(channels=(32, 32), code_dim=32, codebook_size=64)
MOTION_KEYS = ("motion_layout", "motion_token_dim", "num_joints", "unconditional_frames", "motion_pe",
               "motion_position_scale", "motion_mean_joints", "train_backbone")


def real_joints_m(frames: int = 33) -> np.ndarray:
    """NLF joints of a real clip (mm -> m): the motion the release statistics were made for."""
    return np.load(shared_path("real/mtvcrafter-samples/nlf_joints_mm.npz"))["00001"][:frames] / 1000.0


def _live(model: torch.nn.Module) -> None:
    """Random values everywhere (the zero-initialised motion outputs too), so that every input matters."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory):
    """A release snapshot with tiny random weights: 4DMoT, MV-DiT-7B, MV-DiT-17B, stats, VAEs and encoders."""
    from diffusers import AutoencoderKLCogVideoX, AutoencoderKLWan
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("release")
    real = shared_path("real/mtvcrafter-samples")
    (root / "data").mkdir()
    shutil.copy(real / "release_mean_mm.npy", root / "data" / "mean.npy")
    shutil.copy(real / "release_std_mm.npy", root / "data" / "std.npy")
    # 4DMoT: a DeepSpeed model-states pickle, weights under "module" (+ another top-level key)
    torch.manual_seed(0)
    vq = VQVAE(TINY_4DMOT)
    vq.vq.codebook.copy_(torch.randn_like(vq.vq.codebook))
    (root / "4DMoT").mkdir()
    torch.save({"module": vq.state_dict(), "dp_world_size": 8}, root / "4DMoT" / "mp_rank_00_model_states.pt")
    (root / "4DMoT" / "config.json").write_text(json.dumps(TINY_4DMOT.to_dict()))
    # MV-DiT-7B: stock-style config.json (no motion keys; the release's ignored learned-PE flag), a .bin
    # the release's c_m∅ covers 13 latent frames (49 video frames): (312, C)
    seven = replace(MVDiTConfig.tiny("release", motion_token_dim=TINY_4DMOT.code_dim), unconditional_frames=13).build()
    _live(seven)
    folder = root / "MV-DiT" / "CogVideoX"
    folder.mkdir(parents=True)
    config = {k: v for k, v in seven.config.items() if not k.startswith("_") and k not in MOTION_KEYS}
    config.update({"_class_name": "Transformer7B", "use_learned_positional_embeddings": True})
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(seven.state_dict(), folder / "diffusion_pytorch_model.bin")
    AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4,
                           norm_num_groups=4).save_pretrained(root / "CogVideoX-5b" / "vae")
    # MV-DiT-17B: original Wan names, Wan's own config.json argument names
    from pipeline.mvdit.wan_conditioning import encoder_dims

    encoders = tiny_wan_encoders(root / "Wan2.1-I2V-14B")
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     latents_mean=[0.0] * 4, latents_std=[1.0] * 4).save_pretrained(encoders / "vae")
    wan_cfg = MVDiTWanConfig.tiny("release", motion_token_dim=TINY_4DMOT.code_dim)
    text_dim, image_dim = encoder_dims(encoders)
    wan_cfg = replace(wan_cfg, backbone={**wan_cfg.backbone, "text_dim": text_dim, "image_dim": image_dim})
    wan = wan_cfg.build()
    _live(wan)
    folder = root / "MV-DiT" / "Wan-2-1"
    folder.mkdir(parents=True)
    b = wan_cfg.backbone
    dim = b["num_attention_heads"] * b["attention_head_dim"]
    (folder / "config.json").write_text(json.dumps({
        "model_type": "i2v", "patch_size": list(b["patch_size"]), "text_len": 512, "in_dim": b["in_channels"],
        "dim": dim, "ffn_dim": b["ffn_dim"], "freq_dim": b["freq_dim"], "text_dim": b["text_dim"],
        "out_dim": b["out_channels"], "num_heads": b["num_attention_heads"], "num_layers": b["num_layers"],
        "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6, "image_dim": b["image_dim"]}))
    save_file({k: v.contiguous() for k, v in to_release_state_dict(wan.state_dict()).items()},
              folder / "diffusion_pytorch_model.safetensors")
    return root, seven, wan, vq


def test_4dmot_loads_strictly_with_the_release_mm_normalisation(release_dir):
    root, _, _, reference = release_dir
    vq, normalizer = load_release_tokenizer(root)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(vq.state_dict()[name], value, rtol=0, atol=0)
    joints_m = torch.from_numpy(real_joints_m()).float()
    mean_mm = np.load(root / "data" / "mean.npy")
    std_mm = np.load(root / "data" / "std.npy")
    release_input = (joints_m.double() * 1000 - torch.from_numpy(mean_mm).double()) / torch.from_numpy(std_mm).double()
    torch.testing.assert_close(normalizer(joints_m).double(), release_input, rtol=1e-5, atol=1e-4)  # metres in, mm math
    tokens = vq.motion_tokens(normalizer(joints_m[None]))
    assert tokens.shape == (1, 9 * 24, TINY_4DMOT.code_dim)  # 33 frames -> 9 latent frames


def test_7b_release_samples_with_the_release_rope_reference_and_latents(release_dir):
    root, seven, _, _ = release_dir
    pipe = load_release_pipeline(root)
    assert isinstance(pipe, ReleaseCogVideoXPipeline)
    for name, value in seven.state_dict().items():
        torch.testing.assert_close(pipe.model.state_dict()[name], value, rtol=0, atol=0)
    # RoPE: the release's mean.npy skeleton in raw millimetres (Sec. 3.2, release-format README)
    mean_mm = np.load(root / "data" / "mean.npy").astype(np.float64)
    cfg = pipe.model.motion_attention_config
    from models.mvdit.cogvideox import motion_rope_tables

    _, motion = motion_rope_tables(cfg, 3, 2, 2, pipe.model.config.motion_mean_joints, torch.device("cpu"))
    expected = motion_rope_4d(mean_mm, 3, cfg.head_dim, position_scale=1.0, axis_dims=cfg.rope.axis_dims)
    torch.testing.assert_close(motion[0], expected[0], rtol=0, atol=1e-5)
    # latents unscaled (the 7B pipeline skips scaling_factor), the reference = E(repeat(x0, frames))
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    video = torch.from_numpy(np.repeat(image[None], 33, 0))[None]
    pipe.latent_map.sample = False
    raw = pipe.latent_map.vae.encode(video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).latent_dist.mode()
    torch.testing.assert_close(pipe.latent_map.encode(video), raw.permute(0, 2, 1, 3, 4), rtol=1e-4, atol=1e-4)
    frames = pipe(image, real_joints_m(), num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (33, 32, 32, 3) and frames.dtype == np.uint8
    torch.testing.assert_close(pipe._reference, pipe.latent_map.encode(video))  # E(x0 repeated 33 times): 9 frames


def test_17b_release_samples_from_original_wan_names(release_dir):
    root, _, wan, _ = release_dir
    pipe = load_release_pipeline(root / "MV-DiT" / "Wan-2-1")
    assert type(pipe).__name__ == "WanMotionPipeline" and pipe.model.unconditional_motion_token is None
    for name, value in wan.state_dict().items():
        torch.testing.assert_close(pipe.model.state_dict()[name], value, rtol=0, atol=0)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    frames = pipe(image, real_joints_m(), num_inference_steps=2, prompt="a person is dancing", motion_guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(0))
    assert frames.shape == (33, 32, 32, 3) and frames.dtype == np.uint8


def test_cli_animates_with_the_release_checkpoint(release_dir, tmp_path, capsys):
    import cv2

    root = release_dir[0]
    image = tmp_path / "ref.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    motion = tmp_path / "motion.npz"
    np.savez(motion, joints=real_joints_m(33).astype(np.float32))
    out = tmp_path / "out.mp4"
    assert animate_main(["--image", str(image), "--motion", str(motion), "--out", str(out), "--steps", "2",
                         "--release-checkpoint", str(root)]) == 0
    assert out.is_file() and out.stat().st_size > 0
    assert animate_main(["--image", str(image), "--motion", str(motion), "--out", str(out),
                         "--release-checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "--release-checkpoint not found" in capsys.readouterr().err


def test_missing_release_files_are_named(release_dir, tmp_path):
    root = release_dir[0]
    partial = tmp_path / "partial"
    shutil.copytree(root / "MV-DiT", partial / "MV-DiT")
    with pytest.raises(FileNotFoundError, match="mp_rank_00_model_states.pt"):
        load_release_pipeline(partial)
    shutil.copytree(root / "4DMoT", partial / "4DMoT")
    with pytest.raises(FileNotFoundError, match="data/mean.npy"):
        load_release_pipeline(partial)
    shutil.copytree(root / "data", partial / "data")
    with pytest.raises(FileNotFoundError, match="CogVideoX-5B VAE"):
        load_release_pipeline(partial)
    # a DeepSpeed file with pickled objects beyond tensors is refused (weights_only), with how to convert it
    import argparse

    weights = partial / "4DMoT" / "mp_rank_00_model_states.pt"
    torch.save({"module": release_dir[3].state_dict(), "args": argparse.Namespace(lr=1e-4)}, weights)
    with pytest.raises(ValueError, match="weights_only"):
        load_release_tokenizer(partial)
