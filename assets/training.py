"""Training assets: the 4D motion tokenizer and the motion tokens of the curated clips."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.curation import motion_stats, motion_video
from assets.metadata import materialized
from assets.resources import MTVCraftSettings
from pipeline import mvdit_stage, tokenizer_stage

GROUP = "training"


@asset(group_name=GROUP, deps=[motion_video, motion_stats], kinds={"pytorch", "ray"})
def tokenizer(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """4DMoT (Sec. 3.1) trained on the curated joints under Ray Train; metadata: loss curve, codebook usage,
    held-out MPJPE, active-code share, checkpoint path, Ray run."""
    settings = mtvcraft.settings()
    return materialized(tokenizer_stage.train_tokenizer_stage(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[tokenizer, motion_video], kinds={"lance", "ray"})
def motion_tokens(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Codebook ids of every curated clip and its decoded-reconstruction MPJPE."""
    settings = mtvcraft.settings()
    return materialized(tokenizer_stage.tokenize_curated(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[tokenizer, motion_video, motion_stats], kinds={"pytorch", "ray"})
def mv_dit(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """MV-DiT (Sec. 3.2) trained on the curated clips with 4DMoT motion tokens; metadata: loss curve, checkpoint."""
    settings = mtvcraft.settings()
    return materialized(mvdit_stage.train_mvdit_stage(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[mv_dit], kinds={"pytorch"})
def animations(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """A held-out clip's first frame animated with its motion (mp4 + side-by-side with the ground truth)."""
    settings = mtvcraft.settings()
    return materialized(mvdit_stage.animate_held_out(settings, context.log.info), settings)
