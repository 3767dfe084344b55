"""Motion-aware CFG (paper Sec. 3.2, App. A.3): condition dropping, c_m∅ gradients, guided combination."""

import pytest
import torch

from models.mvdit.cfg import (
    FULL,
    MOTION,
    NULL,
    Branch,
    CFGConfig,
    combine_guidance,
    drop_text,
    guidance_branches,
    guided_prediction,
    motion_condition,
    sample_keep_masks,
)
from models.mvdit.cogvideox import MVDiTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


def test_drop_rates_are_the_papers_and_independent():
    g = torch.Generator().manual_seed(0)
    motion_keep, text_keep = sample_keep_masks(40_000, CFGConfig(), generator=g)
    assert motion_keep.dtype == torch.bool and motion_keep.shape == (40_000,)
    motion_drop, text_drop = (~motion_keep).float(), (~text_keep).float()
    assert abs(motion_drop.mean() - 0.2) < 0.01
    assert abs(text_drop.mean() - 0.1) < 0.01
    assert abs((motion_drop * text_drop).mean() - 0.02) < 0.005  # independent draws


def test_motion_condition_replaces_only_dropped_rows_frame_major():
    J, T, C = 3, 2, 5
    tokens = torch.randn(2, T * J, C)
    uncond = torch.randn(4 * J, C)  # covers 4 frames; a 2-frame clip uses the first 2
    out = motion_condition(tokens, torch.tensor([True, False]), uncond, num_joints=J)
    assert torch.equal(out[0], tokens[0])
    assert torch.equal(out[1], uncond[: T * J])
    assert motion_condition(tokens, torch.tensor([True, True]), uncond, J) is tokens
    with pytest.raises(ValueError, match="unconditional_frames"):
        motion_condition(torch.randn(1, 5 * J, C), torch.tensor([False]), uncond, J)
    with pytest.raises(ValueError, match="no unconditional"):
        motion_condition(tokens, torch.tensor([False, True]), None, J)
    with pytest.raises(ValueError, match="bool"):
        motion_condition(tokens, torch.tensor([1, 0]), uncond, J)


def test_drop_text_uses_the_null_prompt():
    text = torch.randn(3, 4, 2)
    null = torch.randn(4, 2)
    out = drop_text(text, torch.tensor([True, False, True]), null)
    assert torch.equal(out[0], text[0]) and torch.equal(out[1], null) and torch.equal(out[2], text[2])
    assert torch.equal(drop_text(text, torch.tensor([False, True, True]))[0], torch.zeros(4, 2))


def _fake_predictions(shape=(2, 3)):
    g = torch.Generator().manual_seed(3)
    return {b: torch.randn(shape, generator=g) for b in (NULL, MOTION, FULL)}


def test_unit_scales_give_the_conditional_prediction():
    preds = _fake_predictions()
    assert guidance_branches(1.0, 1.0, has_text=True) == (FULL,)
    assert torch.equal(combine_guidance({FULL: preds[FULL]}, 1.0, 1.0), preds[FULL])
    torch.testing.assert_close(combine_guidance(preds, 1.0, 1.0), preds[FULL])  # all three branches present
    assert guidance_branches(1.0, 1.0, has_text=False) == (MOTION,)
    assert torch.equal(combine_guidance({MOTION: preds[MOTION]}, 1.0, 1.0), preds[MOTION])


def test_two_condition_formula_and_its_release_special_cases():
    p = _fake_predictions()
    wm, wt = 3.0, 6.0
    expected = p[NULL] + wm * (p[MOTION] - p[NULL]) + wt * (p[FULL] - p[MOTION])
    torch.testing.assert_close(combine_guidance(p, wm, wt), expected)
    # 7B release: no text, eps = uncond + 3 (cond - uncond)
    assert guidance_branches(3.0, 6.0, has_text=False) == (NULL, MOTION)
    torch.testing.assert_close(
        combine_guidance({NULL: p[NULL], MOTION: p[MOTION]}, 3.0, 6.0), p[NULL] + 3.0 * (p[MOTION] - p[NULL])
    )
    # 17B release: motion always on, text CFG 6
    assert guidance_branches(1.0, 6.0, has_text=True) == (MOTION, FULL)
    torch.testing.assert_close(
        combine_guidance({MOTION: p[MOTION], FULL: p[FULL]}, 1.0, 6.0), p[MOTION] + 6.0 * (p[FULL] - p[MOTION])
    )


def test_guided_prediction_batches_branch_major():
    B = 2
    p = _fake_predictions((B, 3))
    calls = []

    def predict(motion_keep, text_keep):
        calls.append((motion_keep.tolist(), text_keep.tolist()))
        rows = [p[Branch(bool(m), bool(t))][i % B] for i, (m, t) in enumerate(zip(motion_keep, text_keep))]
        return torch.stack(rows)

    out = guided_prediction(predict, B, motion_scale=3.0, text_scale=6.0, has_text=True)
    assert calls == [([False, False, True, True, True, True], [False, False, False, False, True, True])]
    torch.testing.assert_close(out, combine_guidance(p, 3.0, 6.0))


def _tiny_with_live_motion_attention():
    torch.manual_seed(0)
    model = MVDiTConfig.tiny(num_layers=2).build()
    for module in model.motion_modules().values():  # as after training: W_o no longer zero
        torch.nn.init.normal_(module.o.weight, std=0.2)
    return model


def _inputs(model, batch=2, frames=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    return {
        "hidden_states": torch.randn(batch, frames, c.out_channels, 8, 8, generator=g),
        "reference_latent": torch.randn(batch, c.out_channels, 8, 8, generator=g),
        "motion_tokens": torch.randn(batch, frames * c.num_joints, c.motion_token_dim, generator=g),
        "timestep": torch.tensor([100, 800])[:batch],
        "mean_joints": torch.randn(c.num_joints, 3, generator=g) * 0.3,
    }


def test_unconditional_tokens_get_zero_gradient_without_drops_and_are_not_updated():
    """In training c_m∅ always enters the graph (every data-parallel rank then reduces the same gradients), with
    a zero gradient when no sample dropped motion; the trainer's `finish_gradients` drops that gradient, so AdamW
    skips c_m∅ (no momentum, no weight decay): it changes only when used (Sec. 3.2)."""
    from pipeline.mvdit.sharding import finish_gradients

    model = _tiny_with_live_motion_attention()
    token = model.unconditional_motion_token
    before = token.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    keep = torch.tensor([True, True])
    out = model(**_inputs(model), motion_mask=keep).sample
    out.square().mean().backward()
    assert token.grad is not None and token.grad.abs().sum() == 0
    assert model.transformer_blocks[0].attn0.to_k.weight.grad.abs().sum() > 0  # motion path did train
    assert finish_gradients(model, keep) is False
    assert token.grad is None
    opt.step()
    assert torch.equal(token, before)


def test_unconditional_tokens_get_gradient_only_from_dropped_samples():
    model = _tiny_with_live_motion_attention()
    inputs = _inputs(model)
    out = model(**inputs, motion_mask=torch.tensor([True, False])).sample
    out[1].square().mean().backward(retain_graph=True)
    grad_dropped = model.unconditional_motion_token.grad.clone()
    assert grad_dropped.abs().sum() > 0
    rows = 2 * model.config.num_joints  # a 2-latent-frame clip uses the first 2 frames of c_m∅
    assert grad_dropped[rows:].abs().sum() == 0
    model.zero_grad(set_to_none=True)
    out[0].square().mean().backward()  # the kept sample does not touch c_m∅
    assert model.unconditional_motion_token.grad.abs().sum() == 0


def test_dropped_motion_equals_feeding_the_unconditional_tokens():
    model = _tiny_with_live_motion_attention().eval()
    inputs = _inputs(model)
    with torch.no_grad():
        dropped = model(**inputs, motion_mask=torch.tensor([False, False])).sample
        rows = inputs["motion_tokens"].shape[1]
        inputs["motion_tokens"] = model.unconditional_motion_token[:rows].expand(2, -1, -1)
        fed = model(**inputs).sample
    assert torch.equal(dropped, fed)
