"""Issue 16, item 1, second round: person-counter candidates that use the person mask (MediaPipe selfie segmentation).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_person_count_candidates.py [--out bench/out/person_count_candidates]

Same frames and truth as ``bench_person_rules.py --counters-only`` (the four labelled dev videos, every 2nd frame,
and composites of the five real dancers: alone 1, pairs 2, rows of 3, 2 x 2 tiles 4), plus three groups reported
apart from the 593-frame total: ``empty`` (strips of the real dancers' frames beside the dancer, 15% of the
picture wide: 0 people, with an occasional hand or hair entering), and a small-scale crowd (``crowd6``: 2 x 3 tiles,
``crowd9``: 3 x 3 tiles of the dancers cropped to their picture, 256 px per dancer, truth 6 and 9).
Candidates (all ship inside the mediapipe wheel):

- ``PersonCounter`` as it was (BlazePose person detector + side columns), the baseline of the same run;
- the same with ``grid=True`` (fixed 2 x 2 windows);
- person-mask components counted (selfie segmentation, components >= 1% of the frame): no detector at all;
- the detector + windows on the person mask's components (each component's box grown 15%) instead of fixed
  grids (``PersonCounter`` now; the mask also runs on the columns / corner windows);
- the same + a headless fallback (``headless=True``): no detection but a mask component >= 5% counts 1;
- the last + a 3-sample running median over time within each group (samples 2 or 8 frames apart here);
- the headless one with the mask on the whole frame only (``tiled_mask=False``).
One torch thread. ms / frame is process time per frame, whole candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_person_rules import DANCERS, REAL, composites, correct, dev_frames, fit_height, labels  # noqa: E402


def _picture(frame: np.ndarray) -> np.ndarray:
    """The frame without its black side bars."""
    columns = np.nonzero(frame.max(axis=(0, 2)) > 30)[0]
    return frame[:, columns[0]:columns[-1] + 1]


def extra_groups(step: int = 8, frames: int = 80) -> list[tuple[str, int, np.ndarray]]:
    """(name, truth, frame): empty strips beside the dancers (0) and crowds of 6 and 9 small dancers."""
    from pipeline.core.video_io import read_frames

    clips = {v: [_picture(f) for f in read_frames(REAL / f"{v}.mp4", 0, frames)[::step]] for v in DANCERS}
    out = []
    for v in DANCERS[1:]:  # 00001 fills its picture
        for f in clips[v]:
            side = int(0.15 * f.shape[1])
            out += [(f"empty {v}", 0, f[:, :side]), (f"empty {v}", 0, f[:, -side:])]
    small = {v: [fit_height(f, 256) for f in fs] for v, fs in clips.items()}
    for rows, cols, name in ((2, 3, "crowd6"), (3, 3, "crowd9")):
        for i in range(len(small[DANCERS[0]])):
            order = [DANCERS[k % len(DANCERS)] for k in range(rows * cols)]
            tiles = [small[v][(i + k) % len(small[v])] for k, v in enumerate(order)]
            width = min(t.shape[1] for t in tiles)
            tiles = [t[:, (t.shape[1] - width) // 2:(t.shape[1] - width) // 2 + width] for t in tiles]
            grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(rows)], 0)
            out.append((f"{name} {'|'.join(order)}", rows * cols, grid))
    return [(n, t, np.ascontiguousarray(f)) for n, t, f in out]


def run(frames, candidates) -> dict:
    at_least = {label["file"] for label in labels() if label["persons"].endswith("+")}
    result = {}
    for name, make in candidates.items():
        count = make()
        start = time.process_time()
        counts = count([f for _, _, f in frames], [g for g, _, _ in frames])
        seconds = (time.process_time() - start) / len(frames)
        groups: dict[str, list[int]] = {}
        misses: dict[str, dict[int, int]] = {}
        for (group, truth, _), n in zip(frames, counts):
            key = group.split(" ")[0] if " " in group else group
            ok = correct(int(n), truth, group in at_least)
            groups.setdefault(key, [0, 0])
            groups[key][0] += ok
            groups[key][1] += 1
            if not ok:
                misses.setdefault(key, {})
                misses[key][int(n)] = misses[key].get(int(n), 0) + 1
        main = [k for k in groups if not k.startswith(("empty", "crowd"))]
        result[name] = {"groups": groups, "misses (count: frames)": misses, "ms_per_frame": 1000 * seconds,
                        "all": [sum(groups[k][0] for k in main), sum(groups[k][1] for k in main)]}
        print(name, json.dumps(result[name]), flush=True)
    return result


def per_frame(counter):
    return lambda frames, groups: [int(counter.count([f])[0]) for f in frames]


def running_median(counter, k: int = 3):
    """The counter, then a centred running median of ``k`` samples within each group (a count must hold)."""
    def count(frames, groups):
        raw = np.array([int(counter.count([f])[0]) for f in frames])
        out = raw.copy()
        for g in set(groups):
            idx = np.array([i for i, name in enumerate(groups) if name == g])
            for j in range(len(idx)):
                window = raw[idx[max(0, j - k // 2):j + k // 2 + 1]]
                out[idx[j]] = int(np.median(window))
        return out.tolist()
    return count


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/out/person_count_candidates")
    parser.add_argument("--only", default="", help="comma-separated candidate numbers (1-based) to run")
    args = parser.parse_args()
    from pipeline.curation.pose.person_count import PersonCounter
    from pipeline.curation.pose.person_mask import PersonMask

    mask = PersonMask()

    def mask_components(frames, groups):
        return [len(mask.components(f)) for f in frames]

    candidates = {
        "BlazePose detector + side columns (PersonCounter before)": lambda: per_frame(PersonCounter(person_mask=False)),
        "+ fixed 2 x 2 corner windows (grid=True)": lambda: per_frame(PersonCounter(person_mask=False, grid=True)),
        "person-mask components >= 1% (no detector)": lambda: mask_components,
        "detector + side columns + person-mask component windows (PersonCounter now)": lambda: per_frame(
            PersonCounter(person_mask=True)),
        "+ headless fallback (mask component >= 5% counts 1)": lambda: per_frame(PersonCounter(headless=True)),
        "+ running median of 3 samples": lambda: running_median(PersonCounter(headless=True)),
        "+ headless, mask on the whole frame only (tiled_mask=False)": lambda: per_frame(
            PersonCounter(headless=True, tiled_mask=False)),
    }
    if args.only:
        keep = {int(i) - 1 for i in args.only.split(",")}
        candidates = {k: v for i, (k, v) in enumerate(candidates.items()) if i in keep}
    frames = dev_frames() + composites() + extra_groups()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)", "date": str(date.today()),
              "load": os.getloadavg(), "counters": run(frames, candidates)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
