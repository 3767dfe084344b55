"""Long motions in windows: does conditioning each window on the frame already generated at its start help?

Animates every frame (50-60) of each held-out generated benchmark video with the demo's trained MV-DiT
(the newest `mv_dit` checkpoint of a finished `make demo` data root), 33-frame windows overlapping by 9,
DDIM 50, motion CFG 3 (App. A.3), at 48 x 64, three ways with the same noise:

- chained windows (`pipeline.animation.long_motion`, what `animate` does): window k is conditioned on the frame
  generated at its start and holds the frames it shares with the ones before it;
- chained, no hold: the same without holding the shared frames (they are only cross-faded);
- independent windows: every window is conditioned on the clip's first frame and cross-faded, no hold;
- copy reference: frame 0 repeated (no model).

PSNR / SSIM against the ground-truth render over the frames after 0, and separately over the frames only the
first window makes (1 .. next start - 1) and those a later window makes (next start .. end).

    python bench/bench_long_animation.py --data-root data
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from pipeline.animation.loading import load_train_checkpoint
from pipeline.animation.long_motion import animate_in_windows, window_starts
from pipeline.core.config import PipelineSettings
from pipeline.evaluation.benchmark_eval import resolve_checkpoint
from pipeline.evaluation.benchmarks import load_generated
from pipeline.evaluation.metrics.frame_metrics import psnr, ssim
from pipeline.evaluation.protocol import fit_frames

WINDOW, OVERLAP, SIZE = 33, 9, (48, 64)


def seam(video: np.ndarray, truth: np.ndarray, frames: slice) -> float:
    """Mean |frame-to-frame change| of the video minus the ground truth's, on the changes inside ``frames``
    (grey levels): how much more the picture jumps there than the real video does."""
    def change(v: np.ndarray) -> float:
        v = v.astype(np.float64)
        return float(np.abs(np.diff(v[frames], axis=0)).mean())

    return change(video) - change(truth)


def scores(video: np.ndarray, truth: np.ndarray, frames: slice) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM (the paper's per-channel SSIM) over ``frames``."""
    return psnr(video[frames], truth[frames]), ssim(video[frames], truth[frames])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="a data root where `make demo` has run")
    parser.add_argument("--checkpoint", type=Path, help="an MV-DiT training checkpoint (default: the data root's "
                                                          "newest for the current settings)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "long_animation.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = PipelineSettings(data_root=str(args.data_root))
    checkpoint = resolve_checkpoint(settings, args.checkpoint)
    pipe = load_train_checkpoint(checkpoint)
    rows, start_time = [], time.time()
    for clip in load_generated(settings):
        truth = fit_frames(clip.load_frames(None), *SIZE)
        joints = clip.joints[:len(truth)]
        later = window_starts(len(truth), WINDOW, OVERLAP)[1]
        call = dict(num_inference_steps=args.steps, motion_guidance_scale=3.0)

        def independent(reference, motion, context=None, **kw):
            return pipe(truth[0], motion, **kw)  # every window from the clip's own first frame, nothing held
        independent.latent_map = pipe.latent_map

        videos = {
            "chained windows": animate_in_windows(pipe, truth[0], joints, WINDOW, OVERLAP,
                                                  generator=torch.Generator().manual_seed(0), **call),
            "chained, no hold": animate_in_windows(pipe, truth[0], joints, WINDOW, OVERLAP, hold_overlap=False,
                                                   generator=torch.Generator().manual_seed(0), **call),
            "independent windows": animate_in_windows(independent, truth[0], joints, WINDOW, OVERLAP,
                                                      generator=torch.Generator().manual_seed(0), **call),
            "copy reference": np.repeat(truth[:1], len(truth), axis=0),
        }
        for method, video in videos.items():
            all_p, all_s = scores(video, truth, slice(1, None))
            first_p, _ = scores(video, truth, slice(1, later))
            later_p, _ = scores(video, truth, slice(later, None))
            rows.append({"video": clip.id, "frames": len(truth), "method": method, "psnr": all_p, "ssim": all_s,
                         "psnr_first_window": first_p, "psnr_later_windows": later_p,
                         "seam": seam(video, truth, slice(later - 1, WINDOW + 1)),
                         "jitter": seam(video, truth, slice(1, later))})
            print(json.dumps(rows[-1]), flush=True)
    wall = time.time() - start_time
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"# Long motions in windows ({date.today()})", "",
             f"Command: `python bench/bench_long_animation.py {' '.join(sys.argv[1:])}`; checkpoint "
             f"`{checkpoint.name}`; machine {platform.machine()} {platform.system()}, 1 torch thread, "
             f"{wall:.0f} s for all. Window {WINDOW}, overlap {OVERLAP}, DDIM {args.steps}, motion CFG 3, "
             f"{SIZE[0]} x {SIZE[1]}.", "",
             "| method | PSNR (dB) | SSIM | PSNR, first window only | PSNR, later windows | extra change, "
             "cross-fade | extra change, first window |", "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = ("psnr", "ssim", "psnr_first_window", "psnr_later_windows", "seam", "jitter")
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean = {k: np.mean([r[k] for r in mine]) for k in keys}
        lines.append(f"| {method} | {mean['psnr']:.2f} | {mean['ssim']:.3f} | {mean['psnr_first_window']:.2f} | "
                     f"{mean['psnr_later_windows']:.2f} | {mean['seam']:.2f} | {mean['jitter']:.2f} |")
    lines += ["", "Extra change: mean |frame-to-frame difference| (grey levels) of the animation minus that of the "
              "ground truth, over the first cross-fade (the second window's first frame to the first window's last) "
              "and over the frames only the first window makes: how much more the picture jumps than the real video."]
    lines += ["", "Per video:", "", "| video | frames | method | PSNR | SSIM |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['video']} | {r['frames']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
