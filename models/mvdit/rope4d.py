"""4D rotary position encodings for motion and vision tokens (paper Sec. 3.2, Eq. 1 and 4, App. F, Alg. 1).

Every token gets a 4D position (t, x, y, z):

- motion token (frame t, joint j): t = latent frame index, (x, y, z) = joint j of
  the dataset-mean skeleton, centred on its own joint average and multiplied by
  ``position_scale`` (Alg. 1). Tokens are frame-major: index ``t * J + j``.
- vision token (frame t, row h, column w): t, x = h, y = w, z = 0 (App. F: "we use
  the image height and width as the x and y coordinates, respectively"). With
  ``vision_xy="wh"`` the pairing is x = w, y = h instead, which matches the camera
  frame of the joints (x right, y down); the paper's "hw" is the default.

Each axis gets its own block of the head dimension and a 1D RoPE over it (Eq. 1);
the blocks are concatenated in axis order t | x | y | z (Eq. 4). A rotation by an
axis whose position is 0 is the identity, so the z block of a vision token leaves
it exactly as a 3D (t, h, w) RoPE would (the paper's "z = 0" argument).

Pairing: Eq. 1 rotates the pair (x_{2i}, x_{2i+1}) by angle m * theta^(-2i/d),
where d is the width of the axis block (Alg. 1 calls ``RoPE(t, D/4)``). Tables
are therefore *interleaved*: ``cos[..., 2i] == cos[..., 2i+1]``, as in the
released code (diffusers' ``repeat_interleave_real=True`` layout).

Units (the one place they are fixed): the project passes joints in metres and
every layout multiplies them by ``MOTION_POSITION_SCALE`` = 1000, i.e. the motion
RoPE sees millimetres, the unit of the released code (its ``mean.npy`` skeleton,
unscaled). The paper does not state a unit. The unit decides whether the spatial
blocks see the skeleton at all: with theta 10000 and D/4 = 16 channels per axis
the pair frequencies are 10000^(-i/8) = 1, 0.32, 0.1, ... 3e-4 rad per unit. The
mean skeleton spans about 0.34 x 1.09 x 0.17 m, so in metres only 1, 2 and 0 of
the 8 pairs of x, y, z turn two joints more than 0.3 rad apart (the depth block
is blind); in millimetres 7, 8 and 6 do (``tests/test_rope4d.py``).

Vision positions are latent-patch indices (integers: row h, column w, latent
frame t), the unit of the backbone's own 3D RoPE (CogVideoX, Wan) and of the
release's query table: adjacent patches differ by 1, so every block separates
the patches of a 30 x 45 or 60 x 104 grid, and the pretrained self-attention's
positions stay as they were. The two streams' units are not converted into each
other (a patch is ~16 px, not a distance on the body): the paper shares only the
(t, x, y, z) layout of the channels, and the motion attention learns how query
and key rotations relate; both share the time unit (latent frame index).

Positional-encoding variants of the paper's Table 2 (``pe``) and how each splits
the head dimension D among the axes it uses (``split_head_dim``: even blocks,
the first axis takes the remainder; ``axis_dims`` overrides it):

==============  =========================  ==========================================
pe              axes (motion / vision)     head-dim split (D = 64)
==============  =========================  ==========================================
"4d"            t x y z / t h w 0          D/4 each: 16 16 16 16 (default)
"dynamic"       as "4d", but x y z are the clip's first-frame joints, not the mean
"1d_temporal"   t / t                      all of D: 64
"2d_spatial"    x y / h w                  D/2 each: 32 32
"3d_spatial"    x y z / h w 0              24 20 20
"learnable"     none: a trained embedding is added to motion tokens (no RoPE)
"none"          no positional information
==============  =========================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import nn

PEVariant = Literal["4d", "dynamic", "learnable", "1d_temporal", "2d_spatial", "3d_spatial", "none"]
Axis = Literal["t", "x", "y", "z"]

AXES_4D: tuple[Axis, ...] = ("t", "x", "y", "z")
# Column of each axis in a (..., 4) position array.
AXIS_INDEX: dict[str, int] = {"t": 0, "x": 1, "y": 2, "z": 3}
# Axes that carry a rotation in each Table 2 variant; () means no RoPE.
PE_AXES: dict[str, tuple[Axis, ...]] = {
    "4d": AXES_4D,
    "dynamic": AXES_4D,
    "1d_temporal": ("t",),
    "2d_spatial": ("x", "y"),
    "3d_spatial": ("x", "y", "z"),
    "learnable": (),
    "none": (),
}

RopeTable = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (..., N, D)

# Joints come in metres; x1000 = millimetres, the release's RoPE unit (module docstring "Units").
MOTION_POSITION_SCALE = 1000.0


def split_head_dim(head_dim: int, num_axes: int) -> tuple[int, ...]:
    """Split ``head_dim`` into ``num_axes`` even blocks, as equal as possible.

    The first axis (time, when used) takes the remainder, as Wan's 3D RoPE does:
    64 over 4 axes -> (16, 16, 16, 16); 64 over 3 -> (24, 20, 20).
    """
    if num_axes < 1:
        raise ValueError(f"num_axes must be >= 1, got {num_axes}")
    base = 2 * (head_dim // (2 * num_axes))
    if head_dim % 2 or base == 0:
        raise ValueError(
            f"head_dim={head_dim} cannot be split into {num_axes} even, non-empty RoPE blocks"
        )
    return (head_dim - (num_axes - 1) * base,) + (base,) * (num_axes - 1)


def _resolve_axis_dims(
    head_dim: int, axes: tuple[str, ...], axis_dims: tuple[int, ...] | None
) -> tuple[int, ...]:
    unknown = [a for a in axes if a not in AXIS_INDEX]
    if not axes or unknown:
        raise ValueError(f"axes must be a non-empty subset of {AXES_4D}, got {axes}")
    if axis_dims is None:
        return split_head_dim(head_dim, len(axes))
    dims = tuple(int(d) for d in axis_dims)
    if len(dims) != len(axes) or sum(dims) != head_dim or any(d <= 0 or d % 2 for d in dims):
        raise ValueError(
            f"axis_dims={dims} must give one positive even width per axis {axes} "
            f"and sum to head_dim={head_dim}"
        )
    return dims


def rope_1d(
    positions: torch.Tensor, dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32
) -> RopeTable:
    """Eq. 1: cos/sin tables of a 1D RoPE of width ``dim`` at ``positions``.

    positions (..., N) (any real values) -> cos, sin (..., N, dim), interleaved:
    entries 2i and 2i+1 both hold the angle ``position * theta ** (-2i / dim)``.
    Angles are computed in float64 (millimetre positions reach ~1e3 rad).
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f"RoPE width must be positive and even, got dim={dim}")
    pos = torch.as_tensor(positions).to(torch.float64)
    inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
    angles = (pos[..., None] * inv_freq).repeat_interleave(2, dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope_from_positions(
    positions: torch.Tensor,
    head_dim: int,
    theta: float = 10000.0,
    axes: tuple[str, ...] = AXES_4D,
    axis_dims: tuple[int, ...] | None = None,
) -> RopeTable:
    """Eq. 4: concatenated per-axis 1D RoPE of (..., N, 4) positions (t, x, y, z) -> (..., N, head_dim)."""
    positions = torch.as_tensor(positions)
    if positions.shape[-1] != 4:
        raise ValueError(f"positions must have shape (..., N, 4) = (t, x, y, z), got {tuple(positions.shape)}")
    dims = _resolve_axis_dims(head_dim, axes, axis_dims)
    tables = [rope_1d(positions[..., AXIS_INDEX[a]], d, theta) for a, d in zip(axes, dims)]
    return torch.cat([c for c, _ in tables], -1), torch.cat([s for _, s in tables], -1)


def _as_joints(joints: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    joints = torch.as_tensor(joints, dtype=torch.float64)
    if joints.ndim not in (2, 3) or joints.shape[-1] != 3 or joints.shape[-2] == 0:
        raise ValueError(f"{name} must have shape (J, 3) or (B, J, 3), got {tuple(joints.shape)}")
    return joints


def motion_positions_4d(
    mean_joints: torch.Tensor | np.ndarray, num_frames: int, position_scale: float = 1.0
) -> torch.Tensor:
    """(t, x, y, z) of every motion token, frame-major: (J, 3) or (B, J, 3) -> (..., T*J, 4)."""
    joints = _as_joints(mean_joints, "mean_joints")
    centred = (joints - joints.mean(dim=-2, keepdim=True)) * position_scale
    *batch, J, _ = centred.shape
    t = torch.arange(num_frames, dtype=torch.float64).view(num_frames, 1, 1).expand(*batch, num_frames, J, 1)
    xyz = centred.unsqueeze(-3).expand(*batch, num_frames, J, 3)
    return torch.cat([t, xyz], -1).reshape(*batch, num_frames * J, 4)


def vision_positions_4d(
    num_frames: int, height: int, width: int, vision_xy: Literal["hw", "wh"] = "hw"
) -> torch.Tensor:
    """(t, x, y, z=0) of every vision token, order (t, h, w) row-major -> (T*H*W, 4).

    ``vision_xy="hw"``: x = row h, y = column w (App. F); ``"wh"``: x = w, y = h.
    """
    if vision_xy not in ("hw", "wh"):
        raise ValueError(f"vision_xy must be 'hw' or 'wh', got {vision_xy!r}")
    t, h, w = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float64) for n in (num_frames, height, width)), indexing="ij"
    )
    x, y = (h, w) if vision_xy == "hw" else (w, h)
    return torch.stack([t, x, y, torch.zeros_like(t)], -1).reshape(-1, 4)


def motion_rope_4d(
    mean_joints: torch.Tensor | np.ndarray,
    num_frames: int,
    head_dim: int,
    theta: float = 10000.0,
    *,
    position_scale: float = 1.0,
    axes: tuple[str, ...] = AXES_4D,
    axis_dims: tuple[int, ...] | None = None,
) -> RopeTable:
    """Alg. 1: 4D RoPE of motion tokens. (J, 3) -> cos, sin (T*J, D); (B, J, 3) -> (B, T*J, D).

    ``mean_joints`` are the dataset-mean joints (or, for the "dynamic" variant,
    each clip's first-frame joints); ``axes``/``axis_dims`` select a Table 2 variant.
    """
    joints = _as_joints(mean_joints, "mean_joints")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    dims = _resolve_axis_dims(head_dim, axes, axis_dims)
    *batch, J, _ = joints.shape
    # 1. Spatial coordinates per joint, time indices per latent frame.
    coords = {"x": joints[..., 0], "y": joints[..., 1], "z": joints[..., 2]}
    t = torch.arange(num_frames, dtype=torch.float64)
    # 2. Centralise each spatial axis over the joints (then scale to the RoPE unit).
    coords = {a: (c - c.mean(dim=-1, keepdim=True)) * position_scale for a, c in coords.items()}
    cos_parts, sin_parts = [], []
    for axis, dim in zip(axes, dims):
        if axis == "t":
            # 3. RoPE(t, d): (T, d). 4. Broadcast over joints: (..., T, J, d).
            cos, sin = rope_1d(t, dim, theta)
            cos, sin = (a[:, None, :].expand(*batch, num_frames, J, dim) for a in (cos, sin))
        else:
            # 3. RoPE(axis, d): (..., J, d). 5. Broadcast over frames: (..., T, J, d).
            cos, sin = rope_1d(coords[axis], dim, theta)
            cos, sin = (a.unsqueeze(-3).expand(*batch, num_frames, J, dim) for a in (cos, sin))
        cos_parts.append(cos)
        sin_parts.append(sin)
    # 6. Concatenate along channels and flatten (T, J) frame-major: token t * J + j.
    cos = torch.cat(cos_parts, -1).reshape(*batch, num_frames * J, head_dim)
    sin = torch.cat(sin_parts, -1).reshape(*batch, num_frames * J, head_dim)
    return cos, sin


def vision_rope_4d(
    num_frames: int,
    height: int,
    width: int,
    head_dim: int,
    theta: float = 10000.0,
    *,
    axes: tuple[str, ...] = AXES_4D,
    axis_dims: tuple[int, ...] | None = None,
    vision_xy: Literal["hw", "wh"] = "hw",
) -> RopeTable:
    """4D RoPE of vision tokens at (t, h, w) with z = 0 -> cos, sin (T*H*W, D).

    With the same ``axes``/``axis_dims`` as ``motion_rope_4d`` a vision token and a
    motion token at the same (t, x, y, 0) get identical tables. Passing
    ``axes=("t", "x", "y")`` with the backbone's split (e.g. (16, 24, 24)) gives the
    backbone's own 3D RoPE, as the release does.
    """
    if min(num_frames, height, width) < 1:
        raise ValueError(f"vision grid must be non-empty, got T={num_frames} H={height} W={width}")
    positions = vision_positions_4d(num_frames, height, width, vision_xy)
    return rope_from_positions(positions, head_dim, theta, axes, axis_dims)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x`` (..., N, D) by Eq. 1.

    ``cos``/``sin`` must broadcast against ``x`` (e.g. (N, D) for x (B, heads, N, D),
    or (B, 1, N, D) for per-clip tables). They are cast to ``x``'s dtype.
    """
    if x.shape[-1] % 2 or cos.shape[-1] != x.shape[-1] or sin.shape != cos.shape:
        raise ValueError(
            f"apply_rope: x (..., N, D) with even D and cos/sin (..., N, D) expected, "
            f"got x {tuple(x.shape)}, cos {tuple(cos.shape)}, sin {tuple(sin.shape)}"
        )
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


@dataclass(frozen=True)
class RopeConfig:
    """Which positional encoding the motion attention uses (Table 2) and its constants.

    ``axis_dims``: per-axis widths of the motion (and, unless ``vision_axis_dims``
    is set, vision) tables; None splits the head dim evenly (``split_head_dim``).
    ``vision_axis_dims``: a separate (t, h, w) split with no z block for the vision
    table, i.e. the backbone's own 3D RoPE (release: 7B (16, 24, 24), 17B (44, 42, 42)).
    ``position_scale``: multiplies the centred joints (metres in this project;
    the default ``MOTION_POSITION_SCALE`` gives the release's millimetres).
    """

    pe: PEVariant = "4d"
    theta: float = 10000.0
    position_scale: float = MOTION_POSITION_SCALE
    axis_dims: tuple[int, ...] | None = None
    vision_axis_dims: tuple[int, int, int] | None = None
    vision_xy: Literal["hw", "wh"] = "hw"

    def __post_init__(self) -> None:
        if self.pe not in get_args(PEVariant):
            raise ValueError(f"RopeConfig.pe must be one of {get_args(PEVariant)}, got {self.pe!r}")
        if self.axis_dims is not None and len(self.axis_dims) != len(self.axes):
            raise ValueError(
                f"RopeConfig.axis_dims={self.axis_dims} needs one width per axis {self.axes} of pe={self.pe!r}"
            )
        if self.vision_axis_dims is not None and (self.axes != AXES_4D or len(self.vision_axis_dims) != 3):
            raise ValueError("RopeConfig.vision_axis_dims (t, h, w) applies only to pe='4d' or 'dynamic'")
        if self.vision_xy not in ("hw", "wh"):
            raise ValueError(f"RopeConfig.vision_xy must be 'hw' or 'wh', got {self.vision_xy!r}")
        check_position_scale(self.position_scale)

    @property
    def axes(self) -> tuple[Axis, ...]:
        return PE_AXES[self.pe]

    @property
    def uses_rope(self) -> bool:
        return bool(self.axes)


def check_position_scale(scale: Any, where: str = "motion_position_scale") -> float:
    """A positive number, or an error naming the setting; None marks a config saved before the unit change."""
    if scale is None:
        raise ValueError(
            f"{where} is not set: this MV-DiT config was saved before the 4D RoPE unit became millimetres "
            f"(it trained with the old default 1.0, joints in metres, whose spatial RoPE blocks barely turn). "
            f"Retrain it, or set {where}=1.0 in its config to load it as it was trained "
            f"(the current default is {MOTION_POSITION_SCALE}: metres x 1000 = millimetres, as the release)"
        )
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"{where} must be a positive number (metres -> RoPE unit), got {scale!r}")
    return float(scale)


class RopeTables(NamedTuple):
    """cos/sin tables for the queries (vision) and keys (motion); None when the variant has no RoPE."""

    vision: RopeTable | None
    motion: RopeTable | None


def build_rope_tables(
    cfg: RopeConfig,
    head_dim: int,
    num_frames: int,
    height: int,
    width: int,
    mean_joints: torch.Tensor | np.ndarray | None = None,
    first_frame_joints: torch.Tensor | np.ndarray | None = None,
) -> RopeTables:
    """Both tables for one forward pass; the same latent frame count T is used for both streams.

    ``mean_joints`` (J, 3): dataset-mean joints (``motion_stats``), needed by every
    RoPE variant except "dynamic" (for "1d_temporal" only J is read).
    ``first_frame_joints`` (J, 3) or (B, J, 3): each clip's first frame, for "dynamic".
    """
    if not cfg.uses_rope:
        return RopeTables(None, None)
    joints = first_frame_joints if cfg.pe == "dynamic" else mean_joints
    if joints is None:
        needed = "first_frame_joints" if cfg.pe == "dynamic" else "mean_joints"
        raise ValueError(f"pe={cfg.pe!r} needs {needed} (J, 3) to build the motion RoPE")
    motion = motion_rope_4d(
        joints, num_frames, head_dim, cfg.theta,
        position_scale=cfg.position_scale, axes=cfg.axes, axis_dims=cfg.axis_dims,
    )
    if cfg.vision_axis_dims is not None:
        vision_axes, vision_dims = ("t", "x", "y"), cfg.vision_axis_dims
    else:
        vision_axes, vision_dims = cfg.axes, cfg.axis_dims
    vision = vision_rope_4d(
        num_frames, height, width, head_dim, cfg.theta,
        axes=vision_axes, axis_dims=vision_dims, vision_xy=cfg.vision_xy,
    )
    return RopeTables(vision, motion)


class LearnableMotionPE(nn.Module):
    """Table 2 "learnable PE": a trained embedding added to motion tokens instead of RoPE.

    Factorised as a per-frame plus a per-joint vector, ``frame[t] + joint[j]``
    (max_frames + J rows instead of max_frames * J), initialised N(0, 0.02).
    The paper does not give its form.
    """

    def __init__(self, num_joints: int, max_frames: int, channels: int) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.frame = nn.Parameter(torch.randn(max_frames, channels) * 0.02)
        self.joint = nn.Parameter(torch.randn(num_joints, channels) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T*J, C), frame-major -> tokens + embedding."""
        n, c = tokens.shape[-2:]
        max_frames = self.frame.shape[0]
        if c != self.frame.shape[1] or n % self.num_joints or n // self.num_joints > max_frames:
            raise ValueError(
                f"LearnableMotionPE: tokens (B, T*{self.num_joints}, {self.frame.shape[1]}) with "
                f"T <= max_frames={max_frames} expected, got {tuple(tokens.shape)}"
            )
        frames = n // self.num_joints
        pe = (self.frame[:frames, None, :] + self.joint[None]).reshape(n, c)
        return tokens + pe.to(tokens.dtype)
