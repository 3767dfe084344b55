"""4D motion attention (paper Eq. 5-8, Sec. 3.3): zero-init, training signal, padding, reference maths, invariances."""

import math

import pytest
import torch

from models.mvdit.motion_attention import (
    MotionAttention,
    MotionAttentionConfig,
    motion_attention_param_count,
    release_key_map,
)
from models.mvdit.rope4d import RopeConfig, apply_rope

J, T, H, W = 4, 2, 3, 3
DIM, MOTION_DIM, HEADS, HEAD_DIM = 40, 24, 2, 16  # 5120/3072-like ratio, small


def make(seed=0, **kw):
    torch.manual_seed(seed)
    base = {"dim": DIM, "heads": HEADS, "head_dim": HEAD_DIM, "motion_dim": MOTION_DIM, "num_joints": J}
    cfg = MotionAttentionConfig(**{**base, **kw})
    return MotionAttention(cfg)


def inputs(module, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    vision = torch.randn(batch, T * H * W, DIM, generator=g)
    motion = torch.randn(batch, T * J, module.cfg.motion_channels, generator=g)
    mean_joints = torch.randn(J, 3, generator=g)
    rope = module.rope_tables(T, H, W, mean_joints=mean_joints, first_frame_joints=mean_joints)
    return vision, motion, rope


def randomise_out(module):
    torch.nn.init.normal_(module.o.weight, std=0.2)
    torch.nn.init.normal_(module.o.bias, std=0.2)


def test_zero_init_leaves_vision_stream_unchanged_exactly():
    for kw in ({}, {"pre_norm": True, "qk_norm": "rms"}, {"motion_align": "linear"}):
        m = make(**kw)
        vision, motion, (vr, mr) = inputs(m)
        assert torch.equal(m(vision, motion, vr, mr), vision)


def test_one_step_changes_output_and_then_all_projections_get_gradients():
    m = make(pre_norm=True, motion_align="linear")
    vision, motion, (vr, mr) = inputs(m)
    target = torch.randn_like(vision)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m(vision, motion, vr, mr).detach()
    torch.nn.functional.mse_loss(m(vision, motion, vr, mr), target).backward()
    # zero W_o: only the output projection gets a gradient on the first step
    assert m.o.weight.grad.abs().sum() > 0
    assert m.q.weight.grad.abs().sum() == 0 and m.k.weight.grad.abs().sum() == 0
    opt.step()
    opt.zero_grad()
    after = m(vision, motion, vr, mr)
    assert (after - before).abs().max() > 1e-4
    torch.nn.functional.mse_loss(after, target).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_zero_padding_motion_tokens():
    m = make()
    randomise_out(m)
    vision, motion, (vr, mr) = inputs(m)
    out = m(vision, motion, vr, mr)
    # same as feeding tokens already padded to dim through a dim -> dim module
    padded_cfg = MotionAttentionConfig(dim=DIM, heads=HEADS, head_dim=HEAD_DIM, motion_dim=DIM)
    padded = MotionAttention(padded_cfg)
    padded.load_state_dict(m.state_dict())
    padded_motion = torch.cat([motion, torch.zeros(*motion.shape[:2], DIM - MOTION_DIM)], -1)
    torch.testing.assert_close(padded(vision, padded_motion, vr, mr), out)
    # the padded columns of W_k / W_v never matter and get no gradient
    with torch.no_grad():
        m.k.weight[:, MOTION_DIM:] += 3.0
        m.v.weight[:, MOTION_DIM:] -= 2.0
    out2 = m(vision, motion, vr, mr)
    torch.testing.assert_close(out2, out)
    out2.square().sum().backward()
    assert torch.all(m.k.weight.grad[:, MOTION_DIM:] == 0) and torch.all(m.v.weight.grad[:, MOTION_DIM:] == 0)
    assert m.k.weight.grad[:, :MOTION_DIM].abs().sum() > 0


def reference_delta(m, vision, motion, vr, mr):
    """Eq. 5-8 written out by hand: full-width LayerNorm, Eq. 1 rotation, softmax(QK^T/sqrt(d))V."""

    def layer_norm(x, norm):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias

    def rotate(x, cos, sin):  # Eq. 1 on pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[..., 0::2], sin[..., 0::2]
        return torch.stack([c * x0 - s * x1, s * x0 + c * x1], -1).flatten(-2)

    motion = torch.cat([motion, motion.new_zeros(*motion.shape[:2], DIM - MOTION_DIM)], -1)
    q = layer_norm(vision @ m.q.weight.T + m.q.bias, m.norm_q)
    k = layer_norm(motion @ m.k.weight.T + m.k.bias, m.norm_k)
    v = layer_norm(motion @ m.v.weight.T + m.v.bias, m.norm_v)
    out = torch.zeros(vision.shape[0], vision.shape[1], HEADS * HEAD_DIM)
    for h in range(HEADS):
        sl = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
        qh, kh = rotate(q[..., sl], *vr), rotate(k[..., sl], *mr)
        weights = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(HEAD_DIM), dim=-1)
        out[..., sl] = weights @ v[..., sl]
    return out @ m.o.weight.T + m.o.bias


def test_matches_hand_written_attention():
    m = make()
    randomise_out(m)
    for p in (m.norm_q, m.norm_k, m.norm_v):  # non-trivial affine norms
        torch.nn.init.normal_(p.weight, 1.0, 0.3)
        torch.nn.init.normal_(p.bias, 0.0, 0.3)
    vision, motion, (vr, mr) = inputs(m)
    torch.testing.assert_close(m.delta(vision, motion, vr, mr), reference_delta(m, vision, motion, vr, mr),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m(vision, motion, vr, mr), vision + m.delta(vision, motion, vr, mr))


def test_permuting_motion_tokens_with_their_positions_changes_nothing():
    m = make()
    randomise_out(m)
    vision, motion, (vr, (mc, ms)) = inputs(m)
    perm = torch.randperm(motion.shape[1], generator=torch.Generator().manual_seed(3))
    out = m(vision, motion, vr, (mc, ms))
    torch.testing.assert_close(m(vision, motion[:, perm], vr, (mc[perm], ms[perm])), out, rtol=1e-5, atol=1e-6)
    # control: permuting tokens but not their positions does change the output
    assert (m(vision, motion[:, perm], vr, (mc, ms)) - out).abs().max() > 1e-3


def test_dynamic_pe_takes_per_clip_tables():
    m = make(rope=RopeConfig(pe="dynamic"))
    randomise_out(m)
    vision, motion, _ = inputs(m)
    first = torch.randn(2, J, 3)
    vr, mr = m.rope_tables(T, H, W, first_frame_joints=first)
    out = m(vision, motion, vr, mr)
    single_vr, single_mr = m.rope_tables(T, H, W, first_frame_joints=first[1])
    torch.testing.assert_close(out[1:], m(vision[1:], motion[1:], single_vr, single_mr))


@pytest.mark.parametrize("pe", ["learnable", "none"])
def test_variants_without_rope(pe):
    m = make(rope=RopeConfig(pe=pe))
    randomise_out(m)
    vision, motion, tables = inputs(m)
    assert tables == (None, None)
    assert m(vision, motion).shape == vision.shape
    assert (m.motion_pe is not None) == (pe == "learnable")
    with pytest.raises(ValueError, match="uses no RoPE"):
        m(vision, motion, *make().rope_tables(T, H, W, mean_joints=torch.randn(J, 3)))


def test_release_17b_key_split_quirk():
    """Keys are view(B, heads, M, head_dim) of the normed (B, M, inner) tensor, RoPE along that M axis."""
    m = make(qk_norm="rms", v_norm=False, pre_norm=True, key_split="release_17b")
    vision, motion, (vr, mr) = inputs(m)
    _, k, _ = m.qkv(vision, motion, vr, mr)
    flat = m.norm_k(m.k(torch.nn.functional.pad(motion, (0, DIM - MOTION_DIM))))
    B, L = motion.shape[:2]
    torch.testing.assert_close(k, apply_rope(flat.reshape(B, HEADS, L, HEAD_DIM), *mr))
    per_token = apply_rope(flat.view(B, L, HEADS, HEAD_DIM).transpose(1, 2), *mr)
    assert not torch.allclose(k, per_token)


def test_param_count_formula_matches_modules():
    configs = [
        {}, {"qk_norm": "rms", "v_norm": False, "pre_norm": True},
        {"norm_scope": "per_head", "v_norm": False}, {"qk_norm": "none", "bias": False},
        {"motion_align": "linear"}, {"rope": RopeConfig(pe="learnable")},
    ]
    for kw in configs:
        m = make(**kw)
        assert sum(p.numel() for p in m.parameters()) == motion_attention_param_count(m.cfg), kw


RELEASE_7B = {  # /work/shared/release-format/mvdit-7b-motion.json, per block
    "attn0.norm_q.weight": (64,), "attn0.norm_q.bias": (64,), "attn0.norm_k.weight": (64,), "attn0.norm_k.bias": (64,),
    **{f"attn0.{n}.weight": (3072, 3072) for n in ("to_q", "to_k", "to_v", "to_out.0")},
    **{f"attn0.{n}.bias": (3072,) for n in ("to_q", "to_k", "to_v", "to_out.0")},
}
RELEASE_17B = {  # /work/shared/release-format/mvdit-17b-motion.json, per block
    "norm4.weight": (5120,), "norm4.bias": (5120,),
    **{f"motion_attn.{n}.weight": (5120, 5120) for n in "qkvo"},
    **{f"motion_attn.{n}.bias": (5120,) for n in "qkvo"},
    "motion_attn.norm_q.weight": (5120,), "motion_attn.norm_k.weight": (5120,),
}


@pytest.mark.parametrize("layout, cfg, expected, count", [
    ("7b", MotionAttentionConfig.release_7b(), RELEASE_7B, 37_761_280),
    ("17b", MotionAttentionConfig.release_17b(), RELEASE_17B, 104_898_560),
])
def test_release_presets_match_released_layout(layout, cfg, expected, count):
    with torch.device("meta"):
        m = MotionAttention(cfg)
    names = release_key_map(layout)
    renamed = {names[k]: tuple(v.shape) for k, v in m.state_dict().items()}
    assert renamed == expected
    assert motion_attention_param_count(cfg) == count == sum(p.numel() for p in m.parameters())


def test_bad_inputs_raise_clear_errors():
    m = make()
    vision, motion, (vr, mr) = inputs(m)
    with pytest.raises(ValueError, match="motion_dim=24"):
        m(vision, torch.randn(2, T * J, DIM), vr, mr)
    with pytest.raises(ValueError, match="needs both"):
        m(vision, motion)
    with pytest.raises(ValueError, match="motion_rope"):
        m(vision, motion[:, :-1], vr, mr)
    with pytest.raises(ValueError, match="zero_pad"):
        MotionAttentionConfig(dim=16, heads=2, motion_dim=32)
