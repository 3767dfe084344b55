"""Animate a reference image with a motion (paper Sec. 3.2 Eq. 3, App. A.3): ``MTVCraftPipeline`` and its CLI.

    python -m pipeline.animate --image ref.png --motion {video.mp4|motion.npz|tokens.npz} --out out.mp4 \
        {--weights {DIR|step_XXXXXXXX.safetensors} [--tokenizer CKPT] | --release-checkpoint DIR} \
        [--frames N] [--height H --width W] \
        [--window W --overlap 9] [--steps 50] [--motion-cfg 3.0] [--prompt TEXT --text-cfg 6.0 --wan-encoders DIR] \
        [--device auto|cpu|cuda[:N]] [--dtype auto|float32|bfloat16|float16]

The reference image is the first frame: its latent z_ref = E(x_0) is repeated over
the latent frames and concatenated with the noisy latents (Eq. 3, inside the
model). Sampling is DDIM with 50 steps (``CogVideoXDDIMScheduler``, v-prediction,
as CogVideoX-5B expects) and motion CFG 3.0 (App. A.3):
eps = eps(∅) + w_m (eps(m) - eps(∅)) with the learnable c_m∅ as the null
motion (`models.mvdit.cfg`). The 6B model has no text branch, so
``prompt`` and ``text_guidance_scale`` have no effect on it. A Wan (MV-DiT-18B) training
checkpoint loads as `pipeline.animate_wan.WanMotionPipeline` (Eq. 9-10, rectified flow, motion
CFG 3.0 and text CFG 6.0 with the prompt), so the CLI and ``from_train_checkpoint`` serve both.

``MTVCraftPipeline`` follows the diffusers calling style (components as
attributes, ``__call__`` with ``num_inference_steps``, ``generator``) but is a
plain class: its latent map and 4DMoT are not diffusers modules.

Motion input: a video goes through the pose stage (its ``<stem>.smpl.npz``
sidecar when present, else ``make_pose_estimator("mediapipe")``) and forward
kinematics on the neutral skeleton; a ``.npz`` with ``joints`` (T, 24, 3) or
``pose`` + ``transl`` is read with `load_motion_file`; a ``.npz`` with ``ids``
(T', 24) code ids (as ``tokenize_motion --out`` writes) or ``tokens`` (T' * 24, D)
codebook vectors is used as is. Weights: a diffusers folder of a trained MV-DiT
(``from_pretrained``; its ``vae/`` subfolder is the latent map; a tiny model
without one uses the fixed pool latent map, a full-size model (16 latent
channels, the CogVideoX / Wan VAE's) without one is an error) or a `train_mvdit`
checkpoint (which names its 4DMoT and latent map). Bad inputs fail with one clear
message each before any model loads.

Device and precision (``--device``, ``--dtype``): by default the GPU when CUDA is
present, in bfloat16 where it supports it, else the CPU in float32. The model is
cast before it moves (a full model never lands on the GPU in float32); the VAE
loads in that dtype with tiling and slicing on; 4DMoT stays float32. The
reference latent is the mode of the VAE posterior (as diffusers' Wan I2V pipeline
takes it; its CogVideoX I2V pipeline samples it), so a seed fixes the output.

Long motions: joints longer than one pass (``--window``, default the longest
clip the model's c_m∅ covers) are sampled in windows overlapping by
``--overlap`` frames, each later window conditioned on the frame already
generated at its start and holding the frames it shares with the ones before
(``context``; `pipeline.long_animation`), so every motion frame is animated;
motion tokens are sampled in one pass.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.mvdit.cfg import guided_prediction
from pipeline.latents import LatentMap, PoolLatentMap, latent_frames
from pipeline.long_animation import RELEASE_OVERLAP, animate_in_windows, check_window, longest_pass
from pipeline.motion_windows import MIN_FRAMES, usable_length

DEFAULT_PROMPT = "a person is dancing"  # App. A.3's evaluation prompt (18B model)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
NUM_JOINTS = 24
FULL_SIZE_LATENT_CHANNELS = 16  # latent channels of the CogVideoX-5B and Wan2.1 VAEs (tiny models use fewer)


@dataclass
class PreparedCall:
    """Checked inputs of one sampling call (`MTVCraftPipeline.prepare`)."""

    image: np.ndarray  # reference frame uint8 (height, width, 3)
    num_frames: int
    latent_frames: int
    tokens: torch.Tensor  # 4DMoT codebook vectors (1, latent_frames * 24, D)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` / None: the first CUDA GPU when CUDA is present, else the CPU; otherwise the named device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    return device


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` / None: bfloat16 on a GPU that supports it (the full models do not fit in float32), else
    float32; otherwise the named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def is_wan_checkpoint(info: dict[str, Any]) -> bool:
    """Whether a `train_mvdit` checkpoint's ``tokenizer_config`` is a Wan model's (its kwargs have CLIP's image_dim)."""
    return "image_dim" in info.get("mvdit", {})


class MTVCraftPipeline:
    """Reference image + motion -> video frames with MV-DiT (CogVideoX backbone).

    model: ``MVDiTCogVideoX``; latent_map: a `pipeline.latents.LatentMap`;
    tokenizer: (VQVAE, MotionNormalizer) or None (then pass motion tokens);
    scheduler: a diffusers DDIM-style scheduler (default CogVideoX DDIM, v-prediction).
    """

    def __init__(self, model, latent_map: LatentMap, tokenizer: tuple[Any, Any] | None = None, scheduler=None) -> None:
        from pipeline.train_mvdit import make_scheduler

        self.model = model.eval()
        self.latent_map = latent_map
        self.tokenizer = tokenizer
        self.scheduler = scheduler or make_scheduler()
        self.rope_joints: torch.Tensor | None = None  # set per call for motion_pe="dynamic"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_train_checkpoint(cls, path: str | Path, tokenizer: str | Path | None = None,
                              device: str | torch.device | None = "cpu",
                              wan_encoders: str | Path | None = None,
                              dtype: str | torch.dtype | None = None) -> MTVCraftPipeline:
        """From a `train_mvdit` checkpoint (it records the MV-DiT kwargs, latent map and 4DMoT path), cast to
        ``dtype`` (None: `resolve_dtype`'s choice for ``device``) before it moves to ``device`` ("auto": CUDA
        when present).

        A Wan (MV-DiT-18B) checkpoint gives a `pipeline.animate_wan.WanMotionPipeline`, whose text and image
        encoders load from ``wan_encoders`` (default: the folder the checkpoint was trained with).
        """
        from pipeline.checkpoints import load_checkpoint, load_tokenizer
        from pipeline.latents import latent_map_from_spec
        from pipeline.mvdit.factory import model_from_checkpoint

        ckpt = load_checkpoint(path)
        info = ckpt.tokenizer_config
        if "mvdit" not in info:
            raise ValueError(f"{path} is not an MV-DiT training checkpoint (it holds no 'mvdit' config)")
        if is_wan_checkpoint(info):  # MV-DiT-18B: text + image conditioning, rectified flow
            from pipeline.animate_wan import WanMotionPipeline

            return WanMotionPipeline.from_checkpoint(ckpt, tokenizer, device, wan_encoders, dtype)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        model = model_from_checkpoint(ckpt, device=device, dtype=dtype)  # built on meta, cast on the host, loaded once
        vq, normalizer, _ = load_tokenizer(tokenizer or info["tokenizer_checkpoint"], device=device)
        return cls(model, latent_map_from_spec(info["latent_map"], device, dtype), (vq, normalizer))

    @classmethod
    def from_pretrained(cls, folder: str | Path, tokenizer: str | Path | None = None,
                        device: str | torch.device | None = "cpu",
                        dtype: str | torch.dtype | None = None) -> MTVCraftPipeline:
        """From a diffusers folder of a trained MV-DiT (``transformer/`` or the folder itself) and its ``vae/``,
        loaded in ``dtype`` (None: `resolve_dtype`'s choice) onto ``device`` ("auto": CUDA when present). Only a
        tiny model (not the 16 latent channels of the CogVideoX / Wan VAE) may go without ``vae/``: it then uses
        the fixed pool latent map; a full-size model without it is a FileNotFoundError naming the folder."""
        from models.mvdit.cogvideox import MVDiTCogVideoX, transformer_folder
        from pipeline.latents import load_vae

        folder = Path(folder)
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        transformer = transformer_folder(folder)
        config = MVDiTCogVideoX.load_config(str(transformer))
        has_vae = (folder / "vae" / "config.json").is_file()
        if not has_vae and config.get("out_channels") == FULL_SIZE_LATENT_CHANNELS:
            raise FileNotFoundError(
                f"--weights {folder}: no vae/config.json; this MV-DiT has {FULL_SIZE_LATENT_CHANNELS} latent channels "
                f"(the CogVideoX-5B VAE's) and decodes only with that VAE: put the backbone's vae/ folder in {folder}"
            )
        model = MVDiTCogVideoX.from_pretrained(str(transformer), local_files_only=True, torch_dtype=dtype)
        latent_map = load_vae(folder, device, dtype) if has_vae else PoolLatentMap(
            latent_channels=model.config.out_channels)
        tok = None
        if tokenizer is not None:
            from pipeline.checkpoints import load_tokenizer

            vq, normalizer, _ = load_tokenizer(tokenizer, device=device)
            tok = (vq, normalizer)
        return cls(model.to(device), latent_map, tok)  # from_pretrained(torch_dtype=...) cast it while loading

    # -- pieces -------------------------------------------------------------------------------------
    def motion_tokens(self, motion: np.ndarray | torch.Tensor, num_frames: int) -> torch.Tensor:
        """Joints (T, 24, 3) -> 4DMoT codebook vectors (1, F * 24, D); tokens (M, D) / (1, M, D) pass through."""
        # a copy of numpy input: arrays read from Arrow tables are read-only, which torch warns about
        motion = torch.from_numpy(np.array(motion)) if isinstance(motion, np.ndarray) else torch.as_tensor(motion)
        if motion.ndim == 3 and motion.shape[1:] == (NUM_JOINTS, 3):
            if self.tokenizer is None:
                raise ValueError("joints given but the pipeline has no 4DMoT tokenizer; pass tokenizer= or motion tokens")
            if len(motion) < num_frames:
                raise ValueError(f"motion has {len(motion)} frames, fewer than num_frames={num_frames}")
            vq, normalizer = self.tokenizer
            joints = motion[:num_frames].float()[None].to(self.device)
            return vq.motion_tokens(normalizer(joints))
        if motion.ndim == 2:
            motion = motion[None]
        if motion.ndim != 3 or not motion.is_floating_point():
            raise ValueError(f"motion must be joints (T, 24, 3) or tokens (F*24, D) / (1, F*24, D), got {tuple(motion.shape)}")
        return motion.float().to(self.device)

    def guided_prediction(self, latents: torch.Tensor, t: torch.Tensor, reference: torch.Tensor,
                          tokens: torch.Tensor, motion_scale: float) -> torch.Tensor:
        """Motion CFG: eps(∅) + w (eps(m) - eps(∅)); scale 1 is the plain conditional prediction."""
        b = latents.shape[0]

        dtype = self.model.dtype

        def predict(motion_keep: torch.Tensor, _text_keep: torch.Tensor) -> torch.Tensor:
            k = motion_keep.shape[0] // b
            out = self.model(latents.repeat(k, 1, 1, 1, 1).to(dtype), reference.repeat(k, 1, 1, 1, 1).to(dtype),
                             tokens.repeat(k, 1, 1).to(dtype), t, motion_mask=motion_keep,
                             mean_joints=self.rope_joints).sample
            return out.float()  # the sampler steps in float32

        return guided_prediction(predict, b, motion_scale=motion_scale, text_scale=1.0, has_text=False,
                                 device=latents.device)

    # -- sampling -------------------------------------------------------------------------------------
    def spatial_factor(self) -> int:
        """Pixels per transformer token side: the latent map's factor times the spatial patch size."""
        patch = self.model.config.patch_size
        return self.latent_map.spatial_factor * (patch if isinstance(patch, int) else patch[-1])

    def prepare(self, reference_image: np.ndarray, motion: np.ndarray | torch.Tensor, num_frames: int | None,
                height: int | None, width: int | None) -> PreparedCall:
        """Check and size the inputs shared by both backbones: the reference image resized to (height, width),
        the frame count (default: the longest 1 + 8k the joints give) and the motion tokens; sets ``rope_joints``."""
        image = np.asarray(reference_image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"reference_image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        motion_arr = np.asarray(motion) if isinstance(motion, np.ndarray) else motion
        if num_frames is None:
            num_frames = len(motion_arr) if motion_arr.ndim == 3 and motion_arr.shape[1:] == (NUM_JOINTS, 3) else None
            if num_frames is None:
                raise ValueError("num_frames is required when motion tokens are given")
            num_frames = usable_length(num_frames)
        f = latent_frames(num_frames, self.latent_map.temporal_factor)
        factor = self.spatial_factor()
        height, width = height or image.shape[0] // factor * factor, width or image.shape[1] // factor * factor
        if height % factor or width % factor or height < factor or width < factor:
            raise ValueError(f"height and width must be positive multiples of {factor}, got {height}x{width}")
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        tokens = self.motion_tokens(motion, num_frames)
        # "dynamic" PE (Table 2) places the motion RoPE at this clip's first-frame joints; the others use the
        # dataset-mean joints stored in the model config (None here).
        self.rope_joints = None
        if getattr(self.model.config, "motion_pe", "4d") == "dynamic":
            if not (motion_arr.ndim == 3 and motion_arr.shape[1:] == (NUM_JOINTS, 3)):
                raise ValueError("a model trained with motion_pe='dynamic' needs joints (T, 24, 3), not motion tokens")
            self.rope_joints = torch.as_tensor(np.asarray(motion_arr[0]), dtype=torch.float64)
        if tokens.shape[1] != f * self.model.config.num_joints:
            raise ValueError(f"motion tokens cover {tokens.shape[1] // self.model.config.num_joints} latent frames; "
                             f"{num_frames} frames need {f}")
        return PreparedCall(image, num_frames, f, tokens)

    def context_latents(self, context: np.ndarray | None, height: int, width: int) -> torch.Tensor | None:
        """Latents (1, m, C, h, w) of frames the clip must start with (uint8 (1 + 4j, H, W, 3), resized to the
        output size), or None."""
        if context is None:
            return None
        context = np.asarray(context)
        if context.dtype != np.uint8 or context.ndim != 4 or context.shape[3] != 3:
            raise ValueError(f"context must be uint8 frames (k, H, W, 3), got {context.dtype} {context.shape}")
        if context.shape[1:3] != (height, width):
            context = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in context])
        latent_frames(len(context), self.latent_map.temporal_factor)  # raises unless 1 + 4j frames
        return self.latent_map.encode(torch.from_numpy(context)[None].to(self.device), mode=True)

    def noised(self, known: torch.Tensor, step: int, timesteps: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
        """``known`` clean latents at the noise level the sample has after ``step`` (DDIM: the scheduler's forward
        process at the next timestep; clean after the last step)."""
        if step + 1 == len(timesteps):
            return known
        noise = torch.randn(known.shape, generator=generator).to(known.device)
        return self.scheduler.add_noise(known, noise, timesteps[step + 1:step + 2])

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The scheduler's timesteps for ``num_inference_steps``."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        return self.scheduler.timesteps

    @staticmethod
    def progress(timesteps: torch.Tensor, show: bool):
        """``timesteps`` wrapped in a tqdm bar when ``show``."""
        if not show:
            return timesteps
        from tqdm.auto import tqdm

        return tqdm(timesteps, desc="MV-DiT")

    @torch.no_grad()
    def __call__(self, reference_image: np.ndarray, motion: np.ndarray | torch.Tensor, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, num_inference_steps: int = 50,
                 motion_guidance_scale: float = 3.0, text_guidance_scale: float = 6.0,
                 generator: torch.Generator | None = None, progress: bool = False,
                 prompt: str | None = None, context: np.ndarray | None = None) -> np.ndarray:
        """Frames uint8 (num_frames, height, width, 3); the reference image is frame 0's condition (Eq. 3).

        ``prompt`` and ``text_guidance_scale`` are accepted so that one call serves both backbones; the 6B model
        has no text branch and ignores them. ``context``: frames (1 + 4j) the clip must start with, e.g. the end of
        the previous window of a long motion; after every step their latents, noised to the sample's level,
        replace the first latent frames (the hold of the released 17B long-video sampler).
        """
        call = self.prepare(reference_image, motion, num_frames, height, width)
        device = self.device
        # (1, 1, C, h, w); the posterior's mode, as diffusers' Wan I2V pipeline takes it
        reference = self.latent_map.encode(torch.from_numpy(call.image)[None, None].to(device), mode=True)
        known = self.context_latents(context, *call.image.shape[:2])
        c, h, w = reference.shape[2:]
        latents = torch.randn((1, call.latent_frames, c, h, w), generator=generator).to(device)
        latents = latents * self.scheduler.init_noise_sigma
        timesteps = self.timesteps(num_inference_steps)
        for i, t in enumerate(self.progress(timesteps, progress)):
            pred = self.guided_prediction(latents, t, reference, call.tokens, motion_guidance_scale)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            if known is not None:
                latents[:, :known.shape[1]] = self.noised(known, i, timesteps, generator)
        return self.latent_map.decode(latents)[0, :call.num_frames].cpu().numpy()


# ---- CLI ---------------------------------------------------------------------------------------
class InputError(ValueError):
    """A CLI input that cannot be used (missing, unreadable, wrong shape, too short)."""


@dataclass
class Inputs:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    kind: str  # video | joints | ids | tokens
    motion: Any  # path (video), joints (T, 24, 3), ids (T', 24), tokens (M, D)
    num_frames: int  # --frames, else every frame the motion has (one pass takes its longest 1 + 8k)


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"reference image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read reference image {path}: not an image OpenCV can decode (png, jpg, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_inputs(args: argparse.Namespace) -> Inputs:
    """Every file/shape check, before any model loads; raises ``InputError`` with one clear message."""
    image = read_image(args.image)
    motion = Path(args.motion)
    if not motion.is_file():
        raise InputError(f"motion file not found: {motion} (a video, or an .npz with joints / ids / tokens)")
    if args.steps < 1 or args.fps <= 0:
        raise InputError(f"--steps must be >= 1 and --fps > 0, got {args.steps} and {args.fps}")
    if args.frames is not None and (args.frames < MIN_FRAMES or (args.frames - 1) % 8):
        raise InputError(f"--frames must be 1 + 8k and at least {MIN_FRAMES} (e.g. 33, 49, 81), got {args.frames}")
    if args.window is not None:  # the default window is the model's, checked once it loads
        try:
            check_window(args.window, args.overlap)
        except ValueError as err:
            raise InputError(f"--window / --overlap: {err}") from err
    elif args.overlap < 1:
        raise InputError(f"--window / --overlap: overlap must be at least 1 frame, got {args.overlap}")
    if args.release_checkpoint is not None:
        if not Path(args.release_checkpoint).is_dir():
            raise InputError(f"--release-checkpoint not found: {args.release_checkpoint}")
    elif args.weights is None:
        raise InputError("--weights is required: a diffusers MV-DiT folder or a train_mvdit checkpoint "
                         "(or --release-checkpoint DIR)")
    elif not (Path(args.weights).is_dir() or Path(args.weights).is_file()):
        raise InputError(f"--weights not found: {args.weights}")
    if args.tokenizer is not None and not Path(args.tokenizer).is_file():
        raise InputError(f"--tokenizer checkpoint not found: {args.tokenizer}")
    if motion.suffix.lower() in VIDEO_SUFFIXES:
        from pipeline.video_io import VideoRejected, probe_video

        try:
            available = probe_video(motion).num_frames
        except VideoRejected as err:
            raise InputError(f"cannot read motion video {motion}: {err}") from err
        kind, value = "video", motion
    elif motion.suffix.lower() == ".npz":
        kind, value, available = _read_motion_npz(motion)
    else:
        raise InputError(f"--motion {motion}: expected a video ({', '.join(VIDEO_SUFFIXES)}) or an .npz")
    if available < MIN_FRAMES:
        raise InputError(f"motion {motion} has {available} frames; MV-DiT needs at least {MIN_FRAMES}")
    if args.frames is not None and args.frames > available:
        raise InputError(f"--frames {args.frames} exceeds the {available} frames of motion {motion}")
    return Inputs(image, kind, value, args.frames or available)


def _read_motion_npz(path: Path) -> tuple[str, Any, int]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read motion file {path}: {err}") from err
    if "ids" in arrays or "tokens" in arrays:
        key = "ids" if "ids" in arrays else "tokens"
        value = arrays[key]
        ok = value.ndim == 2 and (value.shape[1] == NUM_JOINTS if key == "ids" else value.shape[0] % NUM_JOINTS == 0)
        if not ok:
            want = "(T', 24) code ids" if key == "ids" else "(T' * 24, D) codebook vectors"
            raise InputError(f"{path}: '{key}' must be {want}, got {value.shape}")
        latent = value.shape[0] if key == "ids" else value.shape[0] // NUM_JOINTS
        return key, value, int(arrays.get("num_frames", 1 + 4 * (latent - 1)))
    if "joints" in arrays:
        joints = arrays["joints"]
        if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
            raise InputError(f"{path}: 'joints' must have shape (T, 24, 3) in metres, got {joints.shape}")
        if len(joints) < MIN_FRAMES:
            raise InputError(f"motion {path} has {len(joints)} frames; MV-DiT needs at least {MIN_FRAMES}")
    from pipeline.tokenize_motion import load_motion_file

    try:
        joints = load_motion_file(path)
    except ValueError as err:
        raise InputError(str(err)) from err
    return "joints", joints, len(joints)


def joints_from_video(path: Path, num_frames: int) -> np.ndarray:
    """Driving joints (num_frames, 24, 3) metres, the way benchmark videos get theirs (`pipeline.benchmarks.poses`):
    the video's sidecar, else the settings' pose backend (NLF with its weights in MTVCRAFT_WEIGHTS, else
    MediaPipe + SMPL IK), forward kinematics on the neutral skeleton as in training."""
    from pipeline.benchmarks.poses import PoseUnavailable, motion_joints, video_sidecar_joints
    from pipeline.config import PipelineSettings
    from pipeline.video_io import read_frames

    try:
        joints, _ = video_sidecar_joints(path)
        return motion_joints(joints, read_frames(path, 0, num_frames), PipelineSettings.from_env(), str(path))
    except (PoseUnavailable, ValueError) as err:
        raise InputError(str(err)) from err


def write_mp4(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as H.264 with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for frame in frames:
            if h % 2 or w % 2:
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.animate", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", required=True, help="reference image (the first frame)")
    p.add_argument("--motion", required=True, help="driving video, motion .npz (joints or pose+transl) or tokens .npz")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--weights", help="diffusers MV-DiT folder or train_mvdit checkpoint (.safetensors)")
    p.add_argument("--tokenizer", help="4DMoT checkpoint (default: the one the training checkpoint names)")
    p.add_argument("--release-checkpoint", help="the official MTVCrafter release instead of --weights: its snapshot "
                                                "(MV-DiT-7B) or its MV-DiT/Wan-2-1 folder (17B); see "
                                                "pipeline/release_checkpoint.py")
    p.add_argument("--frames", type=int, help="frames to generate (1 + 8k, >= 33; default: every frame of a video "
                                              "or joints motion, the longest 1 + 8k of tokens)")
    p.add_argument("--height", type=int, help="output height (default: the reference image's, rounded down to a "
                                              "multiple of the model's pixels per token)")
    p.add_argument("--width", type=int, help="output width (default: as --height)")
    p.add_argument("--window", type=int, help="frames per sampling pass for long motions (1 + 8k; default: the "
                                              "longest clip the model's unconditional motion tokens cover)")
    p.add_argument("--overlap", type=int, default=RELEASE_OVERLAP,
                   help=f"frames shared by consecutive windows, held and cross-faded (default {RELEASE_OVERLAP})")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (App. A.3: 50)")
    p.add_argument("--motion-cfg", type=float, default=3.0, help="motion guidance scale (App. A.3: 3.0)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"text prompt, 18B model only (default {DEFAULT_PROMPT!r})")
    p.add_argument("--text-cfg", type=float, default=6.0, help="text guidance scale, 18B model only (App. A.3: 6.0)")
    p.add_argument("--wan-encoders", help="Wan2.1-I2V folder with the T5/CLIP encoders (18B model; default: the "
                                          "folder the checkpoint was trained with)")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the written mp4")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--device", default="auto", help="where the model runs: auto (CUDA when present, else the CPU), "
                                                    "cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", choices=("auto", *DTYPES),
                   help="model precision: auto (bfloat16 on a GPU that supports it, else float32)")
    return p


def check_against_model(args: argparse.Namespace, inputs: Inputs, pipe: MTVCraftPipeline) -> int:
    """The checks that need the loaded model: output size a multiple of its pixels per token, and a pass no
    longer than its c_m∅ covers under motion CFG (``--window`` for joints, the whole clip for tokens).
    Returns the window for joints."""
    factor = pipe.spatial_factor()
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value < factor or value % factor):
            raise InputError(f"--{name} must be a positive multiple of {factor} for this model, got {value}")
    longest = longest_pass(pipe)
    window = args.window or longest
    try:
        check_window(window, args.overlap)
    except ValueError as err:
        raise InputError(f"--window / --overlap: {err}") from err
    guided = pipe.model.unconditional_motion_token is not None and args.motion_cfg != 1
    joints = inputs.kind in ("video", "joints")
    one_pass = window if joints else usable_length(inputs.num_frames)
    if guided and one_pass > longest:
        what = f"--window {window} is" if joints else f"these tokens' {one_pass} frames are"
        fix = "lower --window" if joints else "pass fewer frames (--frames)"
        raise InputError(f"{what} longer than the {longest} frames this model's unconditional motion "
                         f"tokens cover (motion CFG needs them); {fix} or use --motion-cfg 1")
    return window


def run(args: argparse.Namespace) -> Path:
    inputs = check_inputs(args)  # all input errors surface here, before any model loads
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as err:
        raise InputError(f"--device: {err}") from err
    weights = Path(args.weights or "")
    if args.release_checkpoint is not None:
        from pipeline.release_checkpoint import load_release_pipeline

        pipe = load_release_pipeline(args.release_checkpoint, device=device, wan_encoders=args.wan_encoders)
    elif weights.is_dir():
        pipe = MTVCraftPipeline.from_pretrained(weights, tokenizer=args.tokenizer, device=device, dtype=args.dtype)
    else:
        pipe = MTVCraftPipeline.from_train_checkpoint(weights, tokenizer=args.tokenizer, device=device,
                                                      wan_encoders=args.wan_encoders, dtype=args.dtype)
    window = check_against_model(args, inputs, pipe)  # and these before the pose stage and sampling
    call = dict(height=args.height, width=args.width, num_inference_steps=args.steps,
                motion_guidance_scale=args.motion_cfg, text_guidance_scale=args.text_cfg, prompt=args.prompt,
                generator=torch.Generator().manual_seed(args.seed), progress=True)
    if inputs.kind in ("video", "joints"):
        if inputs.kind == "video":
            joints = joints_from_video(inputs.motion, inputs.num_frames)
        else:
            joints = np.asarray(inputs.motion)[:inputs.num_frames]
        frames = animate_in_windows(pipe, inputs.image, joints, window, args.overlap, log=print, **call)
    else:  # motion tokens: one pass
        if inputs.kind == "ids":
            if pipe.tokenizer is None:
                raise InputError("code ids need a 4DMoT: pass --tokenizer")
            ids = torch.from_numpy(inputs.motion.astype(np.int64))
            motion = pipe.tokenizer[0].codes_to_vectors(ids).flatten(0, 1)
        else:
            motion = torch.from_numpy(inputs.motion.astype(np.float32))
        frames = pipe(inputs.image, motion, num_frames=usable_length(inputs.num_frames), **call)
    write_mp4(args.out, frames, fps=args.fps)
    return Path(args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (InputError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
