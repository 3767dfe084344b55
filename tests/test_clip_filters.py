"""App. B filter rules and the motion statistics, on hand-made values with known answers."""

import numpy as np
import pytest

from pipeline.curation.filters import Thresholds, clip_pose_uncertainty, first_failure, funnel, uncertainty_cut
from pipeline.curation.motion_video import MotionStats, compute_motion_stats


def good(**changes):
    return {"pose_uncertainty": 0.02, "aesthetic": 6.0, "flow": 3.0, "blur": 300.0, "text_ratio": 0.0, **changes}


def test_clip_uncertainty_is_mean_over_frames_of_max_joint():
    u = np.zeros((3, 24))
    u[0, 5], u[1, 7], u[2, 0] = 0.3, 0.6, 0.9
    assert clip_pose_uncertainty(u) == pytest.approx(0.6)


def test_uncertainty_cut_drops_top_ten_percent():
    values = np.arange(1, 21, dtype=float)  # 20 clips
    cut = uncertainty_cut(values, 0.10)
    assert (values > cut).sum() == 2  # the two most uncertain
    assert uncertainty_cut(np.full(10, 0.0), 0.10) == 0.0  # ties are kept: nothing dropped
    assert (np.full(10, 0.0) > uncertainty_cut(np.full(10, 0.0), 0.10)).sum() == 0
    assert uncertainty_cut(values, 0.0) == float("inf")


def test_first_failure_follows_the_paper_order_and_thresholds():
    t = Thresholds(min_aesthetic=5.0, min_flow=2.0, min_blur=100.0, max_text_ratio=0.05, flow_region="frame")  # the paper's
    assert first_failure(good(), t, cut=0.05) is None
    assert first_failure(good(pose_uncertainty=0.1, blur=1.0), t, cut=0.05) == "pose_uncertainty"
    assert first_failure(good(aesthetic=4.99), t, cut=0.05) == "aesthetic"
    assert first_failure(good(flow=1.99), t, cut=0.05) == "flow"
    assert first_failure(good(blur=99.9, text_ratio=0.5), t, cut=0.05) == "blur"
    assert first_failure(good(text_ratio=0.051), t, cut=0.05) == "ocr"
    assert first_failure(good(text_ratio=0.05, flow=2.0, blur=100.0, aesthetic=5.0), t, cut=0.05) is None  # bounds keep
    assert first_failure(good(flow=float("nan")), t, cut=0.05) == "flow"  # NaN never passes


def test_threshold_defaults_come_from_the_one_table_of_keep_rules():
    from pipeline.curation.scores.base import DEFAULT_BACKENDS, DEFAULT_THRESHOLDS

    t = Thresholds()
    assert (t.min_aesthetic, t.min_flow, t.min_blur, t.max_text_ratio) == tuple(
        DEFAULT_THRESHOLDS[m][DEFAULT_BACKENDS[m]].value for m in ("aesthetic", "flow", "blur", "ocr"))
    paper = Thresholds.for_backends({"aesthetic": "laion-clip-vit-l14", "flow": "raft", "ocr": "craft"}, min_blur=50.0)
    assert paper.min_aesthetic == DEFAULT_THRESHOLDS["aesthetic"]["laion-clip-vit-l14"].value == 5.0
    assert paper.min_blur == 50.0 and paper.max_text_ratio == 0.05
    with pytest.raises(ValueError, match="min_flw"):
        Thresholds.for_backends({}, min_flw=1.0)


def test_flow_filter_reads_the_subject_or_the_whole_frame():
    """A small person moving in a static shot: the subject moves, the frame hardly does."""
    clip = good(flow=0.1, subject_flow=1.5)
    assert first_failure(clip, Thresholds(min_flow=0.4), cut=0.05) is None  # subject (default)
    assert first_failure(clip, Thresholds(min_flow=0.4, flow_region="frame"), cut=0.05) == "flow"  # the paper's
    assert first_failure(good(flow=3.0, subject_flow=float("nan")), Thresholds(), cut=0.05) == "flow"
    with pytest.raises(ValueError, match="flow_region"):
        Thresholds(flow_region="person").validated()


def test_funnel_counts_what_is_left_after_each_filter():
    steps = funnel([None, "flow", "blur", None, "pose_uncertainty", "flow"])
    assert steps == [("clips in", 6), ("after pose_uncertainty", 5), ("after aesthetic", 5), ("after flow", 3),
                     ("after blur", 2), ("after ocr", 2)]


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="min_blur"):
        Thresholds(min_blur=-1).validated()
    with pytest.raises(ValueError, match="uncertainty_drop"):
        Thresholds(uncertainty_drop=1.5).validated()


def test_motion_stats_match_numpy_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(t, 24, 3)).astype(np.float32) for t in (40, 33, 57)]
    stats = compute_motion_stats(clips, version=3)
    allframes = np.concatenate(clips)
    np.testing.assert_allclose(stats.mean, allframes.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.std, allframes.std(0), atol=1e-6)
    np.testing.assert_allclose(stats.axis_std, allframes.reshape(-1, 3).std(0), atol=1e-6)
    assert stats.num_frames == 130 and stats.num_clips == 3
    back = MotionStats.load(stats.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(back.mean_joints, stats.mean)
    assert back.motion_video_version == 3
    with pytest.raises(ValueError, match="empty"):
        compute_motion_stats([], version=1)
