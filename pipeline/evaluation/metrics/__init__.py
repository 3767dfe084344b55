"""The paper's six evaluation metrics (App. J, Eq. 11-19) and ``evaluate_videos``, which computes them all.

Paired, per frame (``frame_metrics``): PSNR, SSIM, LPIPS. Distribution
(``distribution_metrics``): FID, FVD, FID-VID, all through one Fréchet distance
(``frechet``). Networks load only from the weights folder (``feature_networks``);
a metric whose file is missing is reported as "not computed: missing <file> ...",
never computed with another network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from .distribution_metrics import (
    FEATURE_DIMS,
    SAMPLE_UNITS,
    SEGMENT_FRAMES,
    NotEnoughSamples,
    fid_from_features,
    fid_vid_from_features,
    fvd_from_features,
    i3d_segment_features,
    inception_features,
    sample_counts,
    split_segments,
)
from .feature_networks import (
    ALEXNET_WEIGHTS_FILE,
    I3D_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_FILE,
    WEIGHT_FILES,
    MissingWeights,
    load_i3d,
    load_inception,
    load_lpips_alexnet,
    weight_file,
)
from .frame_metrics import (
    SSIM_MODES,
    SsimMode,
    check_pair,
    lpips_distance,
    lpips_per_frame,
    psnr,
    psnr_per_frame,
    ssim,
    ssim_per_frame,
)
from .frechet import FrechetMethod, frechet_distance, gaussian_stats

METRICS = ("psnr", "ssim", "lpips", "fid", "fvd", "fid_vid")
PAIRED_METRICS = ("psnr", "ssim", "lpips")
NOT_COMPUTED = "not computed: "


def evaluate_videos(
    generated: list[np.ndarray],
    reference: list[np.ndarray],
    weights_dir: str | os.PathLike | None = None,
    metrics: Sequence[str] = METRICS,
    ssim_mode: SsimMode = "per_channel",
    device: str | None = None,
    frechet_method: FrechetMethod = "sqrtm",
    batch_size: int = 16,
) -> dict[str, float | str]:
    """Every requested metric's value, or the string "not computed: <why>".

    ``generated[i]`` and ``reference[i]`` are uint8 (T, H, W, 3) videos of the
    same shape when a paired metric (psnr, ssim, lpips) is requested; each paired
    metric is averaged over frames per video (Eq. 12, 14, 16), then over videos.
    FID pools all frames, FVD all 16-frame segments, FID-VID one descriptor per
    video. ``weights_dir`` None means ``$MTVCRAFT_WEIGHTS``. Networks load once per
    call; ``device`` None means CUDA when available. A missing weight file or too
    few samples for a covariance gives the "not computed" string for that metric.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {METRICS}")
    if not generated or not reference:
        raise ValueError("generated and reference must be non-empty lists of uint8 (T, H, W, 3) videos")
    if any(m in PAIRED_METRICS for m in metrics):
        if len(generated) != len(reference):
            raise ValueError(
                f"paired metrics need one reference per generated video; got {len(generated)} and {len(reference)}"
            )
        for i, (gen, ref) in enumerate(zip(generated, reference)):
            try:
                check_pair(gen, ref)
            except ValueError as error:
                raise ValueError(f"video pair {i}: {error}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pairs = list(zip(generated, reference))
    results: dict[str, float | str] = {}

    if "psnr" in metrics:
        results["psnr"] = float(np.mean([psnr(g, r) for g, r in pairs]))
    if "ssim" in metrics:
        results["ssim"] = float(np.mean([ssim(g, r, ssim_mode) for g, r in pairs]))
    if "lpips" in metrics:
        try:
            network = load_lpips_alexnet(weights_dir, device)
            scores = [lpips_distance(network, g, r, batch_size=batch_size, device=device) for g, r in pairs]
            results["lpips"] = float(np.mean(scores))
        except MissingWeights as reason:
            results["lpips"] = f"{NOT_COMPUTED}{reason}"
    if "fid" in metrics:
        try:
            network = load_inception(weights_dir, device)
            gen = inception_features(network, generated, batch_size, device)
            ref = inception_features(network, reference, batch_size, device)
            results["fid"] = fid_from_features(gen, ref, frechet_method)
        except (MissingWeights, NotEnoughSamples) as reason:
            results["fid"] = f"{NOT_COMPUTED}{reason}"
    video_metrics = [m for m in ("fvd", "fid_vid") if m in metrics]
    if video_metrics:
        results.update(_i3d_metrics(generated, reference, weights_dir, video_metrics, device, frechet_method))
    return {m: results[m] for m in metrics}


def _i3d_metrics(generated, reference, weights_dir, wanted, device, method) -> dict[str, float | str]:
    """FVD and/or FID-VID from one pass of I3D over every 16-frame segment."""
    try:
        network = load_i3d(weights_dir, device)
    except MissingWeights as reason:
        return {m: f"{NOT_COMPUTED}{reason}" for m in wanted}
    gen = [i3d_segment_features(network, v, device=device) for v in generated]
    ref = [i3d_segment_features(network, v, device=device) for v in reference]
    formulas = {"fvd": fvd_from_features, "fid_vid": fid_vid_from_features}
    out: dict[str, float | str] = {}
    for name in wanted:
        try:
            out[name] = formulas[name](gen, ref, method)
        except NotEnoughSamples as reason:
            out[name] = f"{NOT_COMPUTED}{reason}"
    return out


__all__ = [
    "ALEXNET_WEIGHTS_FILE", "FEATURE_DIMS", "I3D_WEIGHTS_FILE", "SAMPLE_UNITS", "sample_counts", "INCEPTION_WEIGHTS_FILE", "METRICS", "NOT_COMPUTED",
    "SEGMENT_FRAMES", "SSIM_MODES", "WEIGHT_FILES", "MissingWeights", "NotEnoughSamples",
    "evaluate_videos", "fid_from_features", "fid_vid_from_features", "frechet_distance", "fvd_from_features",
    "gaussian_stats", "i3d_segment_features", "inception_features", "load_i3d", "load_inception",
    "load_lpips_alexnet", "lpips_distance", "lpips_per_frame", "psnr", "psnr_per_frame", "split_segments",
    "ssim", "ssim_per_frame", "weight_file",
]
