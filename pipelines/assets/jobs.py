"""The job that materializes the whole graph, and the schedule that runs it daily."""

from __future__ import annotations

import dagster as dg

from pipelines.assets.keys import JOB_NAME

DAILY_CRON = "0 3 * * *"


def build_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.all(),
        description="Land every source, build every model and run every check (raw -> marts).",
        tags={"ssot/job": JOB_NAME},
    )


def build_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{JOB_NAME}_daily",
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone="UTC",
        description="Rebuild the whole warehouse every day at 03:00 UTC.",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
