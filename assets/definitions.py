"""The Dagster code location: ``dagster dev`` / ``dagster asset materialize -m assets.definitions``."""

from dagster import Definitions, load_assets_from_modules

from assets import benchmark, curation, training
from assets.checks import CHECKS
from assets.resources import settings_resource
from assets.sensors import curation_job, new_videos_sensor, recuration_schedule, retraining_schedule, training_job

defs = Definitions(
    assets=load_assets_from_modules([curation, training, benchmark]),
    asset_checks=CHECKS,
    resources={"mtvcraft": settings_resource()},
    jobs=[curation_job, training_job],
    schedules=[recuration_schedule, retraining_schedule],
    sensors=[new_videos_sensor],
)
