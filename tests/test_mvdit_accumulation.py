"""Gradient accumulation in MV-DiT training (``MVDiTTrainConfig.grad_accum_steps``, `sharding.optimizer_step`):
2 micro-batches of 2 (one process) or of 2 per rank (2 gloo ranks: FSDP2 with one reduce-scatter per step or
one per micro-batch, and DDP) give the parameters of one batch of the same windows, within 1e-5; c_m∅ moves on a
step where only the first micro-batch of one rank dropped motion and stays exactly where it was on a step where
none did; ``grad_accum_steps=1`` reproduces the training of the code before accumulation bit for bit; each
micro-batch draws from its own seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_mvdit_sharding import spawn, tiny_model
from test_train_mvdit import synthetic_samples
from tiny_models import tiny_tokenizer

from pipeline.core.step_schedule import step_seed
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import make_scheduler
from pipeline.mvdit.loop import SEED_STREAM, train_loop
from pipeline.mvdit.sharding import make_optimizer, optimizer_step
from pipeline.mvdit.train import prepare_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GLOBAL = 8


def global_batches():
    """Two steps of a global batch of 8: (noisy, reference, tokens, t, target, motion keep). Step 1 drops only
    sample 0 (the first micro-batch of the first rank), step 2 none."""
    g = torch.Generator().manual_seed(1)
    sched = make_scheduler()
    out = []
    for drop in (0, None):
        latents, noise = torch.randn(GLOBAL, 9, 4, 4, 4, generator=g), torch.randn(GLOBAL, 9, 4, 4, 4, generator=g)
        t = torch.randint(0, 1000, (GLOBAL,), generator=g)
        keep = torch.ones(GLOBAL, dtype=torch.bool)
        if drop is not None:
            keep[drop] = False
        out.append((sched.add_noise(latents, noise, t), torch.randn(GLOBAL, 1, 4, 4, 4, generator=g),
                    torch.randn(GLOBAL, 9 * 24, 64, generator=g), t, sched.get_velocity(latents, noise, t), keep))
    return out


def train(net, model, rows: list[slice], reduce_every_micro_batch: bool = False) -> list[torch.Tensor]:
    """Two optimizer steps, each over the micro-batches ``rows`` of the global batch; c_m∅ after each step."""
    optimizer = make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2)
    tokens = []
    for noisy, ref, motion, t, target, keep in global_batches():
        def micro(r):
            pred = net(noisy[r], ref[r], motion[r], t[r], motion_mask=keep[r]).sample
            return torch.nn.functional.mse_loss(pred, target[r]), keep[r]

        optimizer_step(net, model, optimizer, [lambda r=r: micro(r) for r in rows], max_grad_norm=0.5,
                       reduce_every_micro_batch=reduce_every_micro_batch)
        token = model.unconditional_motion_token
        tokens.append(token.full_tensor() if hasattr(token, "full_tensor") else token.detach().clone())
    return tokens


def state_of(model, tokens) -> dict[str, torch.Tensor]:
    state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    return {**{k: v.detach().contiguous() for k, v in state.items()}, "token.step1": tokens[0], "token.step2": tokens[1]}


def accumulate_ranks(rank: int, world: int, root: Path) -> None:
    """Per rank 4 samples as 2 micro-batches of 2, under FSDP2 and under DDP."""
    from torch.nn.parallel import DistributedDataParallel

    from pipeline.mvdit.sharding import shard_fsdp

    base = rank * GLOBAL // world
    rows = [slice(base, base + 2), slice(base + 2, base + 4)]
    model = shard_fsdp(tiny_model(), torch.device("cpu"))
    fsdp = state_of(model, train(model, model, rows))
    model = shard_fsdp(tiny_model(), torch.device("cpu"))
    fsdp_every = state_of(model, train(model, model, rows, reduce_every_micro_batch=True))
    model = tiny_model()
    ddp = state_of(model, train(DistributedDataParallel(model, find_unused_parameters=True), model, rows))
    if rank == 0:
        save_file(fsdp, str(root / "fsdp.safetensors"))
        save_file(ddp, str(root / "ddp.safetensors"))
        save_file(fsdp_every, str(root / "fsdp_every.safetensors"))


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    """One process, accumulation 1: each step one batch of all 8 samples."""
    model = tiny_model()
    return state_of(model, train(model, model, [slice(0, GLOBAL)]))


def assert_same_training(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(reference)
    for name, value in reference.items():
        # A bias added to every key shifts all of a query's logits equally (softmax ignores it): the true
        # gradient of the k-norm biases is 0, so AdamW steps them by +-lr on the sign of rounding noise.
        atol = 2 * 2 * 1e-3 if name.endswith("norm_k.bias") else 1e-5
        torch.testing.assert_close(ours[name], value, atol=atol, rtol=0, msg=name)
    # c_m∅: step 1 (only the first micro-batch dropped a sample) moves it; step 2 (no drop) leaves it exactly.
    assert not torch.equal(ours["token.step1"], tiny_model().unconditional_motion_token.detach())
    assert torch.equal(ours["token.step2"], ours["token.step1"])


def test_two_micro_batches_equal_one_batch_of_the_same_windows_on_one_process(reference):
    model = tiny_model()
    ours = state_of(model, train(model, model, [slice(0, 4), slice(4, 8)]))
    assert_same_training(ours, reference)
    assert not torch.equal(ours["proj_out.weight"], tiny_model().state_dict()["proj_out.weight"])


def test_two_micro_batches_per_rank_equal_one_batch_on_two_fsdp_and_ddp_ranks(reference, tmp_path):
    spawn(2, accumulate_ranks, tmp_path)
    for strategy in ("fsdp", "ddp", "fsdp_every"):  # fsdp_every: reduce-scatter on every micro-batch
        assert_same_training(load_file(tmp_path / f"{strategy}.safetensors"), reference)


def test_accumulated_gradient_is_the_mean_over_all_samples():
    """The gradient itself (AdamW would hide a constant factor such as a missing division by the micro-batch
    count): 2 micro-batches of 4 give the gradient of one batch of 8."""
    grads = []
    for rows in ([slice(0, GLOBAL)], [slice(0, 4), slice(4, 8)]):
        model = tiny_model()
        noisy, ref, motion, t, target, keep = global_batches()[0]
        micro = [lambda r=r: (torch.nn.functional.mse_loss(
            model(noisy[r], ref[r], motion[r], t[r], motion_mask=keep[r]).sample, target[r]), keep[r]) for r in rows]
        optimizer_step(model, model, torch.optim.SGD(model.parameters(), lr=0.0), micro, max_grad_norm=0.0)
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) and "unconditional_motion_token" in grads[0]
    for name, value in grads[0].items():
        torch.testing.assert_close(grads[1][name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_cm_null_follows_the_union_of_the_micro_batches_drop_masks():
    """Only the union decides: a drop in the first micro-batch alone moves c_m∅ (a rule reading the last
    micro-batch's mask would not), no drop anywhere leaves it exactly."""
    def step(keeps: list[list[bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        model = tiny_model()
        before = model.unconditional_motion_token.detach().clone()
        noisy, ref, motion, t, target, _ = global_batches()[0]
        micro = [lambda i=i, k=k: (torch.nn.functional.mse_loss(
            model(noisy[2 * i:2 * i + 2], ref[2 * i:2 * i + 2], motion[2 * i:2 * i + 2], t[2 * i:2 * i + 2],
                  motion_mask=torch.tensor(k)).sample, target[2 * i:2 * i + 2]), torch.tensor(k))
            for i, k in enumerate(keeps)]
        optimizer_step(model, model, make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2), micro, 0.0)
        return before, model.unconditional_motion_token.detach()

    before, after = step([[True, False], [True, True]])
    assert not torch.equal(before, after)
    before, after = step([[True, True], [True, True]])
    assert torch.equal(before, after)


# ---- the training loop ----------------------------------------------------------------------------------------
# The loss curve and a SHA-256 over the final weights of this 3-step run, recorded with the code before
# accumulation existed (commit 0aee8ee, torch 2.14.1, this machine): grad_accum_steps=1 must reproduce them exactly.
BEFORE_ACCUMULATION = {"curve": [2.4550046920776367, 1.7251853942871094, 1.3783202171325684],
                       "sha256": "2bf57e7f636c89d3ca90b104af7540758be10a76b7f6f30be28f0701c9249c4c"}


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def test_accumulation_1_trains_as_before_bit_for_bit(tokenizer_ckpt, tmp_path):
    import hashlib

    from pipeline.core.checkpoints import latest_checkpoint, load_checkpoint

    cfg = MVDiTTrainConfig.tiny(steps=3, log_every=1, checkpoint_every=3, motion_drop_prob=0.5)
    assert cfg.grad_accum_steps == 1
    train_loop(prepare_job(synthetic_samples(n=2), tokenizer_ckpt, None, cfg, tmp_path), log=lambda s: None)
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    digest = hashlib.sha256()
    for name in sorted(ckpt.model_state):
        digest.update(name.encode() + ckpt.model_state[name].contiguous().numpy().tobytes())
    assert [p["loss"] for p in ckpt.extra["loss_curve"]] == BEFORE_ACCUMULATION["curve"]
    assert digest.hexdigest() == BEFORE_ACCUMULATION["sha256"]


def test_each_micro_batch_draws_from_its_own_seed(tokenizer_ckpt, tmp_path, monkeypatch):
    import pipeline.mvdit.loop as train_mvdit

    seeds, real = [], train_mvdit.micro_step
    monkeypatch.setattr(train_mvdit, "micro_step", lambda parts, seed: seeds.append(seed) or real(parts, seed))
    cfg = MVDiTTrainConfig.tiny(steps=2, log_every=1, checkpoint_every=2, batch_size=1, grad_accum_steps=3)
    train_loop(prepare_job(synthetic_samples(n=2), tokenizer_ckpt, None, cfg, tmp_path), log=lambda s: None)
    assert seeds == [step_seed(0, step, 0, SEED_STREAM, micro) for step in range(2) for micro in range(3)]
    assert len(set(seeds)) == 6 and seeds[0] == step_seed(0, 0, 0, SEED_STREAM)  # micro 0: the seed without accumulation


def test_grad_accum_steps_must_be_positive():
    with pytest.raises(ValueError, match="grad_accum_steps must be >= 1"):
        MVDiTTrainConfig.tiny(grad_accum_steps=0)
