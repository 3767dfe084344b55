"""4DMoT, the 4D motion tokenizer (paper Sec. 3.1): config, VQ-VAE, quantizer, motion representation."""

from .blocks import Downsample, ResBlock, Upsample
from .config import TokenizerConfig
from .quantizer import EMAQuantizer, QuantizerOutput
from .representation import MotionNormalizer
from .vqvae import (
    VQVAE,
    Decoder,
    Encoder,
    build_on_meta,
    count_parameters,
    decoded_frames,
    latent_frames,
    load_release_checkpoint,
    valid_num_frames,
    window_slices,
)

__all__ = [
    "VQVAE",
    "Decoder",
    "Downsample",
    "EMAQuantizer",
    "Encoder",
    "MotionNormalizer",
    "QuantizerOutput",
    "ResBlock",
    "TokenizerConfig",
    "Upsample",
    "build_on_meta",
    "count_parameters",
    "decoded_frames",
    "latent_frames",
    "load_release_checkpoint",
    "valid_num_frames",
    "window_slices",
]
