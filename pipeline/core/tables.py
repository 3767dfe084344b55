"""Lance tables: the contracts between stages (DESIGN.md "Tables are the contracts").

One table per asset under ``<data_root>/tables``. Rows are keyed by a
content-derived ``id`` so that a re-run upserts (Lance ``merge_insert``) and
never duplicates. Every write is a new Lance version; older versions stay
readable with ``read(uri, version=...)``. Large per-frame arrays are
fixed-size-list columns (per-frame tables) or lists of fixed-size lists
(per-clip tables); videos stay where they are, referenced by URI and frame range.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import lance
import numpy as np
import pyarrow as pa


def vec(n: int) -> pa.DataType:
    """A fixed-size list of n float32 (one frame's pose, joints, ...)."""
    return pa.list_(pa.float32(), n)


def seq(n: int) -> pa.DataType:
    """A per-clip sequence of fixed-size float32 frames: list<fixed_size_list<float32, n>>."""
    return pa.list_(vec(n))


RAW_VIDEOS = pa.schema([
    ("id", pa.string()),            # SHA-256 of the file bytes (video_io.content_id)
    ("uri", pa.string()),
    ("size_bytes", pa.int64()),
    ("num_frames", pa.int32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("duration_s", pa.float32()),
    ("codec", pa.string()),
])

SHOTS = pa.schema([
    ("id", pa.string()),            # "<video_id>:<start>-<end>"
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("shot_index", pa.int32()),
    ("start_frame", pa.int32()),
    ("end_frame", pa.int32()),      # exclusive
    ("num_frames", pa.int32()),
    ("backend", pa.string()),
])

POSES = pa.schema([
    ("id", pa.string()),            # "<video_id>:<frame>"
    ("video_id", pa.string()),
    ("frame", pa.int32()),
    ("num_people", pa.int16()),
    ("pose", vec(72)),              # 24 x 3 axis-angle, OpenCV camera frame; NaN when nobody
    ("transl", vec(3)),             # metres, camera frame
    ("joint_uncertainty", vec(24)), # metres
    ("backend", pa.string()),
    ("body_coverage", pa.int8()),   # body parts the backend saw (pose/body_coverage.py); -1: unknown
])

SUBCLIPS = pa.schema([
    ("id", pa.string()),            # "<video_id>:<start>-<end>"
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("shot_id", pa.string()),
    ("start_frame", pa.int32()),
    ("end_frame", pa.int32()),      # exclusive
    ("num_frames", pa.int32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("pose", seq(72)),
    ("transl", seq(3)),
    ("joints", seq(72)),            # FK on the neutral SMPL shape + root translation (Sec. 3.1), metres
    ("joint_uncertainty", seq(24)),
    ("pose_backend", pa.string()),
])

CLIP_SCORES = pa.schema([
    ("id", pa.string()),            # the sub-clip id
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("start_frame", pa.int32()),
    ("end_frame", pa.int32()),
    ("num_frames", pa.int32()),
    ("pose_uncertainty", pa.float32()),  # metres: mean over frames of the max joint uncertainty (App. B)
    ("aesthetic", pa.float32()),
    ("flow", pa.float32()),         # mean optical-flow magnitude, px/frame at the configured long side
    ("subject_flow", pa.float32()), # the same inside the subject's box (scores/flow.py)
    ("camera_flow", pa.float32()),  # median |flow| outside the subject's box: the camera's motion
    ("blur", pa.float32()),         # Laplacian variance
    ("text_ratio", pa.float32()),   # text-box union area / frame area
    ("aesthetic_backend", pa.string()),
    ("flow_backend", pa.string()),
    ("blur_backend", pa.string()),
    ("ocr_backend", pa.string()),
    ("scoring_key", pa.string()),   # backends + versions + sampling: scores are reused while it matches
    ("frames_scored", pa.int32()),
    ("failed_filter", pa.string()), # "" when kept by the latest curation run
    ("kept", pa.bool_()),
])

MOTION_VIDEO = pa.schema([
    ("id", pa.string()),            # the sub-clip id
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("start_frame", pa.int32()),
    ("end_frame", pa.int32()),
    ("num_frames", pa.int32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("joints", seq(72)),            # metres, OpenCV camera frame: 4DMoT's input (Sec. 3.1)
    ("pose", seq(72)),
    ("transl", seq(3)),
    ("pose_uncertainty", pa.float32()),
    ("aesthetic", pa.float32()),
    ("flow", pa.float32()),
    ("blur", pa.float32()),
    ("text_ratio", pa.float32()),
    ("curation_run", pa.string()),
])

MOTION_TOKENS = pa.schema([
    ("id", pa.string()),            # the curated clip id
    ("video_id", pa.string()),
    ("num_frames_used", pa.int32()),  # the longest prefix 4DMoT reconstructs at its own length
    ("latent_frames", pa.int32()),  # 1 + (f - 1) / 4
    ("token_ids", pa.list_(pa.int32())),  # (latent_frames x 24) codebook indices, frame-major
    ("mpjpe_mm", pa.float32()),     # decode(encode(clip)) vs the clip, mean per-joint error
    ("checkpoint", pa.string()),
])

REJECTS = pa.schema([
    ("id", pa.string()),            # "<stage>:<item id>"
    ("stage", pa.string()),
    ("item_id", pa.string()),
    ("video_id", pa.string()),
    ("uri", pa.string()),
    ("start_frame", pa.int32()),    # -1 for a whole video
    ("end_frame", pa.int32()),
    ("reason", pa.string()),        # a short machine-readable word
    ("detail", pa.string()),        # what a person needs to know
])

SCHEMAS = {"raw_videos": RAW_VIDEOS, "shots": SHOTS, "poses": POSES, "subclips": SUBCLIPS, "clip_scores": CLIP_SCORES,
           "motion_video": MOTION_VIDEO, "motion_tokens": MOTION_TOKENS, "rejects": REJECTS}


STORAGE_OPTIONS_ENV = "MTVCRAFT_STORAGE_OPTIONS"


def storage_options() -> dict[str, str] | None:
    """Object-store options for remote tables, from MTVCRAFT_STORAGE_OPTIONS (a JSON object), e.g.
    {"aws_endpoint": "http://minio:9000", "aws_region": "us-east-1", "allow_http": "true"}; Lance ignores
    them for local paths, and without them it reads the standard AWS_* variables."""
    raw = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not raw:
        return None
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{STORAGE_OPTIONS_ENV} is not valid JSON: {err}") from err
    if not isinstance(options, dict):
        raise ValueError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of strings")
    return {str(k): str(v) for k, v in options.items()}


def dataset(uri: str, version: int | None = None) -> lance.LanceDataset:
    return lance.dataset(uri, version=version, storage_options=storage_options())


def exists(uri: str) -> bool:
    return (Path(uri) / "_versions").is_dir() if "://" not in uri else _remote_exists(uri)


def _remote_exists(uri: str) -> bool:
    try:
        dataset(uri)
        return True
    except (ValueError, OSError, FileNotFoundError):
        return False


def upsert(uri: str, rows: pa.Table, key: str = "id", delete_stale: str | None = None) -> int:
    """Insert or update ``rows`` by ``key`` in one commit; returns the new version.

    ``delete_stale`` is a SQL filter: target rows matching it that are not in
    ``rows`` are deleted in the same commit (a stage re-deciding a set of
    items, e.g. the rejects of one stage for the videos it just processed).
    """
    if rows.num_rows and len(set(rows.column(key).to_pylist())) != rows.num_rows:
        raise ValueError(f"upsert into {uri}: duplicate {key!r} values in the new rows")
    if not exists(uri):
        if "://" not in uri:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        return lance.write_dataset(rows, uri, mode="create", storage_options=storage_options()).version
    ds = dataset(uri)
    if rows.num_rows == 0 and delete_stale is None:
        return ds.version
    builder = ds.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
    if delete_stale is not None:
        builder = builder.when_not_matched_by_source_delete(delete_stale)
    builder.execute(rows.cast(ds.schema) if rows.schema != ds.schema else rows)
    return dataset(uri).version


def write_version(uri: str, rows: pa.Table, tag: str | None = None) -> int:
    """Replace the table's contents with ``rows`` as a new version (older versions stay readable);
    optionally tag that version (tags survive ``cleanup_old_versions``)."""
    mode = "overwrite" if exists(uri) else "create"
    if mode == "create" and "://" not in uri:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    ds = lance.write_dataset(rows, uri, mode=mode, storage_options=storage_options())
    if tag:
        ds.tags.create(tag, ds.version)
    return ds.version


def create_empty(uri: str, schema: pa.Schema) -> int:
    """Make sure the table exists (an empty one), so readers downstream never fail on a fresh root."""
    if exists(uri):
        return dataset(uri).version
    return upsert(uri, schema.empty_table())


def read(uri: str, columns: list[str] | None = None, filter: str | None = None, version: int | None = None) -> pa.Table:
    """The table (or the columns / rows asked for), at the latest or a given version."""
    return dataset(uri, version).to_table(columns=columns, filter=filter)


def version(uri: str) -> int:
    return dataset(uri).version


def count(uri: str, filter: str | None = None) -> int:
    return dataset(uri).count_rows(filter=filter) if exists(uri) else 0


def sql_str(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """A SQL ``column IN (...)`` filter with quoted string values."""
    quoted = ", ".join(sql_str(v) for v in values)
    return f"{column} IN ({quoted})" if quoted else "false"


def fixed_list(array: np.ndarray, width: int) -> pa.FixedSizeListArray:
    """(N, ...) float array -> fixed-size-list column of ``width`` float32 per row."""
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)


def sequence_list(arrays: list[np.ndarray], width: int) -> pa.ListArray:
    """A list of (T_i, ...) arrays -> list<fixed_size_list<float32, width>> column."""
    lengths = [len(a) for a in arrays]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = fixed_list(np.concatenate([a.reshape(len(a), width) for a in arrays]) if arrays else np.zeros((0, width)), width)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def column_as_array(table: pa.Table, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed-size-list column as one (N, *shape) float32 array."""
    col = table.column(name).combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), *shape)


def sequence_as_arrays(table: pa.Table, name: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    """A list<fixed_size_list> column as one (T_i, *shape) float32 array per row."""
    col = table.column(name).combine_chunks()
    offsets = col.offsets.to_numpy()
    offsets = offsets - offsets[0]
    values = col.flatten().flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    values = values.reshape(-1, *shape)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(col))]
