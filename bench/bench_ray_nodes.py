"""Curation throughput on 1 vs 2 Ray nodes (loopback), side by side, and a projection to the paper's 200K clips.

    .venv/bin/python bench/bench_ray_nodes.py [--preset demo] [--configs 1,2,2-proposed]

Each configuration starts its own Ray cluster on this machine (``ray start --block``, one CPU per
node, nodes on 127.0.0.2 / 127.0.0.3), runs the curation stages raw_videos -> shots -> poses ->
subclips -> clip_scores -> motion_video (``pipeline.curation.stages`` / ``scoring`` / ``motion_video``)
with ``ray_address`` on a fresh data root, times every stage, and stops its cluster.

``2-proposed`` is two nodes with the actor-pool sizing proposed in deploy/README.md (at least one
actor per CPU node) patched in for this run only, to show what the change does; ``1`` and ``2``
run the code as it is. Writes ``bench/results/ops.md`` and ``bench/out/ray_nodes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # bench/machine.py, also when loaded by path

from machine import load_average  # noqa: E402  (bench/machine.py)

NODE_IPS = ("127.0.0.2", "127.0.0.3")  # Ray rewrites 127.0.0.1 to the LAN address; other loopback IPs stay
PAPER_CLIPS = 200_000  # App. B: 200K clips before filtering, 30K kept
POSE_REAL = REPO / "bench" / "out" / "pose_real.json"  # bench_pose_real.py: MediaPipe + IK on real footage, this machine


# ---------------------------------------------------------------------------- a loopback cluster

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    """``n`` Ray nodes of one CPU each, every node in its own process group (stopped by group, never ``ray stop``)."""

    n: int
    root: Path
    address: str = ""
    procs: list = field(default_factory=list)
    temps: list = field(default_factory=list)

    def start(self) -> float:
        started = time.perf_counter()
        ray_bin = str(Path(sys.executable).parent / "ray")
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        for i in range(self.n):
            temp = tempfile.mkdtemp(prefix=f"bench_ray{i}_", dir="/tmp")
            self.temps.append(temp)
            cmd = [ray_bin, "start", "--block", f"--node-ip-address={NODE_IPS[i]}", "--num-cpus=1",
                   "--disable-usage-stats", f"--temp-dir={temp}", "--object-store-memory=300000000",
                   f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--node-manager-port={free_port()}",
                   f"--object-manager-port={free_port()}"]
            if i == 0:
                port = free_port()
                self.address = f"{NODE_IPS[0]}:{port}"
                cmd += ["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
            else:
                cmd += [f"--address={self.address}"]
            log = open(self.root / f"node{i}.log", "wb")
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            self._wait(i)
        return time.perf_counter() - started

    def _wait(self, i: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        log = self.root / f"node{i}.log"
        while time.monotonic() < deadline:
            if "Ray runtime started" in log.read_text(errors="replace"):
                return
            if self.procs[i].poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"Ray node {i} did not start; see {log}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)


def proposed_pool_shape(num_actors: int = 0, cpus_per_actor: float = 0.5) -> dict:
    """deploy/README.md's proposal for pipeline.core.ray_runtime.pool_shape: at least one actor per CPU node."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return {"size": num_actors or gpus, "num_gpus": 1, "num_cpus": 1}
    cpus = resources.get("CPU", 1)
    cpu_nodes = sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= cpus_per_actor)
    return {"size": num_actors or max(1, cpu_nodes, int(cpus * 0.75)), "num_gpus": 0, "num_cpus": cpus_per_actor}


# ---------------------------------------------------------------------------- one curation run

STAGES = ("raw_videos", "shots", "poses", "subclips", "clip_scores", "motion_video")


def curate(config: str, sample_videos: Path, work: Path) -> dict:
    import ray

    from pipeline.core import ray_runtime
    from pipeline.core.config import PipelineSettings
    from pipeline.curation import ingest, motion_video, scoring
    from pipeline.curation import stages as curation

    nodes = int(config.split("-")[0])
    root = work / config
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cluster = Cluster(nodes, root)
    original_pool_shape = ray_runtime.pool_shape
    row = {"config": config, "nodes": nodes, "load_start": load_average()}
    try:
        row["cluster_start_s"] = cluster.start()
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        if config.endswith("proposed"):
            ray_runtime.pool_shape = proposed_pool_shape
        row["pool_size"] = ray_runtime.pool_shape()["size"]
        settings = PipelineSettings(data_root=str(root / "data"), raw_videos=str(sample_videos),
                                    ray_address=cluster.address).validated()
        quiet = lambda _msg: None  # noqa: E731
        runs = {
            "raw_videos": lambda: ingest.ingest_raw_videos(settings, quiet),
            "shots": lambda: curation.segment_shots(settings, quiet),
            "poses": lambda: curation.estimate_poses(settings, quiet),
            "subclips": lambda: curation.extract_subclips(settings, quiet),
            "clip_scores": lambda: scoring.score_clips(settings, quiet, run_id=f"bench-{config}"),
            "motion_video": lambda: motion_video.build_motion_video(settings, f"bench-{config}", quiet),
        }
        row["stage_s"], row["rows"] = {}, {}
        for stage in STAGES:
            started = time.perf_counter()
            result = runs[stage]()
            row["stage_s"][stage] = time.perf_counter() - started
            row["rows"][stage] = result.num_rows
            print(f"  [{config}] {stage}: {row['stage_s'][stage]:.1f} s, {result.num_rows} rows", flush=True)
        row["total_s"] = sum(row["stage_s"].values())
    finally:
        ray_runtime.pool_shape = original_pool_shape
        ray.shutdown()
        cluster.stop()
    row["load_end"] = load_average()
    return row


# ---------------------------------------------------------------------------- report

def pose_real_fps() -> float | None:
    """Median MediaPipe frames/s measured on real footage by bench_pose_real.py on this machine, if it ran."""
    if not POSE_REAL.is_file():
        return None
    rows = json.loads(POSE_REAL.read_text()).get("rows", [])
    fps = sorted(r["mediapipe_fps"] for r in rows if r.get("mediapipe_fps"))
    return fps[len(fps) // 2] if fps else None


def report(rows: list[dict], sample: dict, wall_s: float) -> str:
    base = rows[0]
    clips = base["rows"]["subclips"]
    frames = sample["frames"]
    lines = [
        "## Curation on 1 vs 2 Ray nodes (loopback), and a projection to 200K clips",
        "",
        f"- Command: `.venv/bin/python bench/bench_ray_nodes.py --preset {sample['preset']} --configs {','.join(r['config'] for r in rows)}`",
        f"- Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores (shared with other work), no GPU; "
        f"Python {platform.python_version()}. Date: {time.strftime('%Y-%m-%d')}. Total wall time {wall_s / 60:.1f} min.",
        f"- Input: the generated `{sample['preset']}` sample: {sample['videos']} videos, {frames} frames "
        f"({frames / sample['fps']:.0f} s of video at {sample['fps']:.0f} fps), embedded CPU backends "
        "(PySceneDetect shots, sidecar-annotation poses, classical aesthetic, DIS flow, Laplacian blur, PP-OCR text).",
        "- Each node is `ray start --num-cpus=1` on its own loopback address (127.0.0.2, 127.0.0.3) of this one "
        "machine: two nodes share the same 2 physical cores with everything else running here, so this measures "
        "that the code spreads work over nodes, not what a second machine would add.",
        "- clips/min = sub-clips entering the quality filters (the paper's 200K are counted there) per minute of "
        "curation wall time (raw_videos -> motion_video; cluster start not included).",
        "",
        "| config | Ray nodes x CPUs | actor pool size | " + " | ".join(f"{s} s" for s in STAGES)
        + " | total s | sub-clips | curated | clips/min | load (start/end) |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in STAGES) + " | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        per_min = r["rows"]["subclips"] / (r["total_s"] / 60)
        label = {"1": "1 node", "2": "2 nodes", "2-proposed": "2 nodes, proposed pool sizing"}.get(r["config"], r["config"])
        lines.append(
            f"| {label} | {r['nodes']} x 1 | {r['pool_size']} | "
            + " | ".join(f"{r['stage_s'][s]:.1f}" for s in STAGES)
            + f" | {r['total_s']:.1f} | {r['rows']['subclips']} | {r['rows']['motion_video']} | {per_min:.1f} | "
              f"{r['load_start']:.1f} / {r['load_end']:.1f} |"
        )
    lines += ["", "Cluster start (not in the totals): "
              + ", ".join(f"{r['config']}: {r['cluster_start_s']:.0f} s" for r in rows) + "."]
    speedups = ", ".join(f"{r['config']}: {base['total_s'] / r['total_s']:.2f}x" for r in rows[1:])
    lines += [
        "",
        f"Speed-up over 1 node (total time): {speedups}. Expect none here, and read it as such: Ray's `--num-cpus` is "
        "bookkeeping, not a limit, so the single node's actor can already use both physical cores (OpenCV, PyAV and "
        "ONNX Runtime are multi-threaded), and a second node on the same machine adds no core. The stage times are "
        "dominated by fixed costs on a sample this small (starting the actor pool and building the detector / "
        "scorers: a few seconds per stage), which is also why `poses` costs seconds although it only reads sidecar "
        "files. What the 2-node rows do show: the stages run unchanged against a cluster address, and the pool-size "
        "column shows that today's sizing gives one actor for two 1-CPU nodes (one node idle per stage) while the "
        "proposed sizing gives one per node (tests/test_production_config.py checks the placement).",
    ]

    # Per-stage cost per clip, from the 1-node run.
    per_clip = {s: base["stage_s"][s] / clips for s in STAGES}
    lines += [
        "",
        "### Seconds per clip by stage (1-node run: wall seconds on this 2-core machine)",
        "",
        f"{clips} sub-clips of {sample['clip_frames'] / clips:.0f} frames on average; "
        "stages before sub-clips work per video, so their cost is spread over the clips the videos yield.",
        "",
        "| stage | s per clip | what runs |",
        "| --- | ---: | --- |",
    ]
    what = {"raw_videos": "PyAV probe + SHA-256 of each file", "shots": "PySceneDetect content detector",
            "poses": "sidecar annotations (ground truth: no model runs)", "subclips": "person/validity runs, FK (smplx)",
            "clip_scores": "classical aesthetic, DIS flow, Laplacian, PP-OCR on sampled frames",
            "motion_video": "join + new Lance version"}
    for s in STAGES:
        lines.append(f"| {s} | {per_clip[s]:.2f} | {what[s]} |")

    # Projection.
    fps = pose_real_fps()
    clip_frames = sample["clip_frames"] / clips
    measured_cpu_s = sum(per_clip.values())
    pose_cpu_s = clip_frames / fps if fps else None
    cpu_s = measured_cpu_s - per_clip["poses"] + (pose_cpu_s or 0.0)
    lines += [
        "",
        "### Projection to the paper's 200K clips (App. B)",
        "",
        f"Assumes clips like these ({clip_frames:.0f} frames each on average) and costs that scale per clip. "
        "Measured here, wall seconds per clip on this 2-core machine: "
        f"{measured_cpu_s:.2f} s through the whole curation with annotation poses"
        + (f"; replacing the pose stage by MediaPipe + SMPL IK on real footage ({fps:.0f} frames/s median, "
           f"bench/out/pose_real.json from bench/bench_pose_real.py on this machine) gives {cpu_s:.2f} s per clip." if fps
           else "; the MediaPipe pose cost was not measured (run bench/bench_pose_real.py)."),
        "",
        "| setup | wall s per clip (this machine) | 200K clips: machine-hours | machines like this for 24 h |",
        "| --- | ---: | ---: | ---: |",
        f"| CPU, embedded backends, annotation poses (measured) | {measured_cpu_s:.2f} | "
        f"{PAPER_CLIPS * measured_cpu_s / 3600:.0f} | {PAPER_CLIPS * measured_cpu_s / 3600 / 24:.1f} |",
    ]
    if fps:
        lines.append(f"| CPU, embedded backends, MediaPipe poses (measured parts) | {cpu_s:.2f} | "
                     f"{PAPER_CLIPS * cpu_s / 3600:.0f} | {PAPER_CLIPS * cpu_s / 3600 / 24:.1f} |")
    lines += [
        "| GPU nodes, the paper's models (NLF pose, CLIP + LAION aesthetic, UniMatch flow, CRAFT text) | not measured | "
        "not measured | not measured |",
        "",
        "The GPU row stays empty: no GPU and none of those weights were available here, and we cite no published "
        "throughput for them; the paper's estimators (NLF on every frame, UniMatch flow, CLIP ViT-L/14) are heavier "
        "than the embedded CPU backends measured here, so a GPU plan must be measured, not derived from these rows. "
        "How to read the CPU rows: the per-clip seconds include this sample's fixed per-stage start-up spread over "
        "a small sample (an overestimate at scale), while real footage is longer and larger than this "
        "320x240 synthetic video and its decode costs more (an underestimate). The node counts assume the work "
        "scales linearly over machines, which needs the pool-sizing change of deploy/README.md and was not "
        "measured here (one machine only).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--configs", default="1,2,2-proposed")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ops.md"))
    parser.add_argument("--json", default=str(REPO / "bench" / "out" / "ray_nodes.json"))
    parser.add_argument("--report-only", action="store_true", help="rewrite --out from the measurements in --json")
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(Path(args.json).read_text())
        Path(args.out).write_text(report(saved["rows"], saved["sample"], saved["wall_s"]))
        return 0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pipeline.synthetic import make_sample

    work = REPO / "bench" / "out" / "ray_nodes"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest = make_sample(work / "sample", seed=0, preset=args.preset)
    rows = []
    for config in args.configs.split(","):
        print(f"== {config}", flush=True)
        rows.append(curate(config, manifest.root / "videos", work))

    from pipeline.core import tables
    from pipeline.core.config import PipelineSettings

    clips = tables.read(PipelineSettings(data_root=str(work / rows[0]["config"] / "data")).table_uri("subclips"),
                        columns=["num_frames"])
    sample = {"preset": args.preset, "videos": len(manifest.videos), "frames": sum(v.num_frames for v in manifest.videos),
              "fps": manifest.fps, "clip_frames": int(sum(clips["num_frames"].to_pylist()))}
    wall_s = time.perf_counter() - started
    text = report(rows, sample, wall_s)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.json).write_text(json.dumps({"sample": sample, "rows": rows, "wall_s": wall_s}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
