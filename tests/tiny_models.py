"""Small model checkpoints several test files train or sample with."""

from __future__ import annotations

from pathlib import Path

import torch

from models.tokenizer import VQVAE, TokenizerConfig
from pipeline.core.checkpoints import save_checkpoint


def tiny_tokenizer(path) -> str:
    """A tiny 4DMoT checkpoint with a random codebook (the EMA codebook starts at zero, which would tokenize
    every motion to one code)."""
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig.tiny())
    model.vq.codebook.copy_(torch.randn_like(model.vq.codebook))
    return str(save_checkpoint(path, 1, model, None, stats_mean=torch.zeros(3), stats_std=torch.full((3,), 0.3),
                               sampler={"seed": 0}, train_config={}, tokenizer_config=model.config.to_dict()))


WORDS = ["a", "person", "is", "dancing", "the", "man", "woman", "walks", "in", "park"]  # the tiny T5 vocabulary


def tiny_wan_encoders(folder) -> Path:
    """A Wan2.1-I2V-shaped pipeline folder with tiny random encoders (tokenizer/, text_encoder/ UMT5 d_model 16,
    image_encoder/ CLIP hidden 12, image_processor/ 32 px), written with save_pretrained."""
    from conftest import require_module

    transformers = require_module("transformers", "transformers", "pip install transformers==5.24.0")
    folder = Path(folder)
    torch.manual_seed(0)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0 - i) for i, w in enumerate(WORDS)]
    tokenizer = transformers.T5TokenizerFast(vocab=vocab, extra_ids=0)
    tokenizer.save_pretrained(folder / "tokenizer")
    text = transformers.UMT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                   num_heads=4, relative_attention_num_buckets=8)
    transformers.UMT5EncoderModel(text).save_pretrained(folder / "text_encoder")
    # 32 px / patch 2 -> 256 patches + class token = 257 tokens, like ViT-H/14 at 224.
    image = transformers.CLIPVisionConfig(hidden_size=12, intermediate_size=24, num_hidden_layers=2,
                                          num_attention_heads=2, image_size=32, patch_size=2, projection_dim=12)
    transformers.CLIPVisionModel(image).save_pretrained(folder / "image_encoder")
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder / "image_processor")
    return folder
