"""Sampling MV-DiT-18B's class (Sec. 3.2-3.3, App. A.3): ``WanMotionPipeline`` on a tiny Wan checkpoint trained
for a few CPU steps: shapes, determinism, the two-condition CFG, the encoders setting, the CLI and the benchmark."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from tiny_models import tiny_tokenizer, tiny_wan_encoders

from models.mvdit.cfg import FULL, MOTION, NULL
from pipeline.animation.cli import main
from pipeline.animation.loading import load_train_checkpoint, preview_sample
from pipeline.animation.wan_pipeline import WanMotionPipeline
from pipeline.core.video_io import probe_video
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.train import train_mvdit

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


def joints(frames: int = 33, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.2, (1, 24, 3)) + np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0)).astype(np.float32)


def reference(h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Wan MV-DiT trained 2 steps (flow_shift 3, so that the sampler must read it from the checkpoint),
    with a 2-step preview sample after training."""
    root = tmp_path_factory.mktemp("wan_animate")
    encoders = tiny_wan_encoders(root / "encoders")
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (33, 32, 32, 3), dtype=np.uint8), joints(seed=i), None) for i in range(2)]
    cfg = MVDiTTrainConfig.tiny(model="wan_tiny", wan_encoders=str(encoders), steps=2, checkpoint_every=2,
                                lr=1e-2, flow_shift=3.0, sample_steps=2)
    return train_mvdit(samples, tiny_tokenizer(root / "tok"), None, cfg, root / "run", log=lambda s: None,
                       preview=preview_sample)


@pytest.fixture(scope="module")
def checkpoint(trained):
    return trained.checkpoint


def test_training_ends_with_a_preview_sample(trained):
    assert trained.sample_frames.shape == (33, 32, 32, 3) and trained.sample_frames.dtype == np.uint8


@pytest.fixture(scope="module")
def pipe(checkpoint):
    pipe = load_train_checkpoint(checkpoint)
    for block in pipe.model.motion_modules().values():  # make the motion branch matter (zero-initialised output)
        torch.nn.init.normal_(block.motion_attn.o.weight, std=0.05)
    return pipe


def test_wan_checkpoint_samples_a_video(pipe):
    from diffusers import FlowMatchEulerDiscreteScheduler

    assert isinstance(pipe, WanMotionPipeline)  # the dispatch on the checkpoint's kwargs
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler) and pipe.scheduler.config.shift == 3.0
    call = dict(num_frames=33, height=32, width=32, num_inference_steps=2)
    a = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(3), **call)
    b = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(3), **call)
    c = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(4), **call)
    assert a.shape == (33, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # The prompt is a condition: another prompt, same noise, another video.
    d = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(3), prompt="a man walks", **call)
    assert not np.array_equal(a, d)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(reference(), joints(), num_frames=33, height=24, width=32, num_inference_steps=1)


def test_conditions_follow_eq9_and_the_text_encoder(pipe):
    from pipeline.mvdit.windows import zero_padded_video

    image = reference(32, 32)
    tokens = pipe.motion_tokens(joints(), 33)
    cond = pipe.conditions(image, tokens, 33, "a person is dancing")
    video = np.zeros((1, 33, 32, 32, 3), np.uint8)
    video[0, 0] = image
    expected = pipe.latent_map.encode(zero_padded_video(torch.from_numpy(video))).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(cond.reference, expected)  # z_ref = E(ZeroPad(x_0)), frames >= 1 ignored
    assert cond.reference.shape == (1, 4, 9, 4, 4)
    torch.testing.assert_close(cond.text[0], pipe.conditioner.encode_prompts(["a person is dancing"])[0])
    torch.testing.assert_close(cond.null_text, pipe.conditioner.encode_prompts([""])[0])
    assert cond.image.shape == (1, 257, 12)


def test_guidance_combines_the_three_branches(pipe):
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 9, 4, 4)
    cond = pipe.conditions(reference(32, 32), pipe.motion_tokens(joints(), 33), 33, "a person is dancing")
    t = torch.tensor(700.0)
    one = torch.tensor([True])
    with torch.no_grad():
        preds = {b: pipe.model_prediction(latents, t, cond, one & b.motion, one & b.text) for b in (NULL, MOTION, FULL)}
        # w_m = w_t = 1: the combined prediction is the conditional one, eps(m, t).
        torch.testing.assert_close(pipe.guided_prediction(latents, t, cond, 1.0, 1.0), preds[FULL])
        guided = pipe.guided_prediction(latents, t, cond, 3.0, 6.0)
    assert not torch.allclose(preds[NULL], preds[MOTION], atol=1e-4)
    assert not torch.allclose(preds[MOTION], preds[FULL], atol=1e-4)
    manual = preds[NULL] + 3.0 * (preds[MOTION] - preds[NULL]) + 6.0 * (preds[FULL] - preds[MOTION])
    torch.testing.assert_close(guided, manual, rtol=1e-4, atol=1e-5)
    # The benchmark's null-motion baseline: c_m∅ in every branch, the text CFG kept.
    from pipeline.evaluation.baselines import WanNullMotionPipeline, null_motion_pipeline

    null = null_motion_pipeline(pipe)
    assert isinstance(null, WanNullMotionPipeline)
    with torch.no_grad():
        text_only = pipe.model_prediction(latents, t, cond, torch.tensor([False]), one)
        torch.testing.assert_close(null.guided_prediction(latents, t, cond, 3.0, 6.0),
                                   preds[NULL] + 6.0 * (text_only - preds[NULL]), rtol=1e-4, atol=1e-5)


def test_missing_encoders_name_the_setting(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="wan_encoders \\(--wan-encoders\\) = .* missing tokenizer/"):
        load_train_checkpoint(checkpoint, wan_encoders=tmp_path / "nowhere")
    # The checkpoint's own record points at a folder that is gone (e.g. the checkpoint moved machines).
    from pipeline.core import checkpoints

    original = checkpoints.load_checkpoint

    def moved(path):
        ckpt = original(path)
        return dataclasses.replace(ckpt, tokenizer_config={**ckpt.tokenizer_config, "wan_encoders": str(tmp_path)})

    monkeypatch.setattr(checkpoints, "load_checkpoint", moved)
    with pytest.raises(FileNotFoundError, match="the 'wan_encoders' of checkpoint .* missing tokenizer/"):
        load_train_checkpoint(checkpoint)


def test_cli_with_a_prompt(checkpoint, tmp_path, monkeypatch):
    from pipeline.mvdit.wan_conditioning import WanConditioner

    prompts = []
    original = WanConditioner.encode_prompts
    monkeypatch.setattr(WanConditioner, "encode_prompts",
                        lambda self, p, keep=None: prompts.append(list(p)) or original(self, p, keep))
    image, motion = tmp_path / "ref.png", tmp_path / "motion.npz"
    cv2.imwrite(str(image), reference())
    np.savez(motion, joints=joints(40))
    argv = ["--image", str(image), "--motion", str(motion), "--out", str(tmp_path / "o.mp4"), "--weights",
            str(checkpoint), "--prompt", "a man walks", "--text-cfg", "4", "--steps", "2", "--height", "32",
            "--width", "32", "--frames", "33"]
    assert main(argv) == 0
    info = probe_video(tmp_path / "o.mp4")
    assert (info.num_frames, info.width, info.height) == (33, 32, 32)
    assert prompts == [["a man walks", ""]]


def test_benchmark_eval_scores_a_wan_checkpoint(checkpoint, tmp_path, monkeypatch):
    """benchmark_eval passes its protocol's prompt and text CFG to the Wan pipeline and gets all three methods."""
    from pipeline.core.config import PipelineSettings
    from pipeline.evaluation.benchmark_eval import evaluate_benchmark
    from pipeline.evaluation.protocol import EvalProtocol

    calls = []
    original = WanMotionPipeline.guided_prediction
    monkeypatch.setattr(WanMotionPipeline, "guided_prediction",
                        lambda self, *a: calls.append((type(self).__name__, a[-2:])) or original(self, *a))
    protocol = EvalProtocol.tiny(max_videos=1, num_inference_steps=1, height=32, width=32, text_guidance_scale=5.0,
                                 text_prompt="a man walks")
    result = evaluate_benchmark(PipelineSettings(data_root=str(tmp_path / "data")), "generated", checkpoint, protocol,
                                log=lambda s: None)
    assert result.processed == 1 and set(result.extra["aggregates"]) == {"mtvcraft", "copy_reference", "null_motion"}
    assert all(np.isfinite(s["psnr"]) for s in result.extra["aggregates"].values())
    # The null baseline drops motion in every branch, so it combines with w_m = 1 (no eps(∅, ∅) branch needed).
    # the whole 52-frame video in two 33-frame windows, one step each
    assert calls == [("WanMotionPipeline", (3.0, 5.0))] * 2 + [("WanNullMotionPipeline", (1.0, 5.0))] * 2


def test_bf16_cast_keeps_wan_float32_modules(pipe):
    """On a bf16 GPU the 18B model runs in bf16 except what Wan keeps in float32 (norms, modulation, RoPE)."""
    import copy

    from pipeline.animation.wan_pipeline import cast_model

    model = cast_model(copy.deepcopy(pipe.model), torch.bfloat16)
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["blocks.0.scale_shift_table"] == torch.float32 and dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert model.dtype == torch.bfloat16
    half = WanMotionPipeline(model, pipe.latent_map, pipe.conditioner, pipe.tokenizer)
    torch.manual_seed(0)
    latents = torch.randn(1, 4, 9, 4, 4)
    cond = pipe.conditions(reference(32, 32), pipe.motion_tokens(joints(), 33), 33, "a person is dancing")
    with torch.no_grad():
        full, low = (p.guided_prediction(latents, torch.tensor(500.0), cond, 3.0, 6.0) for p in (pipe, half))
    assert low.dtype == torch.float32 and (low - full).norm() < 0.05 * full.norm()


def test_wan_long_motion_in_windows(pipe, monkeypatch):
    """The 18B pipeline through the same windows: all 45 frames, the first window's own frames before the second
    window starts, and the second window's first frame taken as its reference (Eq. 9's frame 0)."""
    from pipeline.animation.long_motion import animate_in_windows

    seen = []
    original = WanMotionPipeline.__call__

    def spy(self, reference_image, motion, **kw):
        seen.append(reference_image.copy())
        return original(self, reference_image, motion, **kw)

    call = dict(height=32, width=32, num_inference_steps=2, prompt="a man walks")
    monkeypatch.setattr(WanMotionPipeline, "__call__", spy)
    video = animate_in_windows(pipe, reference(), joints(45), window=33, overlap=9,
                               generator=torch.Generator().manual_seed(7), **call)
    monkeypatch.undo()
    single = pipe(reference(), joints(45)[:33], num_frames=33, generator=torch.Generator().manual_seed(7), **call)
    assert video.shape == (45, 32, 32, 3)
    np.testing.assert_array_equal(video[:12], single[:12])
    assert len(seen) == 2 and np.array_equal(seen[1], single[12])


def test_wan_context_frames_are_held_to_the_end(pipe):
    """The flow-matching hold: at sigma 0 after the last step the first latent frames are the context's own."""
    context = np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)  # 1 + 4: 2 latents
    call = dict(num_frames=33, height=32, width=32, num_inference_steps=3)
    held = pipe(reference(), joints(), context=context, generator=torch.Generator().manual_seed(1), **call)
    expected = pipe.latent_map.decode(pipe.latent_map.encode(torch.from_numpy(context)[None]))[0].numpy()
    np.testing.assert_array_equal(held[:5], expected)


def test_wan_pipeline_casts_before_it_moves(checkpoint, monkeypatch):
    """The transformer is in its inference dtype before ``.to(device)`` (an 18B in float32 would not fit the GPU)."""
    from models.mvdit.wan import MVDiTWan

    seen = []
    to = MVDiTWan.to

    def spy(self, *args, **kwargs):
        seen.append({p.dtype for p in self.blocks.parameters()})
        return to(self, *args, **kwargs)

    monkeypatch.setattr(MVDiTWan, "to", spy)
    pipe = load_train_checkpoint(checkpoint, device="cpu", dtype=torch.bfloat16)
    assert seen and torch.bfloat16 in seen[0] and pipe.model.dtype == torch.bfloat16
