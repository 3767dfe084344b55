"""Counting the people in a frame, for the single-person rule of App. B (sub-clips with one person).

MediaPipe Pose (``mediapipe_pose.py``) tracks one person, so it cannot tell a
frame with two dancers from a frame with one. ``PersonCounter`` runs the person
detector that ships inside the same wheel, BlazePose's
``mediapipe/modules/pose_detection/pose_detection.tflite`` (the detector the
Pose graph itself runs before tracking), through MediaPipe's own
``PoseDetectionCpu`` subgraph, and counts its detections scoring at least
``min_score``. Everything is local: nothing is downloaded.

Windows: on its own the detector tends to report one person; on frames wider
than tall it also runs on overlapping columns (two of 60% of the width, or
``round(width / height)`` of 1.5 / n of it on wider frames: three dancers in a
row), which reach the detector's 224 x 224 input larger. A person found only
in a window must score ``tile_min_score`` (0.75: zoomed-in background shapes
next to a head seen from behind scored up to 0.67). ``grid=True`` also runs the
four 60% x 60% corner windows of frames about as tall as wide (3:4 to 4:3, both
sides >= 448 px): it counts four dancers tiled 2 x 2 right on 19 of 20 frames
(0 without), but in a whole curation of the real dancers it counted a second
person on 5-frame stretches of single dancers (00006 twice, 00016 four times,
00021 once), splitting their clips, so it is off by default.

Person mask (issue 16, second round; ``person_mask=True``, the default): MediaPipe's selfie
segmentation (``person_mask.py``, in the same wheel) marks the person pixels, run on the whole frame
and on the same columns (wide frames) or four 60% corner windows (squarish frames >= 448 px), the
larger probability winning. Each connected component of at least 1% of the frame is one more window
for the detector (its box grown 15% a side), so tiled and small people reach the detector larger
where they are, not in fixed corners. Measured side by side (bench/bench_person_count_candidates.py,
BENCHMARKS.md "Person counter with the person mask"): 2 x 2 tiles 17/20 (0 before; the fixed grid's
19/20 came with false second people on single dancers, these windows count none: every single dancer
and every pair right, empty strips beside dancers 0 as before), rows of three 19/20, crowds of 6 and 9
small dancers 4/10 and 1/10 (0 and 0); 423 of the 593 dev and composite frames (405 before).
``headless=True`` also counts one person where no window found anyone but a component covers
``headless_area`` (5%) of the frame (a torso with the head above it: the detector is face-anchored):
560 of 593 (94.4%; the torso 144/144). It is off by default because the selfie model marks half of a
rendered empty background as a person (probability 0.96), and because the pose stage already counts 1
wherever MediaPipe's tracker holds a pose (``MediaPipeLandmarks.num_people``), so it would change no
curation verdict. Two chest-down arm wrestlers stay 0-1 either way (the mask joins them into one
component). The mask windows cost about twice the detector alone; ``person_mask=False`` is the counter
as it was.

Issue 16 measured it first on real footage (bench/bench_person_rules.py, BENCHMARKS.md "Person rules on
real footage"): composites of the five real dancers and the four labelled videos of shared/real-dev.
Why this detector (measured, bench/results/person_count.md): on 12 rendered
two-person shots it counts 2 on 97% of the frames (49% without the tiles) and 1
on 99.7% of the one-person frames; on the demo sample 2 on all 48 frames of the
two-person shot and never 2 on a one-person shot; on the five real
single-person dance videos 1 on every frame (lowest score 0.75); two real
dancers side by side count 2 on 30 of 30 frames. The other offline candidates
lose: MediaPipe's face detectors (``face_detection_short_range``, and
``face_detection_full_range_sparse`` behind ``model_selection=1``) miss many
faces of full-body shots (half the two-person frames count 1 at best), and OpenCV 5 no longer has the HOG people detector
(``HOGDescriptor`` left the main package).

Known limits:
- the detector finds a person by the head and upper body (its box is a face
  box plus two alignment key points): people seen from behind, heavily blurred
  frames (the demo's blur shot counts 0) or people cut off above the shoulders
  can be missed;
- the input is 224 x 224: small people (crowds, far away, three or more side by
  side) are undercounted, also in square and portrait frames, which get no tiles;
- heavily overlapping people can merge into one detection (MediaPipe's
  non-maximum suppression; tile boxes covering 30% of another box count once);
- ``min_score`` 0.6 and ``tile_min_score`` 0.75 were chosen on the measurements
  above (0.55-0.75 and 0.7-0.85 gave the same verdicts there), not calibrated
  on a broad set of footage.

Cost (one CPU core): about 16 ms a detector pass whatever the frame size, so 16 ms a frame
without tiles, about 30 ms with them and about 60 ms with the person mask's windows; the pose backend runs it on
every k-th frame only (``MediaPipePoses.person_count_step``, 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from pipeline.curation.pose.mediapipe_runtime import import_mediapipe
from pipeline.curation.pose.person_mask import PersonMask

MIN_SCORE = 0.6  # detections below this are not counted (see the module docstring)
TILE_MIN_SCORE = 0.75  # a person found only in a tile needs this score (zoomed-in background shapes fool it)
TILE_WIDTH = 0.6  # the two side tiles each span this fraction of the frame's width
HEADLESS_AREA = 0.05  # a person-mask component this large (fraction of the frame) is a person without a head
MASK_GROW = 0.15  # a component's window is its box grown by this fraction of its size on each side
TILE_OVERLAP = 0.3  # a tile's box covering more of a smaller box (or covered more) is a person already counted
DETECTOR_SIDE = 224  # the detector's input: frames are letterboxed to 224 x 224
MODEL = "pose_detection"  # mediapipe/modules/pose_detection/pose_detection.tflite, inside the wheel

# One node: MediaPipe's BlazePose person detector subgraph (letterbox to 224 x 224, SSD
# anchors, weighted non-maximum suppression, scores >= 0.5), image in, all detections out.
_GRAPH = """
input_stream: "image"
output_stream: "detections"
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
"""


@dataclass
class PersonCounter:
    """People per frame from MediaPipe's BlazePose person detector (offline, CPU).

    With ``tiles`` the detector also runs on the left and right ``tile_width`` of
    frames wider than tall, with ``person_mask`` on windows around the person mask's
    components (``people`` says how the passes are merged and when a headless
    component counts).

    Use ``with PersonCounter() as counter: counter.count(frames)``, or ``setup()``
    then ``count()`` and ``close()``. ``count`` sets itself up on first use.
    """

    min_score: float = MIN_SCORE
    tiles: bool = True
    tile_width: float = TILE_WIDTH
    tile_min_score: float = TILE_MIN_SCORE
    grid: bool = False  # off by default: counts a second person on real single dancers (module docstring)
    person_mask: bool = True  # also run the detector on the person mask's components (person_mask.py)
    headless: bool = False  # with person_mask: a large component where the detector finds no one is one person
    # (off by default: the mask marks half of a rendered empty background as a person; module docstring)
    headless_area: float = HEADLESS_AREA
    tiled_mask: bool = True  # with person_mask: the mask also runs on the column windows / 2 x 2 quadrants
    _graph: object = field(default=None, init=False, repr=False, compare=False)
    _mask: PersonMask | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("min_score", "tile_min_score"):  # the graph itself drops detections below 0.5
            if not 0.5 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PersonCounter.{name} must be in [0.5, 1], got {getattr(self, name)}")
        if not 0.5 < self.tile_width < 1.0:
            raise ValueError(f"PersonCounter.tile_width must be in (0.5, 1) (overlapping tiles), got {self.tile_width}")
        if not 0.0 < self.headless_area <= 1.0:
            raise ValueError(f"PersonCounter.headless_area must be in (0, 1], got {self.headless_area}")

    @property
    def backend(self) -> str:
        """Name and version of the model and settings behind the counts."""
        mediapipe = import_mediapipe()
        tiles = f"_tiles{self.tile_width:g}_min{self.tile_min_score:g}" if self.tiles else ""
        tiles += "_grid2x2" if self.grid else ""
        if self.person_mask:
            tiles += f"_maskwindows_headless{self.headless_area:g}" if self.headless else "_maskwindows"
        return f"mediapipe:{mediapipe.__version__}:{MODEL}_min{self.min_score:g}{tiles}"

    def setup(self) -> None:
        """Build the MediaPipe graph (once; a few ms)."""
        if self._graph is None:
            import_mediapipe()
            from mediapipe.python.solution_base import SolutionBase

            self._graph = SolutionBase(graph_config=_GRAPH)
        if self.person_mask and self._mask is None:
            self._mask = PersonMask()
            self._mask.setup()

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        if self._mask is not None:
            self._mask.close()
            self._mask = None

    def __enter__(self) -> "PersonCounter":
        self.setup()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:  # the graph is a native object: rebuilt after pickling (Ray)
        return {**self.__dict__, "_graph": None, "_mask": None}

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One detector pass: scores (n,) and boxes (n, 4) as x, y, width, height in pixels of ``image``."""
        self.setup()
        detections = self._graph.process({"image": np.ascontiguousarray(image)}).detections or []
        height, width = image.shape[:2]
        boxes = [d.location_data.relative_bounding_box for d in detections]
        return (
            np.array([d.score[0] for d in detections], np.float32),
            np.array([(b.xmin * width, b.ymin * height, b.width * width, b.height * height) for b in boxes],
                     np.float32).reshape(-1, 4),
        )

    def windows_for(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Windows (left, top, right, bottom) of the passes over a frame: the whole frame first; with
        ``tiles``, on frames wider than tall, ``n = max(2, round(width / height))`` overlapping columns
        (each ``tile_width`` of the frame for two, 1.5 / n of it for more: three dancers in a row get
        three), and with ``grid``, on frames about as tall as wide (aspect 3:4 to 4:3, both sides at
        least ``2 x 224`` px), the four corner windows of ``tile_width`` x ``tile_width`` (a 2 x 2
        tiling of people). Each window reaches the detector's 224 x 224 input larger than the frame."""
        return _windows(width, height, self.tile_width, self.tiles, self.grid)

    def mask_tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Windows the person mask also runs on: the detector's columns on frames wider than tall,
        and on frames about as tall as wide (3:4 to 4:3, both sides >= 448 px) the four 60% corner
        windows (the grid's windows: here they only find the mask's components, no person directly)."""
        return _windows(width, height, self.tile_width, columns=True, grid=True)[1:]

    def mask_windows(self, components: list[tuple[float, np.ndarray]], width: int,
                     height: int) -> list[tuple[int, int, int, int]]:
        """Windows (left, top, right, bottom) around the person mask's components: each box grown by
        ``MASK_GROW`` of its size on each side, clipped to the frame; a window covering 90% of the frame's
        width and height is the whole-frame pass again and is left out."""
        windows = []
        for _, (x, y, w, h) in components:
            left, top = max(0, int(x - MASK_GROW * w)), max(0, int(y - MASK_GROW * h))
            right = min(width, int(np.ceil(x + w + MASK_GROW * w)))
            bottom = min(height, int(np.ceil(y + h + MASK_GROW * h)))
            if (right - left < 0.9 * width or bottom - top < 0.9 * height) and min(right - left, bottom - top) >= 16:
                windows.append((left, top, right, bottom))
        return windows

    def people(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Everyone counted in one RGB uint8 frame (H, W, 3): scores (n,) and boxes (n, 4) in pixels.

        The whole-frame detections all count (MediaPipe already merged overlapping ones); a
        window's detection adds a person when it scores at least ``tile_min_score``, its box is
        inside the window (not cut by an inner edge) and it covers less than ``TILE_OVERLAP`` of
        the smaller box against everyone so far: the detector's box for one person moves and
        changes size between passes. With ``person_mask`` the windows include the person mask's
        components (``mask_windows``), and with ``headless`` a frame where no window found anyone
        but the largest component covers ``headless_area`` of it counts that component as one
        person (score NaN: no detector score; its box is the component's).
        """
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"PersonCounter: frames must be uint8 (H, W, 3) RGB, got {got}")
        height, width = frame.shape[:2]
        windows = self.windows_for(width, height)
        components = []
        if self.person_mask:
            self.setup()
            components = self._mask.components(frame, self.mask_tiles(width, height) if self.tiled_mask else ())
            windows += [w for w in self.mask_windows(components, width, height) if w not in windows]
        people: list[tuple[float, np.ndarray]] = []  # (score, box in frame pixels)
        for left, top, right, bottom in windows:
            whole = (left, top, right, bottom) == (0, 0, width, height)
            for score, box in zip(*self.detect(frame[top:bottom, left:right])):
                inside = ((left == 0 or box[0] > 0) and (right == width or box[0] + box[2] < right - left)
                          and (top == 0 or box[1] > 0) and (bottom == height or box[1] + box[3] < bottom - top))
                box = box + np.array([left, top, 0, 0], np.float32)
                new = inside and all(_overlap(box, other) < TILE_OVERLAP for _, other in people)
                if (whole and score >= self.min_score) or (new and score >= self.tile_min_score):
                    people.append((float(score), box))
        if self.headless and not people and components and components[0][0] >= self.headless_area:
            people.append((float("nan"), components[0][1]))
        scores = np.array([score for score, _ in people], np.float32)
        return scores, np.array([box for _, box in people], np.float32).reshape(-1, 4)

    def count(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """(N,) int64: people in each RGB uint8 frame (an (N, H, W, 3) array or any iterable of frames)."""
        return np.array([len(self.people(frame)[0]) for frame in frames], np.int64)


def _windows(width: int, height: int, tile_width: float, columns: bool, grid: bool) -> list[tuple[int, int, int, int]]:
    """The whole frame, then the columns and the corner windows of ``PersonCounter.windows_for``."""
    passes = [(0, 0, width, height)]
    if columns and width > height:
        n = max(2, round(width / height))
        side = int(round((tile_width if n == 2 else 1.5 / n) * width))
        lefts = np.linspace(0, width - side, n).round().astype(int)
        passes += [(int(left), 0, int(left) + side, height) for left in lefts]
    if grid and 0.75 <= width / height <= 4 / 3 and min(width, height) >= 2 * DETECTOR_SIDE:
        w, h = int(round(tile_width * width)), int(round(tile_width * height))
        passes += [(left, top, left + w, top + h) for top in (0, height - h) for left in (0, width - w)]
    return passes


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two x, y, width, height boxes over the smaller one's area."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(w, 0.0) * max(h, 0.0) / max(min(a[2] * a[3], b[2] * b[3]), 1e-9))


def spread_counts(sampled_index: np.ndarray, sampled_count: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) int64: each frame takes the count of the nearest sampled frame; a frame
    halfway between two samples takes the larger count (a second person is not lost)."""
    sampled_index = np.asarray(sampled_index, np.int64)
    sampled_count = np.asarray(sampled_count, np.int64)
    if sampled_index.shape != sampled_count.shape or sampled_index.ndim != 1:
        raise ValueError(f"sampled_index {sampled_index.shape} and sampled_count {sampled_count.shape}: need equal 1-D")
    if num_frames == 0:
        return np.zeros(0, np.int64)
    if len(sampled_index) == 0:
        raise ValueError(f"no sampled frames to spread over {num_frames} frames")
    if np.any(np.diff(sampled_index) <= 0) or sampled_index[0] < 0 or sampled_index[-1] >= num_frames:
        raise ValueError(f"sampled_index must be increasing frame numbers in [0, {num_frames})")
    frames = np.arange(num_frames)
    right = np.clip(np.searchsorted(sampled_index, frames), 0, len(sampled_index) - 1)
    left = np.clip(right - 1, 0, len(sampled_index) - 1)
    d_left = np.abs(frames - sampled_index[left])
    d_right = np.abs(sampled_index[right] - frames)
    nearest = np.where(d_left < d_right, sampled_count[left], sampled_count[right])
    tie = np.maximum(sampled_count[left], sampled_count[right])
    return np.where(d_left == d_right, tie, nearest)
