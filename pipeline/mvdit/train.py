"""Train MV-DiT (paper Sec. 3.2-3.3, App. A.2) on Ray Train or locally: `train_mvdit`, the entry point.

`prepare_job` checks the run before any worker starts (samples, 4DMoT checkpoint, backbone, VAE, Wan encoders)
and gathers what every worker needs; ``backend="local"`` then runs `pipeline.mvdit.loop.train_loop` in this
process, ``backend="ray"`` runs it under Ray Train's `TorchTrainer` on ``num_workers`` workers (`_ray_worker`).

The preview sample after training (``train_mvdit(preview=pipeline.animation.loading.preview_sample)``) of the
Wan models goes through ``pipeline.animation.wan_pipeline.WanMotionPipeline`` (flow matching, motion and text CFG)
with ``prompt``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pipeline.core.checkpoints import latest_checkpoint, load_checkpoint, load_tokenizer
from pipeline.core.progress import Log
from pipeline.mvdit.config import TINY_MODELS, MVDiTTrainConfig, MVDiTTrainResult, Preview
from pipeline.mvdit.data import Sample, as_samples
from pipeline.mvdit.factory import backbone_reference, model_kwargs
from pipeline.mvdit.latents import PoolLatentMap, latent_map_from_spec
from pipeline.mvdit.loop import train_loop


# ---- backends -------------------------------------------------------------------------------------
def _ray_worker(job: dict[str, Any]) -> None:
    """Ray Train entry point: one call per worker."""
    import ray
    import ray.train
    import ray.train.torch

    if isinstance(job["samples"], ray.ObjectRef):
        job = {**job, "samples": ray.get(job["samples"])}
    rank = ray.train.get_context().get_world_rank()
    # "ddp" wraps here; "fsdp" shards inside the loop (the optimizer must be built after sharding).
    wrap = lambda m: ray.train.torch.prepare_model(  # noqa: E731
        m, parallel_strategy_kwargs={"find_unused_parameters": True})
    train_loop(job, rank=rank, device=ray.train.torch.get_device(), wrap=wrap, report=ray.train.report, log=print)


def _fit_on_ray(job: dict[str, Any], cfg: MVDiTTrainConfig, log: Log) -> tuple[str, str]:
    from pipeline.core.ray_runtime import fit_torch_trainer

    log(f"MV-DiT strategy {cfg.strategy}")
    return fit_torch_trainer(_ray_worker, job, "samples", out_dir=job["out_dir"],
                             run_name=cfg.run_name or time.strftime("mvdit-%Y%m%d-%H%M%S"),
                             num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, ray_address=cfg.ray_address, log=log)


# ---- driver -----------------------------------------------------------------------------------------
def _mean_joints(stats: Any, samples: list[Sample]) -> np.ndarray:
    """Dataset-mean joints (24, 3) for the motion RoPE: ``stats['mean_joints']`` or the samples' mean."""
    value = stats.get("mean_joints") if isinstance(stats, dict) else getattr(stats, "mean_joints", None)
    if value is None:
        value = np.concatenate([s.joints for s in samples]).mean(axis=0)
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (24, 3):
        raise ValueError(f"stats['mean_joints'] must be (24, 3) metres, got {value.shape}")
    return value


def train_mvdit(samples: Sequence[Any], tokenizer_checkpoint: str | Path, stats: Any, config: MVDiTTrainConfig,
                out_dir: str | Path, log: Log = print, preview: Preview | None = None) -> MVDiTTrainResult:
    """Train MV-DiT on (video, joints) samples with motion tokens from a trained 4DMoT checkpoint.

    ``samples``: (frames uint8 (T, H, W, 3) or a clip reference (uri, start, end), joints (T, 24, 3) metres
    [, caption str]); references are decoded by the workers, never here.
    ``stats``: None or a dict with ``mean_joints`` (24, 3) (else the samples' mean).
    Wan models also need the Wan2.1-I2V encoders folder (``config.wan_encoders`` or ``config.backbone``).
    ``preview``: called after training with (checkpoint, first sample, config, log) when ``config.sample_steps``
    > 0 (the animation side's `pipeline.animation.loading.preview_sample`); its frames are the result's ``sample_frames``.
    """
    job = prepare_job(samples, tokenizer_checkpoint, stats, config, out_dir)
    out_dir = Path(job["out_dir"])
    run_name = run_dir = None
    if config.backend == "local":
        if config.strategy != "ddp":
            log(f"backend 'local' runs one process: strategy {config.strategy!r} is not applied")
        use_gpu = torch.cuda.is_available() if config.use_gpu is None else config.use_gpu
        train_loop(job, device=torch.device("cuda" if use_gpu else "cpu"), log=log)
    else:
        run_name, run_dir = _fit_on_ray(job, config, log)
    checkpoint = latest_checkpoint(out_dir / "checkpoints")
    if checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint in {out_dir / 'checkpoints'}")
    ckpt = load_checkpoint(checkpoint)
    frames = preview(checkpoint, job["samples"][0], config, log) if preview and config.sample_steps > 0 else None
    return MVDiTTrainResult(checkpoint, ckpt.extra.get("loss_curve", []), frames, run_name, run_dir)


def latent_map_spec(config: MVDiTTrainConfig) -> dict[str, Any]:
    """The latent map the config trains on: the backbone's VAE (``vae``), or the pool map for the tiny models."""
    if config.vae:
        from pipeline.mvdit.latents import load_vae

        spec = load_vae(config.vae).spec()
        if config.is_wan and spec["class"] != "AutoencoderKLWan":
            raise ValueError(f"MVDiTTrainConfig.vae = {config.vae!r} holds {spec['class']}; "
                             f"model {config.model!r} needs Wan2.1's AutoencoderKLWan")
        return spec
    if config.model in TINY_MODELS:
        k = config.latent_frequencies
        return PoolLatentMap(latent_channels=max(4, 3 * k * k), frequencies=k).spec()
    raise ValueError(f"MVDiTTrainConfig.vae must name the backbone's VAE folder for model {config.model!r}")


def prepare_job(samples: Sequence[Any], tokenizer_checkpoint: str | Path, stats: Any, config: MVDiTTrainConfig,
                out_dir: str | Path) -> dict[str, Any]:
    """Everything a training worker needs (checked here, before any worker starts): configs, model kwargs,
    latent map, sample references, mean joints, the frozen backbone's reference."""
    out_dir = Path(out_dir).resolve()  # Ray workers run elsewhere: a relative path would land in their session folder
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped = as_samples(samples)
    if not wrapped:
        raise ValueError("train_mvdit needs at least one sample")
    if not Path(tokenizer_checkpoint).is_file():
        raise FileNotFoundError(f"4DMoT checkpoint not found: {tokenizer_checkpoint}")
    vqvae, _, _ = load_tokenizer(tokenizer_checkpoint)
    latent_spec = latent_map_spec(config)
    if config.model not in TINY_MODELS and not config.backbone:
        raise ValueError(f"MVDiTTrainConfig.backbone must name the stock diffusers backbone folder for model "
                         f"{config.model!r} (a full model is fine-tuned from it, never trained from random weights)")
    latent_channels = latent_map_from_spec(latent_spec).latent_channels
    encoders = None
    if config.is_wan:
        from pipeline.mvdit.wan_conditioning import encoder_dims

        setting = "MVDiTTrainConfig.wan_encoders" + ("" if config.wan_encoders else " (or .backbone)")
        encoders = str(Path(config.encoders_folder).resolve()) if config.encoders_folder else ""
        dims = encoder_dims(encoders, setting=setting)  # a clear error before any worker starts
        kwargs = model_kwargs(config, vqvae.config.code_dim, latent_channels, dims)
    else:
        kwargs = model_kwargs(config, vqvae.config.code_dim, latent_channels)
    job = {"config": config.to_dict(), "out_dir": str(out_dir), "samples": wrapped, "model_kwargs": kwargs,
           "tokenizer_checkpoint": str(tokenizer_checkpoint), "latent_map": latent_spec,
           "mean_joints": _mean_joints(stats, wrapped)}
    if config.is_wan:
        job["wan_encoders"] = encoders
    if config.video_latents:  # a reference (uri, pinned version, key): the workers read their own rows
        from pipeline.mvdit.latent_table import FIRST_FRAME, ZERO_PADDED, table_reference

        job["video_latents"] = table_reference(config.video_latents, latent_spec,
                                               ZERO_PADDED if config.is_wan else FIRST_FRAME)
    if config.backbone and not kwargs["train_backbone"]:  # checkpoints then hold only the trained weights
        job["backbone"] = backbone_reference(config.backbone, cache=out_dir / "checkpoints" / "backbone_sha256.json")
    return job
