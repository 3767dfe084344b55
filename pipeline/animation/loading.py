"""Load an MV-DiT training checkpoint as its sampling pipeline, and sample the preview after training (App. A.3).

A `pipeline.mvdit.train.train_mvdit` checkpoint records the MV-DiT kwargs, the latent map and its 4DMoT; it loads as
`pipeline.animation.cogvideox_pipeline.MTVCraftPipeline` (CogVideoX, MV-DiT-6B) or
`pipeline.animation.wan_pipeline.WanMotionPipeline` (Wan, MV-DiT-18B). The `mv_dit` asset passes `preview_sample`
to training, which never imports the animation side itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.animation.wan_pipeline import WanMotionPipeline
from pipeline.core.progress import Log
from pipeline.mvdit.config import TINY_MODELS, MVDiTTrainConfig
from pipeline.mvdit.data import Sample
from pipeline.mvdit.windows import nearest_bucket, resize_crop


def is_wan_checkpoint(info: dict[str, Any]) -> bool:
    """Whether a `train_mvdit` checkpoint's ``tokenizer_config`` is a Wan model's (its kwargs have CLIP's image_dim)."""
    return "image_dim" in info.get("mvdit", {})


def load_train_checkpoint(path: str | Path, tokenizer: str | Path | None = None,
                          device: str | torch.device | None = "cpu", wan_encoders: str | Path | None = None,
                          dtype: str | torch.dtype | None = None) -> MTVCraftPipeline:
    """The pipeline of a `train_mvdit` checkpoint (it records the MV-DiT kwargs, latent map and 4DMoT path): an
    ``MTVCraftPipeline`` for CogVideoX, a `pipeline.animation.wan_pipeline.WanMotionPipeline` for Wan (MV-DiT-18B: text +
    image conditioning, rectified flow; its encoders load from ``wan_encoders``, default the folder the checkpoint
    was trained with). Cast to ``dtype`` (None: `resolve_dtype`'s choice) before it moves to ``device``."""
    from pipeline.core.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    info = ckpt.tokenizer_config
    if "mvdit" not in info:
        raise ValueError(f"{path} is not an MV-DiT training checkpoint (it holds no 'mvdit' config)")
    if is_wan_checkpoint(info):
        return WanMotionPipeline.from_checkpoint(ckpt, tokenizer, device, wan_encoders, dtype)
    return MTVCraftPipeline.from_checkpoint(ckpt, tokenizer, device, dtype)


def preview_sample(checkpoint: Path, first: Sample, config: MVDiTTrainConfig, log: Log) -> np.ndarray | None:
    """The preview animation after training (`pipeline.mvdit.train.train_mvdit`'s ``preview``): the first
    sample's motion from its first frame (<= 33 frames), ``config.sample_steps`` sampler steps.

    The tiny models sample here on the CPU. A full model samples on a GPU: this process's when it has one, else
    one Ray GPU worker; with neither the preview is skipped (None) with a message saying why: a 6B / 18B model
    is never sampled on the driver's CPU."""
    local_gpu = torch.cuda.is_available() and config.use_gpu is not False
    if config.model in TINY_MODELS or local_gpu:
        return _sample_preview(checkpoint, first, config, "cuda" if local_gpu else "cpu")
    gpus = 0
    if config.backend == "ray":
        import ray

        gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    if gpus < 1:
        log(f"preview skipped: model {config.model!r} is full size and neither this process nor the Ray cluster "
            f"has a GPU (it is never sampled on the driver's CPU); animate {checkpoint} on a GPU machine")
        return None
    import ray

    return ray.get(ray.remote(num_gpus=1)(_sample_preview).remote(checkpoint, first, config, "cuda"))


def _sample_preview(checkpoint: Path, first: Sample, config: MVDiTTrainConfig, device: str) -> np.ndarray:
    pipe = load_train_checkpoint(checkpoint, device=device)
    n = min(len(first.joints), 33)
    video = first.frames(0, n, 1)
    h, w = nearest_bucket(video.shape[1], video.shape[2], config.buckets)
    ref = resize_crop(video[:1], (h, w), np.random.default_rng(0))[0]
    return pipe(ref, first.joints[:n], num_frames=n, height=h, width=w, num_inference_steps=config.sample_steps,
                generator=torch.Generator().manual_seed(0), prompt=config.prompt)
