"""Motion-capture sources for 4DMoT (Sec. 3.1 input, beyond the paper): corpus ``.npz``, AMASS ``.npz`` and BVH.

Every file becomes `MocapSequence` rows: SMPL-24 joints ``(T, 24, 3)`` float32 in
**metres**, in a **world frame with +Y up** (floor near y = 0, x and z
horizontal), at the file's frame rate. The world frame is kept on purpose: a
tokenizer trained on camera coordinates needs each window placed in front of a
virtual camera (`pipeline.motion.camera_placement`), with a fresh view per window.

Formats (`read_motion_file`):
- corpus ``.npz`` (e.g. ``../shared/mocap/cmu_bvh_smpl24.npz``): one ``(T, 24, 3)``
  array per sequence keyed by its name, in SMPL joint order, beside a ``.json``
  sidecar of the same stem that gives ``units`` ("millimetres" or "metres"),
  ``fps``, ``up_axis`` ("+Y ..." or "+Z ...") and the licence text. The
  sidecar is required: without it the frame rate and units are unknown.
- AMASS ``.npz`` (``poses`` + ``trans``): `pipeline.motion.amass.import_amass`,
  neutral-shape FK, then its camera axes turned back to +Y up.
- ``.bvh``: `pipeline.motion.bvh.import_bvh` (retargeted by joint names), same.

Each sequence is checked (`check_sequence`); a sequence or file that fails is a
`Reject` with its reason, never an exception that stops the other files.

Held-out split (`heldout_split`): by performer where the names allow it. CMU
salsa subject 61 is held out against its partner 60 (same takes, other
dancer); Bandai Namco names carry no actor, so a fixed set of styles
(`HELDOUT_BANDAI_STYLES`) is held out instead, every motion content of those styles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from models.motion.skeleton import NUM_JOINTS, SMPL_PARENTS
from pipeline.core.rejects import Reject
from pipeline.motion.windows import MIN_FRAMES

STAGE = "mocap_motions"
MOCAP_SUFFIXES = (".npz", ".bvh")
UNITS_TO_METRES = {"millimetres": 0.001, "millimeters": 0.001, "mm": 0.001, "metres": 1.0, "meters": 1.0, "m": 1.0,
                   "centimetres": 0.01, "cm": 0.01}
PLAUSIBLE_STATURE_M = (0.8, 2.5)  # largest first-frame extent of the joints
MAX_BONE_STD_M = 0.03  # a bone whose length varies more than this over time is a broken conversion

# Held-out split (module docstring). Bandai styles: one large dataset-2 style and two dataset-1 styles, ~14% of the minutes.
HELDOUT_CMU_PATTERN = re.compile(r"(^|_)61_\d+$")
HELDOUT_BANDAI_STYLES = ("youthful", "proud", "sad")
BANDAI_NAME = re.compile(r"^bandai(?P<dataset>\d)_(?P<content>.+)_(?P<style>[a-z-]+)_(?P<take>\d+)$")


@dataclass
class MocapSequence:
    """One motion: ``joints`` (T, 24, 3) float32 metres, world frame (+Y up), at ``fps``."""

    id: str  # "<source>/<sequence>"
    sequence: str
    source: str  # corpus name ("cmu_bvh_smpl24", "bandai_smpl24") or the format ("amass", "bvh")
    licence: str  # short tag, e.g. "CC-BY-NC-4.0", "CMU-mocap", "unknown"
    uri: str
    fps: float
    joints: np.ndarray
    split: str = "train"  # "train" | "heldout"

    @property
    def num_frames(self) -> int:
        return int(len(self.joints))


def licence_tag(sidecar: dict) -> str:
    """A short licence tag from a corpus sidecar: its ``licence_tag``, or one read off the licence text."""
    if sidecar.get("licence_tag"):
        return str(sidecar["licence_tag"])
    text = str(sidecar.get("licence", ""))
    if "CC BY-NC 4.0" in text or "BY-NC 4.0" in text:
        return "CC-BY-NC-4.0"
    if "mocap.cs.cmu.edu" in text:
        return "CMU-mocap"
    return "unknown" if not text else "see-sidecar"


def heldout_split(source: str, sequence: str) -> str:
    """'heldout' for CMU subject 61 and the `HELDOUT_BANDAI_STYLES`, else 'train' (module docstring)."""
    if source.startswith("cmu") and HELDOUT_CMU_PATTERN.search(sequence):
        return "heldout"
    match = BANDAI_NAME.match(sequence)
    if source.startswith("bandai") and match and match.group("style") in HELDOUT_BANDAI_STYLES:
        return "heldout"
    return "train"


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 24, 3) joints -> (..., 23) lengths of the bones parent(j) -> j, j = 1..23."""
    parents = np.asarray(SMPL_PARENTS[1:])
    return np.linalg.norm(joints[..., 1:, :] - joints[..., parents, :], axis=-1)


def check_sequence(joints: np.ndarray) -> tuple[str, str] | None:
    """(reason, detail) when metre joints cannot train 4DMoT, else None."""
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        return "bad_shape", f"joints must be (T, {NUM_JOINTS}, 3), got {joints.shape}"
    if not np.isfinite(joints).all():
        return "non_finite", "joints contain NaN or inf"
    if len(joints) < MIN_FRAMES:
        return "too_short", f"{len(joints)} frames; a training window needs at least {MIN_FRAMES}"
    extent = float((joints[0].max(axis=0) - joints[0].min(axis=0)).max())
    lo, hi = PLAUSIBLE_STATURE_M
    if not lo <= extent <= hi:
        return "implausible_size", f"first-frame extent {extent:.3f} m outside {lo}-{hi} m (wrong units?)"
    worst = float(bone_lengths(joints.astype(np.float64)).std(axis=0).max())
    if worst > MAX_BONE_STD_M:
        return "bone_lengths_vary", f"a bone's length varies by {worst * 1000:.0f} mm (std) over time; max {MAX_BONE_STD_M * 1000:.0f} mm"
    return None


def _up_to_y(joints: np.ndarray, up_axis: str) -> np.ndarray:
    """World joints with ``up_axis`` ('y' or 'z') up -> +Y up (z-up: (x, y, z) -> (x, z, -y), a rotation)."""
    if up_axis == "y":
        return joints
    if up_axis == "z":
        return np.stack([joints[..., 0], joints[..., 2], -joints[..., 1]], axis=-1)
    raise ValueError(f"up axis must be 'y' or 'z', got {up_axis!r}")


def _sidecar(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if not side.is_file():
        return None
    return json.loads(side.read_text())


def read_corpus(path: Path, sidecar: dict) -> Iterator[MocapSequence | Reject]:
    """Sequences of a corpus ``.npz`` (module docstring), each checked; bad ones as `Reject`."""
    source = str(sidecar.get("corpus") or path.stem)
    units = str(sidecar.get("units", "")).lower()
    if units not in UNITS_TO_METRES:
        yield Reject(STAGE, str(path), "unknown_units", f"sidecar units {units!r}; expected one of {sorted(UNITS_TO_METRES)}",
                     uri=str(path))
        return
    try:
        fps = float(sidecar["fps"])
    except (KeyError, TypeError, ValueError):
        fps = float("nan")
    if not fps > 0:
        yield Reject(STAGE, str(path), "no_fps", "sidecar has no positive 'fps'", uri=str(path))
        return
    up = str(sidecar.get("up_axis", "+Y")).lstrip("+").strip()[:1].lower()
    if up not in ("y", "z"):
        yield Reject(STAGE, str(path), "unknown_up_axis", f"sidecar up_axis {sidecar.get('up_axis')!r}", uri=str(path))
        return
    scale, tag = UNITS_TO_METRES[units], licence_tag(sidecar)
    with np.load(path, allow_pickle=False) as data:
        for name in sorted(data.files):
            item = f"{source}/{name}"
            joints = np.asarray(data[name], dtype=np.float64) * scale
            problem = check_sequence(joints)
            if problem:
                yield Reject(STAGE, item, problem[0], problem[1], uri=str(path))
                continue
            yield MocapSequence(item, name, source, tag, str(path), fps, _up_to_y(joints, up).astype(np.float32),
                                heldout_split(source, name))


def _imported(path: Path) -> MocapSequence:
    """An AMASS ``.npz`` or a BVH file through `pipeline.motion.motion_import`, turned back to +Y up, unplaced."""
    from pipeline.motion.imported_motion import UP_TO_CAMERA
    from pipeline.motion.motion_import import import_motion

    motion = import_motion(path, placement=None)  # camera axes: (x, -y, -z) of a y-up world
    world = motion.joints.astype(np.float64) @ UP_TO_CAMERA["y"]  # its own inverse (a 180 degree turn)
    side = _sidecar(path)
    return MocapSequence(f"{motion.format}/{path.stem}", path.stem, motion.format, licence_tag(side) if side else "unknown",
                         str(path), float(motion.fps), world.astype(np.float32))


def read_motion_file(path: str | Path) -> list[MocapSequence | Reject]:
    """Every sequence of one file, or the file's `Reject` (never raises for a bad file)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = set(data.files)
            if {"poses", "trans"} <= names:
                out: list[MocapSequence | Reject] = [_imported(path)]
            else:
                sidecar = _sidecar(path)
                if sidecar is None:
                    return [Reject(STAGE, str(path), "no_sidecar", f"a corpus .npz needs {path.with_suffix('.json').name} "
                                   "(units, fps, licence); not an AMASS file either (no 'poses'/'trans')", uri=str(path))]
                out = list(read_corpus(path, sidecar))
        elif path.suffix.lower() == ".bvh":
            out = [_imported(path)]
        else:
            return [Reject(STAGE, str(path), "unsupported", f"suffix {path.suffix!r}; expected one of {MOCAP_SUFFIXES}",
                           uri=str(path))]
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as err:
        return [Reject(STAGE, str(path), "unreadable", str(err)[:500], uri=str(path))]
    checked: list[MocapSequence | Reject] = []
    for item in out:
        problem = check_sequence(item.joints) if isinstance(item, MocapSequence) else None
        checked.append(Reject(STAGE, item.id, *problem, uri=item.uri) if problem else item)
    return checked


def list_motion_files(source: str | Path) -> list[Path]:
    """Motion files under a folder (recursively, ``.npz`` / ``.bvh``), or the paths in a manifest file
    (one per line, relative to the manifest's folder; blank lines and ``#`` comments ignored)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"mocap (MTVCRAFT_MOCAP) = {source} does not exist: expected a folder or a manifest")
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in MOCAP_SUFFIXES)
    lines = [line.strip() for line in source.read_text().splitlines()]
    return [(source.parent / line).resolve() for line in lines if line and not line.startswith("#")]


def read_sources(source: str | Path) -> tuple[list[MocapSequence], list[Reject]]:
    """All sequences and rejections of a folder or manifest (`list_motion_files`); ids are unique."""
    sequences, rejects, seen = [], [], set()
    for path in list_motion_files(source):
        for item in read_motion_file(path):
            if isinstance(item, Reject):
                rejects.append(item)
            elif item.id in seen:
                rejects.append(Reject(STAGE, f"{item.id}@{path}", "duplicate_id", f"{item.id} already read", uri=item.uri))
            else:
                seen.add(item.id)
                sequences.append(item)
    return sequences, rejects
