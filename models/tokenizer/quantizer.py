"""Vector quantizer of 4DMoT with an EMA codebook and dead-code reset (paper Sec. 3.1, Eq. 2).

Each encoder latent E (a d-dim vector per latent frame and joint) is replaced
by its nearest codebook entry C (squared L2). Gradients pass straight through
(C is used forward, the gradient reaches E unchanged); the codebook itself is
not trained by gradients but follows an exponential moving average of the
latents assigned to each code (van den Oord et al. 2017, App. A.1), with
Laplace-smoothed cluster sizes. The commitment term of Eq. 2,
beta * ||E - sg[C]||^2, pulls the encoder towards its codes.

Codes left unused for ``reset_every`` training steps are re-seeded from
random latents of the current batch (codebook reset, Hosseini et al. 2025).
Unlike the released code, "unused" means unused *during the last window*:
the release ORs a usage mask over the whole run and never clears it, so a
code that was used once is never reset again (and it resets every 21st
step). Here the window counter is cleared at every reset.

All EMA state lives in buffers so that training checkpoints carry it; with
``persistent_state=False`` (release layout) they are left out of the
state_dict, which then holds only ``codebook``, exactly like the release.
Under torch.distributed the counts and sums are all-reduced and reset vectors
come from rank 0, so every replica keeps the same codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    """Result of quantizing latents of shape (..., d)."""

    quantized: torch.Tensor  # (..., d) codebook vectors with straight-through gradient to the input
    ids: torch.Tensor  # (...,) int64 code index per vector
    commit_loss: torch.Tensor  # scalar ||E - sg[C]||^2 (mean over elements), not yet times beta
    perplexity: torch.Tensor  # scalar exp(entropy) of this batch's code histogram


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _sample_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """n random rows of x; when x has fewer rows, repeat them with small noise so copies differ."""
    if x.shape[0] >= n:
        return x[torch.randperm(x.shape[0], device=x.device)[:n]].clone()
    rows = x[torch.randint(x.shape[0], (n,), device=x.device)]
    return rows + torch.randn_like(rows) * (0.01 / x.shape[1] ** 0.5)


class EMAQuantizer(nn.Module):
    """Nearest-neighbour codebook of ``codebook_size`` x ``code_dim`` updated by EMA (Eq. 2)."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float = 0.99,
        eps: float = 1e-5,
        reset_every: int = 20,
        persistent_state: bool = True,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.eps = eps
        self.reset_every = reset_every
        self.register_buffer("codebook", torch.zeros(codebook_size, code_dim))
        # EMA state: Laplace-smoothed counts and sums of the latents assigned to each code.
        self.register_buffer("cluster_size", torch.zeros(codebook_size), persistent=persistent_state)
        self.register_buffer("embed_sum", torch.zeros(codebook_size, code_dim), persistent=persistent_state)
        # Assignments since the last reset, training steps, and whether the EMA state is seeded.
        self.register_buffer("window_usage", torch.zeros(codebook_size, dtype=torch.long), persistent=persistent_state)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=persistent_state)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool), persistent=persistent_state)
        # Analytics: assignments per code since the last `reset_usage_counts` (train and eval).
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    # ---- lookup -------------------------------------------------------------
    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code by squared L2 for each vector of ``z`` (..., d), in at least fp32."""
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"latents have dim {z.shape[-1]}, the codebook expects code_dim={self.code_dim}")
        dtype = torch.promote_types(self.codebook.dtype, torch.float32)  # never below fp32
        flat = z.reshape(-1, self.code_dim).to(dtype)
        book = self.codebook.to(dtype)
        with torch.autocast(device_type=flat.device.type, enabled=False):
            dist2 = (
                flat.pow(2).sum(1, keepdim=True)
                - 2 * flat @ book.t()
                + book.pow(2).sum(1)[None, :]
            )
        return dist2.argmin(dim=1).reshape(z.shape[:-1])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for code ids of any shape: (...,) -> (..., d)."""
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"code ids must be integers, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"code ids must lie in [0, {self.codebook_size}), got [{int(ids.min())}, {int(ids.max())}]")
        return F.embedding(ids.long(), self.codebook)

    def forward(self, z: torch.Tensor, update_ema: bool | None = None) -> QuantizerOutput:
        """Quantize latents ``z`` (..., d); in training mode also update the EMA codebook."""
        update = self.training if update_ema is None else update_ema
        flat = z.reshape(-1, self.code_dim)
        if update and not bool(self.initialized):
            self._initialize(flat.detach().to(self.embed_sum.dtype))
        ids = self.nearest(flat)
        codes = F.embedding(ids, self.codebook).to(z.dtype)
        commit_loss = F.mse_loss(flat, codes.detach())
        counts = torch.bincount(ids, minlength=self.codebook_size)
        self.usage_counts += counts
        if update:
            self._ema_update(flat.detach().to(self.embed_sum.dtype), ids, counts)
        prob = counts.float() / counts.sum().clamp(min=1)
        perplexity = torch.exp(-(prob * torch.log(prob + 1e-10)).sum())
        quantized = flat + (codes - flat).detach()  # straight-through estimator
        return QuantizerOutput(
            quantized=quantized.reshape(z.shape),
            ids=ids.reshape(z.shape[:-1]),
            commit_loss=commit_loss,
            perplexity=perplexity,
        )

    # ---- EMA codebook ---------------------------------------------------------
    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        """Seed the codebook from batch latents (unless it already holds codes, e.g. loaded weights)."""
        if not bool(self.codebook.any()):
            seed = _sample_rows(flat, self.codebook_size)
            if _distributed():
                dist.broadcast(seed, src=0)
            self.codebook.copy_(seed)
        self.embed_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.window_usage.zero_()
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor) -> None:
        """One EMA step: N <- l N + (1-l) n,  S <- l S + (1-l) sum(E),  C = S / smoothed(N)."""
        counts = counts.to(self.cluster_size.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, ids, flat)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.window_usage += counts.long()
        self.steps += 1
        if self.reset_every > 0 and int(self.steps) % self.reset_every == 0:
            self._reset_dead_codes(flat)

    @torch.no_grad()
    def _reset_dead_codes(self, flat: torch.Tensor) -> None:
        """Re-seed every code with no assignment since the last reset from current batch latents."""
        dead = self.window_usage == 0
        n_dead = int(dead.sum())
        if n_dead:
            fresh = _sample_rows(flat, n_dead)
            if _distributed():
                dist.broadcast(fresh, src=0)
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
        self.window_usage.zero_()

    # ---- analytics ------------------------------------------------------------
    def reset_usage_counts(self) -> None:
        """Start a new usage histogram (e.g. before tokenizing an evaluation set)."""
        self.usage_counts.zero_()

    def usage_fraction(self) -> float:
        """Fraction of codes assigned at least once since the last `reset_usage_counts`."""
        return float((self.usage_counts > 0).float().mean())
