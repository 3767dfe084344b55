"""Pictures and small tables for people: what an asset page in the Dagster UI shows.

Everything here returns plain bytes / strings (Markdown with embedded PNGs), so
``pipeline/`` stays free of Dagster; ``assets/`` wraps them as metadata.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

from models.motion.skeleton import SMPL_BONES
from pipeline.core.camera import project  # noqa: F401  (previews.project: skeleton overlays)

# Left side warm, right side cool, spine grey: the usual skeleton colouring.
_LEFT = {1, 4, 7, 10, 13, 16, 18, 20, 22}
_RIGHT = {2, 5, 8, 11, 14, 17, 19, 21, 23}


def encode_png(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()


def png_markdown(png: bytes, alt: str = "preview") -> str:
    """Markdown that shows a PNG inline (Dagster has no image metadata type; STACK.md)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def save_png(png: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def draw_skeleton(frame_rgb: np.ndarray, joints_px: np.ndarray, thickness: int = 2) -> np.ndarray:
    """Draw the SMPL bones of one person, given its (24, 2) pixel joints, on a copy of the frame."""
    out = frame_rgb.copy()
    if not np.isfinite(joints_px).all():
        return out
    pts = np.round(joints_px).astype(int)
    for parent, child in SMPL_BONES:
        color = (255, 120, 40) if child in _LEFT else (40, 160, 255) if child in _RIGHT else (230, 230, 230)
        cv2.line(out, tuple(pts[parent]), tuple(pts[child]), color, thickness, cv2.LINE_AA)
    for p in pts:
        cv2.circle(out, tuple(p), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def contact_sheet(images: list[np.ndarray], columns: int = 4, height: int = 160, labels: list[str] | None = None) -> np.ndarray:
    """Images resized to one height and tiled in rows, with an optional caption on each."""
    if not images:
        return np.full((height, height, 3), 40, np.uint8)
    tiles = [fit_height(im, height) for im in images]
    width = max(t.shape[1] for t in tiles)
    padded = []
    for i, tile in enumerate(tiles):
        canvas = np.full((height, width, 3), 24, np.uint8)
        canvas[:, : tile.shape[1]] = tile
        if labels:
            # White text on a darkened strip: readable over any picture, unlike an outline at this font size.
            text = labels[i][:40]
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            strip = canvas[height - th - base - 6 :, : tw + 8]
            strip[:] = (strip * 0.35).astype(np.uint8)
            cv2.putText(canvas, text, (4, height - base - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        padded.append(canvas)
    while len(padded) % columns:
        padded.append(np.full((height, width, 3), 24, np.uint8))
    rows = [np.concatenate(padded[i:i + columns], axis=1) for i in range(0, len(padded), columns)]
    return np.concatenate(rows, axis=0)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_rgb(fig) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 image and close it."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(fig)
    return image


def markdown_table(rows: list[dict], max_rows: int = 30) -> str:
    """A Markdown table of dict rows (first ``max_rows``), with a note of how many were left out."""
    if not rows:
        return "_(no rows)_"
    keys = list(rows[0].keys())
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows[:max_rows]:
        lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n_{len(rows) - max_rows} more rows not shown_")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace("|", "\\|")
