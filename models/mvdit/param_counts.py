"""Parameter counts of the full-size MV-DiT models, built on the ``meta`` device (no memory).

``python -m models.mvdit.param_counts`` prints the table: total and trainable
parameters split into backbone / motion attention / other (c_m∅), beside the
paper's figures (App. A.1: ~6B all trainable; ~18B with ~4B trainable) and the
released checkpoints' counts (release-format/README.md: 7,157,411,904 and
17,443,864,384; both reproduced exactly by the ``release`` layouts).

What the numbers say (see ``NOTES``):
- 6B paper layout: CogVideoX-5B (5.570B) + 196,608 for the 16 extra input
  channels - 12.6M text projection (removed) + 21 motion modules x 37.78M
  (0.793B) + 2.4M unconditional tokens = 6.354B, all trainable: "about 6B".
  The release puts a module in all 42 blocks and keeps text_proj: 7.157B.
- 18B paper layout: Wan2.1-I2V-14B (16.395B) + 20 modules x 104.9M (2.098B)
  + 2.4M = 18.495B total, "about 18B", but only 2.10B trainable, not "about 4B".
  Twenty Eq. 5-8 modules at width 5120 cannot reach 4B. Two readings would:
  a module in every block (40 x 104.9M = 4.196B trainable, but 20.6B total and
  against "every two blocks"), or the 20 modules plus ~2.1B of unfrozen backbone
  (e.g. the I2V image-key/value projections k_img, v_img, norm_k_img:
  40 x 52.4M = 2.098B, giving 4.198B). The paper says neither; we follow its
  text (every second block, backbone frozen) and report the gap. The release
  trains 10 modules (1.049B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel
from torch import nn

from models.mvdit.cogvideox import COGVIDEOX_5B, MVDiTConfig
from models.mvdit.wan import WAN_I2V_14B, MVDiTWanConfig

Group = Literal["backbone", "motion_attention", "other"]

RELEASE_TOTALS = {"6b": 7_157_411_904, "18b": 17_443_864_384}  # release-format/README.md "Key counts"
PAPER_FIGURES = {"6b": ("~6B", "~6B (all)"), "18b": ("~18B", "~4B")}  # App. A.1

NOTES = __doc__.split("What the numbers say (see ``NOTES``):\n", 1)[1]


def parameter_group(name: str) -> Group:
    """Which part of MV-DiT a parameter belongs to, by its state_dict name."""
    parts = name.split(".")
    if name == "unconditional_motion_token":
        return "other"
    if "attn0" in parts or "motion_attn" in parts or "norm4" in parts:
        return "motion_attention"
    return "backbone"


@dataclass(frozen=True)
class ParamCount:
    """Counts of one model; ``motion_modules`` is the number of blocks with motion attention."""

    model: str
    layout: str
    total: int
    trainable: int
    backbone: int
    motion_attention: int
    other: int
    motion_modules: int
    paper_total: str = ""
    paper_trainable: str = ""
    release_total: int | None = None


def count_parameters(model: nn.Module) -> dict[str, int]:
    """total, trainable and per-group counts of ``model``'s parameters."""
    counts = {"total": 0, "trainable": 0, "backbone": 0, "motion_attention": 0, "other": 0}
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        counts["trainable"] += p.numel() if p.requires_grad else 0
        counts[parameter_group(name)] += p.numel()
    return counts


def build_on_meta(model: Literal["6b", "18b"], layout: Literal["paper", "release"]) -> nn.Module:
    """The full-size MV-DiT-6B (CogVideoX-5B) or MV-DiT-18B (Wan2.1-I2V-14B) on ``meta``."""
    cfg = {"6b": MVDiTConfig.cogvideox_5b, "18b": MVDiTWanConfig.wan_i2v_14b}[model](layout)
    with torch.device("meta"):
        return cfg.build()


def stock_backbone_count(model: Literal["6b", "18b"]) -> int:
    """Parameters of the unmodified diffusers backbone (CogVideoX-5B T2V with 16 input channels; Wan2.1-I2V-14B)."""
    with torch.device("meta"):
        if model == "6b":
            stock = CogVideoXTransformer3DModel(**{**COGVIDEOX_5B, "in_channels": 16})
        else:
            stock = WanTransformer3DModel(**WAN_I2V_14B)
    return sum(p.numel() for p in stock.parameters())


def param_table() -> list[ParamCount]:
    """All four full-size configurations."""
    rows = []
    for model in ("6b", "18b"):
        for layout in ("paper", "release"):
            m = build_on_meta(model, layout)
            name = {"6b": "MV-DiT-6B (CogVideoX-5B)", "18b": "MV-DiT-18B (Wan2.1-I2V-14B)"}[model]
            paper = PAPER_FIGURES[model] if layout == "paper" else ("", "")
            rows.append(ParamCount(
                model=name, layout=layout, **count_parameters(m), motion_modules=len(m.motion_block_indices),
                paper_total=paper[0], paper_trainable=paper[1],
                release_total=RELEASE_TOTALS[model] if layout == "release" else None,
            ))
    return rows


def format_table(rows: list[ParamCount]) -> str:
    """A fixed-width text table (billions with 3 decimals, exact counts for total)."""
    b = lambda n: f"{n / 1e9:.3f}B"  # noqa: E731
    header = (
        f"{'model':<28} {'layout':<8} {'total':>15} {'trainable':>10} {'backbone':>9} "
        f"{'motion':>8} {'mods':>4} {'other':>7} {'paper tot/train':>17} {'release total':>15}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        release = f"{r.release_total:,}" if r.release_total is not None else ""
        paper = f"{r.paper_total}/{r.paper_trainable}" if r.paper_total else ""
        lines.append(
            f"{r.model:<28} {r.layout:<8} {r.total:>15,} {b(r.trainable):>10} {b(r.backbone):>9} "
            f"{b(r.motion_attention):>8} {r.motion_modules:>4} {r.other / 1e6:>6.2f}M {paper:>17} {release:>15}"
        )
    return "\n".join(lines)


def main() -> None:
    print(format_table(param_table()))
    print(f"\nstock CogVideoX-5B: {stock_backbone_count('6b'):,}")
    print(f"stock Wan2.1-I2V-14B: {stock_backbone_count('18b'):,}")
    print("\n" + NOTES.strip())


if __name__ == "__main__":
    main()
