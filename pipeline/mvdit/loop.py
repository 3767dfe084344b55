"""Train MV-DiT (paper Sec. 3.2-3.3, App. A.2) on Ray Train or locally.

One training loop (`train_loop`) serves both backends, as in `train_tokenizer`:
``backend="ray"`` runs it under Ray Train's `TorchTrainer` on ``num_workers``
workers; ``backend="local"`` calls it in this process (tests, one GPU).

Per step, ``grad_accum_steps`` micro-batches (`micro_step`; each micro-batch's
randomness seeded by (seed, step, rank, micro), so a resumed run ends with the
weights of an uninterrupted one, and accumulation 1 draws as before it existed)
of:
1. a clip length from ``lengths`` {33, 49, 81, 97, 129} and a stride from
   ``strides`` {1, 2} (App. A.2), among those every drawn sample can give;
   ``batch_size`` windows of that length; one resolution bucket (the bucket
   nearest the first window's aspect ratio); every window resized to cover the
   bucket and randomly cropped to it;
2. video latents z_0 = E(x) and the reference latent z_ref = E(x_0) (the first
   frame alone) from `pipeline.mvdit.latents`; motion tokens = the 4DMoT codebook
   vectors of the window's joints (``VQVAE.motion_tokens``: frame-major
   (F * 24, code_dim), F latent frames, the same count as the video latents);
   with ``video_latents`` (a table of the `video_latents` asset) steps 1-2 read instead the stored posteriors of
   fixed, centre-cropped windows and sample them (no VAE, no random crop or colour jitter; `step_latents`,
   `pipeline.mvdit.latent_table`);
3. the diffusion objective with a diffusers scheduler: CogVideoX-5B is a
   v-prediction model, so ``CogVideoXDDIMScheduler`` (its 5B config:
   scaled-linear betas, zero terminal SNR, v-prediction) adds noise at a uniform
   random timestep and the target is the velocity v = sqrt(a) eps - sqrt(1-a) z_0;
   plain MSE (no SNR weighting);
4. motion dropped with p = 0.2 via `models.mvdit.cfg.sample_keep_masks` (c_m∅ used
   instead; text p = 0.1 is drawn too but the 6B model has no text branch);
5. after the last micro-batch (`sharding.optimizer_step`: the gradient is the
   mean over all their samples), AdamW (0.9, 0.99), weight decay 1e-2, lr 2e-5
   with linear warm-up over 300 steps, bf16 autocast on GPUs that support it
   (float32 elsewhere).

Strategies (``strategy``, `pipeline.mvdit.sharding`): "ddp" (the tiny models: Ray Train ``prepare_model``, with
``find_unused_parameters`` because the unused text halves of the norms get no gradient) and "fsdp" (the default
for full models: FSDP2 per transformer block, ``reshard_after_forward=False`` = the paper's DeepSpeed ZeRO-2,
bf16 parameters / float32 reduction on GPUs, sharded `torch.distributed.checkpoint` checkpoints consolidated
into one safetensors file at the end). Both apply the same step: c_m∅ moves only on steps where some sample
used it (Sec. 3.2), then the same gradient clipping (``max_grad_norm``). Full models are built on ``meta`` and
loaded from the backbone once (`pipeline.mvdit.factory`; under FSDP2 rank 0 alone reads it and broadcasts),
frozen weights in bf16 on GPUs, with per-block gradient checkpointing; the samples are clip references each
worker decodes (`pipeline.mvdit.data`).

Models "wan_i2v_14b" (MV-DiT-18B, Sec. 3.3, App. C) and "wan_tiny" (the same
class at toy size, CPU tests) train ``models.mvdit.wan.MVDiTWan`` with these
changes to the steps above:
- step 2: z_ref = E(ZeroPad(x_0)) (Eq. 9): frame 0 followed by zero frames (mid
  grey in [-1, 1], as Wan's pipeline pads) through the same latent map, then
  [z_t | 4-channel first-frame mask | z_ref] (Eq. 10, ``wan_vision_latents``,
  inside the model); motion tokens stay 3072-d (zero-padded to 5120 inside the
  motion attention, Sec. 3.3);
- the text-image branch: `pipeline.mvdit.wan_conditioning` loads Wan2.1-I2V's UMT5
  + tokenizer and CLIP image encoder + processor from ``wan_encoders`` (default:
  the ``backbone`` pipeline folder); each window's text is its sample's caption
  (a third element of the sample; the motion_video table has no caption column
  yet) or ``prompt`` ("a person is dancing", the evaluation prompt of App. A.3),
  and its image tokens are CLIP's of the window's (augmented) frame 0;
- step 3: Wan2.1 is a rectified-flow model: x_t = (1 - s) z_0 + s eps with
  s = shift * u / (1 + (shift - 1) u), u ~ U(0, 1), ``flow_shift`` 5 (the
  released 17B sampler's), timestep 1000 s, target eps - z_0, plain MSE;
- step 4: the text keep-mask of ``sample_keep_masks`` (p = 0.1) replaces dropped
  prompts by the empty prompt's embedding (Wan's unconditional text);
- only the motion attention (+ its pre-norm) and c_m∅ train (App. A.1): the
  backbone is frozen; the release layout has no c_m∅, so it needs
  ``motion_drop_prob=0``. With ``unconditional_from`` (a 6B checkpoint trained
  on the same 4DMoT) c_m∅ is the 6B's, frozen, as the paper reuses it "without
  modification" (Sec. 3.3); without it, c_m∅ is learnt here;
- the preview sample after training (``train_mvdit(preview=pipeline.animation.loading.preview_sample)``) goes
  through ``pipeline.animation.wan_pipeline.WanMotionPipeline`` (flow matching, motion and text CFG) with ``prompt``.

Checkpoints: `pipeline.core.checkpoints` files (safetensors + SHA-256) in
``out_dir/checkpoints`` (FSDP: sharded folders under ``checkpoints/sharded``, the last one exported to such a
file): model (with a frozen backbone: its trained weights and the backbone's path and SHA-256) + AdamW state, ``stats.mean`` = the dataset-mean
joints used by the motion RoPE, the MV-DiT constructor kwargs and latent map
spec under ``tokenizer_config`` (``{"mvdit": ..., "latent_map": ...,
"tokenizer_checkpoint": ...}``, plus ``"wan_encoders"`` for the Wan models), the
loss curve in ``extra``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, get_args

import numpy as np
import torch

from models.mvdit.cfg import CFGConfig, reuse_unconditional_tokens, sample_keep_masks
from pipeline.core.checkpoints import (
    latest_checkpoint,
    load_checkpoint,
    load_tokenizer,
    load_unconditional_tokens,
    save_checkpoint,
)
from pipeline.core.step_schedule import learning_rate, step_seed
from pipeline.motion.windows import BUCKET_LENGTHS, STRIDES
from pipeline.mvdit import sharding
from pipeline.mvdit.data import Sample, as_samples, worker_shard
from pipeline.mvdit.factory import backbone_reference, make_scheduler
from pipeline.mvdit.latents import PoolLatentMap, latent_frames, latent_map_from_spec
from pipeline.mvdit.resume import checkpoint_meta, resume, resume_sharded, safetensors_args
from pipeline.mvdit.windows import nearest_bucket, reference_video, resize_crop

Log = Callable[[str], None]
SEED_STREAM = 7  # `step_seed`'s stream word of MV-DiT's draws
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
    colour_jitter: float = 0.0  # strength of the per-window colour augmentation (0 = off; see `jitter_colours`)
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
        colour jitter 0.5 (a few clips; see `jitter_colours`)."""
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


# ---- model, schedule, batches ---------------------------------------------------------------
def model_kwargs(cfg: MVDiTTrainConfig, motion_token_dim: int, latent_channels: int,
                 encoder_dims: tuple[int, int] | None = None) -> dict[str, Any]:
    """Constructor kwargs of ``MVDiTCogVideoX`` / ``MVDiTWan`` for the config (tiny: sized to the tokenizer and
    latent map; "wan_tiny" also to ``encoder_dims`` = (T5, CLIP) hidden sizes, checked for "wan_i2v_14b")."""
    from models.mvdit.cogvideox import MVDiTConfig

    if cfg.is_wan:
        return _wan_model_kwargs(cfg, motion_token_dim, latent_channels, encoder_dims)
    if cfg.model == "tiny":
        mv = MVDiTConfig.tiny(layout=cfg.layout, num_layers=cfg.tiny_layers, motion_token_dim=motion_token_dim)
        backbone = {**mv.backbone, "in_channels": 2 * latent_channels, "out_channels": latent_channels}
        mv = replace(mv, backbone=backbone, unconditional_frames=latent_frames(max(cfg.lengths)),
                     motion_pe=cfg.motion_pe)
    else:
        mv = replace(MVDiTConfig.cogvideox_5b(layout=cfg.layout), motion_pe=cfg.motion_pe)
        if motion_token_dim != mv.motion_token_dim:
            raise ValueError(f"the 4DMoT code_dim is {motion_token_dim}; MV-DiT-6B expects {mv.motion_token_dim}")
    return mv.model_kwargs()


def _wan_model_kwargs(cfg: MVDiTTrainConfig, motion_token_dim: int, latent_channels: int,
                      encoder_dims: tuple[int, int] | None) -> dict[str, Any]:
    """``MVDiTWan`` kwargs: "wan_tiny" sized to the tokenizer, latent map and encoders; "wan_i2v_14b" checked."""
    from models.mvdit.wan import MVDiTWanConfig

    if cfg.model == "wan_tiny":
        mv = MVDiTWanConfig.tiny(layout=cfg.layout, num_layers=cfg.tiny_layers, motion_token_dim=motion_token_dim)
        text_dim, image_dim = encoder_dims or (mv.backbone["text_dim"], mv.backbone["image_dim"])
        backbone = {**mv.backbone, "in_channels": 2 * latent_channels + 4, "out_channels": latent_channels,
                    "text_dim": text_dim, "image_dim": image_dim}
        uncond = latent_frames(max(cfg.lengths)) if cfg.layout == "paper" else None  # release: no c_m∅
        return replace(mv, backbone=backbone, unconditional_frames=uncond, motion_pe=cfg.motion_pe).model_kwargs()
    mv = replace(MVDiTWanConfig.wan_i2v_14b(layout=cfg.layout), motion_pe=cfg.motion_pe)
    want = {"4DMoT code_dim": (motion_token_dim, mv.motion_token_dim),
            "VAE latent channels": (latent_channels, mv.backbone["out_channels"])}
    if encoder_dims is not None:
        want["T5 hidden size"] = (encoder_dims[0], mv.backbone["text_dim"])
        want["CLIP hidden size"] = (encoder_dims[1], mv.backbone["image_dim"])
    for name, (got, expected) in want.items():
        if got != expected:
            raise ValueError(f"the {name} is {got}; MV-DiT-18B (Wan2.1-I2V-14B) expects {expected}")
    return mv.model_kwargs()


def build_model(kwargs: dict[str, Any], backbone: str = "", device: str | torch.device = "cpu",
                frozen_dtype: torch.dtype = torch.float32):
    """The MV-DiT of ``kwargs`` (``MVDiTWan`` when they hold Wan's CLIP ``image_dim``, else ``MVDiTCogVideoX``):
    with ``backbone``, built on ``meta`` and loaded from the stock diffusers folder on ``device``, fresh motion
    modules, frozen weights in ``frozen_dtype`` (`pipeline.mvdit.factory`); without, randomly initialised on the
    CPU (the tiny models)."""
    from pipeline.mvdit.factory import build_from_backbone, build_random

    if backbone:
        return build_from_backbone(kwargs, backbone, device, frozen_dtype)
    return build_random(kwargs)


def jitter_colours(frames: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """One random colour change for a whole window (T, H, W, 3) uint8: a channel permutation (with probability
    ``strength``), per-channel gains exp(U(-s, s)) and offsets U(-40 s, 40 s) on 0-255.

    Not in the paper (its 200K+ clips are diverse). With the few clips of a laptop run the model would otherwise
    learn each clip's colours by heart instead of taking them from the reference frame; the change is the same on
    every frame, so the reference (frame 0) still shows the colours the other frames must have.
    """
    if strength <= 0:
        return frames
    x = frames.astype(np.float32)
    if rng.uniform() < strength:
        x = x[..., rng.permutation(3)]
    x = x * np.exp(rng.uniform(-strength, strength, 3)) + rng.uniform(-40 * strength, 40 * strength, 3)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def draw_batch(samples: list[Sample], cfg: MVDiTTrainConfig,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One step's windows: (frames (B, L, H, W, 3) uint8, joints (B, L, 24, 3), texts (each sample's caption or
    ``cfg.prompt``)); one length, stride, bucket."""
    picks = rng.integers(0, len(samples), cfg.batch_size)
    shortest = min(len(samples[i].joints) for i in picks)
    options = [(n, s) for n in cfg.lengths for s in cfg.strides if (n - 1) * s + 1 <= shortest]
    if not options:
        raise ValueError(f"a drawn clip has {shortest} frames; the shortest window needs {min(cfg.lengths)}")
    length, stride = options[int(rng.integers(0, len(options)))]
    span = (length - 1) * stride + 1
    videos, joints, bucket = [], [], None
    for i in picks:
        sample = samples[i]
        start = int(rng.integers(0, len(sample.joints) - span + 1))
        frames = sample.frames(start, start + span, stride)
        bucket = bucket or nearest_bucket(frames.shape[1], frames.shape[2], cfg.buckets)
        videos.append(jitter_colours(resize_crop(frames, bucket, rng), rng, cfg.colour_jitter))
        joints.append(sample.joints[start : start + span : stride])
    texts = [samples[i].caption if samples[i].caption is not None else cfg.prompt for i in picks]
    return np.stack(videos), np.stack(joints), texts


def step_latents(samples: list[Sample], cfg: MVDiTTrainConfig, rng: np.random.Generator, gen: torch.Generator,
                 latent_map: Any, table: Any, device: torch.device):
    """One step's (z_0, z_ref, joints, texts, first frames): random windows encoded by ``latent_map``, or, with a
    ``table`` (`pipeline.mvdit.latent_table.LatentWindows`), fixed windows' latents read and sampled from it."""
    if table is not None:
        return table.draw(samples, cfg.batch_size, cfg.prompt, rng, gen, device)
    frames, joints, texts = draw_batch(samples, cfg, rng)
    with torch.no_grad():
        video = torch.from_numpy(frames).to(device)
        latents = latent_map.encode(video, generator=gen)
        # 6B: z_ref = E(x_0) (Eq. 3); 18B: z_ref = E(ZeroPad(x_0)) (Eq. 9).
        reference = latent_map.encode(reference_video(video, cfg.is_wan), generator=gen)
    return latents, reference, joints, texts, frames[:, 0]


# ---- the training step -------------------------------------------------------------------------
def diffusion_loss(model, scheduler, latents: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor,
                   motion_keep: torch.Tensor, generator: torch.Generator, mean_joints: Any = None) -> torch.Tensor:
    """MSE between the model output and the scheduler's target at random timesteps (v or eps, per the scheduler)."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    pred = model(noisy, reference, tokens, t, motion_mask=motion_keep, mean_joints=mean_joints).sample
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Noise levels u in [0, 1] -> shift u / (1 + (shift - 1) u): more steps at high noise (Wan's / SD3's shift)."""
    return shift * u / (1 + (shift - 1) * u)


def flow_matching_loss(model, latents: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor,
                       motion_keep: torch.Tensor, text: torch.Tensor, image: torch.Tensor,
                       generator: torch.Generator, shift: float = 5.0, mean_joints: Any = None) -> torch.Tensor:
    """Wan2.1's rectified-flow objective: MSE between the model output and eps - z_0 at x_t = (1 - s) z_0 + s eps.

    ``latents`` and ``reference`` = E(ZeroPad(x_0)) in the latent map's (B, F, C, h, w) layout; the noise level
    s = ``shift_sigmas``(U(0, 1)); the model's timestep is 1000 s (Wan's ``FlowMatchEulerDiscreteScheduler``).
    """
    z0 = latents.permute(0, 2, 1, 3, 4)  # Wan's (B, C, F, h, w)
    ref = reference.permute(0, 2, 1, 3, 4)
    b = z0.shape[0]
    noise = torch.randn(z0.shape, generator=generator).to(z0.device)
    sigma = shift_sigmas(torch.rand(b, generator=generator), shift).to(z0.device)
    s = sigma.view(b, 1, 1, 1, 1)
    noisy = (1 - s) * z0 + s * noise
    pred = model(noisy, ref, tokens, sigma * 1000, encoder_hidden_states=text, encoder_hidden_states_image=image,
                 motion_mask=motion_keep, mean_joints=mean_joints).sample
    return torch.nn.functional.mse_loss(pred.float(), (noise - z0).float())


def setup_model(job: dict[str, Any], cfg: MVDiTTrainConfig, device: torch.device, autocast: bool, sharded: bool,
                rank: int, log: Log) -> torch.nn.Module:
    """The MV-DiT to train with its mean joints, a reused c_m∅ (``unconditional_from``) and per-block gradient
    checkpointing; under FSDP sharded (`sharding.shard_fsdp`). A sharded model from a backbone loads through
    rank 0 (`factory.build_sharded_from_backbone`): no other rank reads the folder or holds the full model."""
    from pipeline.mvdit.factory import build_sharded_from_backbone

    frozen_dtype = torch.bfloat16 if autocast else torch.float32
    rank0_load = sharded and bool(cfg.backbone)
    tokens = None
    if cfg.unconditional_from and (rank == 0 or not rank0_load):  # Sec. 3.3: the 18B reuses the 6B's c_m∅
        tokens = load_unconditional_tokens(cfg.unconditional_from, job["tokenizer_checkpoint"])
        if rank == 0:
            log(f"c_m∅ from {cfg.unconditional_from}, frozen")

    def prepare(model: torch.nn.Module) -> None:
        model.set_mean_joints(np.array(job["mean_joints"]))
        if cfg.unconditional_from:  # ranks > 0 of a rank-0 load: frozen on meta, the values come from rank 0
            reuse_unconditional_tokens(model, torch.empty_like(model.unconditional_motion_token)
                                       if tokens is None else tokens)
        if cfg.checkpoint_blocks:
            model.enable_gradient_checkpointing()

    def shard(model: torch.nn.Module) -> torch.nn.Module:
        return sharding.shard_fsdp(model, device, cfg.reshard_after_forward, bf16=autocast)

    if rank0_load:
        return build_sharded_from_backbone(job["model_kwargs"], cfg.backbone, device, frozen_dtype, shard, prepare)
    model = build_model(job["model_kwargs"], cfg.backbone, device, frozen_dtype)
    prepare(model)
    return shard(model) if sharded else model


@dataclass
class StepParts:
    """What a micro-batch needs besides its seed: the (wrapped) model, this worker's clips, the frozen encoders."""

    net: torch.nn.Module
    samples: list[Sample]
    cfg: MVDiTTrainConfig
    device: torch.device
    latent_map: Any  # None when latents come from a `video_latents` table
    table: Any  # `latent_table.LatentWindows` or None
    vqvae: Any
    normalizer: Any
    scheduler: Any  # CogVideoX's DDIM scheduler; None for the Wan models (flow matching)
    conditioner: Any  # Wan's text and image encoders; None for CogVideoX
    autocast: bool


def micro_step(parts: StepParts, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, motion keep-mask) of one micro-batch of ``batch_size`` windows, every draw from ``seed``: windows
    and augmentation (step 1 of the module docstring), latents and motion tokens (2), noise (3), drops (4)."""
    cfg, device, gen = parts.cfg, parts.device, torch.Generator().manual_seed(seed)
    latents, reference, joints, texts, first_frames = step_latents(parts.samples, cfg, np.random.default_rng(seed),
                                                                   gen, parts.latent_map, parts.table, device)
    with torch.no_grad():
        tokens = parts.vqvae.motion_tokens(parts.normalizer(torch.from_numpy(joints).to(device)))
    drop = CFGConfig(motion_drop_prob=cfg.motion_drop_prob, text_drop_prob=cfg.text_drop_prob)
    motion_keep, text_keep = sample_keep_masks(len(joints), drop, generator=gen, device=device)
    # "dynamic" PE (Table 2): the RoPE positions are each window's own first-frame joints.
    first_joints = torch.from_numpy(joints[:, 0]).to(device) if cfg.motion_pe == "dynamic" else None
    if parts.conditioner is not None:  # frozen encoders, outside autocast (as Wan's pipeline runs them)
        text = parts.conditioner.encode_prompts(texts, keep=text_keep).to(device)  # dropped: the empty prompt
        image = parts.conditioner.encode_images(first_frames).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=parts.autocast):
        if parts.conditioner is not None:
            loss = flow_matching_loss(parts.net, latents, reference, tokens, motion_keep, text, image, gen,
                                      cfg.flow_shift, first_joints)
        else:
            loss = diffusion_loss(parts.net, parts.scheduler, latents, reference, tokens, motion_keep, gen,
                                  first_joints)
    return loss, motion_keep


def train_loop(job: dict[str, Any], rank: int = 0, device: torch.device | None = None,
               wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
               report: Callable[[dict], None] | None = None, log: Log = print) -> None:
    """Train from the newest checkpoint in ``job['out_dir']`` (or from scratch) to ``steps``.

    Under a process group with ``strategy="fsdp"`` the model is sharded with FSDP2 (`pipeline.mvdit.sharding`)
    and checkpoints are sharded; otherwise ``wrap`` (DDP) or none, and rank 0 writes safetensors checkpoints."""
    cfg = MVDiTTrainConfig.from_dict(job["config"])
    device = device or torch.device("cpu")
    ckpt_dir = Path(job["out_dir"]) / "checkpoints"
    _, world = sharding.world()
    samples = worker_shard(as_samples(job["samples"]), rank, world)  # references: decoded here, per batch
    vqvae, normalizer, _ = load_tokenizer(job["tokenizer_checkpoint"], device=device)
    table = None
    if job.get("video_latents"):  # latents read from the table: the VAE is not even loaded
        from pipeline.mvdit.latent_table import LatentWindows

        table = LatentWindows(job["video_latents"], samples, cfg.lengths, cfg.strides, cfg.buckets)
        if rank == 0:
            log(table.describe())
    latent_map = None if table else latent_map_from_spec(job["latent_map"], device=device)
    scheduler = None if cfg.is_wan else make_scheduler()
    autocast = cfg.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    conditioner = None
    if cfg.is_wan:
        from pipeline.mvdit.wan_conditioning import load_wan_conditioner

        conditioner = load_wan_conditioner(job["wan_encoders"], device=device,
                                           text_dtype=torch.bfloat16 if autocast else torch.float32)

    torch.manual_seed(cfg.seed)
    sharded = cfg.strategy == "fsdp" and torch.distributed.is_initialized()
    model = setup_model(job, cfg, device, autocast, sharded, rank, log)
    frozen_backbone = job.get("backbone") is not None  # checkpoints hold the trained weights only
    if sharded:
        net = model
        optimizer = sharding.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay)
        start, curve, running = resume_sharded(ckpt_dir, model, optimizer, cfg, frozen_backbone, rank, log,
                                                 job["model_kwargs"])
    else:
        optimizer = sharding.make_optimizer(model, cfg.lr, cfg.betas, cfg.weight_decay)
        start, curve, running = resume(ckpt_dir, model, optimizer, cfg, rank, log, job["model_kwargs"])
        model.to(device)
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and key != "step":
                    state[key] = value.to(device)
        net = wrap(model) if wrap else model
    net.train()
    parts = StepParts(net, samples, cfg, device, latent_map, table, vqvae, normalizer, scheduler, conditioner, autocast)

    for step in range(start, cfg.steps):
        lr = cfg.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro_batches = [partial(micro_step, parts, step_seed(cfg.seed, step, rank, SEED_STREAM, micro))
                         for micro in range(cfg.grad_accum_steps)]
        loss = sharding.optimizer_step(net, model, optimizer, micro_batches, cfg.max_grad_norm,
                                       cfg.reduce_every_micro_batch)
        running["loss"] += loss
        running["n"] += 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            point = {"step": done, "loss": running["loss"] / running["n"], "lr": lr}
            curve.append(point)
            running = {"n": 0, "loss": 0.0}
            if rank == 0:
                log(f"step {done}/{cfg.steps} loss {point['loss']:.5f} lr {lr:g}")
            if report and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                # Ray Train holds one pending report per worker and collects every ~2 s: reporting each log
                # line would block fast steps, so only checkpoint steps report (bench/results/mvdit.md).
                report(point)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            meta = checkpoint_meta(job, cfg, done, curve, running)
            if sharded:
                path = sharding.save_sharded(ckpt_dir, done, model, optimizer, meta, frozen_backbone,
                                             cfg.keep_checkpoints)
                if done == cfg.steps and rank == 0:  # one consolidated file for release and `animate`
                    path = sharding.export_sharded(path, ckpt_dir)
            elif rank == 0:
                path = save_checkpoint(ckpt_dir, done, model, optimizer, **safetensors_args(meta))
            if rank == 0:
                log(f"checkpoint saved: {path}")
    if sharded and world > 1:
        torch.distributed.barrier()  # the export is on disk before any rank returns


# ---- backends -------------------------------------------------------------------------------------
def _ray_worker(job: dict[str, Any]) -> None:
    """Ray Train entry point: one call per worker."""
    import ray
    import ray.train
    import ray.train.torch

    if isinstance(job["samples"], ray.ObjectRef):
        job = {**job, "samples": ray.get(job["samples"])}
    rank = ray.train.get_context().get_world_rank()
    # "ddp" wraps here; "fsdp" shards inside the loop (the optimizer must be built after sharding).
    wrap = lambda m: ray.train.torch.prepare_model(  # noqa: E731
        m, parallel_strategy_kwargs={"find_unused_parameters": True})
    train_loop(job, rank=rank, device=ray.train.torch.get_device(), wrap=wrap, report=ray.train.report, log=print)


def _fit_on_ray(job: dict[str, Any], cfg: MVDiTTrainConfig, log: Log) -> tuple[str, str]:
    from pipeline.core.ray_runtime import fit_torch_trainer

    log(f"MV-DiT strategy {cfg.strategy}")
    return fit_torch_trainer(_ray_worker, job, "samples", out_dir=job["out_dir"],
                             run_name=cfg.run_name or time.strftime("mvdit-%Y%m%d-%H%M%S"),
                             num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, ray_address=cfg.ray_address, log=log)


# ---- driver -----------------------------------------------------------------------------------------
def _mean_joints(stats: Any, samples: list[Sample]) -> np.ndarray:
    """Dataset-mean joints (24, 3) for the motion RoPE: ``stats['mean_joints']`` or the samples' mean."""
    value = stats.get("mean_joints") if isinstance(stats, dict) else getattr(stats, "mean_joints", None)
    if value is None:
        value = np.concatenate([s.joints for s in samples]).mean(axis=0)
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (24, 3):
        raise ValueError(f"stats['mean_joints'] must be (24, 3) metres, got {value.shape}")
    return value


def train_mvdit(samples: Sequence[Any], tokenizer_checkpoint: str | Path, stats: Any, config: MVDiTTrainConfig,
                out_dir: str | Path, log: Log = print, preview: Preview | None = None) -> MVDiTTrainResult:
    """Train MV-DiT on (video, joints) samples with motion tokens from a trained 4DMoT checkpoint.

    ``samples``: (frames uint8 (T, H, W, 3) or a clip reference (uri, start, end), joints (T, 24, 3) metres
    [, caption str]); references are decoded by the workers, never here.
    ``stats``: None or a dict with ``mean_joints`` (24, 3) (else the samples' mean).
    Wan models also need the Wan2.1-I2V encoders folder (``config.wan_encoders`` or ``config.backbone``).
    ``preview``: called after training with (checkpoint, first sample, config, log) when ``config.sample_steps``
    > 0 (the animation side's `pipeline.animation.loading.preview_sample`); its frames are the result's ``sample_frames``.
    """
    job = prepare_job(samples, tokenizer_checkpoint, stats, config, out_dir)
    out_dir = Path(job["out_dir"])
    run_name = run_dir = None
    if config.backend == "local":
        if config.strategy != "ddp":
            log(f"backend 'local' runs one process: strategy {config.strategy!r} is not applied")
        use_gpu = torch.cuda.is_available() if config.use_gpu is None else config.use_gpu
        train_loop(job, device=torch.device("cuda" if use_gpu else "cpu"), log=log)
    else:
        run_name, run_dir = _fit_on_ray(job, config, log)
    checkpoint = latest_checkpoint(out_dir / "checkpoints")
    if checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint in {out_dir / 'checkpoints'}")
    ckpt = load_checkpoint(checkpoint)
    frames = preview(checkpoint, job["samples"][0], config, log) if preview and config.sample_steps > 0 else None
    return MVDiTTrainResult(checkpoint, ckpt.extra.get("loss_curve", []), frames, run_name, run_dir)


def latent_map_spec(config: MVDiTTrainConfig) -> dict[str, Any]:
    """The latent map the config trains on: the backbone's VAE (``vae``), or the pool map for the tiny models."""
    if config.vae:
        from pipeline.mvdit.latents import load_vae

        spec = load_vae(config.vae).spec()
        if config.is_wan and spec["class"] != "AutoencoderKLWan":
            raise ValueError(f"MVDiTTrainConfig.vae = {config.vae!r} holds {spec['class']}; "
                             f"model {config.model!r} needs Wan2.1's AutoencoderKLWan")
        return spec
    if config.model in TINY_MODELS:
        k = config.latent_frequencies
        return PoolLatentMap(latent_channels=max(4, 3 * k * k), frequencies=k).spec()
    raise ValueError(f"MVDiTTrainConfig.vae must name the backbone's VAE folder for model {config.model!r}")


def prepare_job(samples: Sequence[Any], tokenizer_checkpoint: str | Path, stats: Any, config: MVDiTTrainConfig,
                out_dir: str | Path) -> dict[str, Any]:
    """Everything a training worker needs (checked here, before any worker starts): configs, model kwargs,
    latent map, sample references, mean joints, the frozen backbone's reference."""
    out_dir = Path(out_dir).resolve()  # Ray workers run elsewhere: a relative path would land in their session folder
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapped = as_samples(samples)
    if not wrapped:
        raise ValueError("train_mvdit needs at least one sample")
    if not Path(tokenizer_checkpoint).is_file():
        raise FileNotFoundError(f"4DMoT checkpoint not found: {tokenizer_checkpoint}")
    vqvae, _, _ = load_tokenizer(tokenizer_checkpoint)
    latent_spec = latent_map_spec(config)
    if config.model not in TINY_MODELS and not config.backbone:
        raise ValueError(f"MVDiTTrainConfig.backbone must name the stock diffusers backbone folder for model "
                         f"{config.model!r} (a full model is fine-tuned from it, never trained from random weights)")
    latent_channels = latent_map_from_spec(latent_spec).latent_channels
    encoders = None
    if config.is_wan:
        from pipeline.mvdit.wan_conditioning import encoder_dims

        setting = "MVDiTTrainConfig.wan_encoders" + ("" if config.wan_encoders else " (or .backbone)")
        encoders = str(Path(config.encoders_folder).resolve()) if config.encoders_folder else ""
        dims = encoder_dims(encoders, setting=setting)  # a clear error before any worker starts
        kwargs = model_kwargs(config, vqvae.config.code_dim, latent_channels, dims)
    else:
        kwargs = model_kwargs(config, vqvae.config.code_dim, latent_channels)
    job = {"config": config.to_dict(), "out_dir": str(out_dir), "samples": wrapped, "model_kwargs": kwargs,
           "tokenizer_checkpoint": str(tokenizer_checkpoint), "latent_map": latent_spec,
           "mean_joints": _mean_joints(stats, wrapped)}
    if config.is_wan:
        job["wan_encoders"] = encoders
    if config.video_latents:  # a reference (uri, pinned version, key): the workers read their own rows
        from pipeline.mvdit.latent_table import FIRST_FRAME, ZERO_PADDED, table_reference

        job["video_latents"] = table_reference(config.video_latents, latent_spec,
                                               ZERO_PADDED if config.is_wan else FIRST_FRAME)
    if config.backbone and not kwargs["train_backbone"]:  # checkpoints then hold only the trained weights
        job["backbone"] = backbone_reference(config.backbone, cache=out_dir / "checkpoints" / "backbone_sha256.json")
    return job
