"""One decode per video (issue 16, item 4): frames reached by seeking, never by decoding from frame 0,
each frame decoded at most once per stage, and bounded memory on a long video.

A spy on ``video_io._decode`` (every decoder in the pipeline goes through it) records the timestamp of
each frame the decoder hands out, so the tests count real decodes, not calls."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import shared_path

from pipeline.core import video_io
from pipeline.core.video_io import iter_frames, iter_frames_at, keyframe_index, read_frames
from pipeline.curation.scores.base import FrameSampling, make_scorer
from pipeline.curation.scores.score_clips import ClipToScore, score_clip, score_video_clips

GOP = 12


def _write(path: Path, num: int, size=(96, 64), gop: int = GOP, bframes: int = 2) -> Path:
    """A textured, moving H.264 video with a keyframe every ``gop`` frames and B-frames (open GOPs allowed)."""
    rng = np.random.default_rng(num)
    base = rng.integers(0, 255, (size[1] * 2, size[0] * 2, 3), np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"crf": "18", "g": str(gop), "keyint_min": str(gop), "bf": str(bframes), "sc_threshold": "0"}
        for i in range(num):
            x, y = (3 * i) % size[0], (2 * i) % size[1]
            image = np.ascontiguousarray(base[y:y + size[1], x:x + size[0]])
            image[:8, :8] = (16 * i) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def decoded(monkeypatch):
    """The pts of every frame any decoder hands out, in order, per file (the spy)."""
    log: dict[str, list[int]] = {}
    original = video_io._decode

    def spy(container, stream):
        seen = log.setdefault(Path(container.name).name, [])
        for frame in original(container, stream):
            seen.append(frame.pts)
            yield frame

    monkeypatch.setattr(video_io, "_decode", spy)
    return log


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("seek") / "gop.mp4", 120)


def test_keyframe_index_numbers_frames_and_finds_keyframes(video):
    index = keyframe_index(video)
    assert index is not None and len(index.pts) == 120
    assert index.keyframes.tolist() == list(range(0, 120, GOP))
    assert index.keyframe_before(0) == 0 and index.keyframe_before(GOP - 1) == 0 and index.keyframe_before(GOP + 3) == GOP


@pytest.mark.parametrize("wanted", [[5], [37, 38, 90], [0, 59, 60, 61, 119], list(range(100, 120)), [118, 130]])
def test_frames_at_equal_a_full_decode(video, wanted):
    full = read_frames(video)
    got = list(iter_frames_at(video, wanted))
    assert [n for n, _ in got] == [n for n in wanted if n < 120]
    for n, frame in got:
        np.testing.assert_array_equal(frame, full[n])


def test_a_late_frame_is_reached_from_its_keyframe_not_from_frame_0(video, decoded):
    list(iter_frames_at(video, [100]))
    index = keyframe_index(video)
    numbers = [int(np.searchsorted(index.pts, p)) for p in decoded["gop.mp4"]]
    # From keyframe 96 up to frame 100 (a decoder may also hand out leading B-frames shown before 96).
    assert max(numbers) == 100 and min(n for n in numbers if n >= 96) == 96
    assert len(numbers) <= 100 - 96 + 1 + 2
    assert np.array_equal(next(iter_frames(video, 100, 101)), read_frames(video, 100, 101)[0])


def test_sparse_frames_decode_each_frame_at_most_once_and_skip_far_gaps(video, decoded):
    wanted = [3, 7, 30, 31, 70, 119]
    list(iter_frames_at(video, wanted))
    pts = decoded["gop.mp4"]
    assert len(pts) == len(set(pts)), "a frame was decoded twice"
    assert len(pts) < 120 - 2 * GOP  # the gaps 8-23 and 32-59 and 71-107 were jumped, not decoded


def test_untrustworthy_timestamps_fall_back_to_decoding_from_the_start(video, monkeypatch):
    monkeypatch.setattr(video_io, "keyframe_index", lambda path: None)
    full = read_frames(video)
    for n, frame in iter_frames_at(video, [10, 50]):
        np.testing.assert_array_equal(frame, full[n])


def test_real_videos_seek_to_the_same_frames():
    folder = shared_path("real/mtvcrafter-samples")
    for path in sorted(folder.glob("*.mp4"))[:3]:
        index = keyframe_index(path)
        assert index is not None, f"{path.name}: its timestamps should number its frames"
        wanted = sorted({len(index.pts) - 1, int(index.keyframes[-1]) + 2, len(index.pts) // 2})
        full = {n: f for n, f in enumerate(iter_frames(path)) if n in wanted}
        for n, frame in iter_frames_at(path, wanted):
            np.testing.assert_array_equal(frame, full[n], err_msg=f"{path.name} frame {n}")


@pytest.fixture(scope="module")
def scorers():
    return [make_scorer("blur"), make_scorer("flow")]


def test_scoring_a_video_decodes_each_frame_once_and_equals_clip_by_clip(video, scorers, decoded, monkeypatch):
    clips = [ClipToScore(2, 35), ClipToScore(40, 52), ClipToScore(80, 120), ClipToScore(118, 140)]  # the last is too long
    sampling = FrameSampling(every_k=4, max_frames=6)
    together = score_video_clips(video, clips, scorers, sampling)
    pts = decoded["gop.mp4"]
    assert len(pts) == len(set(pts)) and len(pts) < 120
    assert isinstance(together[3], ValueError) and "ends at frame" in str(together[3])
    # The reference: each clip alone, decoded from frame 0 (the code before the seeking pass).
    monkeypatch.setattr(video_io, "keyframe_index", lambda path: None)
    for clip, scores in zip(clips[:3], together[:3]):
        alone = score_clip(video, clip.start, clip.end, scorers, sampling)
        assert scores == alone


def test_scoring_pass_holds_a_bounded_number_of_frames_on_a_long_video(tmp_path, scorers):
    """Peak traced memory scoring every clip of a video 10x longer stays within a few frames of the short one's:
    frames stream through the pass instead of piling up (each 160 x 120 frame is 57.6 kB)."""
    peaks = {}
    for num in (90, 900):
        path = _write(tmp_path / f"long{num}.mp4", num, size=(160, 120), gop=30)
        clips = [ClipToScore(s, s + 45) for s in range(0, num, 45)]
        tracemalloc.start()
        results = score_video_clips(path, clips, scorers, FrameSampling(every_k=4, max_frames=8), flow_long_side=None)
        peaks[num] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert all(isinstance(r, dict) for r in results)
    frame_bytes = 160 * 120 * 3
    # 810 more frames decoded (46 MB if they were held), fewer than 20 more frames' worth of memory held.
    assert peaks[900] - peaks[90] < 20 * frame_bytes, peaks


def test_each_curation_stage_decodes_a_video_once(tmp_path, decoded):
    """Shot detection, poses and scores in-process on one video: each stage decodes each frame at most once."""
    from pipeline.core.config import PipelineSettings
    from pipeline.curation.scores.task import ScoreTask
    from pipeline.curation.tasks import PoseTask, ShotTask

    path = _write(tmp_path / "stages.mp4", 60, size=(128, 96), gop=15)
    item = {"uri": str(path), "num_frames": 60}
    counts = {}
    shots = ShotTask("scenedetect")
    shots.setup()
    before = len(decoded.get("stages.mp4", []))
    shot_seconds = shots(item)["seconds"]
    counts["shots"] = len(decoded["stages.mp4"]) - before
    pytest.importorskip("mediapipe")
    poses = PoseTask("mediapipe", "")
    poses.setup()
    before = len(decoded["stages.mp4"])
    pose_seconds = poses(item).seconds
    counts["poses"] = len(decoded["stages.mp4"]) - before
    task = ScoreTask(PipelineSettings(data_root=str(tmp_path / "data")))
    task.scorers = [make_scorer("blur"), make_scorer("flow")]
    task.sampling, task.flow_long_side = FrameSampling(), 512
    before = len(decoded["stages.mp4"])
    out = task({"uri": str(path), "clips": [{"start_frame": 5, "end_frame": 40}, {"start_frame": 45, "end_frame": 60}]})
    counts["scores"] = len(decoded["stages.mp4"]) - before
    assert all("error" not in c for c in out["clips"])
    # Where the time went, per stage (the assets' ``stage_seconds``): decode apart from each part's work.
    assert set(shot_seconds) == {"decode", "shots"}
    assert set(pose_seconds) == {"decode", "landmarks", "person count", "ik fit", "setup and other"}
    assert set(out["seconds"]) == {"decode", "blur", "flow"}
    assert all(v >= 0 for d in (shot_seconds, pose_seconds, out["seconds"]) for v in d.values())
    # Shot detection: one pass, plus the probe's first frame (it rejects a bad file before the pass).
    assert counts["shots"] == 60 + 1 and counts["poses"] == 60 and counts["scores"] <= 60, counts
