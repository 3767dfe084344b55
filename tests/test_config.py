"""Settings: environment defaults and one clear error per bad value, naming the setting."""

import pytest

from pipeline.config import ConfigError, PipelineSettings


def test_defaults_from_environment(monkeypatch, tmp_path):
    for name in ("MTVCRAFT_DATA_ROOT", "MTVCRAFT_RAW_VIDEOS", "MTVCRAFT_WEIGHTS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    s = PipelineSettings.from_env()
    assert (s.data_root, s.raw_videos, s.weights, s.ray_address) == ("./data", "", "", "")
    monkeypatch.setenv("MTVCRAFT_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("MTVCRAFT_RAW_VIDEOS", str(tmp_path))
    s = PipelineSettings.from_env()
    assert s.root == tmp_path and s.table_uri("shots") == str(tmp_path / "tables" / "shots.lance")


@pytest.mark.parametrize("change, setting", [
    ({"raw_videos": "/no/such/folder"}, "MTVCRAFT_RAW_VIDEOS"),
    ({"weights": "/no/such/weights"}, "MTVCRAFT_WEIGHTS"),
    ({"shot_detector": "autoshot"}, "shot_detector"),
    ({"pose_backend": "openpose"}, "pose_backend"),
    ({"min_clip_frames": 0}, "min_clip_frames"),
])
def test_bad_values_name_the_setting(change, setting):
    with pytest.raises(ConfigError, match=setting):
        PipelineSettings(**change).validated()


def test_missing_weight_file_names_setting_and_file(tmp_path):
    s = PipelineSettings(weights=str(tmp_path)).validated()
    with pytest.raises(FileNotFoundError, match="nlf_l_multi.torchscript"):
        s.weight_file("nlf_l_multi.torchscript", "pose_backend=nlf")
    with pytest.raises(ConfigError, match="MTVCRAFT_WEIGHTS"):
        PipelineSettings().weight_file("nlf_l_multi.torchscript", "pose_backend=nlf")
