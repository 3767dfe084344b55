"""Settings: environment defaults and one clear error per bad value, naming the setting."""

import pytest

from pipeline.core.config import ConfigError, PipelineSettings


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
    ({"pose_frame_step": 0}, "pose_frame_step"),
    ({"pose_frame_step": -2}, "pose_frame_step"),
    ({"pose_frame_step": 1.5}, "pose_frame_step"),
    ({"pose_frame_step": "2"}, "pose_frame_step"),
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


def test_pose_frame_step_defaults_to_every_frame_and_accepts_larger_steps():
    assert PipelineSettings().validated().pose_frame_step == 1
    assert PipelineSettings().with_overrides(pose_frame_step=3).pose_frame_step == 3


def test_mvdit_model_settings_choose_a_full_model_by_configuration(tmp_path):
    from pipeline.mvdit import stage as mvdit_stage

    tiny = PipelineSettings(data_root=str(tmp_path)).validated()
    assert mvdit_stage.mvdit_config(tiny).model == "tiny"
    from pipeline.evaluation.held_out import animation_size

    assert animation_size(tiny) == (33, 48, 64)
    with pytest.raises(ConfigError, match="mvdit_model"):
        tiny.with_overrides(mvdit_model="cogvideox_2b")
    with pytest.raises(ConfigError, match="mvdit_strategy"):
        tiny.with_overrides(mvdit_strategy="zero3")
    full = tiny.with_overrides(mvdit_model="cogvideox_5b", mvdit_steps=30000, train_workers=8,
                               mvdit_strategy="fsdp")
    with pytest.raises(ConfigError, match="needs mvdit_backbone"):
        mvdit_stage.mvdit_config(full)
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ConfigError, match="needs mvdit_vae"):
        mvdit_stage.mvdit_config(full.with_overrides(mvdit_backbone=str(tmp_path / "transformer")))
    with pytest.raises(FileNotFoundError, match="mvdit_vae"):
        mvdit_stage.mvdit_config(full.with_overrides(mvdit_backbone=str(tmp_path / "transformer"), mvdit_vae="/nowhere"))
    (tmp_path / "vae").mkdir()
    config = mvdit_stage.mvdit_config(full.with_overrides(mvdit_backbone=str(tmp_path / "transformer"),
                                                           mvdit_vae=str(tmp_path / "vae")))
    # App. A.2 hyper-parameters from the training config's defaults; the run shape from the settings.
    assert (config.model, config.steps, config.num_workers, config.strategy) == ("cogvideox_5b", 30000, 8, "fsdp")
    assert (config.lr, config.warmup_steps, config.batch_size, config.betas) == (2e-5, 300, 4, (0.9, 0.99))
    assert config.backbone.endswith("transformer") and config.vae.endswith("vae")
    # The 18B's reused c_m∅ (Sec. 3.3): only for the Wan model, and the checkpoint must exist.
    folders = dict(mvdit_backbone=str(tmp_path / "transformer"), mvdit_vae=str(tmp_path / "vae"))
    with pytest.raises(ConfigError, match="mvdit_unconditional_from is for mvdit_model = 'wan_i2v_14b'"):
        mvdit_stage.mvdit_config(full.with_overrides(mvdit_unconditional_from="/x.safetensors", **folders))
    wan = full.with_overrides(mvdit_model="wan_i2v_14b", **folders)
    with pytest.raises(FileNotFoundError, match="mvdit_unconditional_from = '/nowhere.safetensors' is not a file"):
        mvdit_stage.mvdit_config(wan.with_overrides(mvdit_unconditional_from="/nowhere.safetensors"))
    (tmp_path / "6b.safetensors").write_bytes(b"")
    reused = mvdit_stage.mvdit_config(wan.with_overrides(mvdit_unconditional_from=str(tmp_path / "6b.safetensors")))
    assert reused.unconditional_from.endswith("6b.safetensors") and config.unconditional_from == ""
    # Each full model trains in the configuration the memory table checks fits 80 GiB (global batch 32 on 8 GPUs).
    from pipeline.mvdit.memory import PAPER_PLANS

    plans = {plan.setting.model: plan for plan in PAPER_PLANS}
    for cfg, name in ((config, "6b"), (reused, "18b")):
        plan = plans[name]
        assert (cfg.batch_size, cfg.grad_accum_steps, cfg.reshard_after_forward) == \
            (plan.setting.batch, plan.grad_accum, plan.reshard_after_forward)
        assert cfg.reduce_every_micro_batch  # the table counts sharded gradients between micro-batches
