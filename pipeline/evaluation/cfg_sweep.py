"""Motion-CFG sweep (App. H, Fig. 11): the guidance scale w of Eq. 9 from 1 to 6 against the benchmark metrics.

    python -m pipeline.evaluation.cfg_sweep                       # the mv_dit stage's checkpoint, generated benchmark
    python -m pipeline.evaluation.cfg_sweep --checkpoint CKPT --benchmark tiktok --scales 1 2 3 4 5 6

Each scale is one `evaluate_benchmark` run (same videos, same noise; rows land in the ``benchmark_eval`` table
under their own run id). The plot shows FVD when its I3D weights are present (the paper's figure) and PSNR /
SSIM always; a metric that was not computed is left out of the plot and named in its title.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.core import previews
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.evaluation.benchmark_eval import evaluate_benchmark, resolve_checkpoint
from pipeline.evaluation.protocol import EvalProtocol

PAPER_SCALES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def sweep(settings: PipelineSettings, scales: Sequence[float] = PAPER_SCALES, benchmark: str = "generated",
          checkpoint: str | Path | None = None, protocol: EvalProtocol | None = None,
          out_dir: str | Path | None = None, log: Log = default_log) -> dict[float, dict[str, Any]]:
    """{scale: the model's aggregate metrics}; writes ``cfg_sweep.json`` and ``cfg_sweep.png`` to ``out_dir``."""
    if not scales or any(s < 0 for s in scales):
        raise ValueError(f"CFG scales must be a non-empty list of numbers >= 0, got {list(scales)}")
    checkpoint = resolve_checkpoint(settings, checkpoint)
    protocol = protocol or EvalProtocol.tiny()
    out = Path(out_dir) if out_dir else settings.root / "cfg_sweep" / benchmark
    out.mkdir(parents=True, exist_ok=True)
    results: dict[float, dict[str, Any]] = {}
    for index, scale in enumerate(scales):
        log(f"cfg sweep {index + 1}/{len(scales)}: motion CFG {scale}")
        run = evaluate_benchmark(settings, benchmark, checkpoint, protocol.with_changes(motion_guidance_scale=scale), log)
        results[float(scale)] = run.extra["aggregates"]["mtvcraft"]
    (out / "cfg_sweep.json").write_text(json.dumps({"checkpoint": str(checkpoint), "benchmark": benchmark,
                                                    "results": {str(k): v for k, v in results.items()}}, indent=1))
    previews.save_png(previews.encode_png(sweep_figure(results, benchmark)), out / "cfg_sweep.png")
    log(f"cfg sweep: wrote {out / 'cfg_sweep.png'}")
    return results


def sweep_figure(results: dict[float, dict[str, Any]], benchmark: str) -> np.ndarray:
    """One panel per metric with numbers at every scale (FVD first, as in Fig. 11)."""
    plt = previews.pyplot()
    scales = sorted(results)
    panels, missing = [], []
    for metric, label in (("fvd", "FVD (lower is better)"), ("psnr", "PSNR dB"), ("ssim", "SSIM")):
        values = [results[s].get(metric) for s in scales]
        (panels if all(isinstance(v, (int, float)) for v in values) else missing).append((metric, label, values))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4 * max(1, len(panels)), 3), dpi=100, squeeze=False)
    for ax, (metric, label, values) in zip(axes[0], panels):
        ax.plot(scales, values, marker="o")
        ax.set_xlabel("motion CFG scale w")
        ax.set_title(label)
    note = f" (not computed: {', '.join(m for m, _, _ in missing)})" if missing else ""
    fig.suptitle(f"Motion CFG sweep on {benchmark}{note}", fontsize=9)
    fig.tight_layout()
    return previews.figure_rgb(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Motion-CFG sweep (App. H, Fig. 11).")
    parser.add_argument("--checkpoint", default="", help="MV-DiT checkpoint (default: the mv_dit stage's)")
    parser.add_argument("--benchmark", default="generated", choices=("generated", "tiktok", "ubc_fashion"))
    parser.add_argument("--scales", type=float, nargs="+", default=list(PAPER_SCALES))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--out", default="")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = sweep(PipelineSettings.from_env(), args.scales, args.benchmark, args.checkpoint or None,
                    EvalProtocol.tiny(max_videos=args.videos), args.out or None)
    for scale, metrics in results.items():
        print(scale, {k: v for k, v in metrics.items() if k in ("psnr", "ssim", "lpips", "fvd")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
