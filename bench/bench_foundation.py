"""Foundation throughput on the generated demo sample: decode, shot detection and pose (annotations
backend), frames per second, measured side by side in one run on this machine.

    .venv/bin/python bench/bench_foundation.py [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from pipeline.core.video_io import iter_frames, probe_video
from pipeline.curation.pose import make_pose_estimator
from pipeline.curation.shots import make_shot_detector
from pipeline.synthetic import make_sample


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    out = Path(args.out)
    sample = out / "sample"
    make_sample(sample, seed=0, preset="demo")
    videos = sorted((sample / "videos").glob("*.mp4"))
    frames = sum(probe_video(v).num_frames for v in videos)

    def decode():
        for v in videos:
            for _ in iter_frames(v):
                pass

    results = {"frames": frames, "videos": len(videos)}
    results["decode"] = timed(decode)
    for name in ("scenedetect", "transnetv2"):
        detector = make_shot_detector(name)
        results[f"shots_{name}"] = timed(lambda: [detector.detect(str(v)) for v in videos])
    annotations = make_pose_estimator("annotations")
    results["pose_annotations"] = timed(lambda: [annotations.estimate(str(v), 0, probe_video(v).num_frames) for v in videos])

    rows = []
    for key in ("decode", "shots_scenedetect", "shots_transnetv2", "pose_annotations"):
        fps = frames / results[key]
        rows.append((key, results[key], fps, results["decode"] / results[key]))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, date {date.today()}")
    print(f"{frames} frames in {len(videos)} videos")
    print(f"{'stage':<20} {'seconds':>8} {'frames/s':>10} {'vs decode':>10}")
    for key, sec, fps, ratio in rows:
        print(f"{key:<20} {sec:>8.2f} {fps:>10.1f} {ratio:>10.2f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps({k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
