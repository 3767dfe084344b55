"""MV-DiT-18B training (Sec. 3.3, App. A.1, App. C): Wan2.1-I2V's UMT5 + CLIP conditioning loaded from a local
folder laid out like the Wan pipeline, text dropout to the empty prompt, and CPU steps of a tiny Wan MV-DiT in
which only the motion modules change."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer, tiny_wan_encoders

from models.tokenizer import VQVAE, TokenizerConfig
from pipeline.core.checkpoints import load_checkpoint, load_unconditional_tokens, save_checkpoint
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import build_model, model_kwargs
from pipeline.mvdit.losses import shift_sigmas
from pipeline.mvdit.train import train_mvdit

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    return tiny_wan_encoders(tmp_path_factory.mktemp("wan"))


@pytest.fixture(scope="module")
def conditioner(wan_folder):
    from pipeline.mvdit.wan_conditioning import load_wan_conditioner

    return load_wan_conditioner(wan_folder)


def test_prompt_embeddings_follow_wan_padding_and_drop_to_empty_prompt(conditioner):
    prompts = ["a person is dancing", "  the man\n walks   in the park ", "a person is dancing"]
    emb = conditioner.encode_prompts(prompts)
    assert emb.shape == (3, 512, 16) and emb.dtype == torch.float32
    # Reference: the encoder run directly on each prompt's own tokens (+ </s>), no padding at all.
    for row, words in ((0, "a person is dancing"), (1, "the man walks in the park")):
        ids = [conditioner.tokenizer.convert_tokens_to_ids("▁" + w) for w in words.split()] + [1]
        with torch.no_grad():
            want = conditioner.text_encoder(torch.tensor([ids])).last_hidden_state[0]
        n = len(ids)
        torch.testing.assert_close(emb[row, :n], want, rtol=1e-4, atol=1e-5)
        assert emb[row, n:].abs().max() == 0  # trimmed to the real length, then zero-padded
    assert torch.equal(emb[0], emb[2])
    # Text dropout (Sec. 3.2): a dropped prompt is exactly the empty prompt's embedding.
    empty = conditioner.encode_prompts([""])[0]
    assert empty[0].abs().sum() > 0 and empty[1:].abs().max() == 0  # "" is the single </s> token
    dropped = conditioner.encode_prompts(prompts, keep=torch.tensor([True, False, True]))
    assert torch.equal(dropped[1], empty) and torch.equal(dropped[0], emb[0])
    with pytest.raises(ValueError, match="keep must be a bool tensor of shape \\(3,\\)"):
        conditioner.encode_prompts(prompts, keep=torch.tensor([1, 0, 1]))


def test_image_embeddings_are_clip_penultimate_states(conditioner):
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    emb = conditioner.encode_images(frames)
    assert emb.shape == (2, 257, 12)
    pixels = conditioner.image_processor(images=list(frames), return_tensors="pt").pixel_values
    assert pixels.shape == (2, 3, 32, 32)
    with torch.no_grad():
        states = conditioner.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(states) == 3 and torch.equal(emb, states[-2])  # embeddings + 2 layers: the penultimate is layer 1
    assert not torch.equal(emb, states[-1])
    with pytest.raises(ValueError, match="uint8 \\(B, H, W, 3\\)"):
        conditioner.encode_images(frames.astype(np.float32))


def test_missing_encoder_folder_names_the_setting_and_subfolder(wan_folder, tmp_path):
    from pipeline.mvdit.wan_conditioning import encoder_dims, load_wan_conditioner

    assert encoder_dims(wan_folder) == (16, 12)
    partial = tmp_path / "partial"
    (partial / "tokenizer").mkdir(parents=True)
    for name in ("tokenizer_config.json", "tokenizer.json"):
        (partial / "tokenizer" / name).write_bytes((wan_folder / "tokenizer" / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="MVDiTTrainConfig.wan_encoders.*missing text_encoder/.*image_encoder/"):
        load_wan_conditioner(partial)
    with pytest.raises(FileNotFoundError, match="MVDiTTrainConfig.wan_encoders is empty"):
        load_wan_conditioner("")


def test_wan_model_kwargs_and_config_checks(wan_folder):
    from models.mvdit.wan import MVDiTWan

    tiny = model_kwargs(MVDiTTrainConfig.tiny(model="wan_tiny"), 64, 4, (16, 12))
    assert (tiny["in_channels"], tiny["out_channels"], tiny["text_dim"], tiny["image_dim"]) == (12, 4, 16, 12)
    assert tiny["unconditional_frames"] == 9  # 33 frames -> 9 latent frames of c_m∅
    assert isinstance(build_model(tiny), MVDiTWan)
    full = model_kwargs(MVDiTTrainConfig(model="wan_i2v_14b"), 3072, 16, (4096, 1280))
    assert (full["in_channels"], full["num_layers"], full["motion_token_dim"]) == (36, 40, 3072)
    with pytest.raises(ValueError, match="T5 hidden size is 16; MV-DiT-18B .* expects 4096"):
        model_kwargs(MVDiTTrainConfig(model="wan_i2v_14b"), 3072, 16, (16, 1280))
    with pytest.raises(ValueError, match="VAE latent channels is 4"):
        model_kwargs(MVDiTTrainConfig(model="wan_i2v_14b"), 3072, 4)
    with pytest.raises(ValueError, match="motion_drop_prob must be 0"):
        MVDiTTrainConfig(model="wan_i2v_14b", layout="release")
    # Sigma shift against diffusers' flow-match scheduler (sigmas at uniformly spaced training timesteps).
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    u = torch.linspace(1, 1000, 1000).flip(0) / 1000
    torch.testing.assert_close(shift_sigmas(u, 5.0), sched.sigmas.float())



def test_tiny_wan_trains_only_motion_modules(wan_folder, tmp_path, monkeypatch):
    from pipeline.mvdit.wan_conditioning import WanConditioner

    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (33, 32, 32, 3), dtype=np.uint8),
                rng.normal(0, 0.3, (33, 24, 3)).astype(np.float32), caption) for caption in ("a man walks", None)]
    calls = []
    original = WanConditioner.encode_prompts

    def spy(self, prompts, keep=None):
        calls.append((list(prompts), keep.clone()))
        return original(self, prompts, keep)

    monkeypatch.setattr(WanConditioner, "encode_prompts", spy)
    cfg = MVDiTTrainConfig.tiny(model="wan_tiny", wan_encoders=str(wan_folder), steps=4, checkpoint_every=4,
                                log_every=1, motion_drop_prob=0.5, text_drop_prob=0.5, lr=1e-2)
    result = train_mvdit(samples, tiny_tokenizer(tmp_path / "tok"), None, cfg, tmp_path / "run", log=lambda s: None)
    losses = [p["loss"] for p in result.loss_curve]
    assert len(losses) == 4 and all(np.isfinite(losses)), losses
    assert result.sample_frames is None

    # The text: each sample's caption or the config's prompt; the keep-mask is sample_keep_masks' (B,) bool draw.
    assert len(calls) == 4
    assert {p for prompts, _ in calls for p in prompts} <= {"a man walks", "a person is dancing"}
    keeps = torch.stack([k for _, k in calls])
    assert keeps.dtype == torch.bool and keeps.shape == (4, 2) and 0 < int(keeps.sum()) < 8

    # Only the motion attention and c_m∅ train (App. A.1): the backbone equals its initialisation.
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.tokenizer_config["wan_encoders"] == str(wan_folder.resolve())
    torch.manual_seed(cfg.seed)  # train_loop seeds exactly this before building the model
    init = build_model(ckpt.tokenizer_config["mvdit"])
    trainable = {n for n, p in init.named_parameters() if p.requires_grad}
    assert trainable and all("motion_attn" in n or n == "unconditional_motion_token" for n in trainable), trainable
    changed = {n for n, v in init.state_dict().items() if not torch.equal(v, ckpt.model_state[n])}
    assert changed <= trainable, changed - trainable
    assert any("motion_attn" in n for n in changed)
    assert len(init.state_dict()) > len(trainable) + 20  # there is a frozen backbone to compare


def test_18b_reuses_the_6b_unconditional_tokens_unchanged(wan_folder, tmp_path):
    """Sec. 3.3: "We reuse 4DMoT and unconditional motion tokens without modification": with unconditional_from,
    the Wan model's c_m∅ is the 6B checkpoint's, and stays so even when every sample drops its motion."""
    rng = np.random.default_rng(1)
    samples = [(rng.integers(0, 256, (33, 32, 32, 3), dtype=np.uint8),
                rng.normal(0, 0.3, (33, 24, 3)).astype(np.float32), None)]
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    six_b = train_mvdit([s[:2] for s in samples], tokenizer, None, MVDiTTrainConfig.tiny(steps=2, motion_drop_prob=1.0,
                                                                                          lr=1e-2),
                        tmp_path / "6b", log=lambda s: None).checkpoint
    reused = load_checkpoint(six_b).model_state["unconditional_motion_token"]
    common = dict(model="wan_tiny", wan_encoders=str(wan_folder), steps=2, checkpoint_every=2, motion_drop_prob=1.0,
                  lr=1e-2, sample_steps=0)
    kept = train_mvdit(samples, tokenizer, None, MVDiTTrainConfig.tiny(unconditional_from=str(six_b), **common),
                       tmp_path / "18b", log=lambda s: None)
    assert torch.equal(load_checkpoint(kept.checkpoint).model_state["unconditional_motion_token"], reused)
    learnt = train_mvdit(samples, tokenizer, None, MVDiTTrainConfig.tiny(**common), tmp_path / "18b_own",
                         log=lambda s: None)  # without it, c_m∅ is a fresh parameter that trains
    own = load_checkpoint(learnt.checkpoint).model_state["unconditional_motion_token"]
    assert own.shape == reused.shape and not torch.allclose(own, reused)

    # the same 4DMoT saved elsewhere carries over; another one (different weights and checksum) does not
    assert torch.equal(load_unconditional_tokens(six_b, tiny_tokenizer(tmp_path / "copy")), reused)
    torch.manual_seed(5)
    model = VQVAE(TokenizerConfig.tiny())
    other = save_checkpoint(tmp_path / "other2", 1, model, None, stats_mean=torch.zeros(3), stats_std=torch.ones(3),
                            sampler={"seed": 0}, train_config={}, tokenizer_config=model.config.to_dict())
    with pytest.raises(ValueError, match="was trained on the 4DMoT .* c_m∅ only carries over with the same 4DMoT"):
        load_unconditional_tokens(six_b, other)
    with pytest.raises(FileNotFoundError, match="unconditional_from: no MV-DiT-6B training checkpoint"):
        load_unconditional_tokens(tmp_path / "nope.safetensors", tokenizer)
    with pytest.raises(ValueError, match="unconditional_from is for a Wan model in the paper layout"):
        MVDiTTrainConfig.tiny(unconditional_from=str(six_b))
