"""Video <-> latent maps for MV-DiT (paper Sec. 3.2, Eq. 3: z = VAE(x), z_ref = VAE(x_0)).

One small interface, ``LatentMap``, hides which map is used:

- ``VAELatentMap``: the backbone's own 3D VAE (``AutoencoderKLCogVideoX`` for the
  6B model, ``AutoencoderKLWan`` for the 18B model) loaded from a local diffusers
  folder with `load_vae` (never downloaded). Latents are scaled the way the
  backbone's pipeline scales them (CogVideoX: x ``scaling_factor``; Wan:
  (z - latents_mean) / latents_std).
- ``PoolLatentMap``: the embedded CPU option for tiny models, tests and the demo.
  It is a *fixed, parameter-free* map, not a learned VAE: frame 0 is kept alone
  and every following group of ``temporal`` frames is averaged (the causal
  1 + (T - 1) / 4 frame layout of the CogVideoX / Wan VAEs), each frame is cut
  into ``spatial`` x ``spatial`` blocks (8 like both VAEs) and each block keeps
  its ``frequencies`` x ``frequencies`` lowest 2D DCT-II coefficients per colour
  (``frequencies`` 1: the block mean, i.e. average pooling; 2: 12 values, the
  detail of a 4x smaller image), and those 3 k^2 values are embedded into
  ``latent_channels`` channels by a fixed orthonormal matrix (seeded). Decoding
  is the exact inverse on the kept content (transpose of the embedding, each
  latent frame repeated, the inverse DCT of each block with the dropped
  frequencies at 0; for k = 1 nearest upsampling).
  Differences from the paper's VAE: no learned compression (detail above the
  kept frequencies is lost, not encoded), no KL posterior (encode is
  deterministic), and channels beyond 3 k^2 carry no image content (their
  component is dropped on decoding). A tiny denoiser learns on it in minutes
  on a CPU, which a randomly initialised VAE would not allow.

Layout everywhere: frames uint8 (B, T, H, W, 3) <-> latents float (B, F, C, h, w)
(the CogVideoX transformer's layout; the Wan adapter permutes itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class LatentMap(Protocol):
    """What MV-DiT training and sampling need from a VAE."""

    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def encode(self, frames: torch.Tensor, generator: torch.Generator | None = None, mode: bool = False) -> torch.Tensor:
        ...

    def posterior(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance or None for a deterministic map), each like ``encode``'s output."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def spec(self) -> dict[str, Any]: ...


def latent_frames(num_frames: int, temporal_factor: int = 4) -> int:
    """1 + (T - 1) / temporal_factor latent frames; T - 1 must be a multiple of the factor."""
    if num_frames < 1 or (num_frames - 1) % temporal_factor:
        raise ValueError(
            f"the video VAE needs 1 + {temporal_factor}k frames (e.g. 33, 49, 81), got {num_frames}"
        )
    return 1 + (num_frames - 1) // temporal_factor


def frames_to_unit(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 in [-1, 1], same layout."""
    frames = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (B, T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        return frames.float() / 127.5 - 1.0
    return frames.float()


def unit_to_frames(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] (B, T, H, W, 3) -> uint8, rounded and clipped."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def _check_size(frames: torch.Tensor, spatial: int) -> None:
    h, w = frames.shape[2:4]
    if h % spatial or w % spatial:
        raise ValueError(f"frame height and width must be multiples of {spatial}, got {h}x{w}")


def dct_basis(size: int, frequencies: int) -> torch.Tensor:
    """(frequencies, size) rows of the orthonormal DCT-II basis, lowest frequency first (row 0 = 1 / sqrt(size))."""
    n = torch.arange(size, dtype=torch.float64)
    rows = [torch.cos((2 * n + 1) * u * torch.pi / (2 * size)) * ((1 if u == 0 else 2) / size) ** 0.5
            for u in range(frequencies)]
    return torch.stack(rows)


@dataclass
class PoolLatentMap:
    """Fixed block-DCT latent map (see the module docstring for how it differs from a VAE)."""

    latent_channels: int = 4
    spatial_factor: int = 8
    temporal_factor: int = 4
    seed: int = 0
    # Latents are multiplied by this, as CogVideoX multiplies its VAE latents by ``scaling_factor`` (0.7 for 5B),
    # so that they have about unit variance: pooled pixels in [-1, 1] have a std of about 0.3, and at that scale
    # the unit-variance diffusion noise drowns the signal at all but the smallest timesteps.
    scaling_factor: float = 3.0
    frequencies: int = 1  # DCT frequencies kept per block and axis (1 = the block mean: average pooling)

    def __post_init__(self) -> None:
        if not 1 <= self.frequencies <= self.spatial_factor:
            raise ValueError(f"PoolLatentMap frequencies must be in 1..{self.spatial_factor}, got {self.frequencies}")
        values = 3 * self.frequencies**2
        if self.latent_channels < values:
            raise ValueError(f"PoolLatentMap with frequencies={self.frequencies} needs latent_channels >= {values} "
                             f"(3 colours x {self.frequencies}^2 DCT coefficients), got {self.latent_channels}")
        g = torch.Generator().manual_seed(self.seed)
        q, _ = torch.linalg.qr(torch.randn(self.latent_channels, self.latent_channels, generator=g, dtype=torch.float64))
        self.embedding = q[:, :values].float()  # (C, 3k^2), orthonormal columns: embedding.T @ embedding = I
        # Coefficients divided by the block side, so that the lowest one is the block mean (k = 1: average pooling).
        self.basis = (dct_basis(self.spatial_factor, self.frequencies) / self.spatial_factor**0.5).float()

    def encode(self, frames: torch.Tensor | np.ndarray, generator: torch.Generator | None = None,
               mode: bool = False) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 (or float in [-1, 1]) -> (B, 1 + (T-1)/4, C, H/8, W/8); deterministic (``mode``
        has nothing to choose)."""
        x = frames_to_unit(frames)
        _check_size(x, self.spatial_factor)
        b, t = x.shape[:2]
        latent_frames(t, self.temporal_factor)
        groups = [x[:, :1]] + [x[:, s : s + self.temporal_factor] for s in range(1, t, self.temporal_factor)]
        x = torch.stack([g.mean(dim=1) for g in groups], dim=1)  # (B, F, H, W, 3)
        s = self.spatial_factor
        blocks = x.flatten(0, 1).unflatten(1, (-1, s)).unflatten(3, (-1, s))  # (N, h, s, w, s, 3)
        basis = self.basis.to(x.device)
        coef = torch.einsum("ui,nhiwjc,vj->ncuvhw", basis, blocks, basis).flatten(1, 3)  # (N, 3k^2, h, w)
        z = torch.einsum("cd,ndhw->nchw", self.embedding.to(x.device), coef) * self.scaling_factor
        return z.unflatten(0, (b, -1))

    def posterior(self, frames: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, None]:
        """(latents, None): the map is deterministic, it has no posterior variance to sample from."""
        return self.encode(frames), None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F, C, h, w) -> uint8 (B, 1 + 4(F-1), 8h, 8w, 3)."""
        if latents.ndim != 5 or latents.shape[2] != self.latent_channels:
            raise ValueError(f"latents must be (B, F, C={self.latent_channels}, h, w), got {tuple(latents.shape)}")
        b, f = latents.shape[:2]
        z = latents.float().flatten(0, 1) / self.scaling_factor
        coef = torch.einsum("cd,nchw->ndhw", self.embedding.to(latents.device), z)
        coef = coef.unflatten(1, (3, self.frequencies, self.frequencies))  # (N, 3, k, k, h, w)
        basis = self.basis.to(latents.device) * self.spatial_factor  # inverse of the scaled forward transform
        blocks = torch.einsum("ui,ncuvhw,vj->nhiwjc", basis, coef, basis)  # (N, h, s, w, s, 3)
        rgb = blocks.flatten(3, 4).flatten(1, 2).unflatten(0, (b, f))  # (B, F, H, W, 3)
        repeats = torch.tensor([1] + [self.temporal_factor] * (f - 1), device=rgb.device)
        return unit_to_frames(rgb.repeat_interleave(repeats, dim=1))

    def spec(self) -> dict[str, Any]:
        return {"kind": "pool", "latent_channels": self.latent_channels, "spatial_factor": self.spatial_factor,
                "temporal_factor": self.temporal_factor, "seed": self.seed, "scaling_factor": self.scaling_factor,
                "frequencies": self.frequencies}


class VAELatentMap:
    """A diffusers video VAE (CogVideoX or Wan) behind the ``LatentMap`` interface.

    Tiling and slicing are on (diffusers' ``enable_tiling`` / ``enable_slicing``): a 49 x 480 x 720 clip is
    encoded and decoded in overlapping spatial tiles and one sample at a time, as diffusers' pipelines advise
    on one GPU; clips smaller than a tile are unaffected. ``encode(mode=True)`` takes the mode of the posterior
    (the reference latent at inference, as diffusers' Wan pipeline does); otherwise ``sample`` decides (training:
    a sample drawn with ``generator``, as CogVideoX's training and I2V pipeline do).
    """

    def __init__(self, vae: Any, folder: str | None = None, sample: bool = True) -> None:
        self.vae = vae.eval().requires_grad_(False)
        for switch in ("enable_tiling", "enable_slicing"):
            if hasattr(self.vae, switch):
                getattr(self.vae, switch)()
        self.folder = folder
        self.sample = sample  # training: sample the posterior; False: its mean
        cfg = vae.config
        self.latent_channels = int(cfg.latent_channels if hasattr(cfg, "latent_channels") else cfg.z_dim)
        self.is_wan = type(vae).__name__ == "AutoencoderKLWan"
        self.spatial_factor = 2 ** (len(cfg.temperal_downsample) if self.is_wan else len(cfg.block_out_channels) - 1)
        self.temporal_factor = 4 if self.is_wan else int(cfg.temporal_compression_ratio)

    def _scale(self, z: torch.Tensor, inverse: bool) -> torch.Tensor:
        cfg = self.vae.config
        if self.is_wan:
            shape = (1, -1, 1, 1, 1)
            mean = torch.tensor(cfg.latents_mean, device=z.device, dtype=z.dtype).view(shape)
            std = torch.tensor(cfg.latents_std, device=z.device, dtype=z.dtype).view(shape)
            return z * std + mean if inverse else (z - mean) / std
        factor = float(cfg.scaling_factor)
        return z / factor if inverse else z * factor

    def _posterior(self, frames: torch.Tensor | np.ndarray):
        """The VAE's posterior (diffusers' ``DiagonalGaussianDistribution``) of (B, T, H, W, 3) frames."""
        x = frames_to_unit(frames)
        _check_size(x, self.spatial_factor)
        latent_frames(x.shape[1], self.temporal_factor)
        param = next(self.vae.parameters())
        x = x.permute(0, 4, 1, 2, 3).to(param.device, param.dtype)  # (B, 3, T, H, W)
        return self.vae.encode(x).latent_dist

    @torch.no_grad()
    def encode(self, frames: torch.Tensor | np.ndarray, generator: torch.Generator | None = None,
               mode: bool = False) -> torch.Tensor:
        dist = self._posterior(frames)
        z = dist.sample(generator) if self.sample and not mode else dist.mode()
        return self._scale(z, inverse=False).permute(0, 2, 1, 3, 4).float()  # (B, F, C, h, w)

    @torch.no_grad()
    def posterior(self, frames: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, log-variance) of the posterior in the scaled latent space, float32 (B, F, C, h, w) each: the
        scaling is affine per channel (z * a + b), so the mean maps like z and the log-variance gains 2 ln|a|.
        A sample mean + exp(logvar / 2) * eps is distributed as ``encode`` (the `video_latents` table stores these
        so that every training step can still draw its own sample)."""
        dist = self._posterior(frames)
        mean, logvar = dist.mean.float(), dist.logvar.float()
        gain = self._scale(torch.ones_like(mean), inverse=False) - self._scale(torch.zeros_like(mean), inverse=False)
        logvar = logvar + 2 * gain.abs().log()
        return self._scale(mean, inverse=False).permute(0, 2, 1, 3, 4), logvar.permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        param = next(self.vae.parameters())
        z = self._scale(latents.permute(0, 2, 1, 3, 4).to(param.device, param.dtype), inverse=True)
        video = self.vae.decode(z).sample  # (B, 3, T, H, W)
        return unit_to_frames(video.float().permute(0, 2, 3, 4, 1))

    def spec(self) -> dict[str, Any]:
        return {"kind": "vae", "folder": self.folder, "class": type(self.vae).__name__}


VAE_CLASSES = ("AutoencoderKLCogVideoX", "AutoencoderKLWan")


def vae_folder(path: str | Path) -> Path:
    """A diffusers VAE folder (or a pipeline folder with ``vae/``), or a clear error."""
    path = Path(path)
    for folder in (path, path / "vae"):
        if (folder / "config.json").is_file():
            return folder
    raise FileNotFoundError(f"no diffusers VAE config.json in {path} or {path / 'vae'}")


def load_vae(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> VAELatentMap:
    """Load the backbone's VAE from a local diffusers folder (no download: ``local_files_only``), in ``dtype``
    before it moves to ``device``."""
    import diffusers

    folder = vae_folder(path)
    name = json.loads((folder / "config.json").read_text()).get("_class_name")
    if name not in VAE_CLASSES:
        raise ValueError(f"{folder}/config.json describes {name!r}; expected one of {VAE_CLASSES}")
    vae = getattr(diffusers, name).from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    return VAELatentMap(vae.to(device), folder=str(folder))


def latent_map_from_spec(spec: dict[str, Any] | None, device: str | torch.device = "cpu",
                         dtype: torch.dtype = torch.float32) -> LatentMap:
    """Rebuild a latent map from its ``spec()`` (stored in checkpoints); None -> the default pool map; a VAE loads
    in ``dtype`` onto ``device``."""
    spec = dict(spec or {"kind": "pool"})
    kind = spec.pop("kind")
    if kind == "pool":
        spec.setdefault("scaling_factor", 1.0)  # checkpoints written before the map had a scale were unscaled
        return PoolLatentMap(**spec)
    if kind == "vae":
        if not spec.get("folder"):
            raise ValueError("latent map spec of kind 'vae' needs a 'folder'")
        return load_vae(spec["folder"], device=device, dtype=dtype)
    raise ValueError(f"unknown latent map kind {kind!r}; expected 'pool' or 'vae'")
