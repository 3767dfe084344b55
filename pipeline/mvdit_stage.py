"""The ``mv_dit`` and ``animations`` stages: train MV-DiT on the curated clips (Sec. 3.2, App. A.2) and
animate a held-out clip's first frame with its own motion, next to the ground truth (App. A.3 protocol).

The laptop defaults train the tiny config on the embedded fixed latent map (``pipeline.latents``) for
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

import cv2
import numpy as np
import torch

from pipeline import previews, tables
from pipeline.config import ConfigError, PipelineSettings
from pipeline.curation import StageResult
from pipeline.motion_video import MotionStats, stats_path
from pipeline.motion_windows import MIN_FRAMES, usable_length
from pipeline.progress import Log, default_log
from pipeline.tokenizer_stage import current_tokenizer_checkpoint, curated_clips, tokenizer_dir

BUCKET = (48, 64)  # (H, W) of the laptop demo
DEMO_FRAMES = 33


def mvdit_config(settings: PipelineSettings):
    """The ``mv_dit`` stage's training config: the tiny laptop model, or a full model fine-tuned from local
    backbone and VAE folders (a clear error naming the missing setting)."""
    from pipeline.train_mvdit import MVDiTTrainConfig

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


def animation_size(settings: PipelineSettings) -> tuple[int, int, int]:
    """(frames, height, width) of the ``animations`` stage: the laptop bucket, or the full model's first bucket
    at 49 frames (App. A.3)."""
    if settings.mvdit_model == "tiny":
        return (DEMO_FRAMES, *BUCKET)
    return (49, *mvdit_config(settings).buckets[0])


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
    from pipeline.checkpoints import latest_checkpoint

    return latest_checkpoint(mvdit_dir(settings) / "checkpoints")


def _clips(settings: PipelineSettings):
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
    train, _ = _clips(settings)
    return [((uri, int(start), int(end)), joints) for _, uri, start, end, joints in train]


def train_mvdit_stage(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Train MV-DiT (tiny config by default) with the tokenizer's motion tokens."""
    from pipeline.animate import preview_sample
    from pipeline.train_mvdit import train_mvdit

    tokenizer = current_tokenizer_checkpoint(settings)
    if tokenizer is None:
        raise FileNotFoundError(f"no tokenizer checkpoint under {tokenizer_dir(settings)}: materialize tokenizer first")
    _, held_out = _clips(settings)
    samples = training_samples(settings)
    stats = MotionStats.load(stats_path(settings))
    result = train_mvdit(samples, tokenizer, {"mean_joints": stats.mean}, mvdit_config(settings), mvdit_dir(settings),
                         log=log, preview=preview_sample)
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


def held_out_frames(available: int, max_frames: int) -> int:
    """Frames the held-out animation takes from a clip of ``available`` frames: the longest 1 + 8k (the video
    VAE's 1 + 4k and 4DMoT's sliding window of 8, `usable_length`) up to ``max_frames``; a ValueError below 33."""
    frames = usable_length(min(max_frames, available))
    if frames < MIN_FRAMES:
        raise ValueError(f"the held-out clip has {available} frames; an animation needs at least {MIN_FRAMES}")
    return frames


def animate_held_out(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Animate the held-out clip's first frame with its own motion; write the mp4 and a side-by-side with the
    ground truth, and report PSNR against the ground truth beside the copy-the-reference baseline.

    The tiny model samples here, on the CPU. A full model (``mvdit_model`` not "tiny") samples in a Ray task
    that holds one GPU (bf16, `pipeline.animate.load_train_checkpoint` with device "cuda"), never on the
    driver; when the Ray cluster has no GPU the stage is skipped with a message saying so."""
    checkpoint = current_mvdit_checkpoint(settings)
    if checkpoint is None:
        raise FileNotFoundError(f"no MV-DiT checkpoint under {mvdit_dir(settings)}: materialize mv_dit first")
    if settings.mvdit_model == "tiny":
        return _animate(settings, checkpoint, "cpu", log)
    import ray

    from pipeline.ray_runtime import ensure_ray

    ensure_ray(settings.ray_address)
    gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < 1:
        reason = (f"skipped: mvdit_model = {settings.mvdit_model!r} samples on a GPU worker and the Ray cluster "
                  f"({settings.ray_address or 'local'}) has no GPU; the full model is not run on the driver's CPU")
        log(f"animations {reason}")
        return StageResult("animations", "", 0, 0, 0, 0, preview_markdown=reason,
                           extra={"skipped": reason, "checkpoint": str(checkpoint)})
    task = ray.remote(num_gpus=1)(_animate)
    return ray.get(task.remote(settings, checkpoint, "cuda", None))


def _animate(settings: PipelineSettings, checkpoint: Path, device: str, log: Log | None) -> StageResult:
    """The ``animations`` work on ``device`` (on a Ray GPU worker for full models; ``log`` None: print)."""
    from pipeline.animate import load_train_checkpoint
    from pipeline.metrics import psnr
    from pipeline.video_io import read_frames, write_mp4

    log = log or print
    _, (clip_id, uri, start, end, joints) = _clips(settings)
    max_frames, height, width = animation_size(settings)
    frames = held_out_frames(end - start, max_frames)
    truth = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in read_frames(uri, start, start + frames)])
    pipe = load_train_checkpoint(checkpoint, device=device)
    generated = pipe(truth[0], joints[:frames], num_frames=frames, height=height, width=width,
                     generator=torch.Generator().manual_seed(0), progress=True)
    out = settings.root / "animations"
    out.mkdir(parents=True, exist_ok=True)
    name = clip_id.replace(":", "_")
    write_mp4(out / f"{name}.mp4", generated)
    side_by_side = np.concatenate([np.repeat(truth[:1], frames, 0), truth, generated], axis=2)
    write_mp4(out / f"{name}_reference_truth_generated.mp4", side_by_side)
    strip = np.concatenate([np.concatenate(list(row[:: max(1, frames // 6)][:6]), axis=1) for row in (truth, generated)], axis=0)
    png = previews.encode_png(cv2.resize(strip, (strip.shape[1] * 3, strip.shape[0] * 3), interpolation=cv2.INTER_NEAREST))
    # Frames after the reference (frame 0 is the condition itself; an exact copy would score infinity).
    scores = {"psnr_generated": round(float(psnr(generated[1:], truth[1:])), 2),
              "psnr_copy_reference": round(float(psnr(np.repeat(truth[:1], frames - 1, 0), truth[1:])), 2)}
    log(f"animation of {clip_id}: {out / (name + '.mp4')}; PSNR {scores}")
    return StageResult("animations", str(out / f"{name}.mp4"), 0, 1, 1, 0, preview_png=png,
                       preview_markdown="top: ground truth, bottom: generated\n\n" + previews.png_markdown(png, "animation"),
                       extra={"clip": clip_id, "video": str(out / f"{name}.mp4"),
                              "side_by_side": str(out / f"{name}_reference_truth_generated.mp4"), **scores})
