"""Asset checks on the curation tables: unique ids, finite joints, shots cover videos, every video accounted for."""

from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from assets.curation import clip_scores, motion_video, poses, raw_videos, rejects, shots, subclips
from assets.resources import MTVCraftSettings
from assets.training import motion_tokens
from pipeline.curation import table_checks


def _result(outcome: table_checks.CheckOutcome) -> AssetCheckResult:
    metadata = {"description": outcome.description, **{k: MetadataValue.json(v) for k, v in outcome.details.items()}}
    return AssetCheckResult(passed=outcome.passed, severity=AssetCheckSeverity.ERROR, metadata=metadata)


@asset_check(asset=raw_videos, blocking=True)
def raw_videos_unique_ids(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.unique_ids(mtvcraft.settings(), "raw_videos"))


@asset_check(asset=shots, blocking=True)
def shots_cover_every_frame(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.shots_cover_videos(mtvcraft.settings()))


@asset_check(asset=poses)
def poses_account_for_every_video(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.every_video_accounted_for(mtvcraft.settings()))


@asset_check(asset=subclips, blocking=True)
def subclips_finite_joints(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.finite_joints(mtvcraft.settings(), "subclips"))


@asset_check(asset=subclips)
def subclips_unique_ids(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.unique_ids(mtvcraft.settings(), "subclips"))


@asset_check(asset=motion_video, blocking=True)
def motion_video_finite_joints(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
    return _result(table_checks.finite_joints(mtvcraft.settings(), "motion_video"))


def _unique_ids_check(asset, table: str):
    @asset_check(asset=asset, name=f"{table}_unique_ids")
    def check(mtvcraft: MTVCraftSettings) -> AssetCheckResult:
        return _result(table_checks.unique_ids(mtvcraft.settings(), table))

    return check


CHECKS = [raw_videos_unique_ids, shots_cover_every_frame, poses_account_for_every_video, subclips_finite_joints,
          subclips_unique_ids, motion_video_finite_joints] + [
    _unique_ids_check(asset, table) for asset, table in (
        (shots, "shots"), (poses, "poses"), (clip_scores, "clip_scores"), (motion_video, "motion_video"),
        (motion_tokens, "motion_tokens"), (rejects, "rejects"))
]
