"""Fill short runs of frames where the pose estimator found nobody, in a driving motion (App. A.3).

A driving video for ``animate`` or a benchmark must give a pose on every frame,
but detectors miss a person now and then (motion blur, a hand across the face):
MediaPipe misses 3 of the 127 frames of a real dance clip in `shared/real`. A
short miss is filled from the frames around it:

- inside the track, each joint's rotation is interpolated by slerp between the
  last pose before the gap and the first one after it (scipy's ``Slerp``: the
  shortest turn at a constant rate, where averaging rotation vectors can swing
  the long way round), and the root translation linearly;
- before the first or after the last detection, the nearest pose is held.

A gap longer than ``max_gap`` frames is not a miss but a person leaving the
picture: that stays an error, naming the frames.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

MAX_FILLED_GAP = 8  # frames; about a quarter second at 30 fps


def missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a (T,) bool array."""
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def fill_pose_gaps(pose: np.ndarray, transl: np.ndarray, max_gap: int = MAX_FILLED_GAP
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """(pose (T, 24, 3) axis-angle, transl (T, 3), frames filled) with every NaN row filled; a run of more than
    ``max_gap`` missing frames, or no pose at all, is a ValueError naming the frames."""
    pose = np.array(pose, dtype=np.float64)
    transl = np.array(transl, dtype=np.float64)
    missing = ~(np.isfinite(pose).all(axis=(1, 2)) & np.isfinite(transl).all(axis=1))
    if missing.all():
        raise ValueError(f"no pose in any of the {len(pose)} frames")
    runs = missing_runs(missing)
    too_long = [(a, b) for a, b in runs if b - a > max_gap]
    if too_long:
        a, b = max(too_long, key=lambda r: r[1] - r[0])
        raise ValueError(f"no person in frames {a}-{b - 1} ({b - a} frames; at most {max_gap} are filled in)")
    for a, b in runs:
        if a == 0 or b == len(pose):  # before the first / after the last detection: hold the nearest pose
            source = b if a == 0 else a - 1
            pose[a:b], transl[a:b] = pose[source], transl[source]
            continue
        weights = (np.arange(a, b) - (a - 1)) / (b - (a - 1))  # in (0, 1): position between frames a-1 and b
        for joint in range(pose.shape[1]):
            ends = Rotation.from_rotvec(np.stack([pose[a - 1, joint], pose[b, joint]]))
            pose[a:b, joint] = Slerp([0.0, 1.0], ends)(weights).as_rotvec()
        transl[a:b] = (1 - weights)[:, None] * transl[a - 1] + weights[:, None] * transl[b]
    return pose.astype(np.float32), transl.astype(np.float32), int(missing.sum())
