"""Small videos and bad input files written at test time (PyAV + numpy, no downloads).

Other test files import these helpers (pytest puts tests/ on sys.path because tests/
has no __init__.py). Everything is deterministic from its arguments and seed, except the
exact encoded bytes, which depend on the encoder build: compare decoded pixels, not bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np

StrPath = str | os.PathLike[str]


def write_video(
    path: StrPath,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    faststart: bool = False,
) -> Path:
    """Encode `frames` (T,H,W,3) uint8 RGB as a video at `path`; H and W must be even.

    libx264 uses crf 12 so that decoded pixels stay close to the input. `faststart` moves
    the mp4 index (moov box) to the front of the file, as web-ready videos have it.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T,H,W,3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def _shot_background(rng: np.random.Generator, height: int, width: int, shot: int) -> np.ndarray:
    """A smooth random texture with its own hue per shot, 2x wider than the frame for panning."""
    coarse = rng.random((height // 16 + 1, width // 8 + 1), dtype=np.float32)
    value = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)
    value = np.clip(60 + 160 * value, 0, 255)
    hue = (shot * 67 + rng.integers(0, 20)) % 180  # OpenCV hue range is [0, 180)
    hsv = np.stack(
        [np.full_like(value, hue), np.full_like(value, 150 + 60 * (shot % 2)), value], axis=-1
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def make_cut_frames(
    cut_frames: list[int], num_frames: int, size: tuple[int, int] = (320, 240), seed: int = 0
) -> np.ndarray:
    """Frames (T,H,W,3) with hard cuts at `cut_frames` (the first frame of each new shot).

    Each shot has its own hue and texture; inside a shot the background pans 1 px per
    frame and a disc moves across it, so there is motion but no content change.
    """
    width, height = size
    cuts = list(cut_frames)
    if cuts != sorted(set(cuts)) or any(not 0 < c < num_frames for c in cuts):
        raise ValueError(f"cut_frames must be sorted, unique and in (0, {num_frames}), got {cuts}")
    rng = np.random.default_rng(seed)
    bounds = [0, *cuts, num_frames]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for shot, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        background = _shot_background(rng, height, width, shot)
        disc_colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        for i, t in enumerate(range(start, end)):
            offset = width - abs(i % (2 * width) - width)  # pans back and forth, no jump
            frame = np.ascontiguousarray(background[:, offset : offset + width])
            centre = (int(width * 0.2 + 3 * i) % width, height // 2 + int(20 * np.sin(i / 5)))
            cv2.circle(frame, centre, height // 10, disc_colour, thickness=-1)
            frames[t] = frame
    return frames


def write_cut_video(
    path: StrPath,
    cut_frames: list[int],
    num_frames: int,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    fps: int = 25,
    codec: str = "libx264",
) -> np.ndarray:
    """Write a video with hard cuts at `cut_frames` (see make_cut_frames); returns its frames."""
    frames = make_cut_frames(cut_frames, num_frames, size=size, seed=seed)
    write_video(path, frames, fps=fps, codec=codec)
    return frames


def write_zero_byte(path: StrPath) -> Path:
    """An empty file."""
    Path(path).write_bytes(b"")
    return Path(path)


def write_not_a_video(path: StrPath) -> Path:
    """A text file (named whatever `path` says, e.g. .mp4)."""
    Path(path).write_text("This is not a video.\nJust some words in a text file.\n" * 20)
    return Path(path)


def write_png_as_video(path: StrPath) -> Path:
    """A PNG image saved under a video name (FFmpeg opens it as a one-frame image stream)."""
    image = make_cut_frames([], 2, size=(64, 48))[0]
    ok, data = cv2.imencode(".png", image)
    assert ok
    Path(path).write_bytes(data.tobytes())
    return Path(path)


def write_corrupt_video(path: StrPath, mode: str = "truncated") -> Path:
    """A real mp4 made unreadable.

    mode "truncated": the file cut to half its size, which loses the index at the end
    (what an interrupted download or copy leaves). mode "missing_data": a faststart mp4
    (index first) cut to half, so the index promises frames whose bytes are gone.
    """
    if mode not in ("truncated", "missing_data"):
        raise ValueError(f"mode must be 'truncated' or 'missing_data', got {mode!r}")
    frames = make_cut_frames([20], 40, size=(128, 96), seed=3)
    write_video(path, frames, faststart=mode == "missing_data")
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


def write_no_frames_video(path: StrPath) -> Path:
    """An mp4 container with one h264 video stream and zero frames.

    The plain mp4 muxer drops a track without samples, so the index is written up front
    (movflags empty_moov), which keeps the track in the file.
    """
    with av.open(str(path), mode="w", options={"movflags": "empty_moov"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # PyAV writes the header lazily: force it with no frames
    return Path(path)


def write_unsupported_codec_video(path: StrPath) -> Path:
    """A real h264 mp4 whose sample-entry fourcc 'avc1' (inside the stsd box) is patched
    to 'zzzz', a codec FFmpeg does not know. The 'avc1' brand in the ftyp box stays."""
    write_cut_video(path, [], 10, size=(64, 48))
    data = bytearray(Path(path).read_bytes())
    stsd = data.find(b"stsd")
    entry = data.find(b"avc1", stsd)
    if stsd < 0 or entry < 0:
        raise RuntimeError(f"no avc1 sample entry found in {path}")
    data[entry : entry + 4] = b"zzzz"
    Path(path).write_bytes(bytes(data))
    return Path(path)


def write_audio_only(path: StrPath) -> Path:
    """An .m4a-style mp4 holding one second of a 440 Hz AAC tone and no video stream."""
    rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, rate, 1024):
            chunk = tone[None, start : start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)
