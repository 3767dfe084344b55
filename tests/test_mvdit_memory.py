"""Per-GPU memory of MV-DiT at full size (issue 13, item 3): the FSDP2 sharding arithmetic against a real
2-rank gloo run, additivity of the measured activations per block, the cached measurements, the verdicts."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.wan import TEXT_TOKENS, MVDiTWanConfig
from pipeline.mvdit import memory
from pipeline.mvdit.live_bytes import LiveBytes
from pipeline.mvdit.memory import (
    ADAMW_STEP_TEMP,
    GIB,
    PAPER_ALTERNATIVES,
    PAPER_PLANS,
    estimate,
    fsdp2_bytes,
    load_cache,
    local_rows,
    measure_activations,
    measure_activations_memtracker,
    measured_layers,
    with_layers,
)

REPO = Path(__file__).resolve().parents[1]


def test_local_rows_follow_torch_chunk():
    for rows in range(14):
        for world in range(1, 5):
            chunks = torch.chunk(torch.empty(rows), world) if rows else ()
            for rank in range(world):
                want = chunks[rank].numel() if rank < len(chunks) else 0
                assert local_rows(rows, world, rank) == want, (rows, world, rank)


# ---- FSDP2 on 2 gloo ranks ------------------------------------------------------------------------------
def tiny(kind: str):
    """The tiny 6B (every parameter trainable, fp32) or the tiny 18B (frozen backbone in bf16, trainable fp32),
    the dtypes of training."""
    torch.manual_seed(0)
    if kind == "6b":
        return MVDiTConfig.tiny(num_layers=3).build()
    model = MVDiTWanConfig.tiny(num_layers=4).build()
    for p in model.parameters():
        p.data = p.data.float() if p.requires_grad else p.data.to(torch.bfloat16)
    return model


def tiny_step(kind: str, model) -> torch.Tensor:
    """One forward pass of a batch of 2 whose second sample drops its motion (c_m∅ used, as in training)."""
    g = torch.Generator().manual_seed(1)
    keep = torch.tensor([True, False])
    if kind == "6b":
        out = model(torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 1, 4, 8, 8, generator=g),
                    torch.randn(2, 3 * 24, 64, generator=g), torch.tensor([10, 20]), motion_mask=keep,
                    mean_joints=np.zeros((24, 3)))
    else:
        c = model.config
        out = model(torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 4, 3, 8, 8, generator=g),
                    torch.randn(2, 3 * 24, 64, generator=g), torch.tensor([10, 20]),
                    encoder_hidden_states=torch.randn(2, TEXT_TOKENS, c.text_dim, generator=g),
                    encoder_hidden_states_image=torch.randn(2, 4, c.image_dim, generator=g), motion_mask=keep,
                    mean_joints=np.zeros((24, 3)))
    return out.sample.float().pow(2).mean()


def fsdp2_worker(rank: int, world: int, port: int, out: str) -> None:
    """Shard each tiny model with FSDP2 (one unit per block + the root, reshard_after_forward=False, bf16 params,
    fp32 reduce) and write this rank's bytes: shards, unsharded parameters after forward, gradients, AdamW."""
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    result = {}
    for kind in ("6b", "18b"):
        model = tiny(kind)
        # Blocks do not re-cast their inputs: the root did, and the motion condition rides in a tuple subclass.
        block_policy = MixedPrecisionPolicy(torch.bfloat16, torch.float32, cast_forward_inputs=False)
        for block in memory.blocks_of(model):
            fully_shard(block, reshard_after_forward=False, mp_policy=block_policy)
        fully_shard(model, reshard_after_forward=False, mp_policy=MixedPrecisionPolicy(torch.bfloat16, torch.float32))
        shards = sum(p.to_local().nbytes for p in model.parameters())
        loss = tiny_step(kind, model)
        unsharded = sum(p.nbytes for p in model.parameters() if not isinstance(p, DTensor))
        loss.backward()
        grads = sum(p.grad.to_local().nbytes for p in model.parameters() if p.grad is not None)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        opt.step()
        moments = sum(v.to_local().nbytes for s in opt.state.values() for k, v in s.items() if k != "step")
        result[kind] = {"params": shards, "allgather": unsharded, "grads": grads, "optimizer": moments}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sharding_arithmetic_matches_a_2_rank_fsdp2_run(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(fsdp2_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    for rank in range(2):
        measured = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for kind in ("6b", "18b"):
            with torch.device("meta"):
                model = tiny(kind) if kind == "6b" else MVDiTWanConfig.tiny(num_layers=4).build()
            want = fsdp2_bytes(model, world=2, rank=rank, reshard_after_forward=False)
            got = measured[kind]
            assert got == {k: getattr(want, k) for k in got}, (kind, rank)
    # the tiny 18B's frozen backbone: bf16 shards, no gradients or moments
    assert measured["18b"]["grads"] < measured["18b"]["params"] / 2


def test_adamw_moments_and_step_temporaries():
    """AdamW (foreach, as on GPUs) holds 8 bytes per fp32 parameter and allocates at most ADAMW_STEP_TEMP more
    during its step (MemTracker, real tensors)."""
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 64))
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), foreach=True)
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker:
        model(torch.randn(1, 64)).sum().backward()
        opt.step()
        state = tracker.get_tracker_snapshot("current")
    peak = tracker.get_tracker_snapshot("peak")
    moments = next(iter(state.values()))[_MemRefType.OPT]
    assert 8 * n <= moments <= 8 * n + 4096  # + the step counters, rounded to 512-byte blocks
    assert next(iter(peak.values()))[_MemRefType.OPT] - moments <= ADAMW_STEP_TEMP * n + 4096


# ---- activations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [MVDiTConfig.tiny(), MVDiTWanConfig.tiny()], ids=["6b", "18b"])
@pytest.mark.parametrize("checkpointing", [True, False], ids=["ckpt", "full"])
def test_activations_grow_by_the_same_bytes_per_period_of_blocks(cfg, checkpointing):
    """What lets `activation_bytes` measure p and 2p blocks and extend to the full depth: each period of p blocks
    (here the paper layout's 2) adds the same bytes (fake-mode MemTracker, toy width)."""
    a = [measure_activations(with_layers(cfg, n), 17, 32, 48, 2, checkpointing) for n in (2, 4, 6, 8)]
    steps = np.diff(a)
    assert steps.min() > 0 and steps.max() - steps.min() <= 0.01 * steps.mean(), a


def test_live_bytes_counts_storages_while_alive():
    """`LiveBytes` on real tensors: bytes of the storages made under it, a view adds nothing, freed when the last
    tensor on a storage dies; a parameter's gradient leaves the running total at its hook."""
    x = torch.zeros(1000)  # made before: not counted
    with LiveBytes() as live:
        y = x * 2
        v = y[:10]  # a view: same storage
        z = y + 1
        assert live.live == 8000 and v.numel() == 10
        del y, v
        assert live.live == 4000
        del z
    assert (live.live, live.peak) == (0, 8000)
    lin = torch.nn.Linear(100, 10, bias=False)
    with LiveBytes(lin) as live:
        loss = lin(torch.ones(1, 100)).sum()
        loss.backward()
        del loss
        assert live.live == 0 and lin.weight.grad is not None  # the 4000-byte gradient is not in the total
    assert live.peak >= 4000


@pytest.mark.parametrize("cfg", [MVDiTConfig.tiny(), MVDiTWanConfig.tiny()], ids=["6b", "18b"])
def test_checkpointed_blocks_keep_one_block_input_each(cfg):
    """With per-block checkpointing each block adds its bf16 input (B x tokens x width x 2 bytes) and nothing
    else to the peak (closed form; steady-state periods, `measured_layers`). ``MemTracker`` adds another block
    input per 6B block (its hooks hold input gradients); without checkpointing the two agree."""
    frames, height, width, batch = 17, 32, 48, 2
    period = 2
    a, b = measured_layers(period, True)
    live = [measure_activations(with_layers(cfg, n), frames, height, width, batch, True) for n in (a, b)]
    block_input = batch * memory.tokens(cfg, frames, height, width) * cfg.backbone["num_attention_heads"] * \
        cfg.backbone["attention_head_dim"] * 2
    assert live[1] - live[0] == period * block_input
    if isinstance(cfg, MVDiTConfig):
        tracked = [measure_activations_memtracker(with_layers(cfg, n), frames, height, width, batch, True)
                   for n in (a, b)]
        assert tracked[1] - tracked[0] == 2 * period * block_input
    full = with_layers(cfg, period)
    live_full = measure_activations(full, frames, height, width, batch, False)
    tracked_full = measure_activations_memtracker(full, frames, height, width, batch, False)
    # equal for the 6B; the 18B differs by a constant 18 KB here (1 MiB at full size, not per block)
    assert abs(live_full - tracked_full) <= 0.01 * live_full, (live_full, tracked_full)


def test_cached_measurement_matches_a_fresh_one():
    """The cache holds what `measure_activations` measures now (checkpointed: 4 blocks of the 6B) and, without
    checkpointing, what ``MemTracker`` measured (2 blocks): the two trackers agree there."""
    cached = load_cache()
    cfg = memory.model_config("6b", "paper")
    for checkpointing in (True, False):
        layers = measured_layers(2, checkpointing)[0]
        key = memory.measurement_key("6b", "paper", 49, 480, 720, 1, checkpointing, layers)
        assert measure_activations(with_layers(cfg, layers), 49, 480, 720, 1, checkpointing) == cached[key], key


def test_the_paper_settings_fit_only_with_checkpointing():
    measured = load_cache()
    for plan in PAPER_PLANS:
        e = estimate(plan.setting, measured, reshard_after_forward=plan.reshard_after_forward)
        assert e.peak <= 72 * GIB, (plan, e.peak / GIB)
        assert e.peak_full > 80 * GIB, (plan, e.peak_full / GIB)  # the estimator can say no
        assert plan.setting.batch * plan.grad_accum * 8 == 32  # App. A.2's global batch
    six = estimate(PAPER_PLANS[0].setting, measured, world=1)  # unsharded: more than one GPU holds
    assert not six.fits and six.state.params == 4 * sum(p.numel() for p in memory.meta_model("6b", "paper").parameters())
    # the 18B at batch 4 per GPU under ZeRO-2: the 16B backbone's bf16 all-gather buffers + 4 clips do not fit
    zero2 = estimate(PAPER_ALTERNATIVES[0].setting, measured)
    assert not zero2.fits and zero2.state.allgather > 30 * GIB


def test_cli_table_and_check(capsys):
    assert memory.main(["--check"]) == 0
    out = capsys.readouterr().out
    assert "MV-DiT-18B" in out and "MV-DiT-7B (release)" in out and out.count("\n") > 64
    checked = [line for line in out.splitlines() if line.startswith("paper setting (checked)")]
    assert len(checked) == 2 and all("global batch 32" in line and "fits" in line for line in checked)
    assert "MV-DiT-18B 49x480x832: batch 1 per GPU x 8 GPUs x grad accum 4 = global batch 32" in checked[1]
    assert memory.main(["--check", "--gpu-gib", "24"]) == 1  # a small GPU: the paper settings do not fit
    assert memory.main(["--only", "*"]) == 2  # --only needs --measure


def test_gpu_check_dry_run(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check

    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "gc.json"), "--steps", "1", "--sample-steps", "1"]) == 0
    rows = json.loads((tmp_path / "gc.json").read_text())["rows"]
    trained = [r for r in rows if "step_s" in r]
    assert {r["model"] for r in trained} == set(gpu_check.DRY_SETTINGS)
    assert all(r["predicted_activation_bytes"] > 0 and r["step_s"] > 0 for r in trained)
    assert any("sampling_s" in r for r in rows) and (tmp_path / "gc.md").is_file()
    if not torch.cuda.is_available():
        assert gpu_check.main(["--out", str(tmp_path / "none.json")]) == 2
        assert not (tmp_path / "none.json").exists()
