"""Curation on the five real dance videos in ../shared/real: per-stage frames/s side by side in one run,
and the whole curation's throughput as a ratio to decoding alone.

    .venv/bin/python bench/bench_curation_real.py [--frames-per-video 48] [--out bench/out/real]

Stages timed on the same frames: decode alone; blur, flow (pairs), OCR, aesthetic (embedded backends,
excluding decode); MediaPipe pose + IK fit (including decode). Then the whole curation graph
(raw_videos -> ... -> motion_video, pose_backend=mediapipe, embedded scorers) on all frames of all videos.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from datetime import date
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mtvcrafter-samples"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames-per-video", type=int, default=48)
    parser.add_argument("--out", default="bench/out/real")
    args = parser.parse_args()

    from pipeline import curation, motion_video, scoring
    from pipeline.config import PipelineSettings
    from pipeline.pose import make_pose_estimator
    from pipeline.scores.base import make_scorer, resize_long_side
    from pipeline.video_io import iter_frames, probe_video

    videos = sorted(REAL.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no real videos under {REAL}")
    n = args.frames_per_video
    total_frames = sum(probe_video(v).num_frames for v in videos)

    rows = []
    seconds, frames = timed(lambda: {v: list(iter_frames(v, 0, n + 1)) for v in videos})
    rows.append(("decode (first frames of each video)", len(videos) * (n + 1), seconds))
    sample = [f for v in videos for f in frames[v][:n]]
    pairs = [(resize_long_side(frames[v][i], 512), resize_long_side(frames[v][i + 1], 512)) for v in videos for i in range(n)]
    for metric in ("blur", "flow", "ocr", "aesthetic"):
        scorer = make_scorer(metric)
        scorer.setup()
        seconds, _ = timed(lambda: scorer.score(sample if not scorer.needs_pairs else [], pairs if scorer.needs_pairs else []))
        rows.append((f"{metric}: {scorer.backend} (excl. decode)", len(sample), seconds))
    pose = make_pose_estimator("mediapipe")
    seconds, _ = timed(lambda: [pose.estimate(str(v), 0, n) for v in videos])
    rows.append(("pose: MediaPipe + SMPL IK fit (incl. decode)", len(videos) * n, seconds))

    decode_all, _ = timed(lambda: [sum(1 for _ in iter_frames(v)) for v in videos])
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    inputs = out / "videos"
    inputs.mkdir(parents=True)
    for v in videos:
        (inputs / v.name).symlink_to(v)
    settings = PipelineSettings(data_root=str(out / "data"), raw_videos=str(inputs), pose_backend="mediapipe").validated()

    def curate():
        curation.ingest_raw_videos(settings)
        curation.segment_shots(settings)
        curation.estimate_poses(settings)
        curation.extract_subclips(settings)
        scores = scoring.score_clips(settings, run_id="bench")
        motion_video.build_motion_video(settings, "bench")
        return scores

    curate_seconds, scores = timed(curate)

    print(f"Machine: {platform.machine()}, {platform.system()}; date {date.today()}; "
          f"command: .venv/bin/python bench/bench_curation_real.py --frames-per-video {n}")
    print(f"Videos: {len(videos)} real dance videos ({total_frames} frames, up to 1024x1024)\n")
    print("| stage | frames | seconds | frames/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, count, sec in rows:
        print(f"| {name} | {count} | {sec:.2f} | {count / sec:.1f} |")
    decode_fps = total_frames / decode_all
    curate_fps = total_frames / curate_seconds
    print(f"\n| whole run, all {total_frames} frames | seconds | frames/s | relative to decode alone |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| decode alone | {decode_all:.1f} | {decode_fps:.1f} | 1.00 |")
    print(f"| curation (raw_videos -> motion_video, MediaPipe poses, embedded scorers, local Ray) | {curate_seconds:.1f} | "
          f"{curate_fps:.1f} | {curate_fps / decode_fps:.2f} |")
    print(f"\nfunnel: {scores.extra['funnel']}")


if __name__ == "__main__":
    main()
