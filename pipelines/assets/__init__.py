"""Dagster asset, check, job and schedule factories built from the project's objects."""

from __future__ import annotations

import dagster as dg

from pipelines.assets.jobs import build_job, build_schedule
from pipelines.assets.keys import JOB_NAME, model_key, source_key
from pipelines.assets.models import build_models_asset
from pipelines.assets.raw import landings
from pipelines.assets.resources import WarehouseResource
from pipelines.modelling import ModelGraph
from pipelines.project import Project


def build_definitions(project: Project) -> dg.Definitions:
    """Everything Dagster needs for one project: assets by layer, checks, the job, the schedule."""
    graph = ModelGraph.of(project)
    # the seeds, the source tables and the models in one step: a model starts once what it
    # reads is in
    lands = landings(project)
    seeds = list(project.seeds.values())
    assets = (
        [build_models_asset(graph, landings=lands, seeds=seeds)]
        if graph.order or lands or seeds
        else []
    )
    job = build_job()
    return dg.Definitions(
        assets=assets,
        jobs=[job],
        schedules=[build_schedule(job)],
        resources={"warehouse": WarehouseResource(project_dir=str(project.root))},
        # One process per run: DuckDB allows a single writing process per database file.
        executor=dg.in_process_executor,
    )


__all__ = ["JOB_NAME", "WarehouseResource", "build_definitions", "model_key", "source_key"]
