"""MV-DiT-18B: Wan2.1-I2V-14B with 4D motion attention (paper Sec. 3.3, App. A.1, App. C, Eq. 9-10).

``MVDiTWan`` subclasses diffusers' ``WanTransformer3DModel`` (I2V-14B config: 40
heads x 128 = 5120, 40 layers, in_channels 36, CLIP image embedding branch):

- Text and image branches kept (App. C): T5 text tokens and the 257 CLIP tokens
  of the reference frame go through Wan's cross-attention unchanged.
- Identity (Eq. 9-10): z_ref = VAE(ZeroPad(x0)) (the reference frame followed by
  zero frames), a 4-channel mask marking the given frame(s) per latent frame,
  and the noisy latents are concatenated on channels (``wan_vision_latents``).
- Motion attention after the cross-attention of every second block (paper:
  blocks 0, 2, ..., 38: 20 modules), before the feed-forward, residual, no gate:
  ``x = x + motion_attn(norm4(x))`` (``norm4`` only where the config asks for a
  pre-norm). Motion tokens (3072) are zero-padded to 5120 (Sec. 3.3) inside
  ``MotionAttention``.
- Only the new modules train (App. A.1): ``requires_grad`` is False on the backbone.
- c_m∅: the paper reuses the 6B's unconditional motion tokens (Sec. 3.3); same
  shape as the 6B's, so `models.mvdit.cfg.reuse_unconditional_tokens` copies
  them in and freezes them (``MVDiTTrainConfig.unconditional_from``).

``motion_layout="release"`` reproduces the released MV-DiT-17B
(/work/shared/release-format/mvdit-17b-motion.json): motion attention in blocks
with i % 4 == 0, LayerNorm ``norm4`` on the block input, full-width RMSNorm on q
and k, the release's key-reshape quirk, RoPE t44|h42|w42 / t44|x28|y28|z28, and
no unconditional token (no motion CFG). The release uses the original Wan key
names, not diffusers': ``to_release_state_dict`` / ``from_release_state_dict``
rename between the two (diffusers' own Wan conversion table, as listed in the
JSON); the motion keys ``blocks.{i}.norm4.*`` and ``blocks.{i}.motion_attn.*`` are
the same in both.

The motion condition reaches the blocks as a ``RotaryWithMotion`` (see
``cogvideox.py``): the model's ``rope`` module returns the (cos, sin) pair with the
motion tokens attached while ``MVDiTWan.forward`` runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformerBlock
from einops import rearrange
from torch import nn

from models.mvdit.cfg import motion_condition
from models.mvdit.cogvideox import (
    Layout,
    MotionContext,
    RotaryWithMotion,
    check_layout,
    transformer_folder,
    batch_timestep,
    check_motion_tokens,
    motion_of,
    motion_rope_tables,
    new_unconditional_tokens,
)
from models.mvdit.motion_attention import MotionAttention, MotionAttentionConfig
from models.mvdit.motion_conditioning import MotionConditioning
from models.mvdit.rope4d import MOTION_POSITION_SCALE, check_position_scale

# --- Eq. 9-10: reference latents with the frame mask -------------------------------------------


def zero_padded_reference(frame: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Eq. 9's ZeroPad(x0): reference frame (B, 3, H, W) -> video (B, 3, num_frames, H, W), zeros after frame 0."""
    if frame.ndim == 5 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim != 4:
        raise ValueError(f"reference frame must be (B, C, H, W) or (B, C, 1, H, W), got {tuple(frame.shape)}")
    video = frame.new_zeros(*frame.shape[:2], num_frames, *frame.shape[2:])
    video[:, :, 0] = frame
    return video


def reference_frame_mask(
    latent_frames: int, height: int, width: int, known_frames: int = 1, temporal_ratio: int = 4
) -> torch.Tensor:
    """The binary mask of Eq. 10, (temporal_ratio, f, h, w): 1 where a video frame is given.

    The mask is built per video frame (1 + ratio * (f - 1) frames) and folded into
    the VAE's latent frames: latent frame 0 stands for video frame 0 alone (the
    causal VAE), so frame 0's value fills all its ``ratio`` channels; latent frame
    k >= 1 holds video frames ratio * (k - 1) + 1 ... ratio * k, one per channel.
    """
    if latent_frames < 1 or not 0 <= known_frames <= 1 + temporal_ratio * (latent_frames - 1):
        raise ValueError(
            f"need latent_frames >= 1 and 0 <= known_frames <= video frames, got {latent_frames}, {known_frames}"
        )
    per_frame = torch.zeros(1 + temporal_ratio * (latent_frames - 1))
    per_frame[:known_frames] = 1.0
    per_frame = torch.cat([per_frame[:1].repeat(temporal_ratio), per_frame[1:]])
    mask = rearrange(per_frame, "(f r) -> r f", r=temporal_ratio)
    return mask[:, :, None, None].expand(temporal_ratio, latent_frames, height, width)


def wan_vision_latents(
    noisy: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor | None = None,
    order: Literal["backbone", "paper"] = "backbone",
) -> torch.Tensor:
    """Eq. 10's z_vision: noisy and z_ref (B, C, f, h, w), mask (4, f, h, w) or (B, 4, f, h, w) -> (B, 2C + 4, f, h, w).

    ``order="backbone"`` (default) is [z_t | mask | z_ref], the channel order the
    pretrained Wan2.1-I2V patch embedding was trained with (and the release's);
    since the 18B backbone, patch embedding included, is frozen, it is the order
    that works. ``"paper"`` is Eq. 10 as printed: [z_ref | mask | z_t].
    ``mask`` None: only the first frame is given (``reference_frame_mask``).
    """
    if noisy.ndim != 5 or reference.shape != noisy.shape:
        raise ValueError(
            f"noisy and reference latents must both be (B, C, f, h, w); "
            f"got {tuple(noisy.shape)} and {tuple(reference.shape)}"
        )
    batch, _, frames, height, width = noisy.shape
    if mask is None:
        mask = reference_frame_mask(frames, height, width)
    if mask.ndim == 4:
        mask = mask.unsqueeze(0).expand(batch, -1, -1, -1, -1)
    if mask.shape[0] != batch or mask.shape[2:] != noisy.shape[2:]:
        raise ValueError(
            f"mask must be (4, f, h, w) or (B, 4, f, h, w) matching {tuple(noisy.shape)}, got {tuple(mask.shape)}"
        )
    mask = mask.to(noisy)
    if order == "backbone":
        return torch.cat([noisy, mask, reference.to(noisy)], dim=1)
    if order == "paper":
        return torch.cat([reference.to(noisy), mask, noisy], dim=1)
    raise ValueError(f"order must be 'backbone' or 'paper', got {order!r}")


# --- blocks -------------------------------------------------------------------------------------


def wan_rope_split(head_dim: int) -> tuple[int, int, int]:
    """Wan's 3D RoPE split (t, h, w): h = w = 2 * (head_dim // 6), t the rest; 128 -> (44, 42, 42)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def wan_motion_split(head_dim: int) -> tuple[int, int, int, int]:
    """The 17B release's motion RoPE split: Wan's t block, the h+w width shared by x, y, z; 128 -> (44, 28, 28, 28)."""
    t, h, w = wan_rope_split(head_dim)
    if (h + w) % 3 or ((h + w) // 3) % 2:
        raise ValueError(f"head_dim={head_dim}: Wan's h+w width {h + w} does not split into three even RoPE blocks")
    return (t,) + ((h + w) // 3,) * 3


class MotionCarryingRope(WanRotaryPosEmbed):
    """Wan's RoPE module; while ``pending`` is set its (cos, sin) output carries that motion condition."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: MotionContext | None = None

    def forward(self, hidden_states: torch.Tensor):
        cos, sin = super().forward(hidden_states)
        return (cos, sin) if self.pending is None else RotaryWithMotion(cos, sin, self.pending)


class MotionWanBlock(WanTransformerBlock):
    """A Wan block with 4D motion attention between the cross-attention and the feed-forward."""

    def __init__(self, motion: MotionAttentionConfig, **block_kwargs: Any) -> None:
        super().__init__(**block_kwargs)
        # The release's pre-norm lives at block level under the name norm4 (fp32 LayerNorm, like Wan's).
        self.norm4 = FP32LayerNorm(motion.dim, motion.eps, elementwise_affine=True) if motion.pre_norm else None
        self.motion_attn = MotionAttention(replace(motion, pre_norm=False))

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """The stock Wan2.1 block's steps with Eq. 5-8 inserted after the cross-attention."""
        if temb.ndim != 3:
            raise ValueError("MotionWanBlock supports Wan2.1 timestep embeddings (B, 6, dim), not per-token ones")
        motion = motion_of(rotary_emb, type(self).__name__)
        dtype = hidden_states.dtype
        shift, scale, gate, ff_shift, ff_scale, ff_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
        # 1. adaLN-modulated self-attention (stock).
        x = (self.norm1(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = (hidden_states.float() + self.attn1(x, None, None, rotary_emb) * gate).to(dtype)
        # 2. Cross-attention to text + CLIP image tokens (stock).
        x = self.norm2(hidden_states.float()).to(dtype)
        hidden_states = hidden_states + self.attn2(x, encoder_hidden_states, None, None)
        # 3. Motion attention (Eq. 5-8): x = x + motion_attn(norm4(x)), no gate.
        query = self.norm4(hidden_states) if self.norm4 is not None else hidden_states
        hidden_states = hidden_states + self.motion_attn.delta(
            query, motion.tokens, motion.vision_rope, motion.motion_rope
        )
        # 4. adaLN-modulated feed-forward (stock).
        x = (self.norm3(hidden_states.float()) * (1 + ff_scale) + ff_shift).to(dtype)
        return (hidden_states.float() + self.ffn(x).float() * ff_gate).to(dtype)


# --- configs ----------------------------------------------------------------------------------------

WAN_I2V_14B: dict[str, Any] = {
    # diffusers WanTransformer3DModel, Wan2.1-I2V-14B (release-format mvdit-17b-motion.json "diffusers_config").
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": 1280,
    "added_kv_proj_dim": 5120,
    "rope_max_seq_len": 1024,
}

TEXT_TOKENS = 512  # Wan's attention processor takes the last 512 context tokens as text, the rest as image


@dataclass(frozen=True)
class MVDiTWanConfig:
    """MV-DiT-18B settings: the Wan backbone kwargs plus the motion settings (see ``MVDiTConfig``).

    unconditional_frames: None = paper 33 (the 6B's tokens, reused), release 0 (none).
    train_backbone: False (App. A.1: only the new attention modules train).
    """

    backbone: dict[str, Any] = field(default_factory=lambda: dict(WAN_I2V_14B))
    layout: Layout = "paper"
    motion_token_dim: int = 3072
    num_joints: int = 24
    unconditional_frames: int | None = None
    motion_pe: str = "4d"
    motion_position_scale: float = MOTION_POSITION_SCALE
    train_backbone: bool = False

    @classmethod
    def wan_i2v_14b(cls, layout: Layout = "paper") -> MVDiTWanConfig:
        """Full size: 40 heads x 128, 40 layers; ~18.5B (paper) / 17,443,864,384 (release)."""
        return cls(layout=layout)

    @classmethod
    def tiny(cls, layout: Layout = "paper", num_layers: int = 4, motion_token_dim: int = 64) -> MVDiTWanConfig:
        """Toy size for CPU tests: 2 heads x 36 = 72 (tokens 64 zero-padded to 72), 4 latent channels."""
        backbone = {
            **WAN_I2V_14B,
            "num_attention_heads": 2, "attention_head_dim": 36, "in_channels": 12, "out_channels": 4,
            "text_dim": 16, "freq_dim": 16, "ffn_dim": 96, "num_layers": num_layers,
            "image_dim": 16, "added_kv_proj_dim": 72, "rope_max_seq_len": 64,
        }
        uncond = 4 if layout == "paper" else None  # the release has no unconditional token
        return cls(backbone=backbone, layout=layout, motion_token_dim=motion_token_dim, unconditional_frames=uncond)

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of ``MVDiTWan``."""
        return {
            **self.backbone,
            "motion_layout": self.layout, "motion_token_dim": self.motion_token_dim, "num_joints": self.num_joints,
            "unconditional_frames": self.unconditional_frames, "motion_pe": self.motion_pe,
            "motion_position_scale": self.motion_position_scale, "train_backbone": self.train_backbone,
        }

    def build(self) -> MVDiTWan:
        """A randomly initialised model (wrap in ``torch.device('meta')`` to count without memory)."""
        return MVDiTWan(**self.model_kwargs())


# --- the model ------------------------------------------------------------------------------------------


class MVDiTWan(WanTransformer3DModel, MotionConditioning):
    """MV-DiT-18B (paper) / MV-DiT-17B (release): Wan2.1-I2V-14B + 4D motion attention.

    forward(hidden_states (B, C, f, h, w) noisy latents, reference_latent (B, C, f, h, w)
    = VAE(ZeroPad(x0)), motion_tokens (B, f * J, 3072), timestep, encoder_hidden_states
    (B, 512, 4096) T5 text, encoder_hidden_states_image (B, 257, 1280) CLIP,
    motion_mask (B,) bool, reference_mask (4, f, h, w), mean_joints (J, 3))
    -> flow prediction (B, C, f, h, w).
    """

    _no_split_modules = ["WanTransformerBlock", "MotionWanBlock"]
    _repeated_blocks = ["WanTransformerBlock", "MotionWanBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = 1280,
        added_kv_proj_dim: int | None = 5120,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        motion_layout: str = "paper",
        motion_token_dim: int = 3072,
        num_joints: int = 24,
        unconditional_frames: int | None = None,
        motion_pe: str = "4d",
        motion_position_scale: float | None = MOTION_POSITION_SCALE,
        motion_mean_joints: list[list[float]] | None = None,
        train_backbone: bool = False,
    ) -> None:
        check_layout(motion_layout, motion_pe)
        check_position_scale(motion_position_scale)  # None: a config saved before the millimetre unit
        patch_size = tuple(patch_size)
        if in_channels != 2 * out_channels + 4:
            raise ValueError(
                f"Eq. 10 stacks noisy latents, a 4-channel mask and reference latents: in_channels must be "
                f"2 * out_channels + 4 = {2 * out_channels + 4}, got {in_channels}"
            )
        if patch_size[0] != 1:
            raise ValueError(f"motion tokens are per latent frame: temporal patch size must be 1, got {patch_size}")
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, text_dim=text_dim, freq_dim=freq_dim,
            ffn_dim=ffn_dim, num_layers=num_layers, cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps,
            image_dim=image_dim, added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        self.rope = MotionCarryingRope(attention_head_dim, patch_size, rope_max_seq_len)
        motion = self.motion_attention_config
        block_kwargs = {
            "dim": num_attention_heads * attention_head_dim, "ffn_dim": ffn_dim, "num_heads": num_attention_heads,
            "qk_norm": qk_norm, "cross_attn_norm": cross_attn_norm, "eps": eps, "added_kv_proj_dim": added_kv_proj_dim,
        }
        for i in self.motion_block_indices:
            self.blocks[i] = MotionWanBlock(motion, **block_kwargs)
        if unconditional_frames is None:
            unconditional_frames = 33 if motion_layout == "paper" else 0
        self.unconditional_motion_token = new_unconditional_tokens(unconditional_frames, num_joints, motion_token_dim)
        self.set_trainable(train_backbone)

    # -- structure ----------------------------------------------------------------------------------
    PAPER_PRESET, RELEASE_PRESET = "paper_18b", "release_17b"  # `MotionConditioning.motion_attention_config`
    RELEASE_BLOCK_STEP = 4  # the release has motion attention in blocks i % 4 == 0

    def release_rope_axes(self, head_dim: int) -> dict[str, tuple[int, ...]]:
        """The release's motion and vision RoPE axis splits (Wan's)."""
        return {"axis_dims": wan_motion_split(head_dim), "vision_axis_dims": wan_rope_split(head_dim)}

    def motion_modules(self) -> dict[int, MotionWanBlock]:
        """Block index -> the block holding ``norm4`` / ``motion_attn``."""
        return {i: self.blocks[i] for i in self.motion_block_indices}

    def motion_trainable_modules(self) -> list[nn.Module]:
        """Each motion block's ``motion_attn`` and its pre-norm ``norm4`` (`MotionConditioning.set_trainable`)."""
        modules = []
        for block in self.motion_modules().values():
            modules += [block.motion_attn] + ([block.norm4] if block.norm4 is not None else [])
        return modules

    # -- forward -------------------------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        reference_latent: torch.Tensor,
        motion_tokens: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        motion_mask: torch.Tensor | None = None,
        reference_mask: torch.Tensor | None = None,
        mean_joints: Any = None,
        return_dict: bool = True,
    ):
        """Eq. 10 input, text + image cross-attention, Eq. 5-8 in the motion blocks -> prediction."""
        c = self.config
        if hidden_states.ndim != 5 or hidden_states.shape[1] != c.out_channels:
            raise ValueError(
                f"hidden_states must be noisy latents (B, C={c.out_channels}, f, h, w), "
                f"got {tuple(hidden_states.shape)}"
            )
        batch, _, frames, height, width = hidden_states.shape
        _, p_h, p_w = c.patch_size
        if height % p_h or width % p_w:
            raise ValueError(f"latent height/width must be multiples of the patch {p_h}x{p_w}, got {height}x{width}")
        if c.image_dim is not None and encoder_hidden_states_image is None:
            raise ValueError("the I2V backbone needs encoder_hidden_states_image (CLIP tokens of the reference frame)")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[1] != TEXT_TOKENS:
            raise ValueError(
                f"encoder_hidden_states must be T5 text (B, {TEXT_TOKENS}, {c.text_dim}) (zero-padded), "
                f"got {tuple(encoder_hidden_states.shape)}"
            )
        z = wan_vision_latents(hidden_states, reference_latent, reference_mask)  # Eq. 10
        check_motion_tokens(motion_tokens, batch, frames, c.num_joints, c.motion_token_dim)
        motion = motion_condition(motion_tokens, motion_mask, self.unconditional_motion_token, c.num_joints)
        joints = mean_joints if mean_joints is not None else c.motion_mean_joints
        vision_rope, motion_rope = motion_rope_tables(
            self.motion_attention_config, frames, height // p_h, width // p_w, joints, z.device
        )
        self.rope.pending = MotionContext(motion.to(z.dtype), vision_rope, motion_rope)
        try:
            return super().forward(
                hidden_states=z, timestep=batch_timestep(timestep, batch, z.device),
                encoder_hidden_states=encoder_hidden_states, encoder_hidden_states_image=encoder_hidden_states_image,
                return_dict=return_dict,
            )
        finally:
            self.rope.pending = None

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone: WanTransformer3DModel | str | Path, **motion_kwargs: Any) -> MVDiTWan:
        """Start MV-DiT-18B from a stock diffusers Wan2.1-I2V transformer (folder or model); motion modules fresh."""
        if not isinstance(backbone, WanTransformer3DModel):
            backbone = WanTransformer3DModel.from_pretrained(str(transformer_folder(backbone)))
        config = {k: v for k, v in backbone.config.items() if not k.startswith("_")}
        model = cls(**{**config, **motion_kwargs})
        missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
        fresh = [k for k in missing if not _is_motion_key(k)]
        if fresh or unexpected:
            raise ValueError(f"backbone does not match MV-DiT: missing {fresh[:5]}, unexpected {unexpected[:5]}")
        return model

    @classmethod
    def from_release_checkpoint(cls, folder: str | Path, **overrides: Any) -> MVDiTWan:
        """Load the official ``MV-DiT/Wan-2-1/`` folder (original Wan names) strictly into the release layout.

        File order as the official loader: ``diffusion_pytorch_model.bin``, then
        ``diffusion_pytorch_model.safetensors``, then every ``*.safetensors`` merged.
        Builds from ``MVDiTWanConfig.wan_i2v_14b("release")`` (the folder's config.json uses
        Wan's own argument names) unless ``overrides`` change it.
        """
        folder = Path(folder)
        state = _read_release_weights(folder)
        kwargs = {**MVDiTWanConfig.wan_i2v_14b("release").model_kwargs(), **overrides}
        with torch.device("meta"):
            model = cls(**kwargs)
        model.load_state_dict(from_release_state_dict(state), strict=True, assign=True)
        c = model.config
        # RoPE tables are non-persistent buffers: rebuild them off the meta device.
        model.rope = MotionCarryingRope(c.attention_head_dim, tuple(c.patch_size), c.rope_max_seq_len)
        model.set_trainable(c.train_backbone)
        return model


def _is_motion_key(name: str) -> bool:
    parts = name.split(".")
    return name == "unconditional_motion_token" or "motion_attn" in parts or "norm4" in parts


def _read_release_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    bin_file, st_file = folder / "diffusion_pytorch_model.bin", folder / "diffusion_pytorch_model.safetensors"
    if bin_file.is_file():
        return torch.load(bin_file, map_location="cpu", weights_only=True)
    if st_file.is_file():
        return load_file(st_file)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(
            f"no MV-DiT-17B weights in {folder}: expected diffusion_pytorch_model.bin, "
            "diffusion_pytorch_model.safetensors or *.safetensors shards"
        )
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_file(shard))
    return state


# --- release key names (original Wan2.1) <-> diffusers names ------------------------------------------------

# diffusers module path -> original Wan2.1 module path (diffusers' own Wan conversion table, inverted;
# release-format/mvdit-17b-motion.json "rename_original_to_diffusers"). Names not listed are the same.
WAN_TOP_LEVEL_TO_RELEASE: dict[str, str] = {
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "scale_shift_table": "head.modulation",
    "proj_out": "head.head",
}
WAN_BLOCK_TO_RELEASE: dict[str, str] = {
    "scale_shift_table": "modulation",
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "norm2": "norm3",  # the affine cross-attention norm
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(name: str, table: dict[str, str]) -> str:
    for src, dst in table.items():
        if name == src or name.startswith(src + "."):
            return dst + name[len(src):]
    return name


def _rename_key(name: str, top: dict[str, str], block: dict[str, str]) -> str:
    match = _BLOCK.match(name)
    if match:
        return f"blocks.{match.group(1)}.{_rename(match.group(2), block)}"
    return _rename(name, top)


def release_name(name: str) -> str:
    """Our (diffusers) state_dict name -> the released (original Wan2.1) name."""
    return _rename_key(name, WAN_TOP_LEVEL_TO_RELEASE, WAN_BLOCK_TO_RELEASE)


def diffusers_name(name: str) -> str:
    """A released (original Wan2.1) name -> our (diffusers) name."""
    invert = lambda table: {v: k for k, v in table.items()}  # noqa: E731
    return _rename_key(name, invert(WAN_TOP_LEVEL_TO_RELEASE), invert(WAN_BLOCK_TO_RELEASE))


def to_release_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a release-layout ``MVDiTWan`` state_dict to the official 17B checkpoint names."""
    return {release_name(k): v for k, v in state_dict.items()}


def from_release_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official 17B checkpoint state_dict to ``MVDiTWan`` names (load with strict=True)."""
    return {diffusers_name(k): v for k, v in state_dict.items()}
