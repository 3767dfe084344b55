"""Table 2 ablations at laptop size: one command trains and evaluates every variant on the generated benchmark.

    python -m pipeline.evaluation.ablations                       # all 10 rows, tiny configs, the demo's curated clips
    python -m pipeline.evaluation.ablations --rows default "w/o PE" --tokenizer-steps 200 --mvdit-steps 200

Rows (paper Table 2): the default design; three 4D motion-tokenizer variants (w/o quantize, w/o differential
motion, w/ 3D quantization: `TokenizerConfig` switches); six 4D motion-attention positional encodings
(dynamic, learnable, 1D temporal, 2D spatial, 3D spatial, none: `MVDiTTrainConfig.motion_pe`). Each row
trains the tiny 4DMoT (shared by every row that uses the default tokenizer) and the tiny MV-DiT on the
curated clips of the data root (``motion_video``; run ``make demo`` first), then runs `evaluate_benchmark`
on the generated benchmark with `EvalProtocol.tiny()` (App. A.3 protocol at 48 x 64). Metrics whose
feature-network weights are absent are reported as "n/c", never substituted. The paper's rows (TikTok, full
models) are quoted beside ours: compare the ordering of rows, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.evaluation.benchmark_eval import evaluate_benchmark
from pipeline.evaluation.protocol import EvalProtocol
from pipeline.evaluation.report import METRIC_COLUMNS, METRIC_HEADERS

# (tokenizer switches, motion PE) per Table 2 row.
ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, "4d"),
    "w/o quantize": ({"quantize": False}, "4d"),
    "w/o differential motion": ({"differential": False}, "4d"),
    "w/ 3D quantization": ({"quantize_axes": "3d"}, "4d"),
    "w/ dynamic PE": ({}, "dynamic"),
    "w/ learnable PE": ({}, "learnable"),
    "w/ 1D temporal RoPE": ({}, "1d_temporal"),
    "w/ 2D spatial RoPE": ({}, "2d_spatial"),
    "w/ 3D spatial RoPE": ({}, "3d_spatial"),
    "w/o PE": ({}, "none"),
}

# Paper Table 2 (TikTok; PSNR, SSIM, LPIPS, FID, FVD, FID-VID), quoted.
PAPER_TABLE_2: dict[str, tuple[float, ...]] = {
    "w/o quantize": (18.76, 0.732, 0.226, 24.04, 332.97, 9.39),
    "w/o differential motion": (19.08, 0.740, 0.223, 24.37, 325.40, 8.92),
    "w/ 3D quantization": (19.12, 0.742, 0.221, 23.94, 329.86, 9.04),
    "w/ dynamic PE": (17.23, 0.733, 0.247, 28.24, 383.22, 11.85),
    "w/ learnable PE": (16.90, 0.719, 0.259, 28.69, 397.64, 11.74),
    "w/ 1D temporal RoPE": (16.86, 0.718, 0.263, 29.45, 458.29, 12.15),
    "w/ 2D spatial RoPE": (16.28, 0.704, 0.266, 30.07, 459.59, 10.73),
    "w/ 3D spatial RoPE": (16.99, 0.723, 0.259, 28.15, 435.80, 11.28),
    "w/o PE": (16.51, 0.707, 0.281, 32.56, 548.31, 13.40),
    "default": (19.35, 0.760, 0.219, 23.58, 317.21, 8.56),
}


@dataclass
class AblationConfig:
    """Which rows, how long each trains, and the evaluation protocol."""

    rows: tuple[str, ...] = tuple(ROWS)
    tokenizer_steps: int = 400
    mvdit_steps: int = 400
    protocol: EvalProtocol = field(default_factory=EvalProtocol.tiny)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown or not self.rows:
            raise ValueError(f"unknown ablation rows {unknown}; choose from {list(ROWS)}")
        if self.tokenizer_steps < 1 or self.mvdit_steps < 1:
            raise ValueError("tokenizer_steps and mvdit_steps must be >= 1")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def train_row_tokenizer(settings: PipelineSettings, switches: dict[str, Any], config: AblationConfig, out: Path,
                        log: Log) -> Path:
    """Train the tiny 4DMoT with the row's switches on the curated joints (local backend, lr 1e-3 then 1e-4)."""
    from models.tokenizer import TokenizerConfig
    from pipeline.core import tables
    from pipeline.curation.motion_video import MotionStats, stats_path
    from pipeline.tokenizer.config import TokenizerTrainConfig
    from pipeline.tokenizer.loop import train_tokenizer
    from pipeline.tokenizer.stage import curated_clips

    joints = tables.sequence_as_arrays(curated_clips(settings, ["joints"]), "joints", (24, 3))
    stats = MotionStats.load(stats_path(settings))
    steps1 = max(1, round(config.tokenizer_steps * 2 / 3))
    train_config = TokenizerTrainConfig(
        model=TokenizerConfig.tiny().replace(**switches).to_dict(), steps_lr1=steps1,
        steps_lr2=config.tokenizer_steps - steps1, lr1=1e-3, lr2=1e-4, batch_size=8, backend="local",
        checkpoint_every=config.tokenizer_steps, log_every=max(1, config.tokenizer_steps // 10), seed=config.seed)
    result = train_tokenizer(joints, {"mean": stats.mean, "std": stats.std}, train_config, out, log=log)
    return result.checkpoint


def train_row_mvdit(settings: PipelineSettings, tokenizer: Path, motion_pe: str, config: AblationConfig, out: Path,
                    log: Log) -> Path:
    """Train the tiny MV-DiT with the row's positional encoding, as the ``mv_dit`` asset does."""
    from pipeline.curation.motion_video import MotionStats, stats_path
    from pipeline.mvdit.config import MVDiTTrainConfig
    from pipeline.mvdit.stage import BUCKET, training_samples
    from pipeline.mvdit.train import train_mvdit

    stats = MotionStats.load(stats_path(settings))
    train_config = MVDiTTrainConfig.tiny(steps=config.mvdit_steps, buckets=(BUCKET,), motion_pe=motion_pe,
                                         checkpoint_every=config.mvdit_steps, seed=config.seed,
                                         log_every=max(1, config.mvdit_steps // 10))
    result = train_mvdit(training_samples(settings), tokenizer, {"mean_joints": stats.mean}, train_config, out, log=log)
    return result.checkpoint


def run_ablations(settings: PipelineSettings, config: AblationConfig, out_dir: str | Path | None = None,
                  log: Log = default_log) -> dict[str, dict[str, Any]]:
    """Train and evaluate each row; returns {row: the "mtvcraft" aggregates of `evaluate_benchmark`}."""
    out = Path(out_dir) if out_dir else settings.root / "ablations"
    tokenizers: dict[str, Path] = {}
    results: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(config.rows):
        switches, motion_pe = ROWS[row]
        log(f"ablation {index + 1}/{len(config.rows)}: {row}")
        key = json.dumps(switches, sort_keys=True)
        if key not in tokenizers:
            name = "default" if not switches else slug(row)
            tokenizers[key] = train_row_tokenizer(settings, switches, config, out / "tokenizer" / name, log)
        checkpoint = train_row_mvdit(settings, tokenizers[key], motion_pe, config, out / "mvdit" / slug(row), log)
        evaluation = evaluate_benchmark(settings, "generated", checkpoint, config.protocol, log)
        results[row] = {"checkpoint": str(checkpoint), **evaluation.extra["aggregates"]["mtvcraft"]}
        (out / "results.json").write_text(json.dumps(results, indent=1))
    report = table_2_markdown(results, config)
    (out / "table2.md").write_text(report)
    log(f"ablations: wrote {out / 'table2.md'}")
    return results


def _cell(value: Any, metric: str) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.3f}" if metric in ("ssim", "lpips") else f"{value:.2f}"
    return "n/c"


def table_2_markdown(results: dict[str, dict[str, Any]], config: AblationConfig) -> str:
    """Our rows beside the paper's quoted Table 2 rows."""
    p = config.protocol
    header = "| row | " + " | ".join(f"ours {h}" for h in METRIC_HEADERS) + " | " + " | ".join(
        f"paper {h}" for h in METRIC_HEADERS) + " |"
    lines = [
        f"Table 2 at laptop size: tiny 4DMoT ({config.tokenizer_steps} steps) and tiny MV-DiT ({config.mvdit_steps} "
        f"steps) per row, generated benchmark ({p.max_videos} videos, "
        f"{'whole' if p.num_frames is None else f'first {p.num_frames} frames'}, at {p.height} x "
        f"{p.width}, DDIM {p.num_inference_steps}, motion CFG {p.motion_guidance_scale}). Paper columns: quoted "
        "from Table 2 (TikTok, full models). n/c: not computed (feature-network weights absent).", "",
        header, "|" + " --- |" * (1 + 2 * len(METRIC_COLUMNS)),
    ]
    for row, scores in results.items():
        ours = [_cell(scores.get(m), m) for m in METRIC_COLUMNS]
        paper = [_cell(v, m) for v, m in zip(PAPER_TABLE_2[row], METRIC_COLUMNS)]
        lines.append(f"| {row} | " + " | ".join(ours) + " | " + " | ".join(paper) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and evaluate the Table 2 ablation rows (tiny configs).")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to run (default: all): {list(ROWS)}")
    parser.add_argument("--tokenizer-steps", type=int, default=400)
    parser.add_argument("--mvdit-steps", type=int, default=400)
    parser.add_argument("--videos", type=int, default=4, help="generated benchmark videos to evaluate")
    parser.add_argument("--out", default="", help="output folder (default: <data root>/ablations)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a busy laptop more threads wait on each other)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    config = AblationConfig(rows=tuple(args.rows), tokenizer_steps=args.tokenizer_steps, mvdit_steps=args.mvdit_steps,
                            protocol=EvalProtocol.tiny(max_videos=args.videos))
    settings = PipelineSettings.from_env()
    results = run_ablations(settings, config, args.out or None)
    print(table_2_markdown(results, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
