"""TikTok (Jafarian & Park, 2021) in DisCo's test-split layout: a local copy, never downloaded.

Expected folder (setting ``MTVCRAFT_TIKTOK``, default ``<data_root>/benchmarks/tiktok``)::

    <root>/
      test_list.txt          optional: one sequence folder name per line (blank lines and # comments skipped);
                             without it every sequence folder is a test video. DisCo's test split is
                             00335 00336 00337 00338 00339 (``DISCO_TEST_SEQUENCES``).
      00335/
        images/0001.png ...  the frames, RGB .png / .jpg / .jpeg, in natural name order (frame2 before frame10)
        joints.npz           optional sidecar: ``joints`` (T, 24, 3) metres, or ``pose`` (T, 24, 3) | (T, 72)
                             axis-angle + ``transl`` (T, 3); may hold ``fps``. Without it the pose backend
                             estimates the joints (``pipeline.motion.driving_motion``).
      00336/ ...

The original dataset's ``masks/`` and ``densepose/`` folders may stay there; they are not read. Frames are
30 fps unless ``joints.npz`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.motion.driving_motion import joints_file

from .base import BenchmarkVideo, DatasetMissing, natural_key, require_folder

DISCO_TEST_SEQUENCES = ("00335", "00336", "00337", "00338", "00339")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FRAMES_DIR, JOINTS_FILE, TEST_LIST = "images", "joints.npz", "test_list.txt"
DEFAULT_FPS = 30.0
LAYOUT = __doc__.split("::", 1)[1].split("The original", 1)[0].strip("\n").rstrip()


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a list file."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def read_images(files: list[Path], count: int | None) -> np.ndarray:
    """The first ``count`` image files as uint8 (T, H, W, 3) RGB; all frames must share one size."""
    frames = []
    for path in files[:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode frame {path}")
        if frames and bgr.shape != frames[0].shape:
            raise ValueError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]}; the sequence's frames are "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(frames)


def load_tiktok(root: str | Path) -> list[BenchmarkVideo]:
    """The test sequences under ``root``; ``DatasetMissing`` with the expected layout when it is not there."""
    root = require_folder(Path(root), "tiktok", LAYOUT)
    listed = root / TEST_LIST
    names = read_list(listed) if listed.is_file() else sorted(
        (p.name for p in root.iterdir() if (p / FRAMES_DIR).is_dir()), key=natural_key)
    if not names:
        raise DatasetMissing(f"tiktok benchmark folder (MTVCRAFT_TIKTOK) = {root} holds no sequence folder with "
                             f"{FRAMES_DIR}/ (and no {TEST_LIST}); expected:\n{LAYOUT}")
    return [_sequence(root, name) for name in names]


def _sequence(root: Path, name: str) -> BenchmarkVideo:
    folder = root / name
    images = folder / FRAMES_DIR
    files = frame_files(images) if images.is_dir() else []
    if not files:
        raise DatasetMissing(f"tiktok sequence {name}: no frames ({', '.join(IMAGE_SUFFIXES)}) in {images}; "
                             f"expected:\n{LAYOUT}")
    sidecar = folder / JOINTS_FILE
    joints, fps = None, DEFAULT_FPS
    if sidecar.is_file():
        joints = joints_file(sidecar)
        with np.load(sidecar) as data:
            fps = float(data["fps"]) if "fps" in data.files else fps

    def load(count: int | None) -> np.ndarray:
        return read_images(files, count)

    return BenchmarkVideo(name, folder, fps, load, joints, str(sidecar) if joints is not None else "")
