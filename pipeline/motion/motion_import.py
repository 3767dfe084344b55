"""Import motion-capture files as 4DMoT joints: AMASS ``.npz`` and BVH (Sec. 3.1 input; DESIGN.md "a motion file").

One module per format, each giving the shared record `ImportedMotion`
(`pipeline.motion.imported_motion`: SMPL-24 joints in metres in the camera
frame, placed in view, resampled): `pipeline.motion.amass` and
`pipeline.motion.bvh`. This module picks the format by suffix
(`import_motion`) and imports a whole folder (`import_folder`).

DeepMimic ``humanoid3d_*.txt`` clips (shipped with pybullet) are not read:
pybullet is not a dependency of this project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.motion.amass import import_amass
from pipeline.motion.bvh import import_bvh
from pipeline.motion.imported_motion import ImportedMotion, ViewPlacement

MOTION_SUFFIXES = (".npz", ".bvh")


# ---- files and folders ---------------------------------------------------------------------------
def import_motion(path: str | Path, fps: float | None = None, placement: ViewPlacement | None = ViewPlacement(),
                  **options: Any) -> ImportedMotion:
    """Dispatch on the suffix: ``.npz`` (AMASS) or ``.bvh``; ``options`` go to `import_bvh`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        if options:
            raise ValueError(f"options {sorted(options)} apply to BVH files only, not {path}")
        return import_amass(path, fps=fps, placement=placement)
    if suffix == ".bvh":
        return import_bvh(path, fps=fps, placement=placement, **options)
    raise ValueError(f"{path}: unsupported motion file type {suffix!r}; expected one of {MOTION_SUFFIXES}")


def _is_shape_file(path: Path) -> bool:
    """AMASS subject folders hold a ``shape.npz`` (betas, gender, no motion): not a motion."""
    if path.suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return "poses" not in data.files and "betas" in data.files
    except (ValueError, OSError):
        return False


def import_folder(folder: str | Path, fps: float | None = None, placement: ViewPlacement | None = ViewPlacement(),
                  recursive: bool = True, skip_invalid: bool = False,
                  log: Callable[[str], None] = print, **options: Any) -> list[ImportedMotion]:
    """Every ``.npz`` / ``.bvh`` motion under ``folder`` (sorted by path), each imported by `import_motion`.

    AMASS ``shape.npz`` files are skipped. A file that fails to import raises,
    or with ``skip_invalid`` is reported through ``log`` and left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"motion folder not found: {folder}")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in MOTION_SUFFIXES)
    motions = []
    for path in files:
        if _is_shape_file(path):
            continue
        try:
            motions.append(import_motion(path, fps=fps, placement=placement, **options))
        except (ValueError, FileNotFoundError) as err:
            if not skip_invalid:
                raise
            log(f"skipped {path}: {err}")
    return motions
