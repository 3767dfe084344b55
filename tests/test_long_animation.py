"""Overlapping windows for long motions (`pipeline.animation.long_motion`): coverage, cross-fade, reference chaining."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.animation.long_motion import animate_in_windows, crossfade, longest_pass, window_starts


@pytest.mark.parametrize("window,overlap", [(33, 9), (49, 9), (49, 1), (81, 40)])
def test_windows_cover_every_frame_at_full_length(window, overlap):
    for frames in range(33, 400, 7):
        starts = window_starts(frames, window, overlap)
        if frames <= window:
            assert starts == [0]
            continue
        assert starts[0] == 0 and starts[-1] + window == frames  # first and last frame covered, no window cut short
        steps = np.diff(starts)
        assert np.all(steps[:-1] == window - overlap)  # the released sampler's stride
        assert np.all(steps >= 1) and np.all(steps <= window - overlap)  # every pair shares >= overlap frames
        assert len(starts) == 1 + -(-(frames - window) // (window - overlap))  # the fewest windows that do it


def test_bad_windows_are_errors():
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        window_starts(100, 40, 9)
    with pytest.raises(ValueError, match="at least 33"):
        window_starts(100, 25, 9)
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 49, 0)
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 49, 49)


def test_crossfade_weights_rise_linearly():
    old = np.full((3, 2, 2, 3), 200, np.uint8)
    new = np.full((3, 2, 2, 3), 50, np.uint8)
    out = crossfade(old, new)  # 3 shared frames: new weight 1/4, 2/4, 3/4
    assert out.shape == (3, 2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0, 0], [162, 125, 88])  # 200 - 150 * k / 4, rounded
    assert crossfade(old[:0], new[:0]).shape == (0, 2, 2, 3)
    with pytest.raises(ValueError, match="one shape"):
        crossfade(old, new[:2])


class RecordingPipe:
    """Stands in for a sampling pipeline: frame i of a pass is the reference plus how far the joints moved since
    the pass's first frame (the test's joints carry their frame index in x)."""

    latent_map = SimpleNamespace(temporal_factor=4)

    def __init__(self):
        self.calls = []

    def __call__(self, reference, joints, num_frames, context=None, **call):
        self.calls.append((reference.copy(), joints.copy(), num_frames, call, context))
        offsets = (joints[:num_frames, 0, 0] - joints[0, 0, 0]).astype(np.int64)
        return np.clip(reference[None].astype(np.int64) + offsets[:, None, None, None], 0, 255).astype(np.uint8)


def test_each_window_starts_from_the_frame_already_generated_there():
    frames = 100
    joints = np.zeros((frames, 24, 3), np.float32)
    joints[:, :, 0] = np.arange(frames)[:, None]
    reference = np.full((4, 4, 3), 10, np.uint8)
    pipe, seen = RecordingPipe(), []
    video = animate_in_windows(pipe, reference, joints, window=49, overlap=9, log=seen.append, height=4)
    starts = [c[1][0, 0, 0] for c in pipe.calls]
    assert starts == [0, 40, 51] and len(seen) == 3
    assert video.shape == (frames, 4, 4, 3)
    np.testing.assert_array_equal(pipe.calls[0][0], reference)
    assert pipe.calls[0][4] is None  # nothing to hold in the first window
    contexts = []
    for (ref, window_joints, num_frames, call, context), start in zip(pipe.calls[1:], starts[1:]):
        assert num_frames == 49 and len(window_joints) == 49 and call == {"height": 4}
        assert ref[0, 0, 0] == 10 + start  # the frame generated at the window's start, not the first reference
        contexts.append(context[:, 0, 0, 0])
    # held: the 9 shared frames (1 + 4 * 2) of window 2; of the 38 window 3 shares, the longest 1 + 4j (37)
    np.testing.assert_array_equal(contexts[0], 10 + np.arange(40, 49))
    np.testing.assert_array_equal(contexts[1], 10 + np.arange(51, 88))
    # every pass continues the same ramp, so the cross-fades are seamless: frame t = reference + t
    np.testing.assert_array_equal(video[:, 0, 0, 0], 10 + np.minimum(np.arange(frames), 245))


def test_a_short_motion_is_one_pass_over_its_longest_usable_frames():
    pipe = RecordingPipe()
    joints = np.zeros((45, 24, 3), np.float32)
    video = animate_in_windows(pipe, np.zeros((4, 4, 3), np.uint8), joints, window=49)
    assert len(pipe.calls) == 1 and pipe.calls[0][2] == 41 and len(video) == 41
    with pytest.raises(ValueError, match="at least 33"):
        animate_in_windows(pipe, np.zeros((4, 4, 3), np.uint8), joints[:20], window=49)


def test_longest_pass_is_what_the_unconditional_tokens_cover():
    def pipe(rows):
        uncond = None if rows is None else torch.zeros(rows, 8)
        model = SimpleNamespace(unconditional_motion_token=uncond, config=SimpleNamespace(num_joints=24))
        return SimpleNamespace(model=model, latent_map=SimpleNamespace(temporal_factor=4))

    assert longest_pass(pipe(13 * 24)) == 49  # the released 7B's (312, 3072) token: 49 frames (paper-facts.md)
    assert longest_pass(pipe(33 * 24)) == 129  # the paper's longest training clip
    assert longest_pass(pipe(11 * 24)) == 41  # 1 + 4 * 10 = 41 frames, already 1 + 8k
    assert longest_pass(pipe(12 * 24)) == 41  # 45 frames -> the longest 1 + 8k under it
    assert longest_pass(pipe(None)) == 49  # no c_m∅ (17B release): the released window
