"""Configuration of the 4D motion tokenizer (4DMoT, paper Sec. 3.1, App. A.1).

One dataclass describes every variant. The paper's layout (`full`), the
layout of the officially released weights (`release`) and a CPU-sized layout
(`tiny`) differ only in field values, never in code.

Paper versus release (../shared/paper-facts.md), one field each:

| field              | full() (paper)  | release()            |
| ------------------ | --------------- | -------------------- |
| channels           | (32, 128, 512)  | (128, 512)           |
| frame_down         | (2, 2, 1)       | (2, 2)               |
| dilations          | (3, 3, 1) [1]   | (3, 1)               |
| commitment_beta    | 0.25            | 0.5                  |
| differential       | True            | False                |
| persistent_ema_state | True          | False [2]            |

[1] The paper only says "dilated convolutions"; it gives no rates. We keep the
    release's rule (dilation 3 in the 128-channel stages, 1 at 512) and use 3
    for the extra 32-channel stage too (the release formula
    ``512 // channels - 1`` would give 15, wider than a 9-frame window).
[2] The release keeps its EMA state as plain attributes, so its checkpoint
    holds only ``vq.codebook``; in release layout our EMA buffers are
    non-persistent so that ``load_state_dict(strict=True)`` accepts the file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

QuantizeAxes = Literal["4d", "3d"]


@dataclass(frozen=True)
class TokenizerConfig:
    """All hyper-parameters of the 4DMoT VQ-VAE.

    Layout (encoder; the decoder mirrors it in reverse order):
    ``conv_in`` (input axes -> channels[0]), then per stage k a transition
    ResBlock channels[k-1] -> channels[k] (k > 0), ``blocks_per_stage``
    ResBlocks at channels[k], a Downsample by (frame_down[k], joint_down[k]);
    finally ``conv_out`` (channels[-1] -> code_dim).

    Ablations (paper Table 2):
    - ``quantize=False``: "w/o quantize", a plain autoencoder with continuous
      latents, no codebook, no commitment loss, no code ids.
    - ``differential=False``: "w/o differential motion", the normaliser keeps
      absolute normalised joints (this is also what the release does).
    - ``quantize_axes="3d"``: "3D quantization (t, x, y)". Our interpretation:
      the depth axis z is dropped from the input before encoding, so the
      encoder sees 2 input channels (x, y), tokens live on the (latent frame,
      joint) grid but carry no depth, and the decoder reconstructs x and y
      only. "4d" (default) keeps x, y, z: one token per (latent frame, joint)
      for the full 3D joint trajectory.
    """

    # Input: joint coordinates over (frames, joints).
    num_joints: int = 24
    quantize_axes: QuantizeAxes = "4d"

    # Encoder / decoder (App. A.1).
    channels: tuple[int, ...] = (32, 128, 512)
    blocks_per_stage: int = 3
    dilations: tuple[int, ...] = (3, 3, 1)
    frame_down: tuple[int, ...] = (2, 2, 1)
    joint_down: tuple[int, ...] = (1, 1, 1)
    norm_groups: int = 32
    norm_eps: float = 1e-6
    # Sliding window (Sec. 3.1): the encoder runs on independent windows of this
    # many frames, the first window also taking the leftover frames; None
    # encodes the whole sequence at once.
    window: int | None = 8

    # Quantizer (Eq. 2, Sec. 4 implementation details).
    quantize: bool = True
    code_dim: int = 3072
    codebook_size: int = 8192
    ema_decay: float = 0.99
    ema_eps: float = 1e-5  # Laplace smoothing of the EMA cluster sizes
    reset_every: int = 20  # reset codes unused during the last N training steps
    commitment_beta: float = 0.25
    persistent_ema_state: bool = True

    # Motion representation (Sec. 3.1): subtract the first normalised frame.
    differential: bool = True

    def __post_init__(self) -> None:
        n = len(self.channels)
        for name in ("dilations", "frame_down", "joint_down"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"TokenizerConfig.{name} has {len(getattr(self, name))} entries, "
                    f"expected one per stage ({n}, as in channels={self.channels})"
                )
        if self.quantize_axes not in ("4d", "3d"):
            raise ValueError(f"TokenizerConfig.quantize_axes must be '4d' or '3d', got {self.quantize_axes!r}")
        for c in self.channels:
            if c % self.norm_groups:
                raise ValueError(f"TokenizerConfig.channels entry {c} is not divisible by norm_groups={self.norm_groups}")
        if any(r not in (1, 2) for r in self.frame_down):
            raise ValueError(f"TokenizerConfig.frame_down entries must be 1 or 2 (pairwise pooling), got {self.frame_down}")
        if any(r < 1 for r in self.joint_down):
            raise ValueError(f"TokenizerConfig.joint_down entries must be >= 1, got {self.joint_down}")
        if self.window is not None:
            if self.window < 1 or self.window % self.time_factor:
                raise ValueError(
                    f"TokenizerConfig.window={self.window} must be a positive multiple of the "
                    f"total frame downsampling {self.time_factor}"
                )
        if self.blocks_per_stage < 1:
            raise ValueError("TokenizerConfig.blocks_per_stage must be >= 1")

    # ---- derived values -------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Coordinate axes the encoder sees: x, y, z ("4d") or x, y ("3d")."""
        return 3 if self.quantize_axes == "4d" else 2

    @property
    def time_factor(self) -> int:
        """Total frame downsampling of the encoder (4 in both paper and release)."""
        return math.prod(self.frame_down)

    @property
    def latent_joints(self) -> int:
        """Joints per latent frame after the joint (down)sampling convolutions."""
        j = self.num_joints
        for r in self.joint_down:
            j = (j - 1) // r + 1  # Conv1d kernel 3, padding 1, stride r
        return j

    @property
    def decoder_window(self) -> int | None:
        """Latent frames per decoder window (release: 8 frames / 4 = 2 latents)."""
        return None if self.window is None else self.window // self.time_factor

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-safe) for checkpoints and asset metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerConfig":
        """Inverse of `to_dict`; lists become tuples, unknown keys are an error."""
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown TokenizerConfig keys: {sorted(unknown)}")
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**clean)

    def replace(self, **changes: Any) -> "TokenizerConfig":
        """A copy with some fields changed (e.g. an ablation switch)."""
        return replace(self, **changes)

    # ---- presets ----------------------------------------------------------
    @classmethod
    def full(cls) -> "TokenizerConfig":
        """The paper's 4DMoT (App. A.1, Sec. 4).

        Trainable parameters: 48,487,043 (counted on the meta device), 1.0%
        above the paper's "48M". The 8192 x 3072 codebook (25,165,824 numbers)
        is an EMA-maintained buffer, not a trainable parameter, and is not
        counted, as in the release, whose 48,323,075 the paper calls 48M. The
        difference from the release (+163,968: +89,760 encoder, +74,208
        decoder) is the paper's extra 32-channel stage (three 32-ch ResBlocks,
        a 32-ch joint convolution and a 32<->128 transition ResBlock per side,
        less the thinner conv_in / conv_out); the other stages (128 and 512
        channels, with their joint convolutions) have the release's sizes, and
        over 90% of the count sits in the 512/3072 convolutions that both
        layouts share. The paper does not say how
        many ResBlocks a stage has; we use the release's three.
        """
        return cls()

    @classmethod
    def release(cls) -> "TokenizerConfig":
        """The layout of the official 4DMoT checkpoint (../shared/release-format/4dmot.json).

        48,323,075 trainable parameters plus the codebook buffer; loads the
        released ``mp_rank_00_model_states.pt`` with strict=True. Inputs are
        absolute normalised joints (no differential), commitment beta 0.5.
        """
        return cls(
            channels=(128, 512),
            dilations=(3, 1),
            frame_down=(2, 2),
            joint_down=(1, 1),
            commitment_beta=0.5,
            differential=False,
            persistent_ema_state=False,
        )

    @classmethod
    def tiny(cls) -> "TokenizerConfig":
        """Same classes at CPU size, for tests and the demo."""
        return cls(
            channels=(16, 32, 64),
            blocks_per_stage=1,
            dilations=(3, 3, 1),
            norm_groups=8,
            code_dim=64,
            codebook_size=256,
        )
