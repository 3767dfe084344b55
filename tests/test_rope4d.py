"""4D RoPE (paper Eq. 1, 4, App. F Alg. 1): numbers against diffusers' RoPE and closed forms, invariants, variants."""

import math

import pytest
import torch
from diffusers.models.embeddings import apply_rotary_emb, get_1d_rotary_pos_embed
from einops import repeat

from models.mvdit.rope4d import (
    LearnableMotionPE,
    RopeConfig,
    apply_rope,
    build_rope_tables,
    motion_positions_4d,
    motion_rope_4d,
    rope_1d,
    rope_from_positions,
    split_head_dim,
    vision_positions_4d,
    vision_rope_4d,
)

torch.manual_seed(0)
J, T, D = 24, 3, 32
MEAN_JOINTS = torch.randn(J, 3, dtype=torch.float64) * 0.4 + torch.tensor([0.1, -0.3, 2.5], dtype=torch.float64)


def scores(q, k, q_table, k_table):
    return apply_rope(q, *q_table) @ apply_rope(k, *k_table).T


def test_rope_1d_matches_eq1_and_diffusers_interleaved():
    pos = torch.tensor([0.0, 1.0, 2.5, -7.0, 1234.0])
    cos, sin = rope_1d(pos, 8)
    ref_cos, ref_sin = get_1d_rotary_pos_embed(8, pos, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64)
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=1e-6)
    for i in range(4):  # Eq. 1: pair (2i, 2i+1) rotates by m * 10000^(-2i/d)
        angle = pos.double() * 10000.0 ** (-2 * i / 8)
        torch.testing.assert_close(cos[:, 2 * i].double(), angle.cos(), rtol=0, atol=1e-6)
        torch.testing.assert_close(cos[:, 2 * i + 1], cos[:, 2 * i])


def test_apply_rope_is_eq1_rotation_of_interleaved_pairs():
    x = torch.randn(5, 8)
    pos = torch.arange(5.0) * 3
    cos, sin = rope_1d(pos, 8)
    out = apply_rope(x, cos, sin)
    for i in range(4):
        a = pos * 10000.0 ** (-2 * i / 8)
        x0, x1 = x[:, 2 * i], x[:, 2 * i + 1]
        torch.testing.assert_close(out[:, 2 * i], a.cos() * x0 - a.sin() * x1)
        torch.testing.assert_close(out[:, 2 * i + 1], a.sin() * x0 + a.cos() * x1)
    ref = apply_rotary_emb(x[None, None], (cos, sin), use_real=True, use_real_unbind_dim=-1)[0, 0]
    torch.testing.assert_close(out, ref)


def test_split_head_dim():
    assert split_head_dim(64, 4) == (16, 16, 16, 16)
    assert split_head_dim(64, 3) == (24, 20, 20)
    assert split_head_dim(64, 2) == (32, 32)
    assert split_head_dim(128, 1) == (128,)
    with pytest.raises(ValueError, match="head_dim"):
        split_head_dim(6, 4)


def test_algorithm1_step_by_step():
    """Rebuild Alg. 1 literally (shapes per step as printed in App. F) and compare."""
    x, y, z = MEAN_JOINTS[:, 0], MEAN_JOINTS[:, 1], MEAN_JOINTS[:, 2]  # 1.
    t = torch.arange(T, dtype=torch.float64)
    x, y, z = x - x.mean(), y - y.mean(), z - z.mean()  # 2.
    per_axis = [rope_1d(p, D // 4) for p in (t, x, y, z)]  # 3.
    assert per_axis[0][0].shape == (T, D // 4)
    assert all(c.shape == (J, D // 4) for c, _ in per_axis[1:])
    cos_t = repeat(per_axis[0][0], "t d -> t j d", j=J)  # 4.
    cos_xyz = [repeat(c, "j d -> t j d", t=T) for c, _ in per_axis[1:]]  # 5.
    assert cos_t.shape == (T, J, D // 4) and all(c.shape == (T, J, D // 4) for c in cos_xyz)
    freqs_cos = torch.cat([cos_t, *cos_xyz], -1)  # 6.
    freqs_sin = torch.cat([repeat(per_axis[0][1], "t d -> t j d", j=J)]
                          + [repeat(s, "j d -> t j d", t=T) for _, s in per_axis[1:]], -1)
    assert freqs_cos.shape == (T, J, D)
    cos, sin = motion_rope_4d(MEAN_JOINTS, T, D)
    assert cos.shape == sin.shape == (T * J, D)
    torch.testing.assert_close(cos, freqs_cos.reshape(T * J, D))  # frame-major: token t * J + j
    torch.testing.assert_close(sin, freqs_sin.reshape(T * J, D))
    # the generic position path agrees with the literal algorithm
    pos_cos, pos_sin = rope_from_positions(motion_positions_4d(MEAN_JOINTS, T), D)
    torch.testing.assert_close(cos, pos_cos)
    torch.testing.assert_close(sin, pos_sin)


def test_motion_rope_ignores_global_shift_and_honours_scale():
    cos, sin = motion_rope_4d(MEAN_JOINTS, T, D)
    cos2, sin2 = motion_rope_4d(MEAN_JOINTS + torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64), T, D)
    torch.testing.assert_close(cos, cos2)
    torch.testing.assert_close(sin, sin2)
    mm = motion_rope_4d(MEAN_JOINTS * 1000, T, D)  # release: raw millimetres
    metres_scaled = motion_rope_4d(MEAN_JOINTS, T, D, position_scale=1000.0)
    torch.testing.assert_close(mm[0], metres_scaled[0], rtol=0, atol=1e-5)
    assert not torch.allclose(mm[0], cos)


@pytest.mark.parametrize("kind", ["motion", "vision", "cross"])
def test_scores_depend_only_on_position_differences(kind):
    motion_pos = motion_positions_4d(MEAN_JOINTS, T)
    vision_pos = vision_positions_4d(T, 4, 5)
    q_pos = vision_pos if kind in ("vision", "cross") else motion_pos
    k_pos = motion_pos if kind in ("motion", "cross") else vision_pos
    q, k = torch.randn(len(q_pos), D), torch.randn(len(k_pos), D)
    shift = torch.tensor([3.0, -1.7, 2.2, 0.9], dtype=torch.float64)
    base = scores(q, k, rope_from_positions(q_pos, D), rope_from_positions(k_pos, D))
    shifted = scores(q, k, rope_from_positions(q_pos + shift, D), rope_from_positions(k_pos + shift, D))
    torch.testing.assert_close(base, shifted, rtol=1e-4, atol=1e-4)
    # control: moving only the queries changes the scores
    moved = scores(q, k, rope_from_positions(q_pos + shift, D), rope_from_positions(k_pos, D))
    assert (moved - base).abs().max() > 0.1


def test_vision_z_zero_is_a_3d_rope_with_identity_z_block():
    Tv, H, W = 2, 3, 4
    cos, sin = vision_rope_4d(Tv, H, W, D)
    d = D // 4
    # independent 3D RoPE over (t, h, w) from diffusers' 1D tables
    axes = [get_1d_rotary_pos_embed(d, torch.arange(n, dtype=torch.float64), use_real=True, freqs_dtype=torch.float64)
            for n in (Tv, H, W)]
    ref_cos = torch.cat([repeat(axes[0][0], "t d -> t h w d", h=H, w=W),
                         repeat(axes[1][0], "h d -> t h w d", t=Tv, w=W),
                         repeat(axes[2][0], "w d -> t h w d", t=Tv, h=H)], -1).reshape(-1, 3 * d)
    ref_sin = torch.cat([repeat(axes[0][1], "t d -> t h w d", h=H, w=W),
                         repeat(axes[1][1], "h d -> t h w d", t=Tv, w=W),
                         repeat(axes[2][1], "w d -> t h w d", t=Tv, h=H)], -1).reshape(-1, 3 * d)
    torch.testing.assert_close(cos[:, : 3 * d], ref_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin[:, : 3 * d], ref_sin, rtol=0, atol=1e-6)
    assert torch.all(cos[:, 3 * d:] == 1) and torch.all(sin[:, 3 * d:] == 0)
    x = torch.randn(Tv * H * W, D)
    out = apply_rope(x, cos, sin)
    torch.testing.assert_close(out[:, 3 * d:], x[:, 3 * d:])
    torch.testing.assert_close(out[:, : 3 * d], apply_rope(x[:, : 3 * d], ref_cos, ref_sin))


def test_motion_and_vision_tokens_at_same_position_share_tables():
    # centred joints land on integer (x, y, 0): (1, 2, 0), (3, 0, 0), (-4, -2, 0)
    joints = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [-4.0, -2.0, 0.0]]) + torch.tensor([10.0, 20.0, 30.0])
    m_cos, m_sin = motion_rope_4d(joints, 3, D)
    v_cos, v_sin = vision_rope_4d(3, 5, 5, D)
    for t in range(3):
        for j, (h, w) in ((0, (1, 2)), (1, (3, 0))):
            mi, vi = t * 3 + j, (t * 5 + h) * 5 + w
            torch.testing.assert_close(m_cos[mi], v_cos[vi], rtol=0, atol=1e-6)
            torch.testing.assert_close(m_sin[mi], v_sin[vi], rtol=0, atol=1e-6)
    # "wh" pairs x with the column instead
    wh_cos, _ = vision_rope_4d(3, 5, 5, D, vision_xy="wh")
    torch.testing.assert_close(m_cos[0], wh_cos[2 * 5 + 1], rtol=0, atol=1e-6)


def table(pe, joints=MEAN_JOINTS, **kw):
    return build_rope_tables(RopeConfig(pe=pe), D, T, 4, 5, mean_joints=joints, **kw)


@pytest.mark.parametrize("pe", ["4d", "1d_temporal", "2d_spatial", "3d_spatial"])
def test_variant_shapes(pe):
    vision, motion = table(pe)
    assert vision[0].shape == (T * 4 * 5, D) and motion[0].shape == (T * J, D)


def test_variants_differ_as_claimed():
    frames = lambda c: c.view(T, J, D)
    # 1D temporal: same frame -> same rotation for every joint; frames differ
    t_only = frames(table("1d_temporal").motion[0])
    assert torch.allclose(t_only[1, 0], t_only[1, 5]) and not torch.allclose(t_only[0, 0], t_only[1, 0])
    # spatial variants are the same in every frame and differ between joints
    for pe in ("2d_spatial", "3d_spatial"):
        c = frames(table(pe).motion[0])
        assert torch.allclose(c[0], c[2]) and not torch.allclose(c[0, 0], c[0, 5])
    # 2D ignores z, 3D does not
    z_moved = MEAN_JOINTS.clone()
    z_moved[:, 2] = torch.randn(J, dtype=torch.float64)
    assert torch.allclose(table("2d_spatial").motion[0], table("2d_spatial", z_moved).motion[0])
    assert not torch.allclose(table("3d_spatial").motion[0], table("3d_spatial", z_moved).motion[0])
    # 4D depends on both time and joints
    c4 = frames(table("4d").motion[0])
    assert not torch.allclose(c4[0, 0], c4[1, 0]) and not torch.allclose(c4[0, 0], c4[0, 5])
    # learnable / none: no RoPE tables at all
    assert table("learnable") == (None, None) and table("none") == (None, None)


def test_dynamic_pe_uses_first_frame_joints_per_clip():
    first = torch.randn(2, J, 3, dtype=torch.float64)
    vision, motion = table("dynamic", first_frame_joints=first)
    assert motion[0].shape == (2, T * J, D)
    torch.testing.assert_close(motion[0][1], motion_rope_4d(first[1], T, D, position_scale=1000.0)[0])
    assert not torch.allclose(motion[0][0], table("4d").motion[0])
    torch.testing.assert_close(vision[0], table("4d").vision[0])
    with pytest.raises(ValueError, match="first_frame_joints"):
        table("dynamic")


def test_release_split_vision_table_is_backbone_3d_rope():
    cfg = RopeConfig(axis_dims=(16, 16, 16, 16), vision_axis_dims=(16, 24, 24))
    vision, motion = build_rope_tables(cfg, 64, T, 2, 3, mean_joints=MEAN_JOINTS)
    assert vision[0].shape == (T * 6, 64) and motion[0].shape == (T * J, 64)
    h_block = vision[0].view(T, 2, 3, 64)[..., 16:40]
    torch.testing.assert_close(h_block[0, 1, 0], rope_1d(torch.tensor([1.0]), 24)[0][0])


def test_learnable_pe_adds_frame_plus_joint_embedding():
    pe = LearnableMotionPE(num_joints=J, max_frames=4, channels=6)
    tokens = torch.zeros(2, T * J, 6)
    out = pe(tokens).view(2, T, J, 6)
    torch.testing.assert_close(out[1, 2, 7], pe.frame[2] + pe.joint[7])
    assert sum(p.numel() for p in pe.parameters()) == (4 + J) * 6
    with pytest.raises(ValueError, match="max_frames"):
        pe(torch.zeros(1, 5 * J, 6))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="mean_joints"):
        motion_rope_4d(torch.zeros(24, 2), T, D)
    with pytest.raises(ValueError, match="axis_dims"):
        motion_rope_4d(MEAN_JOINTS, T, D, axis_dims=(8, 8, 8))
    with pytest.raises(ValueError, match="pe must be one of"):
        RopeConfig(pe="5d")
    with pytest.raises(ValueError, match="apply_rope"):
        apply_rope(torch.zeros(3, 8), *rope_1d(torch.arange(3.0), 6))
    assert math.isclose(float(rope_1d(torch.tensor([0.0]), 4)[0].min()), 1.0)


# ---- the RoPE unit on the published mean skeleton (issue: metres left the spatial blocks nearly blind)

def _joints_metres(source: str):
    """The release's mean skeleton (mm -> m) or SMPL's neutral rest joints (m), from ../shared."""
    import numpy as np
    from conftest import shared_path

    if source == "release_mean":
        return np.load(shared_path("real/mtvcrafter-samples/release_mean_mm.npy")).astype(np.float64) / 1000.0
    table = np.genfromtxt(shared_path("smpl/neutral_rest_joints.csv"), delimiter=",", names=True)
    return np.stack([table["x_m"], table["y_m"], table["z_m"]], -1)


def separating_pairs(joints_m, position_scale: float, block: int = 16, theta: float = 10000.0) -> list[int]:
    """Per spatial axis x, y, z: how many of the block's frequency pairs turn some two joints > 0.3 rad apart.

    Read off the motion RoPE tables themselves (the angle of pair i of joint j is atan2(sin, cos) unwrapped
    by its closed form), so this checks what ``RopeConfig`` actually feeds the attention."""
    cfg = RopeConfig(position_scale=position_scale)
    _, motion = build_rope_tables(cfg, 4 * block, 1, 1, 1, mean_joints=torch.as_tensor(joints_m))
    cos, sin = motion
    counts = []
    for axis in range(1, 4):  # blocks t | x | y | z
        c = cos[:, axis * block : (axis + 1) * block : 2].double()
        s = sin[:, axis * block : (axis + 1) * block : 2].double()
        # angle difference between every two joints, per pair, wrapped to [0, pi]
        diff = torch.atan2(s[:, None] * c[None] - c[:, None] * s[None], c[:, None] * c[None] + s[:, None] * s[None])
        counts.append(int((diff.abs().amax(dim=(0, 1)) > 0.3).sum()))
    return counts


@pytest.mark.parametrize("source", ["release_mean", "smpl_rest"])
def test_default_rope_unit_separates_joints_on_every_spatial_axis(source):
    """Default (millimetres): for each of x, y, z at least half the 8 pairs tell some two joints apart."""
    joints = _joints_metres(source)
    counts = separating_pairs(joints, RopeConfig().position_scale)
    assert all(n >= 4 for n in counts), counts
    old = separating_pairs(joints, 1.0)  # the former paper-layout default: metres
    assert min(old) < 4 and sum(old) <= 4, old  # 1 / 2 / 0 of 8 on the release mean: the depth block was blind


def test_every_layout_uses_the_one_position_scale():
    from models.mvdit.cogvideox import MVDiTConfig
    from models.mvdit.rope4d import MOTION_POSITION_SCALE
    from models.mvdit.wan import MVDiTWanConfig

    with torch.device("meta"):
        models = [cfg.build() for cfg in (MVDiTConfig.tiny("paper"), MVDiTConfig.tiny("release"),
                                          MVDiTWanConfig.tiny("paper"), MVDiTWanConfig.tiny("release"))]
    for model in models:
        assert model.motion_attention_config.rope.position_scale == MOTION_POSITION_SCALE == 1000.0
        assert model.config.motion_position_scale == 1000.0  # saved with the checkpoint's config


def test_config_saved_before_the_unit_change_is_refused_naming_the_setting(tmp_path):
    """A checkpoint config with motion_position_scale null (old default 1.0) must not load as millimetres."""
    import json

    from models.mvdit.cogvideox import MVDiTCogVideoX, MVDiTConfig
    from pipeline.mvdit.factory import build_model

    kwargs = {**MVDiTConfig.tiny().model_kwargs(), "motion_position_scale": None}
    with pytest.raises(ValueError, match="motion_position_scale"):
        build_model(kwargs)  # a train_mvdit checkpoint's recorded kwargs
    model = MVDiTConfig.tiny().build()
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["motion_position_scale"] == 1000.0
    config["motion_position_scale"] = None
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="motion_position_scale"):
        MVDiTCogVideoX.from_pretrained(str(tmp_path / "m"))
    config["motion_position_scale"] = 1.0  # the explicit old unit still loads, as trained
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    old = MVDiTCogVideoX.from_pretrained(str(tmp_path / "m"))
    assert old.motion_attention_config.rope.position_scale == 1.0
