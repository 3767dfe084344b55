"""Distribution metrics: FID, FVD and FID-VID (App. J, Eq. 17-19).

Each fits a Gaussian to network features of the generated set and of the real
set and reports their Fréchet distance (``frechet.frechet_distance``):

- FID (Eq. 17): Inception-V3 2048-d pool features of every frame of every video.
- FVD (Eq. 18): I3D 400-d features of non-overlapping 16-frame segments; a
  video of T frames gives T // 16 segments, and its last T % 16 frames are
  dropped (a 40-frame video gives 2 segments, frames 0-15 and 16-31).
- FID-VID (Eq. 19, "FVD-VID" in App. J): the mean of a video's I3D segment
  features is one descriptor per video; the Gaussians are fitted over videos.
  This follows the paper. DisCo's FID-VID, which most animation papers report,
  uses a Kinetics 3D ResNet-50 at 112 x 112 instead, so numbers are not
  directly comparable with DisCo-protocol tables.

The sets need not be paired or of equal size, but each needs at least two
samples (frames, segments or videos) for a covariance.
"""

from __future__ import annotations

import numpy as np
import torch

from .frame_metrics import check_video
from .frechet import FrechetMethod, frechet_distance, gaussian_stats

SEGMENT_FRAMES = 16  # I3D clip length for FVD (App. J): non-overlapping 16-frame segments
I3D_CALL = {"rescale": True, "resize": True, "return_features": True}  # StyleGAN-V's detector kwargs


# Feature dimension of each distribution metric's network (Inception-V3 pool, I3D logits): a covariance fitted
# to fewer samples than this is rank-deficient, and its Fréchet distance is not comparable with one fitted to
# thousands (benchmark_eval's report says so next to the number).
FEATURE_DIMS = {"fid": 2048, "fvd": 400, "fid_vid": 400}
SAMPLE_UNITS = {"fid": "frames", "fvd": "16-frame segments", "fid_vid": "videos"}


def sample_counts(videos: list[np.ndarray]) -> dict[str, int]:
    """How many samples each distribution metric fits its Gaussian to, for a set of (T, H, W, 3) videos:
    FID every frame, FVD every non-overlapping 16-frame segment, FID-VID every video with one segment."""
    lengths = [len(v) for v in videos]
    return {"fid": sum(lengths), "fvd": sum(n // SEGMENT_FRAMES for n in lengths),
            "fid_vid": sum(1 for n in lengths if n >= SEGMENT_FRAMES)}


class NotEnoughSamples(ValueError):
    """Too few frames, segments or videos to fit a covariance; the message says how many there were."""


def split_segments(video: np.ndarray, length: int = SEGMENT_FRAMES) -> np.ndarray:
    """Non-overlapping ``length``-frame segments (S, length, H, W, 3); the T % length remainder is dropped."""
    video = check_video(video)
    if length < 1:
        raise ValueError(f"segment length must be >= 1; got {length}")
    count = video.shape[0] // length
    return video[: count * length].reshape(count, length, *video.shape[1:])


@torch.inference_mode()
def inception_features(
    network: torch.nn.Module, videos: list[np.ndarray], batch_size: int = 32, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Inception 2048-d features of every frame of every video, (total frames, 2048)."""
    if not videos:
        raise ValueError("videos must be a non-empty list of uint8 (T, H, W, 3) arrays")
    features = []
    for index, video in enumerate(videos):
        video = check_video(video, f"video {index}")
        for start in range(0, video.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(video[start : start + batch_size])).to(device)
            output = network(batch.permute(0, 3, 1, 2).contiguous())  # uint8 (N, 3, H, W)
            output = output[0] if isinstance(output, (tuple, list)) else output
            features.append(output.reshape(output.shape[0], -1).double().cpu())
    return torch.cat(features).numpy()


@torch.inference_mode()
def i3d_segment_features(
    network: torch.nn.Module,
    video: np.ndarray,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    length: int = SEGMENT_FRAMES,
) -> np.ndarray:
    """I3D features of each 16-frame segment of one video, (S, D) with D = 400 for the real I3D.

    Segments go to the network as float (B, 3, 16, H, W) on 0-255 with StyleGAN-V's
    ``rescale=True, resize=True, return_features=True``: the network itself maps
    to [-1, 1] and resizes to 224 x 224. A video shorter than 16 frames gives (0, 0).
    """
    segments = split_segments(video, length)
    features = []
    for start in range(0, segments.shape[0], batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(segments[start : start + batch_size])).to(device)
        clips = batch.permute(0, 4, 1, 2, 3).to(torch.float32)  # (B, 3, T, H, W)
        output = network(clips, **I3D_CALL)
        features.append(output.reshape(output.shape[0], -1).double().cpu())
    return torch.cat(features).numpy() if features else np.zeros((0, 0))


def _distance(generated: np.ndarray, reference: np.ndarray, what: str, method: FrechetMethod) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D)."""
    if len(generated) < 2 or len(reference) < 2:
        raise NotEnoughSamples(
            f"{what} needs at least 2 per side; got {len(generated)} generated and {len(reference)} reference"
        )
    return frechet_distance(*gaussian_stats(generated), *gaussian_stats(reference), method=method)


def fid_from_features(generated: np.ndarray, reference: np.ndarray, method: FrechetMethod = "sqrtm") -> float:
    """FID (Eq. 17) from per-frame Inception features of the two sets."""
    return _distance(generated, reference, "FID: frames", method)


def fvd_from_features(
    generated: list[np.ndarray], reference: list[np.ndarray], method: FrechetMethod = "sqrtm"
) -> float:
    """FVD (Eq. 18) from per-video segment features (one (S_i, D) array per video): all segments pooled."""
    gen, ref = _pool_segments(generated), _pool_segments(reference)
    return _distance(gen, ref, "FVD: 16-frame segments", method)


def fid_vid_from_features(
    generated: list[np.ndarray], reference: list[np.ndarray], method: FrechetMethod = "sqrtm"
) -> float:
    """FID-VID (Eq. 19) from per-video segment features: one mean descriptor per video.

    Videos shorter than 16 frames have no segment and are left out.
    """
    gen, ref = _video_means(generated), _video_means(reference)
    return _distance(gen, ref, "FID-VID: videos with at least one 16-frame segment", method)


def _pool_segments(per_video: list[np.ndarray]) -> np.ndarray:
    kept = [f for f in per_video if len(f)]
    return np.concatenate(kept) if kept else np.zeros((0, 0))


def _video_means(per_video: list[np.ndarray]) -> np.ndarray:
    kept = [f.mean(axis=0) for f in per_video if len(f)]
    return np.stack(kept) if kept else np.zeros((0, 0))
