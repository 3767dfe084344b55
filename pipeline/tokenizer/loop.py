"""Train 4DMoT, the 4D motion tokenizer (paper Sec. 3.1 Eq. 2, App. A.2), on Ray Train or locally.

One training loop (`train_loop`) serves both backends:
- ``backend="ray"``: Ray Train's `TorchTrainer` runs it on ``num_workers``
  workers with DDP (gradients all-reduced; the EMA codebook all-reduces its own
  counts and sums, so replicas keep one codebook); GPU workers when the
  cluster has GPUs (``use_gpu=None``), CPU workers otherwise;
- ``backend="local"``: the same function called in this process (tests,
  debugging, a single GPU).

Per step: draw a bucket of windows (`pipeline.motion.windows`), normalise
them (the ``stats`` mean/std: per joint and axis (24, 3) from ``motion_stats``, or per axis (3,); first
frame subtracted), run the VQ-VAE and minimise
Eq. 2, L = ||M - M_hat||_1 + beta ||E - sg[C]||^2 (beta from the model
config), with AdamW (betas 0.9/0.99, weight decay 1e-4), lr 1e-4 for
``steps_lr1`` steps then 1e-5 for ``steps_lr2`` (paper: 200K + 100K), in
float32 ("to ensure stable codebook learning"); these settings are
`pipeline.tokenizer.config.TokenizerTrainConfig`. Every randomness of a step
(its windows, augmentation, codebook resets) is seeded by (seed, step, rank),
so a run resumed from a checkpoint ends with exactly the weights of an
uninterrupted one.

Rank 0 writes checkpoints (`pipeline.core.checkpoints`) into ``out_dir/checkpoints``,
which must be a folder every worker sees (like Ray's storage path); a
restarted run (or a Ray worker-group restart, ``max_failures``) resumes from
the newest one. After training, the driver evaluates the final checkpoint on
held-out clips: reconstruction MPJPE (mm, after undoing the normalisation)
and the codebook analytics of App. E.3 written beside the checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models.tokenizer import VQVAE, MotionNormalizer, TokenizerConfig
from pipeline.core.checkpoints import (
    checkpoint_name,
    latest_checkpoint,
    load_checkpoint,
    load_tokenizer,
    restore_model,
    save_checkpoint,
)
from pipeline.core.step_schedule import step_seed
from pipeline.motion.camera_placement import place_clips
from pipeline.motion.sources import PAPER_SOURCES, WORLD_SOURCES, SourceSlice, flatten, make_sampler
from pipeline.motion.windows import eval_windows
from pipeline.tokenizer import codebook as codebook_analytics
from pipeline.tokenizer.config import TokenizerTrainConfig
from pipeline.tokenizer.tokenize_clips import tokenize_windows

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    loss_curve: list[dict[str, float]]  # step, loss, recon, commit, perplexity, lr (means over log_every steps)
    heldout_mpjpe_mm: float
    active_code_share: float  # share of codes used at least once on the held-out windows
    codebook: dict[str, Any]  # App. E.3 categories (both definitions) and cosine summary
    analytics_files: dict[str, Path]  # codebook JSON and PNGs beside the checkpoint
    heldout_windows: int
    ray_run_name: str | None = None
    ray_run_dir: str | None = None


# ---- the training loop (every worker, both backends) -------------------------------------
def train_loop(job: dict[str, Any], rank: int = 0, device: torch.device | None = None,
               wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
               report: Callable[[dict], None] | None = None, log: Log = print) -> None:
    """Train from the newest checkpoint in ``job['out_dir']`` (or from scratch) to the last step.

    ``job``: config (dict), out_dir, clips, stats_mean, stats_std. The logged
    losses are rank 0's, averaged over the ``log_every`` steps since the last point.
    """
    from tqdm.auto import tqdm

    cfg = TokenizerTrainConfig.from_dict(job["config"])
    device = device or torch.device("cpu")
    ckpt_dir = Path(job["out_dir"]) / "checkpoints"
    # copies: arrays from Ray's object store are read-only
    mean, std = torch.tensor(np.array(job["stats_mean"])), torch.tensor(np.array(job["stats_std"]))

    torch.manual_seed(cfg.seed)
    model_config = cfg.tokenizer_config()
    model = VQVAE(model_config)
    normalizer = MotionNormalizer(mean, std, differential=model_config.differential).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr1, betas=cfg.betas, weight_decay=cfg.weight_decay)
    slices = [SourceSlice(**s) for s in job.get("sources") or []]
    sampler = make_sampler(job["clips"], slices, cfg.batch_size, cfg.windows, cfg.seed, rank, cfg.placement())
    clips_id = sampler.fingerprint()
    start, curve, running = 0, [], {"n": 0}
    last = latest_checkpoint(ckpt_dir) if cfg.resume else None
    if last is not None:
        ckpt = load_checkpoint(last)
        if ckpt.sampler.get("seed") != cfg.seed:
            raise ValueError(f"{last} was trained with seed {ckpt.sampler.get('seed')}, this run has seed {cfg.seed}")
        if TokenizerConfig.from_dict(ckpt.tokenizer_config) != model_config:
            raise ValueError(f"{last} holds a different 4DMoT config than TokenizerTrainConfig.model: "
                             "use another out_dir or resume=False")
        restore_model(model, ckpt)
        optimizer.load_state_dict(ckpt.optimizer_state)
        start, curve, running = ckpt.step, ckpt.extra["loss_curve"], ckpt.extra["running"]
        if rank == 0:
            log(f"resuming from {last} at step {start}")
            if ckpt.sampler.get("clips") != clips_id:
                log(f"warning: the training clips differ from those of {last}; later batches differ from the original run's")
    elif cfg.init_checkpoint:
        init = load_checkpoint(cfg.init_checkpoint)
        if TokenizerConfig.from_dict(init.tokenizer_config) != model_config:
            raise ValueError(f"TokenizerTrainConfig.init_checkpoint {cfg.init_checkpoint} holds a different 4DMoT config "
                             "than TokenizerTrainConfig.model")
        restore_model(model, init)
        if rank == 0:
            log(f"initialised from {cfg.init_checkpoint} (step {init.step})")
    model.to(device)
    _optimizer_to(optimizer, device)  # a loaded optimizer state sits on the CPU
    net = wrap(model) if wrap else model
    net.train()

    bar = tqdm(total=cfg.total_steps, initial=start, desc="4DMoT", disable=rank != 0, dynamic_ncols=True)
    for step in range(start, cfg.total_steps):
        lr = cfg.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(cfg.seed, step, rank))  # codebook resets draw from it
        batch = sampler.batch(step)
        x = normalizer(torch.from_numpy(batch.joints).to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not cfg.float32):
            _, losses, _ = net(x)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

        for key in ("loss", "recon", "commit", "perplexity"):
            value = float(losses[key].detach()) if key in losses else float("nan")
            running[key] = running.get(key, 0.0) + value
        running["n"] += 1
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.total_steps:
            n = running.pop("n")
            point = {"step": done, **{k: v / n for k, v in running.items()}, "lr": lr}
            curve.append(point)
            running = {"n": 0}
            bar.set_postfix(loss=f"{point['loss']:.4f}")
            if rank == 0:
                log(f"step {done}/{cfg.total_steps} loss {point['loss']:.5f} recon {point['recon']:.5f} "
                    f"commit {point['commit']:.5f} perplexity {point['perplexity']:.1f} lr {lr:g}")
            if report and (done % cfg.checkpoint_every == 0 or done == cfg.total_steps):
                # Ray Train holds one pending report per worker and collects every ~2 s: a report per log line
                # would block fast steps (bench/results/mvdit.md), so only checkpoint steps report.
                report(point)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.total_steps):
            path = save_checkpoint(
                ckpt_dir, done, model, optimizer,
                stats_mean=mean, stats_std=std,
                sampler={"seed": cfg.seed, "step": done, "clips": clips_id},
                train_config=cfg.to_dict(), tokenizer_config=model_config.to_dict(),
                extra={"loss_curve": curve, "running": running},
                keep=cfg.keep_checkpoints,
            )
            log(f"checkpoint saved: {path}")
    bar.close()


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


# ---- backends --------------------------------------------------------------------------------
def _ray_worker(job: dict[str, Any]) -> None:
    """Ray Train entry point: one call per worker. Rank 0 logs to its Ray worker log (and the tqdm bar)."""
    import ray
    import ray.train
    import ray.train.torch

    if isinstance(job["clips"], ray.ObjectRef):
        job = {**job, "clips": ray.get(job["clips"])}
    rank = ray.train.get_context().get_world_rank()
    wrap = lambda m: ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"forward_sync_buffers": False})  # noqa: E731
    train_loop(job, rank=rank, device=ray.train.torch.get_device(), wrap=wrap, report=ray.train.report, log=print)


def _fit_on_ray(job: dict[str, Any], cfg: TokenizerTrainConfig, log: Log) -> tuple[str, str]:
    """Run `train_loop` under `TorchTrainer`; returns (run name, run directory).

    The workers' log lines go to their Ray worker logs (the driver's ``log``,
    e.g. a Dagster logger, cannot be shipped to them); the loss curve is
    handed to ``log`` when the run ends.
    """
    from pipeline.core.ray_runtime import fit_torch_trainer

    started = time.time()
    name, path = fit_torch_trainer(_ray_worker, job, "clips", out_dir=job["out_dir"],
                                   run_name=cfg.run_name or time.strftime("tokenizer-%Y%m%d-%H%M%S"),
                                   num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, max_failures=cfg.max_failures,
                                   ray_address=cfg.ray_address, log=log)
    last = latest_checkpoint(Path(job["out_dir"]) / "checkpoints")
    curve = load_checkpoint(last).extra["loss_curve"] if last else []
    for point in curve:
        log(f"step {point['step']}/{cfg.total_steps} loss {point['loss']:.5f} recon {point['recon']:.5f} "
            f"commit {point['commit']:.5f} perplexity {point['perplexity']:.1f} lr {point['lr']:g}")
    log(f"Ray Train run {name} finished in {time.time() - started:.1f} s: {path}")
    return name, path


# ---- driver --------------------------------------------------------------------------------
def motion_stats(clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Global per-axis mean and std (3,) over all frames and joints of ``clips`` (metres)."""
    flat = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 3) for c in clips])
    return {"mean": flat.mean(axis=0), "std": flat.std(axis=0)}


def _stats_arrays(stats: Any, clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if stats is None:
        stats = motion_stats(clips)
    if isinstance(stats, dict):
        mean, std = stats.get("mean"), stats.get("std")
    else:
        mean, std = getattr(stats, "mean", None), getattr(stats, "std", None)
    if mean is None or std is None:
        raise ValueError("stats must provide 'mean' and 'std' ((3,) or (24, 3), metres), or be None to compute them")
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def split_heldout(clips: list[np.ndarray], fraction: float, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A seeded random ``fraction`` of the clips (at least one when there are two or more) held out."""
    n = len(clips)
    n_hold = 0 if n < 2 or fraction <= 0 else min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    hold = set(order[:n_hold].tolist())
    return [c for i, c in enumerate(clips) if i not in hold], [c for i, c in enumerate(clips) if i in hold]


def train_tokenizer(
    clips: list[np.ndarray] | dict[str, list[np.ndarray]],
    stats: Any,
    config: TokenizerTrainConfig,
    out_dir: str | Path,
    log: Log = print,
    heldout: list[np.ndarray] | None = None,
) -> TrainResult:
    """Train 4DMoT on joint sequences (T_i, 24, 3) in metres, evaluate it, write analytics.

    ``clips``: camera-frame curated clips, or {source name: clips} mixed by
    ``config.sources`` (`pipeline.motion.sources`; motion capture in its +Y-up world frame).
    ``stats``: {"mean", "std"} ((3,) or (24, 3); e.g. the motion_stats asset),
    or None to compute global per-axis statistics from the training clips
    (world-frame clips placed once by the virtual camera first).
    ``heldout``: camera-frame evaluation clips; None holds out ``config.heldout_fraction``
    of the curated clips, or of the first source (placed) without curated ones
    (with a single clip, it is evaluated on itself). With
    ``config.init_checkpoint`` and no ``stats``, that checkpoint's statistics.
    """
    out_dir = Path(out_dir).resolve()  # Ray workers run elsewhere: a relative path would land in their session folder
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {k: [np.asarray(c, dtype=np.float32) for c in v]
               for k, v in (clips if isinstance(clips, dict) else {"curated": clips}).items()}
    first = "curated" if sources.get("curated") and config.sources.get("curated", 0) > 0 else \
        next(k for k in config.sources if config.sources[k] > 0)
    world = first in WORLD_SOURCES
    if heldout is None:
        sources[first], heldout = split_heldout(sources.get(first) or [], config.heldout_fraction, config.seed)
        if not heldout:
            log("only one clip: evaluating on the training clip")
            heldout = sources[first]
        heldout = place_clips(heldout, config.placement(), config.seed) if world else heldout
    if stats is None and config.init_checkpoint:
        init = load_checkpoint(config.init_checkpoint)
        stats = {"mean": init.stats_mean.numpy(), "std": init.stats_std.numpy()}
    if stats is None:
        stats_clips = sources.get(first) or []
        stats = motion_stats(place_clips(stats_clips, config.placement(), config.seed, limit=4000) if world else stats_clips)
    all_clips, slices = flatten(sources, config.sources)
    mean, std = _stats_arrays(stats, all_clips)
    job = {"config": config.to_dict(), "out_dir": str(out_dir), "clips": all_clips, "stats_mean": mean, "stats_std": std,
           "sources": None if config.sources == PAPER_SOURCES else [asdict(s) for s in slices]}

    run_name = run_dir = None
    if config.backend == "local":
        use_gpu = torch.cuda.is_available() if config.use_gpu is None else config.use_gpu
        train_loop(job, device=torch.device("cuda" if use_gpu else "cpu"), log=log)
    else:
        run_name, run_dir = _fit_on_ray(job, config, log)

    # This run's last checkpoint (with resume=False an older, longer run's may also be there).
    final = out_dir / "checkpoints" / checkpoint_name(config.total_steps)
    checkpoint = final if final.is_file() else latest_checkpoint(out_dir / "checkpoints")
    if checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint in {out_dir / 'checkpoints'}")
    return evaluate_checkpoint(checkpoint, heldout, config, log, run_name, run_dir)


def evaluate_checkpoint(checkpoint: Path, heldout: list[np.ndarray], config: TokenizerTrainConfig, log: Log = print,
                        run_name: str | None = None, run_dir: str | None = None) -> TrainResult:
    """Held-out MPJPE and App. E.3 codebook analytics of a checkpoint; analytics files beside it."""
    device = "cuda" if torch.cuda.is_available() and config.use_gpu is not False else "cpu"
    model, normalizer, ckpt = load_tokenizer(checkpoint, device=device)
    windows = eval_windows(heldout, config.eval_length)
    id_batches, mpjpe = tokenize_windows(model, normalizer, windows, batch_size=config.batch_size)
    num_windows = sum(len(w) for w in windows.values())
    summary: dict[str, Any] = {}
    files: dict[str, Path] = {}
    active = float("nan")
    if model.vq is not None and id_batches:
        usage = codebook_analytics.code_usage(id_batches, model.config.codebook_size)
        report = codebook_analytics.analyze_codebook(usage, model.vq.codebook, seed=config.seed)
        files = codebook_analytics.write_report(report, checkpoint)
        summary = {k: v for k, v in report.summary().items() if k not in ("window_counts", "token_counts")}
        summary["cosine"] = {k: v for k, v in summary["cosine"].items() if k not in ("edges", "counts")}
        active = summary["active_code_share"]
    log(f"held-out: {num_windows} windows, MPJPE {mpjpe:.2f} mm, active codes {active:.1%}")
    (checkpoint.parent / "train_result.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "heldout_mpjpe_mm": mpjpe, "active_code_share": active,
         "heldout_windows": num_windows, "ray_run_name": run_name, "ray_run_dir": run_dir}, indent=1))
    return TrainResult(
        checkpoint=checkpoint,
        loss_curve=ckpt.extra.get("loss_curve", []),
        heldout_mpjpe_mm=mpjpe,
        active_code_share=active,
        codebook=summary,
        analytics_files=files,
        heldout_windows=num_windows,
        ray_run_name=run_name,
        ray_run_dir=run_dir,
    )
