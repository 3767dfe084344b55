"""MV-DiT training from the ``video_latents`` table vs encoding every step (issue 13, item 4): measured, never
asserted.

    PYTHONPATH=. .venv/bin/python bench/bench_video_latents.py [--steps 40] [--vae-steps 12] [--clips 6] [--out F]

The tiny MV-DiT in the demo's setting (48 x 64 bucket, 33 frames, stride 1, batch 2, one thread) on clips of
moving squares, two latent maps:
- ``pool``: the demo's fixed `PoolLatentMap` (cheap: the per-step cost it saves is small);
- ``vae``: a small random diffusers ``AutoencoderKLCogVideoX`` (block channels 16-16-32-32, 16 latent channels;
  a stand-in for a VAE whose encoding costs something next to the model; the real CogVideoX VAE is far heavier).
Per map: seconds to encode one clip's fixed windows (`LatentTask`, in this process: the work a Ray actor does per
clip), the median milliseconds of one step's data alone (`step_latents`, both paths), then training steps/s
read from the table and encoding each step, the two runs alternated (table, encode,
table, encode) in one process, from the log's time stamps after 3 warm-up steps. The machine is shared: compare
the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from pipeline.core import tables  # noqa: E402
from pipeline.core.video_io import write_mp4  # noqa: E402
from pipeline.mvdit.batches import step_latents  # noqa: E402
from pipeline.mvdit.config import MVDiTTrainConfig  # noqa: E402
from pipeline.mvdit.latent_table import FIRST_FRAME, SCHEMA, LatentTask, latent_key, plan_clips  # noqa: E402
from pipeline.mvdit.train import latent_map_spec, train_mvdit  # noqa: E402

WARMUP = 3


def clips_on_disk(root: Path, n: int, frames: int = 120) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        video = np.full((frames, 48, 64, 3), rng.integers(20, 80), np.uint8)
        path = np.cumsum(rng.normal(0, 1.5, (frames, 2)), axis=0)
        for t in range(frames):
            cx, cy = int(np.clip(32 + path[t, 0], 8, 56)), int(np.clip(24 + path[t, 1], 8, 40))
            video[t, cy - 6 : cy + 6, cx - 6 : cx + 6] = rng.integers(100, 255, 3)
        write_mp4(root / f"clip{k}.mp4", video, fps=25)
        out.append({"id": f"clip{k}", "uri": str(root / f"clip{k}.mp4"), "start_frame": 0, "end_frame": frames,
                    "width": 64, "height": 48, "joints": rng.normal(0, 0.2, (frames, 24, 3)).astype(np.float32)})
    return out


def encode_table(uri: str, clips: list[dict], cfg: MVDiTTrainConfig) -> list[float]:
    """The table's rows, one clip at a time in this process; seconds per clip."""
    spec = latent_map_spec(cfg)
    items, _ = plan_clips(clips, latent_key(spec), FIRST_FRAME, cfg.lengths, cfg.strides, cfg.buckets, set(),
                          json.dumps(spec))
    task = LatentTask(spec, FIRST_FRAME)
    task.setup()
    seconds = []
    for item in items:
        t0 = time.perf_counter()
        rows = task(item)
        seconds.append(time.perf_counter() - t0)
        tables.upsert(uri, pa.Table.from_pylist(rows, schema=SCHEMA))
    return seconds


def steps_per_second(samples, tokenizer: str, cfg: MVDiTTrainConfig, out: Path) -> float:
    stamps: list[float] = []

    def log(line: str) -> None:
        if line.startswith("step "):
            stamps.append(time.perf_counter())

    train_mvdit(samples, tokenizer, None, cfg, out, log=log)
    return (len(stamps) - WARMUP) / (stamps[-1] - stamps[WARMUP - 1])


def data_ms_per_step(samples, cfg: MVDiTTrainConfig, uri: str, draws: int = 20) -> dict[str, float]:
    """Milliseconds of one step's data alone (`step_latents`: the latents, reference and joints of a batch), from
    the table or drawn and encoded by the latent map (clips already decoded in both: a warm-up draw first)."""
    from pipeline.mvdit.data import as_samples
    from pipeline.mvdit.latent_table import LatentWindows, table_reference
    from pipeline.mvdit.latents import latent_map_from_spec

    spec = latent_map_spec(cfg)
    wrapped = as_samples(samples)
    sources = {"table": (None, LatentWindows(table_reference(uri, spec, FIRST_FRAME), wrapped, cfg.lengths,
                                             cfg.strides, cfg.buckets)),
               "encode": (latent_map_from_spec(spec), None)}
    out = {}
    for name, (latent_map, table) in sources.items():
        times = []
        for k in range(draws + 1):
            t0 = time.perf_counter()
            step_latents(wrapped, cfg, np.random.default_rng(k), torch.Generator().manual_seed(k), latent_map, table,
                         torch.device("cpu"))
            times.append(time.perf_counter() - t0)
        out[name] = round(1000 * float(np.median(times[1:])), 2)
    return out


def small_vae(folder: Path) -> str:
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(0)
    AutoencoderKLCogVideoX(block_out_channels=(16, 16, 32, 32), layers_per_block=1, latent_channels=16,
                           norm_num_groups=8).save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--vae-steps", type=int, default=12)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tiny_models import tiny_tokenizer

    root = Path(tempfile.mkdtemp(prefix="bench_latents_"))
    clips = clips_on_disk(root, args.clips)
    samples = [((c["uri"], c["start_frame"], c["end_frame"]), c["joints"]) for c in clips]
    tokenizer = tiny_tokenizer(root / "tok")
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
               "date": time.strftime("%Y-%m-%d"), "steps": [args.steps, args.vae_steps], "clips": args.clips,
               "maps": {}}
    for name, vae in (("pool", ""), ("vae", small_vae(root / "vae"))):
        steps = args.vae_steps if vae else args.steps
        base = dict(steps=steps, log_every=1, checkpoint_every=steps, buckets=((48, 64),), vae=vae)
        uri = str(root / f"{name}.lance")
        encode = encode_table(uri, clips, MVDiTTrainConfig.tiny(**base))
        data = data_ms_per_step(samples, MVDiTTrainConfig.tiny(**base), uri)
        print(f"{name} data ms/step {data}", flush=True)
        runs = {"table": [], "encode": []}
        for rep in range(2):
            for path in ("table", "encode"):
                cfg = MVDiTTrainConfig.tiny(**base, video_latents=uri if path == "table" else "")
                runs[path].append(steps_per_second(samples, tokenizer, cfg, root / f"{name}-{path}-{rep}"))
                print(f"{name} {path} rep {rep}: {runs[path][-1]:.2f} steps/s", flush=True)
        table, per_step = float(np.mean(runs["table"])), float(np.mean(runs["encode"]))
        results["maps"][name] = {
            "encode_s_per_clip": round(float(np.mean(encode)), 3), "windows": tables.count(uri),
            "table_MiB": round(sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file()) / 2**20, 2),
            "steps_per_s_table": round(table, 2), "steps_per_s_encode": round(per_step, 2),
            "runs": runs, "ratio": round(table / per_step, 2), "data_ms_per_step": data}
        print(json.dumps(results["maps"][name]), flush=True)
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
