"""Aesthetic score of paper App. B: how good a clip's frames look.

Clip score: the mean over the sampled frames (the look of a clip is its typical frame;
a mean is what LAION-style filters use).

Backends:
- "laion-clip-vit-l14" (production, the paper's predictor): the LAION improved aesthetic
  predictor (Schuhmann et al. 2022): an MLP head (768 -> 1024 -> 128 -> 64 -> 16 -> 1, with
  dropout) on the L2-normalised image embedding of OpenAI's CLIP ViT-L/14, on a 1-10 scale;
  kept when >= 5.0. CLIP is built by open_clip (``ViT-L-14-quickgelu``: OpenAI's weights use
  QuickGELU) with ``pretrained=None`` and loaded from a local file; the head from another.
  Files in ``MTVCRAFT_WEIGHTS``:
  ``vit_large_patch14_clip_224.openai/open_clip_model.safetensors`` (open_clip's OpenAI
  ViT-L/14 weights as published in the timm/vit_large_patch14_clip_224.openai repository)
  and ``sac+logos+ava1-l14-linearMSE.pth`` (the predictor's published head).
- "classical-iq" (embedded default): NOT the LAION score and not on its scale. No installed
  package ships CLIP or aesthetic-head weights, so this is a classical image-quality score,
  0-10, a weighted mix of four measures on the frame shrunk to a 512 long side:
  exposure (mid-grey mean luminance, few clipped pixels), contrast (RMS of luminance),
  colourfulness (Hasler & Suesstrunk 2003) and sharpness (Laplacian variance, log scale).
  It catches dark, washed-out, grey or blurred footage, not composition or taste; its
  own threshold is in ``DEFAULT_THRESHOLDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .base import resize_long_side

CLIP_WEIGHTS_FILE = "vit_large_patch14_clip_224.openai/open_clip_model.safetensors"
HEAD_WEIGHTS_FILE = "sac+logos+ava1-l14-linearMSE.pth"
CLIP_MODEL = "ViT-L-14-quickgelu"


# --- Embedded: a classical image-quality score ------------------------------------------------------


@dataclass(frozen=True)
class IQWeights:
    """Weights of the four measures (they sum to 1, so the score spans 0-10)."""

    exposure: float = 0.3
    contrast: float = 0.25
    colourfulness: float = 0.2
    sharpness: float = 0.25


FULL_CONTRAST = 0.25  # RMS luminance contrast (0-1 scale) counted as full: typical of well-lit photos
FULL_COLOURFULNESS = 60.0  # Hasler & Suesstrunk's M for "quite colourful" (their scale: 45 average, 82 high)
FULL_SHARPNESS = 1000.0  # Laplacian variance at a 512 long side counted as fully sharp
CLIPPED_LEVELS = (5, 250)  # grey levels at or beyond which a pixel counts as crushed / blown out


def colourfulness(frame: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness M of an RGB uint8 frame (0 for grey; ~45 average, ~82 high)."""
    rgb = frame.astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def iq_components(frame: np.ndarray, long_side: int = 512) -> dict[str, float]:
    """The four measures of ``classical_iq``, each in [0, 1] (1 = best)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {frame.shape}")
    frame = resize_long_side(frame, long_side)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    luma = grey.astype(np.float64) / 255.0
    clipped = float(np.mean((grey <= CLIPPED_LEVELS[0]) | (grey >= CLIPPED_LEVELS[1])))
    exposure = (1.0 - abs(luma.mean() - 0.5) / 0.5) * (1.0 - clipped)
    sharpness_raw = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return {
        "exposure": float(np.clip(exposure, 0.0, 1.0)),
        "contrast": float(min(luma.std() / FULL_CONTRAST, 1.0)),
        "colourfulness": min(colourfulness(frame) / FULL_COLOURFULNESS, 1.0),
        "sharpness": float(min(np.log1p(sharpness_raw) / np.log1p(FULL_SHARPNESS), 1.0)),
    }


def classical_iq(frame: np.ndarray, weights: IQWeights = IQWeights(), long_side: int = 512) -> float:
    """Classical image-quality score of one RGB frame, 0-10 (see the module docstring)."""
    parts = iq_components(frame, long_side)
    return 10.0 * sum(getattr(weights, name) * value for name, value in parts.items())


class ClassicalIQ:
    """Embedded backend "classical-iq": a classical image-quality score, NOT the LAION aesthetic score."""

    metric = "aesthetic"
    backend = "classical-iq"
    needs_pairs = False

    def __init__(self, long_side: int = 512, weights: IQWeights = IQWeights()) -> None:
        total = weights.exposure + weights.contrast + weights.colourfulness + weights.sharpness
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"classical-iq weights must sum to 1, got {weights} (sum {total})")
        self.long_side = long_side
        self.weights = weights
        self.version = (
            f"classical-iq 1 (opencv {cv2.__version__}); long side {long_side}; weights exposure "
            f"{weights.exposure}, contrast {weights.contrast}, colourfulness {weights.colourfulness}, "
            f"sharpness {weights.sharpness}"
        )

    def setup(self) -> None:
        """Nothing to load."""

    def frame_scores(self, frames: list[np.ndarray]) -> list[float]:
        return [classical_iq(frame, self.weights, self.long_side) for frame in frames]

    def score(self, frames: list[np.ndarray], pairs: list | None = None) -> float:
        values = self.frame_scores(frames)
        return float(np.mean(values)) if values else float("nan")


# --- Production: CLIP ViT-L/14 + the LAION aesthetic head ------------------------------------------


def _aesthetic_head(embed_dim: int):
    """The improved-aesthetic-predictor MLP; its layer indices match the published state dict keys."""
    from torch import nn

    class AestheticHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(embed_dim, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, embedding):
            return self.layers(embedding)

    return AestheticHead()


def make_aesthetic_head(embed_dim: int = 768):
    """A randomly initialised LAION aesthetic head for CLIP embeddings of ``embed_dim`` (768 for ViT-L/14)."""
    return _aesthetic_head(embed_dim)


class LaionAesthetic:
    """Production backend "laion-clip-vit-l14": CLIP ViT-L/14 + the LAION aesthetic head (module docstring).

    ``clip_model`` is the open_clip architecture name (the default matches OpenAI's
    ViT-L/14); the CLIP file may be ``.safetensors`` or a ``torch.save`` state dict.
    """

    metric = "aesthetic"
    backend = "laion-clip-vit-l14"
    needs_pairs = False
    WEIGHT_FILES = {"clip_path": CLIP_WEIGHTS_FILE, "head_path": HEAD_WEIGHTS_FILE}

    def __init__(
        self,
        clip_path: str | Path,
        head_path: str | Path,
        clip_model: str = CLIP_MODEL,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.clip_path = Path(clip_path)
        self.head_path = Path(head_path)
        self.clip_model = clip_model
        self.device = device
        self.batch_size = batch_size
        self.version = f"open_clip {_open_clip_version()} {clip_model}; {self.clip_path.name}; {self.head_path.name}"
        self._clip = None

    def setup(self) -> None:
        if self._clip is not None:
            return
        import open_clip
        import torch

        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        clip, _, preprocess = open_clip.create_model_and_transforms(self.clip_model, pretrained=None)
        try:
            open_clip.load_checkpoint(clip, str(self.clip_path), weights_only=True)
        except RuntimeError as error:
            raise ValueError(f"{self.clip_path} does not hold open_clip {self.clip_model} weights: {error}") from error
        embed_dim = clip.visual.output_dim

        state = torch.load(self.head_path, map_location="cpu", weights_only=True)
        first = state.get("layers.0.weight") if isinstance(state, dict) else None
        if first is None:
            raise ValueError(f"{self.head_path} is not a LAION aesthetic head state dict (no 'layers.0.weight')")
        if first.shape[1] != embed_dim:
            raise ValueError(
                f"{self.head_path} takes {first.shape[1]}-d embeddings but {self.clip_model} gives {embed_dim}-d"
            )
        head = _aesthetic_head(embed_dim)
        head.load_state_dict(state)
        self._clip, self._head, self._preprocess = clip.to(device).eval(), head.to(device).eval(), preprocess
        self._device = device

    def frame_scores(self, frames: list[np.ndarray]) -> list[float]:
        import torch
        from PIL import Image

        self.setup()
        scores: list[float] = []
        for begin in range(0, len(frames), self.batch_size):
            chunk = frames[begin : begin + self.batch_size]
            batch = torch.stack([self._preprocess(Image.fromarray(frame)) for frame in chunk]).to(self._device)
            with torch.inference_mode():
                embedding = self._clip.encode_image(batch).float()
                embedding = embedding / embedding.norm(dim=-1, keepdim=True)
                scores.extend(self._head(embedding).squeeze(-1).cpu().tolist())
        return scores

    def score(self, frames: list[np.ndarray], pairs: list | None = None) -> float:
        values = self.frame_scores(frames)
        return float(np.mean(values)) if values else float("nan")


def _open_clip_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("open-clip-torch")
