"""Text and image conditioning of MV-DiT-18B (paper Sec. 3.3, App. C): Wan2.1-I2V's T5 and CLIP encoders.

The 18B model keeps Wan2.1-I2V's text-image branch: the prompt's UMT5 hidden
states (``encoder_hidden_states``, (B, 512, 4096)) and the reference frame's
CLIP ViT-H tokens (``encoder_hidden_states_image``, (B, 257, 1280)) go into the
blocks' cross-attention. `WanConditioner` turns (prompt, reference frame) into
both the way diffusers' ``WanImageToVideoPipeline`` does, so that training sees
what sampling with that pipeline's encoders sees:

- text: the prompt is cleaned (ftfy fix, HTML unescape, whitespace collapse:
  diffusers' ``prompt_clean``), tokenized with padding to
  ``max_sequence_length`` = 512 and truncation, encoded with the attention
  mask; the hidden states are cut to the prompt's real length and zero-padded
  back to 512 (Wan's cross-attention sees zeros, not pad-token states);
- image: ``CLIPImageProcessor`` (resize, centre crop to 224, normalise), then
  the *penultimate* hidden states of ``CLIPVisionModel`` (257 tokens).

Text dropout for CFG (Sec. 3.2, p = 0.1): a dropped prompt is the embedding of
the empty prompt "", the unconditional text of Wan's sampler (its default
negative prompt), so training and text CFG at inference agree. The reference
image is never dropped (Wan's CFG keeps it in both branches).

The encoders load only from a local diffusers folder laid out like the Wan2.1-I2V
pipeline (``tokenizer/``, ``text_encoder/``, ``image_processor/``,
``image_encoder/``), with ``local_files_only=True``; a missing subfolder is a
FileNotFoundError naming the setting and every missing subfolder.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

MAX_SEQUENCE_LENGTH = 512  # Wan's T5 context length (the transformer takes the last 512 context tokens as text)
SETTING = "MVDiTTrainConfig.wan_encoders"

# subfolder -> the file(s) one of which must be there (what save_pretrained writes).
SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "tokenizer": ("tokenizer_config.json", "tokenizer.json", "spiece.model"),
    "text_encoder": ("config.json",),
    "image_processor": ("preprocessor_config.json",),
    "image_encoder": ("config.json",),
}


def wan_encoder_folder(path: str | Path, setting: str = SETTING) -> Path:
    """The Wan2.1-I2V pipeline folder holding the four encoder subfolders, or a FileNotFoundError naming them."""
    if not str(path):
        raise FileNotFoundError(f"{setting} is empty: set it to a local Wan2.1-I2V diffusers folder with "
                                f"{', '.join(s + '/' for s in SUBFOLDERS)}")
    folder = Path(path)
    missing = [f"{name}/ (one of {', '.join(files)})" for name, files in SUBFOLDERS.items()
               if not any((folder / name / f).is_file() for f in files)]
    if missing:
        raise FileNotFoundError(
            f"{setting} = {str(path)!r} is not a Wan2.1-I2V diffusers folder: missing {'; '.join(missing)}"
        )
    return folder


def encoder_dims(path: str | Path, setting: str = SETTING) -> tuple[int, int]:
    """(T5 hidden size, CLIP vision hidden size) from the folder's config files, without loading weights."""
    folder = wan_encoder_folder(path, setting)
    from transformers import CLIPVisionConfig, UMT5Config

    text = UMT5Config.from_pretrained(str(folder / "text_encoder"), local_files_only=True)
    image = CLIPVisionConfig.from_pretrained(str(folder / "image_encoder"), local_files_only=True)
    return int(text.d_model), int(image.hidden_size)


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning (diffusers ``prompt_clean``: ftfy, double HTML unescape, whitespace collapse)."""
    if importlib.util.find_spec("ftfy") is None:
        raise RuntimeError("Wan's prompt cleaning needs the 'ftfy' package (pip install ftfy)")
    from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean

    return prompt_clean(text)


@dataclass
class WanConditioner:
    """Frozen UMT5 + CLIP encoders of Wan2.1-I2V; prompts and reference frames -> cross-attention inputs."""

    tokenizer: Any
    text_encoder: Any  # transformers.UMT5EncoderModel
    image_processor: Any  # transformers.CLIPImageProcessor
    image_encoder: Any  # transformers.CLIPVisionModel
    max_sequence_length: int = MAX_SEQUENCE_LENGTH
    cache_size: int = 64  # prompt embeddings kept (training repeats few prompts; UMT5-XXL is 5.7B parameters)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        for module in (self.text_encoder, self.image_encoder):
            module.eval().requires_grad_(False)

    @property
    def text_dim(self) -> int:
        return int(self.text_encoder.config.d_model)

    @property
    def image_dim(self) -> int:
        return int(self.image_encoder.config.hidden_size)

    @torch.no_grad()
    def _embed(self, prompts: list[str]) -> list[torch.Tensor]:
        """Cleaned prompts -> UMT5 hidden states cut to each prompt's real length, (L_i, D) float32."""
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_sequence_length, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device)
        hidden = self.text_encoder(tokens.input_ids.to(device), mask).last_hidden_state.float()
        return [h[: int(n)] for h, n in zip(hidden, mask.gt(0).sum(dim=1))]

    def encode_prompts(self, prompts: Sequence[str], keep: torch.Tensor | None = None) -> torch.Tensor:
        """Prompts -> ``encoder_hidden_states`` (B, 512, D) float32, zero after each prompt's real length.

        ``keep`` (B,) bool, e.g. the text keep-mask of ``sample_keep_masks``: where False the prompt is
        replaced by the empty prompt "" (Sec. 3.2 text dropout; Wan's unconditional text).
        """
        prompts = list(prompts)
        if keep is not None:
            keep = torch.as_tensor(keep)
            if keep.dtype != torch.bool or keep.shape != (len(prompts),):
                raise ValueError(f"keep must be a bool tensor of shape ({len(prompts)},), got {keep.dtype} "
                                 f"{tuple(keep.shape)}")
            prompts = [p if bool(k) else "" for p, k in zip(prompts, keep.cpu())]
        cleaned = [clean_prompt(p) for p in prompts]
        todo = list(dict.fromkeys(p for p in cleaned if p not in self._cache))
        if todo:
            for prompt, emb in zip(todo, self._embed(todo)):
                self._cache[prompt] = emb
        rows = []
        for prompt in cleaned:
            self._cache.move_to_end(prompt)
            emb = self._cache[prompt]
            rows.append(torch.cat([emb, emb.new_zeros(self.max_sequence_length - len(emb), emb.shape[1])]))
        out = torch.stack(rows)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    @torch.no_grad()
    def encode_images(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Reference frames uint8 (B, H, W, 3) RGB -> ``encoder_hidden_states_image`` (B, N, D): CLIP's
        penultimate hidden states (N = 257 for ViT-H/14 at 224)."""
        frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"reference frames must be uint8 (B, H, W, 3), got {frames.dtype} {frames.shape}")
        param = next(self.image_encoder.parameters())
        pixels = self.image_processor(images=list(frames), return_tensors="pt").pixel_values
        out = self.image_encoder(pixel_values=pixels.to(param.device, param.dtype), output_hidden_states=True)
        return out.hidden_states[-2].float()


def load_wan_conditioner(path: str | Path, device: str | torch.device = "cpu",
                         text_dtype: torch.dtype = torch.float32, setting: str = SETTING) -> WanConditioner:
    """Load the tokenizer, UMT5 text encoder, CLIP image processor and encoder from a local Wan2.1-I2V folder.

    The image encoder stays float32 (as in diffusers' Wan I2V example); ``text_dtype`` (bf16 on GPUs) halves
    UMT5-XXL's 22 GB. Never downloads (``local_files_only=True``).
    """
    folder = wan_encoder_folder(path, setting)
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    text = UMT5EncoderModel.from_pretrained(str(folder / "text_encoder"), dtype=text_dtype,
                                            local_files_only=True)
    processor = CLIPImageProcessor.from_pretrained(str(folder / "image_processor"), local_files_only=True)
    image = CLIPVisionModel.from_pretrained(str(folder / "image_encoder"), dtype=torch.float32,
                                            local_files_only=True)
    return WanConditioner(tokenizer, text.to(device), processor, image.to(device))
