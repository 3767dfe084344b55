"""MV-DiT loaded under FSDP2 without a full copy per rank (`factory.build_sharded_from_backbone`), on 2 gloo ranks
(spawned processes, tiny models saved in the diffusers layout): rank 0 alone opens the backbone's safetensors; the
sharded parameters and every rank's non-persistent buffers equal the single-process `build_from_backbone` load
exactly, the fresh modules (motion attention, c_m∅, zero input channels) included although rank 1 starts from
another random state; one training step after it equals the step after today's load (every rank reads, then
`shard_fsdp`), and so does a `train_loop` run from a backbone folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel
from safetensors.torch import load_file, save_file
from test_mvdit_sharding import spawn
from test_train_mvdit import synthetic_samples
from tiny_models import tiny_tokenizer

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.wan import MVDiTWanConfig
from pipeline.core.checkpoints import load_checkpoint
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import build_from_backbone
from pipeline.mvdit.loop import train_loop
from pipeline.mvdit.train import prepare_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEED = 7


def cases(root: Path) -> dict[str, tuple[dict, Path, torch.dtype]]:
    """name -> (MV-DiT kwargs, backbone folder, frozen dtype): the 6B's case (text-to-video CogVideoX, all
    trainable, gains zero input channels) and the 18B's (Wan, frozen backbone, RoPE buffers, norm4)."""
    return {"cogvideox": (MVDiTConfig.tiny().model_kwargs(), root / "cogvideox", torch.float32),
            "wan": (MVDiTWanConfig.tiny().model_kwargs(), root / "wan", torch.float32)}


def save_backbones(root: Path) -> None:
    torch.manual_seed(1)
    CogVideoXTransformer3DModel(**{**MVDiTConfig.tiny().backbone, "in_channels": 4}).save_pretrained(
        root / "cogvideox" / "transformer")
    WanTransformer3DModel(**MVDiTWanConfig.tiny().backbone).save_pretrained(root / "wan")


def prepare(model) -> None:
    model.set_mean_joints(np.zeros((24, 3)))


def loss_of(kind: str, model, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of ``rows`` of a fixed global batch of 4 whose last sample drops its motion (c_m∅ used)."""
    g = torch.Generator().manual_seed(2)
    keep = torch.tensor([True, True, True, False])
    if kind == "cogvideox":
        inputs = (torch.randn(4, 3, 4, 8, 8, generator=g), torch.randn(4, 1, 4, 8, 8, generator=g))
        out = model(inputs[0][rows], inputs[1][rows], torch.randn(4, 3 * 24, 64, generator=g)[rows],
                    torch.tensor([10, 20, 30, 40])[rows], motion_mask=keep[rows])
    else:
        c = model.config
        tensors = [torch.randn(4, 4, 3, 8, 8, generator=g), torch.randn(4, 4, 3, 8, 8, generator=g),
                   torch.randn(4, 3 * 24, 64, generator=g), torch.randn(4, 512, c.text_dim, generator=g),
                   torch.randn(4, 4, c.image_dim, generator=g)]
        noisy, ref, motion, text, image = (t[rows] for t in tensors)
        out = model(noisy, ref, motion, torch.tensor([10.0, 20, 30, 40])[rows], encoder_hidden_states=text,
                    encoder_hidden_states_image=image, motion_mask=keep[rows])
    return out.sample.float().pow(2).mean(), keep[rows]


def one_step(kind: str, model, rows: slice) -> None:
    from pipeline.mvdit.sharding import make_optimizer, optimizer_step

    optimizer = make_optimizer(model, 1e-3, (0.9, 0.99), 1e-2)
    optimizer_step(model, model, optimizer, [lambda: loss_of(kind, model, rows)], max_grad_norm=0.0)


def full_state(model) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers gathered (``full_tensor``), plus this rank's non-persistent buffers."""
    state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    extra = {f"buffer.{k}": v for k, v in model.named_buffers() if k not in state}
    return {k: v.detach().clone().contiguous() for k, v in {**state, **extra}.items()}


def load_ranks(rank: int, world: int, root: Path, tokenizer: str) -> None:
    import safetensors

    from pipeline.mvdit.factory import build_sharded_from_backbone
    from pipeline.mvdit.sharding import shard_fsdp

    opened = []
    real_open = safetensors.safe_open

    def spy(path, *args, **kwargs):  # the factory's reader (`read_weights`) opens files through this
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    safetensors.safe_open = spy
    shard = lambda m: shard_fsdp(m, torch.device("cpu"))  # noqa: E731
    rows = slice(2 * rank, 2 * rank + 2)
    for kind, (kwargs, folder, frozen) in cases(root).items():
        torch.manual_seed(SEED + rank)  # rank 1's own random state differs: its fresh modules must come from rank 0
        model = build_sharded_from_backbone(kwargs, folder, "cpu", frozen, shard, prepare)
        loaded = full_state(model)
        one_step(kind, model, rows)
        stepped = full_state(model)
        safetensors.safe_open = real_open  # today's path: every rank reads the backbone, then shards
        torch.manual_seed(SEED)
        today = build_from_backbone(kwargs, folder, "cpu", frozen)
        prepare(today)
        shard(today)
        one_step(kind, today, rows)
        safetensors.safe_open = spy
        stepped_today = full_state(today)
        if rank == 0:
            save_file(loaded, str(root / f"{kind}.loaded.safetensors"))
            save_file({**{f"new.{k}": v for k, v in stepped.items()},
                       **{f"today.{k}": v for k, v in stepped_today.items()}}, str(root / f"{kind}.step.safetensors"))
        buffers = {k: v for k, v in loaded.items() if k.startswith("buffer.")}
        if buffers:
            save_file(buffers, str(root / f"{kind}.buffers{rank}.safetensors"))
    (root / f"opened{rank}.json").write_text(json.dumps(opened))
    safetensors.safe_open = real_open
    train_from_backbone(rank, root, tokenizer)


def train_from_backbone(rank: int, root: Path, tokenizer: str) -> None:
    """`train_loop` from the CogVideoX folder on 2 FSDP2 ranks: as it loads now (rank 0), and as it loaded
    before (every rank `build_from_backbone`, then `shard_fsdp`)."""
    import pipeline.mvdit.factory as factory

    cfg = MVDiTTrainConfig.tiny(strategy="fsdp", backbone=str(root / "cogvideox"), steps=2, checkpoint_every=2,
                                motion_drop_prob=0.5)
    job = prepare_job(synthetic_samples(n=2), tokenizer, None, cfg, root / "train_rank0")
    train_loop(job, rank=rank, log=lambda s: None)

    def every_rank(kwargs, backbone, device, frozen_dtype, shard, prepare):
        model = build_from_backbone(kwargs, backbone, device, frozen_dtype)
        prepare(model)
        return shard(model)

    factory.build_sharded_from_backbone = every_rank
    train_loop({**job, "out_dir": str(root / "train_every_rank")}, rank=rank, log=lambda s: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rank0_load")
    save_backbones(root)
    spawn(2, load_ranks, root, tiny_tokenizer(root / "tokenizer"))
    return root


@pytest.mark.parametrize("kind", ["cogvideox", "wan"])
def test_sharded_load_equals_the_single_process_load_exactly(runs, kind):
    kwargs, folder, frozen = cases(runs)[kind]
    torch.manual_seed(SEED)
    single = build_from_backbone(kwargs, folder, "cpu", frozen)
    expected = {k: v for k, v in single.state_dict().items()}
    expected.update({f"buffer.{k}": v for k, v in single.named_buffers() if k not in expected})
    loaded = load_file(runs / f"{kind}.loaded.safetensors")
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    # The fresh modules are random, so equal values mean rank 1's shards came from rank 0 (it was seeded apart).
    assert single.unconditional_motion_token.std() > 0.01
    buffers = [k for k in expected if k.startswith("buffer.")]
    assert bool(buffers) == (kind == "wan")  # Wan's RoPE tables: not in a state dict, right on rank 1 too
    if buffers:
        on_rank1 = load_file(runs / f"{kind}.buffers1.safetensors")
        for name in buffers:
            assert torch.equal(on_rank1[name], expected[name]), name


def test_rank_1_never_opens_the_backbone_weights(runs):
    opened = [json.loads((runs / f"opened{r}.json").read_text()) for r in (0, 1)]
    assert opened[1] == []
    assert {Path(p).parent.name for p in opened[0]} == {"transformer", "wan"}  # the spy sees rank 0's reads


@pytest.mark.parametrize("kind", ["cogvideox", "wan"])
def test_one_step_after_the_sharded_load_equals_the_step_after_todays_load(runs, kind):
    states = load_file(runs / f"{kind}.step.safetensors")
    new = {k[4:]: v for k, v in states.items() if k.startswith("new.")}
    today = {k[6:]: v for k, v in states.items() if k.startswith("today.")}
    loaded = load_file(runs / f"{kind}.loaded.safetensors")
    assert set(new) == set(today)
    for name, value in today.items():
        torch.testing.assert_close(new[name], value, atol=1e-5, rtol=0, msg=name)
    moved = [k for k in loaded if not torch.equal(loaded[k], new[k])]
    assert any("motion" in k or "attn0" in k for k in moved)  # the step trained the motion attention


def test_train_loop_from_a_backbone_on_two_ranks_trains_as_with_todays_load(runs):
    ours = load_checkpoint(runs / "train_rank0" / "checkpoints" / "step_00000002.safetensors")
    before = load_checkpoint(runs / "train_every_rank" / "checkpoints" / "step_00000002.safetensors")
    assert ours.extra["loss_curve"] == before.extra["loss_curve"] and len(ours.extra["loss_curve"]) == 1
    assert set(ours.model_state) == set(before.model_state)
    for name, value in before.model_state.items():
        torch.testing.assert_close(ours.model_state[name], value, atol=1e-5, rtol=0, msg=name)
