"""Sub-clip rules of App. B: single person, valid pose on every frame, >= 33 frames, never across a shot."""

import numpy as np
import torch

from models.motion.skeleton import forward_kinematics
from pipeline.curation.subclips import (
    INVALID_POSE,
    MISSING_POSE,
    MULTIPLE_PEOPLE,
    NO_PERSON,
    TOO_SHORT,
    FrameRun,
    frame_verdicts,
    neutral_joints,
    split_shot,
)


def runs_of(num_people, valid=None, shots=((0, None),), min_frames=33):
    num_people = np.asarray(num_people)
    valid = np.ones(len(num_people), bool) if valid is None else np.asarray(valid)
    verdicts = frame_verdicts(num_people, valid)
    out = []
    for start, end in shots:
        out += split_shot(verdicts, start, len(num_people) if end is None else end, min_frames)
    return out


def test_one_long_single_person_run_is_one_clip():
    assert runs_of([1] * 50) == [FrameRun(0, 50, None)]


def test_33_frames_is_enough_32_is_not():
    assert runs_of([1] * 33) == [FrameRun(0, 33, None)]
    assert runs_of([1] * 32) == [FrameRun(0, 32, TOO_SHORT)]


def test_multi_person_and_no_person_frames_split_clips():
    people = [1] * 40 + [2] * 5 + [1] * 35 + [0] * 3 + [1] * 10
    assert runs_of(people) == [
        FrameRun(0, 40, None), FrameRun(40, 45, MULTIPLE_PEOPLE), FrameRun(45, 80, None),
        FrameRun(80, 83, NO_PERSON), FrameRun(83, 93, TOO_SHORT),
    ]


def test_invalid_and_missing_pose_frames_split_clips():
    people = np.array([1] * 80)
    valid = np.ones(80, bool)
    valid[40] = False
    people[79] = -1
    assert runs_of(people, valid) == [FrameRun(0, 40, None), FrameRun(40, 41, INVALID_POSE), FrameRun(41, 79, None),
                                      FrameRun(79, 80, MISSING_POSE)]


def test_clips_never_cross_shot_boundaries():
    runs = runs_of([1] * 100, shots=((0, 60), (60, 100)))
    assert runs == [FrameRun(0, 60, None), FrameRun(60, 100, None)]
    runs = runs_of([1] * 100, shots=((0, 70), (70, 100)))
    assert runs[-1] == FrameRun(70, 100, TOO_SHORT)


def test_every_frame_of_a_shot_is_accounted_for():
    rng = np.random.default_rng(0)
    people = rng.choice([0, 1, 1, 1, 2], size=500)
    runs = runs_of(people, shots=((0, 200), (200, 500)), min_frames=5)
    covered = np.zeros(500, int)
    for r in runs:
        covered[r.start:r.end] += 1
    assert (covered == 1).all()


def test_neutral_joints_are_fk_plus_translation():
    rng = np.random.default_rng(1)
    pose = rng.normal(0, 0.3, (10, 24, 3)).astype(np.float32)
    transl = rng.normal(0, 1, (10, 3)).astype(np.float32)
    joints = neutral_joints(pose, transl)
    ref = forward_kinematics(torch.from_numpy(pose).double()).numpy() + transl[:, None]
    np.testing.assert_allclose(joints, ref, atol=1e-5)
