"""The CogVideoX MV-DiT sampling pipeline ``MTVCraftPipeline`` (paper Sec. 3.2 Eq. 3, App. A.3).

The reference image is the first frame: its latent z_ref = E(x_0) is repeated over
the latent frames and concatenated with the noisy latents (Eq. 3, inside the
model). Sampling is DDIM with 50 steps (``CogVideoXDDIMScheduler``, v-prediction,
as CogVideoX-5B expects) and motion CFG 3.0 (App. A.3):
eps = eps(∅) + w_m (eps(m) - eps(∅)) with the learnable c_m∅ as the null
motion (`models.mvdit.cfg`). The 6B model has no text branch, so
``prompt`` and ``text_guidance_scale`` have no effect on it. The Wan (MV-DiT-18B) pipeline
subclasses it (`pipeline.animation.wan_pipeline.WanMotionPipeline`); `pipeline.animation.loading.load_train_checkpoint`
loads a training checkpoint as whichever of the two its backbone needs, and `pipeline.animation.cli` is the CLI.

``MTVCraftPipeline`` follows the diffusers calling style (components as
attributes, ``__call__`` with ``num_inference_steps``, ``generator``) but is a
plain class: its latent map and 4DMoT are not diffusers modules.

Device and precision: by default the GPU when CUDA is present, in bfloat16 where it
supports it, else the CPU in float32 (`resolve_device`, `resolve_dtype`). The model is
cast before it moves (a full model never lands on the GPU in float32); 4DMoT stays
float32. The reference latent is the mode of the VAE posterior (as diffusers' Wan I2V
pipeline takes it; its CogVideoX I2V pipeline samples it), so a seed fixes the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.motion.skeleton import NUM_JOINTS
from models.mvdit.cfg import guided_prediction
from pipeline.motion.windows import usable_length
from pipeline.mvdit.factory import make_scheduler
from pipeline.mvdit.latents import LatentMap, PoolLatentMap, latent_frames

DEFAULT_PROMPT = "a person is dancing"  # App. A.3's evaluation prompt (18B model)
FULL_SIZE_LATENT_CHANNELS = 16  # latent channels of the CogVideoX-5B and Wan2.1 VAEs (tiny models use fewer)

@dataclass
class PreparedCall:
    """Checked inputs of one sampling call (`MTVCraftPipeline.prepare`)."""

    image: np.ndarray  # reference frame uint8 (height, width, 3)
    num_frames: int
    latent_frames: int
    tokens: torch.Tensor  # 4DMoT codebook vectors (1, latent_frames * 24, D)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` / None: the first CUDA GPU when CUDA is present, else the CPU; otherwise the named device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    return device


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` / None: bfloat16 on a GPU that supports it (the full models do not fit in float32), else
    float32; otherwise the named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def is_wan_checkpoint(info: dict[str, Any]) -> bool:
    """Whether a `train_mvdit` checkpoint's ``tokenizer_config`` is a Wan model's (its kwargs have CLIP's image_dim)."""
    return "image_dim" in info.get("mvdit", {})


class MTVCraftPipeline:
    """Reference image + motion -> video frames with MV-DiT (CogVideoX backbone).

    model: ``MVDiTCogVideoX``; latent_map: a `pipeline.mvdit.latents.LatentMap`;
    tokenizer: (VQVAE, MotionNormalizer) or None (then pass motion tokens);
    scheduler: a diffusers DDIM-style scheduler (default CogVideoX DDIM, v-prediction).
    """

    def __init__(self, model, latent_map: LatentMap, tokenizer: tuple[Any, Any] | None = None, scheduler=None) -> None:
        self.model = model.eval()
        self.latent_map = latent_map
        self.tokenizer = tokenizer
        self.scheduler = scheduler or make_scheduler()
        self.rope_joints: torch.Tensor | None = None  # set per call for motion_pe="dynamic"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, ckpt, tokenizer: str | Path | None = None, device: str | torch.device | None = "cpu",
                        dtype: str | torch.dtype | None = None) -> MTVCraftPipeline:
        """From a loaded CogVideoX `train_mvdit` checkpoint (`pipeline.core.checkpoints.TrainingCheckpoint`; it records
        the MV-DiT kwargs, latent map and 4DMoT path), cast to ``dtype`` (None: `resolve_dtype`'s choice for
        ``device``) before it moves to ``device`` ("auto": CUDA when present). Any backbone:
        `pipeline.animation.loading.load_train_checkpoint`."""
        from pipeline.core.checkpoints import load_tokenizer
        from pipeline.mvdit.factory import model_from_checkpoint
        from pipeline.mvdit.latents import latent_map_from_spec

        info = ckpt.tokenizer_config
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        model = model_from_checkpoint(ckpt, device=device, dtype=dtype)  # built on meta, cast on the host, loaded once
        vq, normalizer, _ = load_tokenizer(tokenizer or info["tokenizer_checkpoint"], device=device)
        return cls(model, latent_map_from_spec(info["latent_map"], device, dtype), (vq, normalizer))

    @classmethod
    def from_pretrained(cls, folder: str | Path, tokenizer: str | Path | None = None,
                        device: str | torch.device | None = "cpu",
                        dtype: str | torch.dtype | None = None) -> MTVCraftPipeline:
        """From a diffusers folder of a trained MV-DiT (``transformer/`` or the folder itself) and its ``vae/``,
        loaded in ``dtype`` (None: `resolve_dtype`'s choice) onto ``device`` ("auto": CUDA when present). Only a
        tiny model (not the 16 latent channels of the CogVideoX / Wan VAE) may go without ``vae/``: it then uses
        the fixed pool latent map; a full-size model without it is a FileNotFoundError naming the folder."""
        from models.mvdit.cogvideox import MVDiTCogVideoX, transformer_folder
        from pipeline.mvdit.latents import load_vae

        folder = Path(folder)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        transformer = transformer_folder(folder)
        config = MVDiTCogVideoX.load_config(str(transformer))
        has_vae = (folder / "vae" / "config.json").is_file()
        if not has_vae and config.get("out_channels") == FULL_SIZE_LATENT_CHANNELS:
            raise FileNotFoundError(
                f"--weights {folder}: no vae/config.json; this MV-DiT has {FULL_SIZE_LATENT_CHANNELS} latent channels "
                f"(the CogVideoX-5B VAE's) and decodes only with that VAE: put the backbone's vae/ folder in {folder}"
            )
        model = MVDiTCogVideoX.from_pretrained(str(transformer), local_files_only=True, torch_dtype=dtype)
        latent_map = load_vae(folder, device, dtype) if has_vae else PoolLatentMap(
            latent_channels=model.config.out_channels)
        tok = None
        if tokenizer is not None:
            from pipeline.core.checkpoints import load_tokenizer

            vq, normalizer, _ = load_tokenizer(tokenizer, device=device)
            tok = (vq, normalizer)
        return cls(model.to(device), latent_map, tok)  # from_pretrained(torch_dtype=...) cast it while loading

    # -- pieces -------------------------------------------------------------------------------------
    def motion_tokens(self, motion: np.ndarray | torch.Tensor, num_frames: int) -> torch.Tensor:
        """Joints (T, 24, 3) -> 4DMoT codebook vectors (1, F * 24, D); tokens (M, D) / (1, M, D) pass through."""
        # a copy of numpy input: arrays read from Arrow tables are read-only, which torch warns about
        motion = torch.from_numpy(np.array(motion)) if isinstance(motion, np.ndarray) else torch.as_tensor(motion)
        if motion.ndim == 3 and motion.shape[1:] == (NUM_JOINTS, 3):
            if self.tokenizer is None:
                raise ValueError("joints given but the pipeline has no 4DMoT tokenizer; pass tokenizer= or motion tokens")
            if len(motion) < num_frames:
                raise ValueError(f"motion has {len(motion)} frames, fewer than num_frames={num_frames}")
            vq, normalizer = self.tokenizer
            joints = motion[:num_frames].float()[None].to(self.device)
            return vq.motion_tokens(normalizer(joints))
        if motion.ndim == 2:
            motion = motion[None]
        if motion.ndim != 3 or not motion.is_floating_point():
            raise ValueError(f"motion must be joints (T, 24, 3) or tokens (F*24, D) / (1, F*24, D), got {tuple(motion.shape)}")
        return motion.float().to(self.device)

    def guided_prediction(self, latents: torch.Tensor, t: torch.Tensor, reference: torch.Tensor,
                          tokens: torch.Tensor, motion_scale: float) -> torch.Tensor:
        """Motion CFG: eps(∅) + w (eps(m) - eps(∅)); scale 1 is the plain conditional prediction."""
        b = latents.shape[0]

        dtype = self.model.dtype

        def predict(motion_keep: torch.Tensor, _text_keep: torch.Tensor) -> torch.Tensor:
            k = motion_keep.shape[0] // b
            out = self.model(latents.repeat(k, 1, 1, 1, 1).to(dtype), reference.repeat(k, 1, 1, 1, 1).to(dtype),
                             tokens.repeat(k, 1, 1).to(dtype), t, motion_mask=motion_keep,
                             mean_joints=self.rope_joints).sample
            return out.float()  # the sampler steps in float32

        return guided_prediction(predict, b, motion_scale=motion_scale, text_scale=1.0, has_text=False,
                                 device=latents.device)

    # -- sampling -------------------------------------------------------------------------------------
    def spatial_factor(self) -> int:
        """Pixels per transformer token side: the latent map's factor times the spatial patch size."""
        patch = self.model.config.patch_size
        return self.latent_map.spatial_factor * (patch if isinstance(patch, int) else patch[-1])

    def prepare(self, reference_image: np.ndarray, motion: np.ndarray | torch.Tensor, num_frames: int | None,
                height: int | None, width: int | None) -> PreparedCall:
        """Check and size the inputs shared by both backbones: the reference image resized to (height, width),
        the frame count (default: the longest 1 + 8k the joints give) and the motion tokens; sets ``rope_joints``."""
        image = np.asarray(reference_image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"reference_image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        motion_arr = np.asarray(motion) if isinstance(motion, np.ndarray) else motion
        if num_frames is None:
            num_frames = len(motion_arr) if motion_arr.ndim == 3 and motion_arr.shape[1:] == (NUM_JOINTS, 3) else None
            if num_frames is None:
                raise ValueError("num_frames is required when motion tokens are given")
            num_frames = usable_length(num_frames)
        f = latent_frames(num_frames, self.latent_map.temporal_factor)
        factor = self.spatial_factor()
        height, width = height or image.shape[0] // factor * factor, width or image.shape[1] // factor * factor
        if height % factor or width % factor or height < factor or width < factor:
            raise ValueError(f"height and width must be positive multiples of {factor}, got {height}x{width}")
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        tokens = self.motion_tokens(motion, num_frames)
        # "dynamic" PE (Table 2) places the motion RoPE at this clip's first-frame joints; the others use the
        # dataset-mean joints stored in the model config (None here).
        self.rope_joints = None
        if getattr(self.model.config, "motion_pe", "4d") == "dynamic":
            if not (motion_arr.ndim == 3 and motion_arr.shape[1:] == (NUM_JOINTS, 3)):
                raise ValueError("a model trained with motion_pe='dynamic' needs joints (T, 24, 3), not motion tokens")
            self.rope_joints = torch.as_tensor(np.asarray(motion_arr[0]), dtype=torch.float64)
        if tokens.shape[1] != f * self.model.config.num_joints:
            raise ValueError(f"motion tokens cover {tokens.shape[1] // self.model.config.num_joints} latent frames; "
                             f"{num_frames} frames need {f}")
        return PreparedCall(image, num_frames, f, tokens)

    def context_latents(self, context: np.ndarray | None, height: int, width: int) -> torch.Tensor | None:
        """Latents (1, m, C, h, w) of frames the clip must start with (uint8 (1 + 4j, H, W, 3), resized to the
        output size), or None."""
        if context is None:
            return None
        context = np.asarray(context)
        if context.dtype != np.uint8 or context.ndim != 4 or context.shape[3] != 3:
            raise ValueError(f"context must be uint8 frames (k, H, W, 3), got {context.dtype} {context.shape}")
        if context.shape[1:3] != (height, width):
            context = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in context])
        latent_frames(len(context), self.latent_map.temporal_factor)  # raises unless 1 + 4j frames
        return self.latent_map.encode(torch.from_numpy(context)[None].to(self.device), mode=True)

    def noised(self, known: torch.Tensor, step: int, timesteps: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        """``known`` clean latents at the noise level the sample has after ``step`` (DDIM: the scheduler's forward
        process at the next timestep; clean after the last step)."""
        if step + 1 == len(timesteps):
            return known
        noise = torch.randn(known.shape, generator=generator).to(known.device)
        return self.scheduler.add_noise(known, noise, timesteps[step + 1:step + 2])

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The scheduler's timesteps for ``num_inference_steps``."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        return self.scheduler.timesteps

    @staticmethod
    def progress(timesteps: torch.Tensor, show: bool):
        """``timesteps`` wrapped in a tqdm bar when ``show``."""
        if not show:
            return timesteps
        from tqdm.auto import tqdm

        return tqdm(timesteps, desc="MV-DiT")

    @torch.no_grad()
    def __call__(self, reference_image: np.ndarray, motion: np.ndarray | torch.Tensor, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int = 50,
                 motion_guidance_scale: float = 3.0, text_guidance_scale: float = 6.0,
                 generator: torch.Generator | None = None, progress: bool = False,
                 prompt: str | None = None, context: np.ndarray | None = None) -> np.ndarray:
        """Frames uint8 (num_frames, height, width, 3); the reference image is frame 0's condition (Eq. 3).

        ``prompt`` and ``text_guidance_scale`` are accepted so that one call serves both backbones; the 6B model
        has no text branch and ignores them. ``context``: frames (1 + 4j) the clip must start with, e.g. the end of
        the previous window of a long motion; after every step their latents, noised to the sample's level,
        replace the first latent frames (the hold of the released 17B long-video sampler).
        """
        call = self.prepare(reference_image, motion, num_frames, height, width)
        device = self.device
        # (1, 1, C, h, w); the posterior's mode, as diffusers' Wan I2V pipeline takes it
        reference = self.latent_map.encode(torch.from_numpy(call.image)[None, None].to(device), mode=True)
        known = self.context_latents(context, *call.image.shape[:2])
        c, h, w = reference.shape[2:]
        latents = torch.randn((1, call.latent_frames, c, h, w), generator=generator).to(device)
        latents = latents * self.scheduler.init_noise_sigma
        timesteps = self.timesteps(num_inference_steps)
        for i, t in enumerate(self.progress(timesteps, progress)):
            pred = self.guided_prediction(latents, t, reference, call.tokens, motion_guidance_scale)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            if known is not None:
                latents[:, :known.shape[1]] = self.noised(known, i, timesteps, generator)
        return self.latent_map.decode(latents)[0, :call.num_frames].cpu().numpy()
