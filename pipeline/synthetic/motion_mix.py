"""Diverse procedural training motion for 4DMoT: random smooth paths through the SMPL pose space (Sec. 3.1's
tokenizer input; beyond the paper).

The seven kinds of `pipeline.synthetic.motions` are the demo's motions: they
move a few joints along fixed patterns, mostly with small displacements (the
median joint moves about 1 cm from a window's first frame). Real dance moves
every limb, far and fast: over 49 frames the median joint of the real NLF
samples moves 4-7 times as far (bench/results/tokenizer_real.md). A tokenizer
trained on the demo kinds alone meets real motion outside what it saw.

`random_motion` draws key poses at random times (0.2-0.8 s apart, so about
1-5 key poses a second, the pace of dance moves) with every limb parameter
uniform over a wide, anatomically possible range, interpolates them with a
shape-preserving spline (PCHIP: no overshoot past the sampled poses), adds a
little smooth noise to every joint, turns and walks the root, and builds
camera-frame joints with the same posing helpers and floor contact as the demo
motions (imported, not changed). `mixed_motions` returns joints of a mix of
these and the demo kinds. Deterministic given the seed.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import gaussian_filter1d

from models.motion.skeleton import NUM_JOINTS
from pipeline.synthetic.motions import MOTIONS, J, Motion, assemble_motion, make_motion, set_arm, set_leg, set_spine

GAP_S = (0.2, 0.8)
"""Seconds between key poses (uniform)."""

DEPTH_M = (1.0, 5.0)
"""Camera distance of the pelvis (uniform): the range a dance video is filmed at."""


def _keys(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Key times from 0 past ``duration`` with random gaps."""
    times = [0.0]
    while times[-1] <= duration:
        times.append(times[-1] + rng.uniform(*GAP_S))
    return np.array(times)


def _path(rng: np.random.Generator, keys: np.ndarray, t: np.ndarray, low: float, high: float,
          energy: float = 1.0) -> np.ndarray:
    """A smooth random path through key values in [low, high], sampled at ``t``.

    Each key moves the fraction ``energy`` of the way from the previous key to a
    fresh uniform draw: 1 jumps anywhere in the range at every key, small values
    give small moves around a (uniformly drawn) starting pose.
    """
    draws = rng.uniform(low, high, len(keys))
    values = np.empty_like(draws)
    values[0] = draws[0]
    for k in range(1, len(keys)):
        values[k] = values[k - 1] + energy * (draws[k] - values[k - 1])
    return PchipInterpolator(keys, values)(t)


def random_motion(num_frames: int, fps: float, rng: np.random.Generator) -> Motion:
    """One random smooth motion of ``num_frames`` frames (camera frame, neutral SMPL shape).

    Ranges (radians, in the terms of the posing helpers): shoulder lowered -1.3
    (raised above the head) to 1.5 (hanging), swung -0.7 to 1.6, elbow 0-2.3,
    upper-arm twist +-0.8; hip flexed -0.4 to 1.3, knee 0.05-1.8, spread 0-0.6;
    spine bend -0.3 to 0.8, twist +-0.7, side bend +-0.5; neck and head +-0.4.
    The body faces the camera within +-0.6 rad at the start in 70% of the
    motions and any way otherwise, then turns by up to +-0.5 rad per key; the
    pelvis wanders +-0.1 m per key sideways and in depth, hops in 15% of keys.
    Each key pose moves a random fraction (0.2-1, one per motion) of the way
    to a fresh draw, so motions range from calm to wild.
    """
    if num_frames < 2 or fps <= 0:
        raise ValueError(f"need num_frames >= 2 and fps > 0, got {num_frames} and {fps}")
    t = np.arange(num_frames) / fps
    keys = _keys(rng, float(t[-1]))
    energy = rng.uniform(0.2, 1.0)  # calm to wild, per motion
    path = lambda low, high: _path(rng, keys, t, low, high, energy)  # noqa: E731
    angles = np.zeros((num_frames, NUM_JOINTS, 3))
    angles += gaussian_filter1d(rng.normal(0.0, 0.6, angles.shape), sigma=0.25 * fps, axis=0)  # ~0.05 rad, smooth
    for side in ("left", "right"):
        set_arm(angles, side, down=path(-1.3, 1.5), swing=path(-0.7, 1.6), elbow=path(0.0, 2.3))
        angles[:, J[f"{side}_shoulder"], 1] += path(-0.8, 0.8)
        angles[:, J[f"{side}_wrist"]] += np.stack([path(-0.5, 0.5) for _ in range(3)], axis=1)
        angles[:, J[f"{side}_collar"], 2] += path(-0.2, 0.2)
        set_leg(angles, side, flex=path(-0.4, 1.3), knee=path(0.05, 1.8), abduct=path(0.0, 0.6))
    set_spine(angles, bend=path(-0.3, 0.8), twist=path(-0.7, 0.7), side=path(-0.5, 0.5))
    for name in ("neck", "head"):
        angles[:, J[name]] += np.stack([path(-0.4, 0.4) for _ in range(3)], axis=1) / 2
    facing = rng.uniform(-0.6, 0.6) if rng.random() < 0.7 else rng.uniform(-np.pi, np.pi)
    turns = np.cumsum(rng.uniform(-0.5, 0.5, len(keys)))  # yaw drifts from key to key
    angles[:, 0, 1] = facing + PchipInterpolator(keys, turns - turns[0])(t)
    angles[:, 0, 0] += path(-0.15, 0.15)
    angles[:, 0, 2] += path(-0.15, 0.15)
    walk = lambda: PchipInterpolator(keys, np.cumsum(rng.uniform(-0.1, 0.1, len(keys))))(t)  # noqa: E731
    x = rng.uniform(-0.5, 0.5) + walk()
    z = rng.uniform(*DEPTH_M) + walk()
    hops = np.where(rng.random(len(keys)) < 0.15, rng.uniform(0.05, 0.3, len(keys)), 0.0)
    lift = np.clip(PchipInterpolator(keys, hops)(t), 0.0, None)
    return assemble_motion(angles, np.stack([x, np.maximum(z, 0.5)], axis=1), lift)


def mixed_motions(count: int, num_frames: int, seed: int = 0, fps: float = 30.0,
                  demo_share: float = 0.25) -> list[np.ndarray]:
    """Joints (num_frames, 24, 3) of ``count`` motions: ``demo_share`` demo kinds, the rest `random_motion`.

    Demo kinds get a random tempo (0.8-1.25) and amplitude (0.7-1.2), as in the
    tokenizer benchmark.
    """
    if count < 1:
        raise ValueError(f"mixed_motions needs count >= 1, got {count}")
    if not 0.0 <= demo_share <= 1.0:
        raise ValueError(f"demo_share must lie in [0, 1], got {demo_share}")
    rng = np.random.default_rng([seed, 4242])
    kinds = sorted(MOTIONS)
    clips = []
    for i in range(count):
        if rng.random() < demo_share:
            motion = make_motion(kinds[i % len(kinds)], num_frames, fps, rng,
                                 tempo=rng.uniform(0.8, 1.25), amplitude=rng.uniform(0.7, 1.2))
        else:
            motion = random_motion(num_frames, fps, rng)
        clips.append(motion.joints())
    return clips
