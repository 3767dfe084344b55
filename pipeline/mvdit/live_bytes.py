"""Live tensor bytes of a forward + backward, counted per storage (for `pipeline.mvdit.memory`).

``LiveBytes`` is a ``TorchDispatchMode`` that records every storage an op creates (weakref: it is forgotten when
the last tensor on it dies) and keeps the running total and its peak. Unlike torch's ``MemTracker`` it installs
no module hooks: ``MemTracker``'s ``ModTracker`` registers ``register_multi_grad_hook(mode="all")`` on every
module's inputs, and such a hook buffers the gradient of each input until the gradients of all of them are
computed. A block's inputs include the timestep embedding and a motion block's the motion tokens, shared by all
blocks, whose gradient is complete only at the end of backward: every block's input gradient is then held to the
end, which a real training step does not do (measured in ``bench/bench_mvdit_activations.py``, BENCHMARKS.md).

Works on real and on fake tensors (``FakeTensorMode``: enter it first). Gradients of ``exclude``'s parameters are
not counted once they reach the parameter's gradient hook (``pipeline.mvdit.memory`` accounts them per rank);
tensors that exist before the mode is entered (inputs, parameters) are not counted.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary


class LiveBytes(TorchDispatchMode):
    """Running and peak bytes of the storages created under this mode (see the module docstring)."""

    def __init__(self, exclude: nn.Module | None = None) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()  # storage -> counted bytes (0: not counted)
        self._handles = []
        params: Iterable[nn.Parameter] = exclude.parameters() if exclude is not None else ()
        for p in params:
            self._sizes[p.untyped_storage()] = 0
            if p.requires_grad:
                self._handles.append(p.register_hook(self._uncount))

    def _count(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st in self._sizes:
            return
        n = st.nbytes()
        self._sizes[st] = n
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(st, self._free, n, weakref.ref(self))

    @staticmethod
    def _free(n: int, me: weakref.ref) -> None:
        self = me()
        if self is not None:
            self.live -= n

    def _uncount(self, grad: torch.Tensor) -> None:
        """A parameter's gradient: accounted elsewhere, so taken out of the running total (not out of the peak)."""
        st = grad.untyped_storage()
        n = self._sizes.get(st, 0)
        if n:
            self.live -= n
            self._sizes[st] = 0
            # the finaliser would subtract it again: give it back when the storage dies
            weakref.finalize(st, self._give_back, n, weakref.ref(self))

    @staticmethod
    def _give_back(n: int, me: weakref.ref) -> None:
        self = me()
        if self is not None:
            self.live += n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._count(t)
        return out

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        return super().__exit__(*exc)


class _NoHook:
    def remove(self) -> None:
        pass


def MemTrackerPeak(model: nn.Module):  # noqa: N802 (a tracker factory, used like a class)
    """torch's ``MemTracker`` keeping only the peak of activation + temporary bytes, for comparison with
    `LiveBytes` (what `pipeline.mvdit.memory` measured before; the same without checkpointing, one block input
    more per 6B block with it). Its own peaks are of the total and per module (a pass over every module after
    every op). Frozen parameters (the 18B backbone) get a placeholder where the tracker keeps its gradient hooks:
    it would otherwise try to hook a tensor that has no gradient, and fail."""
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    class ActivationPeak(MemTracker):
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
