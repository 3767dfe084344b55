"""MV-DiT's training config (paper App. A.2 hyper-parameters; Sec. 3.3's MV-DiT-18B settings) and run result.

`MVDiTTrainConfig` says what `pipeline.mvdit.train.train_mvdit` trains (model, layout, backbone and VAE folders),
with which hyper-parameters (AdamW (0.9, 0.99), weight decay 1e-2, lr 2e-5 with linear warm-up over 300 steps,
batch 4 per GPU, clip lengths {33, 49, 81, 97, 129} and strides {1, 2}, motion dropped with p = 0.2, text with
p = 0.1) and how it runs (strategy, workers, backend, checkpoints). `MVDiTTrainResult` is what a run produced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, get_args

import numpy as np

from pipeline.core.progress import Log
from pipeline.core.step_schedule import learning_rate
from pipeline.motion.windows import BUCKET_LENGTHS, STRIDES
from pipeline.mvdit import sharding
from pipeline.mvdit.data import Sample

Preview = Callable[[Path, Sample, "MVDiTTrainConfig", Log], "np.ndarray | None"]  # the sample after training
MODELS = ("tiny", "cogvideox_5b", "wan_tiny", "wan_i2v_14b")
WAN_MODELS = ("wan_tiny", "wan_i2v_14b")  # MV-DiT-18B's class (tiny: the same class at toy size)
STRATEGIES = sharding.STRATEGIES
TINY_MODELS = ("tiny", "wan_tiny")

@dataclass
class MVDiTTrainConfig:
    """MV-DiT training hyper-parameters (App. A.2 defaults) and how to run them."""

    model: str = "cogvideox_5b"  # tiny | cogvideox_5b | wan_tiny | wan_i2v_14b
    layout: str = "paper"  # paper | release (the official checkpoint's layout)
    backbone: str = ""  # local diffusers folder of the stock backbone ("" = random init, e.g. tiny)
    vae: str = ""  # local diffusers VAE folder ("" = the fixed PoolLatentMap, tiny models only)
    latent_frequencies: int = 1  # PoolLatentMap: DCT frequencies kept per 8x8 block and axis (1 = average pooling)
    lr: float = 2e-5
    warmup_steps: int = 300
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-2
    bf16: bool = True  # autocast where the device supports bf16 (CUDA); float32 on the CPU
    batch_size: int = 4  # per worker and micro-batch (paper: 4 per GPU, 32 in total)
    grad_accum_steps: int = 1  # micro-batches per optimizer step: global batch = batch_size x workers x this
    reduce_every_micro_batch: bool = True  # FSDP2 + accumulation: reduce-scatter each micro-batch, so gradients
    #                                        stay sharded (what the memory table counts); False: once per step,
    #                                        less communication, unsharded float32 gradients held in between
    steps: int = 30_000
    buckets: tuple[tuple[int, int], ...] = ((480, 720), (720, 480), (512, 512))  # (H, W)
    lengths: tuple[int, ...] = BUCKET_LENGTHS
    strides: tuple[int, ...] = STRIDES
    colour_jitter: float = 0.0  # strength of the per-window colour augmentation (0 = off;
    #                             see `pipeline.mvdit.batches.jitter_colours`)
    video_latents: str = ""  # uri of a `video_latents` table: read fixed windows' latents (no VAE in training;
    #                          no random crop or colour jitter: `pipeline.mvdit.latent_table`); "" = encode each step
    motion_drop_prob: float = 0.2
    text_drop_prob: float = 0.1
    strategy: str = "fsdp"  # ddp | fsdp (FSDP2; the tiny configs use ddp)
    reshard_after_forward: bool = False  # FSDP2: False keeps gathered weights to backward = the paper's ZeRO-2
    gradient_checkpointing: bool | None = None  # per block; None: on for full models, off for the tiny ones
    max_grad_norm: float = 0.0  # gradient clipping in every strategy (0: off; App. A.2 names none)
    num_workers: int = 1
    use_gpu: bool | None = None
    backend: Literal["ray", "local"] = "ray"
    ray_address: str = ""
    run_name: str = ""
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    seed: int = 0
    resume: bool = True
    sample_steps: int = 20  # DDIM steps of the preview sample after training (0: none)
    tiny_layers: int = 2
    motion_pe: str = "4d"  # Table 2 positional-encoding variant of the motion attention (paper layout only)
    # Wan models only (MV-DiT-18B):
    wan_encoders: str = ""  # local Wan2.1-I2V diffusers folder with tokenizer/ text_encoder/ image_processor/
    #                         image_encoder/ ("" = the backbone folder)
    prompt: str = "a person is dancing"  # text of samples without a caption (App. A.3's evaluation prompt)
    flow_shift: float = 5.0  # timestep shift of the rectified-flow noise level (the released 17B sampler's)
    unconditional_from: str = ""  # a 6B train_mvdit checkpoint whose c_m∅ the 18B reuses, frozen (Sec. 3.3;
    #                               "" = learn c_m∅ here, as the 6B does)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        self.buckets = tuple(tuple(int(v) for v in b) for b in self.buckets)
        self.lengths, self.strides = tuple(self.lengths), tuple(self.strides)
        if self.model not in MODELS:
            raise ValueError(f"MVDiTTrainConfig.model must be one of {MODELS}, got {self.model!r}")
        from models.mvdit.rope4d import PEVariant

        if self.motion_pe not in get_args(PEVariant):
            raise ValueError(f"MVDiTTrainConfig.motion_pe must be one of {get_args(PEVariant)}, got {self.motion_pe!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"MVDiTTrainConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.backend not in ("ray", "local"):
            raise ValueError(f"MVDiTTrainConfig.backend must be 'ray' or 'local', got {self.backend!r}")
        for name in ("steps", "batch_size", "grad_accum_steps", "num_workers", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"MVDiTTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        bad = [n for n in self.lengths if (n - 1) % 4]
        if bad or not self.lengths:
            raise ValueError(f"MVDiTTrainConfig.lengths must be 1 + 4k frames (the VAE's layout), got {self.lengths}")
        if not self.buckets or any(h % 16 or w % 16 for h, w in self.buckets):
            raise ValueError(f"MVDiTTrainConfig.buckets must be (H, W) multiples of 16, got {self.buckets}")
        if self.model in WAN_MODELS and self.layout == "release" and self.motion_drop_prob > 0:
            raise ValueError(
                "MVDiTTrainConfig.motion_drop_prob must be 0 for a Wan model in the release layout "
                f"(the released MV-DiT-17B has no unconditional motion tokens), got {self.motion_drop_prob}"
            )
        if not 1 <= self.latent_frequencies <= 8:
            raise ValueError(f"MVDiTTrainConfig.latent_frequencies must be in 1..8, got {self.latent_frequencies}")
        if self.max_grad_norm < 0:
            raise ValueError(f"MVDiTTrainConfig.max_grad_norm must be >= 0 (0: no clipping), got {self.max_grad_norm}")
        if self.flow_shift <= 0:
            raise ValueError(f"MVDiTTrainConfig.flow_shift must be > 0, got {self.flow_shift}")
        if self.unconditional_from and not (self.model in WAN_MODELS and self.layout == "paper"):
            raise ValueError("MVDiTTrainConfig.unconditional_from is for a Wan model in the paper layout (the 18B "
                             f"reuses the 6B's c_m∅), not model={self.model!r} layout={self.layout!r}")

    @property
    def is_wan(self) -> bool:
        return self.model in WAN_MODELS

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps`` to ``lr``, then constant (App. A.2)."""
        return learning_rate(step, self.lr, warmup_steps=self.warmup_steps)

    @property
    def checkpoint_blocks(self) -> bool:
        """Per-block gradient checkpointing: on for full models unless turned off."""
        if self.gradient_checkpointing is None:
            return self.model not in TINY_MODELS
        return self.gradient_checkpointing

    @property
    def encoders_folder(self) -> str:
        """Where the Wan text/image encoders load from: ``wan_encoders``, else the ``backbone`` pipeline folder."""
        return self.wan_encoders or self.backbone

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"], d["buckets"] = list(self.betas), [list(b) for b in self.buckets]
        d["lengths"], d["strides"] = list(self.lengths), list(self.strides)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MVDiTTrainConfig:
        return cls(**data)

    @classmethod
    def tiny(cls, **changes: Any) -> MVDiTTrainConfig:
        """CPU settings for tests and the demo: tiny model, 32x32 buckets, 33 frames, lr 1e-3, no warm-up,
        colour jitter 0.5 (a few clips; see `pipeline.mvdit.batches.jitter_colours`)."""
        base = dict(model="tiny", strategy="ddp", lr=1e-3, warmup_steps=0, batch_size=2, steps=20, buckets=((32, 32),),
                    lengths=(33,), strides=(1,), backend="local", checkpoint_every=10, log_every=5, sample_steps=0,
                    colour_jitter=0.5)
        return cls(**{**base, **changes})


@dataclass
class MVDiTTrainResult:
    """What a training run produced."""

    checkpoint: Path
    loss_curve: list[dict[str, float]]  # step, loss, lr (means over log_every steps)
    sample_frames: np.ndarray | None  # (T, H, W, 3) uint8 preview of the first sample, or None
    ray_run_name: str | None = None
    ray_run_dir: str | None = None
