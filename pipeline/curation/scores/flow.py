"""Optical-flow magnitude of paper App. B: how much a clip moves, in pixels per frame.

For each sampled pair of successive frames the dense flow field is estimated and its mean
magnitude taken; the clip score is the mean over pairs. ``score_clip`` pairs frame i with
the next frame that is not a repeat of it (videos converted to a higher frame rate repeat
frames; see ``score_clips.REPEAT_LEVEL``), so the unit is pixels per step between distinct
frames, and resizes the pairs to a fixed long side first (``DEFAULT_FLOW_LONG_SIDE`` =
512), so that a value means the same motion at any video resolution; a scorer measures at
the size it is given. The paper keeps clips with a UniMatch score >= 2.0 in a unit it does
not define; the keep-rule here is >= 0.4 px/frame (``DEFAULT_THRESHOLDS`` says why). The
value still depends on the content frame rate: the same dance filmed at 60 fps reads
about half of 30 fps.

Subject and camera motion (beyond the paper): a small person in a static shot (a man juggling,
a tennis serve) moves little over the whole frame (0.29 px/frame measured) although the person
moves plainly. ``region_scores`` also measures the mean |flow| inside the subject's box (its
projected SMPL skeleton's box grown by ``SUBJECT_MARGIN``) and the median |flow| outside it (the
camera's motion); the flow filter reads the subject's value by default (setting ``flow_region``;
"frame" is the paper's whole-frame score). All three are stored per clip.

Backends:
- "dis" (embedded default): OpenCV's DIS optical flow (Kroeger et al. 2016), preset
  MEDIUM, on grey frames; classical, CPU, no weights. It recovers a pure shift exactly;
  like any classical method it is less reliable than a network on large motions of thin
  parts and on untextured regions.
- "raft" (production): torchvision's RAFT-large (Teed & Deng 2020) with the
  ``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` weights from ``MTVCRAFT_WEIGHTS``, on a GPU when
  there is one. The paper used UniMatch (Xu et al. 2023), a later flow network with no
  packaged implementation; RAFT is the closest field-library network and gives the same
  quantity (dense flow in pixels).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

SUBJECT_MARGIN = 0.15
"""The subject's region is the box around its projected skeleton grown by this fraction of the box's
height on every side (joints sit inside the body: the margin takes in the head, hands and feet)."""

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

RAFT_WEIGHTS_FILE = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"  # torchvision's Raft_Large_Weights.C_T_SKHT_V2
RAFT_MIN_SIDE = 128


def mean_magnitude(flow: np.ndarray) -> float:
    """Mean Euclidean length of a flow field (H, W, 2), in pixels."""
    return float(np.hypot(flow[..., 0], flow[..., 1]).mean())


def _mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _check_pair(first: np.ndarray, second: np.ndarray) -> None:
    if first.shape != second.shape or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"a flow pair needs two RGB frames (H, W, 3) of one size, got {first.shape} and {second.shape}")


class DISFlow:
    """Embedded backend "dis": OpenCV DIS optical flow (see the module docstring)."""

    metric = "flow"
    backend = "dis"
    needs_pairs = True

    def __init__(self, preset: str = "medium") -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"DIS preset = {preset!r}; choose one of {tuple(DIS_PRESETS)}")
        self.preset = preset
        self.version = f"opencv {cv2.__version__}; DIS preset {preset}, mean |flow| over pairs"
        self._dis = None  # an OpenCV object cannot be pickled: made in setup(), on the worker

    def setup(self) -> None:
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])

    def pair_flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2) from RGB ``first`` to RGB ``second``: second(p + flow(p)) ~ first(p)."""
        _check_pair(first, second)
        self.setup()
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in (first, second)]
        return self._dis.calc(grey[0], grey[1], None)

    def pair_flows(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        return [self.pair_flow(a, b) for a, b in pairs]

    def score(self, frames: list | None, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return _mean_or_nan([mean_magnitude(flow) for flow in self.pair_flows(pairs)])


class RAFTFlow:
    """Production backend "raft": torchvision RAFT with weights from a local file (see the module docstring).

    ``arch`` "large" (default, for the C_T_SKHT_V2 file) or "small" (raft_small's files).
    Frames are padded (edge replicate) to sides that are multiples of 8 and at least 128,
    as RAFT needs, and the flow is cropped back. Pairs run in batches of ``batch_size``.
    """

    metric = "flow"
    backend = "raft"
    needs_pairs = True
    WEIGHT_FILES = {"weights_path": RAFT_WEIGHTS_FILE}

    def __init__(
        self,
        weights_path: str | Path,
        arch: str = "large",
        num_flow_updates: int = 12,
        device: str | None = None,
        batch_size: int = 8,
    ) -> None:
        if arch not in ("large", "small"):
            raise ValueError(f"RAFT arch = {arch!r}; choose 'large' or 'small'")
        self.weights_path = Path(weights_path)
        self.arch = arch
        self.num_flow_updates = num_flow_updates
        self.device = device
        self.batch_size = batch_size
        self.version = f"torchvision raft_{arch}; {self.weights_path.name}; {num_flow_updates} updates"
        self._model = None

    def setup(self) -> None:
        if self._model is not None:
            return
        import torch
        from torchvision.models.optical_flow import raft_large, raft_small

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = (raft_large if self.arch == "large" else raft_small)(weights=None, progress=False)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{self.weights_path} is not a torchvision raft_{self.arch} state dict: {error}") from error
        self._model = model.to(device).eval()
        self._device = torch.device(device)

    def pair_flows(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Flows (N, H, W, 2) of the pairs (all of one size), from the first frame to the second."""
        import torch
        import torch.nn.functional as F

        self.setup()
        for first, second in pairs:
            _check_pair(first, second)
        height, width = pairs[0][0].shape[:2]
        # RAFT needs sides that are multiples of 8 and at least 128 (its 4-level correlation pyramid).
        pad_h, pad_w = max(RAFT_MIN_SIDE, height + (-height) % 8) - height, max(RAFT_MIN_SIDE, width + (-width) % 8) - width
        flows = []
        for begin in range(0, len(pairs), self.batch_size):
            chunk = pairs[begin : begin + self.batch_size]
            images = torch.from_numpy(np.stack([np.stack(pair) for pair in chunk]))  # (B, 2, H, W, 3) uint8
            images = images.to(self._device).permute(0, 1, 4, 2, 3).float().div(127.5).sub(1.0)  # [-1, 1]
            first = F.pad(images[:, 0], (0, pad_w, 0, pad_h), mode="replicate")
            second = F.pad(images[:, 1], (0, pad_w, 0, pad_h), mode="replicate")
            with torch.inference_mode():
                flow = self._model(first, second, num_flow_updates=self.num_flow_updates)[-1]
            flows.append(flow[:, :, :height, :width].permute(0, 2, 3, 1).float().cpu().numpy())
        return np.concatenate(flows)

    def score(self, frames: list | None, pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        if not pairs:
            return math.nan
        return _mean_or_nan([mean_magnitude(flow) for flow in self.pair_flows(pairs)])


def grow_box(box: np.ndarray, margin: float = SUBJECT_MARGIN) -> np.ndarray:
    """x0, y0, x1, y1 grown by ``margin`` x its height on every side."""
    pad = margin * (box[3] - box[1])
    return np.array([box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad], np.float64)


def region_magnitudes(flow: np.ndarray, box: np.ndarray | None) -> tuple[float, float, float]:
    """(whole frame, subject, background) motion of one flow field (H, W, 2), in pixels: the mean
    |flow| over the frame and inside ``box`` (x0, y0, x1, y1 pixels of this field, clipped to it), and
    the median |flow| outside it (the camera's motion, robust to other moving things); NaN for a part
    with no pixel (no box: both NaN)."""
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    whole = float(magnitude.mean())
    if box is None or not np.all(np.isfinite(box)):
        return whole, math.nan, math.nan
    height, width = magnitude.shape
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    inside = np.zeros_like(magnitude, bool)
    if x1 > x0 and y1 > y0:
        inside[y0:y1, x0:x1] = True
    subject = float(magnitude[inside].mean()) if inside.any() else math.nan
    background = float(np.median(magnitude[~inside])) if (~inside).any() else math.nan
    return whole, subject, background


def region_scores(scorer, pairs: list[tuple[np.ndarray, np.ndarray]], boxes: list[np.ndarray | None]) -> dict[str, float]:
    """Flow of a clip on the whole frame (the paper's score), on the subject and on the background:
    {"flow", "subject_flow", "camera_flow"}, each the mean over pairs (NaN where none applies).
    ``boxes`` holds one subject box per pair (x0, y0, x1, y1 in the pair's pixels, or None)."""
    if len(boxes) != len(pairs):
        raise ValueError(f"{len(boxes)} subject boxes for {len(pairs)} flow pairs")
    if not pairs:
        return {"flow": math.nan, "subject_flow": math.nan, "camera_flow": math.nan}
    parts = np.array([region_magnitudes(flow, box) for flow, box in zip(scorer.pair_flows(pairs), boxes)])

    def mean(column):
        values = column[np.isfinite(column)]
        return float(values.mean()) if len(values) else math.nan

    return {"flow": mean(parts[:, 0]), "subject_flow": mean(parts[:, 1]), "camera_flow": mean(parts[:, 2])}
