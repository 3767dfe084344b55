"""The embedded pose backend on real footage: MediaPipe Pose + the SMPL IK fit against NLF's joints.

For each of the five real dance videos in ../shared/real/mtvcrafter-samples, in one run:
frames/s of decoding alone, of MediaPipe on every frame ("before": no repeated-frame test)
and with repeated frames skipped (the default), and of the IK fit alone; PA-MPJPE
(Procrustes with scale, per frame) over the 12 limb joints in mm against NLF, for

- the raw MediaPipe world landmarks, and the joint map alone (hips corrected);
- "IK before": every frame through MediaPipe, no extra smoothing (the previous default);
- "IK": the default backend (repeated frames skipped, world landmarks smoothed over 1 frame);
- ablations on the default's landmarks: per-clip bone-length scales fitted with the pose
  (ik_fit BONE_GROUPS; the stored neutral-skeleton joints, and the joints on the clip's own
  skeleton), MediaPipe on every 2nd frame (``frame_step=2``);
- the neutral-skeleton floor: the IK fit run on NLF's own joints, compared with them (NLF
  keeps each person's bone lengths).

The IK columns are the joints the pipeline stores: forward kinematics of the fitted pose on
the neutral SMPL skeleton (paper Sec. 3.1). Prints Markdown tables for BENCHMARKS.md.

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
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from models.motion.skeleton import SMPL_JOINT_NAMES, SMPL_NEUTRAL_REST_JOINTS
from pipeline.core.video_io import iter_frames
from pipeline.curation.pose.ik_fit import IKSettings, IKTargets, fit_smpl
from pipeline.curation.pose.joint_map import LIMB_JOINTS, MEDIAPIPE_LANDMARK_NAMES, mediapipe_to_smpl
from pipeline.curation.pose.mediapipe_pose import MediaPipePoses, track_from_landmarks

REAL = Path(__file__).resolve().parents[2] / "shared" / "real" / "mtvcrafter-samples"
LIMBS = list(LIMB_JOINTS)
RAW_LIMBS = [MEDIAPIPE_LANDMARK_NAMES.index(SMPL_JOINT_NAMES[j]) for j in LIMBS]
PA_COLUMNS = ("pa_raw", "pa_map", "pa_ik_before", "pa_ik", "pa_shape_neutral", "pa_shape_own", "pa_step2", "pa_floor")


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


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def bench_video(video: Path, nlf_mm: np.ndarray, max_frames: int | None) -> dict:
    before = MediaPipePoses(repeat_level=0.0, world_smoothing_frames=0.0)
    after = MediaPipePoses()
    stepped = MediaPipePoses(frame_step=2)
    decode_s, frames = _timed(lambda: list(iter_frames(video, 0, max_frames)))
    num = len(frames)
    mp_before_s, lm_before = _timed(lambda: before.landmarks(frames))
    mp_after_s, lm_after = _timed(lambda: after.landmarks(frames))
    mp_step_s, lm_step = _timed(lambda: stepped.landmarks(frames))
    index = np.arange(num)

    def fit(backend: MediaPipePoses, landmarks, settings: IKSettings = IKSettings()):
        return track_from_landmarks(landmarks, index, backend.backend, backend.fov_deg, settings,
                                    backend.world_smoothing_frames)

    _, fit_before = fit(before, lm_before)
    ik_s, (track, fit_after) = _timed(lambda: fit(after, lm_after))
    _, fit_shape = fit(after, lm_after, replace(IKSettings(), fit_bone_scales=True))
    _, fit_step = fit(stepped, lm_step)

    def nlf_of(landmarks) -> np.ndarray:
        return nlf_mm[:num][landmarks.found] / 1000.0

    def pa(joints: np.ndarray, landmarks) -> float:
        return pa_mpjpe_mm(joints[:, LIMBS], nlf_of(landmarks)[:, LIMBS])

    found = lm_before.found
    mapped, _ = mediapipe_to_smpl(lm_before.world[found], lm_before.visibility[found])
    nlf = nlf_of(lm_before)
    floor = fit_smpl(IKTargets(nlf.astype(np.float32), np.ones(nlf.shape[:2], np.float32), absolute=True))
    return {
        "video": video.stem,
        "frames": num,
        "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "found": int(found.sum()),
        "decode_fps": num / decode_s,
        "mediapipe_before_fps": num / mp_before_s,
        "mediapipe_fps": num / mp_after_s,
        "mediapipe_step2_fps": num / mp_step_s,
        "ik_fps": num / ik_s,
        "pa_raw": pa_mpjpe_mm(lm_before.world[found][:, RAW_LIMBS], nlf[:, LIMBS]),
        "pa_map": pa(mapped, lm_before),
        "pa_ik_before": pa(fit_before.joints, lm_before),
        "pa_ik": pa(fit_after.joints, lm_after),
        "pa_shape_neutral": pa(fit_shape.joints, lm_after),
        "pa_shape_own": pa(fit_shape.shaped_joints, lm_after),
        "pa_step2": pa(fit_step.joints, lm_step),
        "pa_floor": pa(floor.joints, lm_before),
        "bone_scales": fit_shape.bone_scales,
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
    # Warm-up: the first L-BFGS in a process imports torch._dynamo (~2 s), not part of the fit.
    rest = np.repeat(SMPL_NEUTRAL_REST_JOINTS[None], 3, axis=0)
    fit_smpl(IKTargets(rest, np.ones((3, 24), np.float32), absolute=True))
    load_start = os.getloadavg()[0]
    rows = [bench_video(REAL / f"{vid}.mp4", nlf[vid], args.max_frames) for vid in videos]
    load_end = os.getloadavg()[0]

    rate_keys = ("decode_fps", "mediapipe_before_fps", "mediapipe_fps", "mediapipe_step2_fps", "ik_fps")
    total = {key: sum(r["frames"] for r in rows) / sum(r["frames"] / r[key] for r in rows) for key in rate_keys}
    mean = {k: np.mean([r[k] for r in rows]) for k in PA_COLUMNS + ("uncertainty_mm",)}
    command = "bench/bench_pose_real.py" + (f" --max-frames {args.max_frames}" if args.max_frames else "")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), {platform.system()}; "
          f"date {date.today()}; command `.venv/bin/python {command}`; {MediaPipePoses().backend}, "
          f"IK {IKSettings().iterations} L-BFGS iterations per clip; load average {load_start:.1f} at the start, "
          f"{load_end:.1f} at the end.\n")
    print("| video | frames | size | decode fps | MediaPipe fps, every frame (before) | MediaPipe fps, repeats "
          "skipped | MediaPipe fps, every 2nd frame | IK fps |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows + [{"video": "all", "frames": sum(r["frames"] for r in rows), "size": "", **total}]:
        print(f"| {r['video']} | {r['frames']} | {r['size']} | {r['decode_fps']:.0f} | {r['mediapipe_before_fps']:.1f} "
              f"| {r['mediapipe_fps']:.1f} | {r['mediapipe_step2_fps']:.1f} | {r['ik_fps']:.0f} |")
    print("\nPA-MPJPE, 12 limb joints, mm (mean of the per-video values in the last row):\n")
    print("| video | raw MediaPipe | joint map | IK before | **IK (default)** | + bone scales (neutral) "
          "| + bone scales (own skeleton) | every 2nd frame | neutral-skeleton floor | median uncertainty |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows + [{"video": "all", **mean}]:
        print(f"| {r['video']} | " + " | ".join(f"{r[k]:.1f}" for k in PA_COLUMNS) + f" | {r['uncertainty_mm']:.0f} |")
    print("\nFitted bone scales (+ bone scales column):")
    for r in rows:
        print(f"- {r['video']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["bone_scales"].items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"rows": rows, "command": command, "date": str(date.today()), "load": [load_start, load_end]}
    (out / "pose_real.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
