"""4DMoT on motion capture: framing of the virtual camera, training before/after mocap, evaluation table.

    python bench/bench_tokenizer_mocap.py framing --out DIR
    python bench/bench_tokenizer_mocap.py train --config tiny --data procedural --minutes 12 --out DIR
    python bench/bench_tokenizer_mocap.py train --config tiny --data mocap --minutes 12 --out DIR
    python bench/bench_tokenizer_mocap.py eval --out DIR [--md bench/results/tokenizer_mocap.md]

``framing``: `pipeline.motion.camera_placement.framing` of the five real NLF clips against placed mocap windows
(how the placement ranges were chosen). ``train``: one training run (local backend, 1 torch thread) that
stops when its time budget is spent; a checkpoint every ``--every`` steps is kept, so ``eval`` reads the
curve. Data: ``procedural`` = the mixed procedural motions (`pipeline.synthetic.motion_mix`, 168 clips
of 150 frames) with the camera-space window augmentation of the earlier benchmark (what 4DMoT was trained
on before), ``mocap`` = the training split of ``../shared/mocap`` placed per window by the virtual camera.
``eval``: every run's checkpoints on the mocap held-out split, the real NLF motions and the generated
sample's curated clips (`pipeline.tokenizer.evaluation`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.checkpoints import load_checkpoint  # noqa: E402
from pipeline.motion.camera_placement import CameraPlacement, framing, place_clips, place_window  # noqa: E402
from pipeline.motion.windows import WindowConfig  # noqa: E402
from pipeline.tokenizer import evaluation as tokenizer_eval  # noqa: E402
from pipeline.tokenizer.config import TokenizerTrainConfig  # noqa: E402
from pipeline.tokenizer.loop import train_tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
MOCAP = SHARED / "mocap"
REAL_SIZES = {"00001": (604, 1080)}  # (width, height); the others are 1024 x 1024
CAMERA_AUGMENT = {"max_yaw": 0.5, "max_bone_scale": 0.1, "max_drift": 0.2}  # the earlier benchmark's best recipe
RUN = {"tiny": {"batch": 16, "lr": 1e-3, "every": 50, "eval_windows": 300, "curve_points": 6},
       "full": {"batch": 4, "lr": 2e-4, "every": 10, "eval_windows": 40, "curve_points": 1}}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class TimeUp(Exception):
    pass


def cmd_framing(args) -> None:
    from pipeline.motion.mocap import read_sources

    real = dict(zip(sorted(np.load(tokenizer_eval.DEFAULT_REAL).files), tokenizer_eval.real_nlf()))
    rows = {vid: framing(j, *REAL_SIZES.get(vid, (1024, 1024))) for vid, j in real.items()}
    sequences, _ = read_sources(MOCAP)
    rng = np.random.default_rng(0)
    placed = [framing(place_window(s.joints[:49], rng, CameraPlacement()), 1024, 1024) for s in sequences[::10]]
    keys = list(placed[0])
    out = {"real": rows, "placed_percentiles_5_50_95": {k: np.percentile([p[k] for p in placed], [5, 50, 95]).tolist() for k in keys},
           "placed_windows": len(placed)}
    (Path(args.out) / "framing.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def cmd_train(args) -> None:
    torch.set_num_threads(1)
    run = RUN[args.config]
    out = Path(args.out) / f"{args.config}-{args.data}"
    windows = dict(lengths=(33, 49), strides=(1, 2))
    clips, sources = {}, {}
    if args.data in ("procedural", "mix"):
        from pipeline.synthetic.motion_mix import mixed_motions

        clips["curated"], sources["curated"] = mixed_motions(168, 150, seed=0), 1.0
        windows.update(CAMERA_AUGMENT)
    if args.data in ("mocap", "mix"):
        from pipeline.motion.mocap import read_sources

        seqs, _ = read_sources(MOCAP)
        clips["mocap"], sources["mocap"] = [s.joints for s in seqs if s.split == "train"], 1.0
    sources = {k: v / len(sources) for k, v in sources.items()}  # mix: half the windows from each
    cfg = TokenizerTrainConfig(model=args.config, backend="local", use_gpu=False, steps_lr1=1_000_000, steps_lr2=0,
                               lr1=run["lr"], batch_size=run["batch"], checkpoint_every=args.every or run["every"],
                               keep_checkpoints=100_000, log_every=max(5, (args.every or run["every"]) // 5),
                               windows=WindowConfig(**windows), resume=args.resume, sources=sources)
    started = time.time()

    def stop(*_):
        raise TimeUp

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(args.minutes * 60))
    log(f"training {out.name} for {args.minutes} min, batch {run['batch']}, lr {run['lr']}")
    try:
        held = list(clips.values())[0][:1]  # a token held-out clip (the run is stopped before it is evaluated)
        held = place_clips(held, cfg.placement()) if args.data == "mocap" else held  # mix: the first source is procedural
        train_tokenizer(clips, None, cfg, out, log=log, heldout=held)
    except TimeUp:
        log(f"time budget spent after {(time.time() - started) / 60:.1f} min")
    before = json.loads((out / "run.json").read_text())["minutes"] if args.resume and (out / "run.json").is_file() else 0.0
    (out / "run.json").write_text(json.dumps({"minutes": before + (time.time() - started) / 60, "config": args.config,
                                              "data": args.data, "batch": run["batch"], "lr": run["lr"]}))


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted((run_dir / "checkpoints").glob("step_*.safetensors")):
        try:
            found.append((load_checkpoint(path).step, path))
        except Exception as err:  # noqa: BLE001  a checkpoint cut by the time budget
            log(f"skipping {path}: {err}")
    return found


def cmd_baseline(args) -> None:
    """No-motion MPJPE of each set (each window's first frame repeated): the same windows as ``eval``'s."""
    from pipeline.motion.windows import eval_windows

    sets = {"mocap held-out": tokenizer_eval.mocap_heldout(MOCAP, limit=RUN["tiny"]["eval_windows"]),
            "real NLF": tokenizer_eval.real_nlf(), "generated": tokenizer_eval.generated_sample(Path(args.out) / "sample")}
    out = {}
    for name, clips in sets.items():
        for limit in sorted({RUN["tiny"]["eval_windows"], RUN["full"]["eval_windows"], args.curve_windows}):
            groups = tokenizer_eval.subsample(eval_windows(clips, tokenizer_eval.WINDOW), limit)
            errs = [tokenizer_eval.mpjpe(np.repeat(w[:, :1], w.shape[1], axis=1), w) for w in groups.values()]
            sizes = [w.size for w in groups.values()]
            out[f"{name} ({sum(len(w) for w in groups.values())} windows)"] = float(np.average(errs, weights=sizes))
    (Path(args.out) / "baseline.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def cmd_eval(args) -> None:
    torch.set_num_threads(1)
    root = Path(args.out)
    started = time.time()
    from pipeline.synthetic import make_sample

    sample_dir = root / "sample"
    make_sample(sample_dir, seed=0, preset="demo")
    sets = {"mocap held-out": tokenizer_eval.mocap_heldout(MOCAP, limit=RUN["tiny"]["eval_windows"]),
            "real NLF": tokenizer_eval.real_nlf(),
            "generated": tokenizer_eval.generated_sample(sample_dir)}
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{platform.machine()} {os.cpu_count()} cores",
               "torch": torch.__version__, "load_start": os.getloadavg()[0], "runs": {}}
    wanted = set(args.runs.split(",")) if args.runs else None
    for run_dir in sorted(p for p in root.iterdir() if (p / "run.json").is_file() and (wanted is None or p.name in wanted)):
        info = json.loads((run_dir / "run.json").read_text())
        found = checkpoints(run_dir)
        if not found:
            continue
        run = RUN[info["config"]]
        curve_points = found[:: max(1, len(found) // run["curve_points"])] if run["curve_points"] > 1 else []
        full_steps = {int(x) for x in args.full_steps.split(",") if x}
        curve_points += [f for f in found if f[0] in full_steps and f not in curve_points]
        if found[-1] not in curve_points:
            curve_points.append(found[-1])
        curve_points.sort()
        curve = []
        for step, path in curve_points:
            final = path == found[-1][1] or step in full_steps
            limit = run["eval_windows"] if final else args.curve_windows
            t0 = time.time()
            res = tokenizer_eval.evaluate_checkpoint_sets(path, sets if final else {"real NLF": sets["real NLF"],
                                                          "mocap held-out": sets["mocap held-out"]}, limit)
            curve.append({"step": step, "final": final, "results": res, "eval_s": time.time() - t0})
            log(f"{run_dir.name} step {step}: " + ", ".join(f"{k} {v['mpjpe_mm']:.1f} mm" for k, v in res.items()))
        loss = load_checkpoint(found[-1][1]).extra.get("loss_curve", [])
        results["runs"][run_dir.name] = {**info, "steps": found[-1][0], "curve": curve, "loss_curve": loss}
        (root / f"eval{args.tag}.json").write_text(json.dumps(results, indent=1))
    results["load_end"] = os.getloadavg()[0]
    results["eval_min"] = (time.time() - started) / 60
    (root / f"eval{args.tag}.json").write_text(json.dumps(results, indent=1))
    md = to_markdown(results)
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text(md)
    print(md)


def to_markdown(res: dict) -> str:
    lines = [f"Date {res['date']}, {res['machine']}, torch {res['torch']}, load {res['load_start']:.1f} -> "
             f"{res.get('load_end', float('nan')):.1f}, evaluation {res.get('eval_min', 0):.1f} min.", "",
             "| tokenizer | trained on | steps x batch | train min | set | windows | MPJPE mm | PA-MPJPE mm | accel. mm/f² | active codes | perplexity |",
             "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    full = [(run, c) for run in res["runs"].values() for c in run["curve"] if c["final"]]
    for run, point in full:
        for set_name, r in point["results"].items():
            lines.append(f"| {run['config']}() | {run['data']} | {point['step']} x {run['batch']} | {run['minutes']:.1f} | "
                         f"{set_name} | {r['windows']} | {r['mpjpe_mm']:.1f} | {r['pa_mpjpe_mm']:.1f} | "
                         f"{r['accel_error_mm']:.2f} | {r.get('active_codes', float('nan')):.1%} | {r.get('perplexity', float('nan')):.1f} |")
    lines += ["", "Curves (MPJPE mm at each evaluated step; real NLF all windows, mocap held-out a fixed subset):", ""]
    for name, run in res["runs"].items():
        pts = ", ".join(f"{c['step']}: {c['results']['real NLF']['mpjpe_mm']:.1f} / {c['results']['mocap held-out']['mpjpe_mm']:.1f}"
                        for c in run["curve"])
        lines.append(f"- {name} (step: real NLF / mocap held-out): {pts}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("framing", "train", "eval", "baseline"))
    parser.add_argument("--out", default="/tmp/bench_tokenizer_mocap")
    parser.add_argument("--config", choices=tuple(RUN), default="tiny")
    parser.add_argument("--data", choices=("procedural", "mocap", "mix"), default="mocap")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--every", type=int, default=0, help="checkpoint every N steps (default per config)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its newest checkpoint")
    parser.add_argument("--curve-windows", type=int, default=60, help="windows per set for earlier checkpoints")
    parser.add_argument("--curve-points", type=int, default=6)
    parser.add_argument("--md", default="bench/results/tokenizer_mocap.md")
    parser.add_argument("--full-steps", default="", help="comma-separated steps also evaluated on every set in full")
    parser.add_argument("--runs", default="", help="comma-separated run folders to evaluate (default: all)")
    parser.add_argument("--tag", default="", help="suffix of the eval JSON file name")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"framing": cmd_framing, "train": cmd_train, "eval": cmd_eval, "baseline": cmd_baseline}[args.command](args)


if __name__ == "__main__":
    main()
