"""How much of the body a frame shows: whole bodies only by default (a rule beyond App. B).

App. B keeps sub-clips with one person and a valid pose on every frame; a pose
estimator fits a whole body to a torso or a face all the same (MediaPipe
invents the legs under a table, the hips below a close-up). A tokenizer
trained on such clips learns those invented limbs, so each frame gets a body
coverage from the keypoints the backend actually saw:

- a body part (head, shoulders, hips, knees, ankles) is *seen* when one of its
  keypoints lies inside the frame (``margin`` of the frame's size outside it
  still counts) and, for backends that report one, has a visibility of at
  least ``min_visibility``: MediaPipe gives invented landmarks a low visibility,
  so they do not count;
- ``FULL`` (2): all five parts seen; ``UPPER`` (1): head, shoulders and hips
  (a half-body clip, which the paper also animates); ``PARTIAL`` (0): less;
  ``UNKNOWN`` (-1): no pose on the frame or the backend gave no coverage.

The sub-clip rule ``body_coverage`` (setting; "full" by default, "upper" keeps
half-body clips too) rejects frames below it as ``partial_body``. Brief
dropouts (a blurred ankle on a few frames) would cut a long clip into pieces,
so ``steady`` takes a running median over ``window`` frames first.

Backends without a visibility (NLF, the annotations sidecar) are judged on
their SMPL joints projected through the App. B camera (``from_smpl_joints``).
"""

from __future__ import annotations

import numpy as np

FULL, UPPER, PARTIAL, UNKNOWN = 2, 1, 0, -1
LEVELS = {"full": FULL, "upper": UPPER}  # setting body_coverage -> the least coverage a kept frame needs

# Keypoint indices per body part. MediaPipe Pose's 33 landmarks: nose, inner/outer eyes, ears; shoulders;
# hips; knees; ankles and heels. SMPL-24 joints: head; shoulders; hips; knees; ankles.
MEDIAPIPE_PARTS = {"head": (0, 2, 5, 7, 8), "shoulders": (11, 12), "hips": (23, 24), "knees": (25, 26),
                   "ankles": (27, 28, 29, 30)}
SMPL_PARTS = {"head": (15,), "shoulders": (16, 17), "hips": (1, 2), "knees": (4, 5), "ankles": (7, 8)}
UPPER_PARTS = ("head", "shoulders", "hips")

MIN_VISIBILITY = 0.5  # MediaPipe's own cut for drawing a landmark as visible
MARGIN = 0.02  # keypoints this far outside the frame (fraction of its width / height) still count as inside
WINDOW = 9  # frames of the running median in ``steady``
# Least human size of MediaPipe's metric world skeleton (``mediapipe_plausible``). Measured (bench/bench_person_rules.py):
# on the six real full-body dance videos the torso is 0.43-0.53 m and the leg 0.46-0.83 m (1st-99th percentile);
# the skeleton MediaPipe fits to a hand pouring coffee has a leg of 0.35 m (median) and a torso down to 0.15 m.
MIN_TORSO_M = 0.30
MIN_LEG_M = 0.45


def coverage(points: np.ndarray, width: int, height: int, parts: dict[str, tuple[int, ...]],
             visibility: np.ndarray | None = None, min_visibility: float = MIN_VISIBILITY,
             margin: float = MARGIN, plausible: np.ndarray | None = None) -> np.ndarray:
    """(T,) int8 coverage of keypoints ``points`` (T, K, 2) in pixels (NaN rows: no pose -> UNKNOWN).

    ``visibility`` (T, K) in [0, 1] or None (every keypoint inside the frame counts as seen);
    ``plausible`` (T, K) bool or None: keypoints that are False are not seen (``mediapipe_plausible``).
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (T, K, 2), got {points.shape}")
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        seen = ((x >= -margin * width) & (x <= (1 + margin) * width - 1)
                & (y >= -margin * height) & (y <= (1 + margin) * height - 1))
        if visibility is not None:
            seen &= np.asarray(visibility) >= min_visibility
    if plausible is not None:
        seen &= np.asarray(plausible, bool)
    part_seen = {name: seen[:, list(index)].any(axis=1) for name, index in parts.items()}
    upper = np.logical_and.reduce([part_seen[p] for p in UPPER_PARTS])
    full = np.logical_and.reduce(list(part_seen.values()))
    out = np.where(full, FULL, np.where(upper, UPPER, PARTIAL)).astype(np.int8)
    out[~np.isfinite(points).all(axis=(1, 2))] = UNKNOWN
    return out


def mediapipe_plausible(world: np.ndarray, min_torso_m: float = MIN_TORSO_M, min_leg_m: float = MIN_LEG_M) -> np.ndarray:
    """(T, 33) bool: MediaPipe landmarks on a body of human size. On a hand or a cup MediaPipe fits a
    whole skeleton too, shrunk in its metric world landmarks (``world`` (T, 33, 3)): there the torso
    (shoulder to hip) or the leg (hip to knee to ankle), mean of both sides, is too short and those
    landmarks do not count as seen."""
    world = np.asarray(world, np.float64)

    def length(a, b):
        return np.linalg.norm(world[:, a] - world[:, b], axis=-1)

    torso = 0.5 * (length(11, 23) + length(12, 24))
    leg = 0.5 * (length(23, 25) + length(25, 27) + length(24, 26) + length(26, 28))
    ok = np.ones(world.shape[:2], bool)
    with np.errstate(invalid="ignore"):
        short_torso, short_leg = ~(torso >= min_torso_m), ~(leg >= min_leg_m)
    for part in ("shoulders", "hips"):
        ok[np.ix_(short_torso, MEDIAPIPE_PARTS[part])] = False
    for part in ("knees", "ankles"):
        ok[np.ix_(short_leg, MEDIAPIPE_PARTS[part])] = False
    return ok


def from_smpl_joints(joints: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
                     margin: float = MARGIN) -> np.ndarray:
    """(T,) int8 coverage of SMPL-24 camera-frame joints (T, 24, 3), projected through ``intrinsics``;
    joints behind the camera are not seen."""
    from pipeline.core.camera import project

    joints = np.asarray(joints, np.float64)
    pixels = project(joints, intrinsics)
    with np.errstate(invalid="ignore"):
        pixels[joints[..., 2] <= 0] = -1e9  # behind the camera: outside the frame, the row stays finite
    return coverage(pixels, width, height, SMPL_PARTS, margin=margin)


def steady(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Running median of coverage over ``window`` frames (odd), within runs of known frames: a dropout
    shorter than half the window takes its neighbours' level; UNKNOWN frames stay UNKNOWN."""
    from scipy.ndimage import median_filter

    values = np.asarray(values, np.int8)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 1, got {window}")
    out = values.copy()
    known = values != UNKNOWN
    edges = np.flatnonzero(np.diff(np.concatenate([[0], known.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        out[start:end] = median_filter(values[start:end], size=window, mode="nearest")
    return out
