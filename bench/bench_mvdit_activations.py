"""Audit of the activation bytes `pipeline.mvdit.memory` measures: what each extra transformer block adds.

    python bench/bench_mvdit_activations.py [--model 6b|18b] [--frames 49 --height 480 --width 720] [--batch 1]
        [--shapes | --whole | --composition]

For p and 2p blocks (p = motion-block period), with and without per-block gradient checkpointing, on fake CPU
tensors (``FakeTensorMode``, bf16, full width, the given token count, the real blocks), it prints (MiB):

- saved: bytes of the tensors autograd saves for backward (``saved_tensors_hooks``; unique storages, parameters
  excluded), alive at the end of forward; with checkpointing these are the checkpoints' saved block inputs and
  what is saved outside the blocks (``--shapes`` lists them);
- live@fwd: bytes of every storage created by the step and alive at the end of forward (`LiveBytes`);
- peak: `LiveBytes`' peak over forward and backward (what `memory.measure_activations` returns);
- peak+hooks: the same with torch's ``ModTracker`` active (the module hooks ``MemTracker`` installs);
- memtracker: ``MemTracker``'s activation + temporary peak (what `memory` measured before);

and the per-period increment of each, in bytes and in block inputs (B x tokens x width, bf16) per block.
``--whole``: instead, the whole-depth model with checkpointing in one run beside the cached extension.
``--composition``: instead, what is alive at the checkpointed peak at 2p blocks.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.mvdit import memory  # noqa: E402
from pipeline.mvdit.live_bytes import LiveBytes  # noqa: E402

MIB = 2**20


class SavedBytes:
    """Unique storages saved for backward (parameters excluded), kept with their shapes while alive."""

    def __init__(self, model: torch.nn.Module) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        self.params = {id(p.untyped_storage()) for p in model.parameters()}
        self.saved = WeakIdKeyDictionary()
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if id(st) not in self.params:
            self.saved[st] = (tuple(t.shape), t.dtype, st.nbytes())
        return t

    def total(self) -> int:
        return sum(n for _, _, n in self.saved.values())


class PeakComposition(LiveBytes):
    """`LiveBytes` that also keeps, at its peak, the live bytes grouped by (shape, dtype, made in backward)."""

    def __init__(self, model: torch.nn.Module) -> None:
        from torch.utils.weak import WeakIdKeyDictionary

        super().__init__(model)
        self.info = WeakIdKeyDictionary()
        self.at_peak: dict[tuple, int] = {}

    def _count(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st not in self._sizes:
            self.info[st] = (tuple(t.shape), str(t.dtype).removeprefix("torch."),
                             "bw" if torch._C._current_graph_task_id() != -1 else "fw")
        before = self.peak
        super()._count(t)
        if self.peak > before:
            groups: dict[tuple, int] = {}
            for s, n in list(self._sizes.items()):
                if n:
                    key = self.info.get(s, ("?", "?", "?"))
                    groups[key] = groups.get(key, 0) + n
            self.at_peak = groups


def composition(cfg, args) -> None:
    """What is alive at the checkpointed step's peak (tensors of at least 10 MiB in all)."""
    ctx = memory.fake_training_step(cfg, args.frames, args.height, args.width, args.batch, True, PeakComposition)
    print(f"  ckpt {cfg.backbone['num_layers']} blocks: live at the peak {ctx.peak / MIB:.1f} MiB:")
    for (shape, dtype, when), n in sorted(ctx.at_peak.items(), key=lambda kv: -kv[1]):
        if n >= 10 * MIB:
            print(f"      {when} {shape} {dtype}: {n / MIB:.1f} MiB")


def run(cfg, args, checkpointing: bool) -> dict[str, int]:
    out: dict[str, int] = {}

    def live_tracker(hooks: bool):
        def make(model):
            stack = ExitStack()
            tracker = LiveBytes(model)
            if hooks:
                from torch.distributed._tools.mod_tracker import ModTracker

                stack.enter_context(ModTracker())
            stack.enter_context(tracker)
            stack.tracker = tracker
            return stack
        return make

    def with_saved(model):
        stack = ExitStack()
        tracker = LiveBytes(model)
        saved = SavedBytes(model)
        stack.enter_context(saved.hooks)
        stack.enter_context(tracker)
        stack.tracker, stack.saved = tracker, saved
        return stack

    def at_end_of_forward(model, loss):
        out["live@fwd"] = ctx_holder[0].tracker.live
        out["saved"] = ctx_holder[0].saved.total()
        if args.shapes and checkpointing:
            groups: dict[tuple, list[int]] = {}
            for shape, dtype, n in ctx_holder[0].saved.saved.values():
                groups.setdefault((shape, dtype), []).append(n)
            for (shape, dtype), ns in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
                if sum(ns) >= MIB / 10:
                    print(f"      saved {len(ns)} x {shape} {dtype}: {sum(ns) / MIB:.2f} MiB")

    ctx_holder = []

    def keep(make):
        def wrapped(model):
            ctx = make(model)
            ctx_holder[:] = [ctx]
            return ctx
        return wrapped

    shape = (cfg, args.frames, args.height, args.width, args.batch, checkpointing)
    ctx = memory.fake_training_step(*shape, keep(with_saved), at_end_of_forward)
    out["peak"] = ctx.tracker.peak
    out["peak+hooks"] = memory.fake_training_step(*shape, live_tracker(True)).tracker.peak
    out["memtracker"] = memory.measure_activations_memtracker(*shape)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="6b", choices=("6b", "18b"))
    p.add_argument("--layout", default="paper", choices=("paper", "release"))
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--height", type=int, default=160)
    p.add_argument("--width", type=int, default=240)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--shapes", action="store_true", help="list the saved tensors at the end of forward")
    p.add_argument("--whole", action="store_true",
                   help="only measure the whole-depth model with checkpointing beside the cached extension")
    p.add_argument("--composition", action="store_true",
                   help="only list what is alive at the checkpointed peak at 2p blocks")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    base = memory.model_config(args.model, args.layout)
    period = memory.motion_period(memory.meta_model(args.model, args.layout))
    n_tok = memory.tokens(base, args.frames, args.height, args.width)
    width = base.backbone["num_attention_heads"] * base.backbone["attention_head_dim"]
    block_input = args.batch * n_tok * width * 2
    print(f"{memory.MODELS[(args.model, args.layout)]} {args.frames}x{args.height}x{args.width} batch {args.batch}: "
          f"{n_tok} tokens, width {width}, block input {block_input / MIB:.2f} MiB (bf16), period {period} blocks")
    if args.whole:
        start = time.time()
        whole = memory.measure_activations(base, args.frames, args.height, args.width, args.batch, True)
        setting = memory.Setting(args.model, args.layout, args.frames, args.height, args.width, args.batch)
        extended = memory.activation_bytes(memory.load_cache(), setting, True)
        print(f"  ckpt {base.backbone['num_layers']} blocks: whole {whole / memory.GIB:.3f} GiB, extended from "
              f"the cache {extended / memory.GIB:.3f} GiB, ratio {extended / whole:.4f} ({time.time() - start:.0f} s)")
        return 0
    if args.composition:
        composition(memory.with_layers(base, 2 * period), args)
        return 0
    start = time.time()
    for checkpointing in (True, False):
        rows = {}
        for layers in (period, 2 * period):
            rows[layers] = run(memory.with_layers(base, layers), args, checkpointing)
            cells = "  ".join(f"{k} {v / MIB:9.2f}" for k, v in rows[layers].items())
            print(f"  {'ckpt' if checkpointing else 'full'} {layers} blocks (MiB): {cells}  ({time.time() - start:.0f} s)")
        one, two = rows[period], rows[2 * period]
        cells = "  ".join(f"{k} {(two[k] - one[k]) / MIB:9.2f} ({(two[k] - one[k]) / period / block_input:.2f}x)"
                          for k in one)
        print(f"  {'ckpt' if checkpointing else 'full'} + {period} blocks (MiB, x block input per block): {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
