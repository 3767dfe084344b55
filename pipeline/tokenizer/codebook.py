"""Codebook analysis of a trained 4DMoT (paper App. E.3, Fig. 8).

Usage categories (Fig. 8a): "underutilized (<1%), active (1%-15%) and
frequent (>15%)", measured on held-out motion samples. The paper does not say
what the percentage is of. Our definition (the headline numbers):

    usage of code k = share of held-out windows (motion samples) in which
                      code k is assigned to at least one token.

A code is *underutilized* if its usage is < 1% (never-used codes included;
they are also counted separately as *unused*), *active* if 1% <= usage <=
15%, *frequent* if usage > 15%. This reading fits the paper's numbers: with
6400 samples of hundreds of tokens each, a core code can appear in more than
15% of the samples (2.9% of codes are "frequent") while most codes appear in a
few percent of them.

We also report the per-token reading (share of all held-out tokens assigned
to code k) with the same thresholds. With 8192 codes the mean per-token share
is 1/8192 = 0.012%, so under that reading nearly every code is
"underutilized" and the paper's 66.8% "active" would be impossible (at most
100 codes can hold >= 1% of the tokens each); it is kept as a cross-check.

Code diversity (Fig. 8b): the histogram of pairwise cosine similarities
between the codebook vectors of the codes used on the held-out set (each
unordered pair once; a random subset of ``max_codes`` codes when more are
used, to bound the cost at max_codes^2 / 2 pairs).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

UNDERUTILIZED_BELOW = 0.01
FREQUENT_ABOVE = 0.15


@dataclass
class CodeUsage:
    """How often each code occurs over a set of windows."""

    codebook_size: int
    num_windows: int
    num_tokens: int
    window_counts: np.ndarray  # (K,) windows in which the code occurs at least once
    token_counts: np.ndarray  # (K,) tokens assigned to the code

    @property
    def window_share(self) -> np.ndarray:
        """Per code: share of windows containing it (the headline definition)."""
        return self.window_counts / max(self.num_windows, 1)

    @property
    def token_share(self) -> np.ndarray:
        """Per code: share of all tokens assigned to it."""
        return self.token_counts / max(self.num_tokens, 1)

    @classmethod
    def from_matrix(cls, counts: np.ndarray) -> "CodeUsage":
        """From a (windows, codes) matrix of how many tokens of window w use code k."""
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ValueError(f"usage matrix must be (windows, codes), got shape {counts.shape}")
        return cls(
            codebook_size=counts.shape[1],
            num_windows=counts.shape[0],
            num_tokens=int(counts.sum()),
            window_counts=(counts > 0).sum(axis=0),
            token_counts=counts.sum(axis=0),
        )


def code_usage(id_batches: Iterable[torch.Tensor | np.ndarray], codebook_size: int) -> CodeUsage:
    """Usage over batches of code ids, each (windows, ...) with one window per leading index."""
    window_counts = np.zeros(codebook_size, dtype=np.int64)
    token_counts = np.zeros(codebook_size, dtype=np.int64)
    windows = tokens = 0
    for batch in id_batches:
        ids = torch.as_tensor(batch).long().reshape(len(batch), -1).cpu()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= codebook_size):
            raise ValueError(f"code ids must lie in [0, {codebook_size}), got [{int(ids.min())}, {int(ids.max())}]")
        present = torch.zeros(ids.shape[0], codebook_size, dtype=torch.bool)
        present.scatter_(1, ids, True)
        window_counts += present.sum(0).numpy()
        token_counts += torch.bincount(ids.flatten(), minlength=codebook_size).numpy()
        windows += ids.shape[0]
        tokens += ids.numel()
    return CodeUsage(codebook_size, windows, tokens, window_counts, token_counts)


def usage_categories(share: np.ndarray, low: float = UNDERUTILIZED_BELOW, high: float = FREQUENT_ABOVE) -> dict[str, float]:
    """Share of codes per category: underutilized (< low), active (low..high), frequent (> high), unused (0)."""
    share = np.asarray(share, dtype=np.float64)
    n = max(len(share), 1)
    return {
        "underutilized": float((share < low).sum() / n),
        "active": float(((share >= low) & (share <= high)).sum() / n),
        "frequent": float((share > high).sum() / n),
        "unused": float((share == 0).sum() / n),
    }


@dataclass
class CosineHistogram:
    counts: np.ndarray  # (bins,)
    edges: np.ndarray  # (bins + 1,)
    num_codes: int
    num_pairs: int
    mean: float
    mean_abs: float


def cosine_histogram(
    codebook: torch.Tensor, codes: np.ndarray | None = None, bins: int = 80, max_codes: int = 4096, seed: int = 0
) -> CosineHistogram:
    """Histogram over [-1, 1] of pairwise cosine similarities between codebook rows ``codes`` (all by default)."""
    book = torch.as_tensor(codebook).float()
    idx = np.arange(book.shape[0]) if codes is None else np.asarray(codes)
    if len(idx) > max_codes:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_codes, replace=False))
    edges = np.linspace(-1.0, 1.0, bins + 1)
    if len(idx) < 2:
        return CosineHistogram(np.zeros(bins, dtype=np.int64), edges, len(idx), 0, float("nan"), float("nan"))
    unit = torch.nn.functional.normalize(book[torch.as_tensor(idx)], dim=1)
    counts = torch.zeros(bins, dtype=torch.float64)
    total = total_abs = 0.0
    pairs = 0
    for start in range(0, len(idx), 1024):  # row blocks: keep the similarity matrix small
        sims = unit[start : start + 1024] @ unit.t()
        rows = torch.arange(start, start + sims.shape[0])[:, None]
        upper = sims[torch.arange(len(idx))[None, :] > rows].double().clamp(-1.0, 1.0)
        counts += torch.histc(upper, bins=bins, min=-1.0, max=1.0)
        total += float(upper.sum())
        total_abs += float(upper.abs().sum())
        pairs += upper.numel()
    return CosineHistogram(counts.long().numpy(), edges, len(idx), pairs, total / pairs, total_abs / pairs)


@dataclass
class CodebookReport:
    """App. E.3 numbers for one checkpoint on one held-out set."""

    usage: CodeUsage
    by_window: dict[str, float]
    by_token: dict[str, float]
    cosine: CosineHistogram

    def summary(self) -> dict:
        """JSON-ready numbers (per-code arrays included for re-plotting)."""
        u = self.usage
        return {
            "definition": "usage of a code = share of held-out windows in which it occurs at least once; "
            f"underutilized < {UNDERUTILIZED_BELOW:.0%}, active {UNDERUTILIZED_BELOW:.0%}-{FREQUENT_ABOVE:.0%}, "
            f"frequent > {FREQUENT_ABOVE:.0%}; by_token uses the share of all tokens instead",
            "codebook_size": u.codebook_size,
            "num_windows": u.num_windows,
            "num_tokens": u.num_tokens,
            "used_codes": int((u.token_counts > 0).sum()),
            "active_code_share": float((u.token_counts > 0).mean()),
            "categories_by_window": self.by_window,
            "categories_by_token": self.by_token,
            "cosine": {
                "num_codes": self.cosine.num_codes,
                "num_pairs": self.cosine.num_pairs,
                "mean": self.cosine.mean,
                "mean_abs": self.cosine.mean_abs,
                "edges": self.cosine.edges.tolist(),
                "counts": self.cosine.counts.tolist(),
            },
            "window_counts": u.window_counts.tolist(),
            "token_counts": u.token_counts.tolist(),
        }


def analyze_codebook(usage: CodeUsage, codebook: torch.Tensor, max_codes: int = 4096, seed: int = 0) -> CodebookReport:
    """Usage categories under both definitions and the cosine histogram of the used codes."""
    if codebook.shape[0] != usage.codebook_size:
        raise ValueError(f"codebook has {codebook.shape[0]} rows, usage counts {usage.codebook_size} codes")
    used = np.flatnonzero(usage.token_counts > 0)
    return CodebookReport(
        usage=usage,
        by_window=usage_categories(usage.window_share),
        by_token=usage_categories(usage.token_share),
        cosine=cosine_histogram(codebook.detach().cpu(), used, max_codes=max_codes, seed=seed),
    )


# ---- plots (matplotlib, no pyplot global state) ------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def plot_usage(report: CodebookReport) -> bytes:
    """Fig. 8a: category shares (both definitions) and each code's window share, sorted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    names = ["underutilized", "active", "frequent"]
    x = np.arange(len(names))
    for off, (label, cats) in zip((-0.2, 0.2), (("per window", report.by_window), ("per token", report.by_token))):
        bars = ax1.bar(x + off, [100 * cats[n] for n in names], width=0.4, label=label)
        ax1.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax1.set_xticks(x, ["<1%", "1-15%", ">15%"])
    ax1.set_ylabel("share of codes (%)")
    ax1.set_title("code usage categories")
    ax1.legend()
    share = np.sort(report.usage.window_share)[::-1] * 100
    ax2.plot(np.arange(1, len(share) + 1), share)
    for y in (100 * UNDERUTILIZED_BELOW, 100 * FREQUENT_ABOVE):
        ax2.axhline(y, color="grey", linestyle="--", linewidth=0.8)
    ax2.set_xlabel("code rank")
    ax2.set_ylabel("windows containing the code (%)")
    ax2.set_title(f"{report.usage.num_windows} held-out windows")
    return _png(fig)


def plot_cosine(report: CodebookReport) -> bytes:
    """Fig. 8b: histogram of pairwise cosine similarities between used codes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    c = report.cosine
    ax.stairs(c.counts, c.edges, fill=True)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("code pairs")
    ax.set_title(f"{c.num_codes} used codes, mean |cos| = {c.mean_abs:.3f}")
    return _png(fig)


def write_report(report: CodebookReport, checkpoint: str | Path) -> dict[str, Path]:
    """Write ``<checkpoint stem>.codebook.json`` and the two PNGs beside the checkpoint."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.with_suffix("")
    paths = {
        "json": stem.with_name(stem.name + ".codebook.json"),
        "usage_png": stem.with_name(stem.name + ".codebook_usage.png"),
        "cosine_png": stem.with_name(stem.name + ".codebook_cosine.png"),
    }
    paths["json"].write_text(json.dumps(report.summary(), indent=1))
    paths["usage_png"].write_bytes(plot_usage(report))
    paths["cosine_png"].write_bytes(plot_cosine(report))
    return paths
