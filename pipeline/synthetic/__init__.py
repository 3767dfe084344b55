"""Generated sample data: procedural SMPL motions rendered as videos with ground-truth sidecars.

See DESIGN.md, "Generated sample data". ``make_sample`` is the entry point; the
command line is ``python -m pipeline.synthetic --out DIR [--seed 0] [--preset demo]``.
"""

from .motions import MOTIONS, Motion, make_motion, motion_joints
from .presets import PRESETS, Preset, ShotSpec, VideoSpec
from .render import camera_intrinsics, project
from .sample import (
    SampleManifest,
    ShotInfo,
    VideoInfo,
    make_sample,
    read_sidecar,
    render_shot,
)

__all__ = [
    "MOTIONS", "Motion", "make_motion", "motion_joints", "camera_intrinsics", "project", "PRESETS", "Preset",
    "SampleManifest", "ShotInfo", "ShotSpec", "VideoInfo", "VideoSpec", "make_sample", "read_sidecar", "render_shot",
]
