"""Peak host memory of building MV-DiT from a diffusers backbone folder: `pipeline.mvdit.factory` (meta device,
tensors read once and assigned) beside the in-memory path (`MVDiTCogVideoX.from_backbone`: diffusers'
``from_pretrained``, then a randomly initialised MV-DiT, then ``load_state_dict``), each in a fresh process.

    PYTHONPATH=. .venv/bin/python bench/bench_mvdit_loading.py [--layers 4]

The backbone: a CogVideoX transformer at width 1024 (16 heads x 64), ``--layers`` blocks, text-to-video (16
latent channels), saved with ``save_pretrained`` (float32 safetensors). Peak RSS growth from
/proc/self/status (VmHWM reset through /proc/self/clear_refs after the imports). Measured, never asserted
(tests/test_mvdit_factory.py asserts < 1.3x for the factory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEASURE = """
import json, sys, time, torch
torch.set_num_threads(1)
from models.mvdit.cogvideox import MVDiTCogVideoX
from pipeline.mvdit.factory import build_from_backbone

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
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
        proc = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(kwargs), str(folder), how], cwd=REPO,
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


if __name__ == "__main__":
    main()
