"""Curation on the five real dance videos in ../shared/real: per-stage frames/s side by side in one run,
and the whole curation's throughput as a ratio to decoding alone.

    .venv/bin/python bench/bench_curation_real.py [--frames-per-video 48] [--out bench/out/real]

Stages timed on the same frames: decode alone; blur, flow (pairs), OCR, aesthetic (embedded backends,
per scored frame, excluding decode; OCR on an evenly spread subset, as the scorer itself samples at most
4 frames a clip, with onnxruntime on all cores (before) and on one thread (now)); MediaPipe pose + IK fit
including decode, before (MediaPipe on every frame) and now (repeated frames skipped). Then the whole
curation graph (raw_videos -> ... -> motion_video, pose_backend=mediapipe, embedded scorers) on all
frames of all videos, each stage's seconds listed. The load average is printed beside each table: the
2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import time
from datetime import date
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mtvcrafter-samples"
OCR_FRAMES = 24


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames-per-video", type=int, default=48)
    parser.add_argument("--out", default="bench/out/real")
    args = parser.parse_args()

    from pipeline import curation, motion_video, scoring
    from pipeline.config import PipelineSettings
    from pipeline.pose.mediapipe_pose import MediaPipePoses
    from pipeline.scores.base import make_scorer, resize_long_side
    from pipeline.scores.ocr import spread
    from pipeline.video_io import iter_frames, probe_video

    videos = sorted(REAL.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no real videos under {REAL}")
    n = args.frames_per_video
    total_frames = sum(probe_video(v).num_frames for v in videos)

    rows = []  # (stage, frames, seconds, load average after)
    seconds, frames = timed(lambda: {v: list(iter_frames(v, 0, n + 1)) for v in videos})
    rows.append(("decode (first frames of each video)", len(videos) * (n + 1), seconds, load()))
    sample = [f for v in videos for f in frames[v][:n]]
    pairs = [(resize_long_side(frames[v][i], 512), resize_long_side(frames[v][i + 1], 512)) for v in videos for i in range(n)]
    scorers = [("blur", {}, ""), ("flow", {}, ""), ("ocr", {"num_threads": -1}, ", all cores (before)"),
               ("ocr", {}, ", 1 thread (now)"), ("aesthetic", {}, "")]
    for metric, options, note in scorers:
        scorer = make_scorer(metric, **options)
        scorer.setup()
        if scorer.needs_pairs:
            seconds, _ = timed(lambda: scorer.score([], pairs))
            count = len(pairs)
        else:
            subset = spread(sample, OCR_FRAMES) if metric == "ocr" else sample
            scorer.frame_scores(subset[:1])  # warm-up (first inference allocates)
            seconds, _ = timed(lambda: scorer.frame_scores(subset))
            count = len(subset)
        rows.append((f"{metric}: {scorer.backend}{note} (excl. decode)", count, seconds, load()))
    for label, pose in (("every frame, before", MediaPipePoses(repeat_level=0.0, world_smoothing_frames=0.0)),
                        ("repeated frames skipped, now", MediaPipePoses())):
        seconds, _ = timed(lambda: [pose.estimate(str(v), 0, n) for v in videos])
        rows.append((f"pose: MediaPipe ({label}) + SMPL IK fit (incl. decode)", len(videos) * n, seconds, load()))

    decode_all, _ = timed(lambda: [sum(1 for _ in iter_frames(v)) for v in videos])
    decode_load = load()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    inputs = out / "videos"
    inputs.mkdir(parents=True)
    for v in videos:
        (inputs / v.name).symlink_to(v)
    settings = PipelineSettings(data_root=str(out / "data"), raw_videos=str(inputs), pose_backend="mediapipe").validated()
    stages = []

    def stage(name, fn):
        seconds, value = timed(fn)
        stages.append((name, seconds, load()))
        return value

    def curate():
        stage("ingest raw_videos (includes starting Ray)", lambda: curation.ingest_raw_videos(settings))
        stage("shots", lambda: curation.segment_shots(settings))
        stage("poses (MediaPipe + IK)", lambda: curation.estimate_poses(settings))
        stage("subclips", lambda: curation.extract_subclips(settings))
        scores = stage("clip_scores", lambda: scoring.score_clips(settings, run_id="bench"))
        stage("motion_video", lambda: motion_video.build_motion_video(settings, "bench"))
        return scores

    curate_start_load = load()
    curate_seconds, scores = timed(curate)

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {platform.system()}; date {date.today()}; "
          f"command: .venv/bin/python bench/bench_curation_real.py --frames-per-video {n}")
    print(f"Videos: {len(videos)} real dance videos ({total_frames} frames, up to 1024x1024)\n")
    print("| stage | frames | seconds | frames/s | load average after |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, count, sec, avg in rows:
        print(f"| {name} | {count} | {sec:.2f} | {count / sec:.1f} | {avg} |")
    decode_fps = total_frames / decode_all
    curate_fps = total_frames / curate_seconds
    print(f"\n| whole run, all {total_frames} frames | seconds | frames/s | relative to decode alone | load average |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| decode alone | {decode_all:.1f} | {decode_fps:.1f} | 1.00 | {decode_load} |")
    print(f"| curation (raw_videos -> motion_video, MediaPipe poses, embedded scorers, local Ray) | {curate_seconds:.1f} | "
          f"{curate_fps:.1f} | {curate_fps / decode_fps:.3f} | {curate_start_load} -> {load()} |")
    print("\n| curation stage | seconds | share | load average after |")
    print("| --- | ---: | ---: | ---: |")
    for name, sec, avg in stages:
        print(f"| {name} | {sec:.1f} | {100 * sec / curate_seconds:.0f}% | {avg} |")
    print(f"\nfunnel: {scores.extra['funnel']}")


if __name__ == "__main__":
    main()
