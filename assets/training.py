"""Training assets: motion capture, 4DMoT and the clips' motion tokens (Sec. 3.1), video latents, MV-DiT (Sec. 3.2)
and the held-out animation (App. A.3)."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.curation import motion_stats, motion_video
from assets.metadata import materialized
from assets.resources import MTVCraftSettings
from pipeline.animation.loading import preview_sample
from pipeline.evaluation import held_out
from pipeline.motion import stage as mocap_stage
from pipeline.mvdit import latents_stage as video_latents_stage
from pipeline.mvdit import stage as mvdit_stage
from pipeline.tokenizer import stage as tokenizer_stage

GROUP = "training"


@asset(group_name=GROUP, kinds={"lance"})
def mocap_motions(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Motion capture from MTVCRAFT_MOCAP (SMPL-24 joints, +Y up; empty when unset) for 4DMoT; metadata: minutes
    and motion statistics per source, placed skeletons; unusable files and sequences go to rejects."""
    settings = mtvcraft.settings()
    return materialized(mocap_stage.build_mocap_motions(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[motion_video, motion_stats, mocap_motions], kinds={"pytorch", "ray"})
def tokenizer(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """4DMoT (Sec. 3.1) trained under Ray Train on the curated joints, motion capture or both (tokenizer_sources);
    metadata: loss curve, codebook usage, held-out MPJPE, and MPJPE / PA-MPJPE / acceleration error / code usage
    on the curated held-out clips, the mocap held-out split and the real NLF motions, checkpoint path, Ray run."""
    settings = mtvcraft.settings()
    return materialized(tokenizer_stage.train_tokenizer_stage(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[tokenizer, motion_video], kinds={"lance", "ray"})
def motion_tokens(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Codebook ids of every curated clip and its decoded-reconstruction MPJPE."""
    settings = mtvcraft.settings()
    return materialized(tokenizer_stage.tokenize_curated(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[motion_video], kinds={"lance", "ray"})
def video_latents(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """Optional (MTVCRAFT_VIDEO_LATENTS): every curated clip's fixed training windows encoded once by the VAE
    (bf16, tiled) for mv_dit to read; metadata: windows, bytes, seconds, the latent map; off: writes nothing."""
    settings = mtvcraft.settings()
    return materialized(video_latents_stage.build_video_latents(settings, context.log.info), settings)


@asset(group_name=GROUP, deps=[tokenizer, motion_video, motion_stats, video_latents], kinds={"pytorch", "ray"})
def mv_dit(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """MV-DiT (Sec. 3.2) trained on the curated clips with 4DMoT motion tokens; metadata: loss curve, checkpoint."""
    settings = mtvcraft.settings()
    return materialized(mvdit_stage.train_mvdit_stage(settings, context.log.info, preview=preview_sample), settings)


@asset(group_name=GROUP, deps=[mv_dit], kinds={"pytorch"})
def animations(context: AssetExecutionContext, mtvcraft: MTVCraftSettings) -> MaterializeResult:
    """A held-out clip's first frame animated with its motion (mp4 + side-by-side with the ground truth)."""
    settings = mtvcraft.settings()
    return materialized(held_out.animate_held_out(settings, context.log.info), settings)
