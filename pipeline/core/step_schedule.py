"""What changes from one training step to the next, for both trainers: the learning rate (App. A.2) and the
seed of a step's random draws.

4DMoT trains at 1e-4 for 200K steps then 1e-5 (``later_lr`` from ``later_from``); MV-DiT warms up linearly
over ``warmup_steps`` to 2e-5, then stays constant. The seed of a step is a `numpy.random.SeedSequence` of
(seed, step, rank[, stream][, micro-batch]), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np


def learning_rate(step: int, lr: float, warmup_steps: int = 0, later_lr: float | None = None,
                  later_from: int = 0) -> float:
    """The learning rate at ``step`` (0-based): ``lr``, or ``later_lr`` from step ``later_from`` on (the
    tokenizer's two stages), times the linear warm-up (step + 1) / ``warmup_steps`` while that is below 1
    (MV-DiT's; 0: none)."""
    base = lr if later_lr is None or step < later_from else later_lr
    if warmup_steps <= 0:
        return base
    return base * min(1.0, (step + 1) / warmup_steps)


def step_seed(seed: int, step: int, rank: int, stream: int | None = None, micro: int = 0) -> int:
    """The torch seed of one step on one rank. ``stream`` separates one trainer's draws from another's
    (MV-DiT: 7; the tokenizer: none); ``micro`` is the micro-batch under gradient accumulation, and micro-batch
    0 keeps the seed of a run without accumulation, so ``grad_accum_steps=1`` reproduces it bit for bit."""
    words = [seed, step, rank] + ([] if stream is None else [stream]) + ([micro] if micro else [])
    return int(np.random.SeedSequence(words).generate_state(1)[0])
