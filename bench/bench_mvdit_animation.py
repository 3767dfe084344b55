"""Does the tiny MV-DiT follow the motion? Held-out generated clips, three methods side by side.

Trains the tiny MV-DiT (`MVDiTTrainConfig.tiny`, local backend, one torch thread) on the curated clips of a
finished demo data root (`make demo`), then animates the first 33 frames of each video of the generated
"benchmark" preset (held-out motions and backgrounds) at 48 x 64 three ways:

- generated: the model with the clip's own motion, DDIM, motion CFG 3.0 (App. A.3);
- null motion: the same model and noise with the unconditional motion tokens (CFG scale 0 = eps(null));
- copy reference: frame 0 repeated (no model).

PSNR / SSIM over frames 1-32 against the ground-truth render. It also prints the one-step x0 estimates'
latent MSE at a few timesteps next to the copy-reference latent MSE: where the model's conditional mean
beats copying but its samples do not, the gap is sample variance, not a failure to learn.

    python bench/bench_mvdit_animation.py --data-root data --steps 1500
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.animation.loading import load_train_checkpoint
from pipeline.core.checkpoints import latest_checkpoint
from pipeline.core.config import PipelineSettings
from pipeline.core.video_io import read_frames
from pipeline.curation.motion_video import MotionStats, stats_path
from pipeline.evaluation.metrics import psnr, ssim
from pipeline.mvdit import stage as mvdit_stage
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.train import train_mvdit
from pipeline.synthetic.motions import motion_joints
from pipeline.synthetic.sample import make_sample, read_sidecar
from pipeline.tokenizer.stage import current_tokenizer_checkpoint

FRAMES, SIZE = 33, (48, 64)


def held_out_clips(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frames (33, 48, 64, 3), joints (33, 24, 3)) of the benchmark preset's videos."""
    manifest = make_sample(folder, seed=0, preset="benchmark")
    clips = []
    for video in manifest.videos:
        side = read_sidecar(manifest.root / video.sidecar)
        joints = motion_joints(side["pose"][:, 0], side["transl"][:, 0])[:FRAMES]
        raw = read_frames(str(manifest.root / video.file), 0, FRAMES)
        frames = np.stack([cv2.resize(f, SIZE[::-1], interpolation=cv2.INTER_AREA) for f in raw])
        clips.append((video.name, frames, joints))
    return clips


def latent_map_cap(frames: np.ndarray, frequencies: int = 1) -> float:
    """PSNR of the ground truth passed through the tiny model's latent map (encode, decode): no model decoding
    these latents can score higher, frames 1..T."""
    from pipeline.mvdit.latents import PoolLatentMap

    latent_map = PoolLatentMap(latent_channels=max(4, 3 * frequencies**2), frequencies=frequencies)
    decoded = latent_map.decode(latent_map.encode(torch.from_numpy(frames)[None]))[0].numpy()
    return float(psnr(decoded[1:], frames[1:]))


def x0_latent_mse(pipe: MTVCraftPipeline, frames: np.ndarray, joints: np.ndarray) -> dict[str, float]:
    """Latent MSE of the one-step x0 estimate at a few timesteps, and of copying the reference."""
    lm, sch = pipe.latent_map, pipe.scheduler
    z = lm.encode(torch.from_numpy(frames)[None])
    ref = lm.encode(torch.from_numpy(frames[:1])[None])
    tokens = pipe.motion_tokens(joints, FRAMES)
    out = {"copy": float(((z - ref) ** 2).mean())}
    for t in (300, 700, 999):
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(t))
        tt = torch.tensor([t])
        noisy = sch.add_noise(z, noise, tt)
        with torch.no_grad():
            v = pipe.model(noisy, ref, tokens, tt, motion_mask=torch.ones(1, dtype=torch.bool)).sample
        a = sch.alphas_cumprod[t]
        out[f"x0@{t}"] = float(((a.sqrt() * noisy - (1 - a).sqrt() * v - z) ** 2).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="data", help="a data root where `make demo` has run")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--colour-jitter", type=float, default=0.5)
    ap.add_argument("--sample-steps", type=int, default=50)
    ap.add_argument("--out", default="bench/out/mvdit_animation")
    ap.add_argument("--tokenizer", default="", help="4DMoT checkpoint (default: the data root's current one)")
    ap.add_argument("--latent-frequencies", type=int, default=1,
                    help="PoolLatentMap DCT frequencies per block and axis (MVDiTTrainConfig.latent_frequencies)")
    ap.add_argument("--cap-only", action="store_true", help="only the latent map's PSNR cap and copy-the-reference")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.cap_only:
        for name, frames, _ in held_out_clips(out / "benchmark_sample"):
            copy = float(psnr(np.repeat(frames[:1], FRAMES - 1, 0), frames[1:]))
            caps = ", ".join(f"k={k} {latent_map_cap(frames, k):.2f}" for k in (1, 2, 4))
            print(f"{name}: latent-map cap (DCT frequencies k) {caps} dB, copy the reference {copy:.2f} dB")
        return
    settings = PipelineSettings(data_root=args.data_root)
    train, held = mvdit_stage._clips(settings)
    samples = [(read_frames(uri, s, e), j) for _, uri, s, e, j in train + [held]]
    tokenizer = args.tokenizer or current_tokenizer_checkpoint(settings)
    if not tokenizer:
        raise SystemExit(f"no tokenizer checkpoint under {args.data_root}: run `make demo` first or pass --tokenizer")
    stats = MotionStats.load(stats_path(settings))
    cfg = MVDiTTrainConfig.tiny(steps=args.steps, buckets=(SIZE,), colour_jitter=args.colour_jitter,
                                checkpoint_every=args.steps, log_every=max(1, args.steps // 10),
                                latent_frequencies=args.latent_frequencies)
    start = time.time()
    train_mvdit(samples, tokenizer, {"mean_joints": stats.mean}, cfg, out / "run", log=print)
    train_s = time.time() - start
    pipe = load_train_checkpoint(latest_checkpoint(out / "run" / "checkpoints"))
    rows: dict[str, list] = {"generated": [], "null motion": [], "copy reference": []}
    diagnostics = []
    for name, frames, joints in held_out_clips(out / "benchmark_sample"):
        for method, scale in (("generated", 3.0), ("null motion", 0.0)):
            video = pipe(frames[0], joints, num_frames=FRAMES, height=SIZE[0], width=SIZE[1],
                         num_inference_steps=args.sample_steps, motion_guidance_scale=scale,
                         generator=torch.Generator().manual_seed(0))
            rows[method].append((float(psnr(video[1:], frames[1:])), float(ssim(video[1:], frames[1:]))))
        copy = np.repeat(frames[:1], FRAMES - 1, 0)
        rows["copy reference"].append((float(psnr(copy, frames[1:])), float(ssim(copy, frames[1:]))))
        diagnostics.append({"clip": name, **x0_latent_mse(pipe, frames, joints)})
    result = {"steps": args.steps, "latent_frequencies": args.latent_frequencies, "train_s": round(train_s, 1), "clips": len(diagnostics), "diagnostics": diagnostics,
              "methods": {m: {"psnr": float(np.mean([r[0] for r in v])), "ssim": float(np.mean([r[1] for r in v])),
                              "psnr_per_clip": [round(r[0], 2) for r in v]} for m, v in rows.items()}}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["methods"], indent=1))
    for d in diagnostics:
        print(d)


if __name__ == "__main__":
    main()
