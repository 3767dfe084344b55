"""Where the embedded pose backend's time goes, per video frame, and what fewer IK iterations would change.

    .venv/bin/python bench/bench_pose_parts.py [--ik-iterations 30,20]

On every frame of ../shared/real (and ../shared/real-dev for the IK comparison): the estimator's own
timings (``MediaPipePoses.estimate``: decode, MediaPipe landmarks with the repeated-frame test, the person
detector, the IK fit) in ms per video frame; then the IK fit re-run on the same landmarks with fewer
L-BFGS iterations, each against the default fit: per frame the largest joint difference (FK joints with
translation, mm) and the fit's seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--ik-iterations", default="30,20")
    args = parser.parse_args()

    from pipeline.core.video_io import iter_frames, probe_video
    from pipeline.curation.pose.ik_fit import IKSettings
    from pipeline.curation.pose.mediapipe_pose import MediaPipePoses, track_from_landmarks

    real = sorted((SHARED / "real" / "mtvcrafter-samples").glob("*.mp4"))
    dev = sorted((SHARED / "real-dev").glob("*.mp4"))
    if not real:
        raise SystemExit(f"no real videos under {SHARED / 'real'}")
    estimator = MediaPipePoses()
    estimator.estimate(str(real[0]), 0, 1)  # warm-up: MediaPipe's import and models
    parts: dict[str, float] = {}
    frames = 0
    start = time.perf_counter()
    for video in real:
        n = probe_video(video).num_frames
        for part, seconds in estimator.estimate(str(video), 0, n).seconds.items():
            parts[part] = parts.get(part, 0.0) + seconds
        frames += n
    wall = time.perf_counter() - start
    print(f"{len(real)} videos, {frames} frames, {wall:.1f} s ({1000 * wall / frames:.1f} ms a frame), load {os.getloadavg()[0]:.1f}\n")
    print("| part | seconds | ms per video frame |\n| --- | ---: | ---: |")
    for part, seconds in parts.items():
        print(f"| {part} | {seconds:.1f} | {1000 * seconds / frames:.1f} |")

    landmarks = {v.name: estimator.landmarks(iter_frames(v)) for v in real + dev}

    def fits(settings):
        clock = time.perf_counter()
        out = {name: track_from_landmarks(lm, np.arange(len(lm.world)), "bench", settings=settings,
                                          world_smoothing_frames=estimator.world_smoothing_frames)[1]
               for name, lm in landmarks.items()}
        return out, time.perf_counter() - clock

    reference, ref_seconds = fits(estimator.ik_settings)
    print(f"\n| IK iterations | fit seconds | median | p90 | p99 | max | frames > 10 mm |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {estimator.ik_settings.iterations} (default) | {ref_seconds:.1f} | 0 | 0 | 0 | 0 | 0 |")
    for iterations in (int(k) for k in args.ik_iterations.split(",")):
        other, seconds = fits(IKSettings(iterations=iterations))
        diff = np.concatenate([np.linalg.norm(other[k].joints - reference[k].joints, axis=-1).max(axis=1) * 1000
                               for k in reference])
        print(f"| {iterations} | {seconds:.1f} | {np.median(diff):.1f} mm | {np.percentile(diff, 90):.1f} mm | "
              f"{np.percentile(diff, 99):.1f} mm | {diff.max():.1f} mm | {np.mean(diff > 10):.1%} |")


if __name__ == "__main__":
    main()
