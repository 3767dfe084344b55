"""pipeline.curation.shots: both detectors find generated hard cuts; shot lists cover the video."""

import random

import media
import numpy as np
import pytest
import torch

from pipeline.core.video_io import VideoRejected
from pipeline.curation.shots import (
    SceneDetectShots,
    Shot,
    ShotDetector,
    TransNetV2Shots,
    _transition_cuts,
    detection_size,
    make_shot_detector,
    shots_from_cuts,
)

CUTS = [17, 34]
NUM_FRAMES = 50  # one 100-frame TransNetV2 window (25 frames of padding each side)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A 320x240 video with cuts at CUTS, and a single moving shot of the same length."""
    folder = tmp_path_factory.mktemp("shots")
    media.write_cut_video(folder / "cuts.mp4", CUTS, NUM_FRAMES, seed=1)
    media.write_cut_video(folder / "single.mp4", [], NUM_FRAMES, seed=2)
    return folder


@pytest.fixture(scope="module", params=["scenedetect", "transnetv2"])
def detector(request):
    return make_shot_detector(request.param)


def assert_covers(shots, num_frames):
    assert shots[0].start_frame == 0 and shots[-1].end_frame == num_frames
    assert all(a.end_frame == b.start_frame for a, b in zip(shots[:-1], shots[1:]))


def test_detector_finds_generated_cuts(detector, videos):
    shots = detector.detect(str(videos / "cuts.mp4"))
    assert_covers(shots, NUM_FRAMES)
    found = [shot.start_frame for shot in shots[1:]]
    assert len(found) == len(CUTS)
    assert all(abs(f - c) <= 1 for f, c in zip(found, CUTS)), found


def test_detector_reports_no_cut_in_a_moving_single_shot(detector, videos):
    assert detector.detect(str(videos / "single.mp4")) == [Shot(0, NUM_FRAMES)]


def test_detector_keeps_ffmpeg_quiet(detector, videos, tmp_path, capfd):
    """PySceneDetect's PyAV backend turns FFmpeg's logging on for the process unless told not to."""
    detector.detect(str(videos / "single.mp4"))
    capfd.readouterr()
    media.write_video(tmp_path / "after.mp4", media.make_cut_frames([], 4, size=(32, 32)))
    assert "libx264" not in capfd.readouterr().err


def test_detector_interface_and_bad_input(detector, tmp_path):
    assert isinstance(detector, ShotDetector)
    assert detector.name in detector.version  # the version names the library and settings
    media.write_not_a_video(tmp_path / "text.mp4")
    with pytest.raises(VideoRejected) as caught:
        detector.detect(str(tmp_path / "text.mp4"))
    assert caught.value.reason == "not_a_video"


def test_factory_rejects_unknown_name_and_options():
    with pytest.raises(ValueError, match="shot_detector") as caught:
        make_shot_detector("autoshot")
    assert "scenedetect" in str(caught.value) and "transnetv2" in str(caught.value)
    with pytest.raises(ValueError, match="shot_detector='scenedetect'"):
        make_shot_detector("scenedetect", window=3)
    detector = make_shot_detector("scenedetect", threshold=40.0, min_scene_len=5)
    assert isinstance(detector, SceneDetectShots) and "threshold=40.0" in detector.version


def test_shots_from_cuts_covers_all_frames():
    assert shots_from_cuts([60, 25, 25, 0, 90, 120], 90) == [Shot(0, 25), Shot(25, 60), Shot(60, 90)]
    assert shots_from_cuts([], 7) == [Shot(0, 7)]
    with pytest.raises(ValueError):
        Shot(5, 5)
    with pytest.raises(ValueError):
        shots_from_cuts([3], 0)


def test_transition_runs_split_after_their_middle():
    flags = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0, 1], bool)  # hard cut, 3-frame dissolve, cut at the end
    assert _transition_cuts(flags) == [3, 7, 10]


def test_transnetv2_leaves_global_torch_state_alone():
    """TransNetV2's constructor seeds RNGs and turns on deterministic algorithms globally."""
    torch.manual_seed(123)
    random.seed(5)
    expected = torch.rand(3), random.random()
    torch.manual_seed(123)
    random.seed(5)
    before = torch.are_deterministic_algorithms_enabled()
    TransNetV2Shots()._load()
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_scenedetect_scores_frames_at_its_auto_downscale_size_with_either_decode(videos):
    """PySceneDetect downscales the longer side to 256 px; the exact (bicubic, deblocked) decode finds the same cuts."""
    assert detection_size(1024, 1024) == (256, 256)
    assert detection_size(604, 1080) == (143, 256) and detection_size(1920, 1080) == (256, 144)
    assert detection_size(320, 240) == (256, 192) and detection_size(200, 100) == (200, 100)  # smaller: as they are
    exact = SceneDetectShots(fast_decode=False)
    assert exact.version != SceneDetectShots().version  # cached shots say how frames were decoded
    assert exact.detect(str(videos / "cuts.mp4")) == SceneDetectShots().detect(str(videos / "cuts.mp4"))
