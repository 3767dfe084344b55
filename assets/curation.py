"""Curation assets (paper App. B): thin wrappers around the stage functions in ``pipeline.curation.stages``."""


from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from assets.metadata import materialized
from assets.resources import MTVCraftSettings
from pipeline.curation import ingest, scoring
from pipeline.curation import motion_video as motion_video_stage
from pipeline.curation import stages as curation

GROUP = "curation"


class RecomputeConfig(Config):
    """Re-process videos that already have rows (e.g. after changing a backend's settings)."""

    recompute: bool = False


@asset(group_name=GROUP, kinds={"lance", "ray"})
def raw_videos(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Input videos probed with PyAV, keyed by the hash of their bytes; unreadable files go to rejects."""
    settings = mtvcraft.settings()
    return materialized(ingest.ingest_raw_videos(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[raw_videos], kinds={"lance", "ray"})
def shots(context: AssetExecutionContext, mtvcraft: MTVCraftSettings, config: RecomputeConfig) -> MaterializeResult:
    """Shot boundaries per video (PySceneDetect by default, TransNetV2 by config)."""
    settings = mtvcraft.settings()
    return materialized(curation.segment_shots(settings, context.log.info, config.recompute), settings)


@asset(group_name=GROUP, deps=[shots], kinds={"lance", "ray"})
def poses(context: AssetExecutionContext, mtvcraft: MTVCraftSettings, config: RecomputeConfig) -> MaterializeResult:
    """Per-frame SMPL pose, root translation, joint uncertainty and person count (sidecar annotations, NLF or MediaPipe + IK)."""
    settings = mtvcraft.settings()
    return materialized(curation.estimate_poses(settings, context.log.info, config.recompute), settings)


@asset(group_name=GROUP, deps=[shots, poses], kinds={"lance"})
def subclips(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Single-person sub-clips of >= 33 frames inside shots, with neutral-shape FK joints."""
    settings = mtvcraft.settings()
    return materialized(curation.extract_subclips(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[subclips], kinds={"lance", "ray"})
def clip_scores(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """App. B quality scores per sub-clip (pose uncertainty, aesthetic, optical flow, blur, OCR text) and this
    run's keep/reject verdicts; the funnel and thresholds are in the metadata."""
    settings = mtvcraft.settings()
    return materialized(scoring.score_clips(settings, context.log.info, context.run_id), settings)


@asset(group_name=GROUP, deps=[clip_scores], kinds={"lance"})
def motion_video(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """The curated motion-video table: a new Lance version per curation run, tagged with the run id."""
    settings = mtvcraft.settings()
    return materialized(motion_video_stage.build_motion_video(settings, context.run_id, context.log.info), settings)


@asset(group_name=GROUP, deps=[motion_video], kinds={"numpy"})
def motion_stats(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Mean/std of joint coordinates (4DMoT normalisation) and the dataset-mean skeleton (4D RoPE, App. F)."""
    settings = mtvcraft.settings()
    return materialized(motion_video_stage.build_motion_stats(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[raw_videos, shots, poses, subclips, clip_scores], kinds={"lance"})
def rejects(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Every dropped video, shot, frame range or clip, with the stage and the reason."""
    settings = mtvcraft.settings()
    return materialized(curation.summarize_rejects(settings), settings)
