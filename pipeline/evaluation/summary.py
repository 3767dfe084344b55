"""``python -m pipeline.evaluation.summary``: what is under the data root, and how to look at it in the Dagster UI."""

from __future__ import annotations

import os

from pipeline.core import tables
from pipeline.core.config import PipelineSettings

TABLES = ("raw_videos", "shots", "poses", "subclips", "clip_scores", "motion_video", "motion_tokens", "rejects",
          "benchmark_eval")


def summary(settings: PipelineSettings) -> str:
    lines = [f"Data root: {settings.root}", "", f"{'table':<14} {'rows':>8} {'version':>8}  path"]
    for name in TABLES:
        uri = settings.table_uri(name)
        if tables.exists(uri):
            lines.append(f"{name:<14} {tables.count(uri):>8} {tables.version(uri):>8}  {uri}")
        else:
            lines.append(f"{name:<14} {'-':>8} {'-':>8}  (not materialized)")
    rejects_uri = settings.table_uri("rejects")
    if tables.exists(rejects_uri):
        counts: dict[tuple[str, str], int] = {}
        for r in tables.read(rejects_uri, columns=["stage", "reason"]).to_pylist():
            counts[(r["stage"], r["reason"])] = counts.get((r["stage"], r["reason"]), 0) + 1
        lines += ["", "Rejections by stage and reason:"]
        lines += [f"  {stage:<12} {reason:<24} {n}" for (stage, reason), n in sorted(counts.items())]
    stats = settings.root / "stats" / "motion_stats.npz"
    if stats.is_file():
        lines += ["", f"Motion statistics (4DMoT normalisation, 4D RoPE mean joints): {stats}"]
    from pipeline.tokenizer.stage import tokenizer_dir

    try:
        results = sorted((tokenizer_dir(settings) / "checkpoints").glob("train_result.json"))
    except FileNotFoundError:  # no motion_video table yet
        results = []
    if results:
        import json

        result = json.loads(results[-1].read_text())
        lines += ["", f"4DMoT tokenizer: held-out MPJPE {result['heldout_mpjpe_mm']:.1f} mm, "
                      f"active codes {result['active_code_share']:.0%}, checkpoint {result['checkpoint']}"]
    animations = sorted((settings.root / "animations").glob("*.mp4"))
    if animations:
        lines += ["", "Animations (generated, and reference | ground truth | generated):"] + [f"  {p}" for p in animations]
    reports = sorted((settings.root / "benchmark_eval").glob("*/*/report.md"), key=lambda p: p.stat().st_mtime)
    if reports:
        lines += ["", f"Newest benchmark_eval report ({reports[-1]}):", "", reports[-1].read_text().strip()]
    previews = sorted(settings.previews_dir.glob("*.png")) if settings.previews_dir.exists() else []
    if previews:
        lines += ["", "Preview images:"] + [f"  {p}" for p in previews]
    home = os.environ.get("DAGSTER_HOME", str(settings.root / "dagster_home"))
    lines += [
        "",
        "Open the Dagster UI on the same data (runs, asset graph, metadata, previews):",
        f"  DAGSTER_HOME={home} MTVCRAFT_DATA_ROOT={settings.root} .venv/bin/dagster dev -h 127.0.0.1 -p 3000",
        "  (or `make ui`), then browse http://127.0.0.1:3000/assets",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(PipelineSettings.from_env()))
