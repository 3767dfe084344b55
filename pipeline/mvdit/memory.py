"""Per-GPU memory of MV-DiT training at full size (Sec. 3.2, App. A.2: 8 GPUs, bf16, batch 4 per GPU, ZeRO-2).

    python -m pipeline.mvdit.memory [--check] [--measure] [--gpus 8] [--gpu-gib 80] [--reshard-after-forward]

For MV-DiT-6B / -18B (paper layouts) and the released 7B / 17B layouts, 49 and 129 frames, 480 x 720 and
480 x 832, batch 1-4 per GPU, it prints per rank: parameters, gradients, optimizer state, all-gather buffers,
activations with and without gradient checkpointing, the peak, and whether it fits (peak <= 90 % of the GPU:
the rest is left to the CUDA context, NCCL and allocator fragmentation).

Two parts, kept apart on purpose:

- **Sharding is arithmetic** (`fsdp2_bytes`): FSDP2 ``fully_shard`` with one unit per transformer block plus
  the root, ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``. Each parameter is cut on dim 0 into
  ``world`` chunks (``torch.chunk``; rank 0 holds the largest). Trainable parameters keep fp32 master weights,
  fp32 sharded gradients and AdamW's two fp32 moments; the frozen backbone (18B) is a bf16 shard, no gradient,
  no moments. The unsharded bf16 copies (all-gather buffers) of every unit stay allocated from forward to
  their backward with ``reshard_after_forward=False`` (the paper's ZeRO-2: parameters whole, gradients and
  optimizer sharded); with ``True`` (ZeRO-3) two blocks' copies at a time (current + prefetch) plus the root.
  `tests/test_mvdit_memory.py` checks these byte counts against a real 2-rank gloo FSDP2 run of the tiny models.
  Not measured, stated: a block's backward holds its bf16 gradients and their fp32 copy for the reduce-scatter
  (6 bytes per trainable parameter of the largest block), AdamW's foreach step one fp32 temporary per
  trainable parameter (`ADAMW_STEP_TEMP`, checked in a test with ``MemTracker`` on a small model).
- **Activations are measured** (`measure_activations`): torch's ``MemTracker`` under ``FakeTensorMode`` runs
  the real model (this project's ``MVDiTCogVideoX`` / ``MVDiTWan``, bf16, full width, the full token count,
  the training loss, backward) on fake CPU tensors: no memory, no compute, seconds per run. The tracker is
  run on the model with ``p`` and ``2p`` blocks, ``p`` the period of the motion blocks (1 release-7B, 2 paper,
  4 release-17B), and extended to the full depth linearly (each period of blocks adds the same bytes;
  `tests/test_mvdit_memory.py` shows it at small size, and the full 42-block 6B measured once agrees:
  BENCHMARKS.md). Gradient checkpointing is diffusers' ``enable_gradient_checkpointing()`` (one
  ``torch.utils.checkpoint`` per block). The activation figure is the peak over forward and backward of the
  tracker's activation + temporary bytes (`_ActivationPeak`).

Measurements are cached in ``memory_measured.json`` next to this file (so the table prints in a second);
``--measure`` measures again (about 20 minutes on 2 CPU cores) and rewrites it.

Peak per rank = max(forward/backward: shards + all-gather buffers + gradient shards + moments + activations +
reduce-scatter buffers; optimizer step: shards + gradient shards + moments + AdamW temporaries).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.wan import TEXT_TOKENS, MVDiTWanConfig

GIB = 2**30
CACHE = Path(__file__).with_name("memory_measured.json")
MODELS: dict[tuple[str, str], str] = {
    ("6b", "paper"): "MV-DiT-6B", ("6b", "release"): "MV-DiT-7B (release)",
    ("18b", "paper"): "MV-DiT-18B", ("18b", "release"): "MV-DiT-17B (release)",
}
FRAMES = (49, 129)
RESOLUTIONS = ((480, 720), (480, 832))
BATCHES = (1, 2, 3, 4)
HEADROOM = 0.9  # usable share of a GPU's memory
ADAMW_STEP_TEMP = 4  # bytes per trainable parameter: foreach AdamW's fp32 sqrt(v) buffer during the step
REDUCE_SCATTER = 6  # bytes per trainable parameter of one block: its bf16 grads + their fp32 copy
CLIP_TOKENS = 257  # CLIP image tokens of Wan2.1-I2V


@dataclass(frozen=True)
class Setting:
    """One training setting: model ("6b" / "18b"), layout ("paper" / "release"), clip size, per-GPU batch."""

    model: str
    layout: str
    frames: int
    height: int
    width: int
    batch: int

    @property
    def name(self) -> str:
        return MODELS[(self.model, self.layout)]


# App. A.2: batch 4 per GPU on 8 GPUs, bf16. The 6B at CogVideoX-5B's 49 x 480 x 720 with that batch. The 18B
# at Wan2.1's 480p (480 x 832) with the released 17B sampler's 49-frame windows: by this measurement batch 4 per
# GPU does not fit an 80 GiB GPU (`PAPER_BATCH_18B` is printed beside it), batch 1 does: the paper's global
# batch of 32 then needs 4 steps of gradient accumulation (the paper names no resolution for the 18B).
PAPER_SETTINGS = (Setting("6b", "paper", 49, 480, 720, 4), Setting("18b", "paper", 49, 480, 832, 1))
PAPER_BATCH_18B = Setting("18b", "paper", 49, 480, 832, 4)


def model_config(model: str, layout: str) -> MVDiTConfig | MVDiTWanConfig:
    """The full-size config of ``model`` ("6b" CogVideoX-5B, "18b" Wan2.1-I2V-14B) in ``layout``."""
    if model == "6b":
        return MVDiTConfig.cogvideox_5b(layout)
    if model == "18b":
        return MVDiTWanConfig.wan_i2v_14b(layout)
    raise ValueError(f"model must be '6b' or '18b', got {model!r}")


def with_layers(cfg: MVDiTConfig | MVDiTWanConfig, layers: int) -> MVDiTConfig | MVDiTWanConfig:
    return replace(cfg, backbone={**cfg.backbone, "num_layers": layers})


def blocks_of(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks (one FSDP2 unit each): CogVideoX ``transformer_blocks``, Wan ``blocks``."""
    return model.transformer_blocks if hasattr(model, "transformer_blocks") else model.blocks


def motion_period(model: nn.Module) -> int:
    """Blocks per repeat of the motion-block pattern (release 7B: 1, paper: 2, release 17B: 4)."""
    idx = model.motion_block_indices
    return idx[1] - idx[0] if len(idx) > 1 else len(blocks_of(model))


# ---- sharding arithmetic (FSDP2) ---------------------------------------------------------------------------
def local_rows(rows: int, world: int, rank: int) -> int:
    """Rows of a dim-0 size ``rows`` on ``rank`` when FSDP2 shards it (``torch.chunk`` into ``world`` pieces)."""
    chunk = -(-rows // world)
    return max(0, min(chunk, rows - rank * chunk))


def local_numel(shape: torch.Size, world: int, rank: int) -> int:
    rest = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return local_rows(shape[0], world, rank) * rest if len(shape) else (1 if rank == 0 else 0)


@dataclass
class ShardedBytes:
    """Per-rank bytes of the model state under FSDP2 (see the module docstring)."""

    params: int  # parameter shards: fp32 trainable, bf16 frozen
    grads: int  # fp32 gradient shards of the trainable parameters
    optimizer: int  # AdamW exp_avg + exp_avg_sq, fp32
    allgather: int  # unsharded bf16 parameters held at the start of backward
    reduce_scatter: int  # one block's gradients being reduced
    optimizer_step: int  # AdamW temporaries during the step


def fsdp2_bytes(model: nn.Module, world: int, rank: int = 0, reshard_after_forward: bool = False) -> ShardedBytes:
    """Per-rank bytes of ``model`` (any device, meta included) sharded by FSDP2 over ``world`` ranks."""
    block_ids = {id(p): i for i, block in enumerate(blocks_of(model)) for p in block.parameters()}
    unit_numel: dict[Any, int] = {}
    unit_trainable: dict[Any, int] = {}
    params = grads = trainable = 0
    for p in model.parameters():
        local = local_numel(p.shape, world, rank)
        params += local * (4 if p.requires_grad else 2)
        if p.requires_grad:
            grads += local * 4
            trainable += local
        unit = block_ids.get(id(p), "root")
        unit_numel[unit] = unit_numel.get(unit, 0) + p.numel()
        unit_trainable[unit] = unit_trainable.get(unit, 0) + (p.numel() if p.requires_grad else 0)
    if reshard_after_forward:
        blocks = sorted((n for u, n in unit_numel.items() if u != "root"), reverse=True)
        held = unit_numel.get("root", 0) + sum(blocks[:2])
    else:
        held = sum(unit_numel.values())
    return ShardedBytes(params=params, grads=grads, optimizer=2 * 4 * trainable, allgather=2 * held,
                        reduce_scatter=REDUCE_SCATTER * max(unit_trainable.values()),
                        optimizer_step=ADAMW_STEP_TEMP * trainable)


def meta_model(model: str, layout: str) -> nn.Module:
    """The full-size model on the meta device (shapes and requires_grad only)."""
    with torch.device("meta"):
        return model_config(model, layout).build()


# ---- activations, measured ---------------------------------------------------------------------------------
class _NoHook:
    def remove(self) -> None:
        pass


def _activation_peak_tracker(model: nn.Module):
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    class ActivationPeak(MemTracker):
        """``MemTracker`` keeping only the peak of activation + temporary bytes (its own peaks are of the total,
        parameters and gradients included, which here `fsdp2_bytes` accounts for per rank; and per module, which
        costs a pass over every module after every op).

        Frozen parameters (the 18B backbone) get a placeholder where the tracker keeps its gradient hooks: it
        would otherwise try to hook a tensor that has no gradient, and fail."""

        def __init__(self) -> None:
            super().__init__()
            self.activation_peak = 0
            for p in model.parameters():
                if not p.requires_grad:
                    self._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())

        def _update_peak_stats(self, peak_state) -> None:  # after every op; replaces the per-module bookkeeping
            for snap in self._curr_mem_snap.values():
                live = snap.get(_MemRefType.ACT, 0) + snap.get(_MemRefType.TEMP, 0)
                self.activation_peak = max(self.activation_peak, live)

    return ActivationPeak()


def latent_shape(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(latent frames, latent height, latent width) of a clip: both VAEs are 4x in time, 8x in space."""
    if (frames - 1) % 4 or height % 16 or width % 16:
        raise ValueError(f"a clip must be 1 + 4k frames of multiples of 16 pixels, got {frames} x {height} x {width}")
    return 1 + (frames - 1) // 4, height // 8, width // 8


def tokens(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int) -> int:
    """Vision tokens of one clip (patch 2 x 2)."""
    f, h, w = latent_shape(cfg, frames, height, width)
    return f * (h // 2) * (w // 2)


def measure_activations(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int, batch: int,
                        checkpointing: bool) -> int:
    """Peak activation + temporary bytes of one training step's forward and backward (bf16, ``cfg``'s depth),
    measured with ``MemTracker`` on fake CPU tensors (``FakeTensorMode``: nothing is allocated or computed)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    f, h, w = latent_shape(cfg, frames, height, width)
    c = cfg.backbone["out_channels"]
    mean_joints = np.zeros((cfg.num_joints, 3))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # build in bf16: .to() on fake modules fails on a CPU-only machine
    try:
        with FakeTensorMode():
            model = cfg.build()
            if checkpointing:
                model.enable_gradient_checkpointing()
            motion = torch.randn(batch, f * cfg.num_joints, cfg.motion_token_dim)
            t = torch.full((batch,), 500)
            if isinstance(cfg, MVDiTWanConfig):
                noisy, ref = torch.randn(batch, c, f, h, w), torch.randn(batch, c, f, h, w)
                text = torch.randn(batch, TEXT_TOKENS, cfg.backbone["text_dim"])
                image = torch.randn(batch, CLIP_TOKENS, cfg.backbone["image_dim"])
                extra = dict(encoder_hidden_states=text, encoder_hidden_states_image=image)
            else:
                noisy, ref = torch.randn(batch, f, c, h, w), torch.randn(batch, 1, c, h, w)
                extra = {}
            target = torch.randn(noisy.shape)
            tracker = _activation_peak_tracker(model)
            with tracker:
                pred = model(noisy, ref, motion, t, motion_mask=None, mean_joints=mean_joints, **extra).sample
                loss = nn.functional.mse_loss(pred.float(), target.float())
                loss.backward()
            return int(tracker.activation_peak)
    finally:
        torch.set_default_dtype(previous)


def measurement_key(model: str, layout: str, frames: int, height: int, width: int, batch: int, checkpointing: bool,
                    layers: int) -> str:
    return f"{model}/{layout}/{frames}x{height}x{width}/b{batch}/{'ckpt' if checkpointing else 'full'}/L{layers}"


def measure_all(settings: Iterable[Setting], log=print) -> dict[str, Any]:
    """Measure every setting at ``p`` and ``2p`` blocks, with and without checkpointing."""
    torch.set_num_threads(1)
    results: dict[str, int] = {}
    start = time.time()
    for s in settings:
        cfg = model_config(s.model, s.layout)
        period = motion_period(meta_model(s.model, s.layout))
        for checkpointing in (True, False):
            for layers in (period, 2 * period):
                key = measurement_key(s.model, s.layout, s.frames, s.height, s.width, s.batch, checkpointing, layers)
                results[key] = measure_activations(with_layers(cfg, layers), s.frames, s.height, s.width, s.batch,
                                                   checkpointing)
                log(f"{key}: {results[key] / GIB:.2f} GiB ({time.time() - start:.0f} s)")
    return {"torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start),
            "dtype": "bfloat16", "bytes": results}


def load_cache(path: Path = CACHE) -> dict[str, int]:
    if not path.is_file():
        raise FileNotFoundError(f"no activation measurements at {path}: run python -m pipeline.mvdit.memory --measure")
    return json.loads(path.read_text())["bytes"]


def activation_bytes(measured: dict[str, int], s: Setting, checkpointing: bool) -> int:
    """Activations of the full-depth model: the ``p``-block measurement plus one ``p``-block increment per period."""
    model = meta_model(s.model, s.layout)
    period, depth = motion_period(model), len(blocks_of(model))
    keys = [measurement_key(s.model, s.layout, s.frames, s.height, s.width, s.batch, checkpointing, n)
            for n in (period, 2 * period)]
    missing = [k for k in keys if k not in measured]
    if missing:
        raise KeyError(f"no activation measurement {missing[0]}: run python -m pipeline.mvdit.memory --measure")
    one, two = measured[keys[0]], measured[keys[1]]
    return one + (depth // period - 1) * (two - one)


# ---- the estimate ------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """Per-rank bytes of one setting (see `estimate`)."""

    setting: Setting
    world: int
    gpu_bytes: int
    state: ShardedBytes
    activations: int  # with gradient checkpointing
    activations_full: int  # without
    peak: int
    peak_full: int

    @property
    def budget(self) -> int:
        return int(HEADROOM * self.gpu_bytes)

    @property
    def fits(self) -> bool:
        return self.peak <= self.budget

    @property
    def fits_full(self) -> bool:
        return self.peak_full <= self.budget


def step_peak(state: ShardedBytes, activations: int) -> int:
    """max(forward/backward, optimizer step) per rank."""
    resident = state.params + state.grads + state.optimizer
    return max(resident + state.allgather + state.reduce_scatter + activations, resident + state.optimizer_step)


def estimate(s: Setting, measured: dict[str, int], world: int = 8, gpu_gib: float = 80,
             reshard_after_forward: bool = False) -> Estimate:
    state = fsdp2_bytes(meta_model(s.model, s.layout), world, 0, reshard_after_forward)
    act, act_full = activation_bytes(measured, s, True), activation_bytes(measured, s, False)
    return Estimate(s, world, int(gpu_gib * GIB), state, act, act_full, step_peak(state, act),
                    step_peak(state, act_full))


def all_settings() -> list[Setting]:
    return [Setting(m, layout, n, h, w, b) for (m, layout) in MODELS for n in FRAMES for h, w in RESOLUTIONS
            for b in BATCHES]


def format_table(rows: list[Estimate]) -> str:
    g = lambda n: f"{n / GIB:.1f}"  # noqa: E731
    head = (f"{'model':<21} {'frames':>6} {'HxW':>7} {'B':>1} {'tokens':>6} {'params':>6} {'grads':>5} {'optim':>5} "
            f"{'gather':>6} {'act':>6} {'act-noAC':>8} {'peak':>6} {'peak-noAC':>9}  fits (AC / no AC)")
    lines = [head, "-" * len(head)]
    for e in rows:
        s, st = e.setting, e.state
        cfg = model_config(s.model, s.layout)
        fit = f"{'yes' if e.fits else 'NO':<3} / {'yes' if e.fits_full else 'no'}"
        lines.append(f"{s.name:<21} {s.frames:>6} {f'{s.height}x{s.width}':>7} {s.batch:>1} "
                     f"{tokens(cfg, s.frames, s.height, s.width):>6} {g(st.params):>6} {g(st.grads):>5} "
                     f"{g(st.optimizer):>5} {g(st.allgather):>6} {g(e.activations):>6} {g(e.activations_full):>8} "
                     f"{g(e.peak):>6} {g(e.peak_full):>9}  {fit}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.mvdit.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, default=8, help="ranks the model is sharded over (App. A.2: 8)")
    p.add_argument("--gpu-gib", type=float, default=80, help="memory of one GPU in GiB (H100: 80)")
    p.add_argument("--reshard-after-forward", action="store_true",
                   help="FSDP2 reshard_after_forward=True (ZeRO-3) instead of the paper's ZeRO-2")
    p.add_argument("--measure", action="store_true", help=f"measure the activations again and rewrite {CACHE.name}")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a paper setting (App. A.2) does not fit with gradient checkpointing")
    p.add_argument("--json", help="also write every row as JSON to this path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.gpus < 1 or args.gpu_gib <= 0:
        print(f"error: --gpus must be >= 1 and --gpu-gib > 0, got {args.gpus} and {args.gpu_gib}", file=sys.stderr)
        return 2
    if args.measure:
        CACHE.write_text(json.dumps(measure_all(all_settings()), indent=1) + "\n")
    try:
        measured = load_cache()
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = [estimate(s, measured, args.gpus, args.gpu_gib, args.reshard_after_forward) for s in all_settings()]
    strategy = "reshard_after_forward=True (ZeRO-3)" if args.reshard_after_forward else \
        "reshard_after_forward=False (ZeRO-2)"
    print(f"MV-DiT training memory per GPU (GiB), FSDP2 {strategy} on {args.gpus} GPUs of {args.gpu_gib:g} GiB, "
          f"bf16 compute, fp32 master weights / gradients / AdamW; fits = peak <= {HEADROOM:.0%} of the GPU; "
          f"AC = gradient checkpointing per block; activations measured ({CACHE.name})")
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(e.setting), "state": asdict(e.state),
                                                "activations": e.activations, "activations_full": e.activations_full,
                                                "peak": e.peak, "peak_full": e.peak_full, "fits": e.fits}
                                               for e in rows], indent=1))
    paper = [estimate(s, measured, args.gpus, args.gpu_gib, args.reshard_after_forward) for s in PAPER_SETTINGS]
    for e in paper + [estimate(PAPER_BATCH_18B, measured, args.gpus, args.gpu_gib, args.reshard_after_forward)]:
        s = e.setting
        what = "paper setting" if s in PAPER_SETTINGS else "App. A.2's batch 4 for the 18B (not checked)"
        print(f"{what} {s.name} {s.frames}x{s.height}x{s.width} batch {s.batch}: peak {e.peak / GIB:.1f} GiB "
              f"with checkpointing ({'fits' if e.fits else 'does NOT fit'}), {e.peak_full / GIB:.1f} GiB without")
    if args.check and not all(e.fits for e in paper):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
