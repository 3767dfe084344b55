"""The six metrics of App. J against closed forms and independent computations.

Networks are tiny or random ones saved in the real file formats into a temporary
weights folder and loaded through the production code path; nothing is downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import lpips as lpips_package
import numpy as np
import pytest
import torch
import torchvision
from scipy.ndimage import gaussian_filter

from pipeline.evaluation.metrics import (
    ALEXNET_WEIGHTS_FILE,
    I3D_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_FILE,
    MissingWeights,
    NotEnoughSamples,
    evaluate_videos,
    fid_from_features,
    fid_vid_from_features,
    frechet_distance,
    fvd_from_features,
    gaussian_stats,
    i3d_segment_features,
    inception_features,
    load_i3d,
    load_inception,
    load_lpips_alexnet,
    lpips_per_frame,
    psnr,
    psnr_per_frame,
    split_segments,
    ssim,
    ssim_per_frame,
)


def textured_video(frames: int = 3, size: int = 64, seed: int = 0, low: int = 0, high: int = 256) -> np.ndarray:
    """Smooth random colour texture, uint8 (T, size, size, 3)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(low, high, size=(frames, size, size, 3))
    smooth = gaussian_filter(noise, sigma=(0, 2, 2, 0))
    lo, hi = smooth.min(), smooth.max()
    return np.round(low + (smooth - lo) / (hi - lo) * (high - 1 - low)).astype(np.uint8)


# ---------------------------------------------------------------- PSNR (Eq. 11-12)

def test_psnr_constant_offset_matches_hand_value():
    reference = textured_video(high=246)
    generated = reference + np.uint8(10)  # MSE = 100 exactly on every frame
    # rtol 1e-6: torchmetrics turns log(10) into a float32 constant.
    np.testing.assert_allclose(psnr_per_frame(generated, reference), 20 * math.log10(255 / 10), rtol=1e-6)
    assert psnr(generated, reference) == pytest.approx(20 * math.log10(25.5), rel=1e-6)


def test_psnr_identical_frames_are_infinite():
    video = textured_video()
    assert np.isinf(psnr_per_frame(video, video)).all()
    assert psnr(video, video) == math.inf


def test_psnr_gaussian_noise_level():
    rng = np.random.default_rng(1)
    reference = np.full((4, 64, 64, 3), 128, np.uint8)
    generated = np.clip(np.round(128 + rng.normal(0, 5, reference.shape)), 0, 255).astype(np.uint8)
    mse = ((generated.astype(np.float64) - reference) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(psnr_per_frame(generated, reference), 10 * np.log10(255**2 / mse), rtol=1e-6)
    assert psnr(generated, reference) == pytest.approx(20 * math.log10(255 / 5), abs=0.1)


def test_paired_metrics_reject_bad_input():
    video = textured_video()
    with pytest.raises(ValueError, match="same shape"):
        psnr(video, video[:2])
    with pytest.raises(ValueError, match="uint8"):
        ssim(video.astype(np.float32), video)


# ---------------------------------------------------------------- SSIM (Eq. 13-14)

def hand_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 on one channel: 11 x 11 Gaussian (sigma 1.5), valid region only."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    blur = lambda im: gaussian_filter(im, 1.5, truncate=3.5)  # radius 5: 11 taps
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return ssim_map[5:-5, 5:-5].mean()


def test_ssim_identical_is_one():
    video = textured_video()
    np.testing.assert_allclose(ssim_per_frame(video, video), 1.0, atol=1e-12)
    assert ssim(video, video, mode="grayscale") == pytest.approx(1.0)


def test_ssim_constant_images_closed_form():
    a, b = 100.0, 110.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: only the luminance term is left
    gen, ref = np.full((2, 32, 32, 3), a, np.uint8), np.full((2, 32, 32, 3), b, np.uint8)
    np.testing.assert_allclose(ssim_per_frame(gen, ref), expected, rtol=1e-10)


def test_ssim_per_channel_matches_hand_computation():
    reference = textured_video(frames=2, seed=2)
    rng = np.random.default_rng(3)
    generated = np.clip(reference + rng.normal(0, 12, reference.shape), 0, 255).astype(np.uint8)
    expected = [np.mean([hand_ssim(generated[t, ..., c], reference[t, ..., c]) for c in range(3)]) for t in range(2)]
    np.testing.assert_allclose(ssim_per_frame(generated, reference), expected, rtol=1e-8)
    assert 0.2 < ssim(generated, reference) < 0.99


def test_ssim_grayscale_mode_equals_per_channel_on_gray_frames():
    gray = textured_video(frames=2, seed=4)[..., :1].repeat(3, axis=-1)
    noisy = np.clip(gray.astype(int) + np.random.default_rng(5).integers(-20, 21, gray.shape[:3])[..., None], 0, 255)
    noisy = noisy.astype(np.uint8)
    np.testing.assert_allclose(ssim_per_frame(noisy, gray, "grayscale"), ssim_per_frame(noisy, gray), rtol=1e-10)
    with pytest.raises(ValueError, match="ssim mode"):
        ssim(noisy, gray, mode="lab")


# ---------------------------------------------------------------- Fréchet distance (Eq. 17-19)

@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_diagonal_closed_form(method):
    rng = np.random.default_rng(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2), method=method)
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("method", ["sqrtm", "eigh"])
def test_frechet_distance_matches_direct_numpy(method):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Tr((S1 S2)^1/2) = sum of square roots of the (real, non-negative) eigenvalues of S1 S2.
    trace_root = np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).real).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2) - 2 * trace_root
    assert frechet_distance(mu1, sigma1, mu2, sigma2, method=method) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, sigma1, mu1, sigma1, method=method) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_singular_covariances_are_finite():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(3, 10)), rng.normal(size=(4, 10)) + 1.0  # rank 2 and 3 in 10 dimensions
    by_sqrtm = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    by_eigh = frechet_distance(*gaussian_stats(x), *gaussian_stats(y), method="eigh")
    assert np.isfinite(by_sqrtm) and by_sqrtm == pytest.approx(by_eigh, rel=1e-4)


def test_gaussian_stats_and_shape_errors():
    x = np.random.default_rng(9).normal(size=(20, 4))
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x.T))
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(mu, sigma, mu[:3], sigma)


# ---------------------------------------------------------------- FVD segments and distribution metrics

def test_fvd_segments_are_non_overlapping_and_drop_the_remainder():
    video = np.arange(40, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    segments = split_segments(video)
    assert segments.shape == (2, 16, 8, 8, 3)
    assert segments[0, :, 0, 0, 0].tolist() == list(range(16))
    assert segments[1, :, 0, 0, 0].tolist() == list(range(16, 32))
    assert split_segments(video[:15]).shape[0] == 0


def test_fid_vid_averages_segments_per_video_and_fvd_pools_them():
    rng = np.random.default_rng(10)
    gen = [rng.normal(size=(n, 3)) for n in (2, 3, 1)]
    ref = [rng.normal(size=(n, 3)) + 0.5 for n in (2, 2, 0)]  # a video with no segment is left out
    pooled = frechet_distance(*gaussian_stats(np.concatenate(gen)), *gaussian_stats(np.concatenate(ref)))
    means = frechet_distance(*gaussian_stats(np.stack([g.mean(0) for g in gen])),
                             *gaussian_stats(np.stack([r.mean(0) for r in ref[:2]])))
    assert fvd_from_features(gen, ref) == pytest.approx(pooled)
    assert fid_vid_from_features(gen, ref) == pytest.approx(means)
    with pytest.raises(NotEnoughSamples, match="1 generated"):
        fid_from_features(gen[2], ref[0])


# ---------------------------------------------------------------- networks in their real formats

class TinyI3D(torch.nn.Module):
    """StyleGAN-V's I3D call signature on a tiny network: (B, 3, 16, H, W) on 0-255 -> (B, 400)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        torch._assert(rescale and resize and return_features, "expected rescale, resize, return_features")
        torch._assert(x.shape[1] == 3 and x.shape[2] == 16, "expected (B, 3, 16, H, W) clips")
        torch._assert(bool(x.max() > 1.0), "expected input on 0-255")
        return self.proj((x / 127.5 - 1).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """A weights folder with a random AlexNet backbone (torchvision key names) and a scripted tiny I3D."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None)
    features_only = {k: v for k, v in alexnet.state_dict().items() if k.startswith("features.")}
    torch.save(features_only, folder / ALEXNET_WEIGHTS_FILE)
    torch.jit.save(torch.jit.script(TinyI3D()), str(folder / I3D_WEIGHTS_FILE))
    return folder


@pytest.fixture(scope="module")
def inception_dir(tmp_path_factory) -> Path:
    """A full-size random FID Inception state dict (its channel counts are fixed): ~95 MB, ~1 s to build."""
    folder = tmp_path_factory.mktemp("inception")
    torch.manual_seed(0)
    net = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    torch.save(net.state_dict(), folder / INCEPTION_WEIGHTS_FILE)  # pytorch-fid's key names
    return folder


def hand_lpips(backbone_file: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LPIPS v0.1 written out from torchvision's AlexNet and the lpips wheel's linear heads."""
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(backbone_file, weights_only=True), strict=False)
    heads = torch.load(Path(lpips_package.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu",
                       weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = torch.tensor([0.458, 0.448, 0.450])[None, :, None, None]

    def relu_features(video):
        h = (torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1 - shift) / scale
        outputs = []
        for index, layer in enumerate(alexnet.features):
            h = layer(h)
            if index in (1, 4, 7, 9, 11):
                outputs.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return outputs

    with torch.no_grad():
        total = 0
        for k, (a, b) in enumerate(zip(relu_features(x), relu_features(y))):
            weight = heads[f"lin{k}.model.1.weight"]
            total = total + ((a - b) ** 2 * weight.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total.double().numpy()


def test_lpips_loads_local_backbone_and_matches_hand_computation(weights_dir):
    network = load_lpips_alexnet(weights_dir)
    reference = textured_video(frames=3, seed=11)
    generated = textured_video(frames=3, seed=12)
    assert np.abs(lpips_per_frame(network, reference, reference)).max() < 1e-6
    forward = lpips_per_frame(network, generated, reference, batch_size=2)
    np.testing.assert_allclose(forward, lpips_per_frame(network, reference, generated), rtol=1e-5)
    np.testing.assert_allclose(forward, hand_lpips(weights_dir / ALEXNET_WEIGHTS_FILE, generated, reference),
                               rtol=1e-4)
    assert (forward > 0).all()


def test_lpips_rejects_a_file_without_alexnet_features(tmp_path):
    torch.save({"classifier.1.weight": torch.zeros(2, 2)}, tmp_path / ALEXNET_WEIGHTS_FILE)
    with pytest.raises(ValueError, match="features.0.weight"):
        load_lpips_alexnet(tmp_path)


def test_i3d_scripted_module_gives_fvd_and_fid_vid(weights_dir):
    i3d = load_i3d(weights_dir)
    video = textured_video(frames=40, size=32, seed=13)
    features = i3d_segment_features(i3d, video)
    assert features.shape == (2, 400)
    plain = TinyI3D()
    plain.load_state_dict(i3d.state_dict())
    clips = torch.from_numpy(video[:32]).float().reshape(2, 16, 32, 32, 3).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        expected = plain(clips, True, True, True).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)

    real = [textured_video(frames=32, size=32, seed=s) for s in (20, 21, 22)]
    brighter = [np.clip(v.astype(int) + 40, 0, 255).astype(np.uint8) for v in real]
    same = evaluate_videos(real, real, weights_dir, metrics=("fvd", "fid_vid"), device="cpu")
    assert same["fvd"] == pytest.approx(0.0, abs=1e-4) and same["fid_vid"] == pytest.approx(0.0, abs=1e-4)
    shifted = evaluate_videos(brighter, real, weights_dir, metrics=("fvd", "fid_vid"), device="cpu",
                              frechet_method="eigh")
    assert shifted["fvd"] > 1e-3 and shifted["fid_vid"] > 1e-3


def test_inception_loads_pytorch_fid_key_names(inception_dir):
    network = load_inception(inception_dir)
    videos = [textured_video(frames=1, seed=30), textured_video(frames=1, seed=31)]
    features = inception_features(network, videos)
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])


def test_inception_rejects_a_state_dict_with_other_keys(tmp_path):
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / INCEPTION_WEIGHTS_FILE)
    with pytest.raises(ValueError, match="FID Inception"):
        load_inception(tmp_path)


# ---------------------------------------------------------------- missing weights and evaluate_videos

@pytest.mark.parametrize("loader, file_name", [
    (load_inception, INCEPTION_WEIGHTS_FILE), (load_i3d, I3D_WEIGHTS_FILE), (load_lpips_alexnet, ALEXNET_WEIGHTS_FILE),
])
def test_missing_weights_name_the_file(tmp_path, monkeypatch, loader, file_name):
    with pytest.raises(MissingWeights, match=file_name):
        loader(tmp_path)
    monkeypatch.delenv("MTVCRAFT_WEIGHTS", raising=False)
    with pytest.raises(MissingWeights, match=f"{file_name}.*MTVCRAFT_WEIGHTS"):
        loader(None)


def test_evaluate_videos_reports_every_metric(tmp_path, weights_dir):
    reference = [textured_video(frames=20, seed=40), textured_video(frames=20, seed=41)]
    generated = [np.clip(v.astype(int) + 10, 0, 255).astype(np.uint8) for v in reference]
    empty = evaluate_videos(generated, reference, tmp_path, device="cpu")
    assert list(empty) == ["psnr", "ssim", "lpips", "fid", "fvd", "fid_vid"]
    assert isinstance(empty["psnr"], float) and 0 < empty["ssim"] <= 1
    assert empty["lpips"].startswith("not computed: missing " + ALEXNET_WEIGHTS_FILE)
    assert empty["fid"].startswith("not computed: missing " + INCEPTION_WEIGHTS_FILE)
    assert empty["fvd"].startswith("not computed: missing " + I3D_WEIGHTS_FILE)
    assert empty["fid_vid"].startswith("not computed: missing " + I3D_WEIGHTS_FILE)

    found = evaluate_videos(generated, reference, weights_dir, metrics=("lpips", "fvd", "fid_vid"), device="cpu")
    assert isinstance(found["lpips"], float) and found["lpips"] > 0
    assert isinstance(found["fvd"], float) and isinstance(found["fid_vid"], float)  # 2 segments, 2 videos a side
    short = [v[:10] for v in reference]  # no 16-frame segment at all
    too_few = evaluate_videos(short, short, weights_dir, metrics=("fvd", "fid_vid"), device="cpu")
    assert too_few["fvd"].startswith("not computed: FVD") and "got 0 generated" in too_few["fvd"]
    assert too_few["fid_vid"].startswith("not computed: FID-VID")
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_videos(generated, reference, tmp_path, metrics=("is",))
    with pytest.raises(ValueError, match="video pair 1"):
        evaluate_videos(generated, [reference[0], reference[1][:5]], tmp_path, metrics=("psnr",))


def test_evaluate_videos_fid_pools_every_frame(monkeypatch, tmp_path):
    """FID wiring with a 4-d stand-in feature network (a real 2048-d sqrtm takes a minute on this CPU)."""
    import pipeline.evaluation.metrics as metrics

    def channel_stats(batch: torch.Tensor) -> torch.Tensor:  # uint8 (N, 3, H, W) -> (N, 4)
        x = batch.double()
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(1, 2, 3))[:, None]], dim=1)

    monkeypatch.setattr(metrics, "load_inception", lambda weights_dir, device: channel_stats)
    reference = [textured_video(frames=3, seed=50), textured_video(frames=2, seed=51)]
    generated = [textured_video(frames=4, seed=52)]
    got = evaluate_videos(generated, reference, tmp_path, metrics=("fid",), device="cpu")["fid"]
    features = lambda videos: np.concatenate([channel_stats(torch.from_numpy(v).permute(0, 3, 1, 2)).numpy()
                                              for v in videos])
    expected = frechet_distance(*gaussian_stats(features(generated)), *gaussian_stats(features(reference)))
    assert got == pytest.approx(expected, rel=1e-9)
