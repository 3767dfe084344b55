"""The official MTVCrafter release end to end: its 4DMoT + MV-DiT-7B (or -17B) from their own files (`paper-facts.md`).

Layout read (the Hugging Face snapshot ``yanboding/MTVCrafter`` plus what the official scripts read beside
it; ``../shared/release-format/README.md`` describes every file)::

    DIR/4DMoT/mp_rank_00_model_states.pt   4DMoT: a torch pickle, weights under "module" (loaded weights_only)
    DIR/MV-DiT/CogVideoX/                  MV-DiT-7B: config.json + diffusion_pytorch_model.{bin,safetensors}
    DIR/MV-DiT/Wan-2-1/                    MV-DiT-17B: config.json (Wan's own argument names) + weights
                                           (original Wan key names)
    DIR/data/mean.npy, DIR/data/std.npy    (24, 3) millimetres: the 4DMoT normalisation and the RoPE skeleton
                                           (also read: release_mean_mm.npy / release_std_mm.npy, as in
                                           ../shared/real/mtvcrafter-samples)
    DIR/CogVideoX-5b/                      7B: the base pipeline THUDM/CogVideoX-5b (its vae/ is used)
    wan_encoders (--wan-encoders)          17B: a diffusers Wan2.1-I2V folder (vae/, T5 and CLIP encoders);
                                           default DIR/Wan2.1-I2V-14B

``DIR`` may be the snapshot (MV-DiT-7B) or one of its ``MV-DiT/CogVideoX`` / ``MV-DiT/Wan-2-1`` folders.

What the release does and this loader reproduces:
- 4DMoT in ``TokenizerConfig.release()`` (absolute joints, per-joint per-axis statistics, 8-frame windows),
  loaded strictly. The official file carries no config; ``4DMoT/config.json`` (a ``TokenizerConfig`` dict),
  when present, builds another size in the same format (the tests' tiny weights).
- Units: the project's joints are metres, the release's statistics millimetres. (J - mean) / std is the same
  number for J, mean, std all in metres, so the statistics are divided by 1000 once, here. The RoPE skeleton
  is the same ``mean.npy`` (metres here) times ``MOTION_POSITION_SCALE`` = raw millimetres, as released.
- MV-DiT-7B: CogVideoX VAE latents *not* multiplied by ``scaling_factor``, and the reference latent is the
  VAE encoding of the reference image repeated over all frames (not one latent repeated); motion CFG 3.
- MV-DiT-17B: the release's layout (key-reshape quirk, no unconditional token: no motion CFG), text CFG.
Missing files are errors naming the file and what it is.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.mvdit.latents import VAELatentMap, load_vae

TOKENIZER_FILE = Path("4DMoT") / "mp_rank_00_model_states.pt"
MODEL_FOLDERS = {"7b": Path("MV-DiT") / "CogVideoX", "17b": Path("MV-DiT") / "Wan-2-1"}
STATS_FILES = ((Path("data") / "mean.npy", Path("data") / "std.npy"),
               (Path("release_mean_mm.npy"), Path("release_std_mm.npy")))
COGVIDEOX_BASE = "CogVideoX-5b"
WAN_ENCODERS = "Wan2.1-I2V-14B"
MM_PER_M = 1000.0


def release_root(path: str | Path) -> tuple[Path, str]:
    """(snapshot root, "7b" | "17b") for a snapshot folder or one of its MV-DiT model folders."""
    path = Path(path)
    for model, sub in MODEL_FOLDERS.items():
        if path.name == sub.name and path.parent.name == sub.parent.name:
            return path.parent.parent, model
    if not path.is_dir():
        raise FileNotFoundError(f"release checkpoint folder not found: {path}")
    return path, "7b"


def load_release_stats(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The release's per-joint, per-axis (24, 3) mean and std in millimetres."""
    root = Path(root)
    for mean_file, std_file in STATS_FILES:
        if (root / mean_file).is_file() and (root / std_file).is_file():
            mean, std = np.load(root / mean_file), np.load(root / std_file)
            if mean.shape != (24, 3) or std.shape != (24, 3):
                raise ValueError(f"{root / mean_file}, {root / std_file}: expected (24, 3) arrays (mm), "
                                 f"got {mean.shape} and {std.shape}")
            return mean.astype(np.float64), std.astype(np.float64)
    wanted = " or ".join(f"{m} + {s}" for m, s in STATS_FILES)
    raise FileNotFoundError(f"no release motion statistics in {root}: expected {wanted} "
                            "((24, 3) mm, the official repo's data/mean.npy and data/std.npy)")


def load_release_tokenizer(root: str | Path, device: str | torch.device = "cpu"):
    """The released 4DMoT (eval) and its normaliser for joints in metres: ``(VQVAE, MotionNormalizer)``."""
    from models.tokenizer import VQVAE, MotionNormalizer, TokenizerConfig

    root = Path(root)
    path = root / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no released 4DMoT at {path} (the snapshot's {TOKENIZER_FILE})")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds more than tensors and plain values, which weights_only loading refuses; "
                         f"re-save its weights alone, torch.save({{'module': sd['module']}}, path), and retry: "
                         f"{err}") from err
    state = data.get("module") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a DeepSpeed model-states dict with the weights under 'module', "
                         f"got {type(data).__name__} with keys {list(data)[:5] if isinstance(data, dict) else '-'}")
    config_file = path.parent / "config.json"
    config = (TokenizerConfig.from_dict(json.loads(config_file.read_text())) if config_file.is_file()
              else TokenizerConfig.release())
    model = VQVAE(config)
    model.load_state_dict(state, strict=True)
    mean_mm, std_mm = load_release_stats(root)
    normalizer = MotionNormalizer(mean_mm / MM_PER_M, std_mm / MM_PER_M, differential=config.differential)
    return model.to(device).eval(), normalizer.to(device)


class UnscaledVAELatentMap(VAELatentMap):
    """CogVideoX's VAE as the released 7B pipeline uses it: latents not multiplied by ``scaling_factor``."""

    def _scale(self, z: torch.Tensor, inverse: bool) -> torch.Tensor:
        return z


class ReleaseCogVideoXPipeline(MTVCraftPipeline):
    """MV-DiT-7B sampling as released: the reference latents are the VAE encoding of the reference image repeated
    over every frame (one latent per latent frame, as the causal VAE gives them), not one latent repeated."""

    _reference: torch.Tensor | None = None

    def prepare(self, reference_image, motion, num_frames, height, width):
        call = super().prepare(reference_image, motion, num_frames, height, width)
        video = np.repeat(call.image[None], call.num_frames, axis=0)
        self._reference = self.latent_map.encode(torch.from_numpy(video)[None].to(self.device))  # (1, f, C, h, w)
        return call

    def guided_prediction(self, latents, t, reference, tokens, motion_scale):
        return super().guided_prediction(latents, t, self._reference, tokens, motion_scale)


def wan_kwargs_from_release_config(config: dict[str, Any]) -> dict[str, Any]:
    """``MVDiTWan`` backbone kwargs from the official Wan config.json (``dim``, ``num_heads``, ``in_dim``, ...)."""
    heads = int(config["num_heads"])
    return {
        "num_attention_heads": heads, "attention_head_dim": int(config["dim"]) // heads,
        "in_channels": int(config["in_dim"]), "out_channels": int(config["out_dim"]),
        "text_dim": int(config["text_dim"]), "freq_dim": int(config["freq_dim"]), "ffn_dim": int(config["ffn_dim"]),
        "num_layers": int(config["num_layers"]), "eps": float(config.get("eps", 1e-6)),
        "cross_attn_norm": bool(config.get("cross_attn_norm", True)), "patch_size": tuple(config["patch_size"]),
        # the official config names no CLIP width: ViT-H's 1280; another size (tiny test weights) may name one
        "image_dim": int(config.get("image_dim", 1280)), "added_kv_proj_dim": int(config["dim"]),
    }


def load_release_pipeline(path: str | Path, device: str | torch.device = "cpu",
                          wan_encoders: str | Path | None = None) -> MTVCraftPipeline:
    """A ready sampling pipeline for the released 4DMoT + MV-DiT-7B (or -17B) in ``path`` (module docstring)."""
    from models.mvdit.cogvideox import MVDiTCogVideoX

    root, which = release_root(path)
    folder = root / MODEL_FOLDERS[which]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no released MV-DiT-{which.upper()} at {folder} (config.json + weights)")
    vq, normalizer = load_release_tokenizer(root, device)
    mean_m = load_release_stats(root)[0] / MM_PER_M  # RoPE skeleton; x MOTION_POSITION_SCALE = raw mm
    tokens = {"motion_token_dim": vq.config.code_dim, "num_joints": 24}
    if which == "17b":
        return _wan_release_pipeline(root, folder, device, wan_encoders, (vq, normalizer), mean_m, tokens)
    model = MVDiTCogVideoX.from_pretrained(str(folder), motion_layout="release", local_files_only=True, **tokens)
    model.set_mean_joints(mean_m)
    base = root / COGVIDEOX_BASE
    try:
        vae = load_vae(base, device)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"MV-DiT-7B needs the CogVideoX-5B VAE of its base pipeline at {base} "
                                f"(THUDM/CogVideoX-5b, its vae/ folder): {err}") from err
    latent_map = UnscaledVAELatentMap(vae.vae, folder=vae.folder)
    return ReleaseCogVideoXPipeline(model.to(device), latent_map, (vq, normalizer))


def _wan_release_pipeline(root: Path, folder: Path, device, wan_encoders, tokenizer, mean_m, tokens):
    from models.mvdit.wan import MVDiTWan, MVDiTWanConfig
    from pipeline.animation.wan_pipeline import WanMotionPipeline
    from pipeline.mvdit.wan_conditioning import load_wan_conditioner

    encoders = Path(wan_encoders) if wan_encoders else root / WAN_ENCODERS
    setting = "--wan-encoders" if wan_encoders else f"the default {encoders} (set --wan-encoders)"
    conditioner = load_wan_conditioner(str(encoders), device=torch.device(device), setting=setting)
    latent_map = load_vae(encoders, device)
    config = json.loads((folder / "config.json").read_text())
    backbone = wan_kwargs_from_release_config(config)
    kwargs = {**MVDiTWanConfig.wan_i2v_14b("release").model_kwargs(), **backbone, **tokens}
    model = MVDiTWan.from_release_checkpoint(folder, **kwargs)
    model.set_mean_joints(mean_m)
    return WanMotionPipeline(model.to(device), latent_map, conditioner, tokenizer)
