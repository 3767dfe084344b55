"""Motion-aware classifier-free guidance (paper Sec. 3.2 "Motion-aware CFG", Sec. 4 implementation details, App. A.3).

Training (condition dropping): each sample's motion tokens are replaced by the
learnable unconditional motion tokens c_m∅ with probability 0.2, and its text
(18B model only) by the empty-prompt embedding with probability 0.1, drawn
independently. c_m∅ "is only updated when used": in training ``motion_condition``
always puts it into the graph (a zero gradient when no sample is dropped, so
every data-parallel rank reduces the same gradients), and the trainer sets its
``.grad`` to ``None`` on a step where no sample on any rank was dropped, so
AdamW skips it entirely (no momentum, no weight decay). On a step with drops
only the dropped rows feed it.

Sampling (guided combination), the two-condition formula used here:

    eps = eps(∅, ∅) + w_m (eps(m, ∅) - eps(∅, ∅)) + w_t (eps(m, t) - eps(m, ∅))

with w_m = 3.0 (motion) and w_t = 6.0 (text) (App. A.3). Motion is the primary
condition, so text guidance is taken *given the motion* (nested CFG, as in
InstructPix2Pix-style two-condition guidance); it needs three evaluations. Why
this form: it reduces exactly to both released samplers and to the paper's
single-condition formula (Sec. 3.2):
- 6B / 7B release (no text): eps = eps(∅) + w_m (eps(m) - eps(∅)), w_m = 3.0;
- 17B release (no motion CFG, no unconditional token): w_m = 1, giving
  eps = eps(m, ∅) + w_t (eps(m, t) - eps(m, ∅)), w_t = 6.0;
- w_m = w_t = 1 gives the conditional prediction eps(m, t).
Branches whose weight is 1 are not evaluated (``guidance_branches``).

"∅ text" is the embedding of the empty prompt (Wan pads the T5 output to 512
tokens with zeros; the empty prompt's own embedding is one token followed by
zeros). Pass it as ``null_text``; zeros are the fallback when it is not known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch


@dataclass(frozen=True)
class CFGConfig:
    """Drop probabilities for training and guidance scales for sampling (Sec. 4, App. A.3)."""

    motion_drop_prob: float = 0.2
    text_drop_prob: float = 0.1
    motion_scale: float = 3.0
    text_scale: float = 6.0

    def __post_init__(self) -> None:
        for name in ("motion_drop_prob", "text_drop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"CFGConfig.{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def release_7b(cls) -> CFGConfig:
        """MV-DiT-7B release: motion CFG 3.0, no text."""
        return cls(text_drop_prob=0.0, motion_scale=3.0, text_scale=1.0)

    @classmethod
    def release_17b(cls) -> CFGConfig:
        """MV-DiT-17B release: no unconditional motion token, text CFG 6.0 only."""
        return cls(motion_drop_prob=0.0, motion_scale=1.0, text_scale=6.0)


# --- training: condition dropping ------------------------------------------------


def sample_keep_masks(
    batch_size: int,
    cfg: CFGConfig = CFGConfig(),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent per-sample Bernoulli draws -> (motion_keep, text_keep), bool (B,); True keeps the condition."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    u = torch.rand(2, batch_size, generator=generator)
    keep = u >= torch.tensor([cfg.motion_drop_prob, cfg.text_drop_prob])[:, None]
    return keep[0].to(device), keep[1].to(device)


def _check_keep(keep: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    keep = torch.as_tensor(keep)
    if keep.dtype != torch.bool or keep.shape != (batch,):
        raise ValueError(f"{name} must be a bool tensor of shape ({batch},), got {keep.dtype} {tuple(keep.shape)}")
    return keep


def unconditional_rows(uncond: torch.Tensor, num_tokens: int, num_joints: int) -> torch.Tensor:
    """The first ``num_tokens`` rows of the (U*J, C) unconditional tokens (frame-major: the first T frames)."""
    if num_tokens % num_joints or num_tokens > uncond.shape[0]:
        raise ValueError(
            f"unconditional motion tokens hold {uncond.shape[0] // num_joints} latent frames x {num_joints} joints; "
            f"cannot cover {num_tokens} motion tokens (need a multiple of {num_joints}, at most {uncond.shape[0]}); "
            "raise unconditional_frames in the model config"
        )
    return uncond[:num_tokens]


def reuse_unconditional_tokens(model: torch.nn.Module, tokens: torch.Tensor) -> None:
    """Copy another model's c_m∅ (U*J, C) into ``model``'s and freeze it: MV-DiT-18B reuses the 6B's
    unconditional motion tokens "without modification" (Sec. 3.3). When the source covers more latent frames,
    its first ones are taken (frame-major rows, as `unconditional_rows` reads them)."""
    own = getattr(model, "unconditional_motion_token", None)
    if own is None:
        raise ValueError("this model has no unconditional motion tokens to reuse another model's into")
    if tokens.ndim != 2 or tokens.shape[1] != own.shape[1] or tokens.shape[0] < own.shape[0]:
        raise ValueError(f"cannot reuse c_m∅ of shape {tuple(tokens.shape)} in a model whose c_m∅ is "
                         f"{tuple(own.shape)} (same channels and at least as many rows needed)")
    with torch.no_grad():
        own.copy_(tokens[:own.shape[0]].to(own.dtype))
    own.requires_grad_(False)


def motion_condition(
    tokens: torch.Tensor,
    keep: torch.Tensor | None,
    uncond: torch.Tensor | None,
    num_joints: int = 24,
) -> torch.Tensor:
    """Motion tokens (B, M, C) with dropped samples (``keep`` False) replaced by c_m∅ (Sec. 3.2).

    ``uncond`` (U*J, C) enters the graph when some sample is dropped, and also in training (grad enabled, c_m∅
    trainable) when none is: then it gets a zero gradient, so that every data-parallel rank reduces the same
    set of gradients (FSDP2 reduce-scatters only the gradients that exist); the trainer drops that gradient on
    steps where no rank used c_m∅, so it changes only when used (`pipeline.mvdit.sharding.finish_gradients`).
    """
    if tokens.ndim != 3:
        raise ValueError(f"motion tokens must be (B, M, C), got {tuple(tokens.shape)}")
    if keep is None:
        return tokens
    keep = _check_keep(keep, tokens.shape[0], "motion_mask").to(tokens.device)
    training = uncond is not None and uncond.requires_grad and torch.is_grad_enabled()
    if bool(keep.all()) and not training:
        return tokens
    if uncond is None:
        raise ValueError(
            "motion_mask drops motion, but this model has no unconditional motion tokens "
            "(the 17B release layout has none: it uses no motion CFG)"
        )
    if uncond.shape[-1] != tokens.shape[-1]:
        raise ValueError(f"unconditional tokens have {uncond.shape[-1]} channels, motion tokens {tokens.shape[-1]}")
    null = unconditional_rows(uncond, tokens.shape[1], num_joints).to(tokens.dtype)
    return torch.where(keep[:, None, None], tokens, null.unsqueeze(0))


def drop_text(text: torch.Tensor, keep: torch.Tensor | None, null_text: torch.Tensor | None = None) -> torch.Tensor:
    """Text embeddings (B, L, D) with dropped samples replaced by the empty-prompt embedding (L, D) (zeros if None)."""
    if keep is None:
        return text
    keep = _check_keep(keep, text.shape[0], "text_keep").to(text.device)
    null = torch.zeros_like(text[0]) if null_text is None else null_text.to(text)
    if null.shape != text.shape[1:]:
        raise ValueError(f"null_text must have shape {tuple(text.shape[1:])}, got {tuple(null.shape)}")
    return torch.where(keep[:, None, None], text, null.unsqueeze(0))


# --- sampling: guided combination -------------------------------------------------


class Branch(NamedTuple):
    """One network evaluation: which conditions are on."""

    motion: bool
    text: bool


NULL, MOTION, FULL = Branch(False, False), Branch(True, False), Branch(True, True)


def guidance_branches(motion_scale: float, text_scale: float, has_text: bool) -> tuple[Branch, ...]:
    """The evaluations the formula needs: a motion weight of 1 drops eps(∅,∅); both weights 1 need eps(m,t) only."""
    if has_text and motion_scale == 1.0 and text_scale == 1.0:
        return (FULL,)
    return tuple(([NULL] if motion_scale != 1.0 else []) + [MOTION] + ([FULL] if has_text else []))


def combine_guidance(preds: dict[Branch, torch.Tensor], motion_scale: float, text_scale: float) -> torch.Tensor:
    """eps = eps(∅,∅) + w_m (eps(m,∅) - eps(∅,∅)) + w_t (eps(m,t) - eps(m,∅)), for the branches present.

    A missing NULL branch means w_m = 1; a missing FULL branch means no text;
    FULL alone is the plain conditional prediction.
    """
    if set(preds) == {FULL}:
        return preds[FULL]
    if MOTION not in preds:
        raise ValueError(f"combine_guidance needs the eps(m, ∅) prediction, got branches {sorted(preds)}")
    out = preds[MOTION] if NULL not in preds else preds[NULL] + motion_scale * (preds[MOTION] - preds[NULL])
    if FULL in preds:
        out = out + text_scale * (preds[FULL] - preds[MOTION])
    return out


def guided_prediction(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
    motion_scale: float = 3.0,
    text_scale: float = 6.0,
    has_text: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One batched call of ``predict(motion_keep, text_keep)`` over all branches, combined.

    ``predict`` gets bool masks of length k * B, branch-major (rows j*B..(j+1)*B
    are branch j); it repeats its own inputs k times and returns (k * B, ...).
    """
    branches = guidance_branches(motion_scale, text_scale, has_text)
    motion_keep = torch.tensor([b.motion for b in branches], device=device).repeat_interleave(batch_size)
    text_keep = torch.tensor([b.text for b in branches], device=device).repeat_interleave(batch_size)
    out = predict(motion_keep, text_keep)
    if out.shape[0] != len(branches) * batch_size:
        raise ValueError(f"predict returned {out.shape[0]} rows, expected {len(branches)} x {batch_size}")
    preds = dict(zip(branches, out.split(batch_size)))
    return combine_guidance(preds, motion_scale, text_scale)
