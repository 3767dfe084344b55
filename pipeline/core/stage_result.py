"""What a stage returns: its table, Lance version, counts and a preview, for logs and the Dagster asset metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.core import tables
from pipeline.core.config import PipelineSettings


@dataclass
class StageResult:
    """What a stage did, for logs and asset metadata."""

    table: str
    table_uri: str
    version: int
    num_rows: int
    processed: int
    rejected: int
    preview_markdown: str = ""
    preview_png: bytes = b""
    extra: dict = field(default_factory=dict)


def table_result(settings: PipelineSettings, name: str, processed: int, rejected: int, **kw) -> StageResult:
    """The result of a stage that wrote table ``name``: its uri, Lance version and row count."""
    uri = settings.table_uri(name)
    tables.create_empty(uri, tables.SCHEMAS[name])  # a stage that kept nothing still leaves a (empty) table
    return StageResult(name, uri, tables.version(uri), tables.count(uri), processed, rejected, **kw)
