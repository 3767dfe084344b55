"""Person counter measurements for bench/results/person_count.md: `python bench/bench_person_count.py`."""
import json
import time
from pathlib import Path

import numpy as np

from pipeline.core.video_io import read_frames
from pipeline.curation.pose.person_count import PersonCounter
from pipeline.synthetic.presets import ShotSpec
from pipeline.synthetic.sample import make_sample, render_shot

ROOT = Path(__file__).resolve().parents[1]
REAL = str(ROOT.parent / "shared" / "real" / "mtvcrafter-samples") + "/"
OUT = ROOT / "bench" / "out" / "person_count"
OUT.mkdir(parents=True, exist_ok=True)
SAMPLE = str(OUT / "sample")
out = {}
configs = {"whole frame": PersonCounter(tiles=False), "whole + 2 tiles": PersonCounter()}
for c in configs.values(): c.setup()

def timed_counts(counter, frames):
    t = time.process_time(); n = counter.count(frames); return n, time.process_time() - t

# 1. demo sample, per shot, every frame
m = make_sample(SAMPLE, preset="demo")
demo = {k: [] for k in configs}
for v in m.videos if hasattr(m, "videos") else []:
    pass
man = json.load(open(SAMPLE + "/manifest.json"))
for v in man["videos"]:
    frames = read_frames(SAMPLE + "/" + v["file"])
    truth = np.isfinite(np.load(SAMPLE + "/" + v["sidecar"])["pose"][:, :, 0, 0]).sum(1)
    for name, c in configs.items():
        n, t = timed_counts(c, frames)
        for sh in v["shots"]:
            a, b = sh["start_frame"], sh["end_frame"]
            demo[name].append(dict(video=v["name"], kind=sh["kind"], frames=f"{a}-{b}", truth=np.bincount(truth[a:b], minlength=3).tolist(),
                                   counted=np.bincount(n[a:b], minlength=4).tolist(), agree=float(np.mean(n[a:b] == truth[a:b]))))
        demo[name + " cpu_s"] = demo.get(name + " cpu_s", 0) + t
        demo[name + " frames"] = demo.get(name + " frames", 0) + len(frames)
out["demo"] = demo
print("demo done", flush=True)

# 2. 12 freshly rendered two-person and one-person shots (24 frames each, 320 x 240)
motions = ["walk", "dance", "wave", "squat", "jump", "turn"]
synth = {k: {"two": [], "one": []} for k in configs}
for seed in range(12):
    m1, m2 = motions[seed % 6], motions[(seed * 5 + 1) % 6]
    two = render_shot(ShotSpec("two_people", 24, m1, m2), 320, 240, 25.0, np.random.default_rng(100 + seed)).frames
    one = render_shot(ShotSpec("normal", 24, m1), 320, 240, 25.0, np.random.default_rng(200 + seed)).frames
    for name, c in configs.items():
        synth[name]["two"].append(float(np.mean(c.count(two) == 2)))
        synth[name]["one"].append(float(np.mean(c.count(one) == 1)))
out["synthetic"] = synth
print("synthetic done", flush=True)

# 3. real single-person videos, every frame; decode time alone for scale
real = {k: {} for k in configs}
for vid in ["00001", "00006", "00016", "00017", "00021"]:
    t = time.process_time(); frames = read_frames(REAL + vid + ".mp4"); dec = time.process_time() - t
    for name, c in configs.items():
        n, tc = timed_counts(c, frames)
        real[name][vid] = dict(frames=len(n), hist=np.bincount(n, minlength=4).tolist(), frac1=float(np.mean(n == 1)),
                               fps=len(n) / tc, decode_fps=len(n) / dec, non1=np.flatnonzero(n != 1).tolist()[:20])
    del frames
out["real"] = real
print("real done", flush=True)

# 4. real two-person composites: two real dancers side by side (every 10th of the first 100 frames)
pairs = [("00017", "00006"), ("00021", "00016"), ("00006", "00021")]
comp = {k: {} for k in configs}
for a, b in pairs:
    fa, fb = read_frames(REAL + a + ".mp4", 0, 100)[::10], read_frames(REAL + b + ".mp4", 0, 100)[::10]
    imgs = [np.ascontiguousarray(np.concatenate([x, y], 1)) for x, y in zip(fa, fb)]
    for name, c in configs.items():
        comp[name][f"{a}|{b}"] = np.bincount(c.count(imgs), minlength=4).tolist()
out["composites"] = comp
json.dump(out, open(OUT / "bench.json", "w"), indent=1)
print("done")
