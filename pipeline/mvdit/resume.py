"""Where an MV-DiT training run starts and what its checkpoints record (`pipeline.mvdit.loop`).

`resume` restores weights and AdamW state from the newest `pipeline.core.checkpoints` safetensors file (one process
or DDP), `resume_sharded` from the newest `torch.distributed.checkpoint` folder (FSDP2, saved on any number of
ranks); both return (start step, loss curve, running mean), so a resumed run ends with the weights of an
uninterrupted one. `checkpoint_meta` is the JSON every checkpoint carries besides its tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.core.checkpoints import latest_checkpoint, load_checkpoint, restore_model
from pipeline.mvdit import sharding


def checkpoint_meta(job: dict[str, Any], cfg: Any, done: int, curve: list, running: dict) -> dict:
    """What every checkpoint records besides tensors (JSON): sampler, configs, loss curve, backbone reference."""
    return {"step": done, "sampler": {"seed": cfg.seed, "step": done}, "train_config": cfg.to_dict(),
            "stats_mean": np.asarray(job["mean_joints"]).tolist(), "stats_std": [1.0, 1.0, 1.0],
            "tokenizer_config": {"mvdit": job["model_kwargs"], "latent_map": job["latent_map"],
                                 "tokenizer_checkpoint": str(job["tokenizer_checkpoint"]),
                                 **({"wan_encoders": job["wan_encoders"]} if cfg.is_wan else {})},
            "extra": {"loss_curve": curve, "running": running}, "keep": cfg.keep_checkpoints,
            "backbone": job.get("backbone")}


def safetensors_args(meta: dict) -> dict:
    return {"stats_mean": torch.as_tensor(meta["stats_mean"], dtype=torch.float64),
            "stats_std": torch.ones(3), "sampler": meta["sampler"], "train_config": meta["train_config"],
            "tokenizer_config": meta["tokenizer_config"], "extra": meta["extra"], "keep": meta["keep"],
            "backbone": meta["backbone"]}


def check_rope_unit(source: Path, saved_model_kwargs: dict, model_kwargs: dict) -> None:
    """Refuse to resume a run trained with another 4D RoPE unit (`models.mvdit.rope4d.MOTION_POSITION_SCALE`):
    its rotation angles would change under it."""
    theirs, ours = saved_model_kwargs.get("motion_position_scale"), model_kwargs.get("motion_position_scale")
    if theirs != ours:
        raise ValueError(f"{source} was trained with motion_position_scale={theirs} (None: before the RoPE unit "
                         f"became millimetres), this run has {ours}; resuming would change its RoPE angles: "
                         f"start in a new folder")


def resume(ckpt_dir: Path, model, optimizer, cfg: Any, rank: int, log: Callable[[str], None],
           model_kwargs: dict | None = None):
    """(start step, loss curve, running mean) from the newest safetensors checkpoint, weights and AdamW restored."""
    last = latest_checkpoint(ckpt_dir) if cfg.resume else None
    if last is None:
        return 0, [], {"n": 0, "loss": 0.0}
    ckpt = load_checkpoint(last)
    if ckpt.sampler.get("seed") != cfg.seed:
        raise ValueError(f"{last} was trained with seed {ckpt.sampler.get('seed')}, this run has seed {cfg.seed}")
    if model_kwargs is not None:
        check_rope_unit(last, ckpt.tokenizer_config.get("mvdit", {}), model_kwargs)
    restore_model(model, ckpt)
    if ckpt.optimizer_state is not None:
        optimizer.load_state_dict(ckpt.optimizer_state)
    if rank == 0:
        log(f"resuming from {last} at step {ckpt.step}")
    return ckpt.step, ckpt.extra["loss_curve"], ckpt.extra["running"]


def resume_sharded(ckpt_dir: Path, model, optimizer, cfg: Any, frozen_backbone: bool, rank: int,
                   log: Callable[[str], None], model_kwargs: dict | None = None):
    """The same from the newest sharded checkpoint (saved on any number of ranks)."""
    found = sharding.list_sharded(ckpt_dir) if cfg.resume else []
    if not found:
        return 0, [], {"n": 0, "loss": 0.0}
    meta = sharding.load_sharded(found[-1], model, optimizer, frozen_backbone)
    if meta["sampler"].get("seed") != cfg.seed:
        raise ValueError(f"{found[-1]} was trained with seed {meta['sampler'].get('seed')}, this run has seed {cfg.seed}")
    if model_kwargs is not None:
        check_rope_unit(found[-1], meta["tokenizer_config"].get("mvdit", {}), model_kwargs)
    if rank == 0:
        log(f"resuming from {found[-1]} at step {meta['step']}")
    return meta["step"], meta["extra"]["loss_curve"], meta["extra"]["running"]
