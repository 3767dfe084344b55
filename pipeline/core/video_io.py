"""Video probing and decoding with PyAV (which bundles FFmpeg): the entry gate of curation.

Every raw video passes `probe_video` before any stage touches it. A file that cannot be
used is rejected with a short machine reason (recorded in the `rejects` table) and a
human detail, instead of failing some later stage. Frames are RGB uint8 (H,W,3) as
stored in the file: rotation metadata (phone videos) is not applied.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

StrPath = str | os.PathLike[str]

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})

REJECT_REASONS = (
    "missing",  # no such file
    "empty_file",  # zero bytes
    "not_a_video",  # not a container FFmpeg reads as video (text, image, audio only)
    "corrupt",  # a video container that cannot be read or decoded to its end
    "no_frames",  # a video stream with zero decodable frames
    "unsupported_codec",  # a video stream whose codec FFmpeg has no decoder for
)

# File signatures of video containers. A file that starts like one but that FFmpeg cannot
# open is a damaged video ("corrupt"), not some other kind of file ("not_a_video").
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska / WebM

# FFmpeg demuxers for still images: they present a picture as a one-frame video stream.
_IMAGE_FORMAT_SUFFIXES = ("_pipe",)
_IMAGE_FORMATS = frozenset({"image2", "tty", "gif", "apng", "webp"})

_CONTENT_ID_HEX = 16


class VideoRejected(Exception):
    """A video that cannot enter the pipeline; `reason` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str, path: StrPath | None = None):
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; expected one of {REJECT_REASONS}")
        self.reason = reason
        self.detail = detail
        self.path = None if path is None else str(path)
        where = f" ({self.path})" if self.path else ""
        super().__init__(f"{reason}: {detail}{where}")

    def __reduce__(self):  # pickle by fields, so it crosses Ray process boundaries intact
        return type(self), (self.reason, self.detail, self.path)


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a usable video.

    `num_frames` is the number of frames `iter_frames` yields; `duration_s` is
    num_frames / fps (the decoded length, not the container's declared duration).
    """

    uri: str
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str


def content_id(path: StrPath) -> str:
    """The video id: SHA-256 of the file bytes (read in chunks), as 16 hex characters.

    64 bits keep ids short in tables and file names; the chance that any two of a million
    videos collide is about 3e-8 (birthday bound n^2 / 2^65).
    """
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()[:_CONTENT_ID_HEX]


def is_video_file(path: StrPath) -> bool:
    """Whether a folder scan should pick up `path`, by extension (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _looks_like_video_container(path: Path) -> bool:
    with open(path, "rb") as file:
        head = file.read(12)
    return head[4:8] in _MP4_BOXES or head.startswith(_EBML_MAGIC) or (
        head.startswith(b"RIFF") and head[8:12] == b"AVI "
    )


def _open(path: Path) -> av.container.InputContainer:
    """Open `path` for reading, turning FFmpeg's errors into VideoRejected."""
    if not path.exists():
        raise VideoRejected("missing", "no such file", path)
    if not path.is_file():
        raise VideoRejected("missing", "path is not a regular file", path)
    if path.stat().st_size == 0:
        raise VideoRejected("empty_file", "file has zero bytes", path)
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        if _looks_like_video_container(path):
            raise VideoRejected("corrupt", f"video container cannot be opened: {error}", path) from error
        raise VideoRejected("not_a_video", f"FFmpeg does not read this file as media: {error}", path) from error


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover pictures of audio files do not count)."""
    format_name = container.format.name
    if format_name in _IMAGE_FORMATS or format_name.endswith(_IMAGE_FORMAT_SUFFIXES):
        raise VideoRejected("not_a_video", f"file is a still image ({format_name})", path)
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            if stream.codec_context is None:
                raise VideoRejected("unsupported_codec", "FFmpeg knows no decoder for the video codec", path)
            stream.thread_type = "AUTO"
            return stream
    kinds = sorted({stream.type for stream in container.streams}) or ["none"]
    raise VideoRejected("not_a_video", f"no video stream (streams: {', '.join(kinds)})", path)


def _decoded_frames(path: Path, skip_deblocking: bool = False) -> Iterator[av.VideoFrame]:
    """Decode the video stream from the start; decoder errors become VideoRejected.

    ``skip_deblocking`` turns the decoder's loop (deblocking) filter off: about 30% less CPU for
    H.264, at the price of slightly blockier pixels (errors carry over within a group of pictures),
    for analyses of downscaled frames only (shot detection)."""
    with _decoding(path, skip_deblocking) as (container, stream):
        yield from _decode(container, stream)


@contextlib.contextmanager
def _decoding(path: Path, skip_deblocking: bool = False) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The open container and its video stream (``skip_deblocking``: see ``_decoded_frames``); FFmpeg errors
    raised while the caller decodes or seeks become VideoRejected ("unsupported_codec" or "corrupt")."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        if skip_deblocking:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        try:
            yield container, stream
        except av.error.DecoderNotFoundError as error:
            raise VideoRejected("unsupported_codec", str(error), path) from error
        except av.error.FFmpegError as error:
            raise VideoRejected("corrupt", f"decoding failed: {error}", path) from error


def _first_frame(path: Path) -> av.VideoFrame | None:
    frames = _decoded_frames(path)
    try:
        return next(frames, None)
    finally:
        frames.close()


@dataclass(frozen=True)
class _PacketCount:
    stored: int  # frame packets in the file
    discarded: int  # of those, packets an edit list hides (decoded but not shown)
    damaged: bool  # a packet flagged corrupt (e.g. cut short) or a demuxer error


def _count_packets(path: Path) -> _PacketCount:
    """Count the video packets by demuxing only (reads the file, decodes nothing)."""
    stored, discarded, damaged = 0, 0, False
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for packet in container.demux(stream):
                if packet.size:
                    stored += 1
                    discarded += packet.is_discard
                    damaged |= packet.is_corrupt
        except av.error.FFmpegError:
            damaged = True
    return _PacketCount(stored, discarded, damaged)


def probe_video(path: StrPath) -> VideoInfo:
    """Check that `path` is a decodable video and describe it, or raise VideoRejected.

    The first frame is always decoded, so empty, corrupt and undecodable streams are caught
    here. The frame count is the container's when a demux pass (reading packets, no
    decoding) finds exactly that many packets, none damaged or hidden by an edit list.
    Otherwise (Matroska/WebM declare no count, edit lists hide frames) every frame is decoded
    and counted: `num_frames` is always what `iter_frames` yields. A file whose index
    promises frames whose bytes are missing or damaged (a cut-short download) is corrupt.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        declared, codec = stream.frames, stream.codec_context.name
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    first = _first_frame(path)
    if first is None:
        raise VideoRejected("no_frames", "video stream has no decodable frames", path)
    if not rate or rate <= 0:
        raise VideoRejected("corrupt", "video stream has no frame rate", path)

    packets = _count_packets(path)
    if packets.damaged or packets.stored < declared:
        raise VideoRejected(
            "corrupt",
            f"container declares {declared} frames but holds {packets.stored} packets"
            + (", some damaged" if packets.damaged else ""),
            path,
        )
    if declared > 0 and packets.stored == declared and not packets.discarded:
        num_frames = declared
    else:
        num_frames = sum(1 for _ in _decoded_frames(path))
    return VideoInfo(
        uri=str(path.resolve()),
        num_frames=num_frames,
        fps=float(rate),
        width=first.width,
        height=first.height,
        duration_s=num_frames / float(rate),
        codec=codec,
    )


SCALER_INTERPOLATIONS = ("BICUBIC", "BILINEAR", "FAST_BILINEAR", "AREA", "POINT")
PIXEL_FORMATS = ("rgb24", "bgr24")


def iter_frames(
    path: StrPath, start: int = 0, end: int | None = None, size: tuple[int, int] | None = None,
    interpolation: str = "BICUBIC", pixel_format: str = "rgb24", skip_deblocking: bool = False,
) -> Iterator[np.ndarray]:
    """Yield frames [start, end) by index as RGB uint8 (H,W,3); end=None means to the end.

    With `start` > 0 it seeks to the keyframe at or before `start` (``iter_frames_at``: the same
    frames as decoding from the first one, which it falls back to where the container's timestamps
    cannot number frames). Iteration stops
    early if the video has fewer frames than `end`. `size` = (width, height) resizes in
    FFmpeg's scaler together with the colour conversion, cheaper than converting the full
    frame and resizing it after; `interpolation` is the scaler's filter (bicubic, as the
    ffmpeg command line does; "FAST_BILINEAR" is the cheapest). `pixel_format` "bgr24" gives
    OpenCV's channel order instead; `skip_deblocking`: see `_decoded_frames`.
    """
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"frame range must satisfy 0 <= start <= end, got start={start}, end={end}")
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise ValueError(f"size must be (width, height) with positive entries, got {size}")
    if interpolation not in SCALER_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {SCALER_INTERPOLATIONS}, got {interpolation!r}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, got {pixel_format!r}")
    return _iter_range(Path(path), start, end, size, interpolation, pixel_format, skip_deblocking)


def _iter_range(
    path: Path, start: int, end: int | None, size: tuple[int, int] | None, interpolation: str = "BICUBIC",
    pixel_format: str = "rgb24", skip_deblocking: bool = False,
) -> Iterator[np.ndarray]:
    if end == start:
        return
    width, height = size or (None, None)

    def convert(frame: av.VideoFrame) -> np.ndarray:
        if size is not None:
            frame = frame.reformat(width, height, format=pixel_format, interpolation=interpolation)
        return frame.to_ndarray(format=pixel_format)

    wanted = itertools.count(start) if end is None else iter(range(start, end))
    for _, frame in _frames_at(path, wanted, convert, skip_deblocking, seek=start > 0):
        yield frame


def iter_selected_frames(path: StrPath, start: int, offsets: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (offset, RGB frame) for the given offsets from ``start``, in order (``iter_frames_at``)."""
    wanted = sorted(set(int(o) for o in offsets))
    if not wanted:
        return
    if start < 0 or wanted[0] < 0:
        raise ValueError(f"start and offsets must be >= 0, got start={start}, offsets from {wanted[0]}")
    for index, frame in iter_frames_at(path, [start + o for o in wanted]):
        yield index - start, frame


def iter_frames_at(path: StrPath, indices: Iterable[int], convert=None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame number, RGB frame) for the given frame numbers (sorted, distinct, >= 0), stopping
    early where the video ends.

    Each frame of the video is decoded at most once, and never from frame 0 to reach a later one: before
    a wanted frame the decoder seeks to the keyframe at or before it when that keyframe lies beyond the
    frames decoded so far (a gap wider than a group of pictures is jumped; a narrower one is decoded
    through). Only the wanted frames are converted (``convert``: av.VideoFrame -> array, RGB by default),
    which is most of the per-frame cost of sparse sampling. Frame numbers are those of ``iter_frames``;
    where the container's timestamps cannot number the frames (``keyframe_index`` is None) or a seek
    lands elsewhere than the index says, it decodes from the start instead (the same frames, slower).
    """
    wanted = [int(i) for i in indices]
    if any(b <= a for a, b in zip(wanted, wanted[1:])) or (wanted and wanted[0] < 0):
        raise ValueError("frame numbers must be sorted, distinct and >= 0")
    if not wanted:
        return iter(())
    convert = convert or (lambda frame: frame.to_ndarray(format="rgb24"))
    return _frames_at(Path(path), iter(wanted), convert, seek=wanted[0] > 0 or len(wanted) > 1)


class _Unnumbered(Exception):
    """A decoded frame whose timestamp does not fit the keyframe index: number frames by decoding instead."""


@dataclass(frozen=True)
class KeyframeIndex:
    """Presentation timestamps of a video's frames in display order (frame i has ``pts[i]``, the
    stream's time base) and the frame numbers of its keyframes (where a decoder can start)."""

    pts: np.ndarray  # (N,) int64, strictly increasing
    keyframes: np.ndarray  # (K,) int64 frame numbers, sorted, starting with 0

    def keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before ``frame``."""
        return int(self.keyframes[np.searchsorted(self.keyframes, frame, side="right") - 1])


def keyframe_index(path: StrPath) -> KeyframeIndex | None:
    """The frame timestamps and keyframes of a video, read by demuxing only (no decoding); cached per
    file (path, size, modification time). None when timestamps cannot number the frames as decoding
    from the start does: a packet without a timestamp, repeated timestamps (e.g. AVI/Xvid packed
    B-frames), packets hidden by an edit list or damaged, a packet count other than the container's
    declared frame count, or a first frame that is not a keyframe."""
    stat = os.stat(path)
    return _keyframe_index(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _keyframe_index(path: str, size: int, mtime_ns: int) -> KeyframeIndex | None:
    pts, key = [], []
    with _open(Path(path)) as container:
        stream = _video_stream(container, Path(path))
        declared = stream.frames
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None or packet.is_discard or packet.is_corrupt:
                    return None
                pts.append(int(packet.pts))
                key.append(bool(packet.is_keyframe))
        except av.error.FFmpegError:
            return None
    if not pts or (declared and declared != len(pts)):  # a frame count the index disagrees with
        return None
    pts_array, key_array = np.array(pts, np.int64), np.array(key, bool)
    order = np.argsort(pts_array, kind="stable")
    pts_array, key_array = pts_array[order], key_array[order]
    if np.any(np.diff(pts_array) <= 0) or not key_array[0]:
        return None
    return KeyframeIndex(pts_array, np.flatnonzero(key_array).astype(np.int64))


def _frames_at(path: Path, wanted: Iterator[int], convert, skip_deblocking: bool = False,
               seek: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, converted frame) for the sorted frame numbers ``wanted``; see ``iter_frames_at``."""
    index = keyframe_index(path) if seek else None
    done = -1  # the last frame number yielded
    state = {"pending": next(wanted, None)}  # the next wanted frame number (None: no more)
    if index is not None:
        try:
            for number, frame in _seeking(path, index, state, wanted, convert, skip_deblocking):
                done = number
                yield number, frame
            return
        except _Unnumbered:
            pass
    # From the start, numbering frames by decoding order (also the fallback, past what was yielded).
    pending = state["pending"]
    for number, frame in enumerate(_decoded_frames(path, skip_deblocking)):
        while pending is not None and pending < number:
            pending = next(wanted, None)
        if pending is None:
            return
        if number == pending and number > done:
            yield number, convert(frame)
            pending = next(wanted, None)


def _seeking(path: Path, index: KeyframeIndex, state: dict, wanted: Iterator[int], convert,
             skip_deblocking: bool) -> Iterator[tuple[int, np.ndarray]]:
    """Frames by seeking (``iter_frames_at``); ``state["pending"]`` is kept current for a fallback."""
    pending = state["pending"]
    number_of = {int(p): i for i, p in enumerate(index.pts)}
    with _decoding(path, skip_deblocking) as (container, stream):
        frames, expect = None, 0  # the decoder's frames and the frame number it gives next
        while pending is not None and pending < len(index.pts):
            if pending < expect:
                raise ValueError(f"frame numbers must be increasing, got {pending} after {expect - 1}")
            key = index.keyframe_before(pending)
            if frames is None or key > expect:  # first frame, or a jump past a whole group of pictures
                if frames is not None or key > 0:
                    container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
                frames, expect = _decode(container, stream), key
            while expect <= pending:
                frame = next(frames, None)
                if frame is None:
                    return
                number = number_of.get(frame.pts) if frame.pts is not None else None
                if number is None or number > expect:
                    raise _Unnumbered
                if number < expect:  # shown before the keyframe (open GOP) or an earlier keyframe
                    continue
                expect += 1
                if number == pending:
                    yield number, convert(frame)
                    pending = state["pending"] = next(wanted, None)
                    break  # the outer loop decides: decode on, or seek past a gap


def _decode(container: av.container.InputContainer, stream) -> Iterator[av.VideoFrame]:
    """The decoder's frames from the container's position (one place for tests to count decoded frames)."""
    return container.decode(stream)


def read_frames(path: StrPath, start: int = 0, end: int | None = None) -> np.ndarray:
    """Frames [start, end) as one RGB uint8 array (T,H,W,3); ValueError if the video is shorter."""
    frames = list(iter_frames(path, start, end))
    if end is not None and len(frames) != end - start:
        raise ValueError(
            f"{path}: asked for frames [{start}, {end}) but the video ends at frame {start + len(frames)}"
        )
    if not frames:
        with _open(Path(path)) as container:
            context = _video_stream(container, Path(path)).codec_context
            return np.empty((0, context.height, context.width, 3), np.uint8)
    return np.stack(frames)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as H.264 with PyAV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for frame in frames:
            if h % 2 or w % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
