"""The MV-DiT training loop (paper Sec. 3.2-3.3, App. A.2), read top to bottom: setup, micro-batch, step.

One training loop (`train_loop`) serves both backends, as in `train_tokenizer`:
``backend="ray"`` runs it under Ray Train's `TorchTrainer` on ``num_workers``
workers; ``backend="local"`` calls it in this process (tests, one GPU); both start from
`pipeline.mvdit.train.train_mvdit`, which checks the run and builds the job (`prepare_job`).

Per step, ``grad_accum_steps`` micro-batches (`micro_step`; each micro-batch's
randomness seeded by (seed, step, rank, micro), so a resumed run ends with the
weights of an uninterrupted one, and accumulation 1 draws as before it existed)
of:
1. ``batch_size`` windows of one clip length, stride and resolution bucket, augmented
   (`pipeline.mvdit.batches`);
2. their video latents z_0 and reference latent z_ref (`pipeline.mvdit.batches.step_latents`); motion tokens = the
   4DMoT codebook vectors of the window's joints (``VQVAE.motion_tokens``: frame-major
   (F * 24, code_dim), F latent frames, the same count as the video latents);
3. the diffusion objective (`pipeline.mvdit.losses`: CogVideoX's v-prediction, Wan's rectified flow);
4. motion dropped with p = 0.2 via `models.mvdit.cfg.sample_keep_masks` (c_m∅ used
   instead; text p = 0.1 is drawn too but the 6B model has no text branch);
5. after the last micro-batch (`sharding.optimizer_step`: the gradient is the
   mean over all their samples), AdamW (0.9, 0.99), weight decay 1e-2, lr 2e-5
   with linear warm-up over 300 steps, bf16 autocast on GPUs that support it
   (float32 elsewhere).

Strategies (``strategy``, `pipeline.mvdit.sharding`): "ddp" (the tiny models: Ray Train ``prepare_model``, with
``find_unused_parameters`` because the unused text halves of the norms get no gradient) and "fsdp" (the default
for full models: FSDP2 per transformer block, ``reshard_after_forward=False`` = the paper's DeepSpeed ZeRO-2,
bf16 parameters / float32 reduction on GPUs, sharded `torch.distributed.checkpoint` checkpoints consolidated
into one safetensors file at the end). Both apply the same step: c_m∅ moves only on steps where some sample
used it (Sec. 3.2), then the same gradient clipping (``max_grad_norm``). Full models are built on ``meta`` and
loaded from the backbone once (`pipeline.mvdit.factory`; under FSDP2 rank 0 alone reads it and broadcasts),
frozen weights in bf16 on GPUs, with per-block gradient checkpointing; the samples are clip references each
worker decodes (`pipeline.mvdit.data`).

Models "wan_i2v_14b" (MV-DiT-18B, Sec. 3.3, App. C) and "wan_tiny" (the same
class at toy size, CPU tests) train ``models.mvdit.wan.MVDiTWan`` with these
changes to the steps above:
- step 2: z_ref = E(ZeroPad(x_0)) (Eq. 9, `pipeline.mvdit.batches`), then
  [z_t | 4-channel first-frame mask | z_ref] (Eq. 10, ``wan_vision_latents``,
  inside the model); motion tokens stay 3072-d (zero-padded to 5120 inside the
  motion attention, Sec. 3.3);
- the text-image branch: `pipeline.mvdit.wan_conditioning` loads Wan2.1-I2V's UMT5
  + tokenizer and CLIP image encoder + processor from ``wan_encoders`` (default:
  the ``backbone`` pipeline folder); each window's text is its sample's caption or ``prompt``
  and its image tokens are CLIP's of the window's (augmented) frame 0 (`pipeline.mvdit.batches`);
- step 3: Wan2.1's rectified flow (`pipeline.mvdit.losses.flow_matching_loss`);
- step 4: the text keep-mask of ``sample_keep_masks`` (p = 0.1) replaces dropped
  prompts by the empty prompt's embedding (Wan's unconditional text);
- only the motion attention (+ its pre-norm) and c_m∅ train (App. A.1): the
  backbone is frozen; the release layout has no c_m∅, so it needs
  ``motion_drop_prob=0``. With ``unconditional_from`` (a 6B checkpoint trained
  on the same 4DMoT) c_m∅ is the 6B's, frozen, as the paper reuses it "without
  modification" (Sec. 3.3); without it, c_m∅ is learnt here.

Checkpoints: `pipeline.core.checkpoints` files (safetensors + SHA-256) in
``out_dir/checkpoints`` (FSDP: sharded folders under ``checkpoints/sharded``, the last one exported to such a
file): model (with a frozen backbone: its trained weights and the backbone's path and SHA-256) + AdamW state, ``stats.mean`` = the dataset-mean
joints used by the motion RoPE, the MV-DiT constructor kwargs and latent map
spec under ``tokenizer_config`` (``{"mvdit": ..., "latent_map": ...,
"tokenizer_checkpoint": ...}``, plus ``"wan_encoders"`` for the Wan models), the
loss curve in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models.mvdit.cfg import CFGConfig, reuse_unconditional_tokens, sample_keep_masks
from pipeline.core.checkpoints import load_tokenizer, load_unconditional_tokens, save_checkpoint
from pipeline.core.progress import Log
from pipeline.core.step_schedule import step_seed
from pipeline.mvdit import sharding
from pipeline.mvdit.batches import step_latents
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.data import Sample, as_samples, worker_shard
from pipeline.mvdit.factory import build_model, build_sharded_from_backbone, make_scheduler
from pipeline.mvdit.latents import latent_map_from_spec
from pipeline.mvdit.losses import diffusion_loss, flow_matching_loss
from pipeline.mvdit.resume import checkpoint_meta, resume, resume_sharded, safetensors_args

SEED_STREAM = 7  # `step_seed`'s stream word of MV-DiT's draws


def setup_model(job: dict[str, Any], cfg: MVDiTTrainConfig, device: torch.device, autocast: bool, sharded: bool,
                rank: int, log: Log) -> torch.nn.Module:
    """The MV-DiT to train with its mean joints, a reused c_m∅ (``unconditional_from``) and per-block gradient
    checkpointing; under FSDP sharded (`sharding.shard_fsdp`). A sharded model from a backbone loads through
    rank 0 (`factory.build_sharded_from_backbone`): no other rank reads the folder or holds the full model."""
    frozen_dtype = torch.bfloat16 if autocast else torch.float32
    rank0_load = sharded and bool(cfg.backbone)
    tokens = None
    if cfg.unconditional_from and (rank == 0 or not rank0_load):  # Sec. 3.3: the 18B reuses the 6B's c_m∅
        tokens = load_unconditional_tokens(cfg.unconditional_from, job["tokenizer_checkpoint"])
        if rank == 0:
            log(f"c_m∅ from {cfg.unconditional_from}, frozen")

    def prepare(model: torch.nn.Module) -> None:
        model.set_mean_joints(np.array(job["mean_joints"]))
        if cfg.unconditional_from:  # ranks > 0 of a rank-0 load: frozen on meta, the values come from rank 0
            reuse_unconditional_tokens(model, torch.empty_like(model.unconditional_motion_token)
                                       if tokens is None else tokens)
        if cfg.checkpoint_blocks:
            model.enable_gradient_checkpointing()

    def shard(model: torch.nn.Module) -> torch.nn.Module:
        return sharding.shard_fsdp(model, device, cfg.reshard_after_forward, bf16=autocast)

    if rank0_load:
        return build_sharded_from_backbone(job["model_kwargs"], cfg.backbone, device, frozen_dtype, shard, prepare)
    model = build_model(job["model_kwargs"], cfg.backbone, device, frozen_dtype)
    prepare(model)
    return shard(model) if sharded else model


@dataclass
class StepParts:
    """What a micro-batch needs besides its seed: the (wrapped) model, this worker's clips, the frozen encoders."""

    net: torch.nn.Module
    samples: list[Sample]
    cfg: MVDiTTrainConfig
    device: torch.device
    latent_map: Any  # None when latents come from a `video_latents` table
    table: Any  # `latent_table.LatentWindows` or None
    vqvae: Any
    normalizer: Any
    scheduler: Any  # CogVideoX's DDIM scheduler; None for the Wan models (flow matching)
    conditioner: Any  # Wan's text and image encoders; None for CogVideoX
    autocast: bool


def micro_step(parts: StepParts, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, motion keep-mask) of one micro-batch of ``batch_size`` windows, every draw from ``seed``: windows
    and augmentation (step 1 of the module docstring), latents and motion tokens (2), noise (3), drops (4)."""
    cfg, device, gen = parts.cfg, parts.device, torch.Generator().manual_seed(seed)
    latents, reference, joints, texts, first_frames = step_latents(parts.samples, cfg, np.random.default_rng(seed),
                                                                   gen, parts.latent_map, parts.table, device)
    with torch.no_grad():
        tokens = parts.vqvae.motion_tokens(parts.normalizer(torch.from_numpy(joints).to(device)))
    drop = CFGConfig(motion_drop_prob=cfg.motion_drop_prob, text_drop_prob=cfg.text_drop_prob)
    motion_keep, text_keep = sample_keep_masks(len(joints), drop, generator=gen, device=device)
    # "dynamic" PE (Table 2): the RoPE positions are each window's own first-frame joints.
    first_joints = torch.from_numpy(joints[:, 0]).to(device) if cfg.motion_pe == "dynamic" else None
    if parts.conditioner is not None:  # frozen encoders, outside autocast (as Wan's pipeline runs them)
        text = parts.conditioner.encode_prompts(texts, keep=text_keep).to(device)  # dropped: the empty prompt
        image = parts.conditioner.encode_images(first_frames).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=parts.autocast):
        if parts.conditioner is not None:
            loss = flow_matching_loss(parts.net, latents, reference, tokens, motion_keep, text, image, gen,
                                      cfg.flow_shift, first_joints)
        else:
            loss = diffusion_loss(parts.net, parts.scheduler, latents, reference, tokens, motion_keep, gen,
                                  first_joints)
    return loss, motion_keep


def train_loop(job: dict[str, Any], rank: int = 0, device: torch.device | None = None,
               wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
               report: Callable[[dict], None] | None = None, log: Log = print) -> None:
    """Train from the newest checkpoint in ``job['out_dir']`` (or from scratch) to ``steps``.

    Under a process group with ``strategy="fsdp"`` the model is sharded with FSDP2 (`pipeline.mvdit.sharding`)
    and checkpoints are sharded; otherwise ``wrap`` (DDP) or none, and rank 0 writes safetensors checkpoints."""
    cfg = MVDiTTrainConfig.from_dict(job["config"])
    device = device or torch.device("cpu")
    ckpt_dir = Path(job["out_dir"]) / "checkpoints"
    _, world = sharding.world()
    samples = worker_shard(as_samples(job["samples"]), rank, world)  # references: decoded here, per batch
    vqvae, normalizer, _ = load_tokenizer(job["tokenizer_checkpoint"], device=device)
    table = None
    if job.get("video_latents"):  # latents read from the table: the VAE is not even loaded
        from pipeline.mvdit.latent_table import LatentWindows

        table = LatentWindows(job["video_latents"], samples, cfg.lengths, cfg.strides, cfg.buckets)
        if rank == 0:
            log(table.describe())
    latent_map = None if table else latent_map_from_spec(job["latent_map"], device=device)
    scheduler = None if cfg.is_wan else make_scheduler()
    autocast = cfg.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    conditioner = None
    if cfg.is_wan:
        from pipeline.mvdit.wan_conditioning import load_wan_conditioner

        conditioner = load_wan_conditioner(job["wan_encoders"], device=device,
                                           text_dtype=torch.bfloat16 if autocast else torch.float32)

    torch.manual_seed(cfg.seed)
    sharded = cfg.strategy == "fsdp" and torch.distributed.is_initialized()
    model = setup_model(job, cfg, device, autocast, sharded, rank, log)
    frozen_backbone = job.get("backbone") is not None  # checkpoints hold the trained weights only
    if sharded:
        net = model
        optimizer = sharding.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay)
        start, curve, running = resume_sharded(ckpt_dir, model, optimizer, cfg, frozen_backbone, rank, log,
                                                 job["model_kwargs"])
    else:
        optimizer = sharding.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay)
        start, curve, running = resume(ckpt_dir, model, optimizer, cfg, rank, log, job["model_kwargs"])
        model.to(device)
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    state[key] = value.to(device)
        net = wrap(model) if wrap else model
    net.train()
    parts = StepParts(net, samples, cfg, device, latent_map, table, vqvae, normalizer, scheduler, conditioner, autocast)

    for step in range(start, cfg.steps):
        lr = cfg.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro_batches = [partial(micro_step, parts, step_seed(cfg.seed, step, rank, SEED_STREAM, micro))
                         for micro in range(cfg.grad_accum_steps)]
        loss = sharding.optimizer_step(net, model, optimizer, micro_batches, cfg.max_grad_norm,
                                       cfg.reduce_every_micro_batch)
        running["loss"] += loss
        running["n"] += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            point = {"step": done, "loss": running["loss"] / running["n"], "lr": lr}
            curve.append(point)
            running = {"n": 0, "loss": 0.0}
            if rank == 0:
                log(f"step {done}/{cfg.steps} loss {point['loss']:.5f} lr {lr:g}")
            if report and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                # Ray Train holds one pending report per worker and collects every ~2 s: reporting each log
                # line would block fast steps, so only checkpoint steps report (bench/results/mvdit.md).
                report(point)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            meta = checkpoint_meta(job, cfg, done, curve, running)
            if sharded:
                path = sharding.save_sharded(ckpt_dir, done, model, optimizer, meta, frozen_backbone,
                                             cfg.keep_checkpoints)
                if done == cfg.steps and rank == 0:  # one consolidated file for release and `animate`
                    path = sharding.export_sharded(path, ckpt_dir)
            elif rank == 0:
                path = save_checkpoint(ckpt_dir, done, model, optimizer, **safetensors_args(meta))
            if rank == 0:
                log(f"checkpoint saved: {path}")
    if sharded and world > 1:
        torch.distributed.barrier()  # the export is on disk before any rank returns
