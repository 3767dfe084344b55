"""Clip-quality scorers of paper App. B (pipeline/curation/scores): known answers, production loaders, real footage.

Each embedded scorer is checked against a case with a known answer (a pure shift for flow,
rendered text of known extent for OCR, a checkerboard and Gaussian blurs for the Laplacian,
closed-form colourfulness); each production loader loads a randomly initialised network of
the real structure saved in the real file format. The last test renders the generated demo
sample (slow, ~20-30 s) and checks that each shot meets the fate its manifest expects.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from conftest import shared_path
from media import write_video
from scipy import ndimage

from pipeline.core.config import ENV_WEIGHTS
from pipeline.curation.scores import (
    DEFAULT_BACKENDS,
    DEFAULT_THRESHOLDS,
    SCORER_BACKENDS,
    ClipScorer,
    FrameSampling,
    KeepRule,
    keep_rule,
    make_scorer,
    resize_long_side,
    sample_indices,
    score_clip,
)
from pipeline.curation.scores import score_clips as score_clips_module
from pipeline.curation.scores.aesthetic import classical_iq, colourfulness, iq_components, make_aesthetic_head
from pipeline.curation.scores.blur import LaplacianBlur, laplacian_variance
from pipeline.curation.scores.flow import RAFT_WEIGHTS_FILE, DISFlow, mean_magnitude
from pipeline.curation.scores.ocr import CRAFT_WEIGHTS_FILE, text_ratio

REAL = "real/mtvcrafter-samples"  # under ../shared (conftest.shared_path)


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (blurred noise): trackable everywhere, like a real scene."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def _shifted_pair(height: int, width: int, dx: int, dy: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two crops of one texture: the content of the second has moved by (dx, dy) pixels."""
    big = _texture(height + 40, width + 40, seed)
    top, left = 20, 20
    first = big[top : top + height, left : left + width]
    second = big[top - dy : top - dy + height, left - dx : left - dx + width]
    return first.copy(), second.copy()


# --- Frame sampling, keep-rules, factory ------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 2, 5, 33, 34, 64, 100, 1000])
def test_sample_indices_are_bounded_spread_and_in_range(num_frames):
    sampling = FrameSampling(every_k=4, max_frames=16)
    indices = sample_indices(num_frames, sampling)
    assert indices == sorted(set(indices))
    assert indices[0] == 0 and indices[-1] <= num_frames - 1
    assert len(indices) == min(16, math.ceil(num_frames / 4))
    if len(indices) > 1:
        assert indices[-1] == num_frames - 1
    if len(indices) > 2:  # evenly spread: gaps differ by at most one frame
        gaps = np.diff(indices)
        assert gaps.max() - gaps.min() <= 1


def test_sample_indices_every_k_and_edge_cases():
    assert sample_indices(33, FrameSampling(every_k=4, max_frames=16)) == list(range(0, 33, 4))
    assert sample_indices(0) == []
    assert sample_indices(7, FrameSampling(every_k=1, max_frames=100)) == list(range(7))
    assert len(sample_indices(10_000, FrameSampling(every_k=1, max_frames=16))) == 16
    with pytest.raises(ValueError, match="every_k"):
        FrameSampling(every_k=0)
    with pytest.raises(ValueError, match="max_frames"):
        FrameSampling(max_frames=0)


def test_resize_long_side_keeps_aspect():
    frame = np.zeros((240, 320, 3), np.uint8)
    assert resize_long_side(frame, 512).shape == (384, 512, 3)
    assert resize_long_side(frame, 160).shape == (120, 160, 3)
    assert resize_long_side(frame, None) is frame


def test_keep_rules():
    assert KeepRule.parse(">= 100") == KeepRule(">=", 100.0)
    assert str(KeepRule("<=", 0.05)) == "<= 0.05"
    assert KeepRule(">=", 100).keeps(100) and not KeepRule(">=", 100).keeps(99.9)
    assert KeepRule("<=", 0.05).keeps(0.0) and not KeepRule("<=", 0.05).keeps(0.06)
    assert not KeepRule(">=", 2.0).keeps(float("nan"))
    with pytest.raises(ValueError):
        KeepRule.parse("> 3")
    # Every backend has a rule; the paper's own backends and methods keep the paper's numbers.
    for metric, backends in SCORER_BACKENDS.items():
        assert set(DEFAULT_THRESHOLDS[metric]) == set(backends)
    assert keep_rule("blur", "opencv-laplacian") == KeepRule(">=", 100.0)
    assert keep_rule("ocr", "craft") == KeepRule("<=", 0.05)
    assert keep_rule("aesthetic", "laion-clip-vit-l14") == KeepRule(">=", 5.0)


def test_unknown_backend_names_the_setting_and_choices():
    with pytest.raises(ValueError, match=r"flow_backend = 'unimatch' is unknown; choose one of \('dis', 'raft'\)"):
        make_scorer("flow", "unimatch")
    with pytest.raises(ValueError, match="unknown clip-score metric"):
        make_scorer("sharpness")
    embedded = {metric: make_scorer(metric) for metric in DEFAULT_BACKENDS}
    assert {metric: scorer.backend for metric, scorer in embedded.items()} == DEFAULT_BACKENDS
    for metric, scorer in embedded.items():
        assert isinstance(scorer, ClipScorer) and scorer.metric == metric and scorer.version
        assert scorer.needs_pairs == (metric == "flow")


def test_missing_production_weights_fail_naming_setting_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_WEIGHTS, raising=False)
    with pytest.raises(FileNotFoundError) as unset:
        make_scorer("flow", "raft")
    assert f"flow_backend = 'raft' needs {ENV_WEIGHTS}/{RAFT_WEIGHTS_FILE}" in str(unset.value)
    assert f"{ENV_WEIGHTS} is not set" in str(unset.value)

    monkeypatch.setenv(ENV_WEIGHTS, str(tmp_path))  # set but empty: the same error, naming the folder
    with pytest.raises(FileNotFoundError, match=f"ocr_backend = 'craft' needs {ENV_WEIGHTS}/{CRAFT_WEIGHTS_FILE}"):
        make_scorer("ocr", "craft")
    with pytest.raises(FileNotFoundError) as both:
        make_scorer("aesthetic", "laion-clip-vit-l14")
    message = str(both.value)
    assert "aesthetic_backend" in message and str(tmp_path) in message
    assert "vit_large_patch14_clip_224.openai/open_clip_model.safetensors" in message
    assert "sac+logos+ava1-l14-linearMSE.pth" in message


# --- Blur ------------------------------------------------------------------------------------------


def test_laplacian_variance_matches_scipy_and_closed_forms():
    grey = cv2.cvtColor(_texture(60, 80, seed=1), cv2.COLOR_RGB2GRAY)
    reference = ndimage.laplace(grey.astype(np.float64), mode="mirror").var()  # mirror == OpenCV reflect-101
    assert laplacian_variance(grey) == pytest.approx(reference, rel=1e-9)
    # A one-pixel checkerboard of 0/255: every Laplacian value is +-4*255, so the variance is 1020^2.
    checker = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    assert laplacian_variance(checker) == pytest.approx(1020.0**2)
    assert laplacian_variance(np.full((64, 64, 3), 128, np.uint8)) == 0.0


def test_gaussian_blur_lowers_the_blur_score_monotonically():
    frame = _texture(240, 320, seed=2)
    checker = np.kron((np.indices((15, 20)).sum(axis=0) % 2), np.ones((16, 16))).astype(np.uint8) * 255
    frame = cv2.addWeighted(frame, 0.5, np.dstack([checker] * 3), 0.5, 0)
    scores = [laplacian_variance(cv2.GaussianBlur(frame, (0, 0), s) if s else frame) for s in (0, 0.5, 1, 2, 4)]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert scores[0] > 100 > scores[-1]


def test_blur_scorer_aggregates_a_low_percentile_and_only_shrinks():
    frames = [cv2.GaussianBlur(_texture(240, 320, seed=3), (0, 0), s) for s in (0.1, 0.5, 1.0, 1.5, 2.0)]
    values = [laplacian_variance(f) for f in frames]  # 320 px long side: measured as is
    scorer = LaplacianBlur()
    assert scorer.frame_scores(frames) == pytest.approx(values)
    assert scorer.score(frames, []) == pytest.approx(np.percentile(values, 25))
    big = cv2.resize(frames[0], (1024, 768), interpolation=cv2.INTER_CUBIC)
    assert scorer.frame_scores([big])[0] == pytest.approx(laplacian_variance(resize_long_side(big, 512)))
    assert math.isnan(scorer.score([], []))


# --- Flow ------------------------------------------------------------------------------------------


def test_dis_recovers_a_pure_shift():
    first, second = _shifted_pair(240, 320, dx=3, dy=-2)
    flow = DISFlow().pair_flow(first, second)
    inner = flow[16:-16, 16:-16]
    assert inner[..., 0].mean() == pytest.approx(3.0, abs=0.1)
    assert inner[..., 1].mean() == pytest.approx(-2.0, abs=0.1)
    assert DISFlow().score([], [(first, second)]) == pytest.approx(math.hypot(3, 2), abs=0.15)
    assert DISFlow().score([], [(first, second)] * 2) == pytest.approx(mean_magnitude(flow), rel=1e-6)
    assert DISFlow().score([], [(first, first)]) == pytest.approx(0.0, abs=0.01)
    assert math.isnan(DISFlow().score([], []))


@pytest.fixture(scope="module")
def panning_video(tmp_path_factory):
    """A 256x192 video whose content moves by (3, -2) px every frame, 12 frames."""
    return write_video(tmp_path_factory.mktemp("pan") / "pan.mp4", _pan_frames(12))


def _pan_frames(num_frames: int) -> np.ndarray:
    """256x192 frames of one texture whose content moves by (3, -2) px from each frame to the next."""
    big = _texture(192 + 60, 256 + 60, seed=4)
    return np.stack([big[20 + 2 * t : 20 + 2 * t + 192, 40 - 3 * t : 40 - 3 * t + 256] for t in range(num_frames)])


def test_score_clip_flow_is_measured_at_the_flow_long_side(panning_video):
    flow = make_scorer("flow")
    native = score_clip(panning_video, 0, 12, [flow], flow_long_side=None)["flow"]
    doubled = score_clip(panning_video, 0, 12, [flow], flow_long_side=512)["flow"]
    assert native == pytest.approx(math.hypot(3, 2), abs=0.2)
    assert doubled == pytest.approx(2 * native, rel=0.05)  # 256 -> 512: twice the pixels per frame


def test_score_clip_pairs_skip_repeated_frames(tmp_path):
    """A 12-frame pan stored with every picture repeated 3 times (frame-rate conversion)."""
    path = write_video(tmp_path / "repeats.mp4", np.repeat(_pan_frames(12), 3, axis=0))
    flow = make_scorer("flow")
    steps = score_clip(path, 0, 36, [flow], flow_long_side=None)["flow"]
    assert steps == pytest.approx(math.hypot(3, 2), abs=0.2)  # per step between distinct frames
    plain = score_clip(path, 0, 36, [flow], flow_long_side=None, repeat_window=1)["flow"]
    assert plain < 0.6 * steps  # plain (i, i + 1) pairs land on repeats: most read zero


def test_score_clip_decodes_once_and_converts_only_the_needed_frames(panning_video, monkeypatch):
    calls = []
    real_iter = score_clips_module.iter_selected_frames

    def recording_iter(path, start, offsets):
        calls.append((start, sorted(set(offsets))))
        return real_iter(path, start, offsets)

    monkeypatch.setattr(score_clips_module, "iter_selected_frames", recording_iter)
    scorers = [make_scorer("blur"), make_scorer("flow")]
    result = score_clip(panning_video, 2, 9, scorers, FrameSampling(every_k=3, max_frames=2))
    assert len(calls) == 1 and calls[0][0] == 2  # one decode of the clip
    assert {0, 6} <= set(calls[0][1]) and max(calls[0][1]) <= 6  # frames 0 and 6, pairs from them; nothing past 6
    assert set(result) == {"blur", "flow"}
    calls.clear()
    score_clip(panning_video, 0, 12, [make_scorer("blur")], FrameSampling(every_k=100, max_frames=1))
    assert calls == [(0, [0])]  # one frame needed: only it is converted, nothing past it decoded
    with pytest.raises(ValueError, match="ends at frame 12"):
        score_clip(panning_video, 4, 20, scorers)
    with pytest.raises(ValueError, match="one scorer per metric"):
        score_clip(panning_video, 0, 12, [make_scorer("flow"), make_scorer("flow")])


def test_raft_loads_a_torchvision_state_dict_from_the_weights_folder(tmp_path):
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.manual_seed(0)
    torch.save(raft_large(weights=None).state_dict(), tmp_path / RAFT_WEIGHTS_FILE)
    scorer = make_scorer("flow", "raft", weights_dir=tmp_path, num_flow_updates=2, device="cpu")
    first, second = _shifted_pair(60, 90, dx=3, dy=-2)  # not multiples of 8: exercises the padding
    flows = scorer.pair_flows([(first, second)])
    assert flows.shape == (1, 60, 90, 2) and np.isfinite(flows).all()
    assert math.isnan(scorer.score([], []))  # (one CPU forward is enough: score() averages pair_flows)
    assert RAFT_WEIGHTS_FILE in scorer.version

    torch.save(raft_small(weights=None).state_dict(), tmp_path / "small.pth")  # wrong architecture
    wrong = make_scorer("flow", "raft", weights_dir=tmp_path, weights_path="small.pth")
    with pytest.raises(ValueError, match="small.pth is not a torchvision raft_large state dict"):
        wrong.setup()


# --- OCR -------------------------------------------------------------------------------------------


def test_text_ratio_is_the_union_of_boxes():
    box_a = np.array([[10, 10], [49, 10], [49, 29], [10, 29]])  # 40 x 20 pixels
    box_b = box_a + [20, 0]  # overlaps box_a by 20 x 20
    assert text_ratio([box_a], 100, 100) == pytest.approx(800 / 10_000)
    assert text_ratio([box_a, box_b], 100, 100) == pytest.approx((800 + 800 - 400) / 10_000)
    assert text_ratio([], 100, 100) == 0.0


def _text_frame(width: int, height: int) -> tuple[np.ndarray, float]:
    """Large dark text on a plain light background, and the area ratio of the text's ink bounding box."""
    frame = np.full((height, width, 3), 235, np.uint8)
    scale, thickness = width / 160, max(2, width // 64)
    cv2.putText(frame, "HELLO 42", (int(0.07 * width), int(0.58 * height)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (20, 20, 20), thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(frame[..., 0] < 128)
    return frame, (np.ptp(xs) + 1) * (np.ptp(ys) + 1) / (width * height)


@pytest.fixture(scope="module")
def rapidocr():
    scorer = make_scorer("ocr")
    scorer.setup()
    return scorer


@pytest.mark.parametrize("size", [(320, 240), (1024, 768)])
def test_rapidocr_text_ratio_of_rendered_text(rapidocr, size):
    frame, ink_ratio = _text_frame(*size)
    ratio = rapidocr.frame_scores([frame])[0]
    # DB boxes cover the ink plus a margin (unclip ratio 1.6): 1.0-2.0x the tight ink box.
    assert ink_ratio <= ratio <= 2.0 * ink_ratio
    assert not keep_rule("ocr", "rapidocr").keeps(rapidocr.score([frame], []))


def test_rapidocr_finds_no_text_on_blank_frames_and_flat_shapes(rapidocr):
    blank = np.full((240, 320, 3), 128, np.uint8)
    shapes = np.full((240, 320, 3), (90, 140, 200), np.uint8)
    cv2.rectangle(shapes, (40, 40), (200, 180), (250, 200, 30), -1)
    cv2.circle(shapes, (250, 120), 50, (20, 20, 20), -1)
    assert rapidocr.frame_scores([blank, shapes]) == [0.0, 0.0]
    frame, _ = _text_frame(320, 240)
    assert rapidocr.score([blank, frame, blank], []) == pytest.approx(rapidocr.frame_scores([frame])[0])  # max


def test_craft_loads_official_format_weights_and_runs(tmp_path):
    from easyocr.craft import CRAFT

    torch.manual_seed(0)
    with torch.device("meta"):  # the real structure, without seconds of VGG-16 initialisation
        shapes = CRAFT(pretrained=False).state_dict()
    state = {}
    for key, value in shapes.items():
        if value.dtype == torch.int64:  # BatchNorm's num_batches_tracked
            state[key] = torch.zeros((), dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape) + 0.5
        else:
            state[key] = torch.randn(value.shape) * 0.05
    # The official craft_mlt_25k.pth was saved from nn.DataParallel: keys start with "module.".
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / CRAFT_WEIGHTS_FILE)
    scorer = make_scorer("ocr", "craft", weights_dir=tmp_path, device="cpu", canvas_size=128)
    frame, _ = _text_frame(160, 120)
    boxes = scorer.detect_batch([frame, frame])
    assert len(boxes) == 2
    loaded = scorer._net.state_dict()
    assert all(torch.equal(loaded[key].cpu(), value) for key, value in state.items())
    ratio = scorer.score([frame], [])
    assert 0.0 <= ratio <= 1.0
    torch.save({"not": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth is not a CRAFT state dict"):
        make_scorer("ocr", "craft", weights_dir=tmp_path, weights_path="bad.pth").setup()


# --- Aesthetic -------------------------------------------------------------------------------------


def test_colourfulness_closed_form():
    assert colourfulness(np.full((8, 8, 3), 77, np.uint8)) == 0.0
    half = np.zeros((8, 8, 3), np.uint8)
    half[:, :4] = (255, 0, 0)
    half[:, 4:] = (0, 0, 255)
    # rg = R - G: 255 | 0; yb = (R + G) / 2 - B: 127.5 | -255 (Hasler & Suesstrunk 2003).
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert colourfulness(half) == pytest.approx(expected)


def test_classical_iq_prefers_well_exposed_colourful_sharp_frames():
    good = cv2.cvtColor(_texture(240, 320, seed=5), cv2.COLOR_RGB2HSV)
    good[..., 1] = 200  # saturated colours
    good = cv2.cvtColor(good, cv2.COLOR_HSV2RGB)
    checker = np.kron((np.indices((15, 20)).sum(axis=0) % 2), np.ones((16, 16)))[..., None]
    good = np.clip(good * (0.7 + 0.6 * checker), 0, 255).astype(np.uint8)  # strong edges
    bad = cv2.GaussianBlur(cv2.cvtColor(cv2.cvtColor(good, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) // 6, (0, 0), 5)
    good_score, bad_score = classical_iq(good), classical_iq(bad)
    assert 0.0 <= bad_score < good_score <= 10.0
    rule = keep_rule("aesthetic", "classical-iq")
    assert rule.keeps(good_score) and not rule.keeps(bad_score)
    parts = iq_components(bad)
    assert parts["colourfulness"] == 0.0 and parts["exposure"] < 0.3
    scorer = make_scorer("aesthetic")
    assert scorer.score([good, bad], []) == pytest.approx((good_score + bad_score) / 2)


def test_laion_clip_vit_l14_architecture_matches_the_head_on_meta():
    import open_clip
    from open_clip.transformer import QuickGELU

    with torch.device("meta"):
        clip = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None, device="meta")
    assert clip.visual.output_dim == 768 and clip.visual.image_size == (224, 224)
    assert isinstance(clip.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)  # as OpenAI's weights need
    head = make_aesthetic_head()
    assert [k for k in head.state_dict() if k.endswith("weight")] == [
        f"layers.{i}.weight" for i in (0, 2, 4, 6, 7)  # the published head's key names
    ]
    assert head.state_dict()["layers.0.weight"].shape == (1024, 768)


@pytest.fixture(scope="module")
def tiny_clip_name(tmp_path_factory):
    """A tiny open_clip architecture (same classes as ViT-L-14, 2 small layers) registered by name."""
    import open_clip

    config = {
        "embed_dim": 32,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    path = tmp_path_factory.mktemp("clipcfg") / "scores-test-tiny-clip.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return path.stem


def test_laion_aesthetic_loads_clip_and_head_files(tmp_path, tiny_clip_name):
    import open_clip
    from PIL import Image
    from safetensors.torch import save_file

    torch.manual_seed(0)
    clip, _, preprocess = open_clip.create_model_and_transforms(tiny_clip_name, pretrained=None)
    clip.eval()
    (tmp_path / "clip").mkdir()
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, tmp_path / "clip" / "model.safetensors")
    head = make_aesthetic_head(32).eval()
    torch.save(head.state_dict(), tmp_path / "head.pth")

    scorer = make_scorer(
        "aesthetic", "laion-clip-vit-l14", weights_dir=tmp_path, clip_path="clip/model.safetensors",
        head_path="head.pth", clip_model=tiny_clip_name, device="cpu",
    )
    frames = [_texture(240, 320, seed=s) for s in (6, 7, 8)]
    got = scorer.frame_scores(frames)
    with torch.no_grad():  # the predictor by hand: CLIP preprocessing, L2-normalised embedding, head
        embedding = clip.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in frames]))
        expected = head(embedding / embedding.norm(dim=-1, keepdim=True)).squeeze(-1).tolist()
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert scorer.score(frames, []) == pytest.approx(np.mean(expected), rel=1e-4, abs=1e-5)

    torch.save(make_aesthetic_head(768).state_dict(), tmp_path / "head768.pth")
    mismatched = make_scorer(
        "aesthetic", "laion-clip-vit-l14", weights_dir=tmp_path, clip_path="clip/model.safetensors",
        head_path="head768.pth", clip_model=tiny_clip_name,
    )
    with pytest.raises(ValueError, match="takes 768-d embeddings but scores-test-tiny-clip gives 32-d"):
        mismatched.setup()


# --- Real footage and the generated sample ---------------------------------------------------------


def test_embedded_scorers_on_real_dance_videos(capsys):
    """Real dance videos: sharp enough, moving, little text, decent exposure (printed for the record)."""
    REAL_VIDEOS = sorted(shared_path(f"{REAL}/00001.mp4").parent.glob("*.mp4"))
    scorers = [make_scorer(metric) for metric in ("blur", "flow", "aesthetic")]
    ocr = make_scorer("ocr")
    results = {}
    for path in REAL_VIDEOS:  # 8 frames and pairs of the first 33; OCR (the slow one) on frame 16 only
        results[path.name] = score_clip(path, 0, 33, scorers, FrameSampling(every_k=4, max_frames=8))
        results[path.name] |= score_clip(path, 16, 17, [ocr])
    with capsys.disabled():
        for name, scores in results.items():
            print(f"\n  {name}: " + ", ".join(f"{metric} {value:.3f}" for metric, value in scores.items()), end="")
        print()
    for scores in results.values():
        assert 50 < scores["blur"] < 5000
        assert 0.4 <= scores["flow"] < 30
        assert scores["ocr"] <= 0.05
        assert 4.0 <= scores["aesthetic"] <= 10.0
    assert np.median([s["blur"] for s in results.values()]) >= 100


@pytest.fixture(scope="module")
def demo_sample(tmp_path_factory):
    from pipeline.synthetic import make_sample

    return make_sample(tmp_path_factory.mktemp("demo"), preset="demo")


def test_demo_sample_shots_meet_their_expected_fate_slow(demo_sample):
    """SLOW (~20-30 s: renders the demo sample): blur / text / static shots fail their metric, normal shots pass all."""
    scorers = [make_scorer(metric) for metric in ("blur", "flow", "ocr", "aesthetic")]
    failing_metric = {"blur": "blur", "text": "ocr", "static": "flow"}
    checked = set()
    for video in demo_sample.videos:
        # Every shot of the effects video, and the first sub-clip of every other video.
        shots = video.shots if video.name == "effects" else video.shots[:1]
        for shot in shots:
            if shot.kind not in ("normal", *failing_metric) or not shot.expected_subclips:
                continue
            start, end = shot.expected_subclips[0]
            scores = score_clip(demo_sample.video_path(video), start, end, scorers, FrameSampling(every_k=8, max_frames=3))
            kept = {s.metric: keep_rule(s.metric, s.backend).keeps(scores[s.metric]) for s in scorers}
            if shot.kind == "normal":
                assert all(kept.values()), (video.name, start, scores)
            else:
                assert not kept[failing_metric[shot.kind]], (video.name, shot.kind, scores)
                assert sum(not k for k in kept.values()) == 1, (video.name, shot.kind, scores)
            checked.add(shot.kind)
    assert checked == {"normal", "blur", "text", "static"}


def test_rapidocr_drops_a_frame_sized_box_but_keeps_text_lines():
    """DB finds text lines; one box over half the frame (seen on single generated frames) is not text."""
    from types import SimpleNamespace

    from pipeline.curation.scores.ocr import RapidOCRText

    line = [[20.0, 100.0], [300.0, 100.0], [300.0, 130.0], [20.0, 130.0]]
    whole = [[0.0, 0.0], [319.0, 0.0], [319.0, 239.0], [0.0, 239.0]]
    scorer = RapidOCRText()
    scorer._engine = lambda *args, **kwargs: SimpleNamespace(boxes=np.array([whole, line]))
    frame = np.zeros((240, 320, 3), np.uint8)
    assert scorer.frame_scores([frame])[0] == pytest.approx(281 * 31 / (320 * 240), rel=0.02)
    with pytest.raises(ValueError, match="max_box_fraction"):
        RapidOCRText(max_box_fraction=0.0)


# --- Subject and camera motion (issue 16: beyond the paper's whole-frame flow) ------------------------


def _small_mover(num_frames: int, step: int = 3, camera: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """320x240 frames: a textured background moving by ``camera`` px/frame to the left (0: static camera)
    and a 40x80 textured 'person' moving ``step`` px/frame to the right over it; and its boxes (T, 4)."""
    background = _texture(240, 320 + camera * num_frames + 8, seed=7)
    person = _texture(80, 40, seed=8)
    frames, boxes = [], []
    for t in range(num_frames):
        frame = background[:, camera * t : camera * t + 320].copy()
        x, y = 60 + step * t, 120
        frame[y : y + 80, x : x + 40] = person
        frames.append(frame)
        boxes.append((x, y, x + 40, y + 80))
    return np.stack(frames), np.array(boxes, np.float64)


def test_static_camera_moving_subject_passes_subject_flow_and_fails_whole_frame_flow(tmp_path):
    from pipeline.curation.filters import Thresholds, first_failure

    frames, boxes = _small_mover(24)
    path = write_video(tmp_path / "juggler.mp4", frames)
    timings = {}
    scores = score_clip(path, 0, 24, [make_scorer("flow"), make_scorer("blur")], flow_long_side=None, boxes=boxes,
                        timings=timings)
    assert set(timings) == {"decode", "flow", "blur"} and all(t > 0 for t in timings.values())  # where time goes
    del scores["blur"]
    assert scores["subject_flow"] > 1.0  # 3 px/frame inside a box twice the mover's area (grown, margin)
    assert scores["flow"] < 0.4 * 1.0  # the mover is 4% of the frame: the whole frame barely moves
    assert scores["camera_flow"] == pytest.approx(0.0, abs=0.05)  # static camera
    plain = score_clip(path, 0, 24, [make_scorer("flow")], flow_long_side=None)
    assert plain == {"flow": pytest.approx(scores["flow"], rel=1e-6)}  # without boxes: the paper's score alone
    clip = {"pose_uncertainty": 0.0, "aesthetic": 9.0, "blur": 1e3, "text_ratio": 0.0, **scores}
    assert first_failure(clip, Thresholds(), cut=1.0) is None  # subject flow (default) keeps it
    assert first_failure(clip, Thresholds(flow_region="frame"), cut=1.0) == "flow"  # the paper's whole frame drops it


def test_camera_flow_is_the_background_motion(tmp_path):
    frames, boxes = _small_mover(16, step=0, camera=2)  # a pan past a person standing still in the frame
    path = write_video(tmp_path / "pan.mp4", frames)
    scores = score_clip(path, 0, 16, [make_scorer("flow")], flow_long_side=None, boxes=boxes)
    assert scores["camera_flow"] == pytest.approx(2.0, abs=0.2)
    assert scores["flow"] == pytest.approx(2.0, abs=0.4)


def test_subject_boxes_project_joints_through_the_app_b_camera():
    from pipeline.core.camera import camera_intrinsics, project
    from pipeline.curation.scores.score_clips import subject_boxes

    rng = np.random.default_rng(0)
    joints = rng.normal([0.0, 0.0, 4.0], 0.5, size=(5, 24, 3))
    joints[2] = np.nan
    boxes = subject_boxes(joints, 640, 480)
    pixels = project(joints[0], camera_intrinsics(640, 480))
    np.testing.assert_allclose(boxes[0], [*pixels.min(0), *pixels.max(0)])
    assert np.isnan(boxes[2]).all() and np.isfinite(boxes[[0, 1, 3, 4]]).all()
