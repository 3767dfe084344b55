"""MV-DiT's diffusion objectives (paper Sec. 3.2-3.3): CogVideoX v-prediction (MV-DiT-6B), Wan rectified flow (18B).

- `diffusion_loss` (CogVideoX-5B, the 6B model): CogVideoX-5B is a
  v-prediction model, so ``CogVideoXDDIMScheduler`` (its 5B config, `pipeline.mvdit.factory.make_scheduler`:
  scaled-linear betas, zero terminal SNR, v-prediction) adds noise at a uniform
  random timestep and the target is the velocity v = sqrt(a) eps - sqrt(1-a) z_0;
  plain MSE (no SNR weighting).
- `flow_matching_loss` (Wan2.1, the 18B model, Sec. 3.3, App. C): Wan2.1 is a rectified-flow model:
  x_t = (1 - s) z_0 + s eps with s = shift * u / (1 + (shift - 1) u), u ~ U(0, 1) (`shift_sigmas`),
  ``flow_shift`` 5 (the released 17B sampler's), timestep 1000 s, target eps - z_0, plain MSE.
"""

from __future__ import annotations

from typing import Any

import torch


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
