"""4DMoT: the 4D motion VQ-VAE (paper Sec. 3.1, Fig. 3, Eq. 2, App. A.1).

Input: a motion representation ``(batch, frames, joints, 3)`` (normalised,
optionally differential joint coordinates; `representation.MotionNormalizer`).
The coordinate axes become channels and all convolutions run over
(frames, joints). The encoder downsamples time by 4 while keeping the first
frame, so f frames give 1 + (f - 1) / 4 latent frames x 24 joints; each
latent (frame, joint) is one motion token, quantized against the codebook.
The decoder mirrors the encoder with bilinear upsampling back to f frames.

Sliding window (Sec. 3.1, as in the release): the encoder runs on independent
windows of ``window`` frames, the first window taking the leftover frames too
(49 frames: [0:9], [9:17], ..., [41:49]); the latents are concatenated and
quantized in one pass; the decoder runs on windows of window / 4 latents the
same way. 33/49/81/97/129 frames give 9/13/21/25/33 latent frames, the same
as encoding the whole clip at once (``window=None``). Tokens are ordered
frame-major (index t * joints + j) when flattened.

Paper and release differ only through `TokenizerConfig` fields (see config.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Downsample, ResBlock, Upsample
from .config import TokenizerConfig
from .quantizer import EMAQuantizer

RELEASE_CHECKPOINT_NAME = "mp_rank_00_model_states.pt"


def _run_sequential(modules: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply the children of ``modules`` in registration order (ModuleLists element by element)."""
    for child in modules.children():
        if isinstance(child, nn.ModuleList):
            for block in child:
                x = block(x)
        else:
            x = child(x)
    return x


class Encoder(nn.Module):
    """conv_in, per stage [transition ResBlock,] ResBlocks, Downsample; conv_out to code_dim.

    Submodules are named ``resnet1, downsample1, resnet2, resnet3, downsample2, ...``
    in forward order, matching the released checkpoint for two stages.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        ch, groups, eps = config.channels, config.norm_groups, config.norm_eps
        self.conv_in = nn.Conv2d(config.in_channels, ch[0], kernel_size=3, padding=1)
        n = 1
        for k, c in enumerate(ch):
            dil = config.dilations[k]
            if k > 0:
                self.add_module(f"resnet{n}", ResBlock(ch[k - 1], c, dil, groups, eps))
                n += 1
            blocks = nn.ModuleList(ResBlock(c, c, dil, groups, eps) for _ in range(config.blocks_per_stage))
            self.add_module(f"resnet{n}", blocks)
            n += 1
            self.add_module(f"downsample{k + 1}", Downsample(c, config.frame_down[k], config.joint_down[k]))
        self.conv_out = nn.Conv2d(ch[-1], config.code_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, axes, frames, joints) -> (B, code_dim, latent frames, latent joints)."""
        return _run_sequential(self, x)


class Decoder(nn.Module):
    """Mirror of `Encoder`: conv_in from code_dim, per stage ResBlocks and Upsample, conv_out to axes."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        ch = tuple(reversed(config.channels))
        dils = tuple(reversed(config.dilations))
        f_up, j_up = tuple(reversed(config.frame_down)), tuple(reversed(config.joint_down))
        groups, eps = config.norm_groups, config.norm_eps
        self.conv_in = nn.Conv2d(config.code_dim, ch[0], kernel_size=3, padding=1)
        n = 1
        for k, c in enumerate(ch):
            if k > 0:
                self.add_module(f"resnet{n}", ResBlock(ch[k - 1], c, dils[k], groups, eps))
                n += 1
            blocks = nn.ModuleList(ResBlock(c, c, dils[k], groups, eps) for _ in range(config.blocks_per_stage))
            self.add_module(f"resnet{n}", blocks)
            n += 1
            self.add_module(f"upsample{k + 1}", Upsample(c, f_up[k], j_up[k]))
        self.conv_out = nn.Conv2d(ch[-1], config.in_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, latent frames, latent joints) -> (B, axes, frames, joints)."""
        return _run_sequential(self, x)


# ---- frame bookkeeping ---------------------------------------------------------
def window_slices(length: int, window: int | None) -> list[slice]:
    """Non-overlapping windows of ``window`` steps; the first also takes ``length % window``.

    A sequence no longer than one window (or ``window=None``) is a single window.
    """
    if window is None or length <= window:
        return [slice(0, length)]
    first = window + length % window
    return [slice(0, first)] + [slice(s, s + window) for s in range(first, length, window)]


def _down_length(n: int, frame_down: tuple[int, ...]) -> int:
    for r in frame_down:
        if r > 1 and n > 1:
            n = 1 + (n - 1) // 2 if n % 2 else n // 2
    return n


def _up_length(n: int, frame_up: tuple[int, ...]) -> int:
    for r in frame_up:
        if r > 1:
            n = 1 + 2 * (n - 1) if n % 2 else 2 * n
    return n


def latent_frames(config: TokenizerConfig, num_frames: int) -> int:
    """Latent frames for ``num_frames`` input frames (1 + (f - 1) / 4 for the bucket lengths)."""
    return sum(_down_length(s.stop - s.start, config.frame_down) for s in window_slices(num_frames, config.window))


def decoded_frames(config: TokenizerConfig, num_latents: int) -> int:
    """Frames the decoder produces from ``num_latents`` latent frames."""
    up = tuple(reversed(config.frame_down))
    return sum(_up_length(s.stop - s.start, up) for s in window_slices(num_latents, config.decoder_window))


def valid_num_frames(config: TokenizerConfig, max_frames: int = 200) -> list[int]:
    """Frame counts up to ``max_frames`` that the tokenizer reconstructs at their own length."""
    return [f for f in range(1, max_frames + 1) if decoded_frames(config, latent_frames(config, f)) == f]


# ---- the model ----------------------------------------------------------------------
class VQVAE(nn.Module):
    """4DMoT: encoder, EMA vector quantizer and decoder (Eq. 2).

    Attribute names ``encoder``, ``decoder``, ``vq`` (in this order) match the
    release, so ``TokenizerConfig.release()`` loads its checkpoint strictly.
    With ``config.quantize=False`` there is no quantizer ("w/o quantize").
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.vq: EMAQuantizer | None = (
            EMAQuantizer(
                config.codebook_size,
                config.code_dim,
                decay=config.ema_decay,
                eps=config.ema_eps,
                reset_every=config.reset_every,
                persistent_state=config.persistent_ema_state,
            )
            if config.quantize
            else None
        )

    # ---- shapes ---------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` frames (see module docstring)."""
        return latent_frames(self.config, num_frames)

    def _check_input(self, joints_repr: torch.Tensor) -> None:
        cfg = self.config
        if joints_repr.ndim != 4 or tuple(joints_repr.shape[2:]) != (cfg.num_joints, 3):
            raise ValueError(
                f"4DMoT expects joints of shape (batch, frames, {cfg.num_joints}, 3), got {tuple(joints_repr.shape)}"
            )
        f = joints_repr.shape[1]
        if decoded_frames(cfg, latent_frames(cfg, f)) != f:
            raise ValueError(
                f"{f} frames cannot be reconstructed at their own length with window={cfg.window} and "
                f"frame_down={cfg.frame_down}; valid counts include {valid_num_frames(cfg, 130)[-8:]}"
            )

    def _require_vq(self) -> EMAQuantizer:
        if self.vq is None:
            raise RuntimeError("this 4DMoT has quantize=False (plain autoencoder): it has no codebook or code ids")
        return self.vq

    # ---- encoder / decoder ---------------------------------------------------------
    def encode_latents(self, joints_repr: torch.Tensor) -> torch.Tensor:
        """Continuous encoder latents E: (B, F, J, 3) -> (B, T', J', code_dim), windowed."""
        self._check_input(joints_repr)
        x = joints_repr[..., : self.config.in_channels]  # "3d" drops depth (z)
        x = x.permute(0, 3, 1, 2)  # (B, axes, F, J)
        windows = self._grouped_windows(x.shape[2], self.config.window)
        latents = [self._run_windows(self.encoder, x, group) for group in windows]
        return torch.cat(latents, dim=2).permute(0, 2, 3, 1)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoder: (B, T', J', code_dim) -> reconstruction (B, F, J, 3), windowed.

        In the "3d" variant the depth channel of the output is zero.
        """
        x = latents.permute(0, 3, 1, 2)
        windows = self._grouped_windows(x.shape[2], self.config.decoder_window)
        out = torch.cat([self._run_windows(self.decoder, x, group) for group in windows], dim=2)
        out = out.permute(0, 2, 3, 1)
        if out.shape[-1] < 3:
            out = F.pad(out, (0, 3 - out.shape[-1]))
        return out

    @staticmethod
    def _grouped_windows(length: int, window: int | None) -> list[list[slice]]:
        """Windows grouped by equal length (first, then the rest) so equal ones run as one batch."""
        slices = window_slices(length, window)
        return [slices[:1]] + ([slices[1:]] if len(slices) > 1 else [])

    @staticmethod
    def _run_windows(net: nn.Module, x: torch.Tensor, slices: list[slice]) -> torch.Tensor:
        """Run ``net`` on equal-length windows independently (stacked on the batch axis)."""
        b = x.shape[0]
        chunks = torch.cat([x[:, :, s] for s in slices], dim=0)  # (n*B, C, w, J)
        y = net(chunks)
        return torch.cat(y.split(b, dim=0), dim=2)

    # ---- tokens --------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, joints_repr: torch.Tensor) -> torch.Tensor:
        """Motion token ids (B, T', J') for a motion representation (B, F, J, 3); no EMA update."""
        vq = self._require_vq()
        return vq(self.encode_latents(joints_repr), update_ema=False).ids

    def codes_to_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for code ids of any shape: (...,) -> (..., code_dim).

        These raw codebook vectors are the motion tokens MV-DiT attends to.
        """
        return self._require_vq().lookup(ids)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Reconstruct motion (B, F, J, 3) from token ids (B, T', J')."""
        return self.decode_latents(self.codes_to_vectors(ids))

    @torch.no_grad()
    def motion_tokens(self, joints_repr: torch.Tensor) -> torch.Tensor:
        """MV-DiT conditioning: (B, T' * J', code_dim), frame-major.

        Codebook vectors of the nearest codes; with ``quantize=False`` the
        continuous latents ("w/o quantize" ablation).
        """
        latents = self.encode_latents(joints_repr)
        if self.vq is not None:
            latents = self.codes_to_vectors(self.vq(latents, update_ema=False).ids)
        return latents.flatten(1, 2)

    # ---- training ------------------------------------------------------------------
    def forward(
        self, joints_repr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """Reconstruct and score a batch (Eq. 2).

        Returns ``(recon, losses, code_ids)``: recon (B, F, J, 3); losses with
        ``recon`` = ||M - M_hat||_1 (mean; x, y only in the "3d" variant),
        ``commit`` = ||E - sg[C]||^2 (mean, before beta), ``loss`` = recon +
        beta * commit, ``perplexity`` of the batch's codes; code_ids (B, T', J').
        Without quantization: no ``commit`` / ``perplexity``, code_ids None.
        In training mode the codebook follows its EMA update.
        """
        latents = self.encode_latents(joints_repr)
        losses: dict[str, torch.Tensor] = {}
        ids = None
        if self.vq is not None:
            q = self.vq(latents)
            latents, ids = q.quantized, q.ids
            losses["commit"] = q.commit_loss
            losses["perplexity"] = q.perplexity.detach()
        recon = self.decode_latents(latents)
        axes = self.config.in_channels
        losses["recon"] = F.l1_loss(recon[..., :axes], joints_repr[..., :axes])
        losses["loss"] = losses["recon"] + self.config.commitment_beta * losses.get("commit", 0.0)
        return recon, losses, ids


# ---- sizes and checkpoints -----------------------------------------------------------
def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; works on the ``meta`` device. Buffers such as the codebook are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_on_meta(config: TokenizerConfig) -> VQVAE:
    """The model with no memory behind its tensors, for counting and layout checks."""
    with torch.device("meta"):
        return VQVAE(config)


def load_release_checkpoint(path: str | Path, config: TokenizerConfig | None = None) -> VQVAE:
    """Load the official 4DMoT weights (``4DMoT/mp_rank_00_model_states.pt``) strictly, in eval mode.

    ``path`` is the file or a folder holding it (the snapshot root or its
    ``4DMoT`` folder). The file is read with ``weights_only=True`` (no pickled
    code runs); the weights sit under its ``"module"`` key with release names
    (../shared/release-format/4dmot.json). ``config`` defaults to
    `TokenizerConfig.release()`; tests pass a tiny one saved in the same format.
    """
    path = Path(path)
    if path.is_dir():
        for candidate in (path / RELEASE_CHECKPOINT_NAME, path / "4DMoT" / RELEASE_CHECKPOINT_NAME):
            if candidate.is_file():
                path = candidate
                break
    if not path.is_file():
        raise FileNotFoundError(
            f"4DMoT checkpoint not found: expected {RELEASE_CHECKPOINT_NAME} at {path} "
            f"(the 4DMoT folder of the yanboding/MTVCrafter snapshot)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused by the safe loader
        raise RuntimeError(
            f"{path} could not be read with torch.load(weights_only=True): {err}. Re-save its 'module' "
            f"state_dict alone with trusted code, then load that file."
        ) from err
    if not isinstance(payload, dict) or "module" not in payload:
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: expected a dict with the weights under 'module', found {keys}")
    model = VQVAE(config or TokenizerConfig.release())
    model.load_state_dict(payload["module"], strict=True)
    return model.eval()
