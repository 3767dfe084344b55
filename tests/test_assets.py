"""The Dagster layer: the asset graph materializes in process, metadata carries rows / version / preview,
a re-materialization upserts, and the new-file sensor requests runs once per new file."""

import json
import os
import shutil

import pytest
from dagster import DagsterInstance, SkipReason, build_sensor_context, materialize

from assets import curation as curation_assets
from assets.definitions import defs
from assets.resources import MTVCraftSettings
from assets.sensors import new_videos_sensor
from pipeline.synthetic import make_sample

ASSETS = [curation_assets.raw_videos, curation_assets.shots, curation_assets.poses, curation_assets.subclips,
          curation_assets.rejects]


def test_definitions_hold_the_curation_graph():
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_videos", "shots", "poses", "subclips", "rejects"} <= keys
    graph = defs.resolve_asset_graph()
    from dagster import AssetKey

    assert AssetKey("shots") in graph.get(AssetKey("poses")).parent_keys


def test_every_pipeline_setting_is_a_resource_field_with_the_same_default():
    """The Dagster resource is how UI users set things: a setting missing there cannot be set from the UI."""
    from dataclasses import fields

    from pipeline.core.config import PipelineSettings

    resource_fields = MTVCraftSettings.model_fields
    for setting in fields(PipelineSettings):
        assert setting.name in resource_fields, setting.name
        assert resource_fields[setting.name].default == setting.default, setting.name


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    sample = make_sample(tmp_path_factory.mktemp("tiny"), seed=3, preset="tiny")
    return sample.root / "videos"


def metadata_of(result, key):
    events = result.asset_materializations_for_node(key)
    assert len(events) == 1
    return events[0].metadata


def test_materialize_all_then_again_keeps_counts(tiny_videos, tmp_path):
    resource = MTVCraftSettings(data_root=str(tmp_path / "data"), raw_videos=str(tiny_videos))
    with DagsterInstance.ephemeral() as instance:
        first = materialize(ASSETS, resources={"mtvcraft": resource}, instance=instance)
        assert first.success
        poses = metadata_of(first, "poses")
        assert poses["num_rows"].value > 0 and poses["lance_version"].value >= 1
        assert poses["preview_image"].value.startswith("![poses](data:image/png;base64,")
        assert "| video |" in metadata_of(first, "shots")["preview"].value
        # Where each stage's time went: decode apart from the stage's own work (issue 16, item 4).
        assert "| decode |" in metadata_of(first, "shots")["stage_seconds_table"].value
        assert "| shots |" in metadata_of(first, "shots")["stage_seconds_table"].value
        rejected = metadata_of(first, "rejects")["preview"].value
        assert "multiple_people" in rejected and "no_person" in rejected

        second = materialize(ASSETS, resources={"mtvcraft": resource}, instance=instance)
        for key in ("raw_videos", "shots", "poses", "subclips", "rejects"):
            assert metadata_of(second, key)["num_rows"].value == metadata_of(first, key)["num_rows"].value, key


def test_bad_setting_fails_the_step_with_the_setting_named(tmp_path):
    resource = MTVCraftSettings(data_root=str(tmp_path), raw_videos=str(tmp_path / "missing"))
    with pytest.raises(Exception, match="MTVCRAFT_RAW_VIDEOS"):
        materialize([curation_assets.raw_videos], resources={"mtvcraft": resource})


def test_sensor_requests_a_run_once_per_new_file(tiny_videos, tmp_path, monkeypatch):
    watched = tmp_path / "incoming"
    watched.mkdir()
    monkeypatch.setenv("MTVCRAFT_RAW_VIDEOS", str(watched))
    monkeypatch.setenv("MTVCRAFT_DATA_ROOT", str(tmp_path / "data"))
    with DagsterInstance.ephemeral() as instance:
        ctx = build_sensor_context(instance=instance)
        assert isinstance(new_videos_sensor(ctx), SkipReason)
        first = sorted(tiny_videos.glob("*.mp4"))[0]
        shutil.copy(first, watched / "a.mp4")
        request = new_videos_sensor(ctx)
        assert request.run_key and request.tags["mtvcraft/new_files"] == "1"
        ctx = build_sensor_context(instance=instance, cursor=ctx.cursor)
        assert isinstance(new_videos_sensor(ctx), SkipReason)  # nothing new since the cursor
        shutil.copy(first, watched / "b.mp4")
        os.utime(watched / "b.mp4", (json.loads(ctx.cursor)["mtime"] + 5,) * 2)
        assert new_videos_sensor(ctx).tags["mtvcraft/new_files"] == "1"
