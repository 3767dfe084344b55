"""How well a trained 4DMoT reconstructs real motion: MPJPE, PA-MPJPE, acceleration error, codebook usage (App. E.4).

    python -m pipeline.tokenizer.evaluation --checkpoint CKPT [--mocap DIR] [--real NPZ] [--sample DIR] [--json OUT]

Evaluation sets (camera-frame joints in metres, non-overlapping 49-frame windows):
- ``mocap held-out``: the held-out split of the motion capture (`pipeline.motion.mocap.heldout_split`:
  CMU subject 61, a fixed set of Bandai styles), cut into 49-frame pieces, each placed once in front of
  the virtual camera with a fixed seed and no bone augmentation (`pipeline.motion.camera_placement.place_clips`);
- ``real NLF``: the five real videos' NLF joints (``../shared/real``; never trained on), at their own frame rates;
- ``generated``: the generated sample's clips that curation keeps (ground-truth poses, neutral-shape FK).

Metrics per set, over all windows (millimetres):
- MPJPE: mean joint distance of decode(encode(x)) from x;
- PA-MPJPE: the same after a per-frame similarity (Procrustes) alignment of the reconstruction to x;
- acceleration error: mean distance between the second differences (x[t+1] - 2 x[t] + x[t-1]) of the
  reconstruction and of x, mm per frame^2: the jitter a reconstruction adds or removes;
- codebook usage: share of codes used at least once on the set ("active codes"), and perplexity
  exp(H) of the code frequencies (the number of equally used codes with the same entropy);
- no-motion MPJPE: the error of repeating each window's first frame (what a tokenizer ignoring the motion gets).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.motion.windows import eval_windows

WINDOW = 49
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REAL = REPO_ROOT.parent / "shared" / "real" / "mtvcrafter-samples" / "nlf_joints_mm.npz"
DEFAULT_MAX_WINDOWS = 400


# ---- metrics (numpy, metres in, millimetres out) ---------------------------------------------------------
def mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint position error (mm) of (..., J, 3) metre arrays."""
    return float(np.linalg.norm(pred - target, axis=-1).mean()) * 1000.0


def procrustes_align(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pred`` (N, J, 3) moved onto ``target`` per frame by the best similarity transform (scale, rotation, shift).

    Umeyama's closed form: with centred A, B, the SVD U S V^T of A^T B, R = U D V^T (D flips the last axis
    when needed, so R is a rotation), s = tr(S D) / ||A||^2, aligned = s A R + mean(B).
    """
    a = pred.astype(np.float64)
    b = target.astype(np.float64)
    a0, b0 = a - a.mean(axis=-2, keepdims=True), b - b.mean(axis=-2, keepdims=True)
    u, s, vt = np.linalg.svd(np.swapaxes(a0, -1, -2) @ b0)
    d = np.ones_like(s)
    d[..., -1] = np.sign(np.linalg.det(u @ vt))
    rot = u @ (d[..., :, None] * vt)
    scale = (s * d).sum(-1) / np.maximum((a0**2).sum((-1, -2)), 1e-12)
    return scale[..., None, None] * a0 @ rot + b.mean(axis=-2, keepdims=True)


def pa_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """MPJPE (mm) after aligning each frame of ``pred`` (..., J, 3) to ``target`` (`procrustes_align`)."""
    p, t = pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])
    return mpjpe(procrustes_align(p, t), t)


def accel_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean distance (mm / frame^2) between the joints' second differences, windows (N, F, J, 3), F >= 3."""
    acc = lambda x: x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]  # noqa: E731
    return mpjpe(acc(pred), acc(target))


def codebook_usage(ids: list[np.ndarray], codebook_size: int) -> dict[str, float]:
    """Active-code share (used at least once) and perplexity exp(H) of the code frequencies."""
    flat = np.concatenate([np.asarray(i).reshape(-1) for i in ids]) if ids else np.zeros(0, int)
    counts = np.bincount(flat, minlength=codebook_size).astype(np.float64)
    if counts.sum() == 0:
        return {"active_codes": float("nan"), "perplexity": float("nan")}
    p = counts[counts > 0] / counts.sum()
    return {"active_codes": float((counts > 0).mean()), "perplexity": float(math.exp(-(p * np.log(p)).sum()))}


# ---- evaluation sets ---------------------------------------------------------------------------------------
def mocap_heldout(source: str | Path, placement=None, seed: int = 0, limit: int | None = None) -> list[np.ndarray]:
    """Held-out mocap sequences of a folder or manifest (`pipeline.motion.mocap`), cut into 49-frame pieces
    placed in camera space (`pipeline.motion.camera_placement.place_clips`; at most ``limit``, evenly spaced)."""
    from pipeline.motion.camera_placement import CameraPlacement, place_clips
    from pipeline.motion.mocap import read_sources

    sequences, _ = read_sources(source)
    held = [s.joints for s in sequences if s.split == "heldout"]
    return place_clips(held, placement or CameraPlacement(), seed, chunk=WINDOW, limit=limit)


def real_nlf(path: str | Path = DEFAULT_REAL) -> list[np.ndarray]:
    """The real NLF joints (mm in the file), metres, one clip per video in id order."""
    with np.load(path) as data:
        return [data[k].astype(np.float32) / 1000.0 for k in sorted(data.files)]


def generated_sample(sample_dir: str | Path) -> list[np.ndarray]:
    """Joints of the clips curation keeps in a generated sample (its manifest's expected sub-clips, person 0)."""
    from pipeline.synthetic.motions import motion_joints
    from pipeline.synthetic.sample import SampleManifest, read_sidecar

    manifest = SampleManifest.load(sample_dir)
    clips = []
    for video in manifest.videos:
        side = read_sidecar(Path(sample_dir) / video.sidecar)
        for shot in video.shots:
            if shot.expected_reject is None:
                for a, b in shot.expected_subclips:
                    clips.append(motion_joints(side["pose"][a:b, 0], side["transl"][a:b, 0]))
    return clips


def subsample(windows: dict[int, np.ndarray], limit: int) -> dict[int, np.ndarray]:
    """At most ``limit`` windows in all, evenly spaced within each length group (deterministic)."""
    total = sum(len(w) for w in windows.values())
    if total <= limit:
        return windows
    return {n: w[np.linspace(0, len(w) - 1, max(1, round(limit * len(w) / total))).round().astype(int)]
            for n, w in windows.items()}


@torch.no_grad()
def evaluate_clips(model, normalizer, clips: list[np.ndarray], max_windows: int = DEFAULT_MAX_WINDOWS,
                   batch_size: int = 32) -> dict[str, Any]:
    """The module docstring's metrics for one set of camera-frame clips (metres)."""
    from pipeline.tokenizer.tokenize_clips import tokenize

    windows = subsample(eval_windows(clips, WINDOW), max_windows)
    recons, targets, ids = [], [], []
    device = next(model.parameters()).device
    for group in windows.values():
        for start in range(0, len(group), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(group[start:start + batch_size])).to(device)
            code, recon = tokenize(model, normalizer, x)
            recons.append(recon.cpu().numpy())
            targets.append(x.cpu().numpy())
            if code is not None:
                ids.append(code.cpu().numpy())
    if not targets:
        return {"windows": 0, "clips": len(clips)}
    pairs = list(zip(recons, targets))
    weights = np.array([t.shape[0] * t.shape[1] for t in targets], dtype=np.float64)  # frames per batch
    mean = lambda f: float(np.average([f(r, t) for r, t in pairs], weights=weights))  # noqa: E731  frame-weighted
    still = lambda r, t: mpjpe(np.repeat(t[:, :1], t.shape[1], axis=1), t)  # noqa: E731  a tokenizer ignoring the motion
    out: dict[str, Any] = {"windows": int(sum(len(t) for t in targets)), "clips": len(clips),
                           "mpjpe_mm": mean(mpjpe), "pa_mpjpe_mm": mean(pa_mpjpe), "accel_error_mm": mean(accel_error),
                           "no_motion_mpjpe_mm": mean(still)}
    if model.vq is not None:
        out.update(codebook_usage(ids, model.config.codebook_size))
    return out


def evaluate_checkpoint_sets(checkpoint: str | Path, sets: dict[str, list[np.ndarray]],
                             max_windows: int = DEFAULT_MAX_WINDOWS) -> dict[str, dict[str, Any]]:
    """`evaluate_clips` of one checkpoint on each named set."""
    from pipeline.core.checkpoints import load_tokenizer

    model, normalizer, _ = load_tokenizer(checkpoint)
    return {name: evaluate_clips(model, normalizer, clips, max_windows) for name, clips in sets.items() if clips}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The results as a Markdown table, one row per set."""
    rows = ["| set | clips | windows | MPJPE mm | PA-MPJPE mm | accel. error mm/f² | active codes | perplexity |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        rows.append(f"| {name} | {r.get('clips', 0)} | {r.get('windows', 0)} | {r.get('mpjpe_mm', float('nan')):.1f} | "
                    f"{r.get('pa_mpjpe_mm', float('nan')):.1f} | {r.get('accel_error_mm', float('nan')):.2f} | "
                    f"{r.get('active_codes', float('nan')):.1%} | {r.get('perplexity', float('nan')):.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tokenizer.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="4DMoT training checkpoint (step_XXXXXXXX.safetensors)")
    parser.add_argument("--mocap", default="", help="motion-capture folder or manifest (MTVCRAFT_MOCAP); its held-out split")
    parser.add_argument("--real", default=str(DEFAULT_REAL) if DEFAULT_REAL.is_file() else "",
                        help="npz of real NLF joints in mm (default: ../shared/real when present)")
    parser.add_argument("--sample", default="", help="a generated sample folder (with manifest.json)")
    parser.add_argument("--max-windows", type=int, default=DEFAULT_MAX_WINDOWS, help="at most this many windows per set")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    from pipeline.core.checkpoints import CorruptCheckpointError

    try:
        sets = {}
        if args.mocap:
            sets["mocap held-out"] = mocap_heldout(args.mocap, limit=args.max_windows)
        if args.real:
            sets["real NLF"] = real_nlf(args.real)
        if args.sample:
            sets["generated"] = generated_sample(args.sample)
        if not sets:
            raise ValueError("nothing to evaluate: give --mocap, --real or --sample")
        results = evaluate_checkpoint_sets(args.checkpoint, sets, args.max_windows)
    except (FileNotFoundError, ValueError, CorruptCheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
