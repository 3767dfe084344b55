"""`pipeline.core.step_schedule`: the one learning-rate schedule and step seed of both trainers give bit for bit
what each trainer's own function gave before they were merged (issue 17), so no run changes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.step_schedule import learning_rate, step_seed
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.loop import SEED_STREAM
from pipeline.tokenizer.config import TokenizerTrainConfig


# The two trainers' functions as they were before the merge (commit 1184dce), verbatim.
def tokenizer_lr_before(step, config):
    return config.lr1 if step < config.steps_lr1 else config.lr2


def tokenizer_seed_before(seed, step, rank):
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def mvdit_lr_before(step, cfg):
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)


def mvdit_seed_before(seed, step, rank, micro=0):
    words = [seed, step, rank, 7] + ([micro] if micro else [])
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def steps_around(*edges: int) -> list[int]:
    """Every step of the first 1000 and 200 steps either side of each edge."""
    return sorted(set(range(1000)).union(*(range(max(0, e - 200), e + 200) for e in edges)))


TOKENIZER_CONFIGS = [TokenizerTrainConfig(), TokenizerTrainConfig(model="tiny", steps_lr1=6, steps_lr2=2, lr1=3e-3,
                                                                  lr2=3e-4)]
MVDIT_CONFIGS = [MVDiTTrainConfig(), MVDiTTrainConfig.tiny(), MVDiTTrainConfig(lr=3e-4, warmup_steps=7),
                 MVDiTTrainConfig(warmup_steps=0)]


@pytest.mark.parametrize("cfg", TOKENIZER_CONFIGS, ids=["paper", "tiny"])
def test_tokenizer_learning_rate_is_unchanged(cfg):
    steps = steps_around(cfg.steps_lr1, cfg.total_steps)
    assert [cfg.learning_rate(s) for s in steps] == [tokenizer_lr_before(s, cfg) for s in steps]
    assert {cfg.learning_rate(s) for s in steps} == {cfg.lr1, cfg.lr2}  # both stages are in the range


@pytest.mark.parametrize("cfg", MVDIT_CONFIGS, ids=["paper", "tiny", "short_warmup", "no_warmup"])
def test_mvdit_learning_rate_is_unchanged(cfg):
    steps = steps_around(cfg.warmup_steps, cfg.steps)
    assert [cfg.learning_rate(s) for s in steps] == [mvdit_lr_before(s, cfg) for s in steps]
    assert cfg.learning_rate(steps[-1]) == cfg.lr


def test_schedule_closed_form():
    # warm-up and two stages together (no trainer uses both; the function allows it)
    assert learning_rate(0, 1.0, warmup_steps=4, later_lr=0.5, later_from=2) == 0.25
    assert learning_rate(2, 1.0, warmup_steps=4, later_lr=0.5, later_from=2) == 0.5 * 3 / 4
    assert learning_rate(10, 1.0, warmup_steps=4, later_lr=0.5, later_from=2) == 0.5


def test_step_seeds_are_unchanged():
    for seed in (0, 3, 12345):
        for rank in range(3):
            for step in steps_around(199_999):
                assert step_seed(seed, step, rank) == tokenizer_seed_before(seed, step, rank)
                for micro in range(3):
                    assert step_seed(seed, step, rank, SEED_STREAM, micro) == mvdit_seed_before(seed, step, rank, micro)
    assert step_seed(0, 0, 0) != step_seed(0, 0, 0, SEED_STREAM)  # the stream separates the trainers' draws
