"""Single-person sub-clip extraction (paper App. B).

"We focus on extracting continuous sub-clips (more than 33 frames) from each
video containing only a single human pose with valid predictions across all
frames. In other words, frames with no pose or multiple poses detected are
excluded." Sub-clips never cross a shot boundary.

Beyond the paper, whole bodies only by default: a frame whose body coverage
(``pose/body_coverage.py``) is below the setting ``body_coverage`` ("full";
"upper" also keeps half-body frames; "any" is the paper's rule) is rejected as
``partial_body``: a pose backend fits a whole body to a torso or a face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.motion.skeleton import forward_kinematics

# Why a frame cannot be part of a sub-clip.
NO_PERSON = "no_person"
MULTIPLE_PEOPLE = "multiple_people"
INVALID_POSE = "invalid_pose"
MISSING_POSE = "missing_pose"
PARTIAL_BODY = "partial_body"
TOO_SHORT = "too_short"


@dataclass(frozen=True)
class FrameRun:
    """Frames [start, end) of one shot that share a verdict: ``reason`` None means a kept sub-clip."""

    start: int
    end: int
    reason: str | None

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def frame_verdicts(num_people: np.ndarray, pose_valid: np.ndarray, coverage: np.ndarray | None = None,
                   min_coverage: int = 0) -> np.ndarray:
    """Per-frame reason string, or "" for a usable frame (exactly one person with a finite pose, showing
    at least ``min_coverage`` of the body: ``coverage`` (T,) from ``body_coverage``, None for no rule).

    ``num_people`` < 0 marks a frame the pose stage has no row for.
    """
    verdict = np.full(len(num_people), "", dtype=object)
    verdict[num_people == 0] = NO_PERSON
    verdict[num_people >= 2] = MULTIPLE_PEOPLE
    if coverage is not None and min_coverage > 0:
        verdict[(num_people == 1) & pose_valid & (np.asarray(coverage) < min_coverage)] = PARTIAL_BODY
    verdict[(num_people == 1) & ~pose_valid] = INVALID_POSE
    verdict[num_people < 0] = MISSING_POSE
    return verdict


def split_shot(verdicts: np.ndarray, start: int, end: int, min_frames: int) -> list[FrameRun]:
    """Maximal runs of equal verdicts inside one shot; usable runs shorter than ``min_frames`` become TOO_SHORT."""
    runs: list[FrameRun] = []
    run_start = start
    for frame in range(start + 1, end + 1):
        if frame == end or verdicts[frame] != verdicts[run_start]:
            reason = verdicts[run_start] or None
            if reason is None and frame - run_start < min_frames:
                reason = TOO_SHORT
            runs.append(FrameRun(run_start, frame, reason))
            run_start = frame
    return runs


def neutral_joints(pose_aa: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """(T, 24, 3) joints: FK of the pose on the neutral SMPL shape plus the root translation (Sec. 3.1)."""
    with torch.no_grad():
        joints = forward_kinematics(torch.tensor(pose_aa, dtype=torch.float64), transl=torch.tensor(transl, dtype=torch.float64))
    return joints.float().numpy()
