"""Data-parallel MV-DiT training (App. A.2): DDP for the tiny models, FSDP2 as the paper's DeepSpeed ZeRO-2.

FSDP2 (`torch.distributed.fsdp.fully_shard`): one unit per transformer block, then the root (patch embedding,
time embedding, output head, c_m∅). ``reshard_after_forward=False`` keeps each block's gathered parameters from
forward to backward, so parameters are gathered once per step while gradients and AdamW state stay sharded:
ZeRO-2, the paper's setting. On a GPU, `MixedPrecisionPolicy` gathers bf16 parameters and reduces gradients in
float32 over float32 master weights. The optimizer is built after sharding (it must hold the sharded
parameters).

Every strategy, the same step (`finish_gradients`): c_m∅ changes only on steps where some sample on some rank
used it (Sec. 3.2: it "is only updated when used"; otherwise its gradient is dropped, so AdamW applies neither
momentum nor weight decay to it), then the same gradient clipping (``max_grad_norm``, 0 = off). Under gradient
accumulation "some sample" means some sample of any micro-batch; ranks reduce each micro-batch's gradients
(``reduce_every_micro_batch``, the default) or only the last one's (`gradient_sync`).

Checkpoints of a sharded run are `torch.distributed.checkpoint` folders (``checkpoints/sharded/step_XXXXXXXX``),
each rank writing its shards; they load on any number of ranks (DCP reshards). With a frozen backbone only
the trained weights are saved. `export_sharded` consolidates one into the `pipeline.core.checkpoints` safetensors
file that releases and ``animate`` read (``python -m pipeline.mvdit.sharding SHARDED_DIR``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("ddp", "fsdp")
META_NAME = "mtvcraft.json"  # written by rank 0 after every rank's shards: a folder without it is incomplete


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks: CogVideoX's ``transformer_blocks`` or Wan's ``blocks``."""
    blocks = getattr(model, "transformer_blocks", None)
    return blocks if blocks is not None else model.blocks


def shard_fsdp(model: nn.Module, device: torch.device, reshard_after_forward: bool = False,
               bf16: bool = False) -> nn.Module:
    """Apply FSDP2 in place: each transformer block one unit, then the root; returns the (same) model."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    # Blocks do not re-cast their inputs: the root already did, and re-casting would rebuild the motion
    # condition (`RotaryWithMotion`, a tuple subclass) with the wrong arguments.
    block_mp = MixedPrecisionPolicy(param_dtype=mp.param_dtype, reduce_dtype=mp.reduce_dtype, cast_forward_inputs=False)
    for block in transformer_blocks(model):
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=block_mp)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    return model


def make_optimizer(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (App. A.2); build it after sharding."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


@contextlib.contextmanager
def gradient_sync(net: nn.Module, enabled: bool) -> Iterator[None]:
    """Backward passes inside reduce gradients across ranks only when ``enabled``: gradient accumulation skips the
    reduction on its non-final micro-batches (FSDP2: ``set_requires_gradient_sync(False)``, the unsharded
    gradients accumulate locally, in float32 under bf16 mixed precision: a full copy of the trainable
    parameters' gradients per rank until the last micro-batch; DDP: ``no_sync()``, no extra memory); a plain
    module accumulates either way."""
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

    if enabled:
        yield
    elif isinstance(net, FSDPModule):
        net.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            net.set_requires_gradient_sync(True)
    elif isinstance(net, DistributedDataParallel):
        with net.no_sync():
            yield
    else:
        yield


def finish_gradients(model: nn.Module, motion_keep: torch.Tensor, max_grad_norm: float = 0.0) -> bool:
    """After backward, before the optimizer step, in every strategy: drop c_m∅'s gradient unless some sample on
    some rank used it (all ranks agree), then clip the gradient norm to ``max_grad_norm`` (0: no clipping).
    Returns whether c_m∅ was used."""
    used = torch.tensor(float(not bool(motion_keep.all())), device=motion_keep.device)
    if world()[1] > 1:
        dist.all_reduce(used, op=dist.ReduceOp.MAX)
    token = getattr(model, "unconditional_motion_token", None)
    if token is not None and not bool(used):
        token.grad = None
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_grad_norm)
    return bool(used)


def optimizer_step(net: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                   micro_batches: Sequence[Callable[[], tuple[torch.Tensor, torch.Tensor]]],
                   max_grad_norm: float, reduce_every_micro_batch: bool = True) -> float:
    """One optimizer step over ``micro_batches`` (each returns its loss and motion keep-mask): backward of each
    loss / their count, so the gradient is the mean over all their samples; ranks reduce every micro-batch's
    gradients when ``reduce_every_micro_batch`` (FSDP2 keeps them sharded, one reduce-scatter per micro-batch:
    the memory-lean choice torchtitan makes, and what the memory table counts), else only the last one's
    (`gradient_sync`: less communication, unsharded gradients held in between); c_m∅ moves
    only if a sample of some micro-batch on some rank used it (Sec. 3.2, `finish_gradients` on the union of the
    masks), then clipping and AdamW. Returns the mean loss."""
    optimizer.zero_grad(set_to_none=True)
    total, keeps, n = 0.0, [], len(micro_batches)
    for i, micro_batch in enumerate(micro_batches):
        with gradient_sync(net, enabled=reduce_every_micro_batch or i == n - 1):
            loss, keep = micro_batch()
            (loss / n).backward()
        total += float(loss.detach())
        keeps.append(keep)
    finish_gradients(model, torch.cat(keeps), max_grad_norm)  # c_m∅ only when used; clipping
    optimizer.step()
    return total / n


# ---- sharded checkpoints -------------------------------------------------------------------------------------
def sharded_dir(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / "sharded"


def list_sharded(ckpt_dir: str | Path) -> list[Path]:
    """Complete sharded checkpoints (``META_NAME`` present), oldest first."""
    root = sharded_dir(ckpt_dir)
    return sorted(p for p in root.glob("step_*") if (p / META_NAME).is_file()) if root.is_dir() else []


def _options(frozen_backbone: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=frozen_backbone, strict=not frozen_backbone)


def save_sharded(ckpt_dir: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                 meta: dict[str, Any], frozen_backbone: bool = False, keep: int = 3) -> Path:
    """Every rank writes its shards of the model and AdamW state (collective); rank 0 then writes ``meta``
    (step, sampler, configs, loss curve) and removes all but the newest ``keep``. A frozen backbone is not
    written (its weights are the backbone folder's)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path = sharded_dir(ckpt_dir) / f"step_{step:08d}"
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options(frozen_backbone))
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
    if world()[0] == 0:
        tmp = path / (META_NAME + ".tmp")
        tmp.write_text(json.dumps({**meta, "step": step}))
        os.replace(tmp, path / META_NAME)
        for old in list_sharded(ckpt_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    if world()[1] > 1:
        dist.barrier()
    return path


def load_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 frozen_backbone: bool = False) -> dict[str, Any]:
    """Load a sharded checkpoint into the (sharded) model and optimizer on any number of ranks; returns its meta.
    Parameters that had no AdamW state when it was saved (c_m∅ before its first use) get none now either."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    options = _options(frozen_backbone)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
    saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    stateless = {fqn for fqn in optim_sd["state"] if f"optim.state.{fqn}.step" not in saved}
    optim_sd["state"] = {k: v for k, v in optim_sd["state"].items() if k not in stateless}
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=options)
    names = {p: n for n, p in model.named_parameters()}
    for param in list(optimizer.state):
        if names.get(param) in stateless:
            del optimizer.state[param]
    return json.loads((path / META_NAME).read_text())


def export_sharded(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Consolidate a sharded checkpoint's model weights into one `pipeline.core.checkpoints` safetensors file (no
    optimizer state) in ``out_dir`` (default: the ``checkpoints`` folder above it), in one process: each tensor
    is allocated at its full size from the DCP metadata and read once; no model is built."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from pipeline.core.checkpoints import save_checkpoint

    path = Path(path)
    if not (path / META_NAME).is_file():
        raise FileNotFoundError(f"{path} is not a complete sharded MV-DiT checkpoint (no {META_NAME})")
    meta = json.loads((path / META_NAME).read_text())
    saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    model_sd = {k[len("model."):]: torch.empty(m.size, dtype=m.properties.dtype) for k, m in saved.items()
                if k.startswith("model.") and isinstance(m, TensorStorageMetadata)}
    dcp.load({"model": model_sd}, checkpoint_id=str(path), no_dist=True)
    out_dir = Path(out_dir) if out_dir is not None else path.parent.parent
    return save_checkpoint(
        out_dir, meta["step"], nn.Module(), None, stats_mean=torch.tensor(meta["stats_mean"], dtype=torch.float64),
        stats_std=torch.tensor(meta["stats_std"]), sampler=meta["sampler"], train_config=meta["train_config"],
        tokenizer_config=meta["tokenizer_config"], extra=meta["extra"], keep=meta.get("keep", 3),
        backbone=meta.get("backbone"), model_state=model_sd,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Consolidate a sharded MV-DiT checkpoint into one safetensors file")
    parser.add_argument("sharded", help="a checkpoints/sharded/step_XXXXXXXX folder")
    parser.add_argument("--out", default=None, help="output folder (default: the checkpoints folder above it)")
    args = parser.parse_args(argv)
    print(export_sharded(args.sharded, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
