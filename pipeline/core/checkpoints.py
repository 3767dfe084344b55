"""Training checkpoints of 4DMoT and MV-DiT (App. A.2): safetensors + a SHA-256 checksum file, no pickle anywhere.

One checkpoint is one ``step_XXXXXXXX.safetensors`` file holding
- ``model.<name>``: the model state (weights and the EMA codebook buffers:
  codebook, cluster sizes, sums, reset window, step counter),
- ``buffer.<name>``: buffers left out of the state_dict (the release layout
  keeps its EMA state non-persistent), so that its training resumes exactly too,
- ``optimizer.state.<param>.<key>``: the optimizer's tensors (AdamW moments
  and step counters), flattened; their structure and every non-tensor value
  (param groups: lr, betas, ...) sit in the JSON metadata,
- ``stats.mean`` / ``stats.std``: the motion normalisation (so that a
  checkpoint alone tokenizes new motion),
and in the safetensors metadata one JSON document: format, step, sampler
state (seed, next step, clip fingerprint), training and tokenizer configs,
extra (loss curve).

Beside it, ``step_XXXXXXXX.safetensors.sha256`` in ``sha256sum`` format.
`load_checkpoint` hashes the file and refuses one whose hash differs (a torn
write, bit rot, a tampered file), naming the file. Files are written to a
temporary name and renamed, the checksum last, so a killed run never leaves a
checkpoint that `latest_checkpoint` would pick up half-written.

Memory: the state is written straight from the tensors (``safetensors.save_file``;
tensors on a GPU get one host copy) and hashed from the file in chunks; loading
reads each tensor once. A model with a frozen backbone (MV-DiT-18B) is saved with
``backbone=`` `pipeline.mvdit.factory.backbone_reference` (folder + SHA-256 of
its weight files): then only its trained weights are written, and the factory
checks the backbone files before it loads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

CHECKPOINT_FORMAT = "mtvcraft-4dmot-train/1"
_META_KEY = "mtvcraft"


class CorruptCheckpointError(ValueError):
    """A checkpoint whose bytes do not match its recorded SHA-256, or that cannot be parsed."""


@dataclass
class TrainingCheckpoint:
    """Everything a checkpoint holds, as tensors and plain JSON values."""

    path: Path
    step: int
    model_state: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    sampler: dict[str, int]
    train_config: dict[str, Any]
    tokenizer_config: dict[str, Any]
    stats_mean: torch.Tensor
    stats_std: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] | None = None  # {"path", "sha256"}: model_state holds only the trained weights


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.safetensors"


def checksum_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (its state_dict names have no ``module.``)."""
    return getattr(model, "module", model)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors by name, JSON structure pointing at them)."""
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        slot: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"optimizer.state.{pid}.{key}"
                tensors[name] = value
                slot[key] = {"tensor": name}
            else:
                slot[key] = {"value": value}
        structure["state"][str(pid)] = slot
    return tensors, structure


def _unflatten_optimizer(structure: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {
        int(pid): {key: tensors[v["tensor"]] if "tensor" in v else v["value"] for key, v in slot.items()}
        for pid, slot in structure["state"].items()
    }
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in structure["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    directory: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    *,
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    sampler: dict[str, int],
    train_config: dict[str, Any],
    tokenizer_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep: int = 3,
    backbone: dict[str, Any] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``step_XXXXXXXX.safetensors`` and its ``.sha256`` into ``directory``; keep the last ``keep``.

    ``backbone`` (`pipeline.mvdit.factory.backbone_reference`): write only the trainable parameters and record the frozen backbone's
    folder and checksum instead of its weights. ``model_state``: the full state to write instead of
    ``model.state_dict()`` (a sharded model's state gathered on this rank).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module = _unwrap(model)
    full = module.state_dict() if model_state is None else model_state
    state = full
    if backbone is not None and model_state is None:
        own = trained_names(module)
        state = {k: v for k, v in full.items() if k in own}
    tensors = {f"model.{k}": v for k, v in state.items()}
    tensors.update({f"buffer.{k}": v for k, v in module.named_buffers() if k not in full})
    structure = None
    if optimizer is not None:
        opt_tensors, structure = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    tensors["stats.mean"] = torch.as_tensor(stats_mean)
    tensors["stats.std"] = torch.as_tensor(stats_std)
    tensors = _host_tensors(tensors)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "sampler": sampler,
        "train_config": train_config,
        "tokenizer_config": tokenizer_config,
        "optimizer": structure,
        "extra": extra or {},
        "backbone": backbone,
    }
    path = directory / checkpoint_name(step)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    del tensors
    _fsync(tmp)
    digest = file_sha256(tmp)
    os.replace(tmp, path)
    atomic_write(checksum_path(path), f"{digest}  {path.name}\n".encode())
    prune_checkpoints(directory, keep)
    return path


def trained_names(module: nn.Module) -> set[str]:
    """The weights a checkpoint with a backbone reference stores: every trainable parameter and every one the
    backbone does not hold (motion attention, c_m∅ even when frozen, as the 18B's reused one)."""
    from models.mvdit.param_counts import parameter_group

    return {n for n, p in module.named_parameters() if p.requires_grad or parameter_group(n) != "backbone"}


def _host_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors that safetensors can write: no copy of a CPU tensor that owns its
    storage; a copy only for a GPU tensor, a view into a larger storage or a second name for the same data."""
    out, seen = {}, set()
    for name, value in tensors.items():
        value = value.detach().to("cpu").contiguous()
        storage = value.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != value.numel() * value.element_size():
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[name] = value
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    """SHA-256 of a file, read in 16 MiB chunks (a checkpoint is never held in memory to be hashed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints (file and checksum present) in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("step_*.safetensors") if checksum_path(p).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints with the files beside them (checksum, analytics)."""
    if keep < 1:
        return
    for old in list_checkpoints(directory)[:-keep]:
        checksum_path(old).unlink(missing_ok=True)  # first: a checkpoint without checksum is never loaded
        for sibling in Path(directory).glob(f"{old.stem}.*"):
            sibling.unlink(missing_ok=True)


def verify_file(path: str | Path) -> None:
    """Check the file against the SHA-256 in ``<file>.sha256`` (hashed in chunks), or raise naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (expected a step_XXXXXXXX.safetensors file)")
    sums = checksum_path(path)
    if not sums.is_file():
        raise CorruptCheckpointError(f"checkpoint {path} has no checksum file {sums.name}: refusing to load it")
    recorded = sums.read_text().split()
    expected = recorded[0] if recorded else ""
    actual = file_sha256(path)
    if actual != expected:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupted: its SHA-256 is {actual}, {sums.name} records {expected or 'nothing'}"
        )


def read_verified(path: str | Path) -> bytes:
    """The file's bytes, after `verify_file` (for small files read whole; checkpoints load tensor by tensor)."""
    verify_file(path)
    return Path(path).read_bytes()


def _metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a safetensors file (header: u64 length, then JSON)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        return json.loads(header["__metadata__"][_META_KEY])
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise CorruptCheckpointError(f"{path} is not a 4DMoT training checkpoint: {err}") from err


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, each read once into its own memory (no mapping of the file kept)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu", backend="pread") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors' own parse errors: a checkpoint that verifies but does not parse
        raise CorruptCheckpointError(f"{path} is not a readable safetensors checkpoint: {err}") from err


def load_checkpoint(path: str | Path) -> TrainingCheckpoint:
    """Verify and read a checkpoint written by `save_checkpoint` (safetensors only: no code runs)."""
    path = Path(path)
    verify_file(path)
    meta = _metadata(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    tensors = _read_tensors(path)
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    buffers = {k[len("buffer.") :]: v for k, v in tensors.items() if k.startswith("buffer.")}
    optimizer_state = _unflatten_optimizer(meta["optimizer"], tensors) if meta.get("optimizer") else None
    return TrainingCheckpoint(
        path=path,
        step=int(meta["step"]),
        model_state=model_state,
        buffers=buffers,
        optimizer_state=optimizer_state,
        sampler=meta["sampler"],
        train_config=meta["train_config"],
        tokenizer_config=meta["tokenizer_config"],
        stats_mean=tensors["stats.mean"],
        stats_std=tensors["stats.std"],
        extra=meta.get("extra", {}),
        backbone=meta.get("backbone"),
    )


def restore_model(model: nn.Module, ckpt: TrainingCheckpoint) -> None:
    """Load a checkpoint's weights (strictly; with a backbone reference, strictly the trainable ones) and its
    non-persistent buffers into ``model``."""
    module = _unwrap(model)
    if ckpt.backbone is None:
        module.load_state_dict(ckpt.model_state, strict=True)
    else:
        trained = sorted(trained_names(module))
        if sorted(ckpt.model_state) != trained:
            raise KeyError(f"{ckpt.path} holds the trained weights of another model: "
                           f"{sorted(set(ckpt.model_state) ^ set(trained))[:5]}")
        module.load_state_dict(ckpt.model_state, strict=False)
    restore_buffers(module, ckpt)


def restore_buffers(module: nn.Module, ckpt: TrainingCheckpoint) -> None:
    """Copy a checkpoint's non-persistent buffers (not in ``state_dict``) into ``module``; an unknown one is an error."""
    own = dict(module.named_buffers())
    for name, value in ckpt.buffers.items():
        if name not in own:
            raise KeyError(f"{ckpt.path}: buffer {name!r} does not exist in this model")
        own[name].copy_(value)


def load_unconditional_tokens(path: str | Path, tokenizer_checkpoint: str | Path,
                              setting: str = "unconditional_from") -> torch.Tensor:
    """c_m∅ (U*J, C) of an MV-DiT-6B `train_mvdit` checkpoint, for MV-DiT-18B to reuse (Sec. 3.3).

    The tokens live in the 4DMoT codebook's space, so a checkpoint trained on another 4DMoT than
    ``tokenizer_checkpoint`` (both with checksum files that differ) is refused; errors name ``setting``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{setting}: no MV-DiT-6B training checkpoint at {path}")
    ckpt = load_checkpoint(path)
    tokens = ckpt.model_state.get("unconditional_motion_token")
    if tokens is None:
        raise ValueError(f"{setting}: {path} holds no unconditional motion tokens (not a paper-layout MV-DiT)")
    theirs = ckpt.tokenizer_config.get("tokenizer_checkpoint", "")
    sums = [checksum_path(p) for p in (theirs, tokenizer_checkpoint)] if theirs else []
    if sums and all(s.is_file() for s in sums) and sums[0].read_text().split()[0] != sums[1].read_text().split()[0]:
        raise ValueError(f"{setting}: {path} was trained on the 4DMoT {theirs}, this run uses {tokenizer_checkpoint}; "
                         "c_m∅ only carries over with the same 4DMoT (Sec. 3.3 reuses both)")
    return tokens


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu"):
    """A trained 4DMoT in eval mode with its normaliser: ``(VQVAE, MotionNormalizer, TrainingCheckpoint)``."""
    from models.tokenizer import VQVAE, MotionNormalizer, TokenizerConfig

    ckpt = load_checkpoint(path)
    config = TokenizerConfig.from_dict(ckpt.tokenizer_config)
    model = VQVAE(config)
    restore_model(model, ckpt)
    normalizer = MotionNormalizer(ckpt.stats_mean, ckpt.stats_std, differential=config.differential, num_joints=config.num_joints)
    return model.to(device).eval(), normalizer.to(device), ckpt
