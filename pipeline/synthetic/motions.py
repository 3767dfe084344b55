"""Procedural SMPL motions for the generated sample (DESIGN.md, "Generated sample data").

Each motion is a sequence of SMPL poses (24 joint rotations, axis-angle) and a root
translation, in the frame a pose estimator like NLF reports: the OpenCV camera
(+x right, +y down, +z forward, metres). The global orientation (joint 0) therefore
holds the rotation of pi about x that turns the +Y-up SMPL body upright in camera
space, composed with the motion's own yaw (0 = facing the camera).

Joint angles are written as ``R = Rx(a) @ Ry(b) @ Rz(c)`` in the parent's frame,
which at rest is the SMPL model frame (+X the subject's left, +Y up, +Z forward),
and converted to axis-angle with kornia. The root is placed on a floor
``GROUND_Y`` metres below the camera centre by forward kinematics (the lowest
foot touches the floor), so squats drop the pelvis and jumps leave the floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle

from models.motion.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_NEUTRAL_REST_JOINTS, forward_kinematics

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

GROUND_Y = 0.85
"""Camera-frame y of the floor: the camera hangs 0.85 m above the ground, looking level."""

SOLE = 0.04
"""Foot joint to sole of the shoe, metres (the renderer's foot capsule radius)."""

FOOT_JOINTS = (J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"])

# Pelvis depth range (camera z, metres) per motion: jumps and walks need more room.
DEPTH_RANGE: dict[str, tuple[float, float]] = {
    "walk": (3.3, 4.0),
    "wave": (2.8, 3.5),
    "squat": (2.8, 3.5),
    "jump": (3.5, 4.1),
    "turn": (3.0, 3.7),
    "dance": (3.2, 3.9),
    "static": (2.8, 3.6),
}


@dataclass(frozen=True)
class Motion:
    """SMPL poses in the OpenCV camera frame: ``pose`` (T, 24, 3) axis-angle, ``transl`` (T, 3) metres."""

    pose: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        if self.pose.ndim != 3 or self.pose.shape[1:] != (NUM_JOINTS, 3):
            raise ValueError(f"Motion.pose must be (T, {NUM_JOINTS}, 3), got {self.pose.shape}")
        if self.transl.shape != (self.pose.shape[0], 3):
            raise ValueError(f"Motion.transl must be ({self.pose.shape[0]}, 3), got {self.transl.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    def joints(self) -> np.ndarray:
        """Joint positions (T, 24, 3), camera frame, metres: FK on the neutral shape plus ``transl``."""
        return motion_joints(self.pose, self.transl)


def motion_joints(pose: np.ndarray, transl: np.ndarray | None = None) -> np.ndarray:
    """Forward kinematics of (..., 24, 3) axis-angle poses on the neutral SMPL shape, numpy in and out."""
    pose_t = torch.from_numpy(np.asarray(pose, dtype=np.float64))
    transl_t = None if transl is None else torch.from_numpy(np.asarray(transl, dtype=np.float64))
    with torch.no_grad():
        joints = forward_kinematics(pose_t, transl=transl_t)
    return joints.numpy().astype(np.float32)


def euler_to_axis_angle(angles: np.ndarray) -> np.ndarray:
    """Angles (..., 3) = (a, b, c) -> axis-angle of ``Rx(a) @ Ry(b) @ Rz(c)`` (..., 3), float64."""
    flat = torch.from_numpy(np.asarray(angles, dtype=np.float64)).reshape(-1, 3)
    eye = torch.eye(3, dtype=torch.float64)
    rx, ry, rz = (axis_angle_to_rotation_matrix(flat[:, i : i + 1] * eye[i]) for i in range(3))
    return rotation_matrix_to_axis_angle(rx @ ry @ rz).reshape(np.shape(angles)).numpy()


def upright_global_orient(body_angles: np.ndarray) -> np.ndarray:
    """Root axis-angle in camera space: ``Rx(pi)`` (SMPL +Y up -> camera -y) after the body's own rotation."""
    flat = torch.from_numpy(euler_to_axis_angle(body_angles)).reshape(-1, 3)
    flip = axis_angle_to_rotation_matrix(torch.tensor([[np.pi, 0.0, 0.0]], dtype=torch.float64))
    rot = flip @ axis_angle_to_rotation_matrix(flat)
    return rotation_matrix_to_axis_angle(rot).reshape(np.shape(body_angles)).numpy()


# --- Posing helpers: signs worked out once so that motions read in anatomical terms. ---


def stance(num_frames: int) -> np.ndarray:
    """Relaxed standing pose as Euler angles (T, 24, 3): arms hanging slightly away from the body."""
    angles = np.zeros((num_frames, NUM_JOINTS, 3))
    set_arm(angles, "left", down=1.2, swing=0.05, elbow=0.2)
    set_arm(angles, "right", down=1.2, swing=0.05, elbow=0.2)
    return angles


def set_arm(angles: np.ndarray, side: str, down, swing=0.0, elbow=0.0) -> None:
    """Shoulder lowered ``down`` rad from the T-pose and swung forward ``swing`` rad; elbow flexed ``elbow`` rad."""
    sign = 1.0 if side == "left" else -1.0  # the left arm points along +X, the right along -X
    angles[:, J[f"{side}_shoulder"], 2] = -sign * np.asarray(down)
    angles[:, J[f"{side}_shoulder"], 0] = -np.asarray(swing)
    angles[:, J[f"{side}_elbow"], 1] = -sign * np.asarray(elbow)


def set_leg(angles: np.ndarray, side: str, flex, knee=0.0, abduct=0.0, flat_foot: float = 0.8) -> None:
    """Hip flexed forward ``flex`` rad, knee bent ``knee`` rad, leg spread ``abduct`` rad; the ankle levels the foot."""
    sign = 1.0 if side == "left" else -1.0
    flex, knee = np.asarray(flex), np.asarray(knee)
    angles[:, J[f"{side}_hip"], 0] = -flex
    angles[:, J[f"{side}_hip"], 2] = sign * np.asarray(abduct)
    angles[:, J[f"{side}_knee"], 0] = knee
    angles[:, J[f"{side}_ankle"], 0] = np.clip(flat_foot * (flex - knee), -0.7, 0.5)


def set_spine(angles: np.ndarray, bend=0.0, twist=0.0, side=0.0) -> None:
    """Spread a forward bend, a twist and a side bend over the three spine joints."""
    for name in ("spine1", "spine2", "spine3"):
        angles[:, J[name], 0] = np.asarray(bend) / 3.0
        angles[:, J[name], 1] = np.asarray(twist) / 3.0
        angles[:, J[name], 2] = np.asarray(side) / 3.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float, width: int = 5) -> np.ndarray:
    """Gaussian noise low-passed along time (axis 0) with a moving average of ``width`` frames."""
    raw = rng.normal(0.0, sigma, size=(shape[0] + width - 1, *shape[1:]))
    kernel = np.ones(width) / np.sqrt(width)  # keeps the per-sample std near sigma
    return np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, raw)


# --- The motions. Each returns Euler angles (T, 24, 3), pelvis (x, z) (T, 2) and lift above the floor (T,). ---

Generated = tuple[np.ndarray, np.ndarray, np.ndarray]


def _walk(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Walk sideways across the view, body turned partly toward the direction of travel."""
    freq = rng.uniform(0.8, 1.0)  # gait cycles per second
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    direction = rng.choice([-1.0, 1.0])
    angles = stance(len(t))
    swing = 0.4 * amp * np.sin(phase)
    set_leg(angles, "left", flex=swing, knee=0.1 + 0.7 * amp * np.maximum(0, np.cos(phase)) ** 1.5)
    set_leg(angles, "right", flex=-swing, knee=0.1 + 0.7 * amp * np.maximum(0, -np.cos(phase)) ** 1.5)
    set_arm(angles, "left", down=1.25, swing=-0.45 * amp * np.sin(phase), elbow=0.35 + 0.15 * np.sin(phase))
    set_arm(angles, "right", down=1.25, swing=0.45 * amp * np.sin(phase), elbow=0.35 - 0.15 * np.sin(phase))
    set_spine(angles, bend=0.05, twist=0.12 * np.sin(phase))
    angles[:, 0, 1] = direction * rng.uniform(0.4, 0.8)  # yaw toward the direction of travel
    angles[:, 0, 2] = 0.04 * np.sin(phase)
    duration = max(t[-1], 1e-6)
    travel = min(rng.uniform(0.3, 0.45) * duration, 1.3)
    x = x0 + direction * travel * (t / duration - 0.5)
    return angles, np.stack([x, np.full_like(t, z0)], axis=1), np.zeros_like(t)


def _wave(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Wave one raised hand side to side at the elbow; the body sways a little."""
    freq = rng.uniform(1.3, 2.2)
    phase = 2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)
    side = rng.choice(["left", "right"])
    sign = 1.0 if side == "left" else -1.0
    angles = stance(len(t))
    raise_ = rng.uniform(0.15, 0.4)  # upper arm above horizontal
    angles[:, J[f"{side}_shoulder"], 2] = sign * raise_
    angles[:, J[f"{side}_shoulder"], 0] = -0.2
    angles[:, J[f"{side}_elbow"], 1] = 0.0
    angles[:, J[f"{side}_elbow"], 2] = sign * (np.pi / 2 - raise_ + 0.4 * amp * np.sin(phase))
    angles[:, J[f"{side}_wrist"], 2] = sign * 0.2 * amp * np.sin(phase - 0.6)
    sway = np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    angles[:, 0, 1] = rng.uniform(-0.3, 0.3) + 0.08 * sway
    angles[:, 0, 2] = 0.03 * sway
    angles[:, J["neck"], 2] = -0.08 * sway
    set_leg(angles, "left", flex=0.05, knee=0.1, abduct=0.05)
    set_leg(angles, "right", flex=0.05, knee=0.1, abduct=0.05)
    return angles, np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=1), np.zeros_like(t)


def _squat(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Repeated squats: hips and knees flex together, torso leans, arms reach forward for balance."""
    freq = rng.uniform(0.35, 0.55)
    depth = min(rng.uniform(0.9, 1.2) * amp, 1.25)
    theta = depth * 0.5 * (1 - np.cos(2 * np.pi * freq * t))
    angles = stance(len(t))
    for side in ("left", "right"):
        set_leg(angles, side, flex=theta, knee=1.9 * theta, abduct=0.12, flat_foot=1.0)
        set_arm(angles, side, down=1.25 - 0.2 * theta, swing=1.15 * theta, elbow=0.2)
    set_spine(angles, bend=0.35 * theta)
    angles[:, 0, 1] = rng.uniform(-0.35, 0.35)
    return angles, np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=1), np.zeros_like(t)


def _jump(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Repeated vertical jumps: crouch, take off with an arm swing, fly a parabola, land in a crouch."""
    freq = rng.uniform(0.75, 0.95)
    phi = (freq * t + rng.uniform(0, 1)) % 1.0
    height = rng.uniform(0.22, 0.35) * amp
    flying = (phi > 0.35) & (phi < 0.7)
    lift = np.where(flying, height * np.sin(np.pi * (phi - 0.35) / 0.35), 0.0)
    crouch = 0.8 * (np.exp(-(((phi - 0.22) / 0.08) ** 2)) + np.exp(-(((phi - 0.86) / 0.08) ** 2)))
    crouch += 0.8 * np.exp(-(((phi + 1 - 0.86) / 0.08) ** 2))  # landing crouch wraps around phase 0
    tuck = np.where(flying, 0.25, 0.0)
    angles = stance(len(t))
    arms_up = np.where(flying, np.sin(np.pi * (phi - 0.35) / 0.35), 0.0)
    for side in ("left", "right"):
        set_leg(angles, side, flex=0.8 * crouch + tuck, knee=1.6 * crouch + 2 * tuck, abduct=0.06, flat_foot=1.0)
        set_arm(angles, side, down=1.25 - 0.3 * arms_up, swing=-0.5 * crouch + 1.6 * arms_up, elbow=0.3)
    set_spine(angles, bend=0.4 * crouch)
    angles[:, 0, 1] = rng.uniform(-0.3, 0.3)
    return angles, np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=1), lift


def _turn(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Turn on the spot (a full turn every few seconds) with small stepping and arms held out a little."""
    speed = rng.uniform(1.6, 2.4) * rng.choice([-1.0, 1.0])  # rad/s
    step = 2 * np.pi * rng.uniform(1.2, 1.6) * t
    angles = stance(len(t))
    set_leg(angles, "left", flex=0.15 * amp * np.sin(step), knee=0.1 + 0.35 * amp * np.maximum(0, np.sin(step)))
    set_leg(angles, "right", flex=-0.15 * amp * np.sin(step), knee=0.1 + 0.35 * amp * np.maximum(0, -np.sin(step)))
    set_arm(angles, "left", down=0.9, swing=0.2, elbow=0.6)
    set_arm(angles, "right", down=0.9, swing=0.2, elbow=0.6)
    angles[:, 0, 1] = rng.uniform(-np.pi, np.pi) + speed * t
    return angles, np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=1), np.zeros_like(t)


def _dance(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """A dance from sine mixtures on the beat (half, one and two times the tempo) over many joints."""
    tempo = rng.uniform(0.8, 1.5)  # beats per second

    def mix(scale: float) -> np.ndarray:
        out = np.zeros_like(t)
        for mult in (0.5, 1.0, 2.0):
            out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * tempo * mult * t + rng.uniform(0, 2 * np.pi))
        return amp * scale * out / 2.0

    angles = stance(len(t))
    for side in ("left", "right"):
        set_arm(
            angles,
            side,
            down=np.clip(0.7 + mix(0.9), -0.6, 1.4),
            swing=np.clip(0.3 + mix(0.7), -0.6, 1.6),
            elbow=np.clip(0.8 + mix(0.8), 0.05, 2.2),
        )
    bounce = 0.5 * (1 - np.cos(2 * np.pi * tempo * t))
    left_flex, right_flex = mix(0.25), mix(0.25)
    set_leg(angles, "left", flex=0.15 * bounce + left_flex, knee=0.1 + 0.4 * bounce + np.abs(left_flex), abduct=0.1)
    set_leg(angles, "right", flex=0.15 * bounce + right_flex, knee=0.1 + 0.4 * bounce + np.abs(right_flex), abduct=0.1)
    set_spine(angles, bend=0.1 + mix(0.1), twist=mix(0.3), side=mix(0.15))
    angles[:, J["neck"], 0] = mix(0.12)
    angles[:, J["head"], 2] = mix(0.1)
    angles[:, 0, 1] = rng.uniform(-0.3, 0.3) + mix(0.35)
    angles[:, 0, 2] = mix(0.06)
    sway = 0.12 * amp * np.sin(np.pi * tempo * t + rng.uniform(0, 2 * np.pi))
    return angles, np.stack([x0 + sway, np.full_like(t, z0)], axis=1), np.zeros_like(t)


def _static(t: np.ndarray, rng: np.random.Generator, amp: float, x0: float, z0: float) -> Generated:
    """Standing nearly still: a random relaxed pose held, with tiny smooth jitter (a few millimetres)."""
    angles = stance(len(t))
    angles += rng.normal(0.0, 0.04, size=(1, NUM_JOINTS, 3))  # a slightly personal stance
    angles[:, 0, 1] = rng.uniform(-0.3, 0.3)
    angles += _smooth_noise(rng, angles.shape, 0.002)
    return angles, np.stack([np.full_like(t, x0), np.full_like(t, z0)], axis=1), np.zeros_like(t)


MOTIONS: dict[str, Callable[..., Generated]] = {
    "walk": _walk,
    "wave": _wave,
    "squat": _squat,
    "jump": _jump,
    "turn": _turn,
    "dance": _dance,
    "static": _static,
}


def make_motion(
    kind: str,
    num_frames: int,
    fps: float,
    rng: np.random.Generator,
    *,
    tempo: float = 1.0,
    amplitude: float = 1.0,
    pelvis_x: float | None = None,
    depth: float | None = None,
) -> Motion:
    """A procedural motion of ``kind`` (one of ``MOTIONS``), deterministic given ``rng``.

    ``tempo`` scales time (1.2 = 20% faster), ``amplitude`` the swing of the limbs;
    ``pelvis_x`` and ``depth`` place the pelvis (camera x and z, metres), random by default.
    """
    if kind not in MOTIONS:
        raise ValueError(f"unknown motion kind {kind!r}; expected one of {sorted(MOTIONS)}")
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got {num_frames} and {fps}")
    t = np.arange(num_frames) / fps * tempo
    x0 = rng.uniform(-0.3, 0.3) if pelvis_x is None else pelvis_x
    z0 = rng.uniform(*DEPTH_RANGE[kind]) if depth is None else depth
    angles, pelvis_xz, lift = MOTIONS[kind](t, rng, amplitude, x0, z0)
    return assemble_motion(angles, pelvis_xz, lift)


def assemble_motion(angles: np.ndarray, pelvis_xz: np.ndarray, lift: np.ndarray) -> Motion:
    """Euler angles (T, 24, 3), pelvis (x, z) and lift above the floor -> a camera-frame ``Motion``.

    The root turns upright into camera space; the root height comes from forward
    kinematics so that the lowest foot sole rests ``lift`` metres above the floor.
    """
    pose = euler_to_axis_angle(angles)
    pose[:, 0] = upright_global_orient(angles[:, 0])
    rest_root = SMPL_NEUTRAL_REST_JOINTS[0].astype(np.float64)
    joints = motion_joints(pose)  # transl 0: the pelvis sits at rest_root
    lowest = joints[:, FOOT_JOINTS, 1].max(axis=1) + SOLE  # camera y grows downward
    transl = np.stack(
        [pelvis_xz[:, 0] - rest_root[0], GROUND_Y - lift - lowest, pelvis_xz[:, 1] - rest_root[2]], axis=1
    )
    return Motion(pose=pose.astype(np.float32), transl=transl.astype(np.float32))


def rotate_view(motion: Motion, rotations: np.ndarray) -> Motion:
    """The same motion seen by a camera that turns: frame t's joints become ``R_t J_t`` (rotations (T, 3, 3)).

    A camera turning about its centre moves everything in the picture, the person
    included, so the sidecar pose a camera-frame estimator like NLF would report
    changes with it: the root orientation becomes ``R_t R_root`` and, since SMPL
    places the pelvis at ``rest_root + transl``, the translation becomes
    ``R_t (rest_root + transl) - rest_root``.
    """
    rot = np.asarray(rotations, dtype=np.float64)
    if rot.shape != (motion.num_frames, 3, 3):
        raise ValueError(f"rotations must be ({motion.num_frames}, 3, 3), got {rot.shape}")
    root = axis_angle_to_rotation_matrix(torch.from_numpy(motion.pose[:, 0].astype(np.float64)))
    pose = motion.pose.astype(np.float64).copy()
    pose[:, 0] = rotation_matrix_to_axis_angle(torch.from_numpy(rot) @ root).numpy()
    rest_root = SMPL_NEUTRAL_REST_JOINTS[0].astype(np.float64)
    transl = np.einsum("tij,tj->ti", rot, motion.transl.astype(np.float64) + rest_root) - rest_root
    return Motion(pose=pose.astype(np.float32), transl=transl.astype(np.float32))
