"""Throughput of the paper's metrics (App. J) on the CPU at 256 x 256: frames per second for PSNR, SSIM, LPIPS,
FID's Inception features and FVD's I3D features, through the project's own metric code (``pipeline.evaluation.metrics``).

    .venv/bin/python bench/bench_metrics.py [--frames 64] [--size 256] [--out bench/results/metrics.md]

The feature networks are randomly initialised networks of the real architectures, saved in the real file
formats and loaded through the real loaders (``pipeline.evaluation.metrics.feature_networks``): torchvision's AlexNet
features (LPIPS backbone), torchvision's Inception-V3 with pytorch-fid's key names (FID), and an I3D
(Inception-v1 inflated to 3D, Carreira & Zisserman 2017, 400 Kinetics classes) written here from the paper's
layer table and saved as TorchScript with StyleGAN-V's call signature. Timing does not depend on the weights;
only the I3D's padding details may differ slightly from the published TorchScript file (same layers and
channel counts, so the same FLOPs up to borders).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluation.metrics import (  # noqa: E402
    ALEXNET_WEIGHTS_FILE,
    I3D_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_FILE,
    i3d_segment_features,
    inception_features,
    load_i3d,
    load_inception,
    load_lpips_alexnet,
    lpips_distance,
    psnr,
    ssim,
)


# ---- I3D (Carreira & Zisserman 2017, Fig. 3): Inception-v1 inflated to 3D ------------------------------------
class Unit3d(nn.Module):
    """Conv3d + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=tuple(k // 2 for k in kernel), bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max-pool -> 1x1, concatenated on channels."""

    def __init__(self, cin: int, b0: int, b1: tuple[int, int], b2: tuple[int, int], b3: int):
        super().__init__()
        self.b0 = Unit3d(cin, b0)
        self.b1a, self.b1b = Unit3d(cin, b1[0]), Unit3d(b1[0], b1[1], (3, 3, 3))
        self.b2a, self.b2b = Unit3d(cin, b2[0]), Unit3d(b2[0], b2[1], (3, 3, 3))
        self.pool, self.b3 = nn.MaxPool3d(3, 1, 1), Unit3d(cin, b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(self.pool(x))], dim=1)


class I3D(nn.Module):
    """(B, 3, T, H, W) -> 400 Kinetics logits, called as StyleGAN-V's detector: ``rescale`` maps 0-255 to
    [-1, 1], ``resize`` resizes frames to 224 x 224, ``return_features`` gives the pre-softmax logits."""

    def __init__(self, classes: int = 400):
        super().__init__()
        self.features = nn.Sequential(
            Unit3d(3, 64, (7, 7, 7), (2, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            Unit3d(64, 64), Unit3d(64, 192, (3, 3, 3)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            Mixed(192, 64, (96, 128), (16, 32), 32), Mixed(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool3d(3, 2, 1),
            Mixed(480, 192, (96, 208), (16, 48), 64), Mixed(512, 160, (112, 224), (24, 64), 64),
            Mixed(512, 128, (128, 256), (24, 64), 64), Mixed(512, 112, (144, 288), (32, 64), 64),
            Mixed(528, 256, (160, 320), (32, 128), 128),
            nn.MaxPool3d(2, 2),
            Mixed(832, 256, (160, 320), (32, 128), 128), Mixed(832, 384, (192, 384), (48, 128), 128),
        )
        self.logits = nn.Conv3d(1024, classes, 1)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        h = self.features(x)
        h = F.adaptive_avg_pool3d(h, (h.shape[2], 1, 1))  # the (2, 7, 7) average pool at 224 x 224
        logits = self.logits(h).mean(dim=(2, 3, 4))
        return logits if return_features else torch.softmax(logits, dim=1)


def write_random_weights(folder: Path) -> None:
    """The three weight files, randomly initialised, in their published formats and file names."""
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    torch.save({k: v for k, v in alexnet.state_dict().items() if k.startswith("features.")}, folder / ALEXNET_WEIGHTS_FILE)
    inception = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    torch.save(inception.state_dict(), folder / INCEPTION_WEIGHTS_FILE)
    torch.jit.save(torch.jit.script(I3D().eval()), str(folder / I3D_WEIGHTS_FILE))


# ---- timing ----------------------------------------------------------------------------------------------------
def textured_video(frames: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (frames, size // 8, size // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of ``repeats`` calls after one warm-up call.

    CPU seconds (all threads of this process) are less sensitive than wall time to other work on shared cores.
    """
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="frames per timed call (a multiple of 16)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results/metrics.md")
    args = parser.parse_args()
    if args.frames % 16:
        parser.error("--frames must be a multiple of 16 (FVD's segments)")
    load_start = os.getloadavg()
    started = time.perf_counter()
    generated = textured_video(args.frames, args.size, 0)
    reference = textured_video(args.frames, args.size, 1)

    with tempfile.TemporaryDirectory() as folder:
        write_random_weights(Path(folder))
        lpips_net = load_lpips_alexnet(folder)
        inception = load_inception(folder)
        i3d = load_i3d(folder)
        cases = [
            ("PSNR", "frame pairs", "torchmetrics, float64", lambda: psnr(generated, reference), args.repeats),
            ("SSIM (per channel)", "frame pairs", "kornia, float64, 11x11 Gaussian",
             lambda: ssim(generated, reference), args.repeats),
            ("LPIPS (AlexNet, v0.1)", "frame pairs", "batch 16, AlexNet on both frames",
             lambda: lpips_distance(lpips_net, generated, reference, batch_size=16), args.repeats),
            ("FID: Inception-V3 pool features", "frames", "batch 16, resized to 299",
             lambda: inception_features(inception, [generated], batch_size=16), 1),
            ("FVD / FID-VID: I3D features", "frames", "16-frame segments, batch 4, resized to 224",
             lambda: i3d_segment_features(i3d, generated, batch_size=4), 1),
        ]
        rows = []
        for name, unit, note, fn, repeats in cases:
            seconds, cpu = best_of(fn, repeats)
            rows.append((name, unit, note, seconds, cpu))
            print(f"{name:<36} {args.frames / seconds:10.1f} {unit}/s  ({seconds:.3f} s wall, {cpu:.3f} s CPU "
                  f"for {args.frames})", flush=True)
    load_end = os.getloadavg()
    total = time.perf_counter() - started

    command = "python bench/bench_metrics.py " + " ".join(sys.argv[1:])
    lines = [
        "## Metric throughput (App. J metrics, CPU)", "",
        f"- Command: `{command.strip()}`",
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores visible, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, no GPU used; Python {platform.python_version()}.",
        f"- Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Load average (1 min) "
        f"{load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end (cores shared with other work). "
        f"Total wall time {total:.0f} s.",
        f"- Input: {args.frames} uint8 RGB frames at {args.size} x {args.size}; per metric the median of "
        f"{args.repeats} timed calls after a warm-up for PSNR / SSIM / LPIPS, one timed call after a warm-up for "
        "the feature networks. The networks are randomly initialised networks of the real architectures, saved "
        "in the real formats and loaded by `pipeline.evaluation.metrics.feature_networks` (see the script's docstring): "
        "timing does not depend on the weights. Frames per CPU-second counts the CPU time of all of this "
        "process's threads: on an idle machine with N threads, wall frames/s is up to N times higher.", "",
        "| metric | frames/s (wall) | frames per CPU-second | unit | wall s per call | CPU s per call | notes |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    lines += [f"| {name} | {args.frames / sec:.1f} | {args.frames / cpu:.1f} | {unit} | {sec:.3f} | {cpu:.3f} | {note} |"
              for name, unit, note, sec, cpu in rows]
    lines += ["", "A full FID / FVD run passes both the generated and the real set through the network (real-set "
              "features can be cached, as `benchmark_eval` does); the Fréchet distance itself is one 2048 x 2048 "
              "(FID) or 400 x 400 (FVD) matrix square root per comparison, independent of the frame count.", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
