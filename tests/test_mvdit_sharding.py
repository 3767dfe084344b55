"""FSDP2 for MV-DiT on 2 CPU ranks (gloo, spawned processes, tiny model): one step equals the single-process
step on the same global batch; c_m∅ changes only on steps some rank used it; sharded checkpoints saved on 2
ranks resume on 2 (the uninterrupted run's weights) and on 1 (the same state); the export is one safetensors
file `animate` loads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port
from safetensors.torch import load_file, save_file
from test_train_mvdit import synthetic_samples
from tiny_models import tiny_tokenizer

from pipeline.core.checkpoints import load_checkpoint
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import build_model, make_scheduler, model_kwargs
from pipeline.mvdit.loop import train_loop
from pipeline.mvdit.train import prepare_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spawn(world: int, task, *args) -> None:
    """Run ``task(rank, world, *args)`` on ``world`` gloo ranks in spawned processes (fails if any rank fails)."""
    import torch.multiprocessing as mp

    mp.start_processes(_rank_main, args=(world, free_port(), task, args), nprocs=world, start_method="spawn")


def _rank_main(rank: int, world: int, port: int, task, args) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        task(rank, world, *args)
    finally:
        dist.destroy_process_group()


# ---- one step, 2 ranks vs 1 process ------------------------------------------------------------------------
def tiny_model():
    torch.manual_seed(0)
    model = build_model(model_kwargs(MVDiTTrainConfig.tiny(), 64, 4))
    model.set_mean_joints(np.zeros((24, 3)))
    for attn in model.motion_modules().values():  # zero-initialised output: give c_m∅ a path to the loss
        torch.nn.init.normal_(attn.to_out[0].weight, std=0.05)
    return model


def global_batches():
    """Two steps of a global batch of 4: (noisy, reference, tokens, t, target, motion keep). Step 1 drops one
    sample (rank 1's), step 2 none."""
    g = torch.Generator().manual_seed(1)
    sched = make_scheduler()
    out = []
    for keep in ([True, True, True, False], [True, True, True, True]):
        latents, noise = torch.randn(4, 9, 4, 4, 4, generator=g), torch.randn(4, 9, 4, 4, 4, generator=g)
        t = torch.randint(0, 1000, (4,), generator=g)
        out.append((sched.add_noise(latents, noise, t), torch.randn(4, 1, 4, 4, 4, generator=g),
                    torch.randn(4, 9 * 24, 64, generator=g), t, sched.get_velocity(latents, noise, t),
                    torch.tensor(keep)))
    return out


def run_steps(model, batches, rows: slice, max_grad_norm: float) -> list[dict[str, torch.Tensor]]:
    """The training loop's step (AdamW as App. A.2, `finish_gradients`) on ``rows`` of each global batch;
    returns c_m∅ after each step (unsharded copies)."""
    from pipeline.mvdit.sharding import finish_gradients, make_optimizer

    optimizer = make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2)  # the tiny config's AdamW
    tokens = []
    for noisy, ref, motion, t, target, keep in batches:
        pred = model(noisy[rows], ref[rows], motion[rows], t[rows], motion_mask=keep[rows]).sample
        loss = torch.nn.functional.mse_loss(pred, target[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        finish_gradients(model, keep[rows], max_grad_norm)
        optimizer.step()
        token = model.unconditional_motion_token
        tokens.append(token.full_tensor() if hasattr(token, "full_tensor") else token.detach().clone())
    return tokens


def fsdp_steps(rank: int, world: int, out: str) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from pipeline.mvdit.sharding import shard_fsdp

    model = shard_fsdp(tiny_model(), torch.device("cpu"))
    per_rank = 4 // world
    tokens = run_steps(model, global_batches(), slice(rank * per_rank, (rank + 1) * per_rank), max_grad_norm=0.5)
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        save_file({**state, "token.step1": tokens[0], "token.step2": tokens[1]}, out)


# ---- sharded checkpoints through the training loop ----------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def fsdp_job(tokenizer: Path, out: Path, steps: int) -> dict:
    cfg = MVDiTTrainConfig.tiny(strategy="fsdp", steps=steps, checkpoint_every=2, log_every=1, keep_checkpoints=5,
                                motion_drop_prob=0.5)
    return prepare_job(synthetic_samples(n=2), tokenizer, None, cfg, out)


def train_ranks(rank: int, world: int, job: dict) -> None:
    train_loop(job, rank=rank, log=lambda s: None)


def gather_loaded(rank: int, world: int, job: dict, sharded: str, out: str) -> None:
    """Load a sharded checkpoint on ``world`` ranks and write the full model and AdamW state (rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    from pipeline.mvdit.sharding import load_sharded, make_optimizer, shard_fsdp

    model = shard_fsdp(build_model(job["model_kwargs"]), torch.device("cpu"))
    optimizer = make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2)
    load_sharded(sharded, model, optimizer)
    model_sd, optim_sd = get_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        tensors = {f"model.{k}": v for k, v in model_sd.items()}
        tensors.update({f"optim.{p}.{k}": v for p, s in optim_sd["state"].items() for k, v in s.items()})
        save_file({k: v.contiguous() for k, v in tensors.items()}, out)


def two_ranks(rank: int, world: int, tokenizer: Path, root: Path) -> None:
    """Everything the tests need from 2 ranks, in one spawn (starting ranks costs more than the tiny steps)."""
    fsdp_steps(rank, world, str(root / "fsdp.safetensors"))
    train_ranks(rank, world, fsdp_job(tokenizer, root / "straight", 4))
    train_ranks(rank, world, fsdp_job(tokenizer, root / "resumed", 2))
    gather_loaded(rank, world, fsdp_job(tokenizer, root / "x", 2), str(half_way(root)), str(root / "on2.safetensors"))
    train_ranks(rank, world, fsdp_job(tokenizer, root / "resumed", 4))


def one_rank(rank: int, world: int, tokenizer: Path, root: Path) -> None:
    """The 2-rank step-2 shards on 1 rank: gathered, then trained on to step 4."""
    gather_loaded(rank, world, fsdp_job(tokenizer, root / "x", 2), str(half_way(root)), str(root / "on1.safetensors"))
    train_ranks(rank, world, fsdp_job(tokenizer, root / "one", 4))
    frozen_backbone_round_trip(rank, world, root)


def frozen_backbone_round_trip(rank: int, world: int, root: Path) -> None:
    """The 18B's case at toy size: a Wan model with a frozen backbone from a diffusers folder, sharded; its
    sharded checkpoint holds only the trained weights, loads into a fresh sharded model, and exports."""
    from diffusers import WanTransformer3DModel

    from models.mvdit.wan import MVDiTWanConfig
    from pipeline.mvdit.factory import backbone_reference, build_from_backbone
    from pipeline.mvdit.sharding import export_sharded, load_sharded, make_optimizer, save_sharded, shard_fsdp

    tiny = MVDiTWanConfig.tiny()
    torch.manual_seed(3)
    WanTransformer3DModel(**tiny.backbone).save_pretrained(root / "wan")
    ref = backbone_reference(root / "wan")
    models = []
    for seed in (4, 5):  # two different fresh motion modules: the load must replace the second's
        torch.manual_seed(seed)
        model = shard_fsdp(build_from_backbone(tiny.model_kwargs(), root / "wan"), torch.device("cpu"))
        models.append((model, make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2)))
    meta = {"sampler": {"seed": 0}, "train_config": {}, "tokenizer_config": {"mvdit": tiny.model_kwargs()},
            "extra": {}, "stats_mean": np.zeros((24, 3)).tolist(), "stats_std": [1.0] * 3, "backbone": ref}
    path = save_sharded(root / "wan_ckpt", 1, *models[0], meta, frozen_backbone=True)
    load_sharded(path, *models[1], frozen_backbone=True)
    full = [{k: v.full_tensor() for k, v in m.state_dict().items()} for m, _ in models]
    save_file({f"{i}.{k}": v for i, state in enumerate(full) for k, v in state.items()},
              str(root / "wan_states.safetensors"))
    export_sharded(path, root / "wan_export")


def half_way(root: Path) -> Path:
    return root / "resumed" / "checkpoints" / "sharded" / "step_00000002"


@pytest.fixture(scope="module")
def runs(tokenizer_ckpt, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp")
    spawn(2, two_ranks, tokenizer_ckpt, root)
    (root / "one" / "checkpoints" / "sharded").mkdir(parents=True)
    os.symlink(half_way(root), root / "one" / "checkpoints" / "sharded" / "step_00000002")
    spawn(1, one_rank, tokenizer_ckpt, root)
    return root


def test_fsdp_step_on_two_ranks_equals_one_process_and_cm_null_moves_only_when_used(runs):
    sharded = load_file(runs / "fsdp.safetensors")
    single = tiny_model()
    start = single.unconditional_motion_token.detach().clone()
    tokens = run_steps(single, global_batches(), slice(0, 4), max_grad_norm=0.5)
    state = single.state_dict()
    assert set(state) == set(sharded) - {"token.step1", "token.step2"}
    for name, value in state.items():
        # A bias added to every key shifts all of a query's logits equally (softmax ignores it): the true
        # gradient of the k-norm biases is 0, so AdamW steps them by +-lr on the sign of rounding noise.
        atol = 2 * 2 * 1e-3 if name.endswith("norm_k.bias") else 1e-5
        torch.testing.assert_close(sharded[name], value, atol=atol, rtol=0, msg=name)
    # c_m∅: step 1 (only rank 1 dropped a sample) moves it on both ranks; step 2 (no drop anywhere) leaves it
    # exactly as it was, in both runs, while the other weights move on.
    assert not torch.equal(sharded["token.step1"], start)
    assert torch.equal(sharded["token.step2"], sharded["token.step1"]) and torch.equal(tokens[1], tokens[0])
    assert not torch.allclose(state["proj_out.weight"], tiny_model().state_dict()["proj_out.weight"])


def test_sharded_checkpoints_resume_on_two_ranks_to_the_uninterrupted_weights(runs):
    half = half_way(runs)
    assert (half / "mtvcraft.json").is_file() and len(list(half.glob("*.distcp"))) == 2  # one file per rank
    a = load_checkpoint(runs / "straight" / "checkpoints" / "step_00000004.safetensors")
    b = load_checkpoint(runs / "resumed" / "checkpoints" / "step_00000004.safetensors")
    assert a.extra["loss_curve"] == b.extra["loss_curve"] and len(a.extra["loss_curve"]) == 4
    for name, value in a.model_state.items():
        assert torch.equal(value, b.model_state[name]), name
    assert a.optimizer_state is None and set(a.model_state) == set(build_model(a.tokenizer_config["mvdit"]).state_dict())


def test_sharded_checkpoints_resume_on_one_rank(runs):
    # The 2-rank step-2 shards load on 1 rank into the same weights and AdamW moments as on 2 ranks ...
    on2, on1 = load_file(runs / "on2.safetensors"), load_file(runs / "on1.safetensors")
    assert set(on1) == set(on2) and any(k.endswith("exp_avg_sq") for k in on1)
    for name in on2:
        assert torch.equal(on1[name], on2[name]), name
    # ... and training goes on there on 1 rank to the end, with a consolidated export.
    a = load_checkpoint(runs / "straight" / "checkpoints" / "step_00000004.safetensors")
    c = load_checkpoint(runs / "one" / "checkpoints" / "step_00000004.safetensors")
    assert [p["step"] for p in c.extra["loss_curve"]] == [1, 2, 3, 4]
    assert c.extra["loss_curve"][:2] == a.extra["loss_curve"][:2]


def test_export_is_what_animate_loads(runs, tmp_path):
    from pipeline.animation.loading import load_train_checkpoint
    from pipeline.mvdit.sharding import export_sharded, list_sharded

    ckpt_dir = runs / "straight" / "checkpoints"
    export = load_checkpoint(ckpt_dir / "step_00000004.safetensors")
    again = export_sharded(list_sharded(ckpt_dir)[-1], tmp_path)  # the offline CLI's path
    for name, value in load_checkpoint(again).model_state.items():
        assert torch.equal(value, export.model_state[name]), name
    pipe = load_train_checkpoint(again)
    for name, value in pipe.model.state_dict().items():
        assert torch.equal(value, export.model_state[name]), name


def test_frozen_backbone_sharded_checkpoint_holds_only_the_trained_weights(runs):
    from pipeline.mvdit.factory import is_backbone_key, model_from_checkpoint

    states = load_file(runs / "wan_states.safetensors")
    first = {k[2:]: v for k, v in states.items() if k.startswith("0.")}
    second = {k[2:]: v for k, v in states.items() if k.startswith("1.")}
    assert any(not is_backbone_key(k) for k in first)
    for name, value in first.items():  # loaded: the trained weights replaced, the backbone as it was
        assert torch.equal(second[name], value), name
    saved = sorted(p.name for p in (runs / "wan_ckpt" / "sharded" / "step_00000001").iterdir())
    export = load_checkpoint(runs / "wan_export" / "step_00000001.safetensors")
    assert export.backbone["path"] == str((runs / "wan").resolve()) and "__0_0.distcp" in saved
    assert sorted(export.model_state) == sorted(k for k in first if not is_backbone_key(k))
    model = model_from_checkpoint(export)  # the backbone from its folder, the trained weights from the file
    for name, value in model.state_dict().items():
        assert torch.equal(value, first[name]), name
