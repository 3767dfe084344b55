"""Render the generated sample: a shaded humanoid through a pinhole camera over textured backgrounds.

The camera is the one NLF assumes when no intrinsics are given (paper App. B): a
55 degree field of view on the long image side and a centred principal point,
``f = max(H, W) / (2 tan(fov / 2))``, ``c = ((W - 1) / 2, (H - 1) / 2)``. Joints in
the OpenCV camera frame project as ``u = f x / z + cx``, ``v = f y / z + cy``.

The humanoid is drawn with OpenCV: anti-aliased thick lines with round caps as
limb capsules, a filled polygon torso and an ellipse head, far parts first
(painter's algorithm by mean depth), each part shaded from a light direction and
its depth. Frames are RGB uint8.

The camera of a normal shot sways like a hand-held one (``CameraSway``): it turns
about its centre on a slow ellipse of yaw and pitch, which gives the shot optical
flow. Turning moves the whole picture, the person too: the person's camera-frame
joints (and so the sidecar pose) are ``R_t J_t``, and the background, a plate
far away, is warped by the rotation's homography ``K R_t K^-1``. Camera motion is
therefore visible in the camera-frame motion, as it is for a real estimator's
output. A shot with no sway is still.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.motion.skeleton import SMPL_JOINT_NAMES
from pipeline.core.camera import camera_intrinsics as pose_camera_intrinsics
from pipeline.core.camera import project

from .motions import Motion, rotate_view
from .scenery import Background, Effects, blur_frame, draw_text, hsv_rgb

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

LIGHT_DIR = np.array([-0.45, -0.65, -0.6]) / np.linalg.norm([-0.45, -0.65, -0.6])
"""Unit vector toward the light in camera coordinates: upper left, in front of the person."""

SUBPIXEL_BITS = 4  # cv2 drawing with fractional coordinates (1/16 px)
HEAD_CENTRE_OFFSET = 0.09  # metres from the SMPL head joint along the neck->head direction
HEAD_RADII = (0.085, 0.115)  # half width, half height of the head, metres

# Limb capsules: (start joint, end joint, radius in metres, garment).
LIMBS: tuple[tuple[str, str, float, str], ...] = (
    ("neck", "head", 0.05, "skin"),
    ("left_shoulder", "left_elbow", 0.05, "shirt"),
    ("right_shoulder", "right_elbow", 0.05, "shirt"),
    ("left_elbow", "left_wrist", 0.04, "skin"),
    ("right_elbow", "right_wrist", 0.04, "skin"),
    ("left_wrist", "left_hand", 0.042, "skin"),
    ("right_wrist", "right_hand", 0.042, "skin"),
    ("left_hip", "left_knee", 0.075, "trousers"),
    ("right_hip", "right_knee", 0.075, "trousers"),
    ("left_knee", "left_ankle", 0.058, "trousers"),
    ("right_knee", "right_ankle", 0.058, "trousers"),
    ("left_ankle", "left_foot", 0.04, "shoes"),
    ("right_ankle", "right_foot", 0.04, "shoes"),
)
TORSO = ("left_hip", "right_hip", "right_shoulder", "right_collar", "neck", "left_collar", "left_shoulder")
TORSO_RADIUS = 0.06  # rounds the torso polygon's outline


def camera_intrinsics(width: int, height: int, fov_deg: float = 55.0) -> np.ndarray:
    """The App. B camera (``pipeline.core.camera.camera_intrinsics``) as float32, the sidecar's dtype."""
    return pose_camera_intrinsics(width, height, fov_deg).astype(np.float32)


# --- People -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonStyle:
    """RGB colours of one rendered person."""

    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int]
    shoes: tuple[int, int, int]


def random_person_style(rng: np.random.Generator) -> PersonStyle:
    """Saturated clothes, a skin tone and dark shoes, so the figure stands out from the background."""
    hue = rng.uniform()
    return PersonStyle(
        shirt=hsv_rgb(hue, rng.uniform(0.6, 0.9), rng.uniform(0.75, 0.95)),
        trousers=hsv_rgb(hue + rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.8), rng.uniform(0.35, 0.6)),
        skin=hsv_rgb(rng.uniform(0.03, 0.09), rng.uniform(0.3, 0.6), rng.uniform(0.55, 0.95)),
        shoes=hsv_rgb(rng.uniform(), 0.3, 0.2),
    )


def _shade(colour: tuple[int, int, int], brightness: float, whiten: float = 0.0) -> tuple[float, float, float]:
    out = []
    for v in colour:
        c = min(255.0, max(0.0, v * brightness))
        out.append(c + (255.0 - c) * whiten)
    return tuple(out)


def _pt(p: np.ndarray) -> tuple[int, int]:
    scale = 1 << SUBPIXEL_BITS
    return int(p[0] * scale + 0.5), int(p[1] * scale + 0.5)


def _diffuse(normal: np.ndarray) -> float:
    n = normal / max(float(np.sqrt(normal @ normal)), 1e-9)
    return max(0.0, float(n @ LIGHT_DIR))


def _depth_factor(z: float, z_ref: float) -> float:
    """Parts nearer than the pelvis are brighter, farther ones darker; far people are a little dimmer."""
    return min(1.25, max(0.7, 1.0 + 1.2 * (z_ref - z))) * min(1.05, max(0.8, 1.15 - 0.06 * z_ref))


def _draw_capsule(img, a3, b3, a2, b2, radius, colour, focal, z_ref) -> None:
    """A limb as a shaded cylinder: dark outline, body in its shade, a lighter band toward the light.

    ``a3, b3`` are the camera-frame end points, ``a2, b2`` their projections.
    """
    z = 0.5 * (a3[2] + b3[2])
    width = max(2, int(round(2 * radius * focal / z)))
    axis = (b3 - a3) / max(float(np.sqrt((b3 - a3) @ (b3 - a3))), 1e-9)
    view = -(a3 + b3) / 2
    normal = view - (view @ axis) * axis  # the cylinder's normal facing the camera
    bright = (0.55 + 0.5 * _diffuse(normal)) * _depth_factor(z, z_ref)
    img2d = b2 - a2
    perp = np.array([-img2d[1], img2d[0]]) / max(float(np.sqrt(img2d @ img2d)), 1e-9)
    if perp @ LIGHT_DIR[:2] < 0:
        perp = -perp
    pa, pb = _pt(a2), _pt(b2)
    cv2.line(img, pa, pb, _shade(colour, 0.35), width + 2, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.line(img, pa, pb, _shade(colour, 0.8 * bright), width, cv2.LINE_AA, SUBPIXEL_BITS)
    if width >= 4:
        shift = perp * width * 0.18
        core = max(1, int(round(width * 0.45)))
        cv2.line(img, _pt(a2 + shift), _pt(b2 + shift), _shade(colour, bright, 0.12), core, cv2.LINE_AA, SUBPIXEL_BITS)


def _body_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit 'up' (pelvis->neck) and 'forward' (left x up) vectors of the body, camera frame."""
    left = joints[J["left_shoulder"]] - joints[J["right_shoulder"]]
    up = joints[J["neck"]] - joints[J["pelvis"]]
    forward = np.cross(left, up)
    return up / np.linalg.norm(up), forward / max(np.linalg.norm(forward), 1e-9)


def _draw_torso(img, joints, style: PersonStyle, intrinsics, z_ref) -> None:
    pts3 = joints[[J[n] for n in TORSO]]
    pts2 = project(pts3, intrinsics)
    z = float(pts3[:, 2].mean())
    width = max(2, int(round(2 * TORSO_RADIUS * intrinsics[0, 0] / z)))
    _, forward = _body_axes(joints)
    bright = (0.55 + 0.5 * _diffuse(forward)) * _depth_factor(z, z_ref)
    hull = cv2.convexHull(np.array([_pt(p) for p in pts2], dtype=np.int32))
    cv2.polylines(img, [hull], True, _shade(style.shirt, 0.35), width + 2, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.polylines(img, [hull], True, _shade(style.shirt, 0.8 * bright), width, cv2.LINE_AA, SUBPIXEL_BITS)
    cv2.fillConvexPoly(img, hull, _shade(style.shirt, bright), cv2.LINE_AA, SUBPIXEL_BITS)
    # The trousers' waistband: a capsule across the hips.
    hips3 = joints[[J["left_hip"], J["right_hip"]]]
    hips2 = pts2[:2]
    _draw_capsule(img, hips3[0], hips3[1], hips2[0], hips2[1], 0.085, style.trousers, float(intrinsics[0, 0]), z_ref)


def _draw_head(img, joints, style: PersonStyle, intrinsics, z_ref) -> None:
    neck, head = joints[J["neck"]], joints[J["head"]]
    up = (head - neck) / max(np.linalg.norm(head - neck), 1e-9)
    centre3 = head + HEAD_CENTRE_OFFSET * up
    _, forward = _body_axes(joints)
    f = intrinsics[0, 0]
    c2, top2 = project(np.stack([centre3, centre3 + up]), intrinsics)
    angle = float(np.degrees(np.arctan2(top2[1] - c2[1], top2[0] - c2[0]))) + 90.0
    axes = tuple(max(1, int(round(f * r / centre3[2]))) for r in HEAD_RADII)
    view = -centre3 / np.linalg.norm(centre3)
    bright = (0.55 + 0.5 * _diffuse(view + 0.5 * LIGHT_DIR)) * _depth_factor(centre3[2], z_ref)
    skin = _shade(style.skin, bright)
    centre = (int(round(c2[0])), int(round(c2[1])))
    cv2.ellipse(img, centre, (axes[0] + 1, axes[1] + 1), angle, 0, 360, _shade(style.skin, 0.35), -1, cv2.LINE_AA)
    cv2.ellipse(img, centre, axes, angle, 0, 360, skin, -1, cv2.LINE_AA)
    # Hair on the back and top of the head; eyes when the face is toward the camera.
    hair = (60.0, 40.0, 25.0)
    if float(forward @ view) > 0.2:
        cv2.ellipse(img, centre, axes, angle, 180, 360, hair, -1, cv2.LINE_AA)
        cv2.ellipse(img, centre, (axes[0], max(1, axes[1] // 3)), angle, 0, 360, skin, -1, cv2.LINE_AA)
        left = joints[J["left_shoulder"]] - joints[J["right_shoulder"]]
        left = left / np.linalg.norm(left)
        eye_radius = int(max(1.0, f * 0.012 / centre3[2]) * (1 << SUBPIXEL_BITS))
        for s in (-1.0, 1.0):
            eye = project(centre3 + s * 0.035 * left + 0.02 * up + 0.06 * forward, intrinsics)
            cv2.circle(img, _pt(eye), eye_radius, (30, 25, 25), -1, cv2.LINE_AA, SUBPIXEL_BITS)
    else:
        cv2.ellipse(img, centre, axes, angle, 0, 360, hair, -1, cv2.LINE_AA)


def person_parts(joints: np.ndarray, intrinsics: np.ndarray) -> list[tuple[float, str, tuple]]:
    """The parts of one person as (mean depth, part kind, arguments), for depth sorting across people."""
    ends3 = []
    for a, b, _, _ in LIMBS:
        ja, jb = joints[J[a]], joints[J[b]]
        if a.endswith("wrist"):  # the hand reaches a little past the SMPL hand joint
            jb = jb + 0.5 * (jb - ja)
        ends3 += [ja, jb]
    ends3 = np.stack(ends3)
    ends2 = project(ends3, intrinsics)
    parts: list[tuple[float, str, tuple]] = []
    for i, (_, _, radius, garment) in enumerate(LIMBS):
        a3, b3, a2, b2 = ends3[2 * i], ends3[2 * i + 1], ends2[2 * i], ends2[2 * i + 1]
        parts.append((0.5 * float(a3[2] + b3[2]), "limb", (a3, b3, a2, b2, radius, garment)))
    parts.append((float(joints[[J[n] for n in TORSO], 2].mean()), "torso", ()))
    parts.append((float(joints[J["head"], 2]), "head", ()))
    return parts


def draw_people(img: np.ndarray, people: list[np.ndarray], styles: list[PersonStyle], intrinsics: np.ndarray) -> None:
    """Draw every person (joints (24, 3), camera frame) into ``img`` in place, far parts first."""
    queue = []
    people = [p.astype(np.float64) for p in people]
    focal = float(intrinsics[0, 0])
    for index, joints in enumerate(people):
        z_ref = float(joints[J["pelvis"], 2])
        for depth, kind, args in person_parts(joints, intrinsics):
            queue.append((depth, index, kind, args, z_ref))
    queue.sort(key=lambda item: -item[0])
    for _, index, kind, args, z_ref in queue:
        joints, style = people[index], styles[index]
        if kind == "limb":
            a3, b3, a2, b2, radius, garment = args
            _draw_capsule(img, a3, b3, a2, b2, radius, getattr(style, garment), focal, z_ref)
        elif kind == "torso":
            _draw_torso(img, joints, style, intrinsics, z_ref)
        else:
            _draw_head(img, joints, style, intrinsics, z_ref)


def person_extent_points(joints: np.ndarray) -> np.ndarray:
    """Points (N, 3) bounding the drawn body: the joints plus the top of the head."""
    neck, head = joints[..., J["neck"], :], joints[..., J["head"], :]
    up = (head - neck) / np.linalg.norm(head - neck, axis=-1, keepdims=True)
    top = head + (HEAD_CENTRE_OFFSET + HEAD_RADII[1]) * up
    return np.concatenate([joints, top[..., None, :]], axis=-2)


def fit_in_view(
    motion: Motion, intrinsics: np.ndarray, width: int, height: int, margin_px: float = 8.0,
    rotations: np.ndarray | None = None,
) -> Motion:
    """Move the person back (larger z, 5 cm steps) until the whole body is inside the image on every frame.

    With camera ``rotations`` (T, 3, 3) the body must fit the turning camera's view,
    and the motion is returned in that camera's frame (``rotate_view``).
    The motions' depth ranges already fit a 320x240 view; this guards other sizes.
    Raises if pushing back by 3 m is not enough (a motion too wide for the view).
    """
    joints = motion.joints().astype(np.float64)
    rot = None if rotations is None else np.asarray(rotations, dtype=np.float64)
    for dz in np.arange(0.0, 3.0, 0.05):
        points = person_extent_points(joints + np.array([0.0, 0.0, dz]))
        if rot is not None:
            points = np.einsum("tij,tnj->tni", rot, points)
        uv = project(points, intrinsics)
        inside = (
            uv[..., 0].min() >= margin_px
            and uv[..., 1].min() >= margin_px
            and uv[..., 0].max() <= width - 1 - margin_px
            and uv[..., 1].max() <= height - 1 - margin_px
        )
        if inside:
            transl = motion.transl + np.array([0.0, 0.0, dz], dtype=np.float32)
            placed = Motion(pose=motion.pose, transl=transl.astype(np.float32))
            return placed if rot is None else rotate_view(placed, rot)
    raise ValueError(f"motion does not fit a {width}x{height} view even 3 m further back")


# --- Camera sway ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraSway:
    """A hand-held camera turning on an ellipse: yaw ``ax sin(wt + phase)``, pitch ``ay cos(wt + phase)``.

    Amplitudes are in pixels at the image centre (an angle ``a / f`` radians);
    ``period`` is in frames. The picture moves at between ``ay w`` and ``ax w``
    pixels a frame, never stopping, so every normal shot has optical flow.
    """

    amplitude_px: tuple[float, float]
    period: float
    phase: float

    def angles(self, num_frames: int, focal: float) -> np.ndarray:
        """(T, 2) yaw and pitch in radians."""
        arg = 2 * np.pi * np.arange(num_frames) / self.period + self.phase
        return np.stack([self.amplitude_px[0] * np.sin(arg), self.amplitude_px[1] * np.cos(arg)], axis=1) / focal

    def rotations(self, num_frames: int, focal: float) -> np.ndarray:
        """(T, 3, 3) camera-frame rotations ``Rx(pitch) Ry(yaw)``: yaw moves the picture right, pitch down."""
        yaw, pitch = self.angles(num_frames, focal).T
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        one, zero = np.ones_like(yaw), np.zeros_like(yaw)
        ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], 1)
        rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, sp], -1), np.stack([zero, -sp, cp], -1)], 1)
        return rx @ ry

    def mean_speed_px(self, num_frames: int, focal: float) -> float:
        """Mean picture speed at the image centre, pixels per frame (0 for a single frame)."""
        if num_frames < 2:
            return 0.0
        shift = self.angles(num_frames, focal) * focal
        return float(np.linalg.norm(np.diff(shift, axis=0), axis=1).mean())


def random_sway(rng: np.random.Generator, width: int, height: int) -> CameraSway:
    """Sway of 11-14% of the long image side across, 40% of that up and down, one turn per 44-56 frames."""
    ax = max(width, height) * rng.uniform(0.11, 0.14)
    return CameraSway(amplitude_px=(ax, 0.4 * ax), period=rng.uniform(44.0, 56.0), phase=rng.uniform(0, 2 * np.pi))


def render_frames(
    background: Background,
    people: list[np.ndarray],
    styles: list[PersonStyle],
    intrinsics: np.ndarray,
    width: int,
    height: int,
    num_frames: int,
    effects: Effects = Effects(),
    draw_persons: bool = True,
    progress=None,
) -> np.ndarray:
    """Frames (T, H, W, 3) RGB uint8 of people (each (T, 24, 3) joints, NaN where absent) over a background.

    ``draw_persons=False`` renders the same frames without anyone (a person-free
    reference); ``progress`` is an optional tqdm bar advanced once per frame.
    """
    for p in people:
        if p.shape != (num_frames, 24, 3):
            raise ValueError(f"each person's joints must be ({num_frames}, 24, 3), got {p.shape}")
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = background.frame(t, width, height)
        if draw_persons:
            present = [(p[t], s) for p, s in zip(people, styles) if np.isfinite(p[t]).all()]
            if present:
                draw_people(img, [p for p, _ in present], [s for _, s in present], intrinsics)
        if effects.text:
            draw_text(img, list(effects.text))
        if effects.blur_sigma > 0:
            img = blur_frame(img, effects.blur_sigma)
        frames[t] = img
        if progress is not None:
            progress.update(1)
    return frames
