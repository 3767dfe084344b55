"""The ``raw_videos`` stage, where curation starts (paper App. B): probe every input video once, keep the readable ones.

Input is a folder (recursively, by extension) or a manifest file of paths (``raw_videos`` /
``MTVCRAFT_RAW_VIDEOS``); without one the generated sample is rendered once and used (`pipeline.synthetic`).
Rows are keyed by content hash, so a file seen twice is one video; unreadable files and duplicates become
``rejects`` rows with their reason.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.core import previews, rejects, tables
from pipeline.core.config import ConfigError, PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.ray_runtime import map_items
from pipeline.core.rejects import Reject
from pipeline.core.stage_result import StageResult, table_result
from pipeline.curation.stages import RAW_VIDEOS, REJECTS
from pipeline.curation.tasks import ProbeTask


def raw_video_source(settings: PipelineSettings, log: Log = default_log) -> Path:
    """The configured input (folder or manifest), rendering the generated sample when none is configured."""
    if settings.raw_videos:
        return Path(settings.raw_videos)
    from pipeline.synthetic import make_sample

    log(f"MTVCRAFT_RAW_VIDEOS not set: using the generated sample in {settings.sample_dir} (rendered once, then reused)")
    manifest = make_sample(settings.sample_dir, seed=settings.sample_seed, preset=settings.sample_preset, progress=True)
    log(f"generated sample: {len(manifest.videos)} videos, {manifest.total_frames} frames")
    return settings.sample_dir / "videos"


def list_raw_videos(source: Path) -> list[Path]:
    """Video files under a folder (recursively, by extension), or the paths listed in a manifest file
    (one per line, relative to the manifest's folder; blank lines and ``#`` comments ignored)."""
    from pipeline.core.video_io import is_video_file

    if not source.exists():
        raise ConfigError(f"raw_videos (MTVCRAFT_RAW_VIDEOS) = {source} does not exist")
    if source.is_dir():
        return sorted(p.resolve() for p in source.rglob("*") if p.is_file() and is_video_file(p))
    paths = []
    for line in source.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line)
            paths.append((path if path.is_absolute() else source.parent / path).resolve())
    return paths


def ingest_raw_videos(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Probe every input video; good ones become ``raw_videos`` rows keyed by content hash, bad ones rejects."""
    source = raw_video_source(settings, log)
    paths = list_raw_videos(source)
    log(f"raw_videos: {len(paths)} files under {source}")
    rows, bad = [], []
    seen: dict[str, str] = {}
    probed = map_items([{"uri": str(p)} for p in paths], ProbeTask(), "probe videos", log, settings.ray_address)
    for res in sorted(probed, key=lambda r: r.item["uri"]):  # the first path (sorted) of duplicate content is kept
        uri, value = res.item["uri"], res.value or {}
        if res.error or "rejected" in value:
            reason = "probe_failed" if res.error else value["rejected"]
            bad.append(Reject(RAW_VIDEOS, uri, reason, res.error or value["detail"], video_id=value.get("id", ""), uri=uri))
        elif value["id"] in seen:
            bad.append(Reject(RAW_VIDEOS, uri, "duplicate", f"same bytes as {seen[value['id']]}", video_id=value["id"], uri=uri))
        else:
            seen[value["id"]] = uri
            rows.append(value)
    tables.upsert(settings.table_uri(RAW_VIDEOS), pa.Table.from_pylist(rows, schema=tables.RAW_VIDEOS))
    scope = tables.sql_in("uri", [str(p) for p in paths])
    rejects.record(settings.table_uri(REJECTS), RAW_VIDEOS, bad, within=f"stage = '{RAW_VIDEOS}' AND {scope}")
    for r in bad:
        log(f"rejected {r.uri}: {r.reason} ({r.detail})")
    preview = previews.markdown_table(
        [{"file": Path(r["uri"]).name, "frames": r["num_frames"], "fps": r["fps"], "size": f"{r['width']}x{r['height']}",
          "codec": r["codec"]} for r in rows]
        + [{"file": Path(r.uri).name, "frames": "-", "fps": "-", "size": "-", "codec": f"REJECTED: {r.reason}"} for r in bad]
    )
    png = _first_frames_sheet(rows[:12])
    return table_result(settings, RAW_VIDEOS, len(paths), len(bad), preview_markdown=preview, preview_png=png,
                   extra={"source": str(source), "files_seen": len(paths)})


def _first_frames_sheet(rows: list[dict]) -> bytes:
    from pipeline.core.video_io import iter_frames

    images = [next(iter_frames(r["uri"], 0, 1)) for r in rows]
    return previews.encode_png(previews.contact_sheet(images, labels=[Path(r["uri"]).name for r in rows]))
