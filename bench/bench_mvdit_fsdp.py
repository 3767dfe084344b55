"""FSDP2 on CPU ranks (App. A.2's ZeRO-2 as `pipeline.mvdit.sharding`): the tiny MV-DiT on 1 vs 2 gloo ranks.

    PYTHONPATH=. .venv/bin/python bench/bench_mvdit_fsdp.py [--steps 30] [--out DIR]

The same global batch (4 windows of 33 frames at 48 x 64) per step: 1 rank x 4 windows, then 2 ranks x 2,
each rank a spawned process with one torch thread, through the real training loop (`train_loop`,
``strategy="fsdp"``: one FSDP2 unit per block, ``reshard_after_forward=False``, sharded DCP checkpoint at the
end and its consolidated export). Steps/s from rank 0's per-step log times (first step left out: warm-up);
the loss is the mean of the last 10 steps' losses (the same data distribution, different draws per rank, so
the same loss up to noise, not bit for bit: tests/test_mvdit_sharding.py checks one step bit for bit).
Measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def clips(n: int = 4, frames: int = 49, height: int = 48, width: int = 64) -> list:
    """Synthetic clips: a bright square following the pelvis (as tests/test_train_mvdit.py)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        path = np.cumsum(rng.normal(0, 0.02, (frames, 2)), axis=0)
        joints = rng.normal(0, 0.2, (1, 24, 3)).repeat(frames, 0).astype(np.float32)
        joints[:, :, :2] += path[:, None]
        video = np.full((frames, height, width, 3), 40, np.uint8)
        for t in range(frames):
            cx, cy = np.clip(path[t] * 40 + [width / 2, height / 2], 6, [width - 6, height - 6]).astype(int)
            video[t, cy - 6: cy + 6, cx - 6: cx + 6] = (220, 180, 60)
        out.append((video, joints))
    return out


def _rank(rank: int, world: int, port: int, job: dict, out: str) -> None:
    import torch.distributed as dist

    from pipeline.mvdit.loop import train_loop

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    stamps = []
    train_loop(job, rank=rank, log=lambda line: stamps.append((time.perf_counter(), line)))
    if rank == 0:
        Path(out).write_text(json.dumps([[t, line] for t, line in stamps]))
    dist.destroy_process_group()


def run(world: int, batch: int, steps: int, tokenizer: str, root: Path) -> dict:
    import socket

    import torch.multiprocessing as mp

    from pipeline.core.checkpoints import load_checkpoint
    from pipeline.mvdit.config import MVDiTTrainConfig
    from pipeline.mvdit.train import prepare_job

    cfg = MVDiTTrainConfig.tiny(strategy="fsdp", steps=steps, batch_size=batch, buckets=((48, 64),),
                                checkpoint_every=steps, log_every=1, resume=False)
    job = prepare_job(clips(), tokenizer, None, cfg, root / f"w{world}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stamps_file = root / f"w{world}.json"
    started = time.perf_counter()
    mp.start_processes(_rank, args=(world, port, job, str(stamps_file)), nprocs=world, start_method="spawn")
    wall = time.perf_counter() - started
    stamps = [(t, line) for t, line in json.loads(stamps_file.read_text()) if line.startswith("step ")]
    (t1, _), (tn, _) = stamps[0], stamps[-1]
    ckpt = load_checkpoint(sorted((root / f"w{world}" / "checkpoints").glob("step_*.safetensors"))[-1])
    losses = [p["loss"] for p in ckpt.extra["loss_curve"]]
    return {"ranks": world, "batch_per_rank": batch, "global_batch": world * batch, "steps": steps,
            "steps_per_s": (len(stamps) - 1) / (tn - t1), "loss_last10": float(np.mean(losses[-10:])),
            "loss_first": losses[0], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    from bench_mvdit import tiny_tokenizer_checkpoint

    torch.set_num_threads(1)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench-fsdp-"))
    tokenizer = tiny_tokenizer_checkpoint(root / "tokenizer")
    rows = [run(1, 4, args.steps, tokenizer, root), run(2, 2, args.steps, tokenizer, root)]
    meta = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}", "load_avg": os.getloadavg()}
    print(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("| ranks | windows per rank | global batch | steps/s | loss (last 10) | loss (step 1) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ranks']} | {r['batch_per_rank']} | {r['global_batch']} | {r['steps_per_s']:.2f} | "
              f"{r['loss_last10']:.4f} | {r['loss_first']:.4f} |")


if __name__ == "__main__":
    main()
