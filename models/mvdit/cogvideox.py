"""MV-DiT-6B: CogVideoX-5B with 4D motion attention (paper Sec. 3.2, Eq. 3, App. A.1).

``MVDiTCogVideoX`` subclasses diffusers' ``CogVideoXTransformer3DModel`` (so
``save_pretrained`` / ``from_pretrained`` and the stock weights work unchanged) and
changes three things:

1. Identity (Eq. 3): ``in_channels`` is doubled (16 -> 32); the forward pass
   concatenates the noisy latents z_t with the reference latent repeated over the
   f latent frames, on channels, in that order: concat(z_t, repeat(z_ref, f)).
2. Motion attention (Eq. 5-8): a ``MotionAttention`` module named ``attn0``
   runs right after the gated self-attention (and before the feed-forward) of
   every second block (paper: blocks 0, 2, ..., 40: 21 modules). Its query is the
   raw residual stream; keys/values are the motion tokens; 4D RoPE tables come
   from ``build_rope_tables``.
3. Text branch removed (App. A.1): no text tokens ever enter the network. The
   backbone is called with an empty (B, 0, 4096) text sequence, so CogVideoX's
   joint text+vision attention sees vision tokens only and the text halves of
   its adaptive norms act on nothing. In the paper layout ``patch_embed.text_proj``
   is replaced by a parameter-free stub (12.6M parameters fewer); the release
   layout keeps the unused ``text_proj`` because its checkpoint holds it. The
   text-stream chunks of ``norm1/norm2.linear`` (6 x 3072 outputs, 3 of them for
   text) stay in both layouts: they are shared Linear layers of the pretrained
   weights and simply receive no gradient.

``motion_layout="release"`` reproduces the released MV-DiT-7B
(/work/shared/release-format/mvdit-7b-motion.json) so that its checkpoint loads
with strict=True: ``attn0`` in all 42 blocks, per-head LayerNorm on q and k,
none on v, RoPE t16|h24|w24 (vision, integer grid) and t16|x16|y16|z16 (motion,
millimetres), a (312, 3072) ``unconditional_motion_token``, diffusers parameter
names (``attn0.to_q``, ``attn0.to_out.0``...). Load the released folder with
``MVDiTCogVideoX.from_pretrained(path, motion_layout="release")``.

How the motion condition reaches the blocks without rewriting the backbone's
forward: the backbone passes ``image_rotary_emb`` untouched to every block; we
pass a ``RotaryWithMotion``, a (cos, sin) pair that also carries the motion
tokens and their RoPE tables. Stock blocks and attention processors unpack it as
the usual pair; the motion blocks read ``.motion``. Being a forward argument, it
survives gradient checkpointing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn

from models.mvdit.cfg import motion_condition
from models.mvdit.motion_attention import MotionAttention, MotionAttentionConfig
from models.mvdit.motion_conditioning import MotionConditioning
from models.mvdit.rope4d import MOTION_POSITION_SCALE, RopeTable, build_rope_tables, check_position_scale

logger = logging.getLogger(__name__)

Layout = Literal["paper", "release"]
LAYOUTS: tuple[str, ...] = ("paper", "release")


# --- plumbing shared with wan.py -----------------------------------------------------


@dataclass
class MotionContext:
    """The motion condition of one forward pass, shared by all motion blocks.

    tokens: (B, M, C) motion tokens after CFG dropping (M = T * J, frame-major).
    vision_rope / motion_rope: the motion attention's (cos, sin) tables, or None.
    """

    tokens: torch.Tensor
    vision_rope: RopeTable | None
    motion_rope: RopeTable | None


class RotaryWithMotion(tuple):
    """The backbone's (cos, sin) RoPE pair that also carries a ``MotionContext`` as ``.motion``."""

    motion: MotionContext

    def __new__(cls, cos: torch.Tensor, sin: torch.Tensor, motion: MotionContext) -> RotaryWithMotion:
        pair = super().__new__(cls, (cos, sin))
        pair.motion = motion
        return pair


def motion_of(rotary: Any, block: str) -> MotionContext:
    """The motion condition carried by a block's rotary argument, or a clear error."""
    if not isinstance(rotary, RotaryWithMotion):
        raise ValueError(
            f"{block} has motion attention but got no motion condition; "
            "call the MV-DiT model's forward (it passes motion tokens through the rotary argument)"
        )
    return rotary.motion


def batch_timestep(timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar or (B,) timestep -> (B,) tensor on ``device``."""
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or shape ({batch},), got {tuple(t.shape)}")
    return t


def check_motion_tokens(tokens: torch.Tensor, batch: int, frames: int, joints: int, channels: int) -> None:
    """Motion tokens must be (B, T * J, C) with T = the latent frame count of the video."""
    if tokens.ndim != 3 or tokens.shape != (batch, frames * joints, channels):
        raise ValueError(
            f"motion_tokens must be (B={batch}, T*J={frames}*{joints}={frames * joints}, C={channels}) "
            f"for {frames} latent frames, got {tuple(tokens.shape)}"
        )


def motion_rope_tables(
    cfg: MotionAttentionConfig,
    frames: int,
    height: int,
    width: int,
    mean_joints: Any,
    device: torch.device,
) -> tuple[RopeTable | None, RopeTable | None]:
    """Vision and motion RoPE tables of the motion attention, on ``device`` (Sec. 3.2, Alg. 1)."""
    if cfg.rope.uses_rope and mean_joints is None:
        raise ValueError(
            "the motion RoPE needs mean_joints (J, 3): the dataset-mean joints from motion_stats "
            "(metres; for pe='dynamic' each clip's first-frame joints (B, J, 3)); pass mean_joints= "
            "to forward or call model.set_mean_joints() once"
        )
    joints = None if mean_joints is None else torch.as_tensor(mean_joints, dtype=torch.float64)
    vision, motion = build_rope_tables(
        cfg.rope, cfg.dim_per_head, frames, height, width, mean_joints=joints, first_frame_joints=joints
    )
    return _to_device(vision, device), _to_device(motion, device)


def _to_device(table: RopeTable | None, device: torch.device) -> RopeTable | None:
    return None if table is None else (table[0].to(device), table[1].to(device))


def new_unconditional_tokens(frames: int, joints: int, channels: int) -> nn.Parameter | None:
    """Learnable c_m∅ (Sec. 3.2): (frames * J, C), initialised N(0, 0.02); None when frames == 0."""
    if frames < 0:
        raise ValueError(f"unconditional_frames must be >= 0, got {frames}")
    return nn.Parameter(torch.randn(frames * joints, channels) * 0.02) if frames else None


# --- CogVideoX parts -------------------------------------------------------------------


def cogvideox_rope_split(head_dim: int) -> tuple[int, int, int]:
    """CogVideoX's 3D RoPE split (t, h, w) of the head dim: 64 -> (16, 24, 24)."""
    return head_dim // 4, head_dim // 8 * 3, head_dim // 8 * 3


def base_grid_crop(grid_h: int, grid_w: int, base_w: int, base_h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Crop box of the stock CogVideoX RoPE: the latent grid scaled to fit the base grid, centred.

    The pretrained CogVideoX-5B saw its 3D RoPE at positions spread over this box
    of the 45 x 30 base grid, so the backbone's self-attention gets the same.
    """
    if grid_h / grid_w > base_h / base_w:
        h, w = base_h, int(round(base_h / grid_h * grid_w))
    else:
        h, w = int(round(base_w / grid_w * grid_h)), base_w
    top, left = int(round((base_h - h) / 2)), int(round((base_w - w) / 2))
    return (top, left), (top + h, left + w)


class CogVideoXMotionAttention(MotionAttention):
    """``MotionAttention`` under diffusers ``Attention`` names: to_q, to_k, to_v, to_out.0 (release ``attn0``).

    The projections are re-registered under these names (so state_dict, optimiser
    and accelerate-style loading all see them); the original names q, k, v, o
    still resolve, so ``MotionAttention``'s own code runs unchanged.
    """

    ALIASES = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0"}

    def __init__(self, cfg: MotionAttentionConfig) -> None:
        super().__init__(cfg)
        self.to_q = self._modules.pop("q")
        self.to_k = self._modules.pop("k")
        self.to_v = self._modules.pop("v")
        self.to_out = nn.ModuleList([self._modules.pop("o")])

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.ALIASES:
                return self.get_submodule(self.ALIASES[name])
            raise


class NoTextTokens(nn.Module):
    """Parameter-free stand-in for ``patch_embed.text_proj``: MV-DiT-6B has no text branch (App. A.1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if text.shape[1] != 0:
            raise ValueError(f"MV-DiT-6B has no text branch; got {text.shape[1]} text tokens")
        return text.new_zeros(text.shape[0], 0, self.dim)


class MotionCogVideoXBlock(CogVideoXBlock):
    """A CogVideoX block with 4D motion attention (``attn0``) between self-attention and feed-forward."""

    def __init__(self, motion: MotionAttentionConfig, **block_kwargs: Any) -> None:
        super().__init__(**block_kwargs)
        self.attn0 = CogVideoXMotionAttention(motion)
        # Released state_dict order: attn0.* before norm1.* (move attn0 to the front).
        for name in [n for n in self._modules if n != "attn0"]:
            self._modules[name] = self._modules.pop(name)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The stock block's steps (gated self-attention, gated feed-forward) with Eq. 5-8 in between."""
        motion = motion_of(image_rotary_emb, type(self).__name__)
        n_text = encoder_hidden_states.shape[1]
        # 1. adaLN-modulated joint self-attention (stock).
        x, ctx, gate, ctx_gate = self.norm1(hidden_states, encoder_hidden_states, temb)
        attn, ctx_attn = self.attn1(
            hidden_states=x, encoder_hidden_states=ctx, image_rotary_emb=image_rotary_emb, **(attention_kwargs or {})
        )
        hidden_states = hidden_states + gate * attn
        encoder_hidden_states = encoder_hidden_states + ctx_gate * ctx_attn
        # 2. Motion attention on the residual stream (Eq. 5-8), residual added, no gate.
        hidden_states = self.attn0(hidden_states, motion.tokens, motion.vision_rope, motion.motion_rope)
        # 3. adaLN-modulated feed-forward over [text, vision] (stock).
        x, ctx, gate, ctx_gate = self.norm2(hidden_states, encoder_hidden_states, temb)
        ff = self.ff(torch.cat([ctx, x], dim=1))
        hidden_states = hidden_states + gate * ff[:, n_text:]
        encoder_hidden_states = encoder_hidden_states + ctx_gate * ff[:, :n_text]
        return hidden_states, encoder_hidden_states


# --- configs ---------------------------------------------------------------------------------

COGVIDEOX_5B: dict[str, Any] = {
    # CogVideoX-5B (T2V) transformer config (release-format mvdit-7b-motion.json "reference_config"),
    # with in_channels doubled for Eq. 3.
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 32,
    "out_channels": 16,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embed_dim": 512,
    "text_embed_dim": 4096,
    "num_layers": 42,
    "dropout": 0.0,
    "attention_bias": True,
    "sample_width": 90,
    "sample_height": 60,
    "sample_frames": 49,
    "patch_size": 2,
    "temporal_compression_ratio": 4,
    "max_text_seq_length": 226,
    "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu",
    "norm_elementwise_affine": True,
    "norm_eps": 1e-5,
    "spatial_interpolation_scale": 1.875,
    "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": True,
}


@dataclass(frozen=True)
class MVDiTConfig:
    """MV-DiT-6B settings: the CogVideoX backbone kwargs plus the motion settings.

    layout: "paper" (App. A.1) or "release" (the official 7B checkpoint's layout).
    motion_token_dim: channels of the motion tokens (4DMoT code dim, 3072).
    unconditional_frames: latent frames covered by c_m∅ (None: paper 33 = 129 video
        frames, the longest training clip; release 13 = 49 frames, i.e. (312, 3072)).
    motion_pe: Table 2 positional-encoding variant (paper layout only).
    motion_position_scale: multiplies the (metre) joint positions in the motion RoPE;
        every layout: ``MOTION_POSITION_SCALE`` = 1000, millimetres as the release (`models.mvdit.rope4d`).
        Saved in the checkpoint's config; a config without it (saved before) is refused on load.
    train_backbone: paper trains all DiT blocks of the 6B model.
    """

    backbone: dict[str, Any] = field(default_factory=lambda: dict(COGVIDEOX_5B))
    layout: Layout = "paper"
    motion_token_dim: int = 3072
    num_joints: int = 24
    unconditional_frames: int | None = None
    motion_pe: str = "4d"
    motion_position_scale: float = MOTION_POSITION_SCALE
    train_backbone: bool = True

    @classmethod
    def cogvideox_5b(cls, layout: Layout = "paper") -> MVDiTConfig:
        """Full size: CogVideoX-5B, 48 heads x 64, 42 layers; ~6.35B (paper) / 7,157,411,904 (release)."""
        return cls(layout=layout)

    @classmethod
    def tiny(cls, layout: Layout = "paper", num_layers: int = 2, motion_token_dim: int = 64) -> MVDiTConfig:
        """Same classes at toy size for CPU tests and the demo: 2 heads x 32, 4 latent channels."""
        backbone = {
            **COGVIDEOX_5B,
            "num_attention_heads": 2, "attention_head_dim": 32, "in_channels": 8, "out_channels": 4,
            "time_embed_dim": 32, "text_embed_dim": 16, "num_layers": num_layers,
            "sample_width": 16, "sample_height": 16, "sample_frames": 9, "max_text_seq_length": 8,
        }
        return cls(backbone=backbone, layout=layout, motion_token_dim=motion_token_dim, unconditional_frames=4)

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of ``MVDiTCogVideoX``."""
        return {
            **self.backbone,
            "motion_layout": self.layout, "motion_token_dim": self.motion_token_dim, "num_joints": self.num_joints,
            "unconditional_frames": self.unconditional_frames, "motion_pe": self.motion_pe,
            "motion_position_scale": self.motion_position_scale, "train_backbone": self.train_backbone,
        }

    def build(self) -> MVDiTCogVideoX:
        """A randomly initialised model (wrap in ``torch.device('meta')`` to count without memory)."""
        return MVDiTCogVideoX(**self.model_kwargs())


def check_layout(layout: str, motion_pe: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"motion_layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "release" and motion_pe != "4d":
        raise ValueError(f"motion_layout='release' needs motion_pe='4d' (the released RoPE), got {motion_pe!r}")


# --- the model ---------------------------------------------------------------------------------


class MVDiTCogVideoX(CogVideoXTransformer3DModel, MotionConditioning):
    """MV-DiT-6B (paper) / MV-DiT-7B (release): CogVideoX-5B + reference concat + 4D motion attention.

    forward(hidden_states (B, F, C, H, W) noisy latents, reference_latent (B, C, H, W),
    (B, 1, C, H, W) or already repeated (B, F, C, H, W), motion_tokens (B, F * J, 3072),
    timestep, motion_mask (B,) bool: False uses c_m∅ (CFG), mean_joints (J, 3))
    -> the backbone's prediction (B, F, C, H, W) (v-prediction for CogVideoX-5B).
    """

    _no_split_modules = ["CogVideoXBlock", "MotionCogVideoXBlock", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 42,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = True,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        motion_layout: str = "paper",
        motion_token_dim: int = 3072,
        num_joints: int = 24,
        unconditional_frames: int | None = None,
        motion_pe: str = "4d",
        motion_position_scale: float | None = MOTION_POSITION_SCALE,
        motion_mean_joints: list[list[float]] | None = None,
        train_backbone: bool = True,
    ) -> None:
        check_layout(motion_layout, motion_pe)
        check_position_scale(motion_position_scale)  # None: a config saved before the millimetre unit
        if ofs_embed_dim is not None or patch_size_t is not None:
            raise ValueError("MV-DiT-6B builds on CogVideoX 1.0 (5B): ofs_embed_dim and patch_size_t must be None")
        if not use_rotary_positional_embeddings:
            raise ValueError("MV-DiT needs use_rotary_positional_embeddings=True (CogVideoX-5B's 3D RoPE)")
        out_channels = out_channels or in_channels // 2
        if in_channels != 2 * out_channels:
            raise ValueError(
                f"Eq. 3 concatenates noisy and reference latents: in_channels must be 2 * out_channels "
                f"= {2 * out_channels}, got {in_channels}"
            )
        if use_learned_positional_embeddings:
            # The released config.json carries it; the official Transformer7B ignores it too.
            logger.warning("MVDiTCogVideoX uses RoPE only; ignoring use_learned_positional_embeddings=True")
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift, time_embed_dim=time_embed_dim, ofs_embed_dim=None,
            text_embed_dim=text_embed_dim, num_layers=num_layers, dropout=dropout, attention_bias=attention_bias,
            sample_width=sample_width, sample_height=sample_height, sample_frames=sample_frames,
            patch_size=patch_size, patch_size_t=None, temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length, activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn, norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps, spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale, use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False, patch_bias=patch_bias,
        )
        inner_dim = num_attention_heads * attention_head_dim
        if motion_layout == "paper":
            self.patch_embed.text_proj = NoTextTokens(inner_dim)  # App. A.1: text branch removed
        motion = self.motion_attention_config
        block_kwargs = {
            "dim": inner_dim, "num_attention_heads": num_attention_heads, "attention_head_dim": attention_head_dim,
            "time_embed_dim": time_embed_dim, "dropout": dropout, "activation_fn": activation_fn,
            "attention_bias": attention_bias, "norm_elementwise_affine": norm_elementwise_affine,
            "norm_eps": norm_eps,
        }
        for i in self.motion_block_indices:
            self.transformer_blocks[i] = MotionCogVideoXBlock(motion, **block_kwargs)
        if unconditional_frames is None:
            unconditional_frames = 33 if motion_layout == "paper" else 13
        self.unconditional_motion_token = new_unconditional_tokens(unconditional_frames, num_joints, motion_token_dim)
        self.set_trainable(train_backbone)

    # -- structure ----------------------------------------------------------------------------
    PAPER_PRESET, RELEASE_PRESET = "paper_6b", "release_7b"  # `MotionConditioning.motion_attention_config`
    RELEASE_BLOCK_STEP = 1  # the release has motion attention in every block

    def release_rope_axes(self, head_dim: int) -> dict[str, tuple[int, ...]]:
        """The release's motion RoPE: four equal axes; vision: CogVideoX's own split."""
        return {"axis_dims": (head_dim // 4,) * 4, "vision_axis_dims": cogvideox_rope_split(head_dim)}

    def motion_modules(self) -> dict[int, MotionAttention]:
        """Block index -> its motion attention."""
        return {i: self.transformer_blocks[i].attn0 for i in self.motion_block_indices}

    def motion_trainable_modules(self) -> list[nn.Module]:
        """The motion attentions (`MotionConditioning.set_trainable` always trains them)."""
        return list(self.motion_modules().values())

    # -- positions --------------------------------------------------------------------------------
    def backbone_rope(self, frames: int, grid_h: int, grid_w: int, device: torch.device) -> RopeTable:
        """CogVideoX's own 3D RoPE for the self-attention, as its pipeline builds it (base-grid crop)."""
        p = self.config.patch_size
        crop = base_grid_crop(grid_h, grid_w, self.config.sample_width // p, self.config.sample_height // p)
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=self.config.attention_head_dim, crops_coords=crop, grid_size=(grid_h, grid_w),
            temporal_size=frames, device=device,
        )
        return cos, sin

    # -- forward ----------------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        reference_latent: torch.Tensor,
        motion_tokens: torch.Tensor,
        timestep: torch.Tensor | float | int,
        motion_mask: torch.Tensor | None = None,
        mean_joints: Any = None,
        return_dict: bool = True,
    ):
        """Eq. 3 input, Eq. 5-8 motion attention in the motion blocks, backbone prediction out.

        motion_mask: (B,) bool, True keeps the sample's motion tokens, False uses the
        unconditional tokens (training-time dropping and the CFG null branch).
        mean_joints: (J, 3) dataset-mean joints in metres (default: the config's).
        """
        c = self.config
        if hidden_states.ndim != 5 or hidden_states.shape[2] != c.out_channels:
            raise ValueError(
                f"hidden_states must be noisy latents (B, F, C={c.out_channels}, H, W), "
                f"got {tuple(hidden_states.shape)}"
            )
        batch, frames, _, height, width = hidden_states.shape
        p = c.patch_size
        if height % p or width % p:
            raise ValueError(f"latent height/width must be multiples of patch_size={p}, got {height}x{width}")
        reference = repeat_reference(reference_latent, frames, hidden_states.shape).to(hidden_states.dtype)
        z = torch.cat([hidden_states, reference], dim=2)  # Eq. 3: concat(z_t, Repeat(z_ref, f))
        check_motion_tokens(motion_tokens, batch, frames, c.num_joints, c.motion_token_dim)
        motion = motion_condition(motion_tokens, motion_mask, self.unconditional_motion_token, c.num_joints)
        grid_h, grid_w = height // p, width // p
        joints = mean_joints if mean_joints is not None else c.motion_mean_joints
        vision_rope, motion_rope = motion_rope_tables(
            self.motion_attention_config, frames, grid_h, grid_w, joints, z.device
        )
        cos, sin = self.backbone_rope(frames, grid_h, grid_w, z.device)
        rotary = RotaryWithMotion(cos, sin, MotionContext(motion.to(z.dtype), vision_rope, motion_rope))
        no_text = z.new_zeros(batch, 0, c.text_embed_dim)  # App. A.1: the text branch is removed
        return super().forward(
            hidden_states=z, encoder_hidden_states=no_text, timestep=batch_timestep(timestep, batch, z.device),
            image_rotary_emb=rotary, return_dict=return_dict,
        )

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls, backbone: CogVideoXTransformer3DModel | str | Path, **motion_kwargs: Any
    ) -> MVDiTCogVideoX:
        """Start MV-DiT-6B from a stock CogVideoX transformer (a diffusers folder or model).

        The patch embedding gains zero-initialised input channels for the reference
        latent (so the start equals the backbone on the noisy half); the paper layout
        drops ``text_proj``; motion attention and c_m∅ start fresh. An I2V backbone
        (CogVideoX-5B-I2V, in_channels 32) keeps its patch embedding as is; its
        persistent learned ``patch_embed.pos_embedding`` is dropped (RoPE only).
        """
        if not isinstance(backbone, CogVideoXTransformer3DModel):
            backbone = CogVideoXTransformer3DModel.from_pretrained(str(transformer_folder(backbone)))
        config = {k: v for k, v in backbone.config.items() if not k.startswith("_")}
        stock_in, out = config["in_channels"], config["out_channels"] or config["in_channels"]
        if stock_in not in (out, 2 * out):
            raise ValueError(f"backbone in_channels={stock_in} is neither out_channels={out} (T2V) nor 2x (I2V)")
        config["in_channels"] = 2 * out
        model = cls(**{**config, **motion_kwargs})
        state = dict(backbone.state_dict())
        if stock_in == out:
            w = state["patch_embed.proj.weight"]
            state["patch_embed.proj.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
        if model.config.motion_layout == "paper":
            state = {k: v for k, v in state.items() if not k.startswith("patch_embed.text_proj.")}
        if "patch_embed.pos_embedding" in state:
            # CogVideoX-5B-I2V saves its learned positional embedding (use_learned_positional_embeddings=True,
            # fixed to 720 x 480 x 49 and to 226 text tokens); MV-DiT positions vision tokens by RoPE only,
            # as the released Transformer7B does with the same flag, so the table is not used.
            logger.warning("from_backbone: dropping the backbone's learned patch_embed.pos_embedding %s "
                           "(MV-DiT uses the 3D RoPE only, as the release does)", tuple(state["patch_embed.pos_embedding"].shape))
            del state["patch_embed.pos_embedding"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        fresh = [k for k in missing if ".attn0." not in k and k != "unconditional_motion_token"]
        if fresh or unexpected:
            raise ValueError(f"backbone does not match MV-DiT: missing {fresh[:5]}, unexpected {unexpected[:5]}")
        return model


def repeat_reference(reference: torch.Tensor, frames: int, noisy_shape: torch.Size) -> torch.Tensor:
    """Eq. 3's Repeat(z_ref, f): (B, C, H, W) or (B, 1, C, H, W) -> (B, F, C, H, W); (B, F, C, H, W) passes."""
    batch, _, channels, height, width = noisy_shape
    if reference.ndim == 4:
        reference = reference.unsqueeze(1)
    if reference.ndim != 5 or reference.shape[1] not in (1, frames) or reference.shape[0] != batch or tuple(
        reference.shape[2:]
    ) != (channels, height, width):
        raise ValueError(
            f"reference_latent must be (B, C, H, W), (B, 1, C, H, W) or (B, F, C, H, W) matching the noisy "
            f"latents {tuple(noisy_shape)}, got {tuple(reference.shape)}"
        )
    return reference.expand(batch, frames, channels, height, width)


def transformer_folder(path: str | Path) -> Path:
    """A diffusers transformer folder (or a pipeline folder with ``transformer/``), or a clear error."""
    path = Path(path)
    for folder in (path, path / "transformer"):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"no diffusers transformer config.json in {path} or {path / 'transformer'}")
