"""Paired per-frame metrics: PSNR, SSIM and LPIPS (App. J, Eq. 11-16).

Each compares a generated video with its ground-truth video frame by frame and
averages over the frames, giving one number per video. Videos are uint8 RGB
arrays of shape (T, H, W, 3); the two videos of a pair must have the same shape.
PSNR (torchmetrics) and SSIM (kornia) run in float64 on the CPU: in float32,
flat regions (white studio backgrounds) shift SSIM by up to 4e-4. LPIPS runs the
lpips v0.1 AlexNet network (see ``feature_networks.load_lpips_alexnet``).
"""

from __future__ import annotations

from typing import Literal

import cv2
import kornia
import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

SsimMode = Literal["per_channel", "grayscale"]
SSIM_MODES = ("per_channel", "grayscale")
PEAK = 255.0
SSIM_WINDOW = 11  # Gaussian window of Wang et al. (sigma 1.5)


def check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    """``video`` as a uint8 array (T, H, W, 3); a clear error for anything else."""
    array = np.asarray(video)
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB frames (T, H, W, 3) on 0-255; got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise ValueError(f"{name} must have shape (T, H, W, 3) with T >= 1; got {array.shape}")
    return array


def check_pair(generated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both videos checked, and of the same shape (paired metrics compare frame t with frame t)."""
    generated, reference = check_video(generated, "generated"), check_video(reference, "reference")
    if generated.shape != reference.shape:
        raise ValueError(f"generated {generated.shape} and reference {reference.shape} must have the same shape")
    return generated, reference


def _channels_first(video: np.ndarray) -> torch.Tensor:
    """(T, H, W, C) uint8 -> (T, C, H, W) float64 on 0-255."""
    return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).to(torch.float64)


def psnr_per_frame(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR of each frame on 0-255 (Eq. 11-12), shape (T,).

    MSE averages over H, W and the 3 channels (Eq. 11). Identical frames have
    MSE 0 and PSNR ``inf`` (Eq. 12 taken literally): no cap is applied, so a
    video whose every frame is exact reports ``inf`` rather than an arbitrary
    ceiling such as 100 dB.
    """
    generated, reference = check_pair(generated, reference)
    values = peak_signal_noise_ratio(
        _channels_first(generated), _channels_first(reference), data_range=PEAK, reduction="none", dim=(1, 2, 3)
    )
    return values.numpy()


def psnr(generated: np.ndarray, reference: np.ndarray) -> float:
    """Video PSNR: the mean over frames of the per-frame PSNR (``inf`` if any frame is exact)."""
    return float(np.mean(psnr_per_frame(generated, reference)))


def _grayscale(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB -> (T, H, W, 1) uint8 luma (ITU-R BT.601 weights, OpenCV rounding)."""
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video])[..., None]


def ssim_per_frame(generated: np.ndarray, reference: np.ndarray, mode: SsimMode = "per_channel") -> np.ndarray:
    """SSIM of each frame (Wang et al. 2004: Gaussian window 11 x 11, sigma 1.5, K1 0.01, K2 0.03), shape (T,).

    ``mode="per_channel"`` follows the paper (Eq. 13-14): SSIM on each colour
    channel separately, averaged over the channels. ``mode="grayscale"`` is
    DisCo's evaluation: SSIM on the uint8 luma image. The SSIM map is averaged
    over the valid region (5 pixels cropped at each border), as in Wang's code and
    scikit-image (``gaussian_weights=True, use_sample_covariance=False``); torchmetrics
    1.9 would average the reflect-padded border too.
    """
    generated, reference = check_pair(generated, reference)
    if mode not in SSIM_MODES:
        raise ValueError(f"ssim mode = {mode!r}; choose one of {SSIM_MODES}")
    if mode == "grayscale":
        generated, reference = _grayscale(generated), _grayscale(reference)
    height, width = generated.shape[1:3]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels; got {height} x {width}")
    # SSIM^c_t of Eq. 13 for every frame t and channel c: a (T, C, H - 10, W - 10) map.
    ssim_map = kornia.metrics.ssim(
        _channels_first(generated), _channels_first(reference), SSIM_WINDOW, max_val=PEAK, eps=0.0, padding="valid"
    )
    return ssim_map.mean(dim=(1, 2, 3)).numpy()


def ssim(generated: np.ndarray, reference: np.ndarray, mode: SsimMode = "per_channel") -> float:
    """Video SSIM: the mean over frames (and channels) of the per-frame SSIM (Eq. 14)."""
    return float(np.mean(ssim_per_frame(generated, reference, mode)))


def to_lpips_input(video: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 in [-1, 1], the input range of lpips v0.1."""
    frames = torch.from_numpy(np.ascontiguousarray(video)).to(device).permute(0, 3, 1, 2)
    return frames.to(torch.float32) / 127.5 - 1.0


@torch.inference_mode()
def lpips_per_frame(
    network: torch.nn.Module,
    generated: np.ndarray,
    reference: np.ndarray,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """LPIPS distance of each frame pair (Eq. 15), shape (T,).

    ``network`` is an ``lpips.LPIPS`` AlexNet model (``load_lpips_alexnet``).
    It sums, over AlexNet's five ReLU layers, the spatial mean of the learned
    channel weights times the squared difference of the channel-normalised
    features. Eq. 15 writes a 1/L average and an L1 norm; published LPIPS
    numbers (the paper's, DisCo's) come from this package's sum, so we keep it.
    Frames must be at least about 32 x 32 pixels for AlexNet's pooling.
    """
    generated, reference = check_pair(generated, reference)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    distances = []
    for start in range(0, generated.shape[0], batch_size):
        stop = start + batch_size
        gen = to_lpips_input(generated[start:stop], device)
        ref = to_lpips_input(reference[start:stop], device)
        distances.append(network(gen, ref).flatten().double().cpu())
    return torch.cat(distances).numpy()


def lpips_distance(network: torch.nn.Module, generated: np.ndarray, reference: np.ndarray, **kwargs) -> float:
    """Video LPIPS: the mean over frames of the per-frame distance (Eq. 16)."""
    return float(np.mean(lpips_per_frame(network, generated, reference, **kwargs)))
