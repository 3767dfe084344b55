"""The ``tokenizer`` and ``motion_tokens`` stages: train 4DMoT on the curated motion-video table (Sec. 3.1,
App. A.2) and tokenize every curated clip with it (codebook ids + reconstruction error per clip).

Each (motion_video version, training config) key trains in its own folder (`tokenizer_dir`): a new data
version or another config starts fresh instead of resuming an unrelated run, a killed run of the same key
resumes, and ``motion_tokens`` / ``mv_dit`` use the checkpoint of the current key
(`current_tokenizer_checkpoint`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core import previews, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.ray_runtime import map_items
from pipeline.core.stage_result import StageResult
from pipeline.curation.motion_video import MOTION_VIDEO, MotionStats, stats_path

MOTION_TOKENS = "motion_tokens"


TOKENIZER_ROOT = ("checkpoints", "tokenizer")

# Training settings that change how a run goes, not what it learns: left out of the folder key.
_NOT_IN_KEY = ("backend", "use_gpu", "ray_address", "max_failures", "run_name", "checkpoint_every",
               "keep_checkpoints", "log_every", "resume")


def tokenizer_train_config(settings: PipelineSettings):
    """The `TokenizerTrainConfig` the ``tokenizer`` stage trains with under ``settings``."""
    from pipeline.tokenizer.config import TokenizerTrainConfig

    steps_lr1 = max(1, round(settings.tokenizer_steps * 2 / 3))  # the paper's 200K + 100K split
    return TokenizerTrainConfig(
        sources=source_weights(settings),
        model=settings.tokenizer_model, steps_lr1=steps_lr1, steps_lr2=settings.tokenizer_steps - steps_lr1,
        lr1=settings.tokenizer_lr, lr2=settings.tokenizer_lr / 10, batch_size=settings.tokenizer_batch_size,
        num_workers=settings.train_workers, backend=settings.train_backend,
        ray_address=settings.ray_address, checkpoint_every=max(1, settings.tokenizer_steps // 4),
        log_every=max(1, settings.tokenizer_steps // 50),
    )


def source_weights(settings: PipelineSettings) -> dict[str, float]:
    """Mixing weights of ``tokenizer_sources`` ("auto": curated, plus mocap when MTVCRAFT_MOCAP is set)."""
    from pipeline.motion.sources import parse_sources

    text = settings.tokenizer_sources
    if text == "auto":
        text = "curated+mocap" if settings.mocap else "curated"
    return parse_sources(text, settings.tokenizer_mocap_weight)


def config_key(config) -> str:
    """Short stable hash of what a training run learns: the training config (less `_NOT_IN_KEY`) and the model.

    The model enters twice on purpose: its preset name and its resolved `TokenizerConfig`, so that a
    changed preset definition also gives a new folder.
    """
    from pipeline.motion.sources import PAPER_SOURCES

    data = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_KEY}
    for key, default in (("sources", PAPER_SOURCES), ("camera", {})):  # the paper's recipe keeps its old folder key
        if data.get(key) == default:
            data.pop(key)
    data["tokenizer_config"] = config.tokenizer_config().to_dict()
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def motion_video_version(settings: PipelineSettings) -> int:
    """The ``motion_video`` version the stages read: MTVCRAFT_MOTION_VIDEO_VERSION, or the latest (0)."""
    if settings.motion_video_version:
        return settings.motion_video_version
    uri = settings.table_uri(MOTION_VIDEO)
    if not tables.exists(uri):
        raise FileNotFoundError(f"no motion_video table at {uri}: materialize motion_video first")
    return tables.version(uri)


def tokenizer_dir(settings: PipelineSettings) -> Path:
    """Training folder of the current (motion_video version, training config) key.

    ``<root>/checkpoints/tokenizer/v<version>-<model>-<config hash>``: a new data version or a changed
    config trains in a fresh folder; the same key resumes there (a killed run picks up its checkpoints).
    """
    config = tokenizer_train_config(settings)
    model = config.model if isinstance(config.model, str) else "custom"
    mocap = ""
    if config.sources.get("mocap", 0) > 0:
        from pipeline.motion.stage import MOCAP_MOTIONS

        uri = settings.table_uri(MOCAP_MOTIONS)
        mocap = f"-m{tables.version(uri) if tables.exists(uri) else 0}"
    return settings.root.joinpath(*TOKENIZER_ROOT) / f"v{motion_video_version(settings)}{mocap}-{model}-{config_key(config)}"


def current_tokenizer_checkpoint(settings: PipelineSettings) -> Path | None:
    """Newest checkpoint of the current key's training folder, or None when that key has not trained yet."""
    from pipeline.core.checkpoints import latest_checkpoint

    return latest_checkpoint(tokenizer_dir(settings) / "checkpoints")


def curated_clips(settings: PipelineSettings, columns: list[str]) -> pa.Table:
    """The selected ``motion_video`` version (MTVCRAFT_MOTION_VIDEO_VERSION; 0 = latest)."""
    uri = settings.table_uri(MOTION_VIDEO)
    return tables.read(uri, columns=columns, version=settings.motion_video_version or None)


def train_tokenizer_stage(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Train 4DMoT (Ray Train by default) on the curated joints with the motion_stats normalisation."""
    from pipeline.motion.stage import read_mocap
    from pipeline.tokenizer.loop import split_heldout, train_tokenizer

    config = tokenizer_train_config(settings)
    clips = curated_clips(settings, ["joints"])
    joints = tables.sequence_as_arrays(clips, "joints", (24, 3))
    sources = {"curated": joints}
    if config.sources.get("curated", 0) > 0 and not joints:
        raise ValueError("motion_video holds no clips: nothing to train the tokenizer on")
    loaded = MotionStats.load(stats_path(settings))
    # The paper's normalisation (motion_stats); mocap alone: statistics of its placed clips (train_tokenizer).
    stats = {"mean": loaded.mean, "std": loaded.std} if config.sources.get("curated", 0) > 0 else None
    if config.sources.get("mocap", 0) > 0:
        sources["mocap"] = read_mocap(settings, split="train")
        if not sources["mocap"]:
            raise ValueError(f"tokenizer_sources = {settings.tokenizer_sources!r} uses motion capture, but mocap_motions "
                             "holds no training sequences: set MTVCRAFT_MOCAP and materialize mocap_motions")
    out_dir = tokenizer_dir(settings)
    log(f"tokenizer: training folder {out_dir}, sources {config.sources}")
    heldout = None
    if config.sources.get("curated", 0) == 0:  # curated clips are not trained on: all of them are held out
        heldout = joints
        del sources["curated"]
    result = train_tokenizer(sources, stats, config, out_dir, log=log, heldout=heldout)
    curve_png = previews.encode_png(loss_curve_figure(result.loss_curve))
    log(f"tokenizer: held-out MPJPE {result.heldout_mpjpe_mm:.1f} mm, active codes {result.active_code_share:.0%}")
    curated_heldout = heldout if heldout is not None else split_heldout(joints, config.heldout_fraction, config.seed)[1]
    evaluation = evaluate_for_metadata(settings, result.checkpoint, curated_heldout, config.placement(), log)
    markdown = previews.png_markdown(curve_png, "loss curve")
    if evaluation:
        from pipeline.tokenizer.evaluation import markdown as eval_markdown

        markdown = eval_markdown(evaluation) + "\n\n" + markdown
    for key, title in (("usage_png", "codebook usage (App. E.3)"), ("cosine_png", "pairwise cosine similarity of used codes")):
        if key in result.analytics_files:
            markdown += "\n\n" + previews.png_markdown(Path(result.analytics_files[key]).read_bytes(), title)
    return StageResult("tokenizer", str(result.checkpoint), loaded.motion_video_version, len(joints), len(joints), 0,
                       preview_markdown=markdown, preview_png=curve_png,
                       extra={"heldout_mpjpe_mm": round(float(result.heldout_mpjpe_mm), 2),
                              "active_code_share": round(float(result.active_code_share), 4),
                              "checkpoint": str(result.checkpoint), "ray_run": result.ray_run_name or "local",
                              "codebook": result.codebook, "model": settings.tokenizer_model,
                              "steps": settings.tokenizer_steps, "sources": config.sources, "evaluation": evaluation})


def evaluate_for_metadata(settings: PipelineSettings, checkpoint: Path, curated_heldout: list[np.ndarray], placement,
                          log: Log) -> dict:
    """`pipeline.tokenizer.evaluation` numbers of a checkpoint: curated held-out clips (the generated sample in the demo),
    the mocap held-out split (at most 200 windows) and the real NLF motions, each when present."""
    from pipeline.motion.camera_placement import place_clips
    from pipeline.motion.stage import read_mocap
    from pipeline.tokenizer.evaluation import DEFAULT_REAL, evaluate_checkpoint_sets, real_nlf

    sets = {"curated held-out": curated_heldout}
    if settings.mocap:
        sets["mocap held-out"] = place_clips(read_mocap(settings, split="heldout"), placement, seed=0, limit=200)
    real = Path(settings.real_motions) if settings.real_motions else DEFAULT_REAL
    if real.is_file():
        sets["real NLF"] = real_nlf(real)
    elif settings.real_motions:
        raise FileNotFoundError(f"real_motions = {settings.real_motions}: not found (an npz of NLF joints in mm)")
    else:
        log(f"tokenizer: no real NLF joints at {real}: real-motion numbers left out")
    results = evaluate_checkpoint_sets(checkpoint, sets, max_windows=200)
    for name, r in results.items():
        if r.get("windows"):
            log(f"tokenizer on {name}: MPJPE {r['mpjpe_mm']:.1f} mm, PA-MPJPE {r['pa_mpjpe_mm']:.1f} mm, "
                f"accel {r['accel_error_mm']:.2f} mm/f^2, active codes {r.get('active_codes', float('nan')):.0%}, "
                f"perplexity {r.get('perplexity', float('nan')):.1f}")
    return results


def loss_curve_figure(curve: list[dict]) -> np.ndarray:
    """Training loss, reconstruction and commitment terms (Eq. 2) against step, as an RGB image."""
    plt = previews.pyplot()

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    steps = [p["step"] for p in curve]
    for key in ("loss", "recon", "commit"):
        ax.plot(steps, [p[key] for p in curve], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("4DMoT training (Eq. 2: L1 reconstruction + beta * commitment)")
    ax.legend()
    fig.tight_layout()
    return previews.figure_rgb(fig)


class TokenTask:
    """Token ids and reconstruction error of one curated clip (the checkpoint loads once per actor)."""

    def __init__(self, checkpoint: str):
        self.checkpoint = checkpoint

    def setup(self) -> None:
        from pipeline.core.checkpoints import load_tokenizer

        self.model, self.normalizer, _ = load_tokenizer(self.checkpoint)

    def __call__(self, item: dict) -> dict:
        import torch

        from pipeline.tokenizer.tokenize_clips import mpjpe_mm, tokenize, usable_frames

        frames = usable_frames(self.model.config, len(item["joints"]))
        joints = torch.from_numpy(item["joints"][:frames]).float()[None]
        ids, recon = tokenize(self.model, self.normalizer, joints)
        return {"num_frames_used": frames, "latent_frames": int(ids.shape[1]),
                "token_ids": ids[0].reshape(-1).int().tolist(), "mpjpe_mm": mpjpe_mm(recon, joints)}


def tokenize_curated(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Token ids for every curated clip with the latest tokenizer checkpoint, on Ray actors."""
    checkpoint = current_tokenizer_checkpoint(settings)
    if checkpoint is None:
        raise FileNotFoundError(f"no tokenizer checkpoint under {tokenizer_dir(settings)}: materialize tokenizer first")
    clips = curated_clips(settings, ["id", "video_id", "joints"])
    joints = tables.sequence_as_arrays(clips, "joints", (24, 3))
    items = [{"id": i, "video_id": v, "joints": j} for i, v, j in zip(clips["id"].to_pylist(), clips["video_id"].to_pylist(), joints)]
    rows, failed = [], []
    for res in map_items(items, TokenTask(str(checkpoint)), "tokenize clips", log, settings.ray_address):
        if res.error:
            failed.append(f"{res.item['id']}: {res.error}")
            continue
        rows.append({"id": res.item["id"], "video_id": res.item["video_id"], **res.value, "checkpoint": str(checkpoint)})
    for line in failed:
        log(f"tokenize failed for {line}")
    uri = settings.table_uri(MOTION_TOKENS)
    tables.upsert(uri, pa.Table.from_pylist(rows, schema=tables.MOTION_TOKENS), delete_stale="true")
    errors = [r["mpjpe_mm"] for r in rows]
    summary = {"clips": len(rows), "failed": len(failed), "failures": failed[:5], "mean_mpjpe_mm": round(float(np.mean(errors)), 2) if errors else None,
               "tokens": int(sum(len(r["token_ids"]) for r in rows)), "checkpoint": str(checkpoint)}
    preview = previews.markdown_table([{"clip": r["id"], "frames": r["num_frames_used"], "latent frames": r["latent_frames"],
                                        "MPJPE mm": r["mpjpe_mm"]} for r in rows])
    return StageResult(MOTION_TOKENS, uri, tables.version(uri), tables.count(uri), len(items), len(failed),
                       preview_markdown=preview, extra=summary)
