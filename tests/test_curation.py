"""The first slice of the asset graph, end to end on the generated sample plus every kind of bad input:
raw_videos -> shots -> poses -> subclips -> rejects, on Ray, over Lance tables."""

import shutil
from pathlib import Path

import media
import numpy as np
import pytest

from pipeline.core import tables
from pipeline.core.config import PipelineSettings
from pipeline.curation import ingest, motion_video, scoring
from pipeline.curation import stages as curation
from pipeline.curation.pose import mediapipe_available
from pipeline.synthetic import make_sample

BAD_FILES = {
    "empty.mp4": (media.write_zero_byte, "empty_file"),
    "notes.mp4": (media.write_not_a_video, "not_a_video"),
    "broken.mp4": (media.write_corrupt_video, "corrupt"),
    "frameless.mp4": (media.write_no_frames_video, "no_frames"),
    "weird_codec.mp4": (media.write_unsupported_codec_video, "unsupported_codec"),
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample"), seed=0, preset="demo")


@pytest.fixture(scope="module")
def curated(sample, tmp_path_factory):
    """The sample's videos plus the bad files in one input folder, curated once; returns (settings, manifest, results)."""
    inputs = tmp_path_factory.mktemp("inputs")
    for video in sample.videos:
        shutil.copy(sample.video_path(video), inputs)
        shutil.copy(sample.sidecar_path(video), inputs)
    for name, (write, _) in BAD_FILES.items():
        write(inputs / name)
    shutil.copy(sample.video_path(sample.videos[0]), inputs / "zz_copy_of_first.mp4")  # sorts last: the original is kept
    settings = PipelineSettings(data_root=str(tmp_path_factory.mktemp("data")), raw_videos=str(inputs)).validated()
    results = {
        "raw_videos": ingest.ingest_raw_videos(settings),
        "shots": curation.segment_shots(settings),
        "poses": curation.estimate_poses(settings),
        "subclips": curation.extract_subclips(settings),
        "clip_scores": scoring.score_clips(settings, run_id="first"),
        "motion_video": motion_video.build_motion_video(settings, "first"),
        "motion_stats": motion_video.build_motion_stats(settings),
    }
    return settings, sample, results


def rejects_of(settings, stage):
    return tables.read(settings.table_uri("rejects"), filter=f"stage = '{stage}'").to_pylist()


def test_every_bad_input_is_rejected_with_its_reason_and_good_files_go_on(curated):
    settings, sample, results = curated
    by_file = {Path(r["uri"]).name: r["reason"] for r in rejects_of(settings, "raw_videos")}
    for name, (_, reason) in BAD_FILES.items():
        assert by_file[name] == reason, (name, by_file.get(name))
    # identical bytes under two names: one row, the other path rejected as a duplicate
    assert by_file["zz_copy_of_first.mp4"] == "duplicate"
    assert results["raw_videos"].num_rows == len(sample.videos)  # the duplicate is one row
    # every input file is accounted for: kept or rejected
    assert results["raw_videos"].num_rows + len(by_file) == results["raw_videos"].extra["files_seen"]


def test_raw_video_rows_match_the_files(curated):
    settings, sample, _ = curated
    from pipeline.core.video_io import content_id

    rows = {r["id"]: r for r in tables.read(settings.table_uri("raw_videos")).to_pylist()}
    for video in sample.videos:
        row = rows[content_id(sample.video_path(video))]
        assert row["num_frames"] == video.num_frames
        assert (row["width"], row["height"]) == (video.width, video.height)
        assert row["codec"] == "h264" and abs(row["fps"] - sample.fps) < 1e-3
        assert len(row["id"]) >= 16


def test_shots_found_within_one_frame_of_the_generated_cuts(curated):
    settings, sample, _ = curated
    shots = tables.read(settings.table_uri("shots")).to_pylist()
    for video in sample.videos:
        starts = sorted(s["start_frame"] for s in shots if Path(s["uri"]).name == Path(video.file).name)
        assert len(starts) == len(video.cuts) + 1, (video.name, starts, video.cuts)
        assert np.abs(np.array(starts[1:]) - np.array(video.cuts)).max(initial=0) <= 1, (video.name, starts, video.cuts)


def test_poses_cover_every_frame_with_the_right_person_count(curated):
    settings, sample, results = curated
    assert results["poses"].num_rows == sum(v.num_frames for v in sample.videos)
    video = next(v for v in sample.videos if any(s.kind == "two_people" for s in v.shots))
    shot = next(s for s in video.shots if s.kind == "two_people")
    video_id = tables.read(settings.table_uri("raw_videos"), filter=f"uri LIKE '%{Path(video.file).name}'")["id"][0].as_py()
    rows = tables.read(settings.table_uri("poses"), filter=f"video_id = '{video_id}'")
    people = dict(zip(rows["frame"].to_pylist(), rows["num_people"].to_pylist()))
    assert all(people[f] == 2 for f in range(shot.start_frame, shot.end_frame))


def test_every_special_shot_is_rejected_at_the_right_stage_for_the_right_reason(curated):
    settings, sample, _ = curated
    rejected = tables.read(settings.table_uri("rejects")).to_pylist()
    for video in sample.videos:
        for shot in video.shots:
            fate = shot.expected_reject
            hits = {(r["stage"], r["reason"]) for r in rejected if Path(r["uri"]).name == Path(video.file).name
                    and shot.start_frame <= r["start_frame"] < shot.end_frame}
            if fate:
                assert (fate["stage"], fate["reason"]) in hits, (video.name, shot.kind, hits)
            elif shot.kind in ("normal", "gap"):
                # a normal shot is only ever dropped by the uncertainty quantile, never for quality
                # (a gap shot also loses its person-free frames)
                allowed = {"pose_uncertainty"} | ({"no_person"} if shot.kind == "gap" else set())
                assert {reason for _, reason in hits} <= allowed, (video.name, shot.kind, hits)


def test_funnel_and_curated_table(curated):
    settings, _, results = curated
    funnel = results["clip_scores"].extra["funnel"]
    assert funnel["clips in"] == results["subclips"].num_rows
    assert list(funnel.values()) == sorted(funnel.values(), reverse=True)
    assert results["motion_video"].num_rows == funnel["after ocr"] == tables.count(settings.table_uri("clip_scores"), "kept = true")
    assert results["motion_stats"].extra["num_frames"] == results["motion_video"].extra["frames"]
    curated_rows = tables.read(settings.table_uri("motion_video"), columns=["id", "curation_run"]).to_pylist()
    assert {r["curation_run"] for r in curated_rows} == {"first"}


def test_recuration_with_a_new_threshold_is_a_new_version_without_rescoring(curated):
    settings, _, results = curated
    stricter = settings.with_overrides(min_blur=350.0)
    again = scoring.score_clips(stricter, run_id="second")
    assert again.extra["scored_now"] == 0  # scores cached by clip id + backends
    assert again.extra["funnel"]["after blur"] < results["clip_scores"].extra["funnel"]["after blur"]
    second = motion_video.build_motion_video(stricter, "second")
    assert second.version > results["motion_video"].version
    uri = settings.table_uri("motion_video")
    assert tables.read(uri, version=results["motion_video"].version).num_rows == results["motion_video"].num_rows
    assert tables.read(uri).num_rows == second.num_rows < results["motion_video"].num_rows
    # the older version stays selectable for statistics / training
    old = motion_video.build_motion_stats(settings.with_overrides(motion_video_version=results["motion_video"].version))
    assert old.extra["num_frames"] == results["motion_video"].extra["frames"]
    # back to the first thresholds: the rejects table is re-decided, not appended to
    scoring.score_clips(settings, run_id="third")
    assert tables.count(settings.table_uri("rejects"), "stage = 'clip_scores'") == results["clip_scores"].rejected


def test_subclip_rules_on_the_generated_special_shots(curated):
    settings, sample, _ = curated
    rejected = {(Path(r["uri"]).name, r["start_frame"], r["end_frame"]): r["reason"] for r in rejects_of(settings, "subclips")}
    clips = tables.read(settings.table_uri("subclips"), columns=["uri", "start_frame", "end_frame", "num_frames"]).to_pylist()
    assert all(c["num_frames"] >= 33 for c in clips)
    for video in sample.videos:
        name = Path(video.file).name
        for shot in video.shots:
            fate = shot.expected_reject
            if fate and fate["stage"] == "subclips":
                reasons = {r for (f, s, e), r in rejected.items() if f == name and shot.start_frame <= s < shot.end_frame}
                assert fate["reason"] in reasons, (name, shot, reasons)
            if shot.kind == "gap":  # a no-person gap splits the shot into two sub-clips
                inside = [c for c in clips if Path(c["uri"]).name == name and shot.start_frame <= c["start_frame"] < shot.end_frame]
                assert len(inside) == 2


def test_subclip_joints_are_fk_of_the_ground_truth(curated):
    settings, sample, _ = curated
    from pipeline.curation.subclips import neutral_joints
    from pipeline.synthetic.sample import read_sidecar

    table = tables.read(settings.table_uri("subclips"), filter="num_frames >= 33").slice(0, 3)
    for row, joints in zip(table.to_pylist(), tables.sequence_as_arrays(table, "joints", (24, 3))):
        side = read_sidecar(Path(row["uri"]).with_name(Path(row["uri"]).stem + ".smpl.npz"))
        s = slice(row["start_frame"], row["end_frame"])
        expected = neutral_joints(side["pose"][s, 0], side["transl"][s, 0])
        np.testing.assert_allclose(joints, expected, atol=1e-5)


def test_rematerializing_keeps_row_counts(curated):
    settings, _, results = curated
    before = {name: tables.count(settings.table_uri(name)) for name in ("raw_videos", "shots", "poses", "subclips", "rejects")}
    ingest.ingest_raw_videos(settings)
    curation.segment_shots(settings, recompute=True)
    curation.estimate_poses(settings, recompute=True)
    curation.extract_subclips(settings)
    after = {name: tables.count(settings.table_uri(name)) for name in before}
    assert after == before
    assert tables.version(settings.table_uri("poses")) > results["poses"].version


def test_nlf_backend_without_weights_is_one_clear_error(curated, tmp_path):
    settings, _, _ = curated
    nlf = settings.with_overrides(pose_backend="nlf", weights=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nlf_l_multi.torchscript"):
        curation.estimate_poses(nlf, recompute=True)


def test_pose_backend_choice_without_sidecar(curated, tmp_path):
    """auto falls back to the embedded MediaPipe backend; an explicit backend that cannot handle a video
    rejects that video with the reason, and the stage completes."""
    settings, sample, _ = curated
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(sample.video_path(sample.videos[0]), folder)
    own = PipelineSettings(data_root=str(tmp_path / "data"), raw_videos=str(folder), pose_backend="annotations").validated()
    ingest.ingest_raw_videos(own)
    curation.segment_shots(own)
    result = curation.estimate_poses(own)
    reject = rejects_of(own, "poses")[0]
    assert result.rejected == 1 and reject["reason"] == "pose_failed" and ".smpl.npz" in reject["detail"]
    if mediapipe_available():
        auto = own.with_overrides(pose_backend="auto")
        result = curation.estimate_poses(auto)
        assert result.rejected == 0 and result.num_rows == sample.videos[0].num_frames
        backends = set(tables.read(own.table_uri("poses"), columns=["backend"])["backend"].to_pylist())
        assert len(backends) == 1 and backends.pop().startswith("mediapipe")
        assert rejects_of(own, "poses") == []  # the earlier rejection was re-decided


def test_missing_input_folder_is_one_clear_error(tmp_path):
    from pipeline.core.config import ConfigError

    with pytest.raises(ConfigError, match="MTVCRAFT_RAW_VIDEOS"):
        PipelineSettings(data_root=str(tmp_path), raw_videos=str(tmp_path / "absent")).validated()


def test_tokenizer_trains_on_the_curated_table_and_tokenizes_every_clip(curated, tmp_path):
    settings, _, results = curated
    from pipeline.tokenizer import stage as tokenizer_stage

    quick = settings.with_overrides(train_backend="local", tokenizer_steps=12, tokenizer_batch_size=4)
    trained = tokenizer_stage.train_tokenizer_stage(quick)
    assert Path(trained.extra["checkpoint"]).is_file()
    assert np.isfinite(trained.extra["heldout_mpjpe_mm"]) and 0 <= trained.extra["active_code_share"] <= 1
    assert trained.preview_markdown.count("data:image/png;base64,") >= 2  # loss curve + codebook plots
    # tokenizer_eval's numbers for the same checkpoint: its curated held-out MPJPE is the training's held-out MPJPE
    held = trained.extra["evaluation"]["curated held-out"]
    assert held["mpjpe_mm"] == pytest.approx(trained.extra["heldout_mpjpe_mm"], abs=0.01)
    assert held["pa_mpjpe_mm"] <= held["mpjpe_mm"] and 0 < held["active_codes"] <= 1 and held["perplexity"] >= 1
    assert trained.extra["sources"] == {"curated": 1.0} and "mocap held-out" not in trained.extra["evaluation"]
    tokens = tokenizer_stage.tokenize_curated(quick)
    # every clip of the latest motion_video version (an earlier test may have re-curated it)
    assert tokens.num_rows == tables.count(settings.table_uri("motion_video")), tokens.extra["failures"]
    from models.tokenizer import TokenizerConfig

    codebook = TokenizerConfig.tiny().codebook_size
    for row in tables.read(settings.table_uri("motion_tokens")).to_pylist():
        assert row["latent_frames"] == 1 + (row["num_frames_used"] - 1) // 4
        assert len(row["token_ids"]) == row["latent_frames"] * 24
        assert 0 <= min(row["token_ids"]) and max(row["token_ids"]) < codebook
        assert np.isfinite(row["mpjpe_mm"])

    # MV-DiT on the same tables: a couple of steps, then the held-out animation and its side-by-side
    from pipeline.animation.loading import preview_sample
    from pipeline.core.video_io import probe_video
    from pipeline.evaluation import held_out
    from pipeline.mvdit import stage as mvdit_stage

    mv = quick.with_overrides(mvdit_steps=2)
    trained = mvdit_stage.train_mvdit_stage(mv, preview=preview_sample)
    assert Path(trained.extra["checkpoint"]).is_file()
    animation = held_out.animate_held_out(mv)
    video = probe_video(animation.extra["video"])
    assert (video.num_frames, video.height, video.width) == (mvdit_stage.DEMO_FRAMES, *mvdit_stage.BUCKET)
    assert probe_video(animation.extra["side_by_side"]).width == 3 * mvdit_stage.BUCKET[1]
    assert np.isfinite(animation.extra["psnr_generated"]) and np.isfinite(animation.extra["psnr_copy_reference"])

    # The Table 2 runner on the same tables: two rows, a few steps, one generated benchmark video.
    from pipeline.core.checkpoints import load_checkpoint
    from pipeline.evaluation.ablations import AblationConfig, run_ablations
    from pipeline.evaluation.protocol import EvalProtocol

    config = AblationConfig(rows=("default", "w/o quantize", "w/o PE"), tokenizer_steps=3, mvdit_steps=2,
                            protocol=EvalProtocol.tiny(max_videos=1, num_inference_steps=2))
    results = run_ablations(mv, config, log=lambda m: None)
    assert list(results) == ["default", "w/o quantize", "w/o PE"]
    assert all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in results.values())
    configs = {row: load_checkpoint(r["checkpoint"]).tokenizer_config for row, r in results.items()}
    assert [c["mvdit"]["motion_pe"] for c in configs.values()] == ["4d", "4d", "none"]
    tokenizer_of = {row: load_checkpoint(c["tokenizer_checkpoint"]).tokenizer_config for row, c in configs.items()}
    assert [t["quantize"] for t in tokenizer_of.values()] == [True, False, True]
    assert configs["default"]["tokenizer_checkpoint"] == configs["w/o PE"]["tokenizer_checkpoint"]  # trained once
    table = (mv.root / "ablations" / "table2.md").read_text()
    assert "| w/o quantize |" in table and "18.76" in table and "317.21" in table  # the paper's rows, quoted

    # The motion-CFG sweep (App. H) on the stage's checkpoint: same noise per scale, so scale 1 and 0 differ
    # only through guidance; the plot is written.
    from pipeline.evaluation.cfg_sweep import sweep

    swept = sweep(mv, (0.0, 1.0), protocol=EvalProtocol.tiny(max_videos=1, num_inference_steps=2),
                  out_dir=tmp_path / "cfg", log=lambda m: None)
    assert sorted(swept) == [0.0, 1.0] and all(np.isfinite(v["psnr"]) for v in swept.values())
    assert (tmp_path / "cfg" / "cfg_sweep.png").stat().st_size > 1000


def test_tokenizer_stage_with_mocap_set_trains_on_both_sources(curated, tmp_path):
    """MTVCRAFT_MOCAP set: mocap_motions fills its table, and the tokenizer (tokenizer_sources=auto) mixes both sources."""
    from test_mocap import world_motion, write_corpus

    from pipeline.core.checkpoints import load_checkpoint
    from pipeline.motion.stage import build_mocap_motions
    from pipeline.tokenizer import stage as tokenizer_stage

    settings, _, _ = curated
    write_corpus(tmp_path, {f"cmu_daz_salsa_{p}_01": world_motion(90, i) * 1000 for i, p in enumerate((60, 61))},
                 corpus="cmu_test")
    quick = settings.with_overrides(train_backend="local", tokenizer_steps=4, tokenizer_batch_size=4, mocap=str(tmp_path))
    assert build_mocap_motions(quick).num_rows == 2
    trained = tokenizer_stage.train_tokenizer_stage(quick)
    assert trained.extra["sources"] == {"curated": 0.5, "mocap": 0.5}
    assert load_checkpoint(trained.extra["checkpoint"]).train_config["sources"] == {"curated": 0.5, "mocap": 0.5}
    assert trained.extra["evaluation"]["mocap held-out"]["windows"] == 1  # subject 61's 90 frames: one 49-frame piece
    curated_only = tokenizer_stage.tokenizer_dir(quick.with_overrides(mocap="", tokenizer_sources="curated"))
    assert tokenizer_stage.tokenizer_dir(quick) != curated_only and "-m" in tokenizer_stage.tokenizer_dir(quick).name
    # mocap alone: every curated clip is held out
    alone = tokenizer_stage.train_tokenizer_stage(quick.with_overrides(tokenizer_sources="mocap"))
    assert alone.extra["sources"] == {"mocap": 1.0}
    assert alone.extra["evaluation"]["curated held-out"]["clips"] == tables.count(settings.table_uri("motion_video"))


def test_table_checks_pass_on_the_curated_tables_and_catch_breakage(curated, tmp_path):
    settings, _, _ = curated
    from pipeline.curation import table_checks

    for outcome in (table_checks.unique_ids(settings, "raw_videos"), table_checks.unique_ids(settings, "subclips"),
                    table_checks.finite_joints(settings, "subclips"), table_checks.finite_joints(settings, "motion_video"),
                    table_checks.shots_cover_videos(settings), table_checks.every_video_accounted_for(settings)):
        assert outcome.passed, outcome
    # a copy of the sub-clips with one clip's joints set to NaN fails the joint check
    import lance
    import pyarrow as pa

    broken = PipelineSettings(data_root=str(tmp_path)).validated()
    clips = tables.read(settings.table_uri("subclips"))
    arrays = tables.sequence_as_arrays(clips, "joints", (24, 3))
    arrays[0] = arrays[0].copy()
    arrays[0][3, 5, 1] = np.nan
    clips = clips.set_column(clips.schema.get_field_index("joints"), "joints", tables.sequence_list(arrays, 72))
    lance.write_dataset(clips, broken.table_uri("subclips"))
    assert not table_checks.finite_joints(broken, "subclips").passed
    lance.write_dataset(pa.concat_tables([clips.slice(0, 2), clips.slice(0, 1)]), broken.table_uri("subclips"), mode="overwrite")
    assert not table_checks.unique_ids(broken, "subclips").passed
