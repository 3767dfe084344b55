"""Scoring many clips of one video: clip by clip from frame 0 (the code before issue 16's item 4) vs one
seeking pass per video (``score_video_clips``), side by side in one run, alternating.

    .venv/bin/python bench/bench_one_decode.py [--clip-frames 100] [--rounds 2]

Each real video in ../shared/real is cut into back-to-back clips of ``--clip-frames`` frames and every clip
is scored with the embedded blur and flow scorers (the decode-bound part of ``clip_scores``). "Before"
forces ``video_io.keyframe_index`` to None, so every clip is decoded from frame 0 up to its last sampled
frame, as ``score_clip`` did at 0aee8ee; "after" is one ``score_video_clips`` pass per video. Frames the
decoder hands out are counted by a spy on ``video_io._decode`` (load-independent); seconds are wall time
with the load average beside them. The scores of both must be identical (checked).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mtvcrafter-samples"


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip-frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from pipeline.core import video_io
    from pipeline.core.video_io import probe_video
    from pipeline.curation.scores.base import make_scorer
    from pipeline.curation.scores.score_clips import ClipToScore, score_clip, score_video_clips

    videos = sorted(REAL.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no real videos under {REAL}")
    clips = {}
    for v in videos:
        n = probe_video(v).num_frames
        clips[v] = [ClipToScore(s, min(s + args.clip_frames, n)) for s in range(0, n, args.clip_frames)]
    scorers = [make_scorer("blur"), make_scorer("flow")]
    decoded = [0]
    original_decode, original_index = video_io._decode, video_io.keyframe_index

    def spy(container, stream):
        for frame in original_decode(container, stream):
            decoded[0] += 1
            yield frame

    video_io._decode = spy

    def before():
        video_io.keyframe_index = lambda path: None
        try:
            return {v: [score_clip(v, c.start, c.end, scorers) for c in cs] for v, cs in clips.items()}
        finally:
            video_io.keyframe_index = original_index

    def after():
        return {v: score_video_clips(v, cs, scorers) for v, cs in clips.items()}

    rows, results = [], {}
    for round_ in range(1, args.rounds + 1):
        for name, fn in (("before: clip by clip from frame 0", before), ("after: one seeking pass per video", after)):
            decoded[0] = 0
            start = time.perf_counter()
            results[name] = fn()
            rows.append((round_, name, decoded[0], time.perf_counter() - start, f"{os.getloadavg()[0]:.1f}"))
    same = results["before: clip by clip from frame 0"] == results["after: one seeking pass per video"]
    total = sum(probe_video(v).num_frames for v in videos)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared); date {date.today()}; command: "
          f".venv/bin/python bench/bench_one_decode.py --clip-frames {args.clip_frames} --rounds {args.rounds}")
    print(f"{len(videos)} videos, {total} frames, {sum(len(c) for c in clips.values())} clips; scores identical: {same}\n")
    print("| round | clip_scores decoding | frames decoded | x the videos' frames | seconds | load average after |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for round_, name, count, seconds, load in rows:
        print(f"| {round_} | {name} | {count} | {count / total:.2f} | {seconds:.1f} | {load} |")


if __name__ == "__main__":
    main()
