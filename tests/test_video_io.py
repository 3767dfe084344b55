"""pipeline.core.video_io: probing, rejection reasons, content ids and frame ranges."""

import csv
import hashlib
import pickle
import shutil

import cv2
import media
import numpy as np
import pytest
from conftest import SHARED, shared_path

from pipeline.core.video_io import (
    REJECT_REASONS,
    VideoInfo,
    VideoRejected,
    content_id,
    is_video_file,
    iter_frames,
    iter_selected_frames,
    probe_video,
    read_frames,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A 50-frame 320x240 h264 mp4 at 25 fps with a cut at frame 20, its source frames and
    its full decode."""
    path = tmp_path_factory.mktemp("video_io") / "good.mp4"
    frames = media.write_cut_video(path, [20], 50, size=(320, 240), seed=1)
    return path, frames, read_frames(path)


def test_probe_good_video(good):
    path, _, _ = good
    assert probe_video(path) == VideoInfo(
        uri=str(path.resolve()), num_frames=50, fps=25.0, width=320, height=240, duration_s=2.0, codec="h264"
    )


@pytest.mark.parametrize(
    "name, codec, expected_codec",
    [
        ("clip.mkv", "libx264", "h264"),  # Matroska declares no frame count: counted by decoding
        ("clip.webm", "libvpx-vp9", "vp9"),
        ("clip.avi", "mpeg4", "mpeg4"),
        ("clip.mov", "libx264", "h264"),
    ],
)
def test_probe_counts_frames_in_other_containers(tmp_path, name, codec, expected_codec):
    media.write_video(tmp_path / name, media.make_cut_frames([6], 13, size=(64, 48)), fps=30, codec=codec)
    info = probe_video(tmp_path / name)
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (13, 30.0, 64, 48, expected_codec)
    assert info.duration_s == pytest.approx(13 / 30)
    assert len(read_frames(tmp_path / name)) == 13


def test_decoded_frames_are_rgb_and_close_to_source(good):
    path, source, decoded = good
    assert decoded.shape == (50, 240, 320, 3) and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(np.int16) - source).mean()
    swapped = np.abs(decoded[..., ::-1].astype(np.int16) - source).mean()
    assert error < 3.0 < swapped  # RGB order, not OpenCV's BGR


def test_content_id_is_sha256_prefix_stable_and_content_dependent(good, tmp_path):
    path, _, _ = good
    expected = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert content_id(path) == content_id(str(path)) == expected
    copy = shutil.copy(path, tmp_path / "renamed.mov")
    assert content_id(copy) == expected  # the id follows the bytes, not the name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "changed.mp4").write_bytes(bytes(data))
    assert content_id(tmp_path / "changed.mp4") != expected


BAD_INPUTS = [
    ("missing", lambda p: p),
    ("empty_file", media.write_zero_byte),
    ("not_a_video", media.write_not_a_video),
    ("not_a_video", media.write_png_as_video),
    ("not_a_video", media.write_audio_only),
    ("corrupt", media.write_corrupt_video),
    ("corrupt", lambda p: media.write_corrupt_video(p, mode="missing_data")),
    ("no_frames", media.write_no_frames_video),
    ("unsupported_codec", media.write_unsupported_codec_video),
]


@pytest.mark.parametrize("reason, write", BAD_INPUTS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD_INPUTS)])
def test_bad_inputs_are_rejected_with_reason(tmp_path, reason, write):
    path = tmp_path / "input.mp4"
    write(path)
    with pytest.raises(VideoRejected) as caught:
        probe_video(path)
    assert caught.value.reason == reason
    assert caught.value.detail and str(path) in str(caught.value)


def test_decoding_a_bad_file_raises_video_rejected(tmp_path):
    media.write_corrupt_video(tmp_path / "bad.mp4")
    with pytest.raises(VideoRejected, match="corrupt"):
        next(iter_frames(tmp_path / "bad.mp4"))


def test_video_rejected_checks_its_reason_and_pickles():
    with pytest.raises(ValueError, match="reason"):
        VideoRejected("broken", "detail")
    assert len(set(REJECT_REASONS)) == 6
    error = pickle.loads(pickle.dumps(VideoRejected("corrupt", "cut short", "/data/a.mp4")))
    assert (error.reason, error.detail, error.path) == ("corrupt", "cut short", "/data/a.mp4")
    assert str(error) == "corrupt: cut short (/data/a.mp4)"


@pytest.mark.parametrize("start, end", [(0, 5), (7, 23), (19, 21), (40, None), (49, 50), (12, 12)])
def test_frame_ranges_match_full_decode(good, start, end):
    path, _, full = good
    part = read_frames(path, start, end)
    assert np.array_equal(part, full[start:end])
    assert part.shape[1:] == (240, 320, 3)
    assert [f.shape for f in iter_frames(path, start, end)] == [(240, 320, 3)] * len(full[start:end])


def test_selected_frames_match_full_decode(good):
    path, _, full = good
    got = list(iter_selected_frames(path, 10, [30, 0, 4, 4, 39]))
    assert [o for o, _ in got] == [0, 4, 30, 39]  # sorted, once each, offsets from start
    for offset, frame in got:
        assert np.array_equal(frame, full[10 + offset])
    assert [o for o, _ in iter_selected_frames(path, 45, [1, 3, 10])] == [1, 3]  # the video ends at 50
    assert list(iter_selected_frames(path, 0, [])) == []


def test_frame_ranges_past_the_end(good):
    path, _, _ = good
    assert len(list(iter_frames(path, 45, 80))) == 5  # iteration stops at the last frame
    with pytest.raises(ValueError, match="ends at frame 50"):
        read_frames(path, 45, 80)
    with pytest.raises(ValueError, match="start"):
        iter_frames(path, 10, 5)
    with pytest.raises(ValueError, match="start"):
        iter_frames(path, -1)


def test_resized_frames_match_a_resize_of_the_full_frames(good):
    path, _, _ = good
    small = np.stack(list(iter_frames(path, 15, 25, size=(48, 27))))
    assert small.shape == (10, 27, 48, 3)
    reference = np.stack([cv2.resize(f, (48, 27), interpolation=cv2.INTER_AREA) for f in read_frames(path, 15, 25)])
    assert np.abs(small.astype(np.int16) - reference).mean() < 6.0  # a wrong frame or flip gives > 19


def test_bgr_frames_and_fast_decoding_for_analyses(good):
    """pixel_format "bgr24" is the RGB frame in OpenCV's order; the cheap scaler and the decoder without
    its deblocking filter (shot detection) stay close to the exact decode, frame for frame."""
    path, _, decoded = good
    bgr = np.stack(list(iter_frames(path, 0, 10, pixel_format="bgr24")))
    np.testing.assert_array_equal(bgr, decoded[:10, ..., ::-1])
    fast = np.stack(list(iter_frames(path, skip_deblocking=True)))
    assert fast.shape == decoded.shape
    assert np.abs(fast.astype(np.int16) - decoded).mean() < 2.0  # a wrong frame gives > 19
    small = np.stack(list(iter_frames(path, size=(80, 60), interpolation="FAST_BILINEAR", skip_deblocking=True)))
    reference = np.stack([cv2.resize(f, (80, 60), interpolation=cv2.INTER_AREA) for f in decoded])
    assert small.shape == (50, 60, 80, 3)
    assert np.abs(small.astype(np.int16) - reference).mean() < 12.0  # aliasing: ~9; a flipped image ~33
    with pytest.raises(ValueError, match="pixel_format"):
        iter_frames(path, pixel_format="yuv420p")
    with pytest.raises(ValueError, match="interpolation"):
        iter_frames(path, size=(8, 8), interpolation="LANCZOS9")


@pytest.mark.parametrize(
    "name, expected",
    [("a.mp4", True), ("B.MOV", True), ("c.mkv", True), ("d.avi", True), ("e.webm", True), ("f.m4v", True),
     ("g.png", False), ("h.txt", False), ("mp4", False), ("i.mp4.part", False)],
)
def test_is_video_file_by_extension(name, expected):
    assert is_video_file(name) is expected


REAL = SHARED / "real" / "mtvcrafter-samples"


def test_probe_real_videos_matches_their_index():
    """Real phone/web encodes (h264 and mpeg4, portrait and square) against the samples' index."""
    shared_path("real/mtvcrafter-samples/index.csv")
    with open(REAL / "index.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        info = probe_video(REAL / f"{row['id']}.mp4")
        assert (info.num_frames, info.height, info.width) == (int(row["frames"]), int(row["height"]), int(row["width"]))
    first = REAL / f"{rows[0]['id']}.mp4"
    assert np.array_equal(read_frames(first, 3, 5), np.stack(list(iter_frames(first, 0, 5)))[3:5])
