"""Per-GPU memory of MV-DiT training at full size (Sec. 3.2, App. A.2: 8 GPUs, bf16, batch 4 per GPU, ZeRO-2).

    python -m pipeline.mvdit.memory [--check] [--measure [--only GLOB]] [--gpus 8] [--gpu-gib 80] [--reshard-after-forward]

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
- **Activations are measured** (`measure_activations`): `LiveBytes` (a dispatch mode counting the bytes of every
  storage the step creates, per storage, while it is alive) runs the real model (this project's
  ``MVDiTCogVideoX`` / ``MVDiTWan``, bf16, full width, the full token count, the training loss, backward) under
  ``FakeTensorMode`` on fake CPU tensors: no memory, no compute, seconds per run. Parameter gradients are left
  out (counted per rank above). Measured at two depths a period apart (`measured_layers`; the period is that of
  the motion blocks: 1 release-7B, 2 paper, 4 release-17B) and extended to the full depth linearly (each period
  adds the same bytes; `tests/test_mvdit_memory.py` shows it at small size, BENCHMARKS.md at full size).
  Gradient checkpointing is diffusers' ``enable_gradient_checkpointing()`` (one non-reentrant
  ``torch.utils.checkpoint`` per block): each block then keeps its input (B x tokens x width, bf16) to backward,
  and the peak is in backward: the saved inputs + one block's recomputed activations + its gradients.
  Not torch's ``MemTracker``: its module hooks hold every block's input gradient until backward ends (one more
  block input per block with checkpointing: 2x the true growth for the 6B; `pipeline.mvdit.live_bytes`). Both
  agree exactly without checkpointing (test).

Measurements are cached in ``memory_measured.json`` next to this file (so the table prints in a second);
``--measure`` measures again and updates it (``--only GLOB`` a subset of its keys).

Peak per rank = max(forward/backward: shards + all-gather buffers + gradient shards + moments + activations +
reduce-scatter buffers; optimizer step: shards + gradient shards + moments + AdamW temporaries).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.wan import TEXT_TOKENS, MVDiTWanConfig
from pipeline.mvdit.live_bytes import LiveBytes, MemTrackerPeak

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


@dataclass(frozen=True)
class Plan:
    """How a setting reaches a global batch: ``setting.batch`` per GPU x ``grad_accum`` micro-steps x the GPUs,
    under FSDP2 with ``reshard_after_forward`` (False: the paper's ZeRO-2). Gradient accumulation adds nothing to
    the peak: each micro-step's gradients are reduce-scattered into the fp32 gradient shards already counted."""

    setting: Setting
    grad_accum: int = 1
    reshard_after_forward: bool = False

    def describe(self, world: int) -> str:
        s = self.setting
        zero = "reshard_after_forward=True (ZeRO-3)" if self.reshard_after_forward else \
            "reshard_after_forward=False (ZeRO-2)"
        return (f"{s.name} {s.frames}x{s.height}x{s.width}: batch {s.batch} per GPU x {world} GPUs x grad accum "
                f"{self.grad_accum} = global batch {s.batch * world * self.grad_accum}, FSDP2 {zero}")


# App. A.2: global batch 32 (batch 4 per GPU on 8 GPUs), bf16, DeepSpeed ZeRO-2. The 6B at CogVideoX-5B's
# 49 x 480 x 720 exactly so. The 18B at Wan2.1's 480p (480 x 832) with the released 17B sampler's 49-frame windows
# (the paper names no resolution for it): batch 4 per GPU does not fit 80 GiB under ZeRO-2 (the bf16 all-gather
# buffers of the 16B backbone alone are 34.5 GiB per GPU), so the checked configuration keeps ZeRO-2 and reaches
# the global batch 32 as batch 1 x 4 steps of gradient accumulation (`MVDiTTrainConfig.grad_accum_steps`).
# `PAPER_ALTERNATIVES` are printed beside it, not checked.
PAPER_PLANS = (Plan(Setting("6b", "paper", 49, 480, 720, 4)), Plan(Setting("18b", "paper", 49, 480, 832, 1), 4))
PAPER_ALTERNATIVES = (Plan(Setting("18b", "paper", 49, 480, 832, 4)),
                      Plan(Setting("18b", "paper", 49, 480, 832, 4), reshard_after_forward=True))
PAPER_SETTINGS = tuple(plan.setting for plan in PAPER_PLANS)


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


@functools.lru_cache(maxsize=None)
def meta_model(model: str, layout: str) -> nn.Module:
    """The full-size model on the meta device (shapes and requires_grad only; built once, read only)."""
    with torch.device("meta"):
        return model_config(model, layout).build()


# ---- activations, measured ---------------------------------------------------------------------------------
def latent_shape(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(latent frames, latent height, latent width) of a clip: both VAEs are 4x in time, 8x in space."""
    if (frames - 1) % 4 or height % 16 or width % 16:
        raise ValueError(f"a clip must be 1 + 4k frames of multiples of 16 pixels, got {frames} x {height} x {width}")
    return 1 + (frames - 1) // 4, height // 8, width // 8


def tokens(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int) -> int:
    """Vision tokens of one clip (patch 2 x 2)."""
    f, h, w = latent_shape(cfg, frames, height, width)
    return f * (h // 2) * (w // 2)


def fake_training_step(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int, batch: int,
                       checkpointing: bool, tracker: Callable[[nn.Module], Any], after_forward=None) -> Any:
    """One training step's forward, loss and backward of ``cfg`` (bf16) on fake CPU tensors (``FakeTensorMode``:
    nothing is allocated or computed) inside ``tracker(model)``, a context manager it returns; ``after_forward``
    (optional) is called with the model and the loss before backward."""
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
            context = tracker(model)
            with context:
                pred = model(noisy, ref, motion, t, motion_mask=None, mean_joints=mean_joints, **extra).sample
                loss = nn.functional.mse_loss(pred.float(), target.float())
                if after_forward is not None:
                    after_forward(model, loss)
                loss.backward()
            return context
    finally:
        torch.set_default_dtype(previous)


def measure_activations(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int, batch: int,
                        checkpointing: bool) -> int:
    """Peak bytes of the tensors a training step's forward and backward create (bf16, ``cfg``'s depth; parameter
    gradients excluded), counted per storage by `LiveBytes` on fake CPU tensors."""
    return fake_training_step(cfg, frames, height, width, batch, checkpointing, LiveBytes).peak


def measure_activations_memtracker(cfg: MVDiTConfig | MVDiTWanConfig, frames: int, height: int, width: int,
                                   batch: int, checkpointing: bool) -> int:
    """The same peak by torch's ``MemTracker`` (activation + temporary bytes): higher with checkpointing, because
    its module hooks hold every block's input gradient to the end of backward (`pipeline.mvdit.live_bytes`)."""
    return int(fake_training_step(cfg, frames, height, width, batch, checkpointing,
                                  MemTrackerPeak).activation_peak)


def measurement_key(model: str, layout: str, frames: int, height: int, width: int, batch: int, checkpointing: bool,
                    layers: int) -> str:
    return f"{model}/{layout}/{frames}x{height}x{width}/b{batch}/{'ckpt' if checkpointing else 'full'}/L{layers}"


def measured_layers(period: int, checkpointing: bool) -> tuple[int, int]:
    """The two depths measured (``a`` and ``a + period`` blocks); the full depth is extended from them.

    Without checkpointing ``p`` and ``2p``. With checkpointing the peak falls in backward, and with ``p`` blocks it
    falls where it does not in a deeper model: the 18B's increment from 2 to 4 blocks is 0.94 GiB, from 4 to 6 and
    6 to 8 blocks 0.387 GiB, two block inputs (49 x 480 x 832, batch 1; BENCHMARKS.md). So ``2p`` and ``3p``."""
    return (2 * period, 3 * period) if checkpointing else (period, 2 * period)


def measurement_keys(s: Setting) -> list[str]:
    """The cache keys one setting needs: both depths, with and without checkpointing."""
    period = motion_period(meta_model(s.model, s.layout))
    return [measurement_key(s.model, s.layout, s.frames, s.height, s.width, s.batch, checkpointing, layers)
            for checkpointing in (True, False) for layers in measured_layers(period, checkpointing)]


def measure_all(settings: Iterable[Setting], only: Iterable[str] = (), log=print) -> dict[str, int]:
    """Measure the keys of ``settings`` (only those matching one of the ``only`` globs, when given)."""
    torch.set_num_threads(1)
    only = list(only)
    results: dict[str, int] = {}
    start = time.time()
    for s in settings:
        cfg = model_config(s.model, s.layout)
        for key in measurement_keys(s):
            if only and not any(fnmatch.fnmatch(key, pattern) for pattern in only):
                continue
            layers, checkpointing = int(key.rsplit("/L", 1)[1]), "/ckpt/" in key
            results[key] = measure_activations(with_layers(cfg, layers), s.frames, s.height, s.width, s.batch,
                                               checkpointing)
            log(f"{key}: {results[key] / GIB:.2f} GiB ({time.time() - start:.0f} s)")
    return results


def update_cache(results: dict[str, int], only: Iterable[str], seconds: float, path: Path = CACHE) -> None:
    """Merge ``results`` into the cache; keys no setting needs any more are dropped; each run is logged. Read,
    merge and write hold a lock, so measurements of different subsets may run at the same time."""
    import fcntl

    needed = {k for s in all_settings() for k in measurement_keys(s)}
    with open(Path(tempfile.gettempdir(), f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = json.loads(path.read_text()) if path.is_file() else {"dtype": "bfloat16", "bytes": {}}
        cache["bytes"] = {k: v for k, v in sorted({**cache["bytes"], **results}.items()) if k in needed}
        cache.setdefault("runs", []).append({
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "seconds": round(seconds),
            "only": list(only) or ["*"], "keys": len(results), "tracker": "LiveBytes (pipeline/mvdit/live_bytes.py)"})
        path.write_text(json.dumps(cache, indent=1) + "\n")


def load_cache(path: Path = CACHE) -> dict[str, int]:
    if not path.is_file():
        raise FileNotFoundError(f"no activation measurements at {path}: run python -m pipeline.mvdit.memory --measure")
    return json.loads(path.read_text())["bytes"]


def activations_at_depth(measured: dict[str, int], model: str, layout: str, frames: int, height: int, width: int,
                         batch: int, checkpointing: bool, depth: int, period: int) -> int:
    """Activations of ``depth`` blocks: the measurement at ``a`` blocks plus one measured period increment per
    period beyond (`measured_layers`). KeyError when not measured, ValueError for a depth it cannot reach."""
    a, b = measured_layers(period, checkpointing)
    if depth < a or (depth - a) % period:
        raise ValueError(f"depth {depth} is not {a} + a multiple of the period {period}")
    keys = [measurement_key(model, layout, frames, height, width, batch, checkpointing, n) for n in (a, b)]
    missing = [k for k in keys if k not in measured]
    if missing:
        raise KeyError(f"no activation measurement {missing[0]}: run python -m pipeline.mvdit.memory --measure")
    lo, hi = measured[keys[0]], measured[keys[1]]
    return lo + (depth - a) // period * (hi - lo)


def activation_bytes(measured: dict[str, int], s: Setting, checkpointing: bool) -> int:
    """Activations of the full-depth model of setting ``s`` (`activations_at_depth`)."""
    model = meta_model(s.model, s.layout)
    return activations_at_depth(measured, s.model, s.layout, s.frames, s.height, s.width, s.batch, checkpointing,
                                len(blocks_of(model)), motion_period(model))


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
                   help="the table under FSDP2 reshard_after_forward=True (ZeRO-3) instead of the paper's ZeRO-2 "
                        "(the paper-setting lines use their own strategy)")
    p.add_argument("--measure", action="store_true", help=f"measure the activations again and update {CACHE.name}")
    p.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="with --measure: only the cache keys matching this glob (repeatable), e.g. '*/ckpt/*' or "
                        "'18b/paper/49x480x832/*'")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a checked paper setting (App. A.2; `PAPER_PLANS`) does not fit with gradient "
                        "checkpointing")
    p.add_argument("--json", help="also write every row as JSON to this path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.gpus < 1 or args.gpu_gib <= 0:
        print(f"error: --gpus must be >= 1 and --gpu-gib > 0, got {args.gpus} and {args.gpu_gib}", file=sys.stderr)
        return 2
    if args.only and not args.measure:
        print("error: --only needs --measure", file=sys.stderr)
        return 2
    if args.measure:
        start = time.time()
        update_cache(measure_all(all_settings(), args.only), args.only, time.time() - start)
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
    paper = [estimate(plan.setting, measured, args.gpus, args.gpu_gib, plan.reshard_after_forward)
             for plan in PAPER_PLANS]
    for plans, what in ((PAPER_PLANS, "paper setting (checked)"), (PAPER_ALTERNATIVES, "alternative (not checked)")):
        for plan in plans:
            e = estimate(plan.setting, measured, args.gpus, args.gpu_gib, plan.reshard_after_forward)
            print(f"{what} {plan.describe(args.gpus)}: peak {e.peak / GIB:.1f} GiB with checkpointing "
                  f"({'fits' if e.fits else 'does NOT fit'} in {e.budget / GIB:.0f}), {e.peak_full / GIB:.1f} GiB without")
    if args.check and not all(e.fits for e in paper):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
