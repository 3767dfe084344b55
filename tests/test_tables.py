"""Lance table helpers: upsert by id (no duplicates), versions, scoped deletes, list columns round trip."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline.core import rejects, tables
from pipeline.core.rejects import Reject


def raw_rows(ids, frames=10):
    return pa.Table.from_pylist([
        {"id": i, "uri": f"/v/{i}.mp4", "size_bytes": 1, "num_frames": frames, "fps": 25.0, "width": 4, "height": 4,
         "duration_s": 1.0, "codec": "h264"} for i in ids], schema=tables.RAW_VIDEOS)


def test_upsert_updates_in_place_and_versions(tmp_path):
    uri = str(tmp_path / "raw.lance")
    v1 = tables.upsert(uri, raw_rows(["a", "b"]))
    v2 = tables.upsert(uri, raw_rows(["b", "c"], frames=20))
    assert v2 > v1
    now = {r["id"]: r["num_frames"] for r in tables.read(uri).to_pylist()}
    assert now == {"a": 10, "b": 20, "c": 20}
    assert tables.read(uri, version=v1).num_rows == 2  # the old version stays readable
    tables.upsert(uri, raw_rows(["b", "c"], frames=20))
    assert tables.count(uri) == 3


def test_upsert_refuses_duplicate_keys(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        tables.upsert(str(tmp_path / "t.lance"), raw_rows(["a", "a"]))


def test_scoped_reject_replacement(tmp_path):
    uri = str(tmp_path / "rejects.lance")
    rejects.record(uri, "subclips", [Reject("subclips", "v1:0-5", "too_short", "", video_id="v1"),
                                     Reject("subclips", "v2:0-5", "no_person", "", video_id="v2")])
    rejects.record(uri, "poses", [Reject("poses", "v1", "pose_failed", "", video_id="v1")])
    # re-deciding v1's sub-clips: the old v1 sub-clip reject disappears, v2's and the poses reject stay
    rejects.record(uri, "subclips", [Reject("subclips", "v1:5-9", "too_short", "", video_id="v1")],
                   within="stage = 'subclips' AND video_id IN ('v1')")
    assert sorted(tables.read(uri)["id"].to_pylist()) == ["poses:v1", "subclips:v1:5-9", "subclips:v2:0-5"]


def test_sequence_columns_round_trip():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(t, 24, 3)).astype(np.float32) for t in (3, 7, 1)]
    table = pa.table({"x": tables.sequence_list(arrays, 72)})
    back = tables.sequence_as_arrays(table.slice(1, 2), "x", (24, 3))
    assert [b.shape for b in back] == [(7, 24, 3), (1, 24, 3)]
    np.testing.assert_array_equal(back[0], arrays[1])
    fixed = pa.table({"p": tables.fixed_list(arrays[1], 72)})
    np.testing.assert_array_equal(tables.column_as_array(fixed, "p", (24, 3)), arrays[1])


def test_sql_in_quotes_values():
    assert tables.sql_in("uri", ["a'b", "c"]) == "uri IN ('a''b', 'c')"
    assert tables.sql_in("uri", []) == "false"
