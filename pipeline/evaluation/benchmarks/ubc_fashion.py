"""UBC Fashion (Zablotskaia et al., 2019) test videos from its published test list: a local copy, never downloaded.

Expected folder (setting ``MTVCRAFT_UBC_FASHION``, default ``<data_root>/benchmarks/ubc_fashion``)::

    <root>/
      fashion_test.txt       the published test list (100 entries): one video per line, a file name or the
                             download URL; only the last path component's stem is used (".../A1b2.mp4" -> A1b2)
      test/A1b2.mp4 ...      the videos (``test/`` or directly in <root>/)
      test/A1b2.smpl.npz     optional sidecar, the project's SMPL contract (pose (T, P, 24, 3), transl (T, P, 3));
      test/A1b2.joints.npz   or ``joints`` (T, 24, 3) metres / single-person ``pose`` + ``transl``.
                             Without a sidecar the pose backend estimates the joints (``pipeline.motion.driving_motion``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pipeline.motion.driving_motion import video_sidecar_joints

from .base import BenchmarkVideo, DatasetMissing, require_folder
from .tiktok import read_list

TEST_LIST = "fashion_test.txt"
VIDEO_DIRS = ("test", ".")
LAYOUT = __doc__.split("::", 1)[1].strip("\n").rstrip()


def list_stem(line: str) -> str:
    """The video id of a test-list line: the stem of its last path (or URL) component."""
    return PurePosixPath(line.split("?", 1)[0].rstrip("/")).stem


def load_ubc_fashion(root: str | Path) -> list[BenchmarkVideo]:
    """The listed test videos under ``root``; ``DatasetMissing`` naming the setting and what is absent."""
    from pipeline.core.video_io import VideoRejected, probe_video, read_frames

    root = require_folder(Path(root), "ubc_fashion", LAYOUT)
    listed = root / TEST_LIST
    if not listed.is_file():
        raise DatasetMissing(f"ubc_fashion benchmark folder (MTVCRAFT_UBC_FASHION) = {root} has no {TEST_LIST}; "
                             f"expected:\n{LAYOUT}")
    stems = [list_stem(line) for line in read_list(listed)]
    if not stems:
        raise DatasetMissing(f"{listed} lists no videos")
    paths = {stem: next((root / d / f"{stem}.mp4" for d in VIDEO_DIRS if (root / d / f"{stem}.mp4").is_file()), None)
             for stem in stems}
    absent = [stem for stem, path in paths.items() if path is None]
    if absent:
        raise DatasetMissing(f"{len(absent)} of the {len(stems)} videos in {listed} are not under {root}/test or "
                             f"{root} (first: {', '.join(absent[:3])}.mp4)")
    videos = []
    for stem, path in paths.items():
        try:
            fps = probe_video(path).fps
        except VideoRejected as err:
            raise ValueError(f"ubc_fashion video {path} cannot be read: {err}") from err
        joints, sidecar = video_sidecar_joints(path)

        def load(count: int | None, path: Path = path):
            return read_frames(path, 0, count)

        videos.append(BenchmarkVideo(stem, path, fps, load, joints, sidecar))
    return videos
