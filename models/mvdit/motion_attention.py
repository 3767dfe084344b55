"""4D motion attention: vision tokens attend to motion tokens (paper Sec. 3.2, Eq. 5-8, Sec. 3.3).

    Q = RoPE(LayerNorm(W_q z_vision), P_vision)          (5)
    K = RoPE(LayerNorm(W_k z_motion), P_motion)          (6)
    V = LayerNorm(W_v z_motion)                          (7)
    out = z_vision + W_o softmax(Q K^T / sqrt(d)) V      (8) + residual

``MotionAttention.forward`` returns the residual-added vision stream;
``MotionAttention.delta`` returns only the increment ``W_o(attention)`` for a
caller that wants to gate or place the residual itself. ``W_o`` is zero-initialised
(``zero_init_out``) so that a freshly inserted module leaves the backbone's output
unchanged; the paper initialises all attention parameters randomly (App. A.1).

Every difference between the paper and the released weights is one config field
(``/work/shared/paper-facts.md``, "Eq. 5-7 norms", "motion tokens"):

- ``qk_norm`` / ``norm_scope`` / ``v_norm``: the paper's LayerNorm over the full
  width on Q, K and V; the 7B release uses a per-head LayerNorm on q and k only,
  the 17B release a full-width RMSNorm on q and k only.
- ``pre_norm``: a LayerNorm on the vision input (the 17B release's ``norm4``).
- ``motion_align``: motion tokens of ``motion_dim`` channels are zero-padded to
  ``dim`` (Sec. 3.3, 18B model) or projected by a linear layer (App. H ablation).
- ``key_split="release_17b"``: the 17B release reshapes the keys with
  ``view(B, heads, M, head_dim)`` straight from (B, M, heads * head_dim) instead
  of splitting each token into heads; reproduced so its weights behave the same.

Parameter names: ``q, k, v, o, norm_q, norm_k, norm_v, pre_norm, motion_proj,
motion_pe``. ``release_key_map`` renames them to the released state_dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models.mvdit.rope4d import LearnableMotionPE, RopeConfig, RopeTable, RopeTables, apply_rope, build_rope_tables

NormKind = Literal["layernorm", "rms", "none"]


@dataclass(frozen=True)
class MotionAttentionConfig:
    """Shape and variant of one motion-attention module.

    dim: vision hidden size (query input and output width).
    motion_dim: channels of the motion tokens (4DMoT code dim, 3072); None = dim.
    heads, head_dim: attention heads; head_dim None = dim // heads.
    """

    dim: int
    heads: int
    head_dim: int | None = None
    motion_dim: int | None = None
    qk_norm: NormKind = "layernorm"
    norm_scope: Literal["full", "per_head"] = "full"
    v_norm: bool = True
    pre_norm: bool = False
    motion_align: Literal["zero_pad", "linear"] = "zero_pad"
    key_split: Literal["per_token", "release_17b"] = "per_token"
    bias: bool = True
    eps: float = 1e-6
    zero_init_out: bool = True
    rope: RopeConfig = field(default_factory=RopeConfig)
    num_joints: int = 24  # learnable PE only
    max_frames: int = 33  # learnable PE only: latent frames of the longest clip (129 frames -> 33)

    def __post_init__(self) -> None:
        if self.dim <= 0 or self.heads <= 0:
            raise ValueError(f"MotionAttentionConfig: dim and heads must be positive, got {self.dim}, {self.heads}")
        if self.head_dim is None and self.dim % self.heads:
            raise ValueError(f"MotionAttentionConfig: dim={self.dim} not divisible by heads={self.heads}; set head_dim")
        if self.motion_align == "zero_pad" and self.motion_channels > self.dim:
            raise ValueError(
                f"MotionAttentionConfig: zero_pad needs motion_dim <= dim, got {self.motion_channels} > {self.dim}"
            )
        for name, value, allowed in (
            ("qk_norm", self.qk_norm, ("layernorm", "rms", "none")),
            ("norm_scope", self.norm_scope, ("full", "per_head")),
            ("motion_align", self.motion_align, ("zero_pad", "linear")),
            ("key_split", self.key_split, ("per_token", "release_17b")),
        ):
            if value not in allowed:
                raise ValueError(f"MotionAttentionConfig.{name} must be one of {allowed}, got {value!r}")

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_per_head

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.dim // self.heads

    @property
    def motion_channels(self) -> int:
        return self.motion_dim if self.motion_dim is not None else self.dim

    # Full-size presets ------------------------------------------------------------
    @classmethod
    def paper_6b(cls) -> MotionAttentionConfig:
        """Paper Eq. 5-7 on CogVideoX-5B: dim 3072, 48 heads of 64, 4D RoPE 16|16|16|16."""
        return cls(dim=3072, heads=48, head_dim=64, motion_dim=3072)

    @classmethod
    def paper_18b(cls) -> MotionAttentionConfig:
        """Paper Eq. 5-7 on Wan2.1-14B: dim 5120, 40 heads of 128, 3072-d tokens zero-padded (Sec. 3.3)."""
        return cls(dim=5120, heads=40, head_dim=128, motion_dim=3072)

    @classmethod
    def release_7b(cls) -> MotionAttentionConfig:
        """Layout of the released ``transformer_blocks.{i}.attn0`` (37,761,280 parameters)."""
        return cls(
            dim=3072, heads=48, head_dim=64, motion_dim=3072,
            qk_norm="layernorm", norm_scope="per_head", v_norm=False, pre_norm=False,
            rope=RopeConfig(axis_dims=(16, 16, 16, 16), vision_axis_dims=(16, 24, 24)),
        )

    @classmethod
    def release_17b(cls) -> MotionAttentionConfig:
        """Layout of the released ``blocks.{i}.norm4`` + ``blocks.{i}.motion_attn`` (104,898,560 parameters)."""
        return cls(
            dim=5120, heads=40, head_dim=128, motion_dim=3072,
            qk_norm="rms", norm_scope="full", v_norm=False, pre_norm=True, key_split="release_17b",
            rope=RopeConfig(axis_dims=(44, 28, 28, 28), vision_axis_dims=(44, 42, 42)),
        )


def _norm(kind: NormKind, width: int, eps: float) -> nn.Module | None:
    if kind == "layernorm":
        return nn.LayerNorm(width, eps=eps)
    if kind == "rms":
        return nn.RMSNorm(width, eps=eps)
    return None


def motion_attention_param_count(cfg: MotionAttentionConfig) -> int:
    """Closed-form parameter count of ``MotionAttention(cfg)``.

    q, k, v: 3 (dim * inner + inner); o: inner * dim + dim (inner = heads * head_dim;
    no bias terms when ``bias=False``). Norms on q and k (and v when ``v_norm``):
    LayerNorm 2w, RMSNorm w, with w = inner ("full") or head_dim ("per_head").
    Pre-norm 2 dim; linear alignment motion_dim * dim + dim; learnable PE
    (max_frames + J) * motion_dim.
    """
    d, inner, b = cfg.dim, cfg.inner_dim, int(cfg.bias)
    count = 3 * (d * inner + b * inner) + (inner * d + b * d)
    width = inner if cfg.norm_scope == "full" else cfg.dim_per_head
    count += 2 * {"layernorm": 2 * width, "rms": width, "none": 0}[cfg.qk_norm]
    count += 2 * width if cfg.v_norm else 0
    count += 2 * d if cfg.pre_norm else 0
    count += cfg.motion_channels * d + d if cfg.motion_align == "linear" else 0
    if cfg.rope.pe == "learnable":
        count += (cfg.max_frames + cfg.num_joints) * cfg.motion_channels
    return count


class MotionAttention(nn.Module):
    """Eq. 5-8: cross-attention from vision tokens (queries) to motion tokens (keys, values)."""

    def __init__(self, cfg: MotionAttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, inner = cfg.dim, cfg.inner_dim
        self.pre_norm = nn.LayerNorm(d, eps=cfg.eps) if cfg.pre_norm else None
        self.motion_pe = (
            LearnableMotionPE(cfg.num_joints, cfg.max_frames, cfg.motion_channels)
            if cfg.rope.pe == "learnable" else None
        )
        self.motion_proj = nn.Linear(cfg.motion_channels, d) if cfg.motion_align == "linear" else None
        self.q = nn.Linear(d, inner, bias=cfg.bias)
        self.k = nn.Linear(d, inner, bias=cfg.bias)
        self.v = nn.Linear(d, inner, bias=cfg.bias)
        self.o = nn.Linear(inner, d, bias=cfg.bias)
        width = inner if cfg.norm_scope == "full" else cfg.dim_per_head
        self.norm_q = _norm(cfg.qk_norm, width, cfg.eps)
        self.norm_k = _norm(cfg.qk_norm, width, cfg.eps)
        self.norm_v = nn.LayerNorm(width, eps=cfg.eps) if cfg.v_norm else None
        if cfg.zero_init_out:
            nn.init.zeros_(self.o.weight)
            if self.o.bias is not None:
                nn.init.zeros_(self.o.bias)

    def rope_tables(
        self, num_frames: int, height: int, width: int, mean_joints=None, first_frame_joints=None
    ) -> RopeTables:
        """RoPE tables for this module's config (see ``build_rope_tables``); share them across blocks."""
        return build_rope_tables(
            self.cfg.rope, self.cfg.dim_per_head, num_frames, height, width, mean_joints, first_frame_joints
        )

    def _align_motion(self, motion: torch.Tensor) -> torch.Tensor:
        if self.motion_pe is not None:
            motion = self.motion_pe(motion)
        if self.motion_proj is not None:
            return self.motion_proj(motion)
        return F.pad(motion, (0, self.cfg.dim - self.cfg.motion_channels))  # Sec. 3.3 zero-padding

    def _check_inputs(self, vision, motion, vision_rope, motion_rope) -> None:
        cfg = self.cfg
        if vision.ndim != 3 or vision.shape[-1] != cfg.dim:
            raise ValueError(f"vision must be (B, N, dim={cfg.dim}), got {tuple(vision.shape)}")
        if motion.ndim != 3 or motion.shape[-1] != cfg.motion_channels or motion.shape[0] != vision.shape[0]:
            raise ValueError(
                f"motion must be (B={vision.shape[0]}, M, motion_dim={cfg.motion_channels}), got {tuple(motion.shape)}"
            )
        has = (vision_rope is not None, motion_rope is not None)
        if cfg.rope.uses_rope and has != (True, True):
            raise ValueError(f"pe={cfg.rope.pe!r} needs both vision_rope and motion_rope (see rope_tables())")
        if not cfg.rope.uses_rope and any(has):
            raise ValueError(f"pe={cfg.rope.pe!r} uses no RoPE; pass vision_rope=None and motion_rope=None")

    def _heads_table(self, table: RopeTable, length: int, name: str) -> RopeTable:
        cos, sin = table
        if cos.shape[-2:] != (length, self.cfg.dim_per_head) or cos.ndim not in (2, 3):
            raise ValueError(
                f"{name} cos/sin must be (N, head_dim) or (B, N, head_dim) with N={length}, "
                f"head_dim={self.cfg.dim_per_head}; got {tuple(cos.shape)}"
            )
        if cos.ndim == 3:  # per-clip tables ("dynamic" PE): add the head axis
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return cos, sin

    def qkv(
        self,
        vision: torch.Tensor,
        motion: torch.Tensor,
        vision_rope: RopeTable | None = None,
        motion_rope: RopeTable | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 5-7: Q (B, heads, N, hd), K and V (B, heads, M, hd); also for attention maps (App. F.2)."""
        self._check_inputs(vision, motion, vision_rope, motion_rope)
        cfg = self.cfg
        x = self.pre_norm(vision) if self.pre_norm is not None else vision
        m = self._align_motion(motion)
        q, k, v = self.q(x), self.k(m), self.v(m)
        full = cfg.norm_scope == "full"
        if full:
            q, k, v = (n(t) if n is not None else t for n, t in ((self.norm_q, q), (self.norm_k, k), (self.norm_v, v)))
        q = rearrange(q, "b n (h d) -> b h n d", h=cfg.heads)
        v = rearrange(v, "b m (h d) -> b h m d", h=cfg.heads)
        if cfg.key_split == "release_17b":
            k = k.reshape(k.shape[0], cfg.heads, k.shape[1], cfg.dim_per_head)  # not a transpose: release quirk
        else:
            k = rearrange(k, "b m (h d) -> b h m d", h=cfg.heads)
        if not full:
            q, k, v = (n(t) if n is not None else t for n, t in ((self.norm_q, q), (self.norm_k, k), (self.norm_v, v)))
        if vision_rope is not None and motion_rope is not None:
            q = apply_rope(q, *self._heads_table(vision_rope, q.shape[-2], "vision_rope"))
            k = apply_rope(k, *self._heads_table(motion_rope, k.shape[-2], "motion_rope"))
        return q, k, v

    def delta(
        self,
        vision: torch.Tensor,
        motion: torch.Tensor,
        vision_rope: RopeTable | None = None,
        motion_rope: RopeTable | None = None,
    ) -> torch.Tensor:
        """Eq. 8 and the output projection: the increment W_o(softmax(QK^T/sqrt(d))V), (B, N, dim)."""
        q, k, v = self.qkv(vision, motion, vision_rope, motion_rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(rearrange(out, "b h n d -> b n (h d)"))

    def forward(
        self,
        vision: torch.Tensor,
        motion: torch.Tensor,
        vision_rope: RopeTable | None = None,
        motion_rope: RopeTable | None = None,
    ) -> torch.Tensor:
        """vision (B, N, dim), motion (B, M, motion_dim), RoPE tables (N|M, head_dim) -> vision + delta."""
        return vision + self.delta(vision, motion, vision_rope, motion_rope)


def release_key_map(layout: Literal["7b", "17b"]) -> dict[str, str]:
    """This module's parameter names -> the released names, relative to one DiT block.

    7B: ``transformer_blocks.{i}.`` + value (diffusers ``attn0``); 17B: ``blocks.{i}.`` + value.
    Use with ``MotionAttentionConfig.release_7b()`` / ``release_17b()``.
    """
    if layout == "7b":
        names = {"q": "attn0.to_q", "k": "attn0.to_k", "v": "attn0.to_v", "o": "attn0.to_out.0"}
        mapping = {f"{a}.{p}": f"{b}.{p}" for a, b in names.items() for p in ("weight", "bias")}
        mapping.update({f"norm_{a}.{p}": f"attn0.norm_{a}.{p}" for a in "qk" for p in ("weight", "bias")})
        return mapping
    if layout == "17b":
        mapping = {f"{a}.{p}": f"motion_attn.{a}.{p}" for a in "qkvo" for p in ("weight", "bias")}
        mapping.update({f"norm_{a}.weight": f"motion_attn.norm_{a}.weight" for a in "qk"})
        mapping.update({f"pre_norm.{p}": f"norm4.{p}" for p in ("weight", "bias")})
        return mapping
    raise ValueError(f"release layout must be '7b' or '17b', got {layout!r}")
