"""Automation: a sensor that requests curation for new video files, and a daily re-curation schedule."""


import json
import os
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from pipeline.core.config import ENV_RAW_VIDEOS, PipelineSettings

curation_job = define_asset_job("curation", selection=AssetSelection.groups("curation"),
                                description="Raw videos to single-person sub-clips, with rejects.")

training_job = define_asset_job("training", selection=AssetSelection.groups("training"),
                                description="4DMoT, motion tokens, MV-DiT and animations from the latest curated table.")

retraining_schedule = ScheduleDefinition(
    name="retraining",
    job=training_job,
    cron_schedule=os.environ.get("MTVCRAFT_TRAINING_CRON", "0 5 * * 0"),
    default_status=DefaultScheduleStatus.STOPPED,
    description="Retrain downstream models on the latest curation (weekly by default; MTVCRAFT_TRAINING_CRON).",
)

recuration_schedule = ScheduleDefinition(
    name="recuration",
    job=curation_job,
    cron_schedule=os.environ.get("MTVCRAFT_CURATION_CRON", "0 3 * * *"),
    default_status=DefaultScheduleStatus.STOPPED,
    description="Re-run curation with the current settings (cron from MTVCRAFT_CURATION_CRON, daily by default).",
)


def _video_files(settings: PipelineSettings) -> dict[str, float]:
    from pipeline.curation.ingest import list_raw_videos

    source = Path(settings.raw_videos) if settings.raw_videos else settings.sample_dir / "videos"
    if not source.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in list_raw_videos(source) if p.exists()}


@sensor(job=curation_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED)
def new_videos_sensor(context: SensorEvaluationContext):
    """Request a curation run when files appear (or change) in MTVCRAFT_RAW_VIDEOS.

    The cursor keeps the newest modification time seen and the files that had it,
    so a file is announced once however often the sensor ticks.
    """
    if not os.environ.get(ENV_RAW_VIDEOS):
        return SkipReason(f"{ENV_RAW_VIDEOS} is not set: nothing to watch")
    files = _video_files(PipelineSettings.from_env())
    cursor = json.loads(context.cursor) if context.cursor else {"mtime": 0.0, "files": []}
    new = sorted(p for p, m in files.items() if m > cursor["mtime"] or (m == cursor["mtime"] and p not in cursor["files"]))
    if not new:
        return SkipReason("no new video files")
    newest = max(files[p] for p in new)
    at_newest = [p for p, m in files.items() if m == newest]
    context.update_cursor(json.dumps({"mtime": newest, "files": at_newest}))
    return RunRequest(run_key=f"new-videos-{newest}-{len(new)}", tags={"mtvcraft/new_files": str(len(new))})
