"""Curation on the five real dance videos in ../shared/real: per-stage frames/s side by side in one run,
and the whole curation's throughput as a ratio to decoding alone.

    .venv/bin/python bench/bench_curation_real.py [--frames-per-video 48] [--pose-frame-steps 1,2] [--whole-only] [--out bench/out/real]

Stages timed on the same frames: decode alone; blur, flow (pairs), OCR, aesthetic (embedded backends,
per scored frame, excluding decode; OCR on an evenly spread subset, as the scorer itself samples at most
4 frames a clip, with onnxruntime on all cores (before) and on one thread (now)); MediaPipe pose + IK fit
including decode: on every frame, with repeated frames skipped (default), and on every 2nd frame
(``pose_frame_step=2``). Shot detection on all frames of every video: PySceneDetect's own decoding
(before) and ``SceneDetectShots`` (frames decoded small, now). Then the whole curation graph
(raw_videos -> ... -> motion_video, pose_backend=mediapipe, embedded scorers) on all frames of all
videos once per ``--pose-frame-steps`` value, each run right after its own decode-alone pass (the ratio
uses that pass: the 2 cores are shared, so the load can change between runs), each stage's seconds
listed; ``--whole-only`` skips the per-stage rows. The per-stage rows also give this process's CPU
seconds; the load average is printed beside each row. The script also runs on code from before the
``pose_frame_step`` setting (for A/B runs: run it from that copy's folder with PYTHONPATH on it, as
local Ray workers import from the driver's working directory) as long as only step 1 is asked for.
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


def timed_cpu(fn):
    """(wall seconds, this process's CPU seconds, value)."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu, value


def scenedetect_own_decode(path) -> int:
    """Shot detection as before: PySceneDetect's SceneManager decoding full frames itself (PyAV backend)."""
    from scenedetect import ContentDetector, SceneManager, open_video

    manager = SceneManager()
    manager.add_detector(ContentDetector())
    manager.detect_scenes(open_video(str(path), backend="pyav", suppress_output=True))
    return len(manager.get_scene_list(start_in_scene=True))


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames-per-video", type=int, default=48)
    parser.add_argument("--pose-frame-steps", default="1,2", help="whole runs, one per pose_frame_step value")
    parser.add_argument("--whole-only", action="store_true", help="skip the per-stage rows: only the whole runs")
    parser.add_argument("--out", default="bench/out/real")
    args = parser.parse_args()
    steps = [int(k) for k in args.pose_frame_steps.split(",")]

    from pipeline.core.video_io import probe_video

    videos = sorted(REAL.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no real videos under {REAL}")
    n = args.frames_per_video
    total_frames = sum(probe_video(v).num_frames for v in videos)

    rows = []  # (stage, frames, seconds, CPU seconds of this process or None, load average after)
    if not args.whole_only:
        per_stage_rows(videos, n, total_frames, rows)
    out = Path(args.out)
    runs = []  # (pose_frame_step, decode s, decode load, curation s, loads, stages, scores)
    for step in steps:
        runs.append(whole_run(videos, out, step))

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), {platform.system()}; date {date.today()}; "
          f"command: .venv/bin/python bench/bench_curation_real.py --frames-per-video {n} --pose-frame-steps {args.pose_frame_steps}"
          + (" --whole-only" if args.whole_only else ""))
    print(f"Videos: {len(videos)} real dance videos ({total_frames} frames, up to 1024x1024)\n")
    if rows:
        print("| stage | frames | seconds | frames/s | CPU seconds (this process) | load average after |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, count, sec, cpu, avg in rows:
            print(f"| {name} | {count} | {sec:.2f} | {count / sec:.1f} | {cpu:.2f} | {avg} |")
    print(f"\n| whole run, all {total_frames} frames | seconds | frames/s | relative to decode alone | load average |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for step, decode_all, decode_load, curate_seconds, loads, _, _ in runs:
        decode_fps, curate_fps = total_frames / decode_all, total_frames / curate_seconds
        print(f"| decode alone (before the pose_frame_step={step} run) | {decode_all:.1f} | {decode_fps:.1f} | 1.00 | {decode_load} |")
        print(f"| curation (raw_videos -> motion_video, MediaPipe poses, pose_frame_step={step}, embedded scorers, "
              f"local Ray) | {curate_seconds:.1f} | {curate_fps:.1f} | {curate_fps / decode_fps:.3f} | {loads} |")
    for step, _, _, curate_seconds, _, stages, scores in runs:
        print(f"\n| curation stage, pose_frame_step={step} | seconds | share | load average after |")
        print("| --- | ---: | ---: | ---: |")
        for name, sec, avg in stages:
            print(f"| {name} | {sec:.1f} | {100 * sec / curate_seconds:.0f}% | {avg} |")
        print(f"\nfunnel (pose_frame_step={step}): {scores.extra['funnel']}")


def per_stage_rows(videos, n, total_frames, rows) -> None:
    """Each stage on its own, in this process, on the same frames (see the module docstring)."""
    from pipeline.core.video_io import iter_frames
    from pipeline.curation.pose.mediapipe_pose import MediaPipePoses
    from pipeline.curation.scores.base import make_scorer, resize_long_side
    from pipeline.curation.scores.ocr import spread
    from pipeline.curation.shots import SceneDetectShots

    seconds, cpu, frames = timed_cpu(lambda: {v: list(iter_frames(v, 0, n + 1)) for v in videos})
    rows.append(("decode (first frames of each video)", len(videos) * (n + 1), seconds, cpu, load()))
    sample = [f for v in videos for f in frames[v][:n]]
    pairs = [(resize_long_side(frames[v][i], 512), resize_long_side(frames[v][i + 1], 512)) for v in videos for i in range(n)]
    scorers = [("blur", {}, ""), ("flow", {}, ""), ("ocr", {"num_threads": -1}, ", all cores (before)"),
               ("ocr", {}, ", 1 thread (now)"), ("aesthetic", {}, "")]
    for metric, options, note in scorers:
        scorer = make_scorer(metric, **options)
        scorer.setup()
        if scorer.needs_pairs:
            seconds, cpu, _ = timed_cpu(lambda: scorer.score([], pairs))
            count = len(pairs)
        else:
            subset = spread(sample, OCR_FRAMES) if metric == "ocr" else sample
            scorer.frame_scores(subset[:1])  # warm-up (first inference allocates)
            seconds, cpu, _ = timed_cpu(lambda: scorer.frame_scores(subset))
            count = len(subset)
        rows.append((f"{metric}: {scorer.backend}{note} (excl. decode)", count, seconds, cpu, load()))
    for label, pose in (("every frame", MediaPipePoses(repeat_level=0.0, world_smoothing_frames=0.0)),
                        ("repeated frames skipped, default", MediaPipePoses()),
                        ("every 2nd frame, pose_frame_step=2", MediaPipePoses(frame_step=2))):
        seconds, cpu, _ = timed_cpu(lambda: [pose.estimate(str(v), 0, n) for v in videos])
        rows.append((f"pose: MediaPipe ({label}) + SMPL IK fit (incl. decode)", len(videos) * n, seconds, cpu, load()))
    for label, detect in (("PySceneDetect's own full-size decode (before)", scenedetect_own_decode),
                          ("frames decoded at 256 px, no deblocking (now)", SceneDetectShots().detect)):
        seconds, cpu, _ = timed_cpu(lambda: [detect(str(v)) for v in videos])
        rows.append((f"shots: ContentDetector, {label}, all frames (incl. decode)", total_frames, seconds, cpu, load()))


def whole_run(videos, out: Path, step: int) -> tuple:
    """Decode alone, then the whole curation graph with ``pose_frame_step=step`` in a fresh data root and a
    fresh local Ray."""
    import ray

    from pipeline.core.config import PipelineSettings
    from pipeline.core.video_io import iter_frames
    from pipeline.curation import ingest, motion_video, scoring
    from pipeline.curation import stages as curation

    decode_all, _ = timed(lambda: [sum(1 for _ in iter_frames(v)) for v in videos])
    decode_load = load()
    run_dir = out / f"step{step}"
    shutil.rmtree(run_dir, ignore_errors=True)
    inputs = run_dir / "videos"
    inputs.mkdir(parents=True)
    for v in videos:
        (inputs / v.name).symlink_to(v)
    # pose_frame_step only when not 1, so that the script also runs on code from before the setting (A/B runs).
    options = {"pose_frame_step": step} if step != 1 else {}
    settings = PipelineSettings(data_root=str(run_dir / "data"), raw_videos=str(inputs), pose_backend="mediapipe",
                                **options).validated()
    stages = []

    def stage(name, fn):
        seconds, value = timed(fn)
        parts = getattr(value, "extra", {}).get("stage_seconds")  # where the stage's worker time went
        stages.append((name + (f" (worker seconds: {parts})" if parts else ""), seconds, load()))
        return value

    def curate():
        stage("ingest raw_videos (includes starting Ray)", lambda: ingest.ingest_raw_videos(settings))
        stage("shots", lambda: curation.segment_shots(settings))
        stage("poses (MediaPipe + IK)", lambda: curation.estimate_poses(settings))
        stage("subclips", lambda: curation.extract_subclips(settings))
        scores = stage("clip_scores", lambda: scoring.score_clips(settings, run_id="bench"))
        stage("motion_video", lambda: motion_video.build_motion_video(settings, "bench"))
        return scores

    start_load = load()
    curate_seconds, scores = timed(curate)
    loads = f"{start_load} -> {load()}"
    ray.shutdown()  # each run starts its own Ray, as a fresh process would
    return step, decode_all, decode_load, curate_seconds, loads, stages, scores


if __name__ == "__main__":
    main()
