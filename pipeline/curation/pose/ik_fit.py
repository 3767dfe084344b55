"""Fit SMPL joint rotations and root translation to target joints (inverse kinematics): the embedded pose backend's
SMPL fit (Sec. 3.1, App. B).

Backends that see joints, not SMPL parameters (MediaPipe's landmarks, through
``joint_map.py``), need the paper's pose representation (Sec. 3.1): per-frame
axis-angle rotations of the 24 SMPL joints plus a root translation, whose
forward kinematics on the *neutral* skeleton gives the joints 4DMoT learns
from. This module finds them for a whole clip at once:

1. a closed-form start (``initial_pose``): each bone swung from its rest
   direction onto the target bone direction, parents first (a Kabsch fit where
   a joint has several children, e.g. the root), hips and shoulders twisted so
   that knees and elbows bend about their hinge axes;
2. the root translation (``solve_translation``) from 2D keypoints and the known
   camera by a small linear least-squares per frame;
3. a fixed number of L-BFGS steps on all frames together, minimising
   - the 3D distance to the target joints (centred: only the shape counts when
     the targets are hip-centred, as MediaPipe's are; then the targets are
     first scaled to the neutral skeleton's size), weighted per joint,
   - the 2D reprojection error through the camera (in metres at the joint's
     depth, Huber-robust), weighted per joint,
   - priors: L2 on the body rotations (more on the collars), knees and elbows
     flexing only about their hinge axis and never backwards,
   - temporal smoothness: the acceleration of the joints between frames,
   and, when ``IKSettings.fit_bone_scales`` is on, a per-clip body shape:
   one length scale per bone group (``BONE_GROUPS``: thigh, shin, upper arm,
   forearm, ..., left and right shared) applied to the rest skeleton's bone
   offsets, solved from all frames together with the pose under a log-normal
   prior around 1 (``weight_bone_scale``). No SMPL shape space is needed (the
   project ships no SMPL model file with shape blend shapes): the scales act
   on the FK skeleton directly. The clip's fitted skeleton is returned as
   ``IKResult.rest_joints``; ``IKResult.joints`` stay the neutral-skeleton FK
   of the fitted pose (what the paper's 4DMoT learns from, Sec. 3.1) and
   ``IKResult.shaped_joints`` are the FK on the clip's own skeleton.

Coordinates are the OpenCV camera frame (+x right, +y down, +z forward) and
metres; joints 10, 11, 15, 22, 23 are leaves whose rotation moves no joint, so
they stay zero. ``forward_kinematics(pose, transl=transl)`` of the result gives
``IKResult.joints`` exactly.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle

from models.motion.skeleton import NUM_JOINTS, SMPL_NEUTRAL_REST_JOINTS, SMPL_PARENTS, forward_kinematics

LEAF_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in SMPL_PARENTS)
_CHILDREN: tuple[tuple[int, ...], ...] = tuple(
    tuple(c for c, p in enumerate(SMPL_PARENTS) if p == j) for j in range(NUM_JOINTS)
)
# Hinge joints -> the local axis they flex about (positive angle = natural bend): knees bend
# backwards about +x, the left elbow forwards about -y, the right elbow about +y.
_HINGES: dict[int, tuple[float, float, float]] = {
    4: (1.0, 0.0, 0.0),
    5: (1.0, 0.0, 0.0),
    18: (0.0, -1.0, 0.0),
    19: (0.0, 1.0, 0.0),
}
_MIN_BEND_SIN = 0.1  # a limb bent less than ~6 degrees shows no usable hinge plane
_COLLARS = (13, 14)
# Bones whose lengths set the body's size: (parent, child) among directly marked joints.
_SIZE_BONES = ((1, 4), (2, 5), (4, 7), (5, 8), (16, 18), (17, 19), (18, 20), (19, 21), (1, 2))
# Per-clip body shape: each group's bones (named by their child joint) share one length scale.
BONE_GROUPS: dict[str, tuple[int, ...]] = {
    "hip_width": (1, 2),  # pelvis -> hips
    "thigh": (4, 5),
    "shin": (7, 8),
    "foot": (10, 11),
    "spine": (3, 6, 9),  # pelvis -> spine1 -> spine2 -> spine3
    "neck_head": (12, 15),
    "collar": (13, 14),  # spine3 -> collars
    "shoulder_width": (16, 17),  # collars -> shoulders
    "upper_arm": (18, 19),
    "forearm": (20, 21),
    "hand": (22, 23),
}


@dataclass(frozen=True)
class IKSettings:
    """Weights and iteration count of the fit (residuals are in metres, divided by ``sigma``)."""

    iterations: int = 40  # L-BFGS iterations over the whole clip
    sigma: float = 0.02  # metres: a residual of this size costs 1
    weight_3d: float = 1.0
    weight_2d: float = 1.0
    huber_2d: float = 0.05  # metres at the joint's depth: larger 2D residuals count linearly
    weight_pose: float = 0.05  # per rad^2 of body rotation
    weight_collar: float = 1.0  # per rad^2 of collar rotation (collars barely move)
    weight_hinge: float = 100.0  # per rad^2 of knee/elbow rotation the wrong way or off the hinge axis
    weight_smooth: float = 0.05  # per (sigma)^2 of joint acceleration between frames
    # Also fit one length scale per BONE_GROUPS entry for the whole clip. Off: on the real videos it
    # measured no gain against NLF (MediaPipe's depth, not bone length, limits; bench/results/curation_real.md).
    fit_bone_scales: bool = False
    weight_bone_scale: float = 100.0  # per clip, per (log scale)^2 of each group: 10% longer costs ~1 frame-unit

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"IKSettings.iterations must be >= 0, got {self.iterations}")
        if self.sigma <= 0 or self.huber_2d <= 0:
            raise ValueError("IKSettings.sigma and huber_2d must be positive")
        if self.weight_bone_scale <= 0:
            raise ValueError(f"IKSettings.weight_bone_scale must be positive, got {self.weight_bone_scale}")


@dataclass
class IKTargets:
    """What to fit, for T frames of one clip.

    ``joints3d`` are compared after centring (shape only) unless ``absolute`` is
    set; then they are camera-frame positions and no 2D is needed. Without
    ``absolute``, the translation comes from ``keypoints2d`` and ``intrinsics``.
    ``new_segment[t]`` is True where frame t does not follow frame t-1 (no
    smoothness across it); None means one continuous run.
    """

    joints3d: np.ndarray  # (T, 24, 3) metres
    weight3d: np.ndarray  # (T, 24) >= 0
    keypoints2d: np.ndarray | None = None  # (T, 24, 2) pixels
    weight2d: np.ndarray | None = None  # (T, 24) >= 0
    intrinsics: np.ndarray | None = None  # (3, 3)
    absolute: bool = False
    new_segment: np.ndarray | None = None  # (T,) bool

    def validate(self) -> "IKTargets":
        t = self.joints3d.shape[0] if self.joints3d.ndim == 3 else -1
        _check("joints3d", self.joints3d, (t, NUM_JOINTS, 3))
        _check("weight3d", self.weight3d, (t, NUM_JOINTS))
        if self.keypoints2d is not None or self.weight2d is not None or self.intrinsics is not None:
            _check("keypoints2d", self.keypoints2d, (t, NUM_JOINTS, 2))
            _check("weight2d", self.weight2d, (t, NUM_JOINTS))
            _check("intrinsics", self.intrinsics, (3, 3))
        elif not self.absolute:
            raise ValueError(
                "IKTargets: centred 3D joints fix no translation; give keypoints2d, weight2d and "
                "intrinsics, or set absolute=True for camera-frame joints"
            )
        if self.new_segment is not None:
            _check("new_segment", self.new_segment, (t,))
        for name in ("joints3d", "weight3d", "keypoints2d", "weight2d"):
            value = getattr(self, name)
            if value is not None and not np.all(np.isfinite(value)):
                raise ValueError(f"IKTargets.{name} must be finite (drop frames without a person first)")
        return self


@dataclass
class IKResult:
    """The fitted SMPL parameters and their joints (camera frame, metres).

    Residuals are measured on the skeleton the fit used (``rest_joints``: the
    neutral one unless bone scales were fitted).
    """

    pose: np.ndarray  # (T, 24, 3) float32 axis-angle, joint 0 the global orientation
    transl: np.ndarray  # (T, 3) float32
    joints: np.ndarray  # (T, 24, 3) float32, forward_kinematics(pose, transl=transl): neutral skeleton
    residual3d: np.ndarray  # (T, 24) float32 metres (neutral size), after centring unless absolute
    residual2d: np.ndarray  # (T, 24) float32 metres at the joint's depth; zeros without 2D
    scale: float  # neutral skeleton size / target size, applied to the 3D targets
    rest_joints: np.ndarray  # (24, 3) float32: the skeleton fitted (the given one x bone_scales)
    bone_scales: dict[str, float]  # BONE_GROUPS name -> fitted length scale (all 1.0 when not fitted)
    shaped_joints: np.ndarray  # (T, 24, 3) float32, forward_kinematics(pose, rest_joints, transl)


def _check(name: str, value: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if not isinstance(value, np.ndarray) or value.shape != shape:
        got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"IKTargets.{name} must be an array of shape {shape}, got {got}")


# --------------------------------------------------------------------------- closed-form start


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotation matrices (N, 3, 3) turning directions a (N, 3) onto b (N, 3)."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    # Opposite directions: any axis perpendicular to a (crossed with its smallest basis direction).
    least = torch.nn.functional.one_hot(a.abs().argmin(-1), 3).to(a.dtype)
    fallback = torch.cross(a, least, dim=-1)
    axis = torch.where(sin < 1e-9, fallback, axis)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return axis_angle_to_rotation_matrix(axis * angle)


def _kabsch(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rotations R (N, 3, 3) minimising sum |R s_i - t_i|^2 for point sets (N, k, 3), not centred."""
    h = source.transpose(-1, -2) @ target  # (N, 3, 3)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    return vt.transpose(-1, -2) @ fix @ u.transpose(-1, -2)


def _twist_to_hinge(
    swing: torch.Tensor, bone: torch.Tensor, axis: torch.Tensor, normal: torch.Tensor
) -> torch.Tensor:
    """Add the twist about ``bone`` (N, 3) that turns the swung hinge ``axis`` (3,) onto the limb
    plane's ``normal`` (N, 3), within +-90 degrees (a larger one would mean a reversed bend);
    frames where the limb is nearly straight (small normal) keep the swing alone."""
    bone = bone / bone.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    current = swing @ axis
    sin = (torch.cross(current, normal, dim=-1) * bone).sum(-1)
    cos = (current * normal).sum(-1)
    angle = torch.atan2(sin, cos)
    angle = torch.where(angle > torch.pi / 2, angle - torch.pi, angle)
    angle = torch.where(angle < -torch.pi / 2, angle + torch.pi, angle)
    bent = normal.norm(dim=-1) > _MIN_BEND_SIN
    angle = torch.where(bent, angle, torch.zeros_like(angle))
    return axis_angle_to_rotation_matrix(bone * angle.unsqueeze(-1)) @ swing


def initial_pose(joints: np.ndarray, rest_joints: np.ndarray = SMPL_NEUTRAL_REST_JOINTS) -> np.ndarray:
    """Closed-form SMPL pose (T, 24, 3) pointing every bone of the rest skeleton along the
    target's (T, 24, 3) bones, parents first: a minimal swing for a joint with one child, a
    Kabsch fit over the children for the others (the root: hips and spine1). Hips and
    shoulders also twist so that the knee / elbow below them bends about its hinge axis.
    Exact for targets made by forward kinematics of the same rest skeleton with hinge-like
    knees and elbows."""
    target = torch.as_tensor(np.asarray(joints), dtype=torch.float64)
    rest = torch.as_tensor(rest_joints, dtype=torch.float64)
    n = target.shape[0]
    local = torch.eye(3, dtype=torch.float64).repeat(n, NUM_JOINTS, 1, 1)
    world: list[torch.Tensor] = [torch.empty(0)] * NUM_JOINTS
    hinge_below = {SMPL_PARENTS[h]: h for h in _HINGES}

    for j in range(NUM_JOINTS):
        parent_rot = world[SMPL_PARENTS[j]] if j > 0 else torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
        children = _CHILDREN[j]
        if children:
            offsets = (rest[list(children)] - rest[j]).expand(n, -1, -1)  # (n, k, 3)
            wanted = (target[:, list(children)] - target[:, j : j + 1]) @ parent_rot  # parent frame
            if len(children) == 1:
                local[:, j] = _rotation_between(offsets[:, 0], wanted[:, 0])
            else:
                local[:, j] = _kabsch(offsets, wanted)
            if j in hinge_below:
                hinge = hinge_below[j]
                (below,) = _CHILDREN[hinge]
                upper = wanted[:, 0] / wanted[:, 0].norm(dim=-1, keepdim=True).clamp_min(1e-9)
                lower = ((target[:, below] - target[:, hinge]).unsqueeze(1) @ parent_rot)[:, 0]
                lower = lower / lower.norm(dim=-1, keepdim=True).clamp_min(1e-9)
                normal = torch.cross(upper, lower, dim=-1)
                axis = torch.tensor(_HINGES[hinge], dtype=torch.float64)
                local[:, j] = _twist_to_hinge(local[:, j], upper, axis, normal)
        world[j] = parent_rot @ local[:, j]
    pose = rotation_matrix_to_axis_angle(local.reshape(-1, 3, 3).float()).reshape(n, NUM_JOINTS, 3)
    return pose.numpy()


def solve_translation(
    joints: np.ndarray, keypoints2d: np.ndarray, weights: np.ndarray, intrinsics: np.ndarray
) -> np.ndarray:
    """Translations t (T, 3) that best project ``joints + t`` onto ``keypoints2d`` (pixels).

    Per frame and joint, u - cx = fx (X + tx) / (Z + tz) is linear in t after
    multiplying out: fx tx - (u - cx) tz = (u - cx) Z - fx X, the same for y. The
    weighted normal equations (3 x 3 per frame) are solved in one batch.
    """
    joints = np.asarray(joints, np.float64)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    du = keypoints2d[..., 0] - cx
    dv = keypoints2d[..., 1] - cy
    zeros, ones = np.zeros_like(du), np.ones_like(du)
    rows_u = np.stack([fx * ones, zeros, -du], -1)  # (T, J, 3)
    rows_v = np.stack([zeros, fy * ones, -dv], -1)
    a = np.concatenate([rows_u, rows_v], axis=1)
    b = np.concatenate([du * joints[..., 2] - fx * joints[..., 0], dv * joints[..., 2] - fy * joints[..., 1]], 1)
    w = np.concatenate([weights, weights], axis=1)[..., None]
    normal = np.einsum("tji,tjk->tik", a * w, a) + 1e-9 * np.eye(3)
    rhs = np.einsum("tji,tj->ti", a * w, b)
    return np.linalg.solve(normal, rhs[..., None])[..., 0]


# --------------------------------------------------------------------------- the fit


def body_size_scale(
    joints3d: np.ndarray, weights: np.ndarray, rest_joints: np.ndarray = SMPL_NEUTRAL_REST_JOINTS
) -> float:
    """Neutral skeleton size / target size: ratio of summed bone lengths, median over frames."""
    parent, child = np.array(_SIZE_BONES).T
    rest_length = np.linalg.norm(rest_joints[child] - rest_joints[parent], axis=-1).sum()
    target_length = np.linalg.norm(joints3d[:, child] - joints3d[:, parent], axis=-1).sum(-1)
    seen = np.min(np.stack([weights[:, child], weights[:, parent]]), axis=0).min(-1) > 0
    lengths = target_length[seen] if seen.any() else target_length
    if lengths.size == 0 or np.median(lengths) <= 0:
        return 1.0
    return float(rest_length / np.median(lengths))


def scaled_skeleton(rest_joints: torch.Tensor | np.ndarray, log_scales: torch.Tensor) -> torch.Tensor:
    """Rest joints (24, 3) whose bone offsets are multiplied by exp(log_scales[g]) for each
    ``BONE_GROUPS`` group g (in dict order), parents first; the root stays where it is.
    Differentiable in ``log_scales`` (G,)."""
    rest = torch.as_tensor(rest_joints, dtype=log_scales.dtype)
    factor = torch.ones(NUM_JOINTS, dtype=log_scales.dtype)
    index = torch.zeros(NUM_JOINTS, dtype=torch.long)
    grouped = torch.zeros(NUM_JOINTS, dtype=torch.bool)
    for g, children in enumerate(BONE_GROUPS.values()):
        index[list(children)] = g
        grouped[list(children)] = True
    factor = torch.where(grouped, torch.exp(log_scales)[index], factor)
    joints = [rest[0]]
    for j in range(1, NUM_JOINTS):
        p = SMPL_PARENTS[j]
        joints.append(joints[p] + factor[j] * (rest[j] - rest[p]))
    return torch.stack(joints)


def _centred(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    w = weights.unsqueeze(-1)
    centre = (points * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp_min(1e-9)
    return points - centre


def _pose_prior(pose: torch.Tensor, settings: IKSettings) -> torch.Tensor:
    """Per-frame prior cost: L2 on body rotations, extra on collars, hinge terms on knees/elbows."""
    body = pose[:, 1:]
    cost = settings.weight_pose * (body**2).sum((-1, -2))
    cost = cost + settings.weight_collar * (pose[:, list(_COLLARS)] ** 2).sum((-1, -2))
    hinge = torch.zeros_like(cost)
    for joint, axis in _HINGES.items():
        axis_t = torch.tensor(axis, dtype=pose.dtype)
        flex = pose[:, joint] @ axis_t
        off_axis = pose[:, joint] - flex.unsqueeze(-1) * axis_t
        hinge = hinge + torch.relu(-flex) ** 2 + (off_axis**2).sum(-1)
    return cost + settings.weight_hinge * hinge


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: the fit's tensors are small, and two threads on a busy 2-core
    machine made it 5-10x slower and erratic (measured 1.6 s vs 9-19 s for 653 frames)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_smpl(
    targets: IKTargets,
    settings: IKSettings = IKSettings(),
    rest_joints: np.ndarray = SMPL_NEUTRAL_REST_JOINTS,
) -> IKResult:
    """Fit SMPL pose and translation to ``targets`` over a whole clip (see the module docstring)."""
    targets.validate()
    with _one_thread():
        return _fit(targets, settings, rest_joints)


@dataclass
class _Problem:
    """The fit's targets as float64 tensors (3D targets already scaled to the neutral size)."""

    target3d: torch.Tensor  # (T, 24, 3)
    weight3d: torch.Tensor  # (T, 24)
    absolute: bool
    keypoints: torch.Tensor | None  # (T, 24, 2) pixels
    weight2d: torch.Tensor | None  # (T, 24)
    focal: torch.Tensor | None  # (2,)
    centre: torch.Tensor | None  # (2,)
    smooth_mask: torch.Tensor  # (T - 2,)
    rest: torch.Tensor  # (24, 3) the given skeleton; the fit scales its bones by exp(log_scales)

    @classmethod
    def from_targets(cls, targets: IKTargets, scale: float, rest_joints: np.ndarray) -> "_Problem":
        def tensor(value: np.ndarray | None) -> torch.Tensor | None:
            return None if value is None else torch.as_tensor(value, dtype=torch.float64)

        k = tensor(targets.intrinsics)
        return cls(
            target3d=tensor(targets.joints3d * scale),
            weight3d=tensor(targets.weight3d),
            absolute=targets.absolute,
            keypoints=tensor(targets.keypoints2d),
            weight2d=tensor(targets.weight2d),
            focal=None if k is None else torch.stack([k[0, 0], k[1, 1]]),
            centre=None if k is None else torch.stack([k[0, 2], k[1, 2]]),
            smooth_mask=_smooth_mask(targets.new_segment, targets.joints3d.shape[0]),
            rest=tensor(rest_joints),
        )

    def residuals(self, pose: torch.Tensor, transl: torch.Tensor, log_scales: torch.Tensor):
        """Joints (T, 24, 3), 3D residuals (T, 24, 3) and 2D residuals (T, 24, 2) in metres (or None)."""
        joints = forward_kinematics(pose, scaled_skeleton(self.rest, log_scales), transl)
        if self.absolute:
            r3 = joints - self.target3d
        else:
            r3 = _centred(joints, self.weight3d) - _centred(self.target3d, self.weight3d)
        r2 = None
        if self.keypoints is not None:
            depth = joints[..., 2:].clamp_min(0.1)
            projected = self.focal * joints[..., :2] / depth + self.centre
            r2 = (projected - self.keypoints) / self.focal * depth.detach()  # pixels -> metres at depth
        return joints, r3, r2

    def cost(
        self, pose: torch.Tensor, transl: torch.Tensor, log_scales: torch.Tensor, settings: IKSettings
    ) -> torch.Tensor:
        """The objective of the module docstring, averaged over frames (the shape prior once per clip)."""
        joints, r3, r2 = self.residuals(pose, transl, log_scales)
        inv_sigma2 = 1.0 / settings.sigma**2
        cost = settings.weight_3d * inv_sigma2 * (self.weight3d * (r3**2).sum(-1)).sum(-1)
        if r2 is not None:
            norm = torch.sqrt((r2**2).sum(-1) + 1e-12)
            delta = settings.huber_2d
            huber = torch.where(norm < delta, norm**2, 2 * delta * norm - delta**2)
            cost = cost + settings.weight_2d * inv_sigma2 * (self.weight2d * huber).sum(-1)
        total = (cost + _pose_prior(pose, settings)).sum()
        if len(self.smooth_mask) and settings.weight_smooth > 0:
            accel = joints[2:] - 2 * joints[1:-1] + joints[:-2]
            roughness = ((accel**2).sum((-1, -2)) * self.smooth_mask).sum()
            total = total + settings.weight_smooth * inv_sigma2 * roughness
        return total / pose.shape[0] + settings.weight_bone_scale * (log_scales**2).sum()


_FREE_JOINTS = [j for j in range(NUM_JOINTS) if j not in LEAF_JOINTS]


def _with_leaves(free_values: torch.Tensor) -> torch.Tensor:
    """(T, 19, 3) rotations of the non-leaf joints -> (T, 24, 3) with zero leaf rotations."""
    pose = free_values.new_zeros(free_values.shape[0], NUM_JOINTS, 3)
    pose[:, _FREE_JOINTS] = free_values
    return pose


def _fit(targets: IKTargets, settings: IKSettings, rest_joints: np.ndarray) -> IKResult:
    """Closed-form start, translation, then L-BFGS on the summed per-frame costs."""
    num_frames = targets.joints3d.shape[0]
    scale = 1.0 if targets.absolute else body_size_scale(targets.joints3d, targets.weight3d, rest_joints)
    problem = _Problem.from_targets(targets, scale, rest_joints)

    start = torch.as_tensor(initial_pose(targets.joints3d * scale, rest_joints), dtype=torch.float64)
    start = _with_leaves(start[:, _FREE_JOINTS])
    with torch.no_grad():
        posed = forward_kinematics(start, problem.rest)
    if targets.keypoints2d is not None:
        transl0 = solve_translation(posed.numpy(), targets.keypoints2d, targets.weight2d, targets.intrinsics)
    else:
        transl0 = (problem.target3d[:, 0] - posed[:, 0]).numpy()

    free_pose = start[:, _FREE_JOINTS].clone().requires_grad_(True)
    transl = torch.as_tensor(transl0, dtype=torch.float64).clone().requires_grad_(True)
    log_scales = torch.zeros(len(BONE_GROUPS), dtype=torch.float64, requires_grad=settings.fit_bone_scales)
    variables = [free_pose, transl] + ([log_scales] if settings.fit_bone_scales else [])
    optimizer = torch.optim.LBFGS(
        variables, lr=1.0, max_iter=max(settings.iterations, 1), line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = problem.cost(_with_leaves(free_pose), transl, log_scales, settings)
        total.backward()
        return total

    if settings.iterations > 0 and num_frames > 0:
        optimizer.step(closure)

    with torch.no_grad():
        pose = _with_leaves(free_pose).float()
        translation = transl.float()
        shaped, r3, r2 = problem.residuals(pose.double(), translation.double(), log_scales)
        joints = forward_kinematics(pose, rest_joints, translation)
        skeleton = scaled_skeleton(problem.rest, log_scales).float()
    residual2d = r2.norm(dim=-1) if r2 is not None else torch.zeros(num_frames, NUM_JOINTS)
    return IKResult(
        pose=pose.numpy(),
        transl=translation.numpy(),
        joints=joints.numpy(),
        residual3d=r3.norm(dim=-1).float().numpy(),
        residual2d=residual2d.float().numpy(),
        scale=scale,
        rest_joints=skeleton.numpy(),
        bone_scales={name: float(np.exp(v)) for name, v in zip(BONE_GROUPS, log_scales.detach().numpy())},
        shaped_joints=shaped.float().numpy(),
    )


def _smooth_mask(new_segment: np.ndarray | None, num_frames: int) -> torch.Tensor:
    """(T-2,) 1 where frames t, t+1, t+2 are one continuous run, else 0."""
    if num_frames < 3:
        return torch.zeros(max(num_frames - 2, 0), dtype=torch.float64)
    if new_segment is None:
        return torch.ones(num_frames - 2, dtype=torch.float64)
    breaks = np.asarray(new_segment, bool)
    ok = ~(breaks[1:-1] | breaks[2:])
    return torch.as_tensor(ok, dtype=torch.float64)
