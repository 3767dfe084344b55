"""What surrounds the person in the generated sample: textured background plates seen through the swaying camera,
and the image effects some shots carry on purpose (Gaussian blur, burnt-in captions) for the App. B filters to catch.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np


def hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    """An RGB uint8 colour from hue (wrapped to [0, 1)), saturation and value."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


# --- Backgrounds ---------------------------------------------------------------------------------


@dataclass
class Background:
    """A textured plate, far away, larger than the frame; the still camera sees the window at ``origin``.

    With camera ``rotations`` (T, 3, 3), frame t is the plate warped by the
    rotation's homography (exact for a plate at infinity): output pixel ``p``
    shows plate pixel ``origin + K R_t^T K^-1 p`` (nearest pixel, so no blur).
    """

    plate: np.ndarray
    origin: tuple[int, int] = (0, 0)
    intrinsics: np.ndarray | None = None
    rotations: np.ndarray | None = None

    def source_map(self, t: int) -> np.ndarray:
        """3x3 homography from frame t's pixels to plate pixels."""
        return view_to_plate(self.origin, self.intrinsics, None if self.rotations is None else self.rotations[t])

    def frame(self, t: int, width: int, height: int) -> np.ndarray:
        source = self.source_map(t)
        corners = plate_corners(source, width, height)
        ph, pw = self.plate.shape[:2]
        if corners.min() < 0 or corners[:, 0].max() > pw - 1 or corners[:, 1].max() > ph - 1:
            raise ValueError(f"frame {t} turns outside the background plate")
        if self.rotations is None:
            x, y = self.origin
            return self.plate[y : y + height, x : x + width].copy()
        flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        return cv2.warpPerspective(self.plate, source, (width, height), flags=flags)


def view_to_plate(origin: tuple[int, int], intrinsics: np.ndarray | None, rotation: np.ndarray | None) -> np.ndarray:
    """3x3 homography from the pixels of a camera turned by ``rotation`` to plate pixels (``origin + K R^T K^-1 p``)."""
    shift = np.array([[1.0, 0.0, origin[0]], [0.0, 1.0, origin[1]], [0.0, 0.0, 1.0]])
    if rotation is None:
        return shift
    k = np.asarray(intrinsics, dtype=np.float64)
    return shift @ k @ rotation.T @ np.linalg.inv(k)


def plate_corners(source_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """Plate pixels (8, 2) under the frame's corners and edge midpoints."""
    xs, ys = [0, (width - 1) / 2, width - 1], [0, (height - 1) / 2, height - 1]
    points = np.array([[x, y, 1.0] for x in xs for y in ys if (x, y) != (xs[1], ys[1])])
    mapped = points @ source_map.T
    return mapped[:, :2] / mapped[:, 2:]


def random_background(
    rng: np.random.Generator, width: int, height: int, hue: float,
    intrinsics: np.ndarray | None = None, rotations: np.ndarray | None = None,
) -> Background:
    """A plate of gradients, smooth colour noise, a tiled floor, random shapes and fine grain.

    ``hue`` sets the palette (shots get distinct hues so cuts are visible); the
    plate is made large enough for every view of the turning camera (``rotations``).
    """
    pw, ph, origin = width, height, (0, 0)
    if rotations is not None:
        if intrinsics is None:
            raise ValueError("random_background needs the camera intrinsics to turn the camera")
        seen = np.concatenate([plate_corners(view_to_plate((0, 0), intrinsics, r), width, height) for r in rotations])
        low = np.floor(seen.min(axis=0)) - 2
        high = np.ceil(seen.max(axis=0)) + 2
        origin = (int(-low[0]), int(-low[1]))
        pw, ph = int(high[0] - low[0]) + 1, int(high[1] - low[1]) + 1

    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    g_angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(g_angle) * xx + np.sin(g_angle) * yy) / max(pw, ph)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0 = np.array(hsv_rgb(hue, rng.uniform(0.3, 0.7), rng.uniform(0.5, 0.9)), np.float32)
    c1 = np.array(hsv_rgb(hue + rng.uniform(-0.12, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.25, 0.6)), np.float32)
    plate = c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]
    coarse = rng.uniform(-40, 40, size=(max(2, ph // 40), max(2, pw // 40), 3)).astype(np.float32)
    plate += cv2.resize(coarse, (pw, ph), interpolation=cv2.INTER_CUBIC)
    medium = rng.uniform(-18, 18, size=(max(2, ph // 10), max(2, pw // 10), 1)).astype(np.float32)
    plate += cv2.resize(medium, (pw, ph), interpolation=cv2.INTER_CUBIC)[..., None]  # texture for optical flow

    # A floor: the lower part of the plate, tiled.
    floor_y = int(ph * rng.uniform(0.55, 0.7))
    tile = int(rng.integers(14, 26))
    floor_colour = np.array(hsv_rgb(hue + 0.5, rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.6)), np.float32)
    checker = (((xx // tile) + (yy // (tile * 0.6))) % 2)[floor_y:, :, None]
    plate[floor_y:] = 0.35 * plate[floor_y:] + 0.65 * (floor_colour * (0.85 + 0.3 * checker))

    plate = np.clip(plate, 0, 255).astype(np.uint8)
    area = pw * ph
    for _ in range(int(rng.integers(8, 14)) * max(1, area // (width * height * 2))):
        colour = hsv_rgb(hue + rng.uniform(-0.25, 0.25), rng.uniform(0.2, 0.8), rng.uniform(0.2, 1.0))
        cx, cy = int(rng.integers(0, pw)), int(rng.integers(0, floor_y))
        size = int(rng.integers(8, max(9, min(width, height) // 4)))
        thickness = -1 if rng.uniform() < 0.6 else int(rng.integers(2, 5))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.rectangle(plate, (cx - size, cy - size // 2), (cx + size, cy + size), colour, thickness, cv2.LINE_AA)
        elif shape == 1:
            cv2.circle(plate, (cx, cy), size // 2 + 2, colour, thickness, cv2.LINE_AA)
        else:
            pts = np.stack([cx + rng.integers(-size, size, 3), cy + rng.integers(-size, size, 3)], 1).astype(np.int32)
            cv2.fillPoly(plate, [pts], colour, cv2.LINE_AA)
    grain = rng.normal(0.0, 5.0, size=plate.shape).astype(np.float32)
    plate = np.clip(plate.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    return Background(plate=plate, origin=origin, intrinsics=intrinsics, rotations=rotations)


# --- Effects -------------------------------------------------------------------------------------

TEXT_WORDS = ("BREAKING NEWS", "LIVE TONIGHT", "SALE 50% OFF", "SUBSCRIBE NOW", "TOP 10 MOVES", "WATCH TILL END")


def blur_frame(img: np.ndarray, sigma: float) -> np.ndarray:
    """A strong Gaussian blur (a defocused shot)."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)


Caption = tuple[str, tuple[int, int], float, int]  # text, bottom-left origin, font scale, thickness


def text_layout(rng: np.random.Generator, width: int, height: int, lines: int = 2) -> list[Caption]:
    """Caption lines filling most of the frame width, spread from near the top to near the bottom."""
    if not 1 <= lines <= len(TEXT_WORDS):
        raise ValueError(f"lines must be in 1..{len(TEXT_WORDS)}, got {lines}")
    words = rng.choice(len(TEXT_WORDS), size=lines, replace=False)
    line_h = height * 0.2
    first = rng.uniform(0.25, 0.35) * height  # baseline of the first line
    last = 0.92 * height
    layout = []
    for i, w in enumerate(words):
        text = TEXT_WORDS[int(w)]
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, 1.0, 2)
        scale = min(0.92 * width / tw, 0.75 * line_h / th)
        thickness = max(2, int(round(2.2 * scale)))
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thickness)
        y = first if lines == 1 else first + (last - first) * i / (lines - 1)
        layout.append((text, (int((width - tw) / 2), int(y)), float(scale), thickness))
    return layout


def draw_text(img: np.ndarray, layout: list[Caption]) -> None:
    """Burn the caption lines into ``img``: white letters with a black outline, like a video overlay."""
    for text, origin, scale, thickness in layout:
        cv2.putText(img, text, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (0, 0, 0), thickness + 3, cv2.LINE_AA)
        cv2.putText(img, text, origin, cv2.FONT_HERSHEY_DUPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def text_boxes(layout: list[Caption]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (x0, y0, x1, y1) of the caption lines."""
    boxes = []
    for text, (x, y), scale, thickness in layout:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, thickness + 3)
        boxes.append((x, y - th, x + tw, y + base))
    return boxes


@dataclass(frozen=True)
class Effects:
    """Per-shot image effects: Gaussian blur sigma (0 = none) and caption lines to burn in."""

    blur_sigma: float = 0.0
    text: tuple = ()
