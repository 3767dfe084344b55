"""Rejections: every dropped video, shot, frame range or clip, with its stage and reason.

Nothing is dropped silently: each stage returns the items it refuses as
``Reject`` records, and they land in the ``rejects`` table next to the rows it
keeps, so that every input is accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pipeline.core import tables


@dataclass(frozen=True)
class Reject:
    stage: str
    item_id: str
    reason: str
    detail: str
    video_id: str = ""
    uri: str = ""
    start_frame: int = -1
    end_frame: int = -1

    @property
    def id(self) -> str:
        return f"{self.stage}:{self.item_id}"


def to_table(rejects: list[Reject]) -> pa.Table:
    rows = [
        {
            "id": r.id, "stage": r.stage, "item_id": r.item_id, "video_id": r.video_id, "uri": r.uri,
            "start_frame": r.start_frame, "end_frame": r.end_frame, "reason": r.reason, "detail": r.detail,
        }
        for r in rejects
    ]
    return pa.Table.from_pylist(rows, schema=tables.REJECTS)


def record(uri: str, stage: str, rejects: list[Reject], within: str | None = None) -> int:
    """Upsert this stage's rejects. ``within`` (a SQL filter, e.g. this stage and the videos it just
    processed) scopes the stage's earlier rejects: those matching it that were not issued again are
    deleted in the same commit, because the stage has re-decided them."""
    return tables.upsert(uri, to_table(rejects), delete_stale=within)
