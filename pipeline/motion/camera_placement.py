"""Put world-frame motion capture in front of a virtual camera, as the curated clips are (Sec. 3.1, App. B).

The curated joints 4DMoT trains on are camera coordinates of NLF under a 55
degree camera (App. B: "fixed with a 55 degree field of view along the
image's longer side and a centred principal point"): +x right, +y down, +z
forward. Motion capture is in a world frame with +Y up (`pipeline.motion.mocap`),
so each training window is placed (`place_window`) by one rigid motion:

1. bone lengths augmented (`bone_factors`): every bone scaled by its own factor
   in 1 +- ``bone_scale``, the same in every frame, left and right bones
   sharing one factor; the mocap corpora have almost one body shape each
   (``../shared/mocap/README.md``, caveats), the curated people have their own;
2. turned about the vertical through its first-frame pelvis by a yaw uniform in
   +- ``max_yaw`` (every facing, as in web video);
3. put ``distance`` metres in front of the camera (first-frame pelvis depth),
   the camera ``camera_height`` above the floor (the lowest joint of the
   window), the pelvis ``lateral`` x depth to the side, the camera pitched and
   rolled a few degrees;
4. pushed back (distance x 1.1 until it fits, at most ``max_distance``) when
   some joint of the window would leave the frame: a person walking across the
   room stays in view, as the curated single-person clips require.

The ranges are the framing of the real NLF joints in ``../shared/real``
(`framing`; measured by ``bench/bench_tokenizer_mocap.py``, BENCHMARKS.md "4DMoT on
motion capture"): first-frame pelvis depth 1.8-2.3 m in the four full-body
videos (0.9-1.1 m in the half-body portrait one; the generated sample uses
3-4 m), camera 0.2-1.2 m above the lowest foot, tilt -6 to +4 degrees, roll
within 2 degrees, pelvis within 0.16 x depth of the optical axis. The defaults
widen the distance to 3.2 m so that the generated sample's framing is covered too.

Placement is a rotation plus a translation (bone lengths kept); bone
augmentation changes each bone's length by its factor in every frame alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from models.motion.skeleton import SMPL_JOINT_NAMES
from pipeline.motion.windows import rescale_bones

# World +Y up -> camera -y (up in the image); world +Z (towards the camera) -> camera -z. A 180 degree turn about x.
WORLD_TO_CAMERA_AXES = np.diag([1.0, -1.0, -1.0])
_INDEX = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
FEET = [_INDEX[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]


def _mirror_of(name: str) -> str:
    return name.replace("left", "RIGHT").replace("right", "left").replace("RIGHT", "right")


MIRROR = np.array([_INDEX[_mirror_of(n)] for n in SMPL_JOINT_NAMES])  # joint index of each joint's mirror twin


@dataclass(frozen=True)
class CameraPlacement:
    """Ranges of the virtual camera and the bone augmentation (module docstring); metres and degrees."""

    fov_deg: float = 55.0  # along the longer side (App. B)
    width: int = 1024  # frame size in pixels (most real clips are 1024 x 1024)
    height: int = 1024
    distance: tuple[float, float] = (1.8, 3.2)  # first-frame pelvis depth
    camera_height: tuple[float, float] = (0.3, 1.3)  # camera centre above the floor
    pitch_deg: tuple[float, float] = (-6.0, 6.0)  # camera tilt (positive: looking down)
    roll_deg: tuple[float, float] = (-2.0, 2.0)
    lateral: tuple[float, float] = (-0.1, 0.1)  # first-frame pelvis x / depth
    max_yaw: float = math.pi  # radians about the vertical
    bone_scale: float = 0.10  # per-bone length factor 1 +- this (0 = off)
    margin: float = 0.02  # share of the frame kept free at each edge
    max_distance: float = 15.0

    def __post_init__(self) -> None:
        for name in ("distance", "camera_height", "pitch_deg", "roll_deg", "lateral"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"CameraPlacement.{name} must be (low, high), got {(lo, hi)}")
        if not 0.0 <= self.bone_scale < 1.0:
            raise ValueError(f"CameraPlacement.bone_scale must lie in [0, 1), got {self.bone_scale}")
        if self.distance[0] <= 0 or self.max_distance < self.distance[1]:
            raise ValueError("CameraPlacement.distance must be > 0 and max_distance >= its upper end")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "CameraPlacement":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def intrinsics(placement: CameraPlacement) -> np.ndarray:
    """Pinhole K of the virtual camera (the pose stage's convention, `pipeline.core.camera.camera_intrinsics`)."""
    from pipeline.core.camera import camera_intrinsics

    return camera_intrinsics(placement.width, placement.height, placement.fov_deg)


def project(joints: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2)."""
    uvw = joints @ k.T
    return uvw[..., :2] / uvw[..., 2:3]


def in_frame(joints: np.ndarray, placement: CameraPlacement) -> bool:
    """Every joint in front of the camera and inside the frame less ``margin`` at each edge."""
    if (joints[..., 2] <= 0.05).any():
        return False
    uv = project(joints, intrinsics(placement))
    mx, my = placement.margin * placement.width, placement.margin * placement.height
    return bool((uv[..., 0] >= mx).all() and (uv[..., 0] <= placement.width - 1 - mx).all()
                and (uv[..., 1] >= my).all() and (uv[..., 1] <= placement.height - 1 - my).all())


def bone_factors(rng: np.random.Generator, scale: float) -> np.ndarray:
    """(24,) length factors (entry j: the bone parent(j) -> j) in 1 +- ``scale``; mirror bones share one."""
    factors = 1.0 + rng.uniform(-scale, scale, len(SMPL_JOINT_NAMES))
    return factors[np.minimum(np.arange(len(factors)), MIRROR)]  # a right bone takes its left twin's factor


def _rotation(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def world_to_camera(world: np.ndarray, yaw: float, distance: float, camera_height: float, lateral: float,
                    pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """One rigid motion of a +Y-up window (F, 24, 3) into the camera frame (module docstring, steps 2-3)."""
    w = world.astype(np.float64)
    pelvis = w[0, 0] * np.array([1.0, 0.0, 1.0])
    w = (w - pelvis) @ _rotation("y", yaw).T
    w[..., 1] -= w[..., 1].min() + camera_height  # floor (lowest joint of the window) camera_height below the camera
    cam = w @ WORLD_TO_CAMERA_AXES.T + np.array([lateral * distance, 0.0, distance])
    tilt = _rotation("x", math.radians(pitch_deg)) @ _rotation("z", math.radians(roll_deg))
    return cam @ tilt.T


def place_window(world: np.ndarray, rng: np.random.Generator, placement: CameraPlacement) -> np.ndarray:
    """A +Y-up window (F, 24, 3) metres -> camera frame, bones augmented, framed (module docstring)."""
    p = placement
    factors = bone_factors(rng, p.bone_scale)
    yaw = rng.uniform(-p.max_yaw, p.max_yaw)
    distance, height = rng.uniform(*p.distance), rng.uniform(*p.camera_height)
    lateral, pitch, roll = rng.uniform(*p.lateral), rng.uniform(*p.pitch_deg), rng.uniform(*p.roll_deg)
    world = rescale_bones(world, factors) if p.bone_scale > 0 else world
    while True:
        cam = world_to_camera(world, yaw, distance, height, lateral, pitch, roll)
        if distance >= p.max_distance or in_frame(cam, p):
            return cam.astype(np.float32)
        distance = min(distance * 1.1, p.max_distance)


def place_clips(clips: list[np.ndarray], placement: CameraPlacement, seed: int = 0, chunk: int = 49,
                limit: int | None = None) -> list[np.ndarray]:
    """Clips cut into consecutive ``chunk``-frame pieces, each placed once with a fixed seed and no bone
    augmentation (evaluation, statistics); at most ``limit`` pieces, evenly spaced.

    Pieces, not whole clips: a long take (a 40 s walk) placed whole would be pushed far back to stay in
    view, framed as no curated clip is; training places windows of at most 129 frames too.
    """
    fixed = CameraPlacement.from_dict({**placement.to_dict(), "bone_scale": 0.0})
    pieces = [c[s:s + chunk] for c in clips for s in range(0, max(1, len(c) - chunk + 1), chunk)]
    if limit is not None and len(pieces) > limit:
        pieces = [pieces[i] for i in np.linspace(0, len(pieces) - 1, limit).round().astype(int)]
    return [place_window(p, np.random.default_rng([seed, i]), fixed) for i, p in enumerate(pieces)]


def framing(joints: np.ndarray, width: int, height: int, fov_deg: float = 55.0) -> dict[str, float]:
    """How a camera-frame clip (T, 24, 3) metres is framed: the numbers the placement ranges come from.

    pelvis depth (first frame), pelvis x / depth, camera tilt and roll from the
    mean pelvis-to-neck direction, camera height above the lowest foot along
    that direction (median over frames), person height / frame height (median).
    """
    from pipeline.core.camera import camera_intrinsics

    j = joints.astype(np.float64)
    up = j[:, _INDEX["neck"]] - j[:, 0]
    u = (up / np.linalg.norm(up, axis=1, keepdims=True)).mean(0)
    u /= np.linalg.norm(u)
    uv = project(j, camera_intrinsics(width, height, fov_deg))
    return {
        "pelvis_depth_m": float(j[0, 0, 2]),
        "lateral": float(j[0, 0, 0] / j[0, 0, 2]),
        "tilt_deg": float(np.degrees(np.arctan2(-u[2], -u[1]))),  # positive: camera looking down
        "roll_deg": float(np.degrees(np.arctan2(u[0], -u[1]))),
        "camera_height_m": float(np.median(-(j[:, FEET] @ u).max(axis=1))),
        "height_in_frame": float(np.median((uv[..., 1].max(1) - uv[..., 1].min(1)) / height)),
    }
