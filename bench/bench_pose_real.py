"""The embedded pose backend on real footage: MediaPipe Pose + the SMPL IK fit against NLF's joints.

For each of the five real dance videos in ../shared/real/mtvcrafter-samples:
frames/s of decoding alone, MediaPipe alone (on decoded frames) and the IK fit
alone; PA-MPJPE (Procrustes with scale, per frame) over the 12 limb joints in
mm against NLF, for the raw MediaPipe world landmarks, the joint map alone
(hips corrected), and the IK fit (neutral SMPL skeleton). The last column is
the floor that a neutral skeleton leaves: the IK fit run on NLF's own joints,
compared with them (NLF keeps each person's bone lengths). Prints a Markdown
table for BENCHMARKS.md.

    .venv/bin/python bench/bench_pose_real.py [--max-frames N] [--out bench/out]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from models.motion.skeleton import SMPL_JOINT_NAMES, SMPL_NEUTRAL_REST_JOINTS
from pipeline.pose.ik_fit import IKSettings, IKTargets, fit_smpl
from pipeline.pose.joint_map import LIMB_JOINTS, MEDIAPIPE_LANDMARK_NAMES, mediapipe_to_smpl
from pipeline.pose.mediapipe_pose import MediaPipePoses, track_from_landmarks
from pipeline.video_io import iter_frames

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mtvcrafter-samples"
LIMBS = list(LIMB_JOINTS)
RAW_LIMBS = [MEDIAPIPE_LANDMARK_NAMES.index(SMPL_JOINT_NAMES[j]) for j in LIMBS]


def pa_mpjpe_mm(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over frames of the mean joint error (mm) after a per-frame similarity alignment."""
    errors = []
    for a, b in zip(pred.astype(np.float64), ref.astype(np.float64)):
        a0, b0 = a - a.mean(0), b - b.mean(0)
        u, s, vt = np.linalg.svd(a0.T @ b0)
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        scale = (s * np.diag(d)).sum() / (a0**2).sum()
        errors.append(np.linalg.norm(scale * a0 @ (u @ d @ vt) - b0, axis=-1).mean())
    return 1000.0 * float(np.mean(errors)) if errors else float("nan")


def bench_video(video: Path, nlf_mm: np.ndarray, max_frames: int | None, backend: MediaPipePoses) -> dict:
    start = time.perf_counter()
    frames = list(iter_frames(video, 0, max_frames))
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    landmarks = backend.landmarks(frames)
    mediapipe_s = time.perf_counter() - start
    num = len(frames)
    start = time.perf_counter()
    track, fit = track_from_landmarks(
        landmarks, np.arange(num), backend.backend, backend.fov_deg, backend.ik_settings
    )
    ik_s = time.perf_counter() - start

    found = landmarks.found
    nlf = nlf_mm[:num][found] / 1000.0
    mapped, _ = mediapipe_to_smpl(landmarks.world[found], landmarks.visibility[found])
    floor = fit_smpl(IKTargets(nlf.astype(np.float32), np.ones(nlf.shape[:2], np.float32), absolute=True))
    return {
        "video": video.stem,
        "frames": num,
        "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "found": int(found.sum()),
        "decode_fps": num / decode_s,
        "mediapipe_fps": num / mediapipe_s,
        "ik_fps": num / ik_s,
        "pa_raw": pa_mpjpe_mm(landmarks.world[found][:, RAW_LIMBS], nlf[:, LIMBS]),
        "pa_map": pa_mpjpe_mm(mapped[:, LIMBS], nlf[:, LIMBS]),
        "pa_ik": pa_mpjpe_mm(fit.joints[:, LIMBS], nlf[:, LIMBS]),
        "pa_floor": pa_mpjpe_mm(floor.joints[:, LIMBS], nlf[:, LIMBS]),
        "uncertainty_mm": 1000.0 * float(np.nanmedian(track.joint_uncertainty)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames of each video (default: all)")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()
    if not REAL.is_dir():
        sys.exit(f"real test data not found: {REAL}")
    with open(REAL / "index.csv") as index:
        videos = sorted(row["id"] for row in csv.DictReader(index))
    nlf = np.load(REAL / "nlf_joints_mm.npz")
    backend = MediaPipePoses(ik_settings=IKSettings())
    # Warm-up: the first L-BFGS in a process imports torch._dynamo (~2 s), not part of the fit.
    rest = np.repeat(SMPL_NEUTRAL_REST_JOINTS[None], 3, axis=0)
    fit_smpl(IKTargets(rest, np.ones((3, 24), np.float32), absolute=True))
    rows = [bench_video(REAL / f"{vid}.mp4", nlf[vid], args.max_frames, backend) for vid in videos]

    total = {key: sum(r["frames"] for r in rows) / sum(r["frames"] / r[key] for r in rows)
             for key in ("decode_fps", "mediapipe_fps", "ik_fps")}
    command = "bench/bench_pose_real.py" + (f" --max-frames {args.max_frames}" if args.max_frames else "")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), {platform.system()}; "
          f"date {date.today()}; command `.venv/bin/python {command}`; "
          f"{backend.backend}, IK {IKSettings().iterations} L-BFGS iterations per clip.\n")
    print("| video | frames | size | decode fps | MediaPipe fps | IK fps | PA-MPJPE raw MediaPipe (mm) "
          "| joint map (mm) | IK fit (mm) | neutral-skeleton floor (mm) | median uncertainty (mm) |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['video']} | {r['frames']} | {r['size']} | {r['decode_fps']:.0f} | {r['mediapipe_fps']:.1f} "
              f"| {r['ik_fps']:.0f} | {r['pa_raw']:.1f} | {r['pa_map']:.1f} | {r['pa_ik']:.1f} "
              f"| {r['pa_floor']:.1f} | {r['uncertainty_mm']:.0f} |")
    mean = {k: np.mean([r[k] for r in rows]) for k in ("pa_raw", "pa_map", "pa_ik", "pa_floor", "uncertainty_mm")}
    print(f"| all | {sum(r['frames'] for r in rows)} | | {total['decode_fps']:.0f} | {total['mediapipe_fps']:.1f} "
          f"| {total['ik_fps']:.0f} | {mean['pa_raw']:.1f} | {mean['pa_map']:.1f} | {mean['pa_ik']:.1f} "
          f"| {mean['pa_floor']:.1f} | {mean['uncertainty_mm']:.0f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"rows": rows, "command": command, "date": str(date.today())}
    (out / "pose_real.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
