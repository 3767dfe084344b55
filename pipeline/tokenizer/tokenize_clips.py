"""Tokenize a motion with a trained 4DMoT and measure its reconstruction (paper Sec. 3.1).

    python -m pipeline.tokenizer.tokenize_clips --checkpoint CKPT --input motion.npz [--out tokens.npz]

The input ``.npz`` holds ``joints`` (T, 24, 3) in metres, or ``pose`` (T, 24, 3)
or (T, 72) axis-angle plus ``transl`` (T, 3) metres, turned into joints by
forward kinematics on the neutral SMPL shape (as the curated clips are). The
checkpoint (`pipeline.core.checkpoints`) carries the model and the normalisation
statistics. The longest prefix the tokenizer reconstructs at its own length is
used (frame counts 8k or 8k + 1 with the sliding window of 8; at least 33).
Prints the token id shape and the reconstruction MPJPE in millimetres.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from pipeline.motion.driving_motion import load_motion_file
from pipeline.motion.windows import MIN_FRAMES


def usable_frames(config, num_frames: int) -> int:
    """The longest frame count <= ``num_frames`` that the tokenizer reconstructs at its own length."""
    from models.tokenizer import valid_num_frames

    valid = [f for f in valid_num_frames(config, num_frames) if f >= MIN_FRAMES]
    if not valid:
        raise ValueError(f"{num_frames} frames is too few; 4DMoT needs at least {MIN_FRAMES}")
    return valid[-1]


@torch.no_grad()
def tokenize(model, normalizer, joints: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Joints (B, F, 24, 3) -> (code ids (B, T', J'), reconstructed joints (B, F, 24, 3)) in the input's units.

    A "w/o quantize" tokenizer (Table 2) has no codes: ids is None and the reconstruction decodes its
    continuous latents.
    """
    repr_ = normalizer(joints)
    if model.vq is None:
        ids, recon = None, model.decode_latents(model.encode_latents(repr_))
    else:
        ids = model.encode(repr_)
        recon = model.decode_ids(ids)
    return ids, normalizer.inverse(recon, first_frame=joints[:, 0])


def mpjpe_mm(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-joint position error in millimetres (inputs in metres): Euclidean error averaged over joints and frames."""
    return float((pred - target).norm(dim=-1).mean()) * 1000.0


@torch.no_grad()
def tokenize_windows(model, normalizer, windows: dict[int, np.ndarray], batch_size: int = 32) -> tuple[list[torch.Tensor], float]:
    """Tokenize held-out windows grouped by length; returns (id batches, MPJPE mm over all windows)."""
    device = next(model.parameters()).device
    id_batches, total, count = [], 0.0, 0
    for group in windows.values():
        for start in range(0, len(group), batch_size):
            joints = torch.from_numpy(group[start : start + batch_size]).to(device)
            ids, recon = tokenize(model, normalizer, joints)
            if ids is not None:
                id_batches.append(ids.cpu())
            err = (recon - joints).norm(dim=-1)
            total += float(err.sum())
            count += err.numel()
    return id_batches, (total / count * 1000.0 if count else float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tokenizer.tokenize_clips", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="4DMoT training checkpoint (step_XXXXXXXX.safetensors)")
    parser.add_argument("--input", required=True, help=".npz with joints (T, 24, 3) metres, or pose + transl")
    parser.add_argument("--out", help="write token ids to this .npz")
    args = parser.parse_args(argv)

    from pipeline.core.checkpoints import CorruptCheckpointError, load_tokenizer

    try:
        joints = load_motion_file(args.input)
        model, normalizer, _ = load_tokenizer(args.checkpoint)
        if model.vq is None:
            raise ValueError(f"{args.checkpoint} is a 'w/o quantize' ablation tokenizer: it has no token ids")
        frames = usable_frames(model.config, len(joints))
        clip = torch.from_numpy(joints[:frames])[None]
        ids, recon = tokenize(model, normalizer, clip)
    except (FileNotFoundError, ValueError, CorruptCheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    error = mpjpe_mm(recon, clip)
    note = f" (first {frames} of {len(joints)} frames)" if frames < len(joints) else ""
    print(f"token ids shape: {tuple(ids.shape[1:])}{note}")
    print(f"reconstruction MPJPE: {error:.2f} mm")
    if args.out:
        np.savez(args.out, ids=ids[0].numpy(), num_frames=frames, mpjpe_mm=error)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
