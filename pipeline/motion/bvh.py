"""Import BVH files as camera-frame SMPL-24 joints: parser, FK, joint-name maps, units (Sec. 3.1 input).

BVH: the hierarchy and channels are parsed here (no package needed). Each
joint's local transform is its ``OFFSET`` (replaced component-wise by its
``X/Y/Zposition`` channels when it has them, as Blender's importer does) and
the product of its rotation channels in the order listed, in degrees
(``Zrotation Xrotation Yrotation`` means ``R = Rz @ Rx @ Ry``); forward
kinematics composes them down the tree. SMPL-24 joints are then read off the
BVH joints by a name map (`SKELETON_MAPS`: CMU, Mixamo / LAFAN1, Biovision-style
names); a few SMPL joints that a skeleton lacks are points on a bone (e.g. the
CMU collar halfway from the spine to the shoulder). Bone lengths stay the
performer's own (like NLF's non-parametric joints); there is no SMPL pose.
Units: ``units="auto"`` picks, among metres, cm, mm, inches and the CMU unit
(1/0.45 inch, as in the CMU ASF files), the one that makes the rest skeleton's
largest extent closest to 1.7 m within 1.0-2.5 m, and otherwise scales that
extent to 1.7 m (recorded in ``meta``). The y-up (or z-up) world turns into the
camera frame and is placed in view as `pipeline.motion.imported_motion` describes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from models.motion.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES
from pipeline.motion.imported_motion import UP_TO_CAMERA, ImportedMotion, ViewPlacement, place_and_resample

# Metres per file unit, for BVH ``units``.
BVH_UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0254 / 0.45}
REFERENCE_HEIGHT_M = 1.7
PLAUSIBLE_EXTENT_M = (1.0, 2.5)


@dataclass
class BvhSkeleton:
    """A parsed BVH file: joints root-first (parents precede children), end sites named ``<parent>_end``."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # (J, 3) file units
    channels: list[tuple[str, ...]]  # per joint, e.g. ("Xposition", ..., "Zrotation", ...)
    motion: np.ndarray  # (T, total channels), degrees and file units
    frame_time: float  # seconds

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def num_frames(self) -> int:
        return int(len(self.motion))


_CHANNEL_NAMES = {f"{a}{kind}" for a in "XYZ" for kind in ("position", "rotation")}


class _Tokens:
    """Whitespace tokens of a BVH hierarchy with their line numbers, for error messages."""

    def __init__(self, lines: list[str], path: Path) -> None:
        self.items = [(tok, n + 1) for n, line in enumerate(lines) for tok in line.split()]
        self.pos, self.path = 0, path

    def next(self, what: str) -> str:
        if self.pos >= len(self.items):
            raise ValueError(f"{self.path}: BVH hierarchy ends early, expected {what}")
        tok = self.items[self.pos][0]
        self.pos += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.next(repr(word))
        if tok.upper() != word.upper():
            raise ValueError(f"{self.path}: line {self.line}: expected {word!r}, found {tok!r}")

    def numbers(self, count: int, what: str) -> list[float]:
        out = []
        for _ in range(count):
            tok = self.next(what)
            try:
                out.append(float(tok))
            except ValueError:
                raise ValueError(f"{self.path}: line {self.line}: {what} needs {count} numbers, found {tok!r}") from None
        return out

    @property
    def line(self) -> int:
        return self.items[max(self.pos - 1, 0)][1] if self.items else 0


def _parse_joint(tokens: _Tokens, name: str, parent: int, skel: dict[str, list]) -> None:
    """One ``{ OFFSET ... CHANNELS ... children }`` block (recursive)."""
    index = len(skel["names"])
    skel["names"].append(name)
    skel["parents"].append(parent)
    tokens.expect("{")
    tokens.expect("OFFSET")
    skel["offsets"].append(tokens.numbers(3, f"OFFSET of {name}"))
    channels: tuple[str, ...] = ()
    while True:
        tok = tokens.next(f"'}}' closing {name}")
        key = tok.upper()
        if key == "CHANNELS":
            count = tokens.numbers(1, f"CHANNELS count of {name}")[0]
            channels = tuple(tokens.next(f"channel of {name}") for _ in range(int(count)))
            bad = [c for c in channels if c not in _CHANNEL_NAMES]
            if bad:
                raise ValueError(f"{tokens.path}: line {tokens.line}: unknown channel(s) {bad} of joint {name}; "
                                 f"expected X/Y/Z position/rotation")
        elif key == "JOINT":
            _parse_joint(tokens, tokens.next("joint name"), index, skel)
        elif key == "END":
            tokens.expect("Site")
            _parse_joint(tokens, f"{name}_end", index, skel)
        elif key == "}":
            break
        else:
            raise ValueError(f"{tokens.path}: line {tokens.line}: unexpected {tok!r} in joint {name}")
    skel["channels"].append((index, channels))


def read_bvh(path: str | Path) -> BvhSkeleton:
    """Parse a BVH file's hierarchy and motion; errors name the file, line and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BVH file not found: {path}")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    split = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if split is None:
        raise ValueError(f"{path}: no MOTION section (is this a BVH file?)")
    tokens = _Tokens(lines[:split], path)
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    skel: dict[str, list] = {"names": [], "parents": [], "offsets": [], "channels": []}
    _parse_joint(tokens, tokens.next("root name"), -1, skel)
    if tokens.pos != len(tokens.items):
        raise ValueError(f"{path}: line {tokens.items[tokens.pos][1]}: unexpected text after the root joint "
                         "(only one ROOT is supported)")
    channels = [c for _, c in sorted(skel["channels"])]

    header = [line.strip() for line in lines[split + 1 :]]
    frames_line = next((i for i, line in enumerate(header) if line), None)
    match = re.fullmatch(r"Frames:\s*(\d+)", header[frames_line] if frames_line is not None else "", re.IGNORECASE)
    if match is None:
        raise ValueError(f"{path}: line {split + 2}: expected 'Frames: N' after MOTION")
    num_frames = int(match.group(1))
    time_match = re.fullmatch(r"Frame\s+Time:\s*(\S+)", header[frames_line + 1] if frames_line + 1 < len(header) else "",
                              re.IGNORECASE)
    try:
        frame_time = float(time_match.group(1)) if time_match else float("nan")
    except ValueError:
        frame_time = float("nan")
    if not frame_time > 0:
        raise ValueError(f"{path}: expected 'Frame Time: seconds' (> 0) after 'Frames: {num_frames}'")
    rows = [line for line in header[frames_line + 2 :] if line]
    width = sum(len(c) for c in channels)
    if len(rows) != num_frames:
        raise ValueError(f"{path}: header says {num_frames} frames, found {len(rows)} motion lines")
    if num_frames < 1:
        raise ValueError(f"{path}: no motion frames")
    values = np.empty((num_frames, width))
    for i, row in enumerate(rows):
        parts = row.split()
        if len(parts) != width:
            raise ValueError(f"{path}: motion frame {i} has {len(parts)} values; the hierarchy declares {width} channels")
        try:
            values[i] = [float(v) for v in parts]
        except ValueError:
            raise ValueError(f"{path}: motion frame {i} is not all numbers: {row[:60]!r}") from None
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: motion data contains non-finite values")
    return BvhSkeleton(names=skel["names"], parents=skel["parents"], offsets=np.array(skel["offsets"], dtype=np.float64),
                       channels=channels, motion=values, frame_time=frame_time)


def bvh_positions(bvh: BvhSkeleton, rest: bool = False) -> np.ndarray:
    """World positions (T, J, 3) of every joint and end site, file units and axes (``rest``: (1, J, 3), zero rotations)."""
    frames = 1 if rest else bvh.num_frames
    rot_global: list[np.ndarray] = []
    pos_global: list[np.ndarray] = []
    col = 0
    for j, chans in enumerate(bvh.channels):
        local_t = np.broadcast_to(bvh.offsets[j], (frames, 3)).copy()
        axes, angle_cols = "", []
        for k, ch in enumerate(chans):
            if ch.endswith("position"):
                if not rest:
                    local_t[:, "XYZ".index(ch[0])] = bvh.motion[:, col + k]
            else:
                axes += ch[0]
                angle_cols.append(col + k)
        col += len(chans)
        if axes and not rest:  # intrinsic, in the order listed: R = R_a1 @ R_a2 @ R_a3
            local_r = Rotation.from_euler(axes.upper(), bvh.motion[:, angle_cols], degrees=True).as_matrix()
        else:
            local_r = np.broadcast_to(np.eye(3), (frames, 3, 3))
        p = bvh.parents[j]
        if p < 0:
            rot_global.append(local_r)
            pos_global.append(local_t)
        else:
            rot_global.append(rot_global[p] @ local_r)
            pos_global.append(pos_global[p] + np.einsum("tij,tj->ti", rot_global[p], local_t))
    return np.stack(pos_global, axis=1)


# One SMPL joint from a skeleton: a joint name, or (a, b, t): the point (1 - t) a + t b on the line a -> b.
JointSource = str | tuple[str, str, float]


def _side_map(chain: dict[str, tuple[JointSource, ...]]) -> dict[str, tuple[JointSource, ...]]:
    """Expand ``{side}`` templates for both sides (SMPL left/right, file Left/Right, L/R)."""
    out: dict[str, tuple[JointSource, ...]] = {}
    for smpl, sources in chain.items():
        if "{side}" not in smpl:
            out[smpl] = sources
            continue
        for side, cap, letter in (("left", "Left", "L"), ("right", "Right", "R")):
            fill = lambda s: s.replace("{Side}", cap).replace("{S}", letter)  # noqa: E731
            out[smpl.replace("{side}", side)] = tuple(
                fill(s) if isinstance(s, str) else (fill(s[0]), fill(s[1]), s[2]) for s in sources
            )
    return out


# Candidate sources per SMPL joint, first match wins. Collar and spine points that a
# skeleton lacks sit on the bone between its neighbours (fractions by SMPL's rest proportions).
SKELETON_MAPS: dict[str, dict[str, tuple[JointSource, ...]]] = {
    # CMU mocap as converted to BVH (Hips, LHipJoint, LowerBack, Spine, Spine1, Neck, Neck1, Head, ...):
    # shoulders and neck branch from Spine1 (so it is SMPL's spine3); LeftShoulder sits on Spine1.
    "cmu": _side_map({
        "pelvis": ("Hips",),
        "{side}_hip": ("{Side}UpLeg",),
        "spine1": ("Spine",),
        "{side}_knee": ("{Side}Leg",),
        "spine2": (("Spine", "Spine1", 0.5),),
        "{side}_ankle": ("{Side}Foot",),
        "spine3": ("Spine1",),
        "{side}_foot": ("{Side}ToeBase",),
        "neck": ("Neck1",),
        "{side}_collar": (("{Side}Shoulder", "{Side}Arm", 0.5),),
        "head": ("Head",),
        "{side}_shoulder": ("{Side}Arm",),
        "{side}_elbow": ("{Side}ForeArm",),
        "{side}_wrist": ("{Side}Hand",),
        "{side}_hand": ("{Side}HandIndex1", "{Side}FingerBase_end", ("{Side}ForeArm", "{Side}Hand", 1.34)),
    }),
    # Mixamo (mixamorig: prefix dropped) and LAFAN1 / Ubisoft naming: three spine joints,
    # LeftShoulder is the clavicle.
    "mixamo": _side_map({
        "pelvis": ("Hips",),
        "{side}_hip": ("{Side}UpLeg",),
        "spine1": ("Spine",),
        "{side}_knee": ("{Side}Leg",),
        "spine2": ("Spine1",),
        "{side}_ankle": ("{Side}Foot",),
        "spine3": ("Spine2", ("Spine1", "Neck", 0.3)),
        "{side}_foot": ("{Side}ToeBase", "{Side}Toe", "{Side}Foot_end"),
        "neck": ("Neck",),
        "{side}_collar": ("{Side}Shoulder",),
        "head": ("Head",),
        "{side}_shoulder": ("{Side}Arm",),
        "{side}_elbow": ("{Side}ForeArm",),
        "{side}_wrist": ("{Side}Hand",),
        "{side}_hand": ("{Side}HandMiddle1", "{Side}HandIndex1", "{Side}Hand_end", ("{Side}ForeArm", "{Side}Hand", 1.34)),
    }),
    # Biovision-style names (Hips, Chest, LeftHip, LeftKnee, LeftAnkle, LeftCollar, LeftShoulder = the shoulder joint).
    "biovision": _side_map({
        "pelvis": ("Hips", "Hip"),
        "{side}_hip": ("{Side}Hip",),
        "spine1": (("Hips", "Chest", 0.35), ("Hip", "Chest", 0.35)),
        "{side}_knee": ("{Side}Knee",),
        "spine2": (("Hips", "Chest", 0.75), ("Hip", "Chest", 0.75)),
        "{side}_ankle": ("{Side}Ankle",),
        "spine3": ("Chest2", "Chest"),
        "{side}_foot": ("{Side}Toe", "{Side}Ankle_end"),
        "neck": ("Neck",),
        "{side}_collar": ("{Side}Collar",),
        "head": ("Head",),
        "{side}_shoulder": ("{Side}Shoulder",),
        "{side}_elbow": ("{Side}Elbow",),
        "{side}_wrist": ("{Side}Wrist",),
        "{side}_hand": ("{Side}Wrist_end", ("{Side}Elbow", "{Side}Wrist", 1.34)),
    }),
}


def _clean_name(name: str) -> str:
    """Joint name without a namespace (``mixamorig:Hips``, ``mixamorig1:Hips``, ``mixamorig_Hips`` -> ``hips``)."""
    name = name.rsplit(":", 1)[-1]
    name = re.sub(r"^mixamorig\d*_", "", name)
    return name.lower()


def resolve_skeleton(names: list[str], skeleton: str = "auto") -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
    """Map BVH joint names onto SMPL-24: (map name, index a (24,), index b (24,), fraction t (24,)).

    SMPL joint i is ``(1 - t_i) P[a_i] + t_i P[b_i]``. ``skeleton="auto"``
    tries `SKELETON_MAPS` in order and takes the first that resolves all 24.
    """
    index = {}
    for i, n in enumerate(names):
        index.setdefault(_clean_name(n), i)
    choices = list(SKELETON_MAPS) if skeleton == "auto" else [skeleton]
    missing_by_map = {}
    for map_name in choices:
        if map_name not in SKELETON_MAPS:
            raise ValueError(f"unknown skeleton map {map_name!r}; expected 'auto' or one of {sorted(SKELETON_MAPS)}")
        a, b, t, missing = np.zeros(NUM_JOINTS, int), np.zeros(NUM_JOINTS, int), np.zeros(NUM_JOINTS), []
        for j, smpl in enumerate(SMPL_JOINT_NAMES):
            for src in SKELETON_MAPS[map_name][smpl]:
                pa, pb, frac = (src, src, 0.0) if isinstance(src, str) else src
                if _clean_name(pa) in index and _clean_name(pb) in index:
                    a[j], b[j], t[j] = index[_clean_name(pa)], index[_clean_name(pb)], frac
                    break
            else:
                missing.append(smpl)
        if not missing:
            return map_name, a, b, t
        missing_by_map[map_name] = missing
    detail = "; ".join(f"{m}: no source for {', '.join(v[:6])}{'...' if len(v) > 6 else ''}" for m, v in missing_by_map.items())
    raise ValueError(f"BVH joints {names[:8]}{'...' if len(names) > 8 else ''} do not map onto SMPL-24 ({detail}); "
                     "pass skeleton= one of the maps or extend SKELETON_MAPS")


def bvh_unit_scale(bvh: BvhSkeleton, units: str | float = "auto") -> tuple[float, str]:
    """Metres per file unit and how it was chosen (module docstring, "Units")."""
    if not isinstance(units, str):
        if not units > 0:
            raise ValueError(f"BVH units scale must be > 0 metres per unit, got {units}")
        return float(units), "given"
    if units != "auto":
        if units not in BVH_UNITS:
            raise ValueError(f"unknown BVH units {units!r}; expected 'auto', a number, or one of {sorted(BVH_UNITS)}")
        return BVH_UNITS[units], units
    rest = bvh_positions(bvh, rest=True)[0]
    extent = float((rest.max(axis=0) - rest.min(axis=0)).max())
    if not extent > 0:
        raise ValueError("BVH rest skeleton has zero size; cannot infer its units (pass units=)")
    lo, hi = PLAUSIBLE_EXTENT_M
    fits = {name: s for name, s in BVH_UNITS.items() if lo <= extent * s <= hi}
    if fits:
        name = min(fits, key=lambda n: abs(math.log(extent * fits[n] / REFERENCE_HEIGHT_M)))
        return fits[name], name
    return REFERENCE_HEIGHT_M / extent, "fitted"


def import_bvh(path: str | Path, fps: float | None = None, skeleton: str = "auto", units: str | float = "auto",
               up_axis: Literal["y", "z"] = "y", placement: ViewPlacement | None = ViewPlacement()) -> ImportedMotion:
    """A BVH file as camera-frame SMPL-24 joints (retargeted by joint names; bone lengths the performer's own)."""
    if up_axis not in UP_TO_CAMERA:
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    bvh = read_bvh(path)
    map_name, a, b, t = resolve_skeleton(bvh.names, skeleton)
    scale, unit_name = bvh_unit_scale(bvh, units)
    world = bvh_positions(bvh)
    smpl = (1.0 - t)[None, :, None] * world[:, a] + t[None, :, None] * world[:, b]
    joints = (smpl * scale) @ UP_TO_CAMERA[up_axis].T
    motion = ImportedMotion(joints=joints.astype(np.float32), fps=bvh.fps, source=str(path), format="bvh",
                            meta={"skeleton": map_name, "units": unit_name, "metres_per_unit": scale,
                                  "source_fps": bvh.fps, "up_axis": up_axis})
    return place_and_resample(motion, fps, placement)

