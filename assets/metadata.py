"""Turn a pipeline ``StageResult`` into Dagster materialization metadata."""

from __future__ import annotations

from dagster import MaterializeResult, MetadataValue

from pipeline.core.config import PipelineSettings
from pipeline.core.previews import markdown_table, png_markdown, save_png
from pipeline.core.stage_result import StageResult


def stage_metadata(result: StageResult, settings: PipelineSettings) -> dict:
    metadata = {
        "num_rows": MetadataValue.int(result.num_rows),
        "lance_version": MetadataValue.int(result.version),
        "table_uri": MetadataValue.path(result.table_uri),
        "processed": MetadataValue.int(result.processed),
        "rejected": MetadataValue.int(result.rejected),
    }
    if result.preview_markdown:
        metadata["preview"] = MetadataValue.md(result.preview_markdown)
    if result.preview_png:
        path = save_png(result.preview_png, settings.previews_dir / f"{result.table}.png")
        metadata["preview_image"] = MetadataValue.md(png_markdown(result.preview_png, result.table))
        metadata["preview_file"] = MetadataValue.path(str(path))
    for key, value in result.extra.items():
        metadata[key] = MetadataValue.json(value) if isinstance(value, (dict, list)) else value
    if result.extra.get("stage_seconds"):
        metadata["stage_seconds_table"] = MetadataValue.md(seconds_table(result.extra["stage_seconds"]))
    return metadata


def seconds_table(seconds: dict[str, float]) -> str:
    """Where a stage's worker time went (decode, shots, pose parts, each scorer), as a markdown table."""
    total = sum(seconds.values()) or 1.0
    return markdown_table([{"part": part, "worker seconds": f"{value:.2f}", "share": f"{100 * value / total:.0f}%"}
                           for part, value in seconds.items()])


def materialized(result: StageResult, settings: PipelineSettings) -> MaterializeResult:
    return MaterializeResult(metadata=stage_metadata(result, settings))
