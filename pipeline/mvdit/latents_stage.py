"""The optional ``video_latents`` stage (issue 13, item 4): every curated clip's fixed training windows encoded
once with the backbone's VAE (or the tiny models' pool map) into a Lance table that ``mv_dit`` then reads, so the
VAE runs once per window instead of once per step (`pipeline.mvdit.latent_table` says which windows and why).

Off by default (``video_latents`` / MTVCRAFT_VIDEO_LATENTS): the stage then writes nothing and says so, and
``mv_dit`` encodes each step as before. The windows follow the ``mv_dit`` training config (lengths, strides,
buckets) and the latent map it trains on; a full model encodes on GPU actors (bf16, tiled), the tiny one on CPUs.
"""

from __future__ import annotations

from pipeline.core import previews, rejects, tables
from pipeline.core.config import PipelineSettings
from pipeline.core.progress import Log, default_log
from pipeline.core.stage_result import StageResult
from pipeline.curation.stages import REJECTS
from pipeline.mvdit.latent_table import FIRST_FRAME, VIDEO_LATENTS, ZERO_PADDED, encode_clips, latent_key
from pipeline.tokenizer.stage import curated_clips


def build_video_latents(settings: PipelineSettings, log: Log = default_log) -> StageResult:
    """Encode the curated clips' missing windows; metadata: rows, bytes, seconds, the latent map's identity."""
    if not settings.video_latents:
        reason = "off (video_latents / MTVCRAFT_VIDEO_LATENTS unset): mv_dit runs the VAE on every step"
        log(f"video_latents {reason}")
        return StageResult(VIDEO_LATENTS, "", 0, 0, 0, 0, preview_markdown=reason, extra={"enabled": False})
    from pipeline.mvdit.stage import mvdit_config
    from pipeline.mvdit.train import latent_map_spec

    config = mvdit_config(settings)
    spec = latent_map_spec(config)
    reference = ZERO_PADDED if config.is_wan else FIRST_FRAME
    clips = curated_clips(settings, ["id", "uri", "start_frame", "end_frame", "width", "height"]).to_pylist()
    uri = settings.table_uri(VIDEO_LATENTS)
    summary, bad = encode_clips(uri, clips, spec, reference, config.lengths, config.strides, config.buckets, log,
                                settings.ray_address, gpu=settings.mvdit_model != "tiny")
    rejects.record(settings.table_uri(REJECTS), VIDEO_LATENTS, bad, within=f"stage = '{VIDEO_LATENTS}'")
    key = latent_key(spec)
    rows = tables.count(uri, f"latent_key = {tables.sql_str(key)}")
    log(f"video_latents: {rows} windows of latent map {key}; {summary['windows_added']} added in "
        f"{summary['seconds']} s, {len(bad)} clips rejected")
    preview = previews.markdown_table([{"clips": summary["clips"], "encoded now": summary["clips_encoded"],
                                        "rejected": len(bad), "windows": rows, "added": summary["windows_added"],
                                        "MiB added": round(summary["bytes_added"] / 2**20, 2),
                                        "s / clip": summary["seconds_per_clip"]}])
    return StageResult(VIDEO_LATENTS, uri, tables.version(uri) if tables.exists(uri) else 0, rows, len(clips),
                       len(bad), preview_markdown=preview,
                       extra={"enabled": True, **summary, "failures": [r.detail for r in bad][:5]})
