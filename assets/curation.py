"""Curation assets (paper App. B): thin wrappers around the stage functions in ``pipeline.curation``."""


from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.metadata import materialized
from assets.resources import MTVCraftSettings
from pipeline import curation

GROUP = "curation"


class RecomputeConfig(Config):
    """Re-process videos that already have rows (e.g. after changing a backend's settings)."""

    recompute: bool = False


@asset(group_name=GROUP, kinds={"lance", "ray"})
def raw_videos(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Input videos probed with PyAV, keyed by the hash of their bytes; unreadable files go to rejects."""
    settings = mtvcraft.settings()
    return materialized(curation.ingest_raw_videos(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[raw_videos], kinds={"lance", "ray"})
def shots(context: AssetExecutionContext, mtvcraft: MTVCraftSettings, config: RecomputeConfig) -> MaterializeResult:
    """Shot boundaries per video (PySceneDetect by default, TransNetV2 by config)."""
    settings = mtvcraft.settings()
    return materialized(curation.segment_shots(settings, context.log.info, config.recompute), settings)


@asset(group_name=GROUP, deps=[shots], kinds={"lance", "ray"})
def poses(context: AssetExecutionContext, mtvcraft: MTVCraftSettings, config: RecomputeConfig) -> MaterializeResult:
    """Per-frame SMPL pose, root translation, joint uncertainty and person count (NLF or sidecar annotations)."""
    settings = mtvcraft.settings()
    return materialized(curation.estimate_poses(settings, context.log.info, config.recompute), settings)


@asset(group_name=GROUP, deps=[shots, poses], kinds={"lance"})
def subclips(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Single-person sub-clips of >= 33 frames inside shots, with neutral-shape FK joints."""
    settings = mtvcraft.settings()
    return materialized(curation.extract_subclips(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[raw_videos, shots, poses, subclips], kinds={"lance"})
def rejects(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Every dropped video, shot, frame range or clip, with the stage and the reason."""
    settings = mtvcraft.settings()
    return materialized(curation.summarize_rejects(settings), settings)
