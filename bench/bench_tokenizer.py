"""4DMoT benchmarks (paper Sec. 3.1, App. A): measured, never asserted.

    .venv/bin/python bench/bench_tokenizer.py [--quick] [--out bench/out/tokenizer] [--md bench/results/tokenizer.md]
    .venv/bin/python bench/bench_tokenizer.py --report-only   # rebuild the Markdown from the saved JSON

1. Encode / decode throughput (frames/s, and multiples of 30 fps real time) of
   TokenizerConfig.full() (randomly initialised real weights, ~48M trainable
   parameters plus the 8192 x 3072 codebook) and tiny(), on the CPU with 1 and 2
   torch threads, on a batch of 49-frame windows.
2. Training steps/s of the tiny config under Ray Train with 1 and 2 CPU workers,
   side by side. Step times come from the modification times of the checkpoints
   rank 0 writes every ``--ray-every`` steps (the slope after the first one), so
   worker-group startup (and the first steps' warm-up) is reported separately.
3. Held-out reconstruction MPJPE (mm) of the tiny config and of a larger one
   trained locally on procedural SMPL motions (`pipeline.synthetic.motions`,
   many seeds of every kind), evaluated on motions of seeds never trained on.
4. Reconstruction MPJPE of those tokenizers on the real NLF motions of
   ``../shared/real/mtvcrafter-samples/nlf_joints_mm.npz`` (mm -> m; camera
   coordinates, the dancers' own bone lengths), which they never trained on,
   per video and mean, beside a "no motion" baseline (frame 0 repeated).

5. ``--sections real`` (bench/results/tokenizer_real.md): where the real-motion
   error comes from and what lowers it. Diagnostics of each tokenizer on the real
   NLF joints (root-relative error, root error, error with the root held still,
   with the NLF jitter smoothed away, with the codebook bypassed, normalised value
   ranges); a tiny() trained on `pipeline.synthetic.motion_mix` motions with the
   camera-space augmentations of `pipeline.motion.windows`; and a
   leave-one-video-out protocol: that tokenizer fine-tuned on 4 real videos (plus
   procedural clips) and tested on the 5th, for each of the 5.

Results go to JSON after each section (``--out``), then to Markdown (``--md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, also when loaded by path
from machine import load_average, machine_info  # noqa: E402  (bench/machine.py)

from models.tokenizer import VQVAE, MotionNormalizer, TokenizerConfig, count_parameters  # noqa: E402
from pipeline.core.checkpoints import list_checkpoints, load_tokenizer  # noqa: E402
from pipeline.motion.windows import WindowConfig, tile_windows  # noqa: E402
from pipeline.synthetic.motions import MOTIONS, make_motion  # noqa: E402
from pipeline.tokenizer.config import TokenizerTrainConfig  # noqa: E402
from pipeline.tokenizer.loop import train_tokenizer  # noqa: E402
from pipeline.tokenizer.tokenize_clips import tokenize_windows  # noqa: E402

REAL_JOINTS = Path(__file__).resolve().parents[2] / "shared/real/mtvcrafter-samples/nlf_joints_mm.npz"
REAL_TIME_FPS = 30.0
WINDOW = 49

# The larger config trained here: the paper's layout (three stages, dilations 3/3/1, frame
# downsampling 2/2/1, window 8) at about 1/25 of the width, codebook 1024 x 256.
LARGER = TokenizerConfig(channels=(32, 64, 128), blocks_per_stage=2, norm_groups=8, code_dim=256, codebook_size=1024)
ANCHORS = [("T2M-GPT VQ-VAE (re-measured by MoMask)", "HumanML3D", 58.0), ("MoMask RVQ", "HumanML3D", 29.5)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- data ----------------------------------------------------------------------------------------
def procedural_clips(seeds: range, frames: int, fps: float = 30.0) -> list[np.ndarray]:
    """Joints (frames, 24, 3) of every motion kind for each seed, with random tempo and amplitude."""
    clips = []
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        for kind in MOTIONS:
            motion = make_motion(kind, frames, fps, rng, tempo=rng.uniform(0.8, 1.25), amplitude=rng.uniform(0.7, 1.2))
            clips.append(motion.joints())
    return clips


def real_motions() -> dict[str, np.ndarray]:
    """The real NLF joints, metres."""
    with np.load(REAL_JOINTS) as data:
        return {k: data[k].astype(np.float32) / 1000.0 for k in sorted(data.files)}


# ---- 1. throughput -------------------------------------------------------------------------------
def bench_throughput(batch: int, reps: int) -> list[dict[str, Any]]:
    rows = []
    clips = procedural_clips(range(1), WINDOW)
    joints = torch.from_numpy(np.stack([clips[i % len(clips)] for i in range(batch)]))
    for name, config in (("full", TokenizerConfig.full()), ("tiny", TokenizerConfig.tiny())):
        torch.manual_seed(0)
        started = time.perf_counter()
        model = VQVAE(config).eval()
        build_s = time.perf_counter() - started
        flat = joints.reshape(-1, 3).double()
        normalizer = MotionNormalizer(flat.mean(0), flat.std(0), differential=config.differential)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                ids = model.encode(normalizer(joints))  # warm-up
                model.decode_ids(ids)
                enc, dec = [], []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    ids = model.encode(normalizer(joints))
                    t1 = time.perf_counter()
                    normalizer.inverse(model.decode_ids(ids), first_frame=joints[:, 0])
                    t2 = time.perf_counter()
                    enc.append(t1 - t0)
                    dec.append(t2 - t1)
            frames = batch * WINDOW
            row = {"config": name, "params": count_parameters(model), "threads": threads, "batch": batch,
                   "encode_s": float(np.median(enc)), "decode_s": float(np.median(dec)),
                   "encode_fps": frames / float(np.median(enc)), "decode_fps": frames / float(np.median(dec)),
                   "build_s": build_s, "load": load_average()}
            rows.append(row)
            log(f"throughput {name} threads={threads}: encode {row['encode_fps']:.0f} frames/s, "
                f"decode {row['decode_fps']:.0f} frames/s")
        del model
    torch.set_num_threads(1)
    return rows


# ---- 2. Ray Train scaling ------------------------------------------------------------------------
def bench_ray(steps: int, every: int, batch: int, out: Path) -> dict[str, Any]:
    import ray

    from pipeline.core.ray_runtime import ensure_ray

    clips = procedural_clips(range(3), 120)
    heldout = procedural_clips(range(900, 901), 60)[:2]
    t0 = time.perf_counter()
    ensure_ray("")
    result: dict[str, Any] = {"ray_init_s": time.perf_counter() - t0, "steps": steps, "every": every,
                              "batch_per_worker": batch, "runs": []}
    log(f"ray init {result['ray_init_s']:.1f} s")
    for workers in (1, 2):
        run_dir = out / f"ray_w{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)  # resume=False still evaluates the newest checkpoint found there
        cfg = TokenizerTrainConfig(
            model="tiny", backend="ray", num_workers=workers, use_gpu=False, steps_lr1=steps, steps_lr2=0,
            lr1=1e-3, batch_size=batch, checkpoint_every=every, keep_checkpoints=10_000, log_every=every,
            windows=WindowConfig(lengths=(WINDOW,), strides=(1,)), resume=False, run_name=f"bench-w{workers}",
        )
        started = time.time()
        train_tokenizer(clips, None, cfg, run_dir, log=lambda _: None, heldout=heldout)
        finished = time.time()
        stamps = [(int(p.stem.split("_")[1]), p.stat().st_mtime) for p in list_checkpoints(run_dir / "checkpoints")]
        (s0, m0), (s1, m1) = stamps[0], stamps[-1]
        rate = (s1 - s0) / (m1 - m0)
        run = {"workers": workers, "steps_per_s": rate, "windows_per_s": rate * batch * workers,
               "startup_s": (m0 - started) - s0 / rate, "total_s": finished - started,
               "after_training_s": finished - m1, "load": load_average()}
        result["runs"].append(run)
        log(f"ray {workers} worker(s): {rate:.2f} steps/s, startup {run['startup_s']:.1f} s, total {run['total_s']:.1f} s")
    ray.shutdown()
    return result


# ---- 3. + 4. training and reconstruction ---------------------------------------------------------
def steps_for_budget(config: TokenizerConfig, batch: int, minutes: float, max_steps: int, threads: int) -> tuple[int, float]:
    """Training steps that fit ``minutes`` here: time a few 49-frame steps now (the machine is shared, so
    the rate of the moment decides), keep 10% for evaluation. Returns (steps, seconds per step)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VQVAE(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, WINDOW, 24, 3) * 0.1
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        _, losses, _ = model(x)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[2:]))
    return int(min(max_steps, max(50, 0.9 * minutes * 60 / per_step))), per_step


def train_and_eval(name: str, model: str | dict, steps: int, batch: int, threads: int, train_clips, heldout,
                   real: dict[str, np.ndarray], out: Path) -> dict[str, Any]:
    torch.set_num_threads(threads)
    lr2_steps = max(1, steps // 5)
    cfg = TokenizerTrainConfig(
        model=model, backend="local", use_gpu=False, steps_lr1=steps - lr2_steps, steps_lr2=lr2_steps,
        lr1=1e-3, lr2=1e-4, batch_size=batch, checkpoint_every=max(100, steps // 4), keep_checkpoints=1,
        log_every=max(10, steps // 20), windows=WindowConfig(lengths=(33, 49), strides=(1, 2)), resume=False,
    )
    log(f"training {name}: {steps} steps, batch {batch}, {threads} thread(s)")
    run_dir = out / f"train_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)  # resume=False still evaluates the newest checkpoint found there
    started = time.perf_counter()
    result = train_tokenizer(train_clips, None, cfg, run_dir, log=lambda m: None, heldout=heldout)
    train_s = time.perf_counter() - started
    model_nn, normalizer, _ = load_tokenizer(result.checkpoint)
    per_video = {}
    for vid, joints in real.items():
        windows = np.stack(tile_windows(joints, WINDOW))
        _, mpjpe = tokenize_windows(model_nn, normalizer, {WINDOW: windows}, batch_size=16)
        static = float(np.linalg.norm(windows - windows[:, :1], axis=-1).mean()) * 1000.0
        per_video[vid] = {"frames": int(len(joints)), "windows": int(len(windows)), "mpjpe_mm": mpjpe,
                          "static_mm": static}
    counts = np.array([v["windows"] for v in per_video.values()], dtype=float)
    mp = np.array([v["mpjpe_mm"] for v in per_video.values()])
    row = {
        "name": name, "config": model if isinstance(model, dict) else getattr(TokenizerConfig, model)().to_dict(),
        "params": count_parameters(model_nn), "steps": steps, "batch": batch, "threads": threads,
        "train_s_incl_eval": train_s, "heldout_mpjpe_mm": result.heldout_mpjpe_mm,
        "heldout_windows": result.heldout_windows, "active_code_share": result.active_code_share,
        "final_loss": result.loss_curve[-1] if result.loss_curve else None,
        "real": per_video, "real_mean_mm": float(mp.mean()),
        "real_window_weighted_mm": float((mp * counts).sum() / counts.sum()),
        "real_static_mean_mm": float(np.mean([v["static_mm"] for v in per_video.values()])),
        "load": load_average(),
    }
    log(f"{name}: held-out {row['heldout_mpjpe_mm']:.1f} mm, real mean {row['real_mean_mm']:.1f} mm, "
        f"{train_s / 60:.1f} min")
    torch.set_num_threads(1)
    return row


def check_roundtrip(real: dict[str, np.ndarray]) -> None:
    """Guard against a unit slip before a long run: real joints are (T, 24, 3) metres, people 0.3-10 m away."""
    vid, joints = next(iter(real.items()))
    assert joints.shape[1:] == (24, 3) and 0.3 < np.abs(joints[..., 2]).mean() < 10, f"{vid}: not metres?"


# ---- Markdown ------------------------------------------------------------------------------------
def to_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "## 4DMoT tokenizer: throughput, Ray Train scaling, reconstruction",
        "",
        "- Commands: " + ", then ".join(f"`{c}`" for c in res.get("commands", [res.get("command", "?")])),
        f"- Machine: {m['machine']}, {m['cores']} cores, {m['memory']}, no GPU; Python {m['python']}, torch {m['torch']} (CPU).",
        f"- Date: {res['date']}. The 2 cores were shared with other work (load average {m['load_start']:.1f} at the start, "
        f"{res.get('load_end', float('nan')):.1f} at the end; per-row values below), so absolute numbers are low and noisy; "
        "rows inside one table were measured side by side in one run.",
        f"- Total wall time: {res.get('total_min', float('nan')):.1f} min.",
        "",
    ]
    if "throughput" in res:
        rows = res["throughput"]
        batch = rows[0]["batch"]
        lines += [
            f"### Encode / decode throughput (CPU, {batch} windows of {WINDOW} frames per call, median of repeats)",
            "",
            "Encode = normalise + encoder + nearest-code search; decode = codebook lookup + decoder + un-normalise. "
            "full() has randomly initialised weights of the real size (timing does not depend on their values).",
            "",
            "| config | trainable params | torch threads | encode frames/s | x real time (30 fps) | decode frames/s | x real time | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(f"| {r['config']}() | {r['params']:,} | {r['threads']} | {r['encode_fps']:.0f} | "
                         f"{r['encode_fps'] / REAL_TIME_FPS:.1f} | {r['decode_fps']:.0f} | "
                         f"{r['decode_fps'] / REAL_TIME_FPS:.1f} | {r['load']:.1f} |")
        lines.append("")
    if "ray" in res:
        ray_res = res["ray"]
        lines += [
            f"### Ray Train: tiny() with 1 vs 2 CPU workers ({ray_res['steps']} steps, {ray_res['batch_per_worker']} "
            f"windows of {WINDOW} frames per worker per step, DDP)",
            "",
            f"Local Ray start (once, before both runs): {ray_res['ray_init_s']:.1f} s. Steps/s from the times of the "
            f"checkpoints written every {ray_res['every']} steps (after the first); startup = time to the first step "
            "(Ray Train worker group, process group, model build); 'after' = final evaluation and shutdown.",
            "",
            "| workers | steps/s | windows/s (global) | speed-up (windows/s) | startup s | after training s | total s | load |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        base = ray_res["runs"][0]["windows_per_s"]
        for r in ray_res["runs"]:
            lines.append(f"| {r['workers']} | {r['steps_per_s']:.2f} | {r['windows_per_s']:.1f} | "
                         f"{r['windows_per_s'] / base:.2f} | {r['startup_s']:.1f} | {r['after_training_s']:.1f} | "
                         f"{r['total_s']:.1f} | {r['load']:.1f} |")
        lines += ["", "Two workers on two shared cores each get one core: the speed-up is bounded by the cores, "
                  "not by the code; on a cluster each worker would have its own.", ""]
    trained = [res[k] for k in ("train_tiny", "train_larger_budget", "train_larger") if k in res]
    if trained:
        data = res["data"]
        lines += [
            "### Reconstruction MPJPE (mm) after training on procedural motions",
            "",
            f"Training data: {data['train_clips']} procedural SMPL clips ({data['kinds']} kinds x {data['train_seeds']} "
            f"seeds, {data['frames']} frames at 30 fps, random tempo 0.8-1.25 and amplitude 0.7-1.2); held out: "
            f"{data['heldout_clips']} clips of other seeds, tiled into {WINDOW}-frame windows. Local backend, AdamW lr 1e-3 "
            "for 80% of the steps then 1e-4, windows of 33/49 frames at stride 1/2 with the App. A.2 scale/shift "
            "augmentation, paper representation (first frame subtracted), global per-axis statistics of the training clips.",
            "",
            "Steps: a time budget at the training speed probed just before the run (the machine was shared), "
            "or a fixed count; the 'steps' column says which.",
            "",
            "| tokenizer | channels | code dim x codebook | trainable params | steps x batch | threads | train time (min) | held-out synthetic MPJPE | active codes | real NLF mean MPJPE |",
            "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in trained:
            c = r["config"]
            lines.append(f"| {r['name']} | {tuple(c['channels'])}, {c['blocks_per_stage']} blocks/stage | "
                         f"{c['code_dim']} x {c['codebook_size']} | {r['params']:,} | {r['steps']} x {r['batch']} "
                         f"({'budget ' + format(r['budget_min'], 'g') + ' min' if r.get('budget_min') else 'fixed'}) | "
                         f"{r['threads']} | {r['train_s_incl_eval'] / 60:.1f} | {r['heldout_mpjpe_mm']:.1f} | "
                         f"{r['active_code_share']:.0%} | {r['real_mean_mm']:.1f} |")
        lines += ["", "Train time includes the held-out evaluation and codebook analytics (a few seconds).", ""]
        vids = list(trained[-1]["real"])
        lines += [
            "### Real NLF motions (never trained on): reconstruction MPJPE per video (mm)",
            "",
            f"`../shared/real/mtvcrafter-samples/nlf_joints_mm.npz` (mm -> m), non-overlapping {WINDOW}-frame windows. "
            "'no motion' repeats each window's first frame: the error of a tokenizer that ignores the motion.",
            "",
            "| video | frames | windows | no motion | " + " | ".join(r["name"] for r in trained) + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in trained) + " |",
        ]
        for v in vids:
            first = trained[-1]["real"][v]
            lines.append(f"| {v} | {first['frames']} | {first['windows']} | {first['static_mm']:.1f} | "
                         + " | ".join(f"{r['real'][v]['mpjpe_mm']:.1f}" for r in trained) + " |")
        lines.append(f"| mean over videos | | | {trained[-1]['real_static_mean_mm']:.1f} | "
                     + " | ".join(f"**{r['real_mean_mm']:.1f}**" for r in trained) + " |")
        lines.append("| mean over windows | | | | " + " | ".join(f"{r['real_window_weighted_mm']:.1f}" for r in trained) + " |")
        best = min(r["real_mean_mm"] for r in trained)
        lines += [
            "",
            "Context (published, other data; not a like-for-like bar):",
            "",
            "| tokenizer | data | MPJPE (mm) |",
            "| --- | --- | ---: |",
        ]
        for name, ds, value in ANCHORS:
            lines.append(f"| {name} | {ds} | {value} |")
        lines.append(f"| ours, best above, trained on procedural motions only | 5 real NLF dance videos | {best:.1f} |")
        verdict = "meets" if best <= 20.0 else "misses"
        lines += [
            "",
            f"Target 20 mm on real motion: {verdict} it ({best:.1f} mm). The HumanML3D numbers are on AMASS mocap "
            "retargeted to one skeleton, with tokenizers trained on that data; ours are on camera-space joints that "
            "NLF estimated from video (the dancers' own bone lengths), with tokenizers that never saw real motion: "
            "the rows differ in data, skeleton and training.",
            "",
        ]
    if res.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast pass: tiny batches and few steps")
    parser.add_argument("--out", default=None, help="folder for JSON and training runs")
    parser.add_argument("--md", default=None, help="Markdown results file")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the saved JSON")
    parser.add_argument("--sections", default="throughput,ray,train", help="comma-separated subset")
    parser.add_argument("--tiny-minutes", type=float, default=7.0, help="training budget of tiny()")
    parser.add_argument("--larger-minutes", type=float, default=17.0, help="training budget of the larger config")
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--larger-steps", type=int, default=0, help="fixed steps for the larger config (0: by budget)")
    parser.add_argument("--merge", action="store_true", help="update the saved JSON instead of starting a new one")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--train-seeds", type=int, default=24)
    parser.add_argument("--ray-steps", type=int, default=40)
    parser.add_argument("--mix-minutes", type=float, default=12.0, help="real study: budget of tiny() on mixed motions")
    parser.add_argument("--mix-steps", type=int, default=0, help="real study: fixed steps on mixed motions (0: by budget)")
    parser.add_argument("--longer-steps", type=int, default=1200, help="real study: extra steps of real-longer")
    parser.add_argument("--mix-clips", type=int, default=168, help="real study: mixed procedural clips")
    parser.add_argument("--lovo-minutes", type=float, default=2.5, help="real study: fine-tuning budget per left-out video")
    parser.add_argument("--baseline-checkpoint", default="bench/out/tokenizer/train_tiny()/checkpoints",
                        help="real study: tiny() trained on the demo kinds (section 3); trained anew if absent")
    args = parser.parse_args()
    # absolute: Ray Train workers run in their own working directory (a relative out_dir lands there)
    out = Path(args.out or ("bench/out/tokenizer_quick" if args.quick else "bench/out/tokenizer")).resolve()
    md = Path(args.md or ("bench/out/tokenizer_quick.md" if args.quick else "bench/results/tokenizer.md"))
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "tokenizer.json"
    if args.report_only:
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(to_markdown(json.loads(json_path.read_text())))
        print(f"wrote {md}")
        return

    q = args.quick
    started = time.perf_counter()
    command = "python " + " ".join(["bench/bench_tokenizer.py", *sys.argv[1:]])
    res: dict[str, Any] = {"commands": [command], "date": str(date.today()), "machine": machine_info()}
    if args.merge and json_path.is_file():
        previous = json.loads(json_path.read_text())
        previous["commands"] = previous.get("commands", [previous.get("command", "?")]) + [command]
        previous["total_min"] = previous.get("total_min", 0.0)
        res = previous
    earlier_min = res.get("total_min", 0.0) if args.merge else 0.0

    def save() -> None:
        res["load_end"] = load_average()
        res["total_min"] = earlier_min + (time.perf_counter() - started) / 60
        json_path.write_text(json.dumps(res, indent=1))

    sections = set(args.sections.split(","))
    if "real" in sections:
        run_real_study(args, out, command)
        return
    if "real-ceiling" in sections:
        run_real_ceiling(args, out, command)
        return
    if "real-longer" in sections:
        run_real_longer(args, out, command)
        return
    if "train" in sections:
        sections |= {"tiny", "larger"}
    torch.set_num_threads(1)
    if "throughput" in sections:
        res["throughput"] = bench_throughput(batch=2 if q else 8, reps=1 if q else 3)
        save()
    if "ray" in sections:
        res["ray"] = bench_ray(steps=6 if q else args.ray_steps, every=2 if q else 5, batch=4 if q else 16, out=out)
        save()
    if sections & {"tiny", "larger"}:
        real = real_motions()
        check_roundtrip(real)
        seeds = 2 if q else args.train_seeds
        frames = 100 if q else 150
        train_clips = procedural_clips(range(seeds), frames)
        heldout = procedural_clips(range(1000, 1001 if q else 1003), frames)
        res["data"] = {"train_clips": len(train_clips), "heldout_clips": len(heldout), "kinds": len(MOTIONS),
                       "train_seeds": seeds, "frames": frames}
        budgets = {"tiny()": ("tiny", TokenizerConfig.tiny(), args.tiny_minutes, 0),
                   "larger": (LARGER.to_dict(), LARGER, args.larger_minutes, args.larger_steps)}
        for key, (name, (model, config, minutes, fixed)) in zip(("train_tiny", "train_larger"), budgets.items()):
            if key.split("_")[1] not in sections:
                continue
            batch = 4 if q else args.train_batch
            if q:
                steps, per_step, minutes = 6, float("nan"), None
            elif fixed:
                steps, per_step, minutes = fixed, float("nan"), None
            else:
                steps, per_step = steps_for_budget(config, batch, minutes, args.max_steps, args.train_threads)
                log(f"{name}: {per_step:.2f} s per probe step -> {steps} steps for {minutes} min")
            res[key] = train_and_eval(name, model, steps, batch, args.train_threads, train_clips, heldout, real, out)
            res[key].update(budget_min=minutes, probe_s_per_step=per_step)
            save()
    save()
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(to_markdown(res))
    log(f"wrote {json_path} and {md} ({res['total_min']:.1f} min)")


# ---- 5. real-motion study ----------------------------------------------------------------------
REAL_AUGMENT = {"max_yaw": 0.5, "max_bone_scale": 0.1, "max_drift": 0.2}
LOVO_PROCEDURAL_CLIPS = 24


def _windows(clip: np.ndarray) -> np.ndarray:
    return np.stack(tile_windows(clip, WINDOW))


@torch.no_grad()
def _reconstruct(model, normalizer, windows: np.ndarray, quantize: bool = True) -> np.ndarray:
    joints = torch.from_numpy(windows)
    latents = model.encode_latents(normalizer(joints))
    if quantize and model.vq is not None:
        latents = model.codes_to_vectors(model.vq(latents, update_ema=False).ids)
    return normalizer.inverse(model.decode_latents(latents), first_frame=joints[:, 0]).numpy()


def _mm(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=-1).mean()) * 1000.0


def diagnose_video(model, normalizer, joints: np.ndarray) -> dict[str, float]:
    """Where a tokenizer's error on one real motion comes from (all mm, non-overlapping 49-frame windows)."""
    from scipy.signal import savgol_filter

    w = _windows(joints)
    r = _reconstruct(model, normalizer, w)
    rel = lambda x: x - x[:, :, :1]  # noqa: E731  (root-relative)
    still = (joints - joints[:, :1] + joints[:1, :1]).astype(np.float32)  # pelvis held at its first position
    smooth = savgol_filter(joints, 7, 2, axis=0).astype(np.float32)  # NLF per-frame jitter removed
    ws = _windows(smooth)
    x = normalizer(torch.from_numpy(w)).numpy()
    return {
        "frames": int(len(joints)), "windows": int(len(w)),
        "static_mm": _mm(np.repeat(w[:, :1], w.shape[1], axis=1), w),
        "mpjpe_mm": _mm(r, w),
        "root_relative_mm": _mm(rel(r), rel(w)),
        "root_mm": _mm(r[:, :, 0], w[:, :, 0]),
        "root_still_mm": _mm(_reconstruct(model, normalizer, _windows(still)), _windows(still)),
        "smoothed_mm": _mm(_reconstruct(model, normalizer, ws), ws),
        "jitter_floor_mm": _mm(smooth, joints),
        "continuous_mm": _mm(_reconstruct(model, normalizer, w, quantize=False), w),
        "repr_p99": np.percentile(np.abs(x), 99, axis=(0, 1, 2)).round(2).tolist(),
        "displacement_p50_mm": float(np.median(np.linalg.norm(w - w[:, :1], axis=-1))) * 1000.0,
    }


def diagnose_data(clips: list[np.ndarray], normalizer) -> dict[str, Any]:
    w = np.concatenate([_windows(c) for c in clips])
    x = normalizer(torch.from_numpy(w)).numpy()
    return {"repr_p99": np.percentile(np.abs(x), 99, axis=(0, 1, 2)).round(2).tolist(),
            "displacement_p50_mm": float(np.median(np.linalg.norm(w - w[:, :1], axis=-1))) * 1000.0}


def _train(name: str, clips, heldout, steps: int, out: Path, windows: WindowConfig, init: str = "",
           lr1: float = 1e-3) -> tuple[Path, float, float]:
    """Train tiny() locally; returns (checkpoint, minutes, held-out MPJPE)."""
    lr2_steps = max(1, steps // 5)
    cfg = TokenizerTrainConfig(
        model="tiny", backend="local", use_gpu=False, steps_lr1=steps - lr2_steps, steps_lr2=lr2_steps, lr1=lr1,
        lr2=lr1 / 10, batch_size=16, checkpoint_every=steps, keep_checkpoints=1, log_every=max(10, steps // 20),
        windows=windows, resume=False, init_checkpoint=init,
    )
    run_dir = out / f"real_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    result = train_tokenizer(clips, None, cfg, run_dir, log=lambda m: None, heldout=heldout)
    return result.checkpoint, (time.perf_counter() - started) / 60, result.heldout_mpjpe_mm


def _evaluate(name: str, checkpoint: Path, real: dict[str, np.ndarray], extra: dict[str, Any]) -> dict[str, Any]:
    model, normalizer, _ = load_tokenizer(checkpoint)
    per_video = {v: diagnose_video(model, normalizer, j) for v, j in real.items()}
    keys = [k for k in next(iter(per_video.values())) if k.endswith("_mm")]
    mean = {k: float(np.mean([p[k] for p in per_video.values()])) for k in keys}
    row = {"name": name, "checkpoint": str(checkpoint), "real": per_video, "mean": mean, "load": load_average(),
           **extra}
    log(f"{name}: real mean {mean['mpjpe_mm']:.1f} mm (root-relative {mean['root_relative_mm']:.1f})")
    return row


def run_real_study(args, out: Path, command: str) -> None:
    """Section 5; writes out/tokenizer_real.json and bench/results/tokenizer_real.md."""
    from pipeline.core.checkpoints import latest_checkpoint
    from pipeline.synthetic.motion_mix import mixed_motions

    started = time.perf_counter()
    json_path = out / "tokenizer_real.json"
    md = Path(args.md or "bench/results/tokenizer_real.md")
    res: dict[str, Any] = {"commands": [command], "date": str(date.today()), "machine": machine_info(), "rows": []}

    def save() -> None:
        res["load_end"] = load_average()
        res["total_min"] = (time.perf_counter() - started) / 60
        json_path.write_text(json.dumps(res, indent=1))
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(real_markdown(res))

    torch.set_num_threads(args.train_threads)
    real = real_motions()
    check_roundtrip(real)
    heldout = procedural_clips(range(1000, 1003), 150)
    paper_windows = WindowConfig(lengths=(33, 49), strides=(1, 2))
    camera_windows = WindowConfig(lengths=(33, 49), strides=(1, 2), **REAL_AUGMENT)

    # (a) the section-3 tokenizer: demo kinds, paper augmentation
    baseline = latest_checkpoint(Path(args.baseline_checkpoint))
    if baseline is None:
        steps, _ = steps_for_budget(TokenizerConfig.tiny(), 16, args.tiny_minutes, args.max_steps, args.train_threads)
        baseline, minutes, held = _train("demo_kinds", procedural_clips(range(args.train_seeds), 150), heldout, steps,
                                         out, paper_windows)
        extra = {"steps": steps, "train_min": minutes, "heldout_mpjpe_mm": held, "reused": False}
    else:
        info = json.loads((baseline.parent / "train_result.json").read_text())
        extra = {"steps": load_checkpoint_step(baseline), "train_min": None,
                 "heldout_mpjpe_mm": info["heldout_mpjpe_mm"], "reused": True}
    res["rows"].append(_evaluate("demo kinds (section 3)", baseline, real, {"data": "7 demo kinds x 24 seeds",
                                                                           "augment": "paper", **extra}))
    model, normalizer, _ = load_tokenizer(baseline)
    res["data_ranges"] = {"demo kinds": diagnose_data(procedural_clips(range(4), 150), normalizer)}
    save()

    # (b) mixed procedural motion + camera-space augmentation
    t0 = time.perf_counter()
    mix = mixed_motions(args.mix_clips, 150, seed=0)
    res["mix_generation_s"] = time.perf_counter() - t0
    res["data_ranges"]["mixed"] = diagnose_data(mix[:40], normalizer)
    log(f"{len(mix)} mixed clips in {res['mix_generation_s']:.0f} s")
    if args.mix_steps:
        steps, per_step = args.mix_steps, float("nan")
    else:
        steps, per_step = steps_for_budget(TokenizerConfig.tiny(), 16, args.mix_minutes, args.max_steps, args.train_threads)
    mixed_ckpt, minutes, held = _train("mixed", mix, heldout, steps, out, camera_windows)
    res["rows"].append(_evaluate("mixed motions + camera augmentation", mixed_ckpt, real, {
        "data": f"{len(mix)} motion_mix clips (25% demo kinds)", "augment": "paper + " + ", ".join(
            f"{k}={v}" for k, v in REAL_AUGMENT.items()), "steps": steps, "train_min": minutes,
        "heldout_mpjpe_mm": held, "probe_s_per_step": per_step, "reused": False}))
    save()

    # (c) leave one video out: fine-tune (b) on the other 4 real videos + procedural clips, test the 5th
    steps, per_step = steps_for_budget(TokenizerConfig.tiny(), 16, args.lovo_minutes, args.max_steps, args.train_threads)
    folds = {}
    for vid in real:
        train = [j for v, j in real.items() if v != vid] + mix[:LOVO_PROCEDURAL_CLIPS]
        ckpt, minutes, _ = _train(f"lovo_{vid}", train, [real[vid]], steps, out, camera_windows,
                                  init=str(mixed_ckpt), lr1=3e-4)
        row = _evaluate(f"lovo {vid}", ckpt, {vid: real[vid]}, {"steps": steps, "train_min": minutes})
        folds[vid] = {**row["real"][vid], "train_min": minutes}
        save()
    res["lovo"] = {"steps": steps, "probe_s_per_step": per_step, "procedural_clips": LOVO_PROCEDURAL_CLIPS,
                   "folds": folds, "load": load_average(),
                   "mean": {k: float(np.mean([f[k] for f in folds.values()]))
                            for k in next(iter(folds.values())) if k.endswith("_mm")}}
    save()
    log(f"wrote {json_path} and {md} ({res['total_min']:.1f} min)")


def run_real_longer(args, out: Path, command: str) -> None:
    """Added to a finished real study: the mixed-motion tokenizer trained ``--longer-steps`` more steps
    (same data and augmentation, lr 1e-3 then 1e-4 for the last 20%), to see whether steps still pay."""
    from pipeline.synthetic.motion_mix import mixed_motions

    started = time.perf_counter()
    json_path = out / "tokenizer_real.json"
    md = Path(args.md or "bench/results/tokenizer_real.md")
    res = json.loads(json_path.read_text())
    res["commands"].append(command)
    earlier = res.get("total_min", 0.0)
    torch.set_num_threads(args.train_threads)
    real = real_motions()
    mixed = next(r for r in res["rows"] if r["name"].startswith("mixed"))
    mix = mixed_motions(args.mix_clips, 150, seed=0)
    heldout = procedural_clips(range(1000, 1003), 150)
    ckpt, minutes, held = _train("mixed_longer", mix, heldout, args.longer_steps, out,
                                 WindowConfig(lengths=(33, 49), strides=(1, 2), **REAL_AUGMENT),
                                 init=mixed["checkpoint"])
    total = mixed["steps"] + args.longer_steps
    res["rows"].append(_evaluate(f"mixed, continued to {total} steps", ckpt, real, {
        "data": mixed["data"], "augment": mixed["augment"], "steps": total, "train_min": minutes,
        "heldout_mpjpe_mm": held, "reused": False}))
    res["load_end"] = load_average()
    res["total_min"] = earlier + (time.perf_counter() - started) / 60
    json_path.write_text(json.dumps(res, indent=1))
    md.write_text(real_markdown(res))
    log(f"longer: real mean {res['rows'][-1]['mean']['mpjpe_mm']:.1f} mm; wrote {md}")


def video_fps(video_id: str) -> float:
    """Frame rate of a real sample video (the joints have one frame per video frame)."""
    import av

    with av.open(str(REAL_JOINTS.parent / f"{video_id}.mp4")) as container:
        return float(container.streams.video[0].average_rate)


def resample(joints: np.ndarray, fps: float, target: float) -> np.ndarray:
    """Joints (T, 24, 3) at ``fps`` linearly resampled in time to ``target`` fps."""
    from scipy.interpolate import interp1d

    t = np.arange(len(joints)) / fps
    new_t = np.arange(0.0, t[-1] + 1e-9, 1.0 / target)
    return interp1d(t, joints, axis=0)(new_t).astype(np.float32)


def window_diagnostics(checkpoint: Path, real: dict[str, np.ndarray], fps: dict[str, float]) -> dict[str, float]:
    """Mean real MPJPE (mm) over the videos for other window lengths and with every video resampled to 30 fps."""
    model, normalizer, _ = load_tokenizer(checkpoint)
    out = {}
    for length in (33, 49, 97):
        errs = [_mm(_reconstruct(model, normalizer, np.stack(tile_windows(j, length))), np.stack(tile_windows(j, length)))
                for j in real.values() if len(j) >= length]
        out[f"window {length}"] = float(np.mean(errs))
    errs = []
    for vid, j in real.items():
        w = _windows(resample(j, fps[vid], REAL_TIME_FPS))
        errs.append(_mm(_reconstruct(model, normalizer, w), w))
    out["window 49, all at 30 fps"] = float(np.mean(errs))
    return out


def run_real_ceiling(args, out: Path, command: str) -> None:
    """Added to a finished real study: the leave-one-out fine-tuning with all 5 videos in the training set.

    Not a result on unseen motion: a ceiling. It says how far the same steps get when the tested dancer
    was trained on, which separates "cannot generalise to a new dancer" from "cannot fit real motion yet".
    """
    from pipeline.synthetic.motion_mix import mixed_motions

    started = time.perf_counter()
    json_path = out / "tokenizer_real.json"
    md = Path(args.md or "bench/results/tokenizer_real.md")
    res = json.loads(json_path.read_text())
    res["commands"].append(command)
    earlier = res.get("total_min", 0.0)
    torch.set_num_threads(args.train_threads)
    real = real_motions()
    mixed_ckpt = Path(next(r["checkpoint"] for r in res["rows"] if r["name"].startswith("mixed")))
    mix = mixed_motions(LOVO_PROCEDURAL_CLIPS, 150, seed=0)  # the first clips of the study's mix: the same ones
    steps = res["lovo"]["steps"]
    ckpt, minutes, _ = _train("seen_all", list(real.values()) + mix, list(real.values()), steps, out,
                              WindowConfig(lengths=(33, 49), strides=(1, 2), **REAL_AUGMENT), init=str(mixed_ckpt),
                              lr1=3e-4)
    row = _evaluate("all 5 videos trained on (ceiling)", ckpt, real, {"steps": steps, "train_min": minutes})
    res["ceiling"] = {"steps": steps, "train_min": minutes, "mean": row["mean"], "real": row["real"],
                      "load": row["load"]}
    fps = {vid: video_fps(vid) for vid in real}
    res["fps"] = fps
    res["window_diagnostics"] = {r["name"]: window_diagnostics(Path(r["checkpoint"]), real, fps) for r in res["rows"]}
    res["load_end"] = load_average()
    res["total_min"] = earlier + (time.perf_counter() - started) / 60
    json_path.write_text(json.dumps(res, indent=1))
    md.write_text(real_markdown(res))
    log(f"ceiling: real mean {row['mean']['mpjpe_mm']:.1f} mm; wrote {md}")


def load_checkpoint_step(path: Path) -> int:
    from pipeline.core.checkpoints import load_checkpoint

    return load_checkpoint(path).step


DIAG_COLUMNS = [("static_mm", "no motion"), ("mpjpe_mm", "MPJPE"), ("root_relative_mm", "root-relative"),
                ("root_mm", "root only"), ("root_still_mm", "input root held still"),
                ("smoothed_mm", "input smoothed"), ("continuous_mm", "codebook bypassed"),
                ("jitter_floor_mm", "jitter floor")]


def real_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "## 4DMoT on real motion: diagnosis, mixed procedural training, leave-one-video-out",
        "",
        "- Command: " + ", then ".join(f"`{c}`" for c in res["commands"]),
        f"- Machine: {m['machine']}, {m['cores']} cores, {m['memory']}, no GPU; Python {m['python']}, torch {m['torch']} (CPU), "
        "1 torch thread.",
        f"- Date: {res['date']}. Load average {m['load_start']:.1f} at the start, {res.get('load_end', float('nan')):.1f} "
        f"at the end (the 2 cores were shared with other work; per-row values below). Total wall time "
        f"{res.get('total_min', float('nan')):.1f} min.",
        "- Real data: `../shared/real/mtvcrafter-samples/nlf_joints_mm.npz` (mm -> m), non-overlapping 49-frame "
        "windows at each video's own frame rate (00016 and 00017 are 15 fps, 00001 30 fps, 00006 and 00021 about 44 fps).",
        "",
    ]
    rows = res["rows"]
    if rows:
        lines += [
            "### Diagnosis: where the real-motion error comes from (mm, mean over the 5 videos)",
            "",
            "MPJPE = the benchmark number. root-relative = after subtracting each frame's pelvis from both (articulated "
            "pose only); root only = error of the pelvis joint; input root held still = the real motion with its pelvis "
            "pinned to the first frame's position (root travel removed from the input), reconstructed; input smoothed = "
            "the real motion after a 7-frame Savitzky-Golay filter (NLF's per-frame jitter removed), reconstructed and "
            "compared to itself; codebook bypassed = the decoder fed the continuous encoder latents; jitter floor = "
            "distance between the raw and the smoothed joints (what a reconstruction that is as smooth as the filter "
            "would lose at least).",
            "",
            "| tokenizer | data | augmentation | steps | " + " | ".join(t for _, t in DIAG_COLUMNS) + " | held-out synthetic |",
            "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in DIAG_COLUMNS) + " | ---: |",
        ]
        for r in rows:
            lines.append(f"| {r['name']} | {r['data']} | {r['augment']} | {r['steps']} | "
                         + " | ".join(f"{r['mean'][k]:.1f}" for k, _ in DIAG_COLUMNS)
                         + f" | {r['heldout_mpjpe_mm']:.1f} |")
        lines += ["", "Per video (MPJPE / root-relative, mm):", "",
                  "| video | frames | no motion | " + " | ".join(r["name"] for r in rows)
                  + (" | leave-one-out |" if res.get("lovo") else " |"),
                  "| --- | ---: | ---: | " + " | ".join("---:" for _ in rows) + (" | ---: |" if res.get("lovo") else " |")]
        for vid, first in rows[0]["real"].items():
            cells = [f"{r['real'][vid]['mpjpe_mm']:.1f} / {r['real'][vid]['root_relative_mm']:.1f}" for r in rows]
            if res.get("lovo") and vid in res["lovo"]["folds"]:
                f = res["lovo"]["folds"][vid]
                cells.append(f"{f['mpjpe_mm']:.1f} / {f['root_relative_mm']:.1f}")
            lines.append(f"| {vid} | {first['frames']} | {first['static_mm']:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    if res.get("data_ranges"):
        lines += ["Normalised representation (first frame subtracted, divided by the section-3 tokenizer's per-axis std): "
                  "99th percentile of |value| per axis (x, y, z), and the median joint displacement from a window's "
                  "first frame:", "",
                  "| data | p99 x | p99 y | p99 z | median displacement (mm) |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, d in res["data_ranges"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in d["repr_p99"]) + f" | {d['displacement_p50_mm']:.0f} |")
        if rows:
            for vid, d in rows[0]["real"].items():
                lines.append(f"| real {vid} | " + " | ".join(f"{v:.2f}" for v in d["repr_p99"])
                             + f" | {d['displacement_p50_mm']:.0f} |")
        lines.append("")
    if res.get("window_diagnostics"):
        diag = res["window_diagnostics"]
        cols = list(next(iter(diag.values())))
        lines += ["Window length and frame rate (mean real MPJPE, mm; training used 33- and 49-frame windows at "
                  "stride 1 and 2 of 30 fps clips; '30 fps' = every video linearly resampled to 30 fps first; "
                  "video frame rates: " + ", ".join(f"{v} {f:.0f}" for v, f in res.get("fps", {}).items()) + "):", "",
                  "| tokenizer | " + " | ".join(cols) + " |", "| --- | " + " | ".join("---:" for _ in cols) + " |"]
        for name, d in diag.items():
            lines.append(f"| {name} | " + " | ".join(f"{d[c]:.1f}" for c in cols) + " |")
        lines.append("")
    if res.get("lovo"):
        lv = res["lovo"]
        mean = lv["mean"]
        lines += [
            f"### Leave one video out ({lv['steps']} fine-tuning steps per fold, batch 16, load {lv['load']:.1f})",
            "",
            f"Each fold starts from the mixed-motion tokenizer above and fine-tunes it (lr 3e-4, then 3e-5 for the last "
            f"20%) on the other 4 real videos plus {lv['procedural_clips']} of its procedural clips, with the same "
            "augmentation; the tested video is never trained on.",
            "",
            "| | " + " | ".join(t for _, t in DIAG_COLUMNS) + " |",
            "| --- | " + " | ".join("---:" for _ in DIAG_COLUMNS) + " |",
            "| mean over the 5 held-out videos | " + " | ".join(f"{mean[k]:.1f}" for k, _ in DIAG_COLUMNS) + " |",
        ]
        if res.get("ceiling"):
            c = res["ceiling"]["mean"]
            lines.append("| ceiling: all 5 videos trained on, same steps (not unseen motion) | "
                         + " | ".join(f"{c[k]:.1f}" for k, _ in DIAG_COLUMNS) + " |")
        lines.append("")
    if res.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
