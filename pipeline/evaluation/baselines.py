"""The two baselines every benchmark run scores beside the model (Sec. 4): the copy of the reference, and the
null-motion pipelines that sample with the unconditional motion tokens c_m∅ (Sec. 3.2).

Methods, each on the same videos in one run:

- ``mtvcraft``: the checkpoint under the protocol;
- ``copy_reference``: the reference frame repeated (a static video): what any method must beat on motion;
- ``null_motion``: the same model and noise with the learnable unconditional motion tokens c_m∅ in place of
  the motion at every step (no motion CFG; the 18B model keeps its text CFG): what the model makes without
  motion.
"""

from __future__ import annotations

import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.animation.wan_pipeline import WanMotionPipeline


class NullMotionPipeline(MTVCraftPipeline):
    """The same model sampled with the unconditional motion tokens c_m∅ at every step: eps(∅) (Sec. 3.2).

    ``MTVCraftPipeline`` has no switch for this; the override keeps ``cogvideox_pipeline.py`` unchanged. With every
    motion dropped the CFG combination eps(∅) + w (eps(∅) - eps(∅)) is eps(∅), so one evaluation suffices.
    """

    @classmethod
    def like(cls, pipe: MTVCraftPipeline) -> NullMotionPipeline:
        return cls(pipe.model, pipe.latent_map, pipe.tokenizer, pipe.scheduler)

    def guided_prediction(self, latents, t, reference, tokens, motion_scale):
        drop = torch.zeros(latents.shape[0], dtype=torch.bool, device=latents.device)
        return self.model(latents, reference, tokens, t, motion_mask=drop, mean_joints=self.rope_joints).sample


class WanNullMotionPipeline(WanMotionPipeline):
    """MV-DiT-18B with c_m∅ in place of the motion in every branch; the text CFG of the protocol stays:
    eps = eps(∅,∅) + w_t (eps(∅,t) - eps(∅,∅)), so the baseline differs from ``mtvcraft`` by the motion only."""

    @classmethod
    def like(cls, pipe: WanMotionPipeline) -> WanNullMotionPipeline:
        return cls(pipe.model, pipe.latent_map, pipe.conditioner, pipe.tokenizer, pipe.scheduler)

    def model_prediction(self, latents, t, cond, motion_keep, text_keep):
        return super().model_prediction(latents, t, cond, torch.zeros_like(motion_keep), text_keep)

    def guided_prediction(self, latents, t, cond, motion_scale, text_scale):
        # With motion dropped everywhere eps(m,∅) = eps(∅,∅): the motion term vanishes, so skip its branch.
        return super().guided_prediction(latents, t, cond, 1.0, text_scale)


def null_motion_pipeline(pipe: MTVCraftPipeline) -> MTVCraftPipeline:
    """The null-motion baseline of ``pipe``'s backbone (CogVideoX: ``NullMotionPipeline``; Wan: ``WanNullMotionPipeline``)."""
    return WanNullMotionPipeline.like(pipe) if isinstance(pipe, WanMotionPipeline) else NullMotionPipeline.like(pipe)


def null_motion_unavailable(pipe: MTVCraftPipeline, num_frames: int) -> str | None:
    """Why the model cannot sample with c_m∅ at ``num_frames`` frames, or None when it can."""
    from pipeline.mvdit.latents import latent_frames

    uncond = getattr(pipe.model, "unconditional_motion_token", None)
    if uncond is None:
        return "not computed: the model has no unconditional motion tokens (17B release layout)"
    needed = latent_frames(num_frames, pipe.latent_map.temporal_factor) * pipe.model.config.num_joints
    if needed > uncond.shape[0]:
        return (f"not computed: c_m∅ covers {uncond.shape[0] // pipe.model.config.num_joints} latent frames, "
                f"{num_frames} frames need {needed // pipe.model.config.num_joints}")
    return None
