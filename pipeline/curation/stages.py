"""The curation stages after ingest, over Lance tables: raw videos -> shots -> poses -> sub-clips (paper App. B).

Each stage is a plain function of ``PipelineSettings`` that reads the upstream
table(s), does its per-video work on Ray (``ray_runtime.map_items``; the tasks are in
`pipeline.curation.tasks`, a light module for the actors to import), upserts its
own table and its rejections, and returns a ``StageResult`` (counts, Lance
version, a preview). The Dagster assets in ``assets/`` only wrap these.

Stages skip videos they already processed (rows keyed by content-derived ids),
unless ``recompute=True``; each video's rows land in one commit, so a run killed
half-way leaves whole videos only and a re-run completes the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core import previews, rejects, tables
from pipeline.core.config import NLF_WEIGHTS_FILE, ConfigError, PipelineSettings
from pipeline.core.progress import Log, default_log, track
from pipeline.core.ray_runtime import map_items
from pipeline.core.rejects import Reject
from pipeline.core.stage_result import StageResult, table_result
from pipeline.curation.pose import body_coverage
from pipeline.curation.subclips import frame_verdicts, neutral_joints, split_shot
from pipeline.curation.tasks import PoseTask, ShotTask

RAW_VIDEOS, SHOTS, POSES, SUBCLIPS, REJECTS = "raw_videos", "shots", "poses", "subclips", "rejects"
ROWS_PER_COMMIT = 20_000  # pose rows buffered before an upsert (whole videos only)


# --------------------------------------------------------------------------- shared by the stages

def _videos(settings: PipelineSettings) -> pa.Table:
    uri = settings.table_uri(RAW_VIDEOS)
    if not tables.exists(uri):
        raise ConfigError("raw_videos table not found: materialize raw_videos first")
    return tables.read(uri)


def longest_first(items: list[dict]) -> list[dict]:
    """Items by ``num_frames``, longest first: the actor pool then ends its stage evenly (``map_items``)."""
    return sorted(items, key=lambda item: -item["num_frames"])


def _done_video_ids(table_uri: str, backend: str | None = None) -> set[str]:
    if not tables.exists(table_uri):
        return set()
    done = tables.read(table_uri, columns=["video_id", "backend"])
    if backend is not None:
        done = done.filter(pa.compute.equal(done["backend"], backend))
    return set(done["video_id"].to_pylist())


def _done_pose_video_ids(table_uri: str, frame_step: int) -> set[str]:
    """Videos with poses, less those whose MediaPipe poses ran with another ``pose_frame_step``
    (the step is part of the stored backend name), so that changing the setting recomputes them."""
    from pipeline.curation.pose.mediapipe_pose import backend_frame_step

    if not tables.exists(table_uri):
        return set()
    pairs = tables.read(table_uri, columns=["video_id", "backend"]).group_by(["video_id", "backend"]).aggregate([])
    stale = {v for v, b in zip(pairs["video_id"].to_pylist(), pairs["backend"].to_pylist())
             if backend_frame_step(b) not in (None, frame_step)}
    return set(pairs["video_id"].to_pylist()) - stale


# --------------------------------------------------------------------------- shots

def segment_shots(settings: PipelineSettings, log: Log = default_log, recompute: bool = False) -> StageResult:
    """Split every raw video into shots (App. B: shot segmentation; PySceneDetect by default)."""
    from pipeline.curation.shots import make_shot_detector

    videos = _videos(settings).to_pylist()
    uri = settings.table_uri(SHOTS)
    detector = make_shot_detector(settings.shot_detector)
    backend = f"{detector.name}:{detector.version}"
    done = set() if recompute else _done_video_ids(uri, backend)
    todo = longest_first([{"video_id": v["id"], "uri": v["uri"], "num_frames": v["num_frames"]}
                          for v in videos if v["id"] not in done])
    log(f"shots: {len(todo)} videos to segment ({len(done)} already done with {backend})")
    rows, bad = [], []
    seconds: dict[str, float] = {}
    for res in map_items(todo, ShotTask(settings.shot_detector), "detect shots", log, settings.ray_address):
        video_id, video_uri = res.item["video_id"], res.item["uri"]
        if res.error:
            bad.append(Reject(SHOTS, video_id, "shot_detection_failed", res.error, video_id=video_id, uri=video_uri))
            continue
        add_seconds(seconds, res.value.get("seconds"))
        for index, (start, end) in enumerate(res.value["shots"]):
            rows.append({"id": f"{video_id}:{start}-{end}", "video_id": video_id, "uri": video_uri, "shot_index": index,
                         "start_frame": start, "end_frame": end, "num_frames": end - start, "backend": res.value["backend"]})
    processed = [t["video_id"] for t in todo]
    tables.upsert(uri, pa.Table.from_pylist(rows, schema=tables.SHOTS), delete_stale=tables.sql_in("video_id", processed))
    rejects.record(settings.table_uri(REJECTS), SHOTS, bad, within=f"stage = '{SHOTS}' AND {tables.sql_in('video_id', processed)}")
    all_shots = tables.read(uri).to_pylist()
    preview = previews.markdown_table(
        [{"video": Path(s["uri"]).name, "shot": s["shot_index"], "start": s["start_frame"], "end": s["end_frame"],
          "frames": s["num_frames"], "backend": s["backend"]} for s in sorted(all_shots, key=lambda s: (s["uri"], s["start_frame"]))],
        max_rows=40,
    )
    return table_result(settings, SHOTS, len(todo), len(bad), preview_markdown=preview, preview_png=_shot_sheet(all_shots),
                   extra={"videos_with_shots": len({s["video_id"] for s in all_shots}),
                          "stage_seconds": {k: round(v, 2) for k, v in seconds.items()}})


def add_seconds(total: dict[str, float], seconds: dict | None) -> None:
    """Sum an item's {part: seconds} into the stage's (the ``stage_seconds`` metadata: where time goes)."""
    for part, value in (seconds or {}).items():
        total[part] = total.get(part, 0.0) + float(value)


def _shot_sheet(shots: list[dict], limit: int = 16) -> bytes:
    """First frame of each shot of the first videos: what a hard cut looks like."""
    from pipeline.core.video_io import iter_frames

    shots = sorted(shots, key=lambda s: (s["uri"], s["start_frame"]))[:limit]
    images, labels = [], []
    for s in shots:
        images.append(next(iter_frames(s["uri"], s["start_frame"], s["start_frame"] + 1)))
        labels.append(f"{Path(s['uri']).stem} #{s['shot_index']} @{s['start_frame']}")
    return previews.encode_png(previews.contact_sheet(images, labels=labels))


# --------------------------------------------------------------------------- poses

def _check_pose_backend(settings: PipelineSettings) -> None:
    if settings.pose_backend == "nlf":
        settings.weight_file(NLF_WEIGHTS_FILE, "pose_backend=nlf")


def pose_rows(video_id: str, track) -> pa.Table:
    """Per-frame rows of one video's PoseTrack."""
    n = len(track.frame_index)
    return pa.table({
        "id": [f"{video_id}:{int(f)}" for f in track.frame_index],
        "video_id": [video_id] * n,
        "frame": pa.array(track.frame_index.astype(np.int32)),
        "num_people": pa.array(track.num_people.astype(np.int16)),
        "pose": tables.fixed_list(track.pose, 72),
        "transl": tables.fixed_list(track.transl, 3),
        "joint_uncertainty": tables.fixed_list(track.joint_uncertainty, 24),
        "backend": [track.backend] * n,
        "body_coverage": pa.array(np.full(n, -1, np.int8) if track.body_coverage is None else track.body_coverage),
    }, schema=tables.POSES)


def estimate_poses(settings: PipelineSettings, log: Log = default_log, recompute: bool = False) -> StageResult:
    """SMPL pose per frame of every segmented video, on Ray actors (one model load per actor)."""
    _check_pose_backend(settings)
    uri = settings.table_uri(POSES)
    shot_videos = set(tables.read(settings.table_uri(SHOTS), columns=["video_id"])["video_id"].to_pylist())
    videos = [v for v in _videos(settings).to_pylist() if v["id"] in shot_videos]
    done = set() if recompute else _done_pose_video_ids(uri, settings.pose_frame_step)
    todo = longest_first([{"video_id": v["id"], "uri": v["uri"], "num_frames": v["num_frames"]}
                          for v in videos if v["id"] not in done])
    log(f"poses: {len(todo)} videos to process ({len(done)} already done)")
    bad, pending, pending_ids = [], [], []
    rejects_uri = settings.table_uri(REJECTS)

    def flush():
        if pending:
            tables.upsert(uri, pa.concat_tables(pending), delete_stale=tables.sql_in("video_id", pending_ids))
            pending.clear()
            pending_ids.clear()

    task = PoseTask(settings.pose_backend, settings.weights, frame_step=settings.pose_frame_step)
    seconds: dict[str, float] = {}
    for res in map_items(todo, task, "estimate poses", log, settings.ray_address):
        video_id = res.item["video_id"]
        if res.error:
            reason = "no_pose_backend" if res.error.startswith("PoseBackendUnavailable") else "pose_failed"
            bad.append(Reject(POSES, video_id, reason, res.error, video_id=video_id, uri=res.item["uri"]))
            continue
        add_seconds(seconds, getattr(res.value, "seconds", None))
        pending.append(pose_rows(video_id, res.value))
        pending_ids.append(video_id)
        if sum(t.num_rows for t in pending) >= ROWS_PER_COMMIT:
            flush()
    flush()
    processed = [t["video_id"] for t in todo]
    rejects.record(rejects_uri, POSES, bad, within=f"stage = '{POSES}' AND {tables.sql_in('video_id', processed)}")
    for r in bad:
        log(f"poses rejected {r.uri}: {r.reason} ({r.detail})")
    png = _pose_sheet(settings)
    return table_result(settings, POSES, len(todo), len(bad), preview_png=png,
                   preview_markdown=previews.png_markdown(png, "skeletons over frames") if png else "",
                   extra={"stage_seconds": {k: round(v, 2) for k, v in seconds.items()}})


def _pose_sheet(settings: PipelineSettings, limit: int = 8) -> bytes:
    """Skeletons over frames: the middle single-person frame of the first videos, joints projected
    through the 55-degree camera of App. B."""
    from pipeline.core.camera import camera_intrinsics
    from pipeline.core.video_io import iter_frames

    uri = settings.table_uri(POSES)
    if not tables.count(uri):
        return b""
    videos = {v["id"]: v for v in _videos(settings).to_pylist()}
    images, labels = [], []
    for video_id in sorted(_done_video_ids(uri))[:limit]:
        if video_id not in videos:
            continue
        rows = tables.read(uri, filter=f"video_id = '{video_id}' AND num_people = 1")
        if not rows.num_rows:
            continue
        row = rows.slice(rows.num_rows // 2, 1)
        frame_index = row["frame"][0].as_py()
        video = videos[video_id]
        pose = tables.column_as_array(row, "pose", (24, 3))
        transl = tables.column_as_array(row, "transl", (3,))
        joints = neutral_joints(pose, transl)[0]
        K = camera_intrinsics(video["width"], video["height"])
        frame = next(iter_frames(video["uri"], frame_index, frame_index + 1))
        images.append(previews.draw_skeleton(frame, previews.project(joints, K)))
        labels.append(f"{Path(video['uri']).stem} f{frame_index}")
    return previews.encode_png(previews.contact_sheet(images, labels=labels, height=200)) if images else b""


# --------------------------------------------------------------------------- sub-clips

def extract_subclips(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Single-person sub-clips of at least ``min_clip_frames`` frames inside shots (App. B), with FK joints (Sec. 3.1)."""
    videos = {v["id"]: v for v in _videos(settings).to_pylist()}
    shots_by_video: dict[str, list[dict]] = {}
    for s in tables.read(settings.table_uri(SHOTS)).to_pylist():
        shots_by_video.setdefault(s["video_id"], []).append(s)
    pose_uri = settings.table_uri(POSES)
    video_ids = sorted(v for v in _done_video_ids(pose_uri) if v in shots_by_video and v in videos)
    uri = settings.table_uri(SUBCLIPS)
    clip_tables, bad = [], []
    for video_id in track(video_ids, desc="extract sub-clips", log=log, unit="video"):
        clips, video_rejects = subclips_of_video(videos[video_id], shots_by_video[video_id],
                                                 tables.read(pose_uri, filter=f"video_id = '{video_id}'"),
                                                 settings.min_clip_frames, settings.body_coverage)
        clip_tables.append(clips)
        bad.extend(video_rejects)
    new_rows = pa.concat_tables(clip_tables) if clip_tables else tables.SUBCLIPS.empty_table()
    tables.upsert(uri, new_rows, delete_stale=tables.sql_in("video_id", video_ids))
    rejects.record(settings.table_uri(REJECTS), SUBCLIPS, bad, within=f"stage = '{SUBCLIPS}' AND {tables.sql_in('video_id', video_ids)}")
    reasons: dict[str, int] = {}
    for r in bad:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    clip_list = tables.read(uri, columns=["id", "uri", "start_frame", "end_frame", "num_frames"]).to_pylist()
    preview = previews.markdown_table(
        [{"video": Path(c["uri"]).name, "start": c["start_frame"], "end": c["end_frame"], "frames": c["num_frames"]}
         for c in sorted(clip_list, key=lambda c: (c["uri"], c["start_frame"]))], max_rows=40)
    return table_result(settings, SUBCLIPS, len(video_ids), len(bad), preview_markdown=preview,
                   extra={"rejected_ranges_by_reason": reasons,
                          "frames_in_subclips": int(sum(c["num_frames"] for c in clip_list))})


def subclips_of_video(video: dict, shots: list[dict], poses: pa.Table, min_frames: int,
                      body_rule: str = "full") -> tuple[pa.Table, list[Reject]]:
    """Sub-clip rows and rejected frame ranges of one video; ``body_rule`` is the setting ``body_coverage``."""
    n = video["num_frames"]
    num_people = np.full(n, -1, np.int32)
    pose = np.full((n, 24, 3), np.nan, np.float32)
    transl = np.full((n, 3), np.nan, np.float32)
    uncertainty = np.full((n, 24), np.nan, np.float32)
    frames = poses["frame"].to_numpy()
    keep = frames < n
    frames = frames[keep]
    num_people[frames] = poses["num_people"].to_numpy()[keep]
    pose[frames] = tables.column_as_array(poses, "pose", (24, 3))[keep]
    transl[frames] = tables.column_as_array(poses, "transl", (3,))[keep]
    uncertainty[frames] = tables.column_as_array(poses, "joint_uncertainty", (24,))[keep]
    backend = poses["backend"][0].as_py() if poses.num_rows else ""
    valid = np.isfinite(pose).all(axis=(1, 2)) & np.isfinite(transl).all(axis=1)
    coverage = frame_coverage(video, poses, frames, keep, pose, transl, valid)
    verdicts = frame_verdicts(num_people, valid, coverage, body_coverage.LEVELS.get(body_rule, 0))

    rows, bad = [], []
    for shot in sorted(shots, key=lambda s: s["start_frame"]):
        for run in split_shot(verdicts, shot["start_frame"], min(shot["end_frame"], n), min_frames):
            clip_id = f"{video['id']}:{run.start}-{run.end}"
            if run.reason is not None:
                detail = f"frames {run.start}-{run.end} ({run.num_frames}) of shot {shot['shot_index']}: {run.reason}"
                if run.reason == "too_short":
                    detail += f" (< {min_frames} frames)"
                bad.append(Reject(SUBCLIPS, clip_id, run.reason, detail, video_id=video["id"], uri=video["uri"],
                                  start_frame=run.start, end_frame=run.end))
                continue
            s = slice(run.start, run.end)
            rows.append({
                "id": clip_id, "video_id": video["id"], "uri": video["uri"], "shot_id": shot["id"],
                "start_frame": run.start, "end_frame": run.end, "num_frames": run.num_frames, "fps": video["fps"],
                "width": video["width"], "height": video["height"], "pose": pose[s], "transl": transl[s],
                "joints": neutral_joints(pose[s], transl[s]), "joint_uncertainty": uncertainty[s], "pose_backend": backend,
            })
    return _clip_table(rows), bad


def person_rules_of_file(path: str | Path, shot_detector, pose_task, min_frames: int,
                         body_rule: str = "full") -> tuple[dict, list[dict], pa.Table, list[Reject]]:
    """One video file through shots, poses and the sub-clip rules, without tables or quality filters: how a
    labelled video is checked against the person rules (tests, ``bench/bench_person_rules.py``). Returns the
    video row, its shots, the sub-clips kept and the rejected frame ranges."""
    from pipeline.core.video_io import probe_video

    path = Path(path)
    info = probe_video(path)
    video = {"id": path.name, "uri": str(path), "num_frames": info.num_frames, "fps": info.fps,
             "width": info.width, "height": info.height}
    shots = [{"id": f"s{i}", "shot_index": i, "start_frame": s.start_frame, "end_frame": s.end_frame}
             for i, s in enumerate(shot_detector.detect(str(path)))]
    track = pose_task({"uri": str(path), "num_frames": info.num_frames})
    clips, rejected = subclips_of_video(video, shots, pose_rows(video["id"], track), min_frames, body_rule)
    return video, shots, clips, rejected


def frame_coverage(video: dict, poses: pa.Table, frames: np.ndarray, keep: np.ndarray, pose: np.ndarray,
                   transl: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(num_frames,) int8 body coverage of one video, steadied over a few frames (``body_coverage``): the
    backend's own where it gave one, else its SMPL joints projected through the App. B camera."""
    from pipeline.core.camera import camera_intrinsics

    n = video["num_frames"]
    coverage = np.full(n, body_coverage.UNKNOWN, np.int8)
    if "body_coverage" in poses.column_names:
        coverage[frames] = poses["body_coverage"].fill_null(body_coverage.UNKNOWN).to_numpy()[keep]
    judge = valid & (coverage == body_coverage.UNKNOWN)
    if judge.any():
        joints = neutral_joints(pose[judge], transl[judge])
        K = camera_intrinsics(video["width"], video["height"])
        coverage[judge] = body_coverage.from_smpl_joints(joints, K, video["width"], video["height"])
    return body_coverage.steady(coverage)


def _clip_table(rows: list[dict]) -> pa.Table:
    if not rows:
        return tables.SUBCLIPS.empty_table()
    columns = {k: [r[k] for r in rows] for k in rows[0] if k not in ("pose", "transl", "joints", "joint_uncertainty")}
    columns["pose"] = tables.sequence_list([r["pose"] for r in rows], 72)
    columns["transl"] = tables.sequence_list([r["transl"] for r in rows], 3)
    columns["joints"] = tables.sequence_list([r["joints"] for r in rows], 72)
    columns["joint_uncertainty"] = tables.sequence_list([r["joint_uncertainty"] for r in rows], 24)
    return pa.table(columns).select(tables.SUBCLIPS.names).cast(tables.SUBCLIPS)


# --------------------------------------------------------------------------- rejects

def summarize_rejects(settings: PipelineSettings) -> StageResult:
    """Counts of rejections by stage and reason, and the latest ones, for people to read."""
    uri = settings.table_uri(REJECTS)
    tables.create_empty(uri, tables.REJECTS)
    rows = tables.read(uri).to_pylist()
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["stage"], r["reason"])] = counts.get((r["stage"], r["reason"]), 0) + 1
    summary = [{"stage": s, "reason": reason, "count": c} for (s, reason), c in sorted(counts.items())]
    detail = [{"stage": r["stage"], "file": Path(r["uri"]).name if r["uri"] else "", "frames": f"{r['start_frame']}-{r['end_frame']}",
               "reason": r["reason"], "detail": r["detail"]} for r in rows]
    markdown = "### By stage and reason\n" + previews.markdown_table(summary) + "\n\n### Rejected items\n" + previews.markdown_table(detail, 50)
    return table_result(settings, REJECTS, len(rows), len(rows), preview_markdown=markdown,
                   extra={"by_stage": {s: sum(c for (st, _), c in counts.items() if st == s) for s, _ in counts}})
