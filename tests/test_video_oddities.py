"""Frame-level oddities that real footage showed (issue 16, item 5), each synthesised with PyAV: an
AVI/Xvid stream with B-frames (timestamps not monotonic in decode order), a container whose file name
lies, anamorphic pixels, a variable frame rate, and a frozen corrupt stretch baked into the stream.
Each test checks what the pipeline relies on: the probe's frame count equals what decoding yields, the
frames come in display order at the stored size, and the shot and scoring stages run through them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import media
import numpy as np
import pytest

from pipeline.core.video_io import iter_selected_frames, probe_video, read_frames


def _frames(num: int, size=(96, 64), seed: int = 0) -> np.ndarray:
    """Frames whose top-left 8 x 8 block encodes the frame number modulo 16 (grey level 16 * i), on a texture."""
    frames = media.make_cut_frames([], num, size=size, seed=seed).copy()
    for i in range(num):
        frames[i, :8, :8] = (16 * i) % 256
    return frames


def _index_of(frame: np.ndarray) -> int:
    return int(round(frame[2:6, 2:6].mean() / 16)) % 16


def _encode(path: Path, frames: np.ndarray, codec: str, rate=25, pts=None, time_base=None, options=None,
            fmt=None, sample_aspect_ratio=None) -> Path:
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if options:
            stream.options = options
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000  # near-lossless at this size, so the frame numbers read back
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if sample_aspect_ratio is not None:
            stream.codec_context.sample_aspect_ratio = sample_aspect_ratio
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _check_order(path: Path, num: int) -> np.ndarray:
    info = probe_video(path)
    frames = read_frames(path)
    assert info.num_frames == num == len(frames)
    assert [_index_of(f) for f in frames] == [i % 16 for i in range(num)]  # display order, none lost or doubled
    return frames


def test_avi_xvid_with_b_frames_decodes_in_display_order(tmp_path):
    """MPEG-4 Part 2 (Xvid) in AVI with B-frames: packets arrive out of display order and AVI stores
    no presentation timestamps, so timestamps are not monotonic in decode order."""
    path = _encode(tmp_path / "xvid.avi", _frames(24), "mpeg4", options={"bf": "2", "g": "12"}, fmt="avi")
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    assert pts != sorted(pts) or any(p is None for p in pts)  # the oddity is really there
    _check_order(path, 24)
    picked = dict(iter_selected_frames(path, 5, [0, 7, 12]))
    assert {k: _index_of(v) for k, v in picked.items()} == {0: 5, 7: 12, 12: 17 % 16}


@pytest.mark.parametrize("name", ["really_an_mp4.avi", "really_an_mp4.mkv", "no_extension_mp4.webm"])
def test_a_container_whose_name_lies_is_read_by_its_content(tmp_path, name):
    source = media.write_video(tmp_path / "source.mp4", _frames(15))
    liar = tmp_path / name
    liar.write_bytes(source.read_bytes())
    assert probe_video(liar).codec == "h264"
    _check_order(liar, 15)


def test_anamorphic_pixels_keep_the_stored_size(tmp_path):
    """A 96 x 64 stream with 2:1 pixels (displayed 192 x 64): frames come at the stored size, as the
    pose camera (App. B, longer side of the stored frame) and the scorers assume."""
    path = _encode(tmp_path / "anamorphic.mp4", _frames(12), "libx264", options={"crf": "12"},
                   sample_aspect_ratio=Fraction(2, 1))
    with av.open(str(path)) as container:
        assert container.streams.video[0].sample_aspect_ratio == Fraction(2, 1)
    info = probe_video(path)
    assert (info.width, info.height) == (96, 64)
    assert _check_order(path, 12).shape[1:] == (64, 96, 3)


def test_variable_frame_rate_counts_every_stored_frame(tmp_path):
    """Frames 10 ms to 120 ms apart (a phone's variable rate): frame numbers, not times, index the video."""
    gaps = np.array([10, 40, 120, 40, 40, 20, 80, 40, 40, 33, 33, 34, 100, 40, 40, 40])
    pts = np.concatenate([[0], np.cumsum(gaps)])
    path = _encode(tmp_path / "vfr.mp4", _frames(len(pts)), "libx264", rate=25, pts=pts,
                   time_base=Fraction(1, 1000), options={"crf": "12"})
    with av.open(str(path)) as container:
        stored = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size)
    assert len(set(np.diff(stored))) > 3  # the timestamps really vary
    _check_order(path, len(pts))


def test_a_frozen_corrupt_stretch_is_decoded_and_curated_through(tmp_path):
    """The last frames are smeared garbage, frozen (one picture repeated): every frame decodes, shot
    detection and scoring run through it, and the stretch reads as no motion."""
    from pipeline.curation.scores.base import make_scorer
    from pipeline.curation.scores.score_clips import score_clip
    from pipeline.curation.shots import make_shot_detector

    good = _frames(40, size=(128, 96))
    rng = np.random.default_rng(3)
    smear = np.repeat(rng.integers(0, 255, (1, 96, 16, 3), dtype=np.uint8), 8, axis=2)  # horizontal smears
    frames = np.concatenate([good, np.repeat(smear, 12, axis=0)])
    path = media.write_video(tmp_path / "smeared.mp4", frames)
    assert probe_video(path).num_frames == 52 == len(read_frames(path))
    shots = make_shot_detector("scenedetect").detect(str(path))
    assert shots[0].start_frame == 0 and shots[-1].end_frame == 52
    frozen = score_clip(path, 40, 52, [make_scorer("flow")], flow_long_side=None)
    assert frozen["flow"] == pytest.approx(0.0, abs=0.05)
