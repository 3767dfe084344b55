"""The ``clip_scores`` stage (paper App. B): quality scores per sub-clip, then the keep/reject verdicts.

Scores run on Ray actors (``scores.task.ScoreTask``), each building its scorers (and loading their weights) once. A clip's scores
are cached by clip id and ``scoring_key`` (backends, their versions and the frame sampling): changing a
threshold re-decides every clip without scoring again; changing a backend re-scores.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from pipeline.core import previews, rejects, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.ray_runtime import map_items
from pipeline.core.rejects import Reject
from pipeline.core.stage_result import StageResult, table_result
from pipeline.curation.filters import (
    FLOW_SCORE,
    REASONS,
    Thresholds,
    clip_pose_uncertainty,
    first_failure,
    funnel,
    uncertainty_cut,
)
from pipeline.curation.scores.score_clips import subject_boxes
from pipeline.curation.scores.task import ScoreTask, scorer_backends
from pipeline.curation.stages import REJECTS, SUBCLIPS, add_seconds, longest_first

CLIP_SCORES = "clip_scores"
METRICS = ("aesthetic", "flow", "blur", "ocr")


def thresholds_for(settings: PipelineSettings) -> Thresholds:
    """The run's keep-rules: each explicit setting, else the default of the backend that produced the score."""
    return Thresholds.for_backends(
        scorer_backends(settings), uncertainty_drop=settings.uncertainty_drop, flow_region=settings.flow_region,
        min_aesthetic=settings.min_aesthetic, min_flow=settings.min_flow, min_blur=settings.min_blur,
        max_text_ratio=settings.max_text_ratio,
    )


def score_clips(settings: PipelineSettings, log: Log = default_log, run_id: str = "") -> StageResult:
    """Score new sub-clips, then decide every clip with this run's thresholds (uncertainty quantile recomputed)."""
    thresholds = thresholds_for(settings)
    uri = settings.table_uri(CLIP_SCORES)
    clips = tables.read(settings.table_uri(SUBCLIPS), columns=["id", "video_id", "uri", "start_frame", "end_frame",
                                                                "num_frames", "joint_uncertainty", "joints", "width",
                                                                "height"])
    task = ScoreTask(settings)
    key = task.key()
    backends = json.loads(key)
    cached = {}
    if tables.exists(uri):
        for row in tables.read(uri, filter=f"scoring_key = {tables.sql_str(key)}").to_pylist():
            cached[row["id"]] = row
    uncertainty = [clip_pose_uncertainty(u) for u in tables.sequence_as_arrays(clips, "joint_uncertainty", (24,))]
    rows = []
    todo = []
    joints = tables.sequence_as_arrays(clips, "joints", (24, 3))
    for clip, u, j in zip(clips.drop_columns(["joint_uncertainty", "joints"]).to_pylist(), uncertainty, joints):
        base = {**clip, "pose_uncertainty": u}
        if clip["id"] in cached:
            old = cached[clip["id"]]
            rows.append({**old, **base})
        else:
            todo.append({**base, "boxes": subject_boxes(j, clip["width"], clip["height"])})
    log(f"clip_scores: {len(todo)} clips to score, {len(rows)} cached (key {key})")
    failed = []
    seconds: dict[str, float] = {}
    videos = _by_video(todo)
    for res in map_items(longest_first(videos), task, "score clips (one pass per video)", log, settings.ray_address):
        add_seconds(seconds, None if res.error else res.value["seconds"])
        for k, clip in enumerate(res.item["clips"]):
            v = {"error": res.error} if res.error else res.value["clips"][k]
            if "error" in v:
                failed.append(Reject(CLIP_SCORES, clip["id"], "scoring_failed", v["error"], video_id=clip["video_id"],
                                     uri=clip["uri"], start_frame=clip["start_frame"], end_frame=clip["end_frame"]))
                continue
            rows.append({**clip, "aesthetic": v["aesthetic"], "flow": v["flow"], "blur": v["blur"], "text_ratio": v["ocr"],
                         "subject_flow": v.get("subject_flow", float("nan")),
                         "camera_flow": v.get("camera_flow", float("nan")),
                         "aesthetic_backend": backends["aesthetic"], "flow_backend": backends["flow"],
                         "blur_backend": backends["blur"], "ocr_backend": backends["ocr"], "scoring_key": key,
                         "frames_scored": int(v.get("frames_scored", 0))})

    cut = uncertainty_cut(np.array([r["pose_uncertainty"] for r in rows]), thresholds.uncertainty_drop)
    bad = list(failed)
    failures = []
    for r in rows:
        failure = first_failure(r, thresholds, cut)
        failures.append(failure)
        r["failed_filter"], r["kept"] = failure or "", failure is None
        if failure:
            bad.append(Reject(CLIP_SCORES, r["id"], REASONS[failure], _why(r, failure, thresholds, cut),
                              video_id=r["video_id"], uri=r["uri"], start_frame=r["start_frame"], end_frame=r["end_frame"]))
    table = pa.Table.from_pylist([{k: r.get(k) for k in tables.CLIP_SCORES.names} for r in rows], schema=tables.CLIP_SCORES)
    tables.upsert(uri, table, delete_stale="true")  # the table mirrors the current sub-clips
    rejects.record(settings.table_uri(REJECTS), CLIP_SCORES, bad, within=f"stage = '{CLIP_SCORES}'")
    steps = funnel(failures)
    png = previews.encode_png(funnel_chart(steps))
    return table_result(settings, CLIP_SCORES, len(todo), len(bad), preview_png=png,
                   preview_markdown=previews.markdown_table([{"step": s, "clips": n} for s, n in steps]),
                   extra={"thresholds": asdict(thresholds), "uncertainty_cut_m": cut, "funnel": dict(steps),
                          "scoring_key": backends, "scored_now": len(todo),
                          "stage_seconds": {k: round(v, 2) for k, v in seconds.items()}, "cached": len(rows) - len(todo) + len(failed)})


def _by_video(clips: list[dict]) -> list[dict]:
    """One item per video: its clips by start frame, and the frames they cover (``longest_first``)."""
    videos: dict[str, dict] = {}
    for clip in sorted(clips, key=lambda c: (c["video_id"], c["start_frame"])):
        video = videos.setdefault(clip["video_id"], {"video_id": clip["video_id"], "uri": clip["uri"],
                                                     "num_frames": 0, "clips": []})
        video["clips"].append(clip)
        video["num_frames"] += clip["num_frames"]
    return list(videos.values())


def _why(row: dict, failure: str, t: Thresholds, cut: float) -> str:
    return {
        "pose_uncertainty": f"pose uncertainty {row['pose_uncertainty']:.3f} m > cut {cut:.3f} m (top {t.uncertainty_drop:.0%})",
        "aesthetic": f"aesthetic {row['aesthetic']:.2f} < {t.min_aesthetic} ({row['aesthetic_backend']})",
        "flow": f"optical flow ({t.flow_region}) {row[FLOW_SCORE[t.flow_region]]:.2f} px/frame < {t.min_flow} "
                f"({row['flow_backend']}; whole frame {row['flow']:.2f}, subject {row['subject_flow']:.2f}, "
                f"camera {row['camera_flow']:.2f})",
        "blur": f"Laplacian variance {row['blur']:.1f} < {t.min_blur}",
        "ocr": f"text ratio {row['text_ratio']:.3f} > {t.max_text_ratio} ({row['ocr_backend']})",
    }[failure]


def funnel_chart(steps: list[tuple[str, int]]) -> np.ndarray:
    """A bar chart of the funnel (clips left after each filter), as an RGB image."""
    plt = previews.pyplot()

    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    names, counts = zip(*steps)
    ax.barh(range(len(steps))[::-1], counts, color="#4C78A8")
    ax.set_yticks(range(len(steps))[::-1], names)
    for i, c in enumerate(counts):
        ax.text(c, len(steps) - 1 - i, f" {c}", va="center")
    ax.set_xlabel("clips")
    ax.set_title("Curation funnel (App. B filters, in order)")
    fig.tight_layout()
    return previews.figure_rgb(fig)
