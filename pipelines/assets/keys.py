"""Asset keys and groups, in one place: `raw/<source>/<table>`, `seeds/<name>`, `<layer>/<model>`."""

from __future__ import annotations

import dagster as dg

from pipelines.project import RAW_SCHEMA, SEEDS_SCHEMA

JOB_NAME = "ssot_all"


def source_key(source: str, table: str) -> dg.AssetKey:
    return dg.AssetKey([RAW_SCHEMA, source, table])


def model_key(layer: str, name: str) -> dg.AssetKey:
    return dg.AssetKey([layer, name])


def seed_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([SEEDS_SCHEMA, name])
