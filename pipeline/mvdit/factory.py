"""Build MV-DiT without waste (Sec. 3.2-3.3, App. A.2): full models on ``meta``, weights assigned once.

A full model (MV-DiT-6B: 6.4B parameters, MV-DiT-18B: 18B) is never randomly initialised and then overwritten:
it is built on the ``meta`` device (no memory), its weights are read tensor by tensor from the backbone's
diffusers-layout safetensors (training, `build_from_backbone`) or from our checkpoint (inference,
`model_from_checkpoint`), each cast to its final dtype on the host and moved to the target device before the next
one is read, and handed to the model with ``load_state_dict(..., assign=True)``. Only the new modules (motion
attention, its pre-norm, c_m∅, the zero input channels of the reference latent) are initialised, on the target
device, after. Under FSDP2 (`build_sharded_from_backbone`) only rank 0 reads the folder and holds the full
model; every other rank builds on ``meta``, shards, allocates its shards and receives them by broadcast.

Dtypes: trainable parameters keep float32 master weights; frozen ones (the 18B's backbone) take ``frozen_dtype``
(bf16 on a GPU), except the modules diffusers keeps in float32 (``_keep_in_fp32_modules``: Wan's time embedder,
modulation tables and norms).

The tiny models (no backbone) are built as before, randomly initialised on the CPU (`build_random`), so the demo's
numbers do not change.

`model_kwargs` gives the constructor kwargs a training config (`pipeline.mvdit.config.MVDiTTrainConfig`) names (the
tiny models sized to the tokenizer and latent map, the full ones checked against them); `build_model` builds them
either way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from models.mvdit.param_counts import parameter_group
from pipeline.core.checkpoints import CorruptCheckpointError, atomic_write, file_sha256, restore_buffers
from pipeline.mvdit.latents import latent_frames

if TYPE_CHECKING:
    from pipeline.mvdit.config import MVDiTTrainConfig

MOTION_KEYS = ("motion_layout", "motion_token_dim", "num_joints", "unconditional_frames", "motion_pe",
               "motion_position_scale", "train_backbone")
FRESH_MODULES = ("attn0", "motion_attn", "norm4")  # the motion attention (+ the 18B's pre-norm) of a motion block
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def is_backbone_key(name: str) -> bool:
    """Whether a state-dict name is a backbone weight (not motion attention, its pre-norm or c_m∅)."""
    return parameter_group(name) == "backbone"


def model_class(kwargs: dict[str, Any]) -> type[nn.Module]:
    """``MVDiTWan`` when the kwargs hold Wan's CLIP ``image_dim``, else ``MVDiTCogVideoX``."""
    from models.mvdit.cogvideox import MVDiTCogVideoX
    from models.mvdit.wan import MVDiTWan

    return MVDiTWan if "image_dim" in kwargs else MVDiTCogVideoX


def build_random(kwargs: dict[str, Any]) -> nn.Module:
    """A randomly initialised model on the CPU (tiny configs trained from scratch, tests)."""
    return model_class(kwargs)(**kwargs)


# ---- reading weights -------------------------------------------------------------------------------------
def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a diffusers transformer folder (one file, or the shards of its index)."""
    folder = Path(folder)
    index = folder / f"{WEIGHTS_NAME}.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    raise FileNotFoundError(f"no {WEIGHTS_NAME} (or its .index.json) in {folder}")


def read_weights(files: list[Path], dtype_of: Callable[[str], torch.dtype | None],
                 device: str | torch.device = "cpu",
                 rename: Callable[[str], str | None] = lambda name: name) -> dict[str, torch.Tensor]:
    """Tensors of ``files`` by (renamed) name, each read into its own buffer (``pread``, no file mapping kept),
    cast to ``dtype_of(name)`` (None: as stored) and moved to ``device`` before the next one is read: the host
    holds one tensor beyond the result at a time. ``rename`` returning None skips a tensor unread."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu", backend="pread") as f:
            for key in f.keys():
                name = rename(key)
                if name is None:
                    continue
                tensor = f.get_tensor(key)
                dtype = dtype_of(name)
                if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                    tensor = tensor.to(dtype)  # cast before the move: the device never sees the wider copy
                out[name] = tensor.to(device)
    return out


def parameter_dtypes(model: nn.Module, frozen_dtype: torch.dtype) -> dict[str, torch.dtype]:
    """Each parameter's dtype: float32 when it trains (master weights), ``frozen_dtype`` when frozen, float32 for
    the modules diffusers keeps in float32 (``_keep_in_fp32_modules``)."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    out = {}
    for name, param in model.named_parameters():
        fp32 = param.requires_grad or any(k in name.split(".") for k in keep)
        out[name] = torch.float32 if fp32 else frozen_dtype
    return out


# ---- building ---------------------------------------------------------------------------------------------
def _fresh_like(module: nn.Module) -> nn.Module:
    """A newly initialised module of the same kind (its constructor's own initialisation, e.g. zero output)."""
    from models.mvdit.motion_attention import MotionAttention

    if isinstance(module, MotionAttention):
        return type(module)(module.cfg)
    if isinstance(module, nn.LayerNorm):
        return type(module)(module.normalized_shape, module.eps, elementwise_affine=module.elementwise_affine)
    raise TypeError(f"no initialiser for a fresh {type(module).__name__}")


def _finish(model: nn.Module, fresh_keys: list[str], device: torch.device,
            dtype_of: Callable[[str], torch.dtype]) -> nn.Module:
    """Initialise the new modules named by ``fresh_keys`` (motion attention, c_m∅) and the non-persistent
    buffers on ``device``; set trainable flags and dtypes; refuse any tensor left on ``meta``."""
    from models.mvdit.cogvideox import new_unconditional_tokens
    from models.mvdit.wan import MotionCarryingRope, MVDiTWan

    c = model.config
    fresh = sorted({k.split(f".{m}.")[0] + f".{m}" for k in fresh_keys for m in FRESH_MODULES if f".{m}." in k})
    with torch.device(device):
        for path in fresh:
            parent, name = path.rsplit(".", 1)
            setattr(model.get_submodule(parent), name, _fresh_like(model.get_submodule(path)))
        if "unconditional_motion_token" in fresh_keys:
            token = model.unconditional_motion_token
            model.unconditional_motion_token = new_unconditional_tokens(token.shape[0] // c.num_joints,
                                                                        c.num_joints, token.shape[1])
        if isinstance(model, MVDiTWan):  # RoPE tables are non-persistent buffers: rebuild them off meta
            model.rope = MotionCarryingRope(c.attention_head_dim, tuple(c.patch_size), c.rope_max_seq_len)
    model.set_trainable(c.train_backbone)
    for name, param in model.named_parameters():
        if param.dtype != dtype_of(name):
            param.data = param.data.to(dtype_of(name))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"MV-DiT weights missing after loading: {left[:5]}")
    return model


def read_backbone_config(backbone: str | Path) -> tuple[Path, dict[str, Any]]:
    """(transformer folder, its config.json without diffusers' private ``_`` keys)."""
    from models.mvdit.cogvideox import transformer_folder

    folder = transformer_folder(backbone)
    config = json.loads((folder / "config.json").read_text())
    return folder, {k: v for k, v in config.items() if not k.startswith("_")}


def _on_meta(kwargs: dict[str, Any], backbone: str | Path) -> tuple[nn.Module, Path, int]:
    """(MV-DiT on ``meta`` shaped by the backbone folder's config.json and the motion ``kwargs``, the transformer
    folder, the stock ``in_channels``: a text-to-video CogVideoX gets twice its latent channels, Eq. 3)."""
    folder, config = read_backbone_config(backbone)
    stock_in = config["in_channels"]
    if "image_dim" not in kwargs:
        out = config.get("out_channels") or stock_in
        if stock_in not in (out, 2 * out):
            raise ValueError(f"backbone in_channels={stock_in} is neither out_channels={out} (T2V) nor 2x (I2V)")
        config["in_channels"] = 2 * out
    with torch.device("meta"):
        model = model_class(kwargs)(**{**config, **{k: kwargs[k] for k in MOTION_KEYS}})
    return model, folder, stock_in


def _assign_backbone(kwargs: dict[str, Any], backbone: str | Path, device: torch.device,
                     frozen_dtype: torch.dtype) -> tuple[nn.Module, list[str], Callable[[str], torch.dtype]]:
    """(model on ``meta`` holding the backbone's weights on ``device``, the new modules' keys, dtype per name)."""
    model, folder, stock_in = _on_meta(kwargs, backbone)
    wan = "image_dim" in kwargs
    dtypes = parameter_dtypes(model, frozen_dtype)
    paper_6b = not wan and model.config.motion_layout == "paper"
    skip = (lambda k: None if k.startswith("patch_embed.text_proj.") else k) if paper_6b else (lambda k: k)
    state = read_weights(weight_files(folder), dtypes.get, device, rename=skip)
    if not wan and stock_in != model.config.in_channels:
        w = state["patch_embed.proj.weight"]
        state["patch_embed.proj.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    foreign = [k for k in missing if is_backbone_key(k)]
    if foreign or unexpected:
        raise ValueError(f"backbone {folder} does not match MV-DiT: missing {foreign[:5]}, unexpected {unexpected[:5]}")
    return model, missing, dtypes.__getitem__


def build_from_backbone(kwargs: dict[str, Any], backbone: str | Path, device: str | torch.device = "cpu",
                        frozen_dtype: torch.dtype = torch.float32) -> nn.Module:
    """MV-DiT for training from a stock diffusers backbone folder (CogVideoX-5B or Wan2.1-I2V-14B transformer).

    Built on ``meta``; the backbone's tensors are read once and assigned on ``device``; a text-to-video CogVideoX
    patch embedding gains zero input channels for the reference latent (the start equals the backbone on the
    noisy half, Eq. 3); the paper's 6B drops ``text_proj`` (App. A.1); motion attention and c_m∅ start fresh,
    initialised on ``device``. Trainable weights float32, frozen ones ``frozen_dtype``.
    """
    device = torch.device(device)
    model, fresh, dtype_of = _assign_backbone(kwargs, backbone, device, frozen_dtype)
    return _finish(model, fresh, device, dtype_of)


def build_sharded_from_backbone(kwargs: dict[str, Any], backbone: str | Path, device: str | torch.device,
                                frozen_dtype: torch.dtype, shard: Callable[[nn.Module], Any],
                                prepare: Callable[[nn.Module], Any] = lambda model: None) -> nn.Module:
    """`build_from_backbone` under a process group, without a full copy per rank (collective: every rank calls it).

    Rank 0 alone reads the backbone folder (`build_from_backbone` on its CPU: the backbone's tensors plus the
    fresh motion attention, c_m∅ and zero input channels, from rank 0's random state). Every rank builds the
    model on ``meta`` with the same dtypes (`parameter_dtypes`), calls ``prepare`` (e.g. mean joints, a reused
    c_m∅, gradient checkpointing; rank 0 calls it on its full copy too), ``shard``s it (FSDP2 on ``meta``),
    allocates only its shards on ``device`` (``to_empty``) and receives them with torch's
    ``set_model_state_dict(full_state_dict=True, broadcast_from_rank0=True)``: one tensor at a time is broadcast
    and each rank keeps its slice. The non-persistent buffers (not in a state dict: Wan's RoPE tables) are
    broadcast from rank 0's copy. So every rank holds the single-process model's exact values, sharded.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    device = torch.device(device)
    full = None
    if dist.get_rank() == 0:  # first: its fresh modules draw from the random state as one process would
        full = build_from_backbone(kwargs, backbone, "cpu", frozen_dtype)
        prepare(full)
    model, _, _ = _on_meta(kwargs, backbone)
    for name, dtype in parameter_dtypes(model, frozen_dtype).items():
        param = model.get_parameter(name)
        param.data = param.data.to(dtype)
    prepare(model)
    shard(model)
    model.to_empty(device=device)
    state = full.state_dict() if full is not None else {}
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    persistent = set(model.state_dict())
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name not in persistent:
                if full is not None:
                    buffer.copy_(full.get_buffer(name))
                dist.broadcast(buffer, src=0)
    return model


def inference_dtypes(model: nn.Module, dtype: torch.dtype) -> Callable[[str], torch.dtype]:
    """Sampling dtype per parameter: ``dtype``, float32 for what diffusers keeps in float32."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    return lambda name: torch.float32 if any(k in name.split(".") for k in keep) else dtype


def build_from_state(kwargs: dict[str, Any], state: dict[str, torch.Tensor], device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, backbone: str | Path = "") -> nn.Module:
    """MV-DiT for sampling from a trained state, on ``device`` in ``dtype`` (float32 where diffusers keeps it).

    ``state`` is consumed (each tensor cast on the host, moved, then dropped). It may hold only the trained
    weights when ``backbone`` names the frozen backbone they were trained on (`pipeline.core.checkpoints`: the 18B
    does not store its 16B backbone); nothing is initialised at random: a weight neither holds is an error.
    """
    device = torch.device(device)
    if backbone:
        model, _, _ = _assign_backbone(kwargs, backbone, device, dtype)
    else:
        with torch.device("meta"):
            model = model_class(kwargs)(**kwargs)
    dtype_of = inference_dtypes(model, dtype)
    tensors = {name: state.pop(name).to(dtype_of(name)).to(device) for name in list(state)}
    _, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    if unexpected:
        raise ValueError(f"checkpoint does not match MV-DiT {kwargs.get('motion_layout')}: unexpected {unexpected[:5]}")
    return _finish(model, [], device, dtype_of)


# ---- the MV-DiT a training config names ------------------------------------------------------------
def model_kwargs(cfg: MVDiTTrainConfig, motion_token_dim: int, latent_channels: int,
                 encoder_dims: tuple[int, int] | None = None) -> dict[str, Any]:
    """Constructor kwargs of ``MVDiTCogVideoX`` / ``MVDiTWan`` for the config (tiny: sized to the tokenizer and
    latent map; "wan_tiny" also to ``encoder_dims`` = (T5, CLIP) hidden sizes, checked for "wan_i2v_14b")."""
    from models.mvdit.cogvideox import MVDiTConfig

    if cfg.is_wan:
        return _wan_model_kwargs(cfg, motion_token_dim, latent_channels, encoder_dims)
    if cfg.model == "tiny":
        mv = MVDiTConfig.tiny(layout=cfg.layout, num_layers=cfg.tiny_layers, motion_token_dim=motion_token_dim)
        backbone = {**mv.backbone, "in_channels": 2 * latent_channels, "out_channels": latent_channels}
        mv = replace(mv, backbone=backbone, unconditional_frames=latent_frames(max(cfg.lengths)),
                     motion_pe=cfg.motion_pe)
    else:
        mv = replace(MVDiTConfig.cogvideox_5b(layout=cfg.layout), motion_pe=cfg.motion_pe)
        if motion_token_dim != mv.motion_token_dim:
            raise ValueError(f"the 4DMoT code_dim is {motion_token_dim}; MV-DiT-6B expects {mv.motion_token_dim}")
    return mv.model_kwargs()


def _wan_model_kwargs(cfg: MVDiTTrainConfig, motion_token_dim: int, latent_channels: int,
                      encoder_dims: tuple[int, int] | None) -> dict[str, Any]:
    """``MVDiTWan`` kwargs: "wan_tiny" sized to the tokenizer, latent map and encoders; "wan_i2v_14b" checked."""
    from models.mvdit.wan import MVDiTWanConfig

    if cfg.model == "wan_tiny":
        mv = MVDiTWanConfig.tiny(layout=cfg.layout, num_layers=cfg.tiny_layers, motion_token_dim=motion_token_dim)
        text_dim, image_dim = encoder_dims or (mv.backbone["text_dim"], mv.backbone["image_dim"])
        backbone = {**mv.backbone, "in_channels": 2 * latent_channels + 4, "out_channels": latent_channels,
                    "text_dim": text_dim, "image_dim": image_dim}
        uncond = latent_frames(max(cfg.lengths)) if cfg.layout == "paper" else None  # release: no c_m∅
        return replace(mv, backbone=backbone, unconditional_frames=uncond, motion_pe=cfg.motion_pe).model_kwargs()
    mv = replace(MVDiTWanConfig.wan_i2v_14b(layout=cfg.layout), motion_pe=cfg.motion_pe)
    want = {"4DMoT code_dim": (motion_token_dim, mv.motion_token_dim),
            "VAE latent channels": (latent_channels, mv.backbone["out_channels"])}
    if encoder_dims is not None:
        want["T5 hidden size"] = (encoder_dims[0], mv.backbone["text_dim"])
        want["CLIP hidden size"] = (encoder_dims[1], mv.backbone["image_dim"])
    for name, (got, expected) in want.items():
        if got != expected:
            raise ValueError(f"the {name} is {got}; MV-DiT-18B (Wan2.1-I2V-14B) expects {expected}")
    return mv.model_kwargs()


def build_model(kwargs: dict[str, Any], backbone: str = "", device: str | torch.device = "cpu",
                frozen_dtype: torch.dtype = torch.float32):
    """The MV-DiT of ``kwargs`` (``MVDiTWan`` when they hold Wan's CLIP ``image_dim``, else ``MVDiTCogVideoX``):
    with ``backbone``, built on ``meta`` and loaded from the stock diffusers folder on ``device``, fresh motion
    modules, frozen weights in ``frozen_dtype`` (`build_from_backbone`); without, randomly initialised on the
    CPU (the tiny models, `build_random`)."""
    if backbone:
        return build_from_backbone(kwargs, backbone, device, frozen_dtype)
    return build_random(kwargs)


# ---- trained-weights-only checkpoints of a frozen backbone --------------------------------------------
def backbone_reference(folder: str | Path, cache: str | Path | None = None) -> dict[str, Any]:
    """``{"path", "sha256"}`` of a frozen backbone's diffusers transformer folder: the SHA-256 over its weight
    files (name, then bytes, in name order). ``cache`` (a JSON file) keeps each file's hash with its size and
    mtime, so a 65 GB backbone is hashed once, not at every start or load."""
    files = weight_files(folder)
    known = json.loads(Path(cache).read_text()) if cache and Path(cache).is_file() else {}
    total = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key, stamp = str(file.resolve()), [stat.st_size, stat.st_mtime_ns]
        if known.get(key, {}).get("stamp") != stamp:
            known[key] = {"stamp": stamp, "sha256": file_sha256(file)}
        total.update(file.name.encode() + bytes.fromhex(known[key]["sha256"]))
    if cache:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(cache), json.dumps(known, indent=1).encode())
    return {"path": str(files[0].parent.resolve()), "sha256": total.hexdigest()}


def verified_backbone(ckpt: Any) -> str:
    """The backbone folder a trainable-only checkpoint refers to, after checking its files' SHA-256 ("" for a
    checkpoint that holds every weight); a moved or changed backbone is an error naming both."""
    if ckpt.backbone is None:
        return ""
    folder = ckpt.backbone["path"]
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{ckpt.path} stores only the trained weights; its frozen backbone {folder} is missing")
    now = backbone_reference(folder, cache=Path(ckpt.path).parent / "backbone_sha256.json")
    if now["sha256"] != ckpt.backbone["sha256"]:
        raise CorruptCheckpointError(f"{ckpt.path} was trained on the backbone {folder} with SHA-256 "
                                     f"{ckpt.backbone['sha256']}; its files now hash to {now['sha256']}")
    return folder


def model_from_checkpoint(ckpt: Any, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> nn.Module:
    """The MV-DiT of a `train_mvdit` checkpoint (`pipeline.core.checkpoints.TrainingCheckpoint`) on ``device`` in
    ``dtype``, with its non-persistent buffers and the RoPE's dataset-mean joints; a checkpoint that stores only
    the trained weights loads its backbone from the recorded folder (checksum verified)."""
    backbone = verified_backbone(ckpt)
    model = build_from_state(ckpt.tokenizer_config["mvdit"], dict(ckpt.model_state), device, dtype, backbone)
    restore_buffers(model, ckpt)
    model.set_mean_joints(ckpt.stats_mean.double())  # train_mvdit stores the RoPE's mean joints there
    return model


# CogVideoX-5B's scheduler config (its pipeline folder's scheduler/scheduler_config.json).
COGVIDEOX_5B_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0, "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "snr_shift_scale": 1.0,
}


def make_scheduler(config: dict[str, Any] | None = None):
    """CogVideoX's DDIM scheduler (v-prediction); used for training noise and 50-step sampling (App. A.3)."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler(**(config or COGVIDEOX_5B_SCHEDULER))
