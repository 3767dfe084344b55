"""The ``mocap_motions`` stage: motion-capture files (MTVCRAFT_MOCAP) into a Lance table for 4DMoT (beyond the paper).

One row per sequence (`pipeline.motion.mocap`): id, source corpus, licence tag,
frame rate, frame count, train / held-out split and the joints (metres, world
frame, +Y up). Each run writes a new table version with what the configured
files hold now; files or sequences that cannot be used are recorded in
``rejects`` (stage ``mocap_motions``) with their reason. Without MTVCRAFT_MOCAP
the table is empty and the tokenizer trains on curated clips only (the paper's recipe).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.core import previews, rejects, tables
from pipeline.core.config import ENV_MOCAP, PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.curation.stages import REJECTS
from pipeline.motion.camera_placement import CameraPlacement, intrinsics, place_clips, project
from pipeline.motion.mocap import STAGE, MocapSequence, read_sources

MOCAP_MOTIONS = STAGE
SCHEMA = pa.schema([
    ("id", pa.string()),            # "<source>/<sequence>"
    ("sequence", pa.string()),
    ("source", pa.string()),        # corpus name, or "amass" / "bvh"
    ("licence", pa.string()),       # short tag; the full text is in the source's sidecar
    ("uri", pa.string()),
    ("fps", pa.float32()),
    ("num_frames", pa.int32()),
    ("split", pa.string()),         # "train" | "heldout" (pipeline.motion.mocap.heldout_split)
    ("joints", tables.seq(72)),     # metres, world frame, +Y up
])


def to_table(sequences: list[MocapSequence]) -> pa.Table:
    columns = {
        "id": [s.id for s in sequences], "sequence": [s.sequence for s in sequences],
        "source": [s.source for s in sequences], "licence": [s.licence for s in sequences],
        "uri": [s.uri for s in sequences], "fps": [s.fps for s in sequences],
        "num_frames": [s.num_frames for s in sequences], "split": [s.split for s in sequences],
    }
    arrays = [pa.array(v, SCHEMA.field(k).type) for k, v in columns.items()]
    arrays.append(tables.sequence_list([s.joints for s in sequences], 72))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def read_mocap(settings: PipelineSettings, split: str | None = None) -> list[np.ndarray]:
    """Joints (T, 24, 3) metres, +Y up, of the table's sequences (of one ``split`` when given); [] without a table."""
    uri = settings.table_uri(MOCAP_MOTIONS)
    if not tables.exists(uri):
        return []
    table = tables.read(uri, columns=["joints"], filter=None if split is None else f"split = {tables.sql_str(split)}")
    return tables.sequence_as_arrays(table, "joints", (24, 3)) if table.num_rows else []


def source_statistics(sequences: list[MocapSequence]) -> dict[str, dict]:
    """Per source: sequences, minutes (train / held out), licence, root speed, joint speed, body extent."""
    out: dict[str, dict] = {}
    for name in sorted({s.source for s in sequences}):
        part = [s for s in sequences if s.source == name]
        minutes = lambda split: round(sum(s.num_frames / s.fps for s in part if s.split == split) / 60, 2)  # noqa: E731
        root_speed = np.concatenate([np.linalg.norm(np.diff(s.joints[:, 0, [0, 2]], axis=0), axis=-1) * s.fps for s in part])
        joint_speed = np.concatenate([np.linalg.norm(np.diff(s.joints, axis=0), axis=-1).reshape(-1) * s.fps for s in part])
        extent = np.array([s.joints.reshape(-1, 3).max(0) - s.joints.reshape(-1, 3).min(0) for s in part])
        out[name] = {
            "sequences": len(part), "minutes_train": minutes("train"), "minutes_heldout": minutes("heldout"),
            "licence": sorted({s.licence for s in part}), "fps": sorted({s.fps for s in part}),
            "root_speed_m_s_median_p95": [round(float(np.median(root_speed)), 3), round(float(np.percentile(root_speed, 95)), 3)],
            "joint_speed_m_s_median_p95": [round(float(np.median(joint_speed)), 3), round(float(np.percentile(joint_speed, 95)), 3)],
            "extent_xyz_m_median": np.median(extent, axis=0).round(3).tolist(),
            "height_m_median": round(float(np.median([s.joints[0, :, 1].max() - s.joints[0, :, 1].min() for s in part])), 3),
        }
    return out


def skeleton_strip(sequences: list[MocapSequence], per_source: int = 4, size: int = 200) -> np.ndarray:
    """Evenly chosen sequences of each source as the tokenizer sees them: placed by the virtual camera
    (fixed seed), first / middle / last frame drawn over each other."""
    placement = CameraPlacement(width=size, height=size, bone_scale=0.0)
    k = intrinsics(placement)
    images, labels = [], []
    for name in sorted({s.source for s in sequences}):
        part = [s for s in sequences if s.source == name]
        for s in [part[i] for i in np.linspace(0, len(part) - 1, min(per_source, len(part))).round().astype(int)]:
            cam = place_clips([s.joints], placement, seed=0)[0]
            img = np.full((size, size, 3), 24, np.uint8)
            for t in (0, len(cam) // 2, len(cam) - 1):
                img = previews.draw_skeleton(img, project(cam[t], k), thickness=1)
            images.append(img)
            labels.append(s.sequence[:28])
    return previews.contact_sheet(images, columns=per_source, height=size, labels=labels)


def build_mocap_motions(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Read MTVCRAFT_MOCAP into the ``mocap_motions`` table (empty without it); rejections to ``rejects``."""
    uri = settings.table_uri(MOCAP_MOTIONS)
    if not settings.mocap:
        log(f"{ENV_MOCAP} not set: mocap_motions is empty; the tokenizer trains on curated clips only (the paper's recipe)")
        version = tables.write_version(uri, SCHEMA.empty_table()) if tables.count(uri) else tables.create_empty(uri, SCHEMA)
        if tables.count(settings.table_uri(REJECTS), f"stage = {tables.sql_str(STAGE)}"):  # earlier sources' rejections
            rejects.record(settings.table_uri(REJECTS), STAGE, [], within=f"stage = {tables.sql_str(STAGE)}")
        return StageResult(MOCAP_MOTIONS, uri, version, 0, 0, 0,
                           preview_markdown=f"{ENV_MOCAP} is not set: no motion capture (curated clips only).",
                           extra={"minutes": {}})
    sequences, rejected = read_sources(settings.mocap)
    log(f"mocap_motions: {len(sequences)} sequences from {settings.mocap}, {len(rejected)} rejected")
    for r in rejected[:20]:
        log(f"rejected {r.item_id}: {r.reason} ({r.detail})")
    version = tables.write_version(uri, to_table(sequences))
    rejects.record(settings.table_uri(REJECTS), STAGE, rejected, within=f"stage = {tables.sql_str(STAGE)}")
    stats = source_statistics(sequences) if sequences else {}
    minutes = {k: round(v["minutes_train"] + v["minutes_heldout"], 2) for k, v in stats.items()}
    strip = previews.encode_png(skeleton_strip(sequences)) if sequences else b""
    rows = [{"source": k, "sequences": v["sequences"], "train min": v["minutes_train"], "held-out min": v["minutes_heldout"],
             "licence": ", ".join(v["licence"]), "root speed m/s (median, p95)": v["root_speed_m_s_median_p95"],
             "joint speed m/s (median, p95)": v["joint_speed_m_s_median_p95"], "extent x/y/z m": v["extent_xyz_m_median"]}
            for k, v in stats.items()]
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    markdown = previews.markdown_table(rows) + ("\n\n" + previews.png_markdown(strip, "placed skeletons") if strip else "")
    return StageResult(MOCAP_MOTIONS, uri, version, len(sequences), len(sequences) + len(rejected), len(rejected),
                       preview_markdown=markdown, preview_png=strip,
                       extra={"minutes": minutes, "per_source": stats, "rejections_by_reason": reasons})
