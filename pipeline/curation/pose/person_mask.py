"""Where the people are in a frame: MediaPipe's selfie segmentation mask and its connected components (App. B's
single-person rule).

The person counter (``person_count.py``) uses the mask (issue 16, item 1): each large component is
a window the BlazePose person detector runs on (the person reaches the detector's 224 x 224 input
larger than in the whole frame: tiled or small people); with ``headless=True`` (off by default) a
large component where the face-anchored detector finds no one also counts as a person (a torso with
the head above the frame).
The model is ``mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite`` (the general
256 x 256 model, inside the wheel; the 144 x 256 "landscape" model marked a headless torso's
shirt as background), run through ``mediapipe.solutions.selfie_segmentation``; nothing is downloaded.

Known limits: it is a selfie model (people within a few metres): it also marks furniture touching a
person (a table under a torso), marks half of a rendered empty background as a person (probability
0.96: why the mask alone is no evidence of a person), and merges people who touch into one
component; far-away people below about 1% of the frame are dropped as noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.curation.pose.mediapipe_runtime import import_mediapipe

MASK_LEVEL = 0.5  # a pixel with person probability at least this is a person pixel
MIN_AREA = 0.01  # components smaller than this fraction of the frame are noise


@dataclass
class PersonMask:
    """Person pixels and their connected components per RGB uint8 frame (offline, CPU, ~5 ms a frame)."""

    level: float = MASK_LEVEL
    min_area: float = MIN_AREA
    _solution: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"PersonMask.level must be in (0, 1), got {self.level}")
        if not 0.0 < self.min_area < 1.0:
            raise ValueError(f"PersonMask.min_area must be in (0, 1), got {self.min_area}")

    def setup(self) -> None:
        if self._solution is None:
            import_mediapipe()
            from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

            self._solution = SelfieSegmentation(model_selection=0)

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None

    def __getstate__(self) -> dict:  # the graph is a native object: rebuilt after pickling (Ray)
        return {**self.__dict__, "_solution": None}

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) float32 person probability of one RGB uint8 frame."""
        self.setup()
        return self._solution.process(np.ascontiguousarray(frame)).segmentation_mask

    def tiled_mask(self, frame: np.ndarray, windows: list[tuple[int, int, int, int]]) -> np.ndarray:
        """(H, W) float32: the largest person probability of each pixel over the mask of the whole
        frame and the masks of ``windows`` (left, top, right, bottom), each run at the model's
        256 x 256 input: people small in the frame (tiled, side by side) are larger in a window."""
        height, width = frame.shape[:2]
        person = np.array(self.mask(frame), np.float32)  # a copy: the solution's array is read-only
        for left, top, right, bottom in windows:
            if (left, top, right, bottom) != (0, 0, width, height):
                inner = person[top:bottom, left:right]
                np.maximum(inner, self.mask(frame[top:bottom, left:right]), out=inner)
        return person

    def components(self, frame: np.ndarray,
                   windows: list[tuple[int, int, int, int]] = ()) -> list[tuple[float, np.ndarray]]:
        """The person mask's components of at least ``min_area`` of the frame, largest first:
        (area as a fraction of the frame, box x, y, width, height in pixels); ``windows`` as in ``tiled_mask``."""
        person = (self.tiled_mask(frame, list(windows)) >= self.level).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
        total = float(person.size)
        found = [(stats[i, cv2.CC_STAT_AREA] / total, stats[i, :4].astype(np.float32)) for i in range(1, n)]
        return sorted([c for c in found if c[0] >= self.min_area], key=lambda c: -c[0])
