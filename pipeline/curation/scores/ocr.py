"""OCR text ratio of paper App. B: the share of a frame covered by detected text.

Per sampled frame: the text detector's boxes are rasterised into one mask (so overlapping
boxes count once: the area of their union) and the ratio is mask pixels / frame pixels.
Only detection runs; nothing is recognised. Kept when <= 0.05 (paper).

Clip score: the max over the sampled frames. A caption, title card or subtitle that is on
screen for part of the clip still marks it as text-bearing (a mean would dilute it by the
text-free frames), and a clean clip scores 0 on every frame, so the max costs nothing there;
the detector's box threshold is set high to keep false boxes from tripping it.

Backends:
- "rapidocr" (embedded default): the PP-OCR text detector (DB, "PP-OCRv6 det small") that
  ships inside the ``rapidocr==3.10.0`` wheel, run by onnxruntime on the CPU. Frames are
  shrunk to ``max_side`` (default 480) first: captions that matter at 5% of the frame stay
  far above the detector's smallest text. ``box_thresh`` 0.85 (library default 0.5) drops
  false boxes on large flat shapes. A box over half the frame (``max_box_fraction``) is dropped:
  DB finds text *lines*, and one region spanning most of the frame is the network firing on
  the whole picture (seen on single frames of textured generated backgrounds, the next frame
  clean), not a caption. ``model_path`` may name another PP-OCR det ONNX file.
  onnxruntime runs on one thread (``num_threads``; -1: all cores): on the shared 2-core
  machine one thread measured 0.42-0.48 s a frame against 0.58-0.62 s with all cores, and
  the Ray pool already runs one scorer actor per core.
- "craft" (production, the paper's detector): CRAFT (Baek et al. 2019) with the official
  ``craft_mlt_25k.pth`` weights from ``MTVCRAFT_WEIGHTS``; the network definition and its
  box post-processing come from the ``easyocr`` package (which ships no weights: they are
  loaded from the local file with ``torch.load(weights_only=True)``). GPU when available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .base import resize_long_side

CRAFT_WEIGHTS_FILE = "craft_mlt_25k.pth"  # the CRAFT authors' general (multi-language) model


def text_ratio(boxes: Sequence[np.ndarray], height: int, width: int) -> float:
    """Area of the union of text polygons (each (k, 2) x, y in pixels) / frame area.

    Each polygon is filled on its own (one fillPoly per box), so that overlaps are a
    union, never cancelled out by an even-odd fill of several polygons at once.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    mask = np.zeros((height, width), np.uint8)
    for box in boxes:
        polygon = np.round(np.asarray(box, np.float64).reshape(-1, 2)).astype(np.int32)
        cv2.fillPoly(mask, [polygon], 1)
    return float(mask.mean())


def spread(frames: list, count: int) -> list:
    """At most ``count`` items of ``frames``, evenly spread, first and last included."""
    if len(frames) <= count:
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]


def _max_or_nan(values: list[float]) -> float:
    return float(max(values)) if values else float("nan")


class RapidOCRText:
    """Embedded backend "rapidocr": PP-OCR detection from the rapidocr wheel (see the module docstring)."""

    metric = "ocr"
    backend = "rapidocr"
    needs_pairs = False

    def __init__(
        self,
        max_side: int = 480,
        box_thresh: float = 0.85,
        model_path: str | Path | None = None,
        num_threads: int = 1,
        max_frames: int = 4,
        max_box_fraction: float = 0.5,
    ) -> None:
        if max_side < 32:
            raise ValueError(f"OCR max_side must be >= 32 pixels, got {max_side}")
        if not 0.0 < box_thresh < 1.0:
            raise ValueError(f"OCR box_thresh must be in (0, 1), got {box_thresh}")
        self.max_side = max_side
        self.box_thresh = box_thresh
        self.model_path = None if model_path is None else Path(model_path)
        self.num_threads = num_threads
        self.max_frames = max_frames
        if not 0.0 < max_box_fraction <= 1.0:
            raise ValueError(f"OCR max_box_fraction must be in (0, 1], got {max_box_fraction}")
        self.max_box_fraction = max_box_fraction
        self._engine = None
        model = self.model_path.name if self.model_path else self._packaged_model().name
        self.version = (f"rapidocr {_package_version('rapidocr')}; {model}; max_side {max_side}, box_thresh {box_thresh}, "
                        f"max_frames {max_frames}, max_box_fraction {max_box_fraction}")

    @staticmethod
    def _packaged_model() -> Path:
        import rapidocr

        return Path(rapidocr.__file__).parent / "models" / "PP-OCRv6_det_small.onnx"

    def setup(self) -> None:
        if self._engine is not None:
            return
        from rapidocr import RapidOCR

        model = self.model_path or self._packaged_model()
        if not model.is_file():
            raise FileNotFoundError(f"ocr_backend = 'rapidocr': detector model {model} not found")
        # The model path is given explicitly, so rapidocr never looks for (or downloads) one.
        self._engine = RapidOCR(
            params={
                "Global.use_cls": False,
                "Global.use_rec": False,
                "Global.log_level": "error",  # rapidocr logs "no text found" as a warning
                "Det.model_path": str(model),
                "Det.box_thresh": self.box_thresh,
                "Det.limit_type": "max",  # never upscale: frames already have max side <= max_side
                "Det.limit_side_len": self.max_side,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.num_threads,
            }
        )

    def detect(self, frame: np.ndarray) -> list[np.ndarray]:
        """Text boxes (4, 2) in the pixel coordinates of ``frame`` (RGB uint8)."""
        self.setup()
        small = resize_long_side(frame, min(self.max_side, max(frame.shape[:2])))
        bgr = np.ascontiguousarray(small[..., ::-1])  # PP-OCR models were trained on BGR (cv2.imread) images
        result = self._engine(bgr, use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(result, "boxes", None)  # no text: an empty output object without boxes
        if boxes is None or len(boxes) == 0:
            return []
        scale = np.array([frame.shape[1] / small.shape[1], frame.shape[0] / small.shape[0]])
        boxes = [np.asarray(box, np.float64) * scale for box in boxes]
        frame_area = frame.shape[0] * frame.shape[1]
        return [box for box in boxes if cv2.contourArea(box.astype(np.float32)) <= self.max_box_fraction * frame_area]

    def frame_scores(self, frames: list[np.ndarray]) -> list[float]:
        return [text_ratio(self.detect(frame), *frame.shape[:2]) for frame in frames]

    def score(self, frames: list[np.ndarray], pairs: list | None = None) -> float:
        """Max text ratio over at most ``max_frames`` of the sampled frames, evenly spread: detection is the
        costliest scorer on a CPU, and overlays that matter (captions, watermarks) persist across frames."""
        return _max_or_nan(self.frame_scores(spread(frames, self.max_frames)))


class CRAFTText:
    """Production backend "craft": CRAFT with local weights (see the module docstring).

    Frames are scaled so that the long side is at most ``canvas_size`` (CRAFT's test
    setting) and thresholded with CRAFT's defaults: text 0.7, link 0.4, low text 0.4.
    """

    metric = "ocr"
    backend = "craft"
    needs_pairs = False
    WEIGHT_FILES = {"weights_path": CRAFT_WEIGHTS_FILE}

    def __init__(
        self,
        weights_path: str | Path,
        canvas_size: int = 1280,
        text_threshold: float = 0.7,
        link_threshold: float = 0.4,
        low_text: float = 0.4,
        device: str | None = None,
    ) -> None:
        self.weights_path = Path(weights_path)
        self.canvas_size = canvas_size
        self.text_threshold = text_threshold
        self.link_threshold = link_threshold
        self.low_text = low_text
        self.device = device
        self.version = (
            f"easyocr {_package_version('easyocr')} CRAFT; {self.weights_path.name}; canvas {canvas_size}, "
            f"text {text_threshold}, link {link_threshold}, low {low_text}"
        )
        self._net = None

    def setup(self) -> None:
        if self._net is not None:
            return
        import torch
        from easyocr.craft import CRAFT

        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{self.weights_path} is not a CRAFT state dict (got {type(state).__name__})")
        # The official file was saved from nn.DataParallel: its keys start with "module.".
        state = {key.removeprefix("module."): value for key, value in state.items()}
        # Built on the meta device (no random init of VGG-16, seconds on a CPU), then the file's
        # tensors are assigned; strict loading leaves no parameter behind. pretrained=False:
        # no ImageNet VGG download.
        with torch.device("meta"):
            net = CRAFT(pretrained=False)
        try:
            net.load_state_dict(state, assign=True)
        except RuntimeError as error:
            raise ValueError(f"{self.weights_path} is not a CRAFT state dict: {error}") from error
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._net = net.to(device).eval()
        self._device = torch.device(device)

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Text boxes (4, 2) per frame, in each frame's pixel coordinates; frames of one size."""
        import torch
        from easyocr.craft_utils import adjustResultCoordinates, getDetBoxes
        from easyocr.imgproc import normalizeMeanVariance, resize_aspect_ratio

        self.setup()
        resized, ratio = [], 1.0
        for frame in frames:
            image, ratio, _ = resize_aspect_ratio(frame, self.canvas_size, interpolation=cv2.INTER_LINEAR, mag_ratio=1.0)
            resized.append(normalizeMeanVariance(image).transpose(2, 0, 1))  # CRAFT takes RGB
        batch = torch.from_numpy(np.stack(resized)).to(self._device)
        with torch.inference_mode():
            maps, _ = self._net(batch)  # (B, H/2, W/2, 2): region score, affinity score
        maps = maps.float().cpu().numpy()
        found = []
        for score_map in maps:
            boxes, _, _ = getDetBoxes(
                score_map[..., 0], score_map[..., 1], self.text_threshold, self.link_threshold, self.low_text
            )
            boxes = adjustResultCoordinates(boxes, 1.0 / ratio, 1.0 / ratio)  # map (x2 net stride) back to the frame
            found.append([np.asarray(box, np.float64) for box in boxes])
        return found

    def frame_scores(self, frames: list[np.ndarray]) -> list[float]:
        if not frames:
            return []
        return [text_ratio(boxes, *frame.shape[:2]) for boxes, frame in zip(self.detect_batch(frames), frames)]

    def score(self, frames: list[np.ndarray], pairs: list | None = None) -> float:
        return _max_or_nan(self.frame_scores(frames))


def _package_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
