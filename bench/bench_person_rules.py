"""Issue 16's person rules on real footage: people-counter candidates per frame, body coverage, dev-set verdicts.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_person_rules.py [--out bench/out/person_rules]

1. Counters, per frame, against known counts: the four labelled videos of ../shared/real-dev (every 2nd
   frame; truth from labels.csv: 1, 1, 1 and "2+"), and composites of the five real dancers of
   ../shared/real (each alone: 1; side by side: 2; three in a row: 3; a 2 x 2 tiling: 4; every 8th frame).
   Candidates, all shipping inside installed wheels: BlazePose's person detector on the whole frame, the
   same with the two side tiles (``PersonCounter``, the default), MediaPipe's full-range face detector,
   and the larger of the last two. OpenCV 5 has no HOG people detector and ships no cascades
   (cv2.data holds none), so they cannot be measured. On the dev videos the pipeline's own count
   (``MediaPipePoses``: 1 wherever the pose tracker holds a person, more where the detector counts more)
   is measured too.
2. Body coverage (``pose/body_coverage.py``) per video: frames full / upper / partial / no pose, steadied.
3. Dev-set verdicts: shots, MediaPipe poses and the sub-clip rules (no quality filter) per labelled video.
One torch thread; run it in the background on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL = SHARED / "real" / "mtvcrafter-samples"
DEV = SHARED / "real-dev"
DANCERS = ["00001", "00006", "00016", "00017", "00021"]


def fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    return cv2.resize(frame, (round(frame.shape[1] * height / frame.shape[0]), height), interpolation=cv2.INTER_AREA)


def composites(step: int = 8, frames: int = 80) -> list[tuple[str, int, np.ndarray]]:
    """(name, true count, RGB frame) of the real dancers alone, in pairs, in threes and tiled 2 x 2, 512 px high."""
    from pipeline.core.video_io import read_frames

    clips = {v: [fit_height(f, 512) for f in read_frames(REAL / f"{v}.mp4", 0, frames)[::step]] for v in DANCERS}
    out = []
    for v in DANCERS:
        out += [(f"alone {v}", 1, f) for f in clips[v]]
    for a, b in zip(DANCERS, DANCERS[1:] + DANCERS[:1]):
        out += [(f"pair {a}|{b}", 2, np.concatenate([x, y], 1)) for x, y in zip(clips[a], clips[b])]
    for trio in (DANCERS[:3], DANCERS[2:]):
        out += [(f"row {'|'.join(trio)}", 3, np.concatenate(fs, 1)) for fs in zip(*(clips[v] for v in trio))]
    for quad in (DANCERS[:4], DANCERS[1:]):
        for fs in zip(*(clips[v] for v in quad)):
            top, bottom = np.concatenate(fs[:2], 1), np.concatenate(fs[2:], 1)
            width = min(top.shape[1], bottom.shape[1])
            out.append((f"2x2 {'|'.join(quad)}", 4, np.concatenate([top[:, :width], bottom[:, :width]], 0)))
    return [(name, truth, np.ascontiguousarray(f)) for name, truth, f in out]


def dev_frames(step: int = 2) -> list[tuple[str, int, np.ndarray]]:
    from pipeline.core.video_io import read_frames

    out = []
    for label in labels():
        truth = int(label["persons"].rstrip("+"))
        out += [(label["file"], truth, f) for f in read_frames(DEV / label["file"])[::step]]
    return out


def labels() -> list[dict]:
    with open(DEV / "labels.csv") as file:
        return list(csv.DictReader(file))


def correct(count: int, truth: int, at_least: bool) -> bool:
    return count >= truth if at_least else count == truth


def counter_table(frames, candidates) -> dict:
    """{candidate: {group: (correct, frames)}, ...} and seconds per frame."""
    at_least = {label["file"] for label in labels() if label["persons"].endswith("+")}
    result = {}
    for name, count in candidates.items():
        start = time.process_time()
        counts = [count(f) for _, _, f in frames]
        seconds = (time.process_time() - start) / len(frames)
        groups: dict[str, list[int]] = {}
        for (group, truth, _), n in zip(frames, counts):
            key = group.split(" ")[0] if " " in group else group
            groups.setdefault(key, [0, 0])
            groups[key][0] += correct(n, truth, group in at_least)
            groups[key][1] += 1
        result[name] = {"groups": groups, "ms_per_frame": 1000 * seconds,
                        "all": [sum(g[0] for g in groups.values()), sum(g[1] for g in groups.values())]}
        print(name, result[name], flush=True)
    return result


def pipeline_counts_and_coverage() -> dict:
    """The pose stage's own num_people and the body coverage of every frame of every real video."""
    from pipeline.core.video_io import read_frames
    from pipeline.curation.pose import body_coverage as bc
    from pipeline.curation.pose.mediapipe_pose import MediaPipePoses

    out = {}
    at_least = {label["file"]: label["persons"] for label in labels()}
    videos = [DEV / label["file"] for label in labels()] + [REAL / f"{v}.mp4" for v in DANCERS]
    for path in videos:
        frames = read_frames(path)
        landmarks = MediaPipePoses().landmarks(frames)
        people = landmarks.num_people()
        coverage = bc.steady(landmarks.body_coverage())
        truth = at_least.get(path.name, "1")
        ok = people >= int(truth.rstrip("+")) if truth.endswith("+") else people == int(truth)
        out[path.name] = {"frames": len(frames), "people_correct": int(ok.sum()),
                          "coverage": {k: int((coverage == v).sum()) for k, v in
                                       (("full", bc.FULL), ("upper", bc.UPPER), ("partial", bc.PARTIAL), ("no pose", bc.UNKNOWN))}}
        print(path.name, out[path.name], flush=True)
    return out


def dev_verdicts() -> dict:
    from pipeline.curation.shots import make_shot_detector
    from pipeline.curation.stages import person_rules_of_file
    from pipeline.curation.tasks import PoseTask

    detector = make_shot_detector("scenedetect")
    task = PoseTask("mediapipe", "")
    task.setup()
    out = {}
    for label in labels():
        _, shots, clips, rejected = person_rules_of_file(DEV / label["file"], detector, task, 33)
        reasons: dict[str, int] = {}
        for r in rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + (r.end_frame - r.start_frame)
        out[label["file"]] = {"expected": label["expected"].split(":")[0], "shots": len(shots),
                              "kept": [(c["start_frame"], c["end_frame"]) for c in clips.to_pylist()],
                              "rejected_frames_by_reason": reasons}
        print(label["file"], out[label["file"]], flush=True)
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out/person_rules")
    parser.add_argument("--counters-only", action="store_true")
    args = parser.parse_args()
    from pipeline.curation.pose.mediapipe_runtime import import_mediapipe
    from pipeline.curation.pose.person_count import PersonCounter

    import_mediapipe()
    from mediapipe.python.solutions.face_detection import FaceDetection

    whole, tiled, grid = PersonCounter(tiles=False), PersonCounter(), PersonCounter(grid=True)
    faces = FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def count_faces(frame):
        return len(faces.process(frame).detections or [])

    candidates = {
        "BlazePose person detector, whole frame": lambda f: int(whole.count([f])[0]),
        "BlazePose person detector + side columns (PersonCounter, default)": lambda f: int(tiled.count([f])[0]),
        "BlazePose person detector + side columns + 2x2 grid (grid=True)": lambda f: int(grid.count([f])[0]),
        "MediaPipe face detector, full range": count_faces,
        "max(person detector + tiles + grid, faces)": lambda f: max(int(grid.count([f])[0]), count_faces(f)),
    }
    frames = dev_frames() + composites()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "date": str(date.today()),
              "counters": counter_table(frames, candidates)}
    if not args.counters_only:
        result["pipeline"] = pipeline_counts_and_coverage()
        result["dev_verdicts"] = dev_verdicts()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["counters"], indent=1))


if __name__ == "__main__":
    main()
