"""The ``mv_dit`` stage: train MV-DiT on the curated clips but one, held out for the ``animations`` stage
(Sec. 3.2, App. A.2; `pipeline.evaluation.held_out`).

The laptop defaults train the tiny config on the embedded fixed latent map (``pipeline.mvdit.latents``) for
400 steps: a small, blurry but real animation. A cluster run is configuration: ``mvdit_model``
"cogvideox_5b" (MV-DiT-6B) or "wan_i2v_14b" (MV-DiT-18B) fine-tuned from the stock backbone in
``mvdit_backbone`` with its VAE in ``mvdit_vae`` (local diffusers folders), the App. A.2 hyper-parameters
of `MVDiTTrainConfig` (paper: 30K steps, batch 4 per GPU on 8 GPUs: ``mvdit_steps=30000``,
``train_workers=8``), FSDP2 (``mvdit_strategy`` "fsdp", the default at full size: the paper's ZeRO-2).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core import previews, tables
from pipeline.core.config import ConfigError, PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.curation.motion_video import MotionStats, stats_path
from pipeline.tokenizer.stage import curated_clips, current_tokenizer_checkpoint, tokenizer_dir

if TYPE_CHECKING:
    from pipeline.mvdit.config import Preview

BUCKET = (48, 64)  # (H, W) of the laptop demo
DEMO_FRAMES = 33


def mvdit_config(settings: PipelineSettings):
    """The ``mv_dit`` stage's training config: the tiny laptop model, or a full model fine-tuned from local
    backbone and VAE folders (a clear error naming the missing setting)."""
    from pipeline.mvdit.config import MVDiTTrainConfig

    run = dict(steps=settings.mvdit_steps, backend=settings.train_backend, num_workers=settings.train_workers,
               ray_address=settings.ray_address, log_every=max(1, settings.mvdit_steps // 20))
    if settings.video_latents:  # latents of fixed windows from the video_latents asset (pipeline/mvdit/latent_table)
        run["video_latents"] = settings.table_uri("video_latents")
    reuse = settings.mvdit_unconditional_from
    if reuse and settings.mvdit_model != "wan_i2v_14b":
        raise ConfigError(f"mvdit_unconditional_from is for mvdit_model = 'wan_i2v_14b' (the 18B reuses the 6B's "
                          f"unconditional motion tokens), not {settings.mvdit_model!r}")
    if reuse and not Path(reuse).is_file():
        raise FileNotFoundError(f"mvdit_unconditional_from = {reuse!r} is not a file (an MV-DiT-6B training checkpoint)")
    if settings.mvdit_model == "tiny":
        return MVDiTTrainConfig.tiny(buckets=(BUCKET,), checkpoint_every=max(1, settings.mvdit_steps), **run)
    for name in ("mvdit_backbone", "mvdit_vae"):
        folder = getattr(settings, name)
        if not folder:
            raise ConfigError(f"mvdit_model = {settings.mvdit_model!r} needs {name}: a local diffusers folder of the "
                              f"stock {'transformer' if name == 'mvdit_backbone' else 'VAE'} (nothing is downloaded)")
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{name} = {folder!r} is not a folder")
    strategy = {"strategy": settings.mvdit_strategy} if settings.mvdit_strategy else {}  # "": fsdp
    if settings.mvdit_model == "wan_i2v_14b":  # batch 4 per GPU does not fit 80 GiB (`python -m pipeline.mvdit.memory`):
        run.update(batch_size=1, grad_accum_steps=4)  # the paper's global batch 32 on 8 GPUs as 1 x 4 micro-batches
    return MVDiTTrainConfig(model=settings.mvdit_model, backbone=settings.mvdit_backbone, vae=settings.mvdit_vae,
                            wan_encoders=settings.mvdit_encoders, **strategy,
                            unconditional_from=reuse,
                            checkpoint_every=max(1, min(1000, settings.mvdit_steps)), **run)


def mvdit_dir(settings: PipelineSettings) -> Path:
    """Training folder keyed by the tokenizer it conditions on and the training config.

    ``<root>/checkpoints/mv_dit/<tokenizer key>-<config hash>``: a retrained tokenizer (new data version or
    config) or a changed MV-DiT config trains afresh; the same key resumes (a killed run continues).
    """
    config = mvdit_config(settings).to_dict()
    for name in ("backend", "num_workers", "ray_address", "run_name", "log_every"):  # how it runs, not what it learns
        config.pop(name, None)
    if not config.get("video_latents"):
        config.pop("video_latents", None)  # off: the key of runs from before the setting existed
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    return settings.root / "checkpoints" / "mv_dit" / f"{tokenizer_dir(settings).name}-{digest}"


def current_mvdit_checkpoint(settings: PipelineSettings) -> Path | None:
    """Newest checkpoint of the current key's MV-DiT folder, or None when it has not trained yet."""
    from pipeline.core.checkpoints import latest_checkpoint

    return latest_checkpoint(mvdit_dir(settings) / "checkpoints")


def split_clips(settings: PipelineSettings):
    """Curated clips as (id, uri, start, end, joints), the last one (by id) held out for animation."""
    clips = curated_clips(settings, ["id", "uri", "start_frame", "end_frame", "joints"])
    rows = sorted(zip(clips["id"].to_pylist(), clips["uri"].to_pylist(), clips["start_frame"].to_pylist(),
                      clips["end_frame"].to_pylist(), tables.sequence_as_arrays(clips, "joints", (24, 3))))
    if len(rows) < 2:
        raise ValueError("motion_video needs at least 2 clips: one to hold out for the animation")
    return rows[:-1], rows[-1]


def training_samples(settings: PipelineSettings) -> list[tuple[tuple[str, int, int], np.ndarray]]:
    """Clip references ((uri, start, end), joints) of every curated clip but the held-out one: the training
    workers decode their own windows (`pipeline.mvdit.data`), nothing is decoded here."""
    train, _ = split_clips(settings)
    return [((uri, int(start), int(end)), joints) for _, uri, start, end, joints in train]


def train_mvdit_stage(settings: PipelineSettings, log: Log = default_log, preview: "Preview | None" = None) -> StageResult:
    """Train MV-DiT (tiny config by default) with the tokenizer's motion tokens; ``preview`` samples an animation
    after training (the `mv_dit` asset passes `pipeline.animation.loading.preview_sample`)."""
    from pipeline.mvdit.train import train_mvdit

    tokenizer = current_tokenizer_checkpoint(settings)
    if tokenizer is None:
        raise FileNotFoundError(f"no tokenizer checkpoint under {tokenizer_dir(settings)}: materialize tokenizer first")
    _, held_out = split_clips(settings)
    samples = training_samples(settings)
    stats = MotionStats.load(stats_path(settings))
    result = train_mvdit(samples, tokenizer, {"mean_joints": stats.mean}, mvdit_config(settings), mvdit_dir(settings),
                         log=log, preview=preview)
    png = previews.encode_png(_loss_figure(result.loss_curve))
    return StageResult("mv_dit", str(result.checkpoint), stats.motion_video_version, len(samples), len(samples), 0,
                       preview_markdown=previews.png_markdown(png, "MV-DiT loss"), preview_png=png,
                       extra={"checkpoint": str(result.checkpoint), "steps": settings.mvdit_steps, "held_out_clip": held_out[0],
                              "final_loss": round(float(result.loss_curve[-1]["loss"]), 4) if result.loss_curve else None,
                              "ray_run": result.ray_run_name or "local"})


def _loss_figure(curve: list[dict]) -> np.ndarray:
    plt = previews.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("MV-DiT training loss (v-prediction MSE)")
    fig.tight_layout()
    return previews.figure_rgb(fig)


