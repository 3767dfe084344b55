"""Peak host memory of building MV-DiT from a diffusers backbone folder: `pipeline.mvdit.factory` (meta device,
tensors read once and assigned) beside the in-memory path (`MVDiTCogVideoX.from_backbone`: diffusers'
``from_pretrained``, then a randomly initialised MV-DiT, then ``load_state_dict``), each in a fresh process.

    PYTHONPATH=. .venv/bin/python bench/bench_mvdit_loading.py [--layers 4] [--sharded]

The backbone: a CogVideoX transformer at width 1024 (16 heads x 64), ``--layers`` blocks, text-to-video (16
latent channels), saved with ``save_pretrained`` (float32 safetensors). Peak RSS growth from
/proc/self/status (VmHWM reset through /proc/self/clear_refs after the imports). Measured, never asserted
(tests/test_mvdit_factory.py asserts < 1.3x for the factory).

``--sharded`` adds the FSDP2 load on 2 gloo ranks (2 processes per row, CPU): each rank's peak RSS growth while
building the sharded model, through rank 0 (`factory.build_sharded_from_backbone`: rank 0 reads the folder and
broadcasts, every rank keeps its shards) beside today's way (every rank `build_from_backbone`, then
`shard_fsdp`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RSS = """
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
"""  # peak (VmHWM) and current (VmRSS) resident bytes of the measuring process

MEASURE = """
import json, sys, time, torch
torch.set_num_threads(1)
from models.mvdit.cogvideox import MVDiTCogVideoX
from pipeline.mvdit.factory import build_from_backbone
kwargs, folder, how = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
t = time.perf_counter()
if how == "factory":
    model = build_from_backbone(kwargs, folder)
else:
    model = MVDiTCogVideoX.from_backbone(folder, motion_token_dim=kwargs["motion_token_dim"],
                                         unconditional_frames=kwargs["unconditional_frames"])
seconds = time.perf_counter() - t
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"how": how, "weights_mb": weights / 2**20, "peak_growth_mb": (status("VmHWM:") - before) / 2**20,
                  "ratio": (status("VmHWM:") - before) / weights, "seconds": seconds}))
"""

MEASURE_SHARDED = """
import json, os, sys, time, torch
import torch.distributed as dist
torch.set_num_threads(1)
from pipeline.mvdit.factory import build_from_backbone, build_sharded_from_backbone
from pipeline.mvdit.sharding import shard_fsdp

kwargs, folder, how = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo")
shard = lambda m: shard_fsdp(m, torch.device("cpu"))
dist.barrier()
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
t = time.perf_counter()
if how == "rank0":
    model = build_sharded_from_backbone(kwargs, folder, "cpu", torch.float32, shard)
else:
    model = shard(build_from_backbone(kwargs, folder))
dist.barrier()
seconds = time.perf_counter() - t
full = sum(p.numel() * p.element_size() for p in model.parameters())  # DTensor: the full size
print(json.dumps({"how": how, "rank": dist.get_rank(), "weights_mb": full / 2**20,
                  "peak_growth_mb": (status("VmHWM:") - before) / 2**20, "ratio": (status("VmHWM:") - before) / full,
                  "seconds": seconds}))
dist.destroy_process_group()
"""


def sharded_rows(kwargs: dict, folder: Path) -> list[dict]:
    """Both ways of loading on 2 gloo ranks, each rank a fresh process; one row per (way, rank)."""
    import socket

    rows = []
    for how in ("rank0", "every_rank"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, "-c", RSS + MEASURE_SHARDED, json.dumps(kwargs), str(folder), how],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                       "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                       "MASTER_PORT": str(port)}) for rank in (0, 1)]
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(err[-3000:])
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--sharded", action="store_true", help="also the FSDP2 load on 2 gloo ranks")
    args = parser.parse_args()
    import torch
    from diffusers import CogVideoXTransformer3DModel

    from models.mvdit.cogvideox import MVDiTConfig

    backbone = {**MVDiTConfig.tiny().backbone, "num_attention_heads": 16, "attention_head_dim": 64,
                "in_channels": 16, "out_channels": 16, "time_embed_dim": 512, "text_embed_dim": 256,
                "num_layers": args.layers}
    folder = Path(tempfile.mkdtemp(prefix="bench-loading-"))
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(**backbone).save_pretrained(folder / "transformer")
    size = (folder / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size
    kwargs = MVDiTConfig(backbone={**backbone, "in_channels": 32}, motion_token_dim=64,
                         unconditional_frames=4).model_kwargs()
    rows = []
    for how in ("factory", "from_backbone"):
        proc = subprocess.run([sys.executable, "-c", RSS + MEASURE, json.dumps(kwargs), str(folder), how], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO),
                                                                   "OMP_NUM_THREADS": "1"})
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(json.dumps({"date": str(date.today()), "file_mb": size / 2**20, "cores": os.cpu_count(),
                      "load_avg": os.getloadavg(), "time": time.strftime("%H:%M"), "rows": rows}, indent=1))
    print("| path | weights (MB) | peak RSS growth (MB) | ratio | seconds |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['how']} | {r['weights_mb']:.0f} | {r['peak_growth_mb']:.0f} | {r['ratio']:.2f} | {r['seconds']:.1f} |")
    if args.sharded:
        rows = sharded_rows(kwargs, folder)
        print(json.dumps(rows, indent=1))
        print("| FSDP2 load, 2 ranks | rank | model weights (MB) | peak RSS growth (MB) | x weights | seconds |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['how']} | {r['rank']} | {r['weights_mb']:.0f} | {r['peak_growth_mb']:.0f} | "
                  f"{r['ratio']:.2f} | {r['seconds']:.1f} |")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
