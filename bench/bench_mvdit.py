"""MV-DiT benchmarks (paper Sec. 3.2-3.3, App. A.2): measured, never asserted.

    .venv/bin/python bench/bench_mvdit.py [--quick] [--sections flops,ray] [--out DIR] [--md FILE]
    .venv/bin/python bench/bench_mvdit.py --report-only   # rebuild the Markdown from the saved JSON

1. FLOPs of one 4D motion-attention module (Eq. 5-8) relative to one backbone
   transformer block, for one forward pass of one sample, two ways side by side:
   (a) analytic matmul counts written out below (``*_flops`` functions: 2 FLOPs
   per multiply-add; projections, Q K^T, A V and output projection counted
   separately; norms, RoPE, softmax, biases and activations are not matmuls
   and are left out, as torch's counter leaves them out), and
   (b) counted by ``torch.utils.flop_counter.FlopCounterMode`` running the
   real modules (``MotionAttention`` with the paper_6b / paper_18b presets,
   diffusers' ``CogVideoXBlock`` / ``WanTransformerBlock`` at full width) on
   the ``meta`` device: full-size shapes, no memory, no arithmetic.
   Shapes: CogVideoX-5B at 49 frames x 480 x 720 (latent 13 x 60 x 90, patch 2:
   13 * 30 * 45 = 17,550 vision tokens, 226 text tokens in the stock block,
   none in MV-DiT-6B, which removes the text branch); Wan2.1-I2V-14B at
   49 x 480 x 832 (Wan's 480P size; latent 13 x 60 x 104, patch 1x2x2: 20,280
   tokens; 512 T5 + 257 CLIP tokens) and at 49 x 480 x 720 (the same token
   grid as CogVideoX). Motion tokens: 13 latent frames x 24 joints = 312.
2. CPU training step time of the tiny MV-DiT config under Ray Train with 1 and 2
   workers side by side (``pipeline.mvdit.train``, backend "ray", the same
   per-worker batch), on clips rendered by ``pipeline.synthetic`` at 48 x 64.
   Steps/s come from the modification times of the checkpoints rank 0 writes
   every ``every`` steps (the slope after the first one), so startup is
   reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, also when loaded by path
from machine import load_average, machine_info  # noqa: E402  (bench/machine.py)

from models.mvdit.motion_attention import MotionAttention, MotionAttentionConfig  # noqa: E402

SOFTMAX_FLOPS_PER_SCORE = 5  # an estimate for the note only: max, subtract, exp, sum, divide
MOTION_FRAMES = 13  # 49 video frames -> 13 latent frames (4x temporal compression, first frame kept)
JOINTS = 24


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- 1. analytic FLOPs -----------------------------------------------------------------------------
def linear_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    """A Linear layer on ``tokens`` rows: tokens x fan_in x fan_out multiply-adds, 2 FLOPs each."""
    return 2 * tokens * fan_in * fan_out


def attention_core_flops(queries: int, keys: int, inner: int) -> dict[str, int]:
    """Q K^T and A V summed over heads: each queries x keys x (heads * head_dim) multiply-adds."""
    return {"qk": 2 * queries * keys * inner, "av": 2 * queries * keys * inner}


def motion_attention_flops(cfg: MotionAttentionConfig, vision_tokens: int, motion_tokens: int) -> dict[str, int]:
    """Matmul FLOPs of one ``MotionAttention`` forward (Eq. 5-8), per term.

    With d = cfg.dim, i = heads * head_dim, N vision tokens, M motion tokens:
      q_proj 2 N d i | k_proj 2 M d i | v_proj 2 M d i | qk 2 N M i | av 2 N M i | out_proj 2 N i d
    (zero-padded motion tokens enter W_k, W_v at width d, Sec. 3.3; the "linear"
    alignment adds motion_proj 2 M c d, c = motion channels).
    """
    d, inner, n, m = cfg.dim, cfg.inner_dim, vision_tokens, motion_tokens
    terms = {"q_proj": linear_flops(n, d, inner), "k_proj": linear_flops(m, d, inner),
             "v_proj": linear_flops(m, d, inner), **attention_core_flops(n, m, inner),
             "out_proj": linear_flops(n, inner, d)}
    if cfg.motion_align == "linear":
        terms["motion_proj"] = linear_flops(m, cfg.motion_channels, d)
    return terms


def cogvideox_block_flops(dim: int, vision_tokens: int, text_tokens: int, time_embed_dim: int,
                          ff_inner: int) -> dict[str, int]:
    """Matmul FLOPs of one diffusers ``CogVideoXBlock`` forward, per term.

    S = N + L tokens (vision + text) share the joint self-attention and the feed-forward:
      ada_norm 2 x 2 T 6D (norm1, norm2: Linear(T -> 6D) on the timestep embedding)
      qkv_proj 3 x 2 S D^2 | qk 2 S^2 D | av 2 S^2 D | out_proj 2 S D^2 | ff 2 x 2 S D F
    """
    s, D = vision_tokens + text_tokens, dim
    return {"ada_norm": 2 * linear_flops(1, time_embed_dim, 6 * D), "qkv_proj": 3 * linear_flops(s, D, D),
            **attention_core_flops(s, s, D), "out_proj": linear_flops(s, D, D),
            "ff": linear_flops(s, D, ff_inner) + linear_flops(s, ff_inner, D)}


def wan_block_flops(dim: int, vision_tokens: int, text_tokens: int, image_tokens: int, ffn_dim: int) -> dict[str, int]:
    """Matmul FLOPs of one diffusers ``WanTransformerBlock`` (I2V) forward, per term.

    N vision tokens, L text and I image tokens (already projected to width D outside the block):
      self: qkv 3 x 2 N D^2 | qk, av 2 N^2 D each | out 2 N D^2
      cross: q 2 N D^2 | kv_text 2 x 2 L D^2 | kv_image 2 x 2 I D^2 | qk, av 2 N (L + I) D each | out 2 N D^2
      ffn 2 x 2 N D F
    """
    n, D = vision_tokens, dim
    self_core = attention_core_flops(n, n, D)
    cross_core = attention_core_flops(n, text_tokens + image_tokens, D)
    return {"self_qkv_proj": 3 * linear_flops(n, D, D), "self_qk": self_core["qk"], "self_av": self_core["av"],
            "self_out_proj": linear_flops(n, D, D),
            "cross_q_proj": linear_flops(n, D, D), "cross_kv_text": 2 * linear_flops(text_tokens, D, D),
            "cross_kv_image": 2 * linear_flops(image_tokens, D, D), "cross_qk": cross_core["qk"],
            "cross_av": cross_core["av"], "cross_out_proj": linear_flops(n, D, D),
            "ffn": linear_flops(n, D, ffn_dim) + linear_flops(n, ffn_dim, D)}


# ---- 1. counted FLOPs ------------------------------------------------------------------------------
def count_flops(module: nn.Module, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
    """FLOPs torch's counter sees for one ``module(*args, **kwargs)`` call: total and per aten op."""
    with FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    per_op = {str(op): int(v) for op, v in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), per_op


def counted_motion_attention(cfg: MotionAttentionConfig, vision_tokens: int, motion_tokens: int,
                             device: str = "meta") -> tuple[int, dict[str, int]]:
    """Run one ``MotionAttention(cfg)`` (with RoPE tables of the right shape) under the counter."""
    with torch.device(device):
        module = MotionAttention(cfg)
        vision = torch.zeros(1, vision_tokens, cfg.dim)
        motion = torch.zeros(1, motion_tokens, cfg.motion_channels)
        ropes = [(torch.ones(n, cfg.dim_per_head), torch.zeros(n, cfg.dim_per_head))
                 for n in (vision_tokens, motion_tokens)] if cfg.rope.uses_rope else [None, None]
    with torch.no_grad():
        return count_flops(module, vision, motion, *ropes)


def counted_cogvideox_block(backbone: dict[str, Any], vision_tokens: int, text_tokens: int) -> tuple[int, dict[str, int]]:
    """Run one stock diffusers ``CogVideoXBlock`` of the given backbone config on ``meta`` under the counter."""
    from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock

    dim = backbone["num_attention_heads"] * backbone["attention_head_dim"]
    with torch.device("meta"):
        block = CogVideoXBlock(dim=dim, num_attention_heads=backbone["num_attention_heads"],
                               attention_head_dim=backbone["attention_head_dim"],
                               time_embed_dim=backbone["time_embed_dim"], activation_fn=backbone["activation_fn"],
                               attention_bias=backbone["attention_bias"])
        hidden = torch.zeros(1, vision_tokens, dim)
        text = torch.zeros(1, text_tokens, dim)
        temb = torch.zeros(1, backbone["time_embed_dim"])
        hd = backbone["attention_head_dim"]
        rope = (torch.ones(vision_tokens, hd), torch.zeros(vision_tokens, hd))
    with torch.no_grad():
        return count_flops(block, hidden, text, temb, image_rotary_emb=rope)


def counted_wan_block(backbone: dict[str, Any], vision_tokens: int, text_tokens: int,
                      image_tokens: int) -> tuple[int, dict[str, int]]:
    """Run one stock diffusers ``WanTransformerBlock`` (I2V) on ``meta`` under the counter.

    The processor takes the last 512 context tokens as text and the rest as image tokens.
    """
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    dim = backbone["num_attention_heads"] * backbone["attention_head_dim"]
    with torch.device("meta"):
        block = WanTransformerBlock(dim=dim, ffn_dim=backbone["ffn_dim"], num_heads=backbone["num_attention_heads"],
                                    qk_norm=backbone["qk_norm"], cross_attn_norm=backbone["cross_attn_norm"],
                                    eps=backbone["eps"], added_kv_proj_dim=backbone["added_kv_proj_dim"])
        hidden = torch.zeros(1, vision_tokens, dim)
        context = torch.zeros(1, image_tokens + text_tokens, dim)
        temb = torch.zeros(1, 6, dim)
        hd = backbone["attention_head_dim"]
        rope = (torch.ones(1, vision_tokens, 1, hd), torch.zeros(1, vision_tokens, 1, hd))
    with torch.no_grad():
        return count_flops(block, hidden, context, temb, rope)


@dataclass(frozen=True)
class Layout:
    """One backbone at one video size: token counts of one sample."""

    name: str
    video: str  # frames x H x W
    latent: str  # latent frames x h x w and patch
    vision_tokens: int
    text_tokens: int
    image_tokens: int = 0
    motion_tokens: int = MOTION_FRAMES * JOINTS


def cogvideox_tokens(height: int, width: int, frames: int = 49, vae: int = 8, patch: int = 2) -> int:
    return (1 + (frames - 1) // 4) * (height // vae // patch) * (width // vae // patch)


def bench_flops() -> dict[str, Any]:
    """Analytic and counted FLOPs of the motion module and the backbone blocks at the paper's sizes."""
    from models.mvdit.cogvideox import COGVIDEOX_5B
    from models.mvdit.wan import TEXT_TOKENS, WAN_I2V_14B

    cog, wan = COGVIDEOX_5B, WAN_I2V_14B
    cog_dim = cog["num_attention_heads"] * cog["attention_head_dim"]
    wan_dim = wan["num_attention_heads"] * wan["attention_head_dim"]
    n_cog = cogvideox_tokens(480, 720)
    n_wan = cogvideox_tokens(480, 832)
    clip = 257  # CLIP ViT-H/14 tokens of the reference frame (Wan2.1-I2V)
    cases = [
        ("CogVideoX-5B block, 226 text tokens (stock)", "cogvideox",
         Layout("CogVideoX-5B", "49 x 480 x 720", "13 x 60 x 90, patch 2", n_cog, cog["max_text_seq_length"])),
        ("CogVideoX-5B block, no text (MV-DiT-6B)", "cogvideox",
         Layout("CogVideoX-5B", "49 x 480 x 720", "13 x 60 x 90, patch 2", n_cog, 0)),
        ("Wan2.1-I2V-14B block, 480P", "wan",
         Layout("Wan2.1-I2V-14B", "49 x 480 x 832", "13 x 60 x 104, patch 1x2x2", n_wan, TEXT_TOKENS, clip)),
        ("Wan2.1-I2V-14B block, CogVideoX size", "wan",
         Layout("Wan2.1-I2V-14B", "49 x 480 x 720", "13 x 60 x 90, patch 1x2x2", n_cog, TEXT_TOKENS, clip)),
    ]
    rows = []
    for label, kind, lay in cases:
        t0 = time.perf_counter()
        if kind == "cogvideox":
            mcfg = MotionAttentionConfig.paper_6b()
            block_terms = cogvideox_block_flops(cog_dim, lay.vision_tokens, lay.text_tokens, cog["time_embed_dim"],
                                                4 * cog_dim)
            block_counted, block_ops = counted_cogvideox_block(cog, lay.vision_tokens, lay.text_tokens)
        else:
            mcfg = MotionAttentionConfig.paper_18b()
            block_terms = wan_block_flops(wan_dim, lay.vision_tokens, lay.text_tokens, lay.image_tokens,
                                          wan["ffn_dim"])
            block_counted, block_ops = counted_wan_block(wan, lay.vision_tokens, lay.text_tokens, lay.image_tokens)
        motion_terms = motion_attention_flops(mcfg, lay.vision_tokens, lay.motion_tokens)
        motion_counted, motion_ops = counted_motion_attention(mcfg, lay.vision_tokens, lay.motion_tokens)
        row = {"label": label, "layout": lay.__dict__, "motion_terms": motion_terms, "motion_analytic": sum(
            motion_terms.values()), "motion_counted": motion_counted, "motion_ops": motion_ops,
            "block_terms": block_terms, "block_analytic": sum(block_terms.values()), "block_counted": block_counted,
            "block_ops": block_ops, "seconds": time.perf_counter() - t0}
        rows.append(row)
        log(f"{label}: motion {row['motion_analytic'] / 1e9:.1f} / {motion_counted / 1e9:.1f} GFLOPs, "
            f"block {row['block_analytic'] / 1e9:.1f} / {block_counted / 1e9:.1f} GFLOPs "
            f"(ratio {motion_counted / block_counted:.4f})")
    # Whole-network shares (blocks only; patch embedding and head are negligible): paper layouts.
    shares = {}
    for name, row, blocks, modules in (("MV-DiT-6B (paper: 21 modules in 42 blocks)", rows[1], 42, 21),
                                       ("MV-DiT-7B (release: 42 modules in 42 blocks)", rows[1], 42, 42),
                                       ("MV-DiT-18B (paper: 20 modules in 40 blocks, 480P)", rows[2], 40, 20),
                                       ("MV-DiT-17B (release: 10 modules in 40 blocks, 480P)", rows[2], 40, 10)):
        motion, block = modules * row["motion_counted"], blocks * row["block_counted"]
        shares[name] = {"motion_tflops": motion / 1e12, "blocks_tflops": block / 1e12,
                        "share": motion / (motion + block)}
    return {"rows": rows, "shares": shares}


# ---- 2. Ray Train scaling --------------------------------------------------------------------------
def rendered_clips(count: int, frames: int, height: int, width: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` one-person clips (frames uint8 (T, H, W, 3), joints (T, 24, 3) metres) from pipeline.synthetic."""
    from pipeline.synthetic import ShotSpec, motion_joints, render_shot

    kinds = ("walk", "wave", "dance", "squat", "jump", "turn")
    clips = []
    for i in range(count):
        shot = render_shot(ShotSpec("normal", frames, kinds[i % len(kinds)]), width, height, 25.0,
                           np.random.default_rng([seed, i]))
        joints = motion_joints(shot.pose[:, 0], shot.transl[:, 0]).astype(np.float32)
        clips.append((shot.frames, joints))
    return clips


def tiny_tokenizer_checkpoint(folder: Path) -> str:
    """A tiny 4DMoT checkpoint with a random codebook (as tests/test_train_mvdit.py makes one).

    Untrained: step time does not depend on the codebook's values, only on its shapes.
    """
    from models.tokenizer import VQVAE, TokenizerConfig
    from pipeline.core.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.tiny())
    model.vq.codebook.copy_(torch.randn_like(model.vq.codebook))
    return str(save_checkpoint(folder, 1, model, None, stats_mean=torch.zeros(3), stats_std=torch.full((3,), 0.3),
                               sampler={"seed": 0}, train_config={}, tokenizer_config=model.config.to_dict()))


def bench_ray(steps: int, everies: tuple[int, ...], batch: int, clips: int, out: Path) -> dict[str, Any]:
    """Tiny MV-DiT training: local (no Ray), Ray Train with 1 and with 2 workers, for each checkpoint interval.

    Each checkpoint interval of ``every`` steps also holds one checkpoint write and one metrics
    report (``log_every = every``). Ray Train 2.60 keeps one pending report per worker
    (``result_queue`` maxsize 1) and its controller drains it every 2 s
    (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), so reports more frequent than that block the worker:
    a short interval shows that cap, a long one the training speed.
    """
    import ray

    from pipeline.core.checkpoints import list_checkpoints
    from pipeline.core.ray_runtime import ensure_ray
    from pipeline.mvdit.config import MVDiTTrainConfig
    from pipeline.mvdit.train import train_mvdit

    t0 = time.perf_counter()
    samples = rendered_clips(clips, 49, 48, 64)
    render_s = time.perf_counter() - t0
    tokenizer = tiny_tokenizer_checkpoint(out / "tokenizer")
    t0 = time.perf_counter()
    ensure_ray("")
    result: dict[str, Any] = {"ray_init_s": time.perf_counter() - t0, "render_s": render_s, "steps": steps,
                              "everies": list(everies), "batch_per_worker": batch, "clips": clips, "runs": []}
    log(f"rendered {clips} clips in {render_s:.1f} s; ray init {result['ray_init_s']:.1f} s")
    for every in everies:
        for backend, workers in (("local", 1), ("ray", 1), ("ray", 2)):
            run_dir = out / f"{backend}_w{workers}_every{every}"
            shutil.rmtree(run_dir, ignore_errors=True)
            cfg = MVDiTTrainConfig.tiny(backend=backend, num_workers=workers, use_gpu=False, steps=steps,
                                        batch_size=batch, buckets=((48, 64),), checkpoint_every=every,
                                        keep_checkpoints=10_000, log_every=every, resume=False,
                                        run_name=f"bench-mvdit-w{workers}-e{every}")
            load_before = load_average()
            started = time.time()
            train_mvdit(samples, tokenizer, None, cfg, run_dir, log=lambda _: None)
            finished = time.time()
            stamps = [(int(p.stem.split("_")[1]), p.stat().st_mtime) for p in list_checkpoints(run_dir / "checkpoints")]
            (s0, m0), (s1, m1) = stamps[0], stamps[-1]
            rate = (s1 - s0) / (m1 - m0)
            run = {"backend": backend, "workers": workers, "every": every, "steps_per_s": rate,
                   "samples_per_s": rate * batch * workers, "startup_s": (m0 - started) - s0 / rate,
                   "total_s": finished - started, "after_training_s": finished - m1,
                   "interval_s": [b - a for (_, a), (_, b) in zip(stamps, stamps[1:])],
                   "load_before": load_before, "load_after": load_average()}
            result["runs"].append(run)
            log(f"{backend} {workers} worker(s), checkpoint every {every}: {rate:.2f} steps/s, "
                f"{run['samples_per_s']:.1f} samples/s, startup {run['startup_s']:.1f} s, total {run['total_s']:.1f} s")
    ray.shutdown()
    return result


# ---- report ------------------------------------------------------------------------------------------
def _g(flops: float) -> str:
    return f"{flops / 1e9:,.1f}"


def to_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "## MV-DiT: motion-attention FLOPs and Ray Train step time",
        "",
        f"- Commands: {', '.join(f'`{c}`' for c in res['commands'])}",
        f"- Machine: {m['machine']}, {m['cores']} cores, {m['memory']}, no GPU; Python {m['python']}, "
        f"torch {m['torch']}, diffusers {m.get('diffusers', '?')}, ray {m.get('ray', '?')}.",
        f"- Date: {res['date']}. Load average {m['load_start']:.1f} at the start, {res.get('load_end', float('nan')):.1f} "
        "at the end (2 cores shared with other work; per-row values in the Ray table).",
        f"- Total wall time: {res.get('total_min', float('nan')):.1f} min.",
        "",
    ]
    if "flops" in res:
        rows = res["flops"]["rows"]
        lines += [
            "### FLOPs of one motion-attention module vs one backbone block (one sample, one forward pass)",
            "",
            "Analytic = the matmul formulas in `bench/bench_mvdit.py` (2 FLOPs per multiply-add); counted = "
            "`torch.utils.flop_counter.FlopCounterMode` around the real modules built at full width on the `meta` "
            "device (`MotionAttention` with `MotionAttentionConfig.paper_6b()` / `paper_18b()`, diffusers' stock "
            "`CogVideoXBlock` / `WanTransformerBlock`), full-size token counts, no memory used. Neither counts "
            "norms, RoPE, softmax, biases or activations (see the note below the tables). Motion tokens: 13 latent "
            "frames x 24 joints = 312. The release layouts (7B: per-head q/k norm, no v norm; 17B: pre-norm, RMSNorm) "
            "have the same matmuls, so the same FLOPs per module.",
            "",
            "| backbone block (video; latent) | vision + text (+ image) tokens | module | analytic GFLOPs | "
            "counted GFLOPs | counted / analytic | ratio to the block |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lay = r["layout"]
            tokens = f"{lay['vision_tokens']:,} + {lay['text_tokens']}" + (
                f" + {lay['image_tokens']}" if lay["image_tokens"] else "")
            where = f"{r['label']} ({lay['video']}; {lay['latent']})"
            lines.append(f"| {where} | {tokens} | backbone block | {_g(r['block_analytic'])} | {_g(r['block_counted'])} "
                         f"| {r['block_counted'] / r['block_analytic']:.4f} | 1 |")
            lines.append(f"| | {lay['vision_tokens']:,} queries, {lay['motion_tokens']} keys | motion attention "
                         f"| {_g(r['motion_analytic'])} | {_g(r['motion_counted'])} "
                         f"| {r['motion_counted'] / r['motion_analytic']:.4f} "
                         f"| {r['motion_counted'] / r['block_counted']:.4f} |")
        lines += ["", "Per-term analytic GFLOPs of the motion-attention module (the counter's per-op totals beside):", "",
                  "| case | q_proj | k_proj | v_proj | QK^T | AV | out_proj | counter per op |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            t = r["motion_terms"]
            ops = ", ".join(f"{k.removeprefix('aten.')} {_g(v)}" for k, v in r["motion_ops"].items())
            lines.append(f"| {r['label']} | {_g(t['q_proj'])} | {_g(t['k_proj'])} | {_g(t['v_proj'])} | {_g(t['qk'])} "
                         f"| {_g(t['av'])} | {_g(t['out_proj'])} | {ops} |")
        lines += ["", "Per-term analytic GFLOPs of the backbone blocks (the counter's per-op totals beside):", ""]
        for r in rows:
            terms = ", ".join(f"{k} {_g(v)}" for k, v in r["block_terms"].items())
            ops = ", ".join(f"{k.removeprefix('aten.')} {_g(v)}" for k, v in r["block_ops"].items())
            lines.append(f"- {r['label']}: {terms}; counter: {ops}.")
        lines += ["", "Whole-network share of motion attention (blocks only, counted FLOPs; patch embedding, "
                  "condition embedders and head left out):", "",
                  "| model | motion attention TFLOPs | backbone blocks TFLOPs | motion share |",
                  "| --- | ---: | ---: | ---: |"]
        for name, s in res["flops"]["shares"].items():
            lines.append(f"| {name} | {s['motion_tflops']:.2f} | {s['blocks_tflops']:.2f} | {100 * s['share']:.2f}% |")
        first = rows[0]
        lay = first["layout"]
        heads_6b = MotionAttentionConfig.paper_6b().heads
        s_all = lay["vision_tokens"] + lay["text_tokens"]
        block_softmax = SOFTMAX_FLOPS_PER_SCORE * heads_6b * s_all**2
        motion_softmax = SOFTMAX_FLOPS_PER_SCORE * heads_6b * lay["vision_tokens"] * lay["motion_tokens"]
        lines += ["", f"Not counted by either: the softmax, at about {SOFTMAX_FLOPS_PER_SCORE} FLOPs per score (max, "
                  f"subtract, exp, sum, divide), would add {_g(block_softmax)} GFLOPs to the stock CogVideoX-5B block "
                  f"({100 * block_softmax / first['block_counted']:.1f}%) and {_g(motion_softmax)} to the motion module "
                  f"({100 * motion_softmax / first['motion_counted']:.1f}%); norms, RoPE and biases are smaller still. "
                  "Torch's counter sees the attention as two bmm here because SDPA on `meta` runs its math path; on "
                  "real CPU tensors torch 2.14.1's counter has no entry for the fused CPU kernel "
                  "(`_scaled_dot_product_flash_attention_for_cpu`) and counts Q K^T and A V as zero "
                  "(`tests/test_mvdit_flops.py` counts under the math backend for that reason).",
                  "", "The module is cheap because its keys are only 312 motion tokens: Q K^T and A V cost "
                  "2 N M i each instead of the self-attention's 2 N^2 D, so the query and output projections "
                  "(2 N d i each) dominate it; a self-attention block adds the quadratic term and the feed-forward.", ""]
    if "ray" in res:
        r = res["ray"]
        lines += [
            f"### Ray Train: tiny MV-DiT with 1 vs 2 CPU workers ({r['steps']} steps, {r['batch_per_worker']} clips "
            "of 33 frames at 48 x 64 per worker per step, DDP)",
            "",
            f"Data: {r['clips']} clips of 49 frames rendered by `pipeline.synthetic` at 48 x 64 ({r['render_s']:.1f} s); "
            "tokenizer: a tiny 4DMoT with a random codebook (as `tests/test_train_mvdit.py` makes one; step time does "
            "not depend on its values); model: `MVDiTTrainConfig.tiny` (2 layers, 2 heads x 32, the fixed "
            "`PoolLatentMap`: 9 x 6 x 8 latents, 108 vision tokens, 216 motion tokens per clip), float32. "
            f"Local Ray start (once, before the Ray runs): {r['ray_init_s']:.1f} s. Steps/s = the slope of the "
            "modification times of the checkpoints rank 0 writes every `every` steps (after the first one); each "
            "interval also holds one checkpoint write and one metrics report (`ray.train.report` under Ray). "
            "Startup = time to step 0 (Ray Train worker group, process group, tokenizer and model build); "
            "'after' = from the last checkpoint to the end of `train_mvdit` (shutdown, reading the result). "
            "The 'local' rows run the same loop in this process (`backend=\"local\"`, 1 torch thread) for reference.",
            "",
            "| backend | workers | checkpoint + report every | median interval s | steps/s | samples/s (global) "
            "| speed-up vs Ray 1 worker (samples/s) | startup s | after training s | total s | load before "
            "| load after |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in r["runs"]:
            base = next(x["samples_per_s"] for x in r["runs"]
                        if x["backend"] == "ray" and x["workers"] == 1 and x["every"] == run["every"])
            backend = {"local": "local (no Ray)", "ray": "Ray Train"}[run["backend"]]
            lines.append(f"| {backend} | {run['workers']} | {run['every']} | {np.median(run['interval_s']):.2f} | "
                         f"{run['steps_per_s']:.2f} | "
                         f"{run['samples_per_s']:.1f} | {run['samples_per_s'] / base:.2f} | {max(run['startup_s'], 0.0):.1f} | "
                         f"{run['after_training_s']:.1f} | {run['total_s']:.1f} | {run['load_before']:.1f} | "
                         f"{run['load_after']:.1f} |")
        def pick(backend: str, workers: int, every: int) -> dict[str, Any]:
            return next(x for x in r["runs"] if (x["backend"], x["workers"], x["every"]) == (backend, workers, every))

        measured = "; ".join(
            f"report every {e}: 2-worker speed-up "
            f"{pick('ray', 2, e)['samples_per_s'] / pick('ray', 1, e)['samples_per_s']:.2f}, median interval "
            f"local {np.median(pick('local', 1, e)['interval_s']):.2f} s, Ray 1 worker "
            f"{np.median(pick('ray', 1, e)['interval_s']):.2f} s, Ray 2 workers "
            f"{np.median(pick('ray', 2, e)['interval_s']):.2f} s"
            for e in r["everies"])
        lines += ["", f"Measured in this run: {measured}."]
        lines += ["", "Reading the table: with a report every 10 steps the Ray rows are capped near one report per "
                  "2 s: Ray Train 2.60 holds one pending report per worker (`result_queue` maxsize 1) and its "
                  "controller drains it every `RAY_TRAIN_HEALTH_CHECK_INTERVAL_S` = 2 s, so `ray.train.report` "
                  "blocks the worker when reports come faster (`pipeline.mvdit.loop` reports every `log_every` "
                  "steps). A 1-worker run that hits the cap makes the 2-worker speed-up look larger than it is; the rows "
                  "with a report every 40 steps (intervals above 2 s) show the training speed itself. "
                  "Two workers on two shared cores get at most one core each while other work runs (see the load "
                  "columns): the speed-up is bounded by the cores, not by the code; on a cluster each worker has "
                  "its own.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast pass: few Ray steps")
    parser.add_argument("--sections", default="flops,ray", help="comma-separated subset of flops,ray")
    parser.add_argument("--out", default=None, help="folder for JSON and training runs")
    parser.add_argument("--md", default=None, help="Markdown results file")
    parser.add_argument("--report-only", action="store_true", help="rebuild the Markdown from the saved JSON")
    parser.add_argument("--ray-steps", type=int, default=160)
    parser.add_argument("--ray-every", default="10,40", help="checkpoint intervals (comma-separated); two or more "
                        "separate the per-step cost from the per-checkpoint cost")
    parser.add_argument("--ray-batch", type=int, default=4, help="clips per worker per step")
    parser.add_argument("--clips", type=int, default=6)
    args = parser.parse_args()
    # absolute: Ray Train workers run in their own working directory (a relative out_dir lands there)
    out = Path(args.out or ("bench/out/mvdit_quick" if args.quick else "bench/out/mvdit")).resolve()
    md = Path(args.md or ("bench/out/mvdit_quick.md" if args.quick else "bench/results/mvdit.md"))
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "mvdit.json"
    if args.report_only:
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(to_markdown(json.loads(json_path.read_text())))
        print(f"wrote {md}")
        return

    started = time.perf_counter()
    command = "python " + " ".join(["bench/bench_mvdit.py", *sys.argv[1:]])
    res: dict[str, Any] = {"commands": [command], "date": str(date.today()), "machine": machine_info(("diffusers", "ray"))}

    def save() -> None:
        res["load_end"] = load_average()
        res["total_min"] = (time.perf_counter() - started) / 60
        json_path.write_text(json.dumps(res, indent=1))

    sections = set(args.sections.split(","))
    torch.set_num_threads(1)
    if "flops" in sections:
        res["flops"] = bench_flops()
        save()
    if "ray" in sections:
        q = args.quick
        everies = (2, 3) if q else tuple(int(e) for e in args.ray_every.split(","))
        res["ray"] = bench_ray(steps=6 if q else args.ray_steps, everies=everies,
                               batch=args.ray_batch, clips=args.clips, out=out)
        save()
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(to_markdown(res))
    log(f"wrote {md} and {json_path}")


if __name__ == "__main__":
    main()
