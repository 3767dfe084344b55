"""Sample MV-DiT-18B (Wan2.1-I2V backbone; paper Sec. 3.2-3.3, App. A.3, App. C): ``WanMotionPipeline``.

Per call, the way `pipeline.mvdit.loop` trained the model:
- the reference frame x_0 gives z_ref = E(ZeroPad(x_0)) (Eq. 9: frame 0 then zero
  frames through the checkpoint's latent map); the model stacks it with the
  first-frame mask and the noisy latents (Eq. 10, inside ``MVDiTWan``);
- the prompt (default "a person is dancing", App. A.3) and the empty prompt
  (Wan's unconditional text, as in training's text dropout) through UMT5, and
  the reference frame's CLIP tokens, with `pipeline.mvdit.wan_conditioning`;
- rectified flow sampled with diffusers' ``FlowMatchEulerDiscreteScheduler``
  (shift = the checkpoint's ``flow_shift``, 5 by default: the released 17B
  sampler's), 50 steps, starting from unit Gaussian noise; the model predicts
  eps - z_0, the velocity the Euler step takes;
- motion-aware CFG with two conditions (`models.mvdit.cfg`):
  eps = eps(∅,∅) + w_m (eps(m,∅) - eps(∅,∅)) + w_t (eps(m,t) - eps(m,∅)), w_m = 3.0,
  w_t = 6.0, the branches evaluated in one batch (a weight of 1 skips its branch).

The motion tokens (joints -> 4DMoT codebook vectors) and input checks are
`MTVCraftPipeline`'s (this class extends it). A model in the release layout
has no c_m∅, so it needs ``motion_guidance_scale=1`` (the released sampler's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.mvdit.cfg import drop_text, guided_prediction
from pipeline.animation.cogvideox_pipeline import DEFAULT_PROMPT, MTVCraftPipeline, resolve_device, resolve_dtype
from pipeline.mvdit.windows import zero_padded_video


def make_flow_scheduler(shift: float = 5.0):
    """Wan2.1's rectified-flow sampler: Euler steps on sigmas shifted by ``shift`` (training's `shift_sigmas`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def cast_model(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` in ``dtype``, except the modules Wan keeps in float32 (``_keep_in_fp32_modules``: RoPE, time
    embedding, modulation tables, norms), as diffusers' ``from_pretrained(torch_dtype=...)`` leaves them."""
    if dtype == torch.float32:
        return model
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not keep & set(name.split(".")):
            tensor.data = tensor.data.to(dtype)
    return model


@dataclass
class WanConditions:
    """Everything the model sees besides the noisy latents, for one video (batch 1)."""

    reference: torch.Tensor  # z_ref = E(ZeroPad(x_0)), (1, C, f, h, w)
    tokens: torch.Tensor  # motion tokens (1, f * 24, D)
    text: torch.Tensor  # the prompt's UMT5 states (1, 512, D_t)
    null_text: torch.Tensor  # the empty prompt's (512, D_t)
    image: torch.Tensor  # CLIP tokens of x_0 (1, N, D_i)


class WanMotionPipeline(MTVCraftPipeline):
    """Reference image + motion + prompt -> video frames with MV-DiT-18B (``MVDiTWan``).

    model: ``MVDiTWan``; latent_map: its `pipeline.mvdit.latents.LatentMap` (Wan's VAE at full size);
    conditioner: a `pipeline.mvdit.wan_conditioning.WanConditioner`; tokenizer: (VQVAE, MotionNormalizer) or None;
    scheduler: default ``FlowMatchEulerDiscreteScheduler`` with ``flow_shift``.
    """

    def __init__(self, model, latent_map, conditioner, tokenizer: tuple[Any, Any] | None = None, scheduler=None,
                 flow_shift: float = 5.0) -> None:
        super().__init__(model, latent_map, tokenizer, scheduler or make_flow_scheduler(flow_shift))
        self.conditioner = conditioner

    @classmethod
    def from_checkpoint(cls, ckpt, tokenizer: str | Path | None = None, device: str | torch.device | None = "cpu",
                        wan_encoders: str | Path | None = None,
                        dtype: str | torch.dtype | None = None) -> WanMotionPipeline:
        """From a loaded Wan `train_mvdit` checkpoint (`pipeline.core.checkpoints.TrainingCheckpoint`).

        The encoders load from ``wan_encoders`` or else the checkpoint's ``tokenizer_config["wan_encoders"]``;
        a missing folder is a FileNotFoundError naming which of the two settings pointed there. ``dtype`` None:
        on a GPU with bf16 the transformer, VAE and UMT5 run in bf16 (MV-DiT-18B does not fit in float32),
        elsewhere float32. The transformer is cast on the CPU before it moves (74 GB of float32 weights never
        reach an 80 GB card).
        """
        from pipeline.core.checkpoints import load_tokenizer
        from pipeline.mvdit.factory import model_from_checkpoint
        from pipeline.mvdit.latents import latent_map_from_spec
        from pipeline.mvdit.wan_conditioning import load_wan_conditioner

        info = ckpt.tokenizer_config
        if wan_encoders is not None:
            encoders, setting = str(wan_encoders), "wan_encoders (--wan-encoders)"
        else:
            encoders = str(info.get("wan_encoders", ""))
            setting = f"the 'wan_encoders' of checkpoint {ckpt.path} (override with wan_encoders= / --wan-encoders)"
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        conditioner = load_wan_conditioner(encoders, device=device, text_dtype=dtype, setting=setting)
        model = model_from_checkpoint(ckpt, device=device, dtype=dtype)  # built on meta, cast before the move
        vq, normalizer, _ = load_tokenizer(tokenizer or info["tokenizer_checkpoint"], device=device)
        shift = float(ckpt.train_config.get("flow_shift", 5.0))
        return cls(cast_model(model, dtype).to(device), latent_map_from_spec(info["latent_map"], device, dtype),
                   conditioner, (vq, normalizer), flow_shift=shift)

    # -- pieces -------------------------------------------------------------------------------------
    def conditions(self, image: np.ndarray, tokens: torch.Tensor, num_frames: int, prompt: str,
                   generator: torch.Generator | None = None) -> WanConditions:
        """Eq. 9's z_ref from the (already sized) reference frame, the prompt / empty prompt and CLIP tokens."""
        device = self.device
        frame = torch.from_numpy(image).to(device)
        video = frame[None, None].expand(1, num_frames, *frame.shape)  # only frame 0 is read (ZeroPad)
        # (1, f, C, h, w): the posterior's mode, as diffusers' Wan I2V pipeline takes it ("argmax")
        reference = self.latent_map.encode(zero_padded_video(video), generator=generator, mode=True)
        text = self.conditioner.encode_prompts([prompt, ""]).to(device)
        images = self.conditioner.encode_images(image[None]).to(device)
        return WanConditions(reference.permute(0, 2, 1, 3, 4), tokens, text[:1], text[1], images)

    def model_prediction(self, latents: torch.Tensor, t: torch.Tensor, cond: WanConditions,
                         motion_keep: torch.Tensor, text_keep: torch.Tensor) -> torch.Tensor:
        """The model on k branches at once (masks of length k * B, branch-major): dropped motion is c_m∅,
        dropped text the empty prompt's embedding (Sec. 3.2, as in training)."""
        k = motion_keep.shape[0] // latents.shape[0]
        dtype = self.model.dtype
        text = drop_text(cond.text.repeat(k, 1, 1), text_keep, cond.null_text)
        out = self.model(latents.repeat(k, 1, 1, 1, 1).to(dtype), cond.reference.repeat(k, 1, 1, 1, 1).to(dtype),
                         cond.tokens.repeat(k, 1, 1).to(dtype), t, encoder_hidden_states=text.to(dtype),
                         encoder_hidden_states_image=cond.image.repeat(k, 1, 1).to(dtype), motion_mask=motion_keep,
                         mean_joints=self.rope_joints).sample
        return out.float()

    def guided_prediction(self, latents: torch.Tensor, t: torch.Tensor, cond: WanConditions,  # type: ignore[override]
                          motion_scale: float, text_scale: float) -> torch.Tensor:
        """Two-condition CFG (`models.mvdit.cfg.guided_prediction`); scales (1, 1) give eps(m, t) alone."""
        return guided_prediction(lambda m, tk: self.model_prediction(latents, t, cond, m, tk), latents.shape[0],
                                 motion_scale=motion_scale, text_scale=text_scale, has_text=True,
                                 device=latents.device)

    def noised(self, known: torch.Tensor, step: int, timesteps: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        """``known`` clean latents at the sample's noise level after ``step``: rectified flow's (1 - s) z + s eps
        at the scheduler's next sigma (0 after the last step)."""
        sigma = float(self.scheduler.sigmas[step + 1])
        if sigma == 0:
            return known
        return (1 - sigma) * known + sigma * torch.randn(known.shape, generator=generator).to(known.device)

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, reference_image: np.ndarray, motion: np.ndarray | torch.Tensor, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int = 50,
                 motion_guidance_scale: float = 3.0, text_guidance_scale: float = 6.0,
                 generator: torch.Generator | None = None, progress: bool = False,
                 prompt: str | None = DEFAULT_PROMPT, context: np.ndarray | None = None) -> np.ndarray:
        """Frames uint8 (num_frames, height, width, 3) following ``motion``, with ``reference_image`` as frame 0
        (Eq. 9-10) and ``prompt`` (None: "a person is dancing") as the text condition; ``context`` as in
        `MTVCraftPipeline.__call__` (frames the clip must start with, held at every step)."""
        if motion_guidance_scale != 1.0 and self.model.unconditional_motion_token is None:
            raise ValueError(f"motion_guidance_scale = {motion_guidance_scale}: this model has no unconditional "
                             "motion tokens c_m∅ (17B release layout); use motion_guidance_scale=1.0 (--motion-cfg 1)")
        call = self.prepare(reference_image, motion, num_frames, height, width)
        cond = self.conditions(call.image, call.tokens, call.num_frames, DEFAULT_PROMPT if prompt is None else prompt,
                               generator)
        known = self.context_latents(context, *call.image.shape[:2])
        known = None if known is None else known.permute(0, 2, 1, 3, 4)  # Wan's (B, C, m, h, w)
        c, f, h, w = cond.reference.shape[1:]
        latents = torch.randn((1, c, f, h, w), generator=generator).to(self.device)
        timesteps = self.timesteps(num_inference_steps)
        for i, t in enumerate(self.progress(timesteps, progress)):
            pred = self.guided_prediction(latents, t, cond, motion_guidance_scale, text_guidance_scale)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            if known is not None:
                latents[:, :, :known.shape[2]] = self.noised(known, i, timesteps, generator)
        frames = self.latent_map.decode(latents.permute(0, 2, 1, 3, 4))  # back to the latent map's (B, f, C, h, w)
        return frames[0, :call.num_frames].cpu().numpy()
