"""The ``benchmark_eval`` stage: animate every test video of a benchmark and score it with the paper's six
metrics (Sec. 4, App. A.3, App. J), beside two baselines, in Table 1 (TikTok) / Table 3 (Fashion) form.

The protocol (App. A.3, whole videos in long-motion windows) is `pipeline.evaluation.protocol`; the baselines
(``copy_reference``, ``null_motion``) `pipeline.evaluation.baselines`; the metrics
`pipeline.evaluation.metric_suite`; the table schema, the paper's rows and the report
`pipeline.evaluation.report`. Rows go to the Lance table ``benchmark_eval`` keyed by (benchmark, method, video,
run id); the run id hashes the checkpoint's checksum and the protocol.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipeline.animation.cogvideox_pipeline import MTVCraftPipeline
from pipeline.animation.loading import load_train_checkpoint
from pipeline.animation.long_motion import animate_in_windows, longest_pass
from pipeline.core import previews, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.evaluation.baselines import null_motion_pipeline, null_motion_unavailable
from pipeline.evaluation.benchmarks import BENCHMARKS, BenchmarkVideo, load_benchmark, motion_joints
from pipeline.evaluation.metric_suite import MethodScores, MetricSuite
from pipeline.evaluation.protocol import EvalProtocol, device, fit_frames, run_id
from pipeline.evaluation.report import (
    ALL_VIDEOS,
    BENCHMARK_EVAL,
    METHODS,
    METRIC_COLUMNS,
    TABLE,
    report_markdown,
    side_by_side,
    strip_png,
)


# ---- inputs ---------------------------------------------------------------------------------------------------
def benchmark_clip(video: BenchmarkVideo, protocol: EvalProtocol, settings: PipelineSettings,
              benchmark: str) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth uint8 (N, height, width, 3), joints (N, 24, 3)) of the protocol's frames of one test video:
    every ``frame_stride``-th frame of the whole video, or of its first ``num_frames`` (x stride)."""
    n, stride = protocol.num_frames, protocol.frame_stride
    needed = None if n is None else (n - 1) * stride + 1
    what = f"{benchmark} video {video.id} ({video.source})"
    wanted = "every frame" if n is None else f"{needed} frames (num_frames={n}, frame_stride={stride})"
    try:
        frames = video.load_frames(needed)
    except ValueError as err:
        raise ValueError(f"{what}: {err}; the protocol needs {wanted}") from err
    if needed is not None and len(frames) < needed:
        raise ValueError(f"{what} has {len(frames)} frames; the protocol needs {wanted}")
    loaded = len(frames)
    frames = frames[::stride]
    sidecar = None if video.joints is None else video.joints[:loaded:stride]
    if sidecar is not None and len(sidecar) != len(frames):
        raise ValueError(f"{what}: its joints sidecar has {len(video.joints)} frames, the video {loaded}")
    joints = motion_joints(sidecar, frames, settings, what)
    return fit_frames(frames, protocol.height, protocol.width), joints


# ---- checkpoints ------------------------------------------------------------------------------------------------
def resolve_checkpoint(settings: PipelineSettings, checkpoint: str | Path | None) -> Path:
    """``checkpoint``, or the newest MV-DiT checkpoint of the ``mv_dit`` stage; a clear error when absent."""
    if checkpoint is None:
        from pipeline.mvdit.stage import current_mvdit_checkpoint, mvdit_dir

        found = current_mvdit_checkpoint(settings)
        if found is None:
            raise FileNotFoundError(f"no MV-DiT checkpoint under {mvdit_dir(settings)}: materialize mv_dit first "
                                    "or pass checkpoint=")
        return found
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (a train_mvdit .safetensors or a diffusers folder)")
    return path


def animate_video(pipe: MTVCraftPipeline, reference: np.ndarray, joints: np.ndarray, protocol: EvalProtocol,
                  window: int, seed: int) -> np.ndarray:
    """Every frame the joints drive (a motion no longer than ``window``: its longest 1 + 8k), window by window."""
    call = dict(height=protocol.height, width=protocol.width, num_inference_steps=protocol.num_inference_steps,
                motion_guidance_scale=protocol.motion_guidance_scale,
                text_guidance_scale=protocol.text_guidance_scale, prompt=protocol.text_prompt)
    return animate_in_windows(pipe, reference, joints, window, protocol.overlap,
                              generator=torch.Generator().manual_seed(seed), **call)


def load_pipeline(checkpoint: Path) -> MTVCraftPipeline:
    if checkpoint.is_dir():
        return MTVCraftPipeline.from_pretrained(checkpoint, device=device())
    return load_train_checkpoint(checkpoint, device=device())


# ---- the stage -----------------------------------------------------------------------------------------------
def evaluate_benchmark(settings: PipelineSettings, benchmark: str = "generated", checkpoint: str | Path | None = None,
                       protocol: EvalProtocol | None = None, log: Log = default_log, *,
                       dataset_root: str | Path | None = None, generated_seed: int = 0) -> StageResult:
    """Animate each test video of ``benchmark`` under ``protocol`` and score it beside the two baselines.

    ``checkpoint``: a ``train_mvdit`` checkpoint or a diffusers MV-DiT folder (None: the newest of the
    ``mv_dit`` stage). ``dataset_root`` overrides ``MTVCRAFT_TIKTOK`` / ``MTVCRAFT_UBC_FASHION``. Writes the
    rows to the ``benchmark_eval`` Lance table and the report, PNG strip and side-by-side mp4 under
    ``<data_root>/benchmark_eval/<benchmark>/<run id>/``; returns the report as the result's preview.
    """
    from pipeline.core.video_io import write_mp4

    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    protocol = protocol or EvalProtocol()
    videos = load_benchmark(benchmark, settings, dataset_root, protocol.max_videos, generated_seed)
    checkpoint = resolve_checkpoint(settings, checkpoint)
    run = run_id(checkpoint, protocol)
    log(f"benchmark_eval {benchmark}: {len(videos)} videos, checkpoint {checkpoint}, run {run}")
    pipe = load_pipeline(checkpoint)
    window = protocol.window or longest_pass(pipe)
    null_reason = null_motion_unavailable(pipe, window)
    null_pipe = null_motion_pipeline(pipe) if null_reason is None else None

    skip = slice(protocol.first_frame_evaluated, None)
    truths, outputs = [], {m: [] for m in METHODS}
    first: dict[str, np.ndarray] = {}
    for index, video in enumerate(videos):
        truth, joints = benchmark_clip(video, protocol, settings, benchmark)
        reference = truth[0]
        ours = animate_video(pipe, reference, joints, protocol, window, protocol.seed + index)
        truth = truth[:len(ours)]  # a motion no longer than one window is sampled over its longest 1 + 8k frames
        generated = {"mtvcraft": ours, "copy_reference": np.repeat(reference[None], len(ours), axis=0)}
        if null_pipe is not None:
            generated["null_motion"] = animate_video(null_pipe, reference, joints, protocol, window,
                                                     protocol.seed + index)
        if index == 0:
            first = {"truth": truth, **generated}
        truths.append(truth[skip])
        for method, frames in generated.items():
            outputs[method].append(frames[skip])
        log(f"benchmark_eval {benchmark}: video {index + 1}/{len(videos)} {video.id} done ({len(ours)} frames)")

    suite = MetricSuite(settings.weights, protocol, truths)
    scores = {m: suite.score(outputs[m]) for m in METHODS if outputs[m]}
    if null_reason is not None:
        scores["null_motion"] = MethodScores([], {name: null_reason for name in METRIC_COLUMNS})

    out_dir = settings.root / "benchmark_eval" / benchmark / run
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [len(t) for t in truths]
    rows = result_rows(benchmark, run, checkpoint, protocol, videos, scores, frames)
    uri = settings.table_uri(TABLE)
    version = tables.upsert(uri, rows)
    png = strip_png(first)
    previews.save_png(png, out_dir / "strip.png")
    write_mp4(out_dir / "side_by_side.mp4", side_by_side(first), fps=videos[0].fps)
    report = report_markdown(benchmark, run, checkpoint, protocol, {m: s.overall for m, s in scores.items()},
                             len(videos), frames, {m: s.counts for m, s in scores.items() if s.counts}, window)
    (out_dir / "report.md").write_text(report)
    log(f"benchmark_eval {benchmark}: wrote {out_dir / 'report.md'} and table {uri} version {version}")
    aggregates = {m: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.overall.items()}
                  for m, s in scores.items()}
    return StageResult(TABLE, uri, version, tables.count(uri), len(videos), 0,
                       preview_markdown=report + "\n\n" + previews.png_markdown(png, f"{benchmark} first video"),
                       preview_png=png,
                       extra={"benchmark": benchmark, "run_id": run, "checkpoint": str(checkpoint),
                              "report": str(out_dir / "report.md"), "strip": str(out_dir / "strip.png"),
                              "side_by_side": str(out_dir / "side_by_side.mp4"), "aggregates": aggregates,
                              "sample_counts": {m: s.counts for m, s in scores.items()}, "window": window,
                              "protocol": protocol.to_dict()})


# ---- rows ------------------------------------------------------------------------------------------------------
def _numbers_and_reasons(scores: dict[str, float | str]) -> tuple[dict[str, float | None], dict[str, str]]:
    numbers = {m: (None if isinstance(scores.get(m), str) else scores.get(m)) for m in METRIC_COLUMNS}
    reasons = {m: v for m, v in scores.items() if isinstance(v, str)}
    return numbers, reasons


def result_rows(benchmark: str, run: str, checkpoint: Path, protocol: EvalProtocol, videos: list[BenchmarkVideo],
                scores: dict[str, MethodScores], frames_evaluated: list[int]) -> pa.Table:
    """Per-video rows and one aggregate row per method, in the ``BENCHMARK_EVAL`` schema; ``frames_evaluated``
    per video (the aggregate row holds their sum)."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    records = []
    for method, method_scores in scores.items():
        entries = [(v.id, "video", s, n) for v, s, n in zip(videos, method_scores.per_video, frames_evaluated)]
        entries.append((ALL_VIDEOS, "aggregate", method_scores.overall, sum(frames_evaluated)))
        for video_id, kind, values, frames in entries:
            numbers, reasons = _numbers_and_reasons(values)
            records.append({
                "id": "|".join((benchmark, method, video_id, run)), "benchmark": benchmark, "method": method,
                "video_id": video_id, "run_id": run, "row_kind": kind, "checkpoint": str(checkpoint),
                "num_videos": 1 if kind == "video" else len(videos), "frames_evaluated": frames,
                "height": protocol.height, "width": protocol.width,
                "num_inference_steps": protocol.num_inference_steps,
                "motion_guidance_scale": protocol.motion_guidance_scale, **numbers,
                "not_computed": json.dumps(reasons, sort_keys=True),
                "protocol": json.dumps(protocol.to_dict(), sort_keys=True), "evaluated_at": now,
            })
    return pa.Table.from_pylist(records, schema=BENCHMARK_EVAL)
