"""The ``animations`` stage: animate the held-out clip's first frame with its own motion, next to the ground truth,
and score it against copying the reference (App. A.3 protocol, on the clip `pipeline.mvdit.stage` held out).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core import previews
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.motion.windows import MIN_FRAMES, usable_length
from pipeline.mvdit.stage import BUCKET, DEMO_FRAMES, current_mvdit_checkpoint, mvdit_config, mvdit_dir, split_clips


def animation_size(settings: PipelineSettings) -> tuple[int, int, int]:
    """(frames, height, width) of the ``animations`` stage: the laptop bucket, or the full model's first bucket
    at 49 frames (App. A.3)."""
    if settings.mvdit_model == "tiny":
        return (DEMO_FRAMES, *BUCKET)
    return (49, *mvdit_config(settings).buckets[0])


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
    that holds one GPU (bf16, `pipeline.animation.loading.load_train_checkpoint` with device "cuda"), never on the
    driver; when the Ray cluster has no GPU the stage is skipped with a message saying so."""
    checkpoint = current_mvdit_checkpoint(settings)
    if checkpoint is None:
        raise FileNotFoundError(f"no MV-DiT checkpoint under {mvdit_dir(settings)}: materialize mv_dit first")
    if settings.mvdit_model == "tiny":
        return _animate(settings, checkpoint, "cpu", log)
    import ray

    from pipeline.core.ray_runtime import ensure_ray

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
    from pipeline.animation.loading import load_train_checkpoint
    from pipeline.core.video_io import read_frames, write_mp4
    from pipeline.evaluation.metrics import psnr

    log = log or print
    _, (clip_id, uri, start, end, joints) = split_clips(settings)
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
