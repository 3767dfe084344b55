"""The GPU check of MV-DiT at full width (issue 13, item 6): one command for the day a GPU is lent.

    .venv/bin/python bench/gpu_check.py --out bench/results/gpu_check.json [--budget-s 420] [--batch 1]
    .venv/bin/python bench/gpu_check.py --out /tmp/gpu_check.json --dry-run   # tiny models on the CPU: the code path

On one CUDA GPU, for MV-DiT-6B (paper layout, 49 x 480 x 720: 17,550 tokens) and MV-DiT-18B (paper layout,
49 x 480 x 832: 20,280 tokens), random weights in bf16 (parameters, gradients and AdamW state in bf16, the
18B backbone frozen as in training), gradient checkpointing per block:

1. training steps (forward + backward + AdamW step) for a growing number of blocks (the motion-block period
   p, then 2p, 4p, ... up to the full depth) until the GPU runs out of memory or ``--budget-s`` is spent; per
   depth: step time (median of ``--steps`` after one warm-up step), the peak of ``torch.cuda`` allocated memory
   over forward + backward above what was allocated before it (activations + gradients), and beside it the
   prediction of `pipeline.mvdit.memory` for the same model, depth, clip and batch (its cached ``LiveBytes``
   measurements under ``FakeTensorMode`` extended to that depth, plus the gradient bytes); the ratio
   measured / predicted;
2. one 50-step sampling run (no grad, motion CFG: 2 branches for the 6B, 3 with text CFG for the 18B) with 2p
   blocks: its time, and per step and per block.

Results go to ``--out`` as JSON and beside it as Markdown (same name, ``.md``). Without CUDA (and without
``--dry-run``) it exits 2 with a message saying so, having written nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.mvdit.cogvideox import MVDiTConfig  # noqa: E402
from models.mvdit.wan import TEXT_TOKENS, MVDiTWanConfig  # noqa: E402
from pipeline.mvdit.memory import (  # noqa: E402
    CLIP_TOKENS,
    GIB,
    latent_shape,
    measure_activations,
    motion_period,
    tokens,
    with_layers,
)

SETTINGS = {  # name -> (full-size config, frames, height, width): the paper settings of pipeline.mvdit.memory
    "MV-DiT-6B": (MVDiTConfig.cogvideox_5b("paper"), 49, 480, 720),
    "MV-DiT-18B": (MVDiTWanConfig.wan_i2v_14b("paper"), 49, 480, 832),
}
CACHED = {"MV-DiT-6B": ("6b", "paper"), "MV-DiT-18B": ("18b", "paper")}  # their rows in memory_measured.json
DRY_SETTINGS = {  # the same classes at toy size, for --dry-run on the CPU
    "MV-DiT-6B (tiny)": (MVDiTConfig.tiny(num_layers=4), 9, 32, 32),
    "MV-DiT-18B (tiny)": (MVDiTWanConfig.tiny(num_layers=8), 9, 32, 32),
}


def inputs(cfg, frames: int, height: int, width: int, batch: int, device: torch.device, dtype: torch.dtype):
    """Random model inputs of one training batch: (args, kwargs, target)."""
    f, h, w = latent_shape(cfg, frames, height, width)
    c = cfg.backbone["out_channels"]
    rand = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    motion = rand(batch, f * cfg.num_joints, cfg.motion_token_dim)
    t = torch.full((batch,), 500, device=device)
    extra = {"mean_joints": np.zeros((cfg.num_joints, 3))}
    if isinstance(cfg, MVDiTWanConfig):
        noisy, ref = rand(batch, c, f, h, w), rand(batch, c, f, h, w)
        extra.update(encoder_hidden_states=rand(batch, TEXT_TOKENS, cfg.backbone["text_dim"]),
                     encoder_hidden_states_image=rand(batch, CLIP_TOKENS, cfg.backbone["image_dim"]))
    else:
        noisy, ref = rand(batch, f, c, h, w), rand(batch, 1, c, h, w)
    return (noisy, ref, motion, t), extra, torch.randn_like(noisy)


def build(cfg, device: torch.device, dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return cfg.build()
    finally:
        torch.set_default_dtype(previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(cfg, frames, height, width, batch, steps, device, dtype) -> dict:
    """Step time and memory of ``steps`` training steps (after one warm-up) of ``cfg``'s depth."""
    model = build(cfg, device, dtype)
    model.enable_gradient_checkpointing()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.99), weight_decay=1e-2)
    args, kwargs, target = inputs(cfg, frames, height, width, batch, device, dtype)
    times, peaks = [], []
    for step in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        start = time.perf_counter()
        pred = model(*args, **kwargs).sample
        torch.nn.functional.mse_loss(pred.float(), target.float()).backward()
        if device.type == "cuda":
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
        opt.step()
        sync(device)
        if step:  # the first step is warm-up (kernels, AdamW state)
            times.append(time.perf_counter() - start)
    result = {"step_s": statistics.median(times), "grad_bytes": sum(p.numel() * p.element_size() for p in trainable),
              "fwd_bwd_peak_bytes": max(peaks) if peaks else None,
              "total_peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}
    del model, opt, args, kwargs, target
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


@torch.no_grad()
def sampling_time(cfg, frames, height, width, steps, device, dtype) -> float:
    """Seconds of ``steps`` sampler steps (model calls only, CFG branches batched as the pipelines do)."""
    model = build(cfg, device, dtype).eval()
    branches = 3 if isinstance(cfg, MVDiTWanConfig) else 2
    args, kwargs, _ = inputs(cfg, frames, height, width, branches, device, dtype)
    model(*args, **kwargs)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        model(*args, **kwargs)
    sync(device)
    seconds = time.perf_counter() - start
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return seconds


def predicted_activations(name: str, cfg, frames: int, height: int, width: int, batch: int) -> int:
    """The memory simulation's activations (gradient checkpointing) for ``cfg``'s depth: from the cached block
    measurements extended linearly (`pipeline.mvdit.memory.activations_at_depth`) when cached and the depth is
    reachable; else measured now (tiny models, shallow depths)."""
    if name in CACHED:
        from pipeline.mvdit.memory import activations_at_depth, load_cache

        model, layout = CACHED[name]
        with torch.device("meta"):
            period = motion_period(cfg.build())
        try:
            return activations_at_depth(load_cache(), model, layout, frames, height, width, batch, True,
                                        cfg.backbone["num_layers"], period)
        except (KeyError, ValueError):
            pass
    return measure_activations(cfg, frames, height, width, batch, True)


def check(settings: dict, device: torch.device, dtype: torch.dtype, batch: int, steps: int, sample_steps: int,
          budget_s: float, log=print) -> list[dict]:
    rows = []
    start = time.time()
    for name, (cfg, frames, height, width) in settings.items():
        depth = cfg.backbone["num_layers"]
        with torch.device("meta"):
            period = motion_period(cfg.build())
        layers = period
        while layers <= depth:
            if time.time() - start > budget_s:
                log(f"{name}: time budget spent before {layers} blocks")
                break
            sub = with_layers(cfg, layers)
            row = {"model": name, "blocks": layers, "frames": frames, "height": height, "width": width,
                   "batch": batch, "tokens": tokens(cfg, frames, height, width)}
            try:
                row.update(train_steps(sub, frames, height, width, batch, steps, device, dtype))
            except torch.cuda.OutOfMemoryError:
                log(f"{name}: {layers} blocks do not fit")
                row["oom"] = True
                rows.append(row)
                torch.cuda.empty_cache()
                break
            row["predicted_activation_bytes"] = predicted_activations(name, sub, frames, height, width, batch)
            predicted = row["predicted_activation_bytes"] + row["grad_bytes"]
            row["predicted_fwd_bwd_bytes"] = predicted
            if row["fwd_bwd_peak_bytes"]:
                row["measured_over_predicted"] = round(row["fwd_bwd_peak_bytes"] / predicted, 3)
            rows.append(row)
            log(json.dumps(row))
            layers = depth if layers < depth < 2 * layers else 2 * layers
        sub = with_layers(cfg, 2 * period)
        seconds = sampling_time(sub, frames, height, width, sample_steps, device, dtype)
        rows.append({"model": name, "blocks": 2 * period, "sampling_steps": sample_steps, "sampling_s": seconds,
                     "per_step_per_block_s": seconds / sample_steps / (2 * period),
                     "full_depth_estimate_s": seconds * depth / (2 * period)})
        log(json.dumps(rows[-1]))
    return rows


def markdown(rows: list[dict], device: str, dtype: torch.dtype) -> str:
    g = lambda n: "" if n is None else f"{n / GIB:.2f}"  # noqa: E731
    lines = [f"Device: {device}. {str(dtype).removeprefix('torch.')}, gradient checkpointing per block, random "
             "weights.", "",
             "| model | blocks | tokens | batch | step s | fwd+bwd peak GiB | predicted GiB | measured / predicted |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "sampling_s" in r or r.get("oom"):
            continue
        lines.append(f"| {r['model']} | {r['blocks']} | {r['tokens']} | {r['batch']} | {r['step_s']:.3f} | "
                     f"{g(r['fwd_bwd_peak_bytes'])} | {g(r['predicted_fwd_bwd_bytes'])} | "
                     f"{r.get('measured_over_predicted', '')} |")
    lines += [""] + [f"- {r['model']}: {r['blocks']} blocks do not fit" for r in rows if r.get("oom")]
    lines += ["", "| model | blocks | sampling steps | seconds | s / step / block | full-depth estimate s |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if "sampling_s" in r:
            lines.append(f"| {r['model']} | {r['blocks']} | {r['sampling_steps']} | {r['sampling_s']:.2f} | "
                         f"{r['per_step_per_block_s']:.4f} | {r['full_depth_estimate_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="results JSON (the Markdown goes beside it, .md)")
    p.add_argument("--dry-run", action="store_true", help="tiny models on the CPU (checks the code path only)")
    p.add_argument("--batch", type=int, default=1, help="samples per step (App. A.2: 4 per GPU)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per depth (after one warm-up)")
    p.add_argument("--sample-steps", type=int, default=50, help="sampler steps of the sampling run (App. A.3: 50)")
    p.add_argument("--budget-s", type=float, default=420, help="stop growing the depth after this many seconds")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.dry_run:
        device, dtype, settings = torch.device("cpu"), torch.float32, DRY_SETTINGS
        args.sample_steps = min(args.sample_steps, 2)
    elif not torch.cuda.is_available():
        print("error: no CUDA device: bench/gpu_check.py needs one GPU (run it on a lent GPU machine, or pass "
              "--dry-run to check the code path on tiny models on the CPU)", file=sys.stderr)
        return 2
    else:
        device, dtype, settings = torch.device("cuda"), torch.bfloat16, SETTINGS
    described = "CPU (dry run, tiny models)" if device.type == "cpu" else torch.cuda.get_device_name(device)
    rows = check(settings, device, dtype, args.batch, args.steps, args.sample_steps, args.budget_s)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": described, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                               "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, described, dtype))
    print(markdown(rows, described, dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
