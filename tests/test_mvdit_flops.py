"""The analytic FLOP formulas of bench/bench_mvdit.py agree with torch's FlopCounterMode (issue 6 benchmark).

The formulas (2 FLOPs per multiply-add, matmuls only) are checked against the counter running the
real modules at toy size: ``MotionAttention`` (Eq. 5-8) executed on the CPU and built on ``meta``,
and diffusers' stock CogVideoX / Wan blocks on ``meta``. On the CPU the attention runs under the
math SDPA backend: torch 2.14's counter has no entry for the fused CPU kernel and would count
Q K^T and A V as zero.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from conftest import REPO_ROOT
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.mvdit.cogvideox import MVDiTConfig
from models.mvdit.motion_attention import MotionAttentionConfig
from models.mvdit.rope4d import RopeConfig
from models.mvdit.wan import TEXT_TOKENS, MVDiTWanConfig


def load_bench():
    """bench/bench_mvdit.py as a module (bench/ is a folder of scripts, not a package)."""
    name = "bench_mvdit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / "bench_mvdit.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses need the module registered while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


bench = load_bench()

CONFIGS = {
    "paper_zero_pad": MotionAttentionConfig(dim=48, heads=4, motion_dim=32),
    "linear_align_inner_ne_dim": MotionAttentionConfig(dim=48, heads=4, head_dim=8, motion_dim=32, motion_align="linear"),
    "release_17b_like": MotionAttentionConfig(dim=48, heads=4, motion_dim=32, qk_norm="rms", v_norm=False,
                                              pre_norm=True, key_split="release_17b"),
    "no_pe_per_head_norm": MotionAttentionConfig(dim=64, heads=2, norm_scope="per_head", rope=RopeConfig(pe="none")),
}


def relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b))


def test_analytic_formula_by_hand():
    """dim 48, 4 heads, 60 vision and 24 motion tokens, written out term by term."""
    terms = bench.motion_attention_flops(CONFIGS["paper_zero_pad"], 60, 24)
    assert terms == {"q_proj": 2 * 60 * 48 * 48, "k_proj": 2 * 24 * 48 * 48, "v_proj": 2 * 24 * 48 * 48,
                     "qk": 2 * 60 * 24 * 48, "av": 2 * 60 * 24 * 48, "out_proj": 2 * 60 * 48 * 48}
    assert sum(terms.values()) == 1_050_624


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_motion_attention_formula_matches_flop_counter(name, device):
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    with sdpa_kernel(SDPBackend.MATH):
        counted, per_op = bench.counted_motion_attention(cfg, 60, 24, device=device)
    analytic = bench.motion_attention_flops(cfg, 60, 24)
    assert relative_gap(sum(analytic.values()), counted) < 0.01, (analytic, per_op)
    # The two attention matmuls are bmm; projections are addmm (biases on).
    assert per_op["aten.bmm"] == analytic["qk"] + analytic["av"]


def test_formula_scales_with_tokens_like_the_counter():
    """Doubling the vision tokens doubles every vision-side term and leaves k/v projections alone."""
    cfg = CONFIGS["paper_zero_pad"]
    small, large = (bench.counted_motion_attention(cfg, n, 24)[0] for n in (40, 80))
    a_small, a_large = (bench.motion_attention_flops(cfg, n, 24) for n in (40, 80))
    kv = a_small["k_proj"] + a_small["v_proj"]
    assert large - small == sum(a_large.values()) - sum(a_small.values()) == sum(a_small.values()) - kv


def test_cogvideox_block_formula_matches_flop_counter():
    backbone = MVDiTConfig.tiny().backbone
    dim = backbone["num_attention_heads"] * backbone["attention_head_dim"]
    for text in (0, 8):
        counted, _ = bench.counted_cogvideox_block(backbone, 96, text)
        analytic = bench.cogvideox_block_flops(dim, 96, text, backbone["time_embed_dim"], 4 * dim)
        assert relative_gap(sum(analytic.values()), counted) < 0.01


def test_wan_block_formula_matches_flop_counter():
    backbone = MVDiTWanConfig.tiny().backbone
    dim = backbone["num_attention_heads"] * backbone["attention_head_dim"]
    counted, _ = bench.counted_wan_block(backbone, 96, TEXT_TOKENS, 17)
    analytic = bench.wan_block_flops(dim, 96, TEXT_TOKENS, 17, backbone["ffn_dim"])
    assert relative_gap(sum(analytic.values()), counted) < 0.01
