"""One micro-batch's training windows for MV-DiT (paper App. A.2; Eq. 3 and Eq. 9 for the reference latent).

1. a clip length from ``lengths`` {33, 49, 81, 97, 129} and a stride from
   ``strides`` {1, 2} (App. A.2), among those every drawn sample can give;
   ``batch_size`` windows of that length; one resolution bucket (the bucket
   nearest the first window's aspect ratio); every window resized to cover the
   bucket and randomly cropped to it (`draw_batch`), then colour-jittered (`jitter_colours`);
2. video latents z_0 = E(x) and the reference latent z_ref = E(x_0) (the first
   frame alone) from `pipeline.mvdit.latents` (`step_latents`); the Wan models
   (MV-DiT-18B, Sec. 3.3) take z_ref = E(ZeroPad(x_0)) (Eq. 9): frame 0 followed by zero frames (mid
   grey in [-1, 1], as Wan's pipeline pads) through the same latent map (the model then stacks
   [z_t | 4-channel first-frame mask | z_ref], Eq. 10, ``wan_vision_latents``);
   with ``video_latents`` (a table of the `video_latents` asset) steps 1-2 read instead the stored posteriors of
   fixed, centre-cropped windows and sample them (no VAE, no random crop or colour jitter; `step_latents`,
   `pipeline.mvdit.latent_table`).

Each window's text (Wan models) is its sample's caption (a third element of the sample; the motion_video table has
no caption column yet) or ``prompt`` ("a person is dancing", the evaluation prompt of App. A.3), and its image
tokens are CLIP's of the window's (augmented) frame 0, returned here as the first frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.data import Sample
from pipeline.mvdit.windows import nearest_bucket, reference_video, resize_crop


def jitter_colours(frames: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """One random colour change for a whole window (T, H, W, 3) uint8: a channel permutation (with probability
    ``strength``), per-channel gains exp(U(-s, s)) and offsets U(-40 s, 40 s) on 0-255.

    Not in the paper (its 200K+ clips are diverse). With the few clips of a laptop run the model would otherwise
    learn each clip's colours by heart instead of taking them from the reference frame; the change is the same on
    every frame, so the reference (frame 0) still shows the colours the other frames must have.
    """
    if strength <= 0:
        return frames
    x = frames.astype(np.float32)
    if rng.uniform() < strength:
        x = x[..., rng.permutation(3)]
    x = x * np.exp(rng.uniform(-strength, strength, 3)) + rng.uniform(-40 * strength, 40 * strength, 3)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def draw_batch(samples: list[Sample], cfg: MVDiTTrainConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One step's windows: (frames (B, L, H, W, 3) uint8, joints (B, L, 24, 3), texts (each sample's caption or
    ``cfg.prompt``)); one length, stride, bucket."""
    picks = rng.integers(0, len(samples), cfg.batch_size)
    shortest = min(len(samples[i].joints) for i in picks)
    options = [(n, s) for n in cfg.lengths for s in cfg.strides if (n - 1) * s + 1 <= shortest]
    if not options:
        raise ValueError(f"a drawn clip has {shortest} frames; the shortest window needs {min(cfg.lengths)}")
    length, stride = options[int(rng.integers(0, len(options)))]
    span = (length - 1) * stride + 1
    videos, joints, bucket = [], [], None
    for i in picks:
        sample = samples[i]
        start = int(rng.integers(0, len(sample.joints) - span + 1))
        frames = sample.frames(start, start + span, stride)
        bucket = bucket or nearest_bucket(frames.shape[1], frames.shape[2], cfg.buckets)
        videos.append(jitter_colours(resize_crop(frames, bucket, rng), rng, cfg.colour_jitter))
        joints.append(sample.joints[start : start + span : stride])
    texts = [samples[i].caption if samples[i].caption is not None else cfg.prompt for i in picks]
    return np.stack(videos), np.stack(joints), texts


def step_latents(samples: list[Sample], cfg: MVDiTTrainConfig, rng: np.random.Generator, gen: torch.Generator,
                 latent_map: Any, table: Any, device: torch.device):
    """One step's (z_0, z_ref, joints, texts, first frames): random windows encoded by ``latent_map``, or, with a
    ``table`` (`pipeline.mvdit.latent_table.LatentWindows`), fixed windows' latents read and sampled from it."""
    if table is not None:
        return table.draw(samples, cfg.batch_size, cfg.prompt, rng, gen, device)
    frames, joints, texts = draw_batch(samples, cfg, rng)
    with torch.no_grad():
        video = torch.from_numpy(frames).to(device)
        latents = latent_map.encode(video, generator=gen)
        # 6B: z_ref = E(x_0) (Eq. 3); 18B: z_ref = E(ZeroPad(x_0)) (Eq. 9).
        reference = latent_map.encode(reference_video(video, cfg.is_wan), generator=gen)
    return latents, reference, joints, texts, frames[:, 0]
