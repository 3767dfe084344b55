"""The curated ``motion_video`` table and its ``motion_stats`` (paper Sec. 3.1, App. B, App. F).

Every curation run writes ``motion_video`` as a new Lance version holding exactly the clips kept by that
run, tagged with the run id; older versions stay readable, and training picks one with
``MTVCRAFT_MOTION_VIDEO_VERSION`` (0 = latest). ``motion_stats`` are computed from one version: the per-joint,
per-axis (24, 3) mean/std of joint coordinates over every frame, which normalise 4DMoT's input (Sec. 3.1; the
release's ``mean.npy`` / ``std.npy`` have the same shape), the per-axis std (3,), and the dataset-mean joint positions
whose centred coordinates place motion tokens in 4D RoPE (App. F, Alg. 1, Fig. 10b).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core import previews, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.curation.scoring import CLIP_SCORES
from pipeline.curation.stages import SUBCLIPS

MOTION_VIDEO = "motion_video"
SCORE_COLUMNS = ("pose_uncertainty", "aesthetic", "flow", "blur", "text_ratio")


def build_motion_video(settings: PipelineSettings, run_id: str, log: Log = default_log) -> StageResult:
    """Write the clips kept by the latest ``clip_scores`` verdicts as a new ``motion_video`` version."""
    scores = tables.read(settings.table_uri(CLIP_SCORES), filter="kept = true", columns=["id", *SCORE_COLUMNS])
    kept_ids = scores["id"].to_pylist()
    uri = settings.table_uri(MOTION_VIDEO)
    clips = tables.read(settings.table_uri(SUBCLIPS), filter=tables.sql_in("id", kept_ids)) if kept_ids else tables.SUBCLIPS.empty_table()
    by_id = {r["id"]: r for r in scores.to_pylist()}
    order = [by_id[i] for i in clips["id"].to_pylist()]
    for column in SCORE_COLUMNS:
        clips = clips.append_column(column, pa.array([r[column] for r in order], pa.float32()))
    clips = clips.append_column("curation_run", pa.array([run_id] * clips.num_rows, pa.string()))
    table = clips.select(tables.MOTION_VIDEO.names).cast(tables.MOTION_VIDEO)
    version = tables.write_version(uri, table, tag=_tag(run_id))
    log(f"motion_video: version {version} with {table.num_rows} clips (run {run_id})")
    frames = int(sum(table["num_frames"].to_pylist()))
    preview = previews.markdown_table([
        {"clip": Path(r["uri"]).stem + f" {r['start_frame']}-{r['end_frame']}", "frames": r["num_frames"],
         **{c: r[c] for c in SCORE_COLUMNS}} for r in table.drop_columns(["joints", "pose", "transl"]).to_pylist()
    ], max_rows=40)
    return StageResult(MOTION_VIDEO, uri, version, table.num_rows, table.num_rows, 0, preview_markdown=preview,
                       extra={"curation_run": run_id, "frames": frames,
                              "versions": [v["version"] for v in _versions(uri)]})


def _tag(run_id: str) -> str | None:
    return ("run-" + re.sub(r"[^A-Za-z0-9_-]", "-", run_id))[:100] if run_id else None


def _versions(uri: str) -> list[dict]:
    return tables.dataset(uri).versions()


@dataclass(frozen=True)
class MotionStats:
    """Normalisation statistics of one ``motion_video`` version (metres, camera frame)."""

    mean: np.ndarray          # (24, 3) per joint and axis; also the dataset-mean joint positions (App. F)
    std: np.ndarray           # (24, 3) per joint and axis
    axis_std: np.ndarray      # (3,) per axis over all joints and frames
    num_frames: int
    num_clips: int
    motion_video_version: int

    @property
    def mean_joints(self) -> np.ndarray:
        """Dataset-mean joint positions (Fig. 10b); 4D RoPE centres them (Alg. 1, step 2)."""
        return self.mean

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, mean=self.mean, std=self.std, axis_std=self.axis_std, num_frames=self.num_frames,
                 num_clips=self.num_clips, motion_video_version=self.motion_video_version)
        path.with_suffix(".json").write_text(json.dumps({
            "mean": self.mean.tolist(), "std": self.std.tolist(), "axis_std": self.axis_std.tolist(),
            "num_frames": self.num_frames, "num_clips": self.num_clips, "motion_video_version": self.motion_video_version,
        }, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MotionStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"motion stats not found: {path} (materialize motion_stats first)")
        data = np.load(path)
        return cls(data["mean"], data["std"], data["axis_std"], int(data["num_frames"]), int(data["num_clips"]),
                   int(data["motion_video_version"]))


def compute_motion_stats(joints: list[np.ndarray], version: int) -> MotionStats:
    """Mean and std over every frame of every clip, per joint and axis; NaN-free input required."""
    if not joints:
        raise ValueError("motion_video is empty: no curated clips to compute statistics from")
    stacked = np.concatenate(joints).astype(np.float64)  # (N, 24, 3)
    if not np.isfinite(stacked).all():
        raise ValueError("motion_video holds non-finite joints")
    return MotionStats(stacked.mean(0).astype(np.float32), stacked.std(0).astype(np.float32),
                       stacked.reshape(-1, 3).std(0).astype(np.float32), len(stacked), len(joints), version)


def stats_path(settings: PipelineSettings) -> Path:
    return settings.root / "stats" / "motion_stats.npz"


def build_motion_stats(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Statistics of the selected ``motion_video`` version, saved beside the tables."""
    uri = settings.table_uri(MOTION_VIDEO)
    version = settings.motion_video_version or tables.version(uri)
    table = tables.read(uri, columns=["joints"], version=version)
    stats = compute_motion_stats(tables.sequence_as_arrays(table, "joints", (24, 3)), version)
    path = stats.save(stats_path(settings))
    stats.save(path.with_name(f"motion_stats_v{version}.npz"))
    log(f"motion_stats: {stats.num_clips} clips, {stats.num_frames} frames from motion_video version {version} -> {path}")
    png = previews.encode_png(mean_skeleton_figure(stats.mean_joints))
    return StageResult("motion_stats", str(path), version, stats.num_clips, stats.num_clips, 0, preview_png=png,
                       preview_markdown=previews.png_markdown(png, "dataset-mean skeleton"),
                       extra={"motion_video_version": version, "num_frames": stats.num_frames,
                              "axis_std_m": [round(float(v), 4) for v in stats.axis_std],
                              "mean_pelvis_m": [round(float(v), 3) for v in stats.mean[0]]})


def mean_skeleton_figure(mean_joints: np.ndarray) -> np.ndarray:
    """Front (x-y) and side (z-y) views of the dataset-mean skeleton, centred (Fig. 10b), as an RGB image."""
    plt = previews.pyplot()

    from models.motion.skeleton import SMPL_BONES

    centred = mean_joints - mean_joints.mean(0)
    half_width = float(np.abs(centred[:, [0, 2]]).max()) + 0.1
    fig, axes = plt.subplots(1, 2, figsize=(6, 4), dpi=100)
    for ax, (a, name) in zip(axes, ((0, "front: x (right) / y (down)"), (2, "side: z (forward) / y (down)"))):
        for p, c in SMPL_BONES:
            ax.plot(centred[[p, c], a], centred[[p, c], 1], color="#4C78A8", lw=2)
        ax.scatter(centred[:, a], centred[:, 1], s=12, color="#E45756", zorder=3)
        ax.set_xlim(-half_width, half_width)
        ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
    fig.suptitle("Dataset-mean joints (centred, metres): 4D RoPE positions")
    fig.tight_layout()
    return previews.figure_rgb(fig)
