"""MTVCraftPipeline and `python -m pipeline.animation.cli` (Eq. 3, App. A.3): shapes, determinism, CFG, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from media import write_video
from tiny_models import tiny_tokenizer

import pipeline.animation.cli as animate_module
from pipeline.animation.cli import main
from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.core.checkpoints import load_tokenizer
from pipeline.core.video_io import probe_video
from pipeline.mvdit.config import MVDiTTrainConfig
from pipeline.mvdit.factory import build_model, model_kwargs
from pipeline.mvdit.latents import PoolLatentMap
from pipeline.mvdit.train import train_mvdit

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: one thread is faster on 2 shared cores


@pytest.fixture(scope="module")
def tokenizer_ckpt(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def checkpoint(tokenizer_ckpt, tmp_path_factory):
    """A train_mvdit checkpoint of the tiny model after one step (33-frame clips: c_m∅ covers 33 frames)."""
    video = np.random.default_rng(0).integers(0, 256, (33, 32, 32, 3), dtype=np.uint8)
    result = train_mvdit([(video, joints())], tokenizer_ckpt, None, MVDiTTrainConfig.tiny(steps=1),
                         tmp_path_factory.mktemp("mvdit"), log=lambda s: None)
    return result.checkpoint


def joints(frames: int = 33, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.2, (1, 24, 3)) + np.cumsum(rng.normal(0, 0.01, (frames, 1, 3)), axis=0)).astype(np.float32)


@pytest.fixture(scope="module")
def pipe(tokenizer_ckpt):
    torch.manual_seed(0)
    model = build_model(model_kwargs(MVDiTTrainConfig.tiny(), 64, 4))
    model.set_mean_joints(joints().mean(axis=0))
    for attn in model.motion_modules().values():  # make the motion branch matter (zero-initialised output)
        torch.nn.init.normal_(attn.to_out[0].weight, std=0.05)
    vq, normalizer, _ = load_tokenizer(tokenizer_ckpt)
    return MTVCraftPipeline(model, PoolLatentMap(), (vq, normalizer))


def reference(h: int = 32, w: int = 48) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_pipeline_shape_dtype_and_determinism(pipe):
    call = dict(num_frames=33, height=32, width=32, num_inference_steps=2)
    a = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(3), **call)
    b = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(3), **call)
    c = pipe(reference(), joints(40), generator=torch.Generator().manual_seed(4), **call)
    assert a.shape == (33, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="multiples of 16"):
        pipe(reference(), joints(), num_frames=33, height=24, width=32, num_inference_steps=1)
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        pipe(reference(), joints(), num_frames=34, height=32, width=32, num_inference_steps=1)


def test_cfg_scale_one_is_the_conditional_prediction(pipe):
    torch.manual_seed(0)
    latents, ref = torch.randn(1, 9, 4, 2, 4), torch.randn(1, 1, 4, 2, 4)
    tokens = pipe.motion_tokens(joints(), 33)
    t = torch.tensor(500)
    with torch.no_grad():
        cond = pipe.model(latents, ref, tokens, t, motion_mask=torch.tensor([True])).sample
        null = pipe.model(latents, ref, tokens, t, motion_mask=torch.tensor([False])).sample
        assert torch.allclose(pipe.guided_prediction(latents, t, ref, tokens, 1.0), cond, atol=1e-6)
        guided = pipe.guided_prediction(latents, t, ref, tokens, 3.0)
    assert not torch.allclose(cond, null, atol=1e-4)
    assert torch.allclose(guided, null + 3.0 * (cond - null), atol=1e-5)


# ---- CLI ---------------------------------------------------------------------------------
@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input checks failed")

    monkeypatch.setattr(animate_module, "load_train_checkpoint", refuse)
    monkeypatch.setattr(MTVCraftPipeline, "from_pretrained", classmethod(refuse))


def inputs(tmp_path, motion_joints=None):
    import cv2

    image = tmp_path / "ref.png"
    cv2.imwrite(str(image), reference())
    motion = tmp_path / "motion.npz"
    np.savez(motion, joints=joints(40) if motion_joints is None else motion_joints)
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"x")
    return ["--image", str(image), "--motion", str(motion), "--out", str(tmp_path / "o.mp4"), "--weights", str(weights)]


def run_cli(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_cli_errors_before_any_model_loads(tmp_path, capsys, no_model_loads):
    argv = inputs(tmp_path)
    missing = list(argv)
    missing[1] = str(tmp_path / "nope.png")
    assert "reference image not found" in run_cli(missing, capsys)

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    unreadable = list(argv)
    unreadable[1] = str(bad)
    assert "cannot read reference image" in run_cli(unreadable, capsys)

    assert "has 20 frames; MV-DiT needs at least 33" in run_cli(inputs(tmp_path, joints(20)), capsys)
    err = run_cli(inputs(tmp_path, np.zeros((40, 10, 3), np.float32)), capsys)
    assert "'joints' must have shape (T, 24, 3)" in err

    short_video = tmp_path / "short.mp4"
    write_video(short_video, np.zeros((12, 32, 32, 3), np.uint8))
    video_argv = list(argv)
    video_argv[3] = str(short_video)
    assert "has 12 frames; MV-DiT needs at least 33" in run_cli(video_argv, capsys)

    assert "--frames must be 1 + 8k" in run_cli(argv + ["--frames", "30"], capsys)


def test_cli_end_to_end_with_a_train_checkpoint(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(0)
    argv = inputs(tmp_path)
    argv[-1] = str(checkpoint)
    assert main(argv + ["--steps", "2", "--height", "32", "--width", "32"]) == 0
    info = probe_video(tmp_path / "o.mp4")
    assert (info.num_frames, info.width, info.height) == (40, 32, 32)  # every motion frame, in two windows
    # tokens .npz (code ids as tokenize_motion writes them) with an explicit frame count
    ids = tmp_path / "tokens.npz"
    np.savez(ids, ids=rng.integers(0, 256, (9, 24)), num_frames=33)
    argv[3] = str(ids)
    assert main(argv + ["--steps", "1", "--height", "32", "--width", "32"]) == 0
    assert probe_video(tmp_path / "o.mp4").num_frames == 33


def test_animate_from_a_driving_video(tmp_path, checkpoint):
    """A driving video with a sidecar: its joints are the sidecar's FK, and the CLI animates from it."""
    from pipeline.animation.cli import joints_from_video
    from pipeline.synthetic.motions import motion_joints
    from pipeline.synthetic.sample import make_sample, read_sidecar

    sample = make_sample(tmp_path / "sample", seed=0, preset="tiny")
    video = next(v for v in sample.videos if v.name == "tiny_cuts")  # one person in every frame
    path = sample.root / video.file
    side = read_sidecar(sample.root / video.sidecar)
    expected = motion_joints(side["pose"][:33, 0], side["transl"][:33, 0])
    np.testing.assert_allclose(joints_from_video(path, 33), expected, atol=1e-5)

    argv = inputs(tmp_path)
    argv[3], argv[-1] = str(path), str(checkpoint)
    # The video gives 54 frames; this tiny model's unconditional tokens cover 33 (its training length).
    assert main(argv + ["--steps", "1", "--height", "32", "--width", "32", "--frames", "33"]) == 0
    assert probe_video(tmp_path / "o.mp4").num_frames == 33


# ---- long motions ------------------------------------------------------------------------
def test_long_motion_in_windows_keeps_the_first_pass(pipe):
    """Windows over a 45-frame motion: all 45 frames, and the frames before the second window are the first
    pass's own (same seed), i.e. windowing changes nothing a single 33-frame call would give there. The second
    window holds the 21 frames it shares (1 + 4 * 5), which this latent map reproduces exactly, so they stay the
    first pass's too; without the hold they are cross-faded with the second window's own."""
    from pipeline.animation.long_motion import animate_in_windows, longest_pass

    assert longest_pass(pipe) == 33  # the tiny config's c_m∅ covers its 33-frame training clips
    motion = joints(45)
    call = dict(height=32, width=32, num_inference_steps=2)
    video = animate_in_windows(pipe, reference(), motion, window=33, overlap=9,
                               generator=torch.Generator().manual_seed(5), **call)
    single = pipe(reference(), motion[:33], num_frames=33, generator=torch.Generator().manual_seed(5), **call)
    assert video.shape == (45, 32, 32, 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[:12], single[:12])  # the second window starts at 45 - 33 = 12
    np.testing.assert_array_equal(video[12:33], single[12:33])  # held
    faded = animate_in_windows(pipe, reference(), motion, window=33, overlap=9, hold_overlap=False,
                               generator=torch.Generator().manual_seed(5), **call)
    np.testing.assert_array_equal(faded[:12], single[:12])
    assert not np.array_equal(faded[12:33], single[12:33])


def test_cli_animates_every_frame_of_a_long_motion(tmp_path, checkpoint, capsys, monkeypatch):
    argv = inputs(tmp_path, joints(45))
    argv[-1] = str(checkpoint)
    assert main(argv + ["--steps", "1", "--height", "32", "--width", "32"]) == 0
    assert "window 2/2: frames 12-44 of 45" in capsys.readouterr().out
    assert probe_video(tmp_path / "o.mp4").num_frames == 45
    assert main(argv + ["--steps", "1", "--height", "32", "--width", "32", "--window", "33", "--overlap", "1"]) == 0
    assert probe_video(tmp_path / "o.mp4").num_frames == 45
    err = run_cli(argv + ["--window", "41"], capsys)  # longer than c_m∅ covers: caught before sampling
    assert "--window 41 is longer than the 33 frames this model's unconditional motion tokens cover" in err
    assert main(argv + ["--steps", "1", "--height", "32", "--width", "32", "--window", "41", "--motion-cfg", "1"]) == 0
    # an overlap is checked against the default window once the model gives it (33 here)
    assert "overlap must be between 1 and window - 1 = 32 frames, got 33" in run_cli(argv + ["--overlap", "33"], capsys)
    # bad windows are input errors before any model loads
    monkeypatch.setattr(animate_module, "load_train_checkpoint", lambda *a, **k: pytest.fail("loaded"))
    assert "--window / --overlap: window must be 1 + 8k" in run_cli(argv + ["--window", "40"], capsys)
    assert "--window / --overlap: overlap must be" in run_cli(argv + ["--overlap", "0"], capsys)


def test_cli_checks_size_and_token_length_against_the_model_before_sampling(tmp_path, checkpoint, capsys,
                                                                            monkeypatch):
    import pipeline.animation.cli as animate_module

    rng = np.random.default_rng(0)
    argv = inputs(tmp_path)
    argv[-1] = str(checkpoint)
    monkeypatch.setattr(MTVCraftPipeline, "__call__", lambda *a, **k: pytest.fail("sampled despite a bad input"))
    monkeypatch.setattr(animate_module, "joints_from_video", lambda *a: pytest.fail("poses estimated"))
    assert "--height must be a positive multiple of 16 for this model, got 30" in run_cli(argv + ["--height", "30"],
                                                                                       capsys)
    ids = tmp_path / "ids.npz"
    np.savez(ids, ids=rng.integers(0, 256, (12, 24)), num_frames=45)  # 12 latent frames > the 9 c_m∅ covers
    argv[3] = str(ids)
    err = run_cli(argv, capsys)
    assert "these tokens' 41 frames are longer than the 33 frames this model's unconditional motion tokens" in err
    assert "error: --steps must be >= 1" in run_cli(argv + ["--steps", "0"], capsys)


def test_context_frames_are_held_to_the_end(pipe):
    """``context``: the first latent frames end as the context's own latents (the last step puts them back clean),
    so the clip starts with the context as the latent map reproduces it; the rest is still sampled."""
    context = np.random.default_rng(3).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)  # 1 + 4 * 2: 3 latents
    call = dict(num_frames=33, height=32, width=32, num_inference_steps=3)
    held = pipe(reference(), joints(), context=context, generator=torch.Generator().manual_seed(1), **call)
    free = pipe(reference(), joints(), generator=torch.Generator().manual_seed(1), **call)
    expected = pipe.latent_map.decode(pipe.latent_map.encode(torch.from_numpy(context)[None]))[0].numpy()
    np.testing.assert_array_equal(held[:9], expected)
    assert not np.array_equal(free[:9], expected) and not np.array_equal(held[9:], free[9:])
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        pipe(reference(), joints(), context=context[:8], **call)
