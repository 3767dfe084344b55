"""Invariants of the curation tables (App. B; DESIGN.md's table contracts), checked after each materialization
(Dagster asset checks wrap these).

Each check returns ``CheckOutcome(passed, description, details)``; nothing here raises for bad data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.core import tables
from pipeline.core.config import PipelineSettings


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    details: dict = field(default_factory=dict)


def unique_ids(settings: PipelineSettings, table: str) -> CheckOutcome:
    """No two rows share an id (re-runs upsert, never append)."""
    uri = settings.table_uri(table)
    ids = tables.read(uri, columns=["id"])["id"].to_pylist() if tables.exists(uri) else []
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    return CheckOutcome(not dupes, f"{len(ids)} rows, {len(dupes)} duplicated ids", {"duplicates": dupes[:20]})


def finite_joints(settings: PipelineSettings, table: str) -> CheckOutcome:
    """Every joint coordinate of every clip is a finite number."""
    uri = settings.table_uri(table)
    if not tables.exists(uri):
        return CheckOutcome(True, "table not written yet")
    clips = tables.read(uri, columns=["id", "joints"])
    bad = [cid for cid, j in zip(clips["id"].to_pylist(), tables.sequence_as_arrays(clips, "joints", (24, 3)))
           if not np.isfinite(j).all()]
    return CheckOutcome(not bad, f"{clips.num_rows} clips, {len(bad)} with non-finite joints", {"clips": bad[:20]})


def shots_cover_videos(settings: PipelineSettings) -> CheckOutcome:
    """Each segmented video's shots are contiguous and cover all its frames."""
    videos = {v["id"]: v["num_frames"] for v in tables.read(settings.table_uri("raw_videos"), columns=["id", "num_frames"]).to_pylist()}
    by_video: dict[str, list[tuple[int, int]]] = {}
    for s in tables.read(settings.table_uri("shots"), columns=["video_id", "start_frame", "end_frame"]).to_pylist():
        by_video.setdefault(s["video_id"], []).append((s["start_frame"], s["end_frame"]))
    bad = []
    for video_id, spans in by_video.items():
        spans.sort()
        ends = [0] + [e for _, e in spans]
        if [s for s, _ in spans] != ends[:-1] or ends[-1] != videos.get(video_id, -1):
            bad.append(video_id)
    return CheckOutcome(not bad, f"{len(by_video)} videos, {len(bad)} with gaps or overlaps", {"videos": bad[:20]})


def every_video_accounted_for(settings: PipelineSettings) -> CheckOutcome:
    """Every ingested video has pose rows for all its frames, or a pose-stage rejection."""
    videos = {v["id"]: v["num_frames"] for v in tables.read(settings.table_uri("raw_videos"), columns=["id", "num_frames"]).to_pylist()}
    uri = settings.table_uri("poses")
    counts = Counter(tables.read(uri, columns=["video_id"])["video_id"].to_pylist()) if tables.exists(uri) else Counter()
    rejected = set(tables.read(settings.table_uri("rejects"), columns=["video_id"], filter="stage IN ('poses', 'shots')")["video_id"].to_pylist()) \
        if tables.exists(settings.table_uri("rejects")) else set()
    missing = [v for v, n in videos.items() if counts.get(v, 0) != n and v not in rejected]
    return CheckOutcome(not missing, f"{len(videos)} videos: {len(videos) - len(missing)} with all frames posed or rejected",
                        {"unaccounted": missing[:20]})
