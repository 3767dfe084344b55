"""MediaPipe Pose's 33 landmarks -> the 24 SMPL joints (targets for the IK fit, ``ik_fit.py``).

MediaPipe (BlazePose) marks surface keypoints: joints of the limbs, face points,
heels and toes. SMPL's 24 joints are skeleton joints, some of which (pelvis,
spine, neck, collars) have no landmark. Each SMPL joint below is either a
landmark taken as it is, or placed from landmarks by a fixed rule, and carries a
``weight`` for the fit (1 for a landmark joint, lower for a placed one, since
its position is a guess the neutral skeleton may contradict).

Torso rules work in the frame of the torso axis ``a = shoulder_centre -
hip_centre`` (length L) and put joints at the fractions of L where the neutral
SMPL skeleton has them (``SMPL_NEUTRAL_REST_JOINTS``: pelvis 0.17 L above the
hip centre, spine1 0.37, spine2 0.62, spine3 0.72, neck 1.11, collars 0.94 L
and about 0.47 of the way out to each shoulder).

Hips: MediaPipe's hip landmarks sit on the outside of the hips, about twice as
wide as SMPL's hip joints (the femoral heads) and a little higher. On the five
real reference videos (``../shared/real``, NLF joints) the NLF hip joints lay at
0.44-0.48 of MediaPipe's hip half-width from the hip centre and 0.0-0.06 L lower
along the torso axis; SMPL's neutral rest skeleton has them at 0.127 L either
side. The rule uses ``HIP_WIDTH_SCALE = 0.47`` and ``HIP_DROP = 0.04`` L.

The rules are linear in the landmarks and work the same in 2D (image pixels)
and 3D (metres), so one map serves the 3D world landmarks and the 2D image
landmarks. Left and right are the subject's own, in both MediaPipe and SMPL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.motion.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES

MEDIAPIPE_LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner",
    "right_eye", "right_eye_outer", "left_ear", "right_ear", "mouth_left",
    "mouth_right", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index",
    "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(MEDIAPIPE_LANDMARK_NAMES)
_LM = {name: i for i, name in enumerate(MEDIAPIPE_LANDMARK_NAMES)}

HIP_WIDTH_SCALE = 0.47  # SMPL hip joints / MediaPipe hip landmarks, distance from the hip centre
HIP_DROP = 0.04  # SMPL hip joints sit this fraction of the torso length below MediaPipe's

# Fractions of the torso axis (hip centre -> shoulder centre) in the neutral SMPL rest skeleton.
_TORSO_FRACTION = {"pelvis": 0.17, "spine1": 0.37, "spine2": 0.62, "spine3": 0.72, "neck": 1.11, "collar": 0.94}
_COLLAR_OUT = 0.47  # collar joints: this share of the way from the shoulder centre to each shoulder
_FOOT_TOE_SHARE = 0.7  # SMPL foot joint (ball of the foot): 0.7 toe tip + 0.3 heel


@dataclass(frozen=True)
class JointRule:
    """How one SMPL joint is found from MediaPipe landmarks."""

    smpl_joint: str
    kind: str  # "landmark": one landmark as it is; "placed": a rule over several landmarks
    sources: tuple[str, ...]  # the MediaPipe landmarks it uses
    weight: float  # its weight in the IK fit
    note: str


JOINT_RULES: tuple[JointRule, ...] = (
    JointRule("pelvis", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.5,
              "hip centre + 0.17 L up the torso axis (then corrected hips' centre)"),
    JointRule("left_hip", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 1.0,
              "hip landmark pulled to 0.47 of its distance from the hip centre, 0.04 L down"),
    JointRule("right_hip", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 1.0,
              "as left_hip"),
    JointRule("spine1", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "0.37 L up the torso axis"),
    JointRule("left_knee", "landmark", ("left_knee",), 1.0, "direct"),
    JointRule("right_knee", "landmark", ("right_knee",), 1.0, "direct"),
    JointRule("spine2", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "0.62 L up the torso axis"),
    JointRule("left_ankle", "landmark", ("left_ankle",), 1.0, "direct"),
    JointRule("right_ankle", "landmark", ("right_ankle",), 1.0, "direct"),
    JointRule("spine3", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "0.72 L up the torso axis"),
    JointRule("left_foot", "placed", ("left_heel", "left_foot_index"), 0.5, "0.7 toe tip + 0.3 heel"),
    JointRule("right_foot", "placed", ("right_heel", "right_foot_index"), 0.5, "0.7 toe tip + 0.3 heel"),
    JointRule("neck", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "1.11 L up the torso axis, just above the shoulder line"),
    JointRule("left_collar", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "0.94 L up the torso axis, 0.47 of the way out to the left shoulder"),
    JointRule("right_collar", "placed", ("left_hip", "right_hip", "left_shoulder", "right_shoulder"), 0.25,
              "as left_collar"),
    JointRule("head", "placed", ("left_ear", "right_ear"), 0.5, "midpoint of the ears"),
    JointRule("left_shoulder", "landmark", ("left_shoulder",), 1.0, "direct"),
    JointRule("right_shoulder", "landmark", ("right_shoulder",), 1.0, "direct"),
    JointRule("left_elbow", "landmark", ("left_elbow",), 1.0, "direct"),
    JointRule("right_elbow", "landmark", ("right_elbow",), 1.0, "direct"),
    JointRule("left_wrist", "landmark", ("left_wrist",), 1.0, "direct"),
    JointRule("right_wrist", "landmark", ("right_wrist",), 1.0, "direct"),
    JointRule("left_hand", "placed", ("left_index", "left_pinky"), 0.5, "midpoint of index and pinky knuckles"),
    JointRule("right_hand", "placed", ("right_index", "right_pinky"), 0.5, "midpoint of index and pinky knuckles"),
)
assert tuple(rule.smpl_joint for rule in JOINT_RULES) == SMPL_JOINT_NAMES

JOINT_WEIGHTS = np.array([rule.weight for rule in JOINT_RULES], dtype=np.float32)

# The 12 limb joints that MediaPipe marks directly (hips after correction): the evaluation set.
LIMB_JOINTS: tuple[int, ...] = tuple(
    SMPL_JOINT_NAMES.index(f"{side}_{part}")
    for part in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
    for side in ("left", "right")
)


def mediapipe_to_smpl(landmarks: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(..., 33, D)`` landmarks (D = 2 pixels or 3 metres) and ``(..., 33)`` visibility
    to ``(..., 24, D)`` SMPL joints and ``(..., 24)`` visibility (the least visible source)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    visibility = np.asarray(visibility, dtype=np.float64)
    if landmarks.ndim < 2 or landmarks.shape[-2] != NUM_LANDMARKS or landmarks.shape[-1] not in (2, 3):
        raise ValueError(f"landmarks must be (..., {NUM_LANDMARKS}, 2 or 3), got {landmarks.shape}")
    if visibility.shape != landmarks.shape[:-1]:
        raise ValueError(f"visibility must be {landmarks.shape[:-1]}, got {visibility.shape}")

    def lm(name: str) -> np.ndarray:
        return landmarks[..., _LM[name], :]

    raw_hip_centre = 0.5 * (lm("left_hip") + lm("right_hip"))
    shoulder_centre = 0.5 * (lm("left_shoulder") + lm("right_shoulder"))
    axis = shoulder_centre - raw_hip_centre
    drop = raw_hip_centre - HIP_DROP * axis
    left_hip = drop + HIP_WIDTH_SCALE * (lm("left_hip") - raw_hip_centre)
    right_hip = drop + HIP_WIDTH_SCALE * (lm("right_hip") - raw_hip_centre)
    hip_centre = 0.5 * (left_hip + right_hip)
    axis = shoulder_centre - hip_centre  # the torso axis of the corrected hips

    def up(name: str) -> np.ndarray:
        return hip_centre + _TORSO_FRACTION[name] * axis

    def collar(side: str) -> np.ndarray:
        return up("collar") + _COLLAR_OUT * (lm(f"{side}_shoulder") - shoulder_centre)

    def foot(side: str) -> np.ndarray:
        return _FOOT_TOE_SHARE * lm(f"{side}_foot_index") + (1.0 - _FOOT_TOE_SHARE) * lm(f"{side}_heel")

    placed = {
        "pelvis": up("pelvis"),
        "left_hip": left_hip,
        "right_hip": right_hip,
        "spine1": up("spine1"),
        "spine2": up("spine2"),
        "spine3": up("spine3"),
        "left_foot": foot("left"),
        "right_foot": foot("right"),
        "neck": up("neck"),
        "left_collar": collar("left"),
        "right_collar": collar("right"),
        "head": 0.5 * (lm("left_ear") + lm("right_ear")),
        "left_hand": 0.5 * (lm("left_index") + lm("left_pinky")),
        "right_hand": 0.5 * (lm("right_index") + lm("right_pinky")),
    }
    joints = np.empty(landmarks.shape[:-2] + (NUM_JOINTS, landmarks.shape[-1]), dtype=np.float64)
    joint_visibility = np.empty(landmarks.shape[:-2] + (NUM_JOINTS,), dtype=np.float64)
    for j, rule in enumerate(JOINT_RULES):
        joints[..., j, :] = lm(rule.smpl_joint) if rule.kind == "landmark" else placed[rule.smpl_joint]
        joint_visibility[..., j] = np.min(np.stack([visibility[..., _LM[s]] for s in rule.sources]), axis=0)
    return joints.astype(np.float32), joint_visibility.astype(np.float32)
