"""Small model checkpoints several test files train or sample with."""

from __future__ import annotations

import torch

from models.tokenizer import TokenizerConfig, VQVAE
from pipeline.checkpoints import save_checkpoint


def tiny_tokenizer(path) -> str:
    """A tiny 4DMoT checkpoint with a random codebook (the EMA codebook starts at zero, which would tokenize
    every motion to one code)."""
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.tiny())
    model.vq.codebook.copy_(torch.randn_like(model.vq.codebook))
    return str(save_checkpoint(path, 1, model, None, stats_mean=torch.zeros(3), stats_std=torch.full((3,), 0.3),
                               sampler={"seed": 0}, train_config={}, tokenizer_config=model.config.to_dict()))
