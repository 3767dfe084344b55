"""The animate CLI: a reference image and a motion -> an mp4 (paper Sec. 3.2 Eq. 3, App. A.3).

    python -m pipeline.animation.cli --image ref.png --motion {video.mp4|motion.npz|tokens.npz} --out out.mp4 \
        {--weights {DIR|step_XXXXXXXX.safetensors} [--tokenizer CKPT] | --release-checkpoint DIR} \
        [--frames N] [--height H --width W] \
        [--window W --overlap 9] [--steps 50] [--motion-cfg 3.0] [--prompt TEXT --text-cfg 6.0 --wan-encoders DIR] \
        [--device auto|cpu|cuda[:N]] [--dtype auto|float32|bfloat16|float16]

The sampling itself (Eq. 3, DDIM 50 steps, motion CFG 3.0) is `pipeline.animation.cogvideox_pipeline.MTVCraftPipeline`'s;
a Wan (MV-DiT-18B) training checkpoint loads as `pipeline.animation.wan_pipeline.WanMotionPipeline` (Eq. 9-10,
rectified flow, motion CFG 3.0 and text CFG 6.0 with the prompt), so the CLI and `load_train_checkpoint`
serve both (`pipeline.animation.loading`).

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
(``context``; `pipeline.animation.long_motion`), so every motion frame is animated;
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

from models.motion.skeleton import NUM_JOINTS
from pipeline.animation.cogvideox_pipeline import DEFAULT_PROMPT, DTYPES, MTVCraftPipeline, resolve_device
from pipeline.animation.loading import load_train_checkpoint
from pipeline.animation.long_motion import RELEASE_OVERLAP, animate_in_windows, check_window, longest_pass
from pipeline.core.video_io import write_mp4
from pipeline.motion.windows import MIN_FRAMES, usable_length

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


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
    try:  # no --window: the model's own, checked once it loads
        check_window(args.window, args.overlap)
    except ValueError as err:
        raise InputError(f"--window / --overlap: {err}") from err
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
        from pipeline.core.video_io import VideoRejected, probe_video

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
    from pipeline.motion.driving_motion import load_motion_file

    try:
        joints = load_motion_file(path)
    except ValueError as err:
        raise InputError(str(err)) from err
    return "joints", joints, len(joints)


def joints_from_video(path: Path, num_frames: int) -> np.ndarray:
    """Driving joints (num_frames, 24, 3) metres, the way benchmark videos get theirs (`pipeline.motion.driving_motion`):
    the video's sidecar, else the settings' pose backend (NLF with its weights in MTVCRAFT_WEIGHTS, else
    MediaPipe + SMPL IK), forward kinematics on the neutral skeleton as in training."""
    from pipeline.core.config import PipelineSettings
    from pipeline.core.video_io import read_frames
    from pipeline.motion.driving_motion import PoseUnavailable, motion_joints, video_sidecar_joints

    try:
        joints, _ = video_sidecar_joints(path)
        return motion_joints(joints, read_frames(path, 0, num_frames), PipelineSettings.from_env(), str(path))
    except (PoseUnavailable, ValueError) as err:
        raise InputError(str(err)) from err


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.animation.cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", required=True, help="reference image (the first frame)")
    p.add_argument("--motion", required=True, help="driving video, motion .npz (joints or pose+transl) or tokens .npz")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--weights", help="diffusers MV-DiT folder or train_mvdit checkpoint (.safetensors)")
    p.add_argument("--tokenizer", help="4DMoT checkpoint (default: the one the training checkpoint names)")
    p.add_argument("--release-checkpoint", help="the official MTVCrafter release instead of --weights: its snapshot "
                                                "(MV-DiT-7B) or its MV-DiT/Wan-2-1 folder (17B); see "
                                                "pipeline/animation/release_checkpoint.py")
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
        from pipeline.animation.release_checkpoint import load_release_pipeline

        pipe = load_release_pipeline(args.release_checkpoint, device=device, wan_encoders=args.wan_encoders)
    elif weights.is_dir():
        pipe = MTVCraftPipeline.from_pretrained(weights, tokenizer=args.tokenizer, device=device, dtype=args.dtype)
    else:
        pipe = load_train_checkpoint(weights, tokenizer=args.tokenizer, device=device,
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
