"""The seeds as Dagster assets: `seeds/<name>.csv` loaded into `seeds.<name>` by the build step
(`pipelines.assets.models`), before the loads and models it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

from pipelines.assets.keys import seed_key
from pipelines.assets.schema import table_schema_from_warehouse
from pipelines.modelling import seed_relation
from pipelines.modelling.state import read_versions, record_change
from pipelines.seeds import load_seed, seed_fingerprint

if TYPE_CHECKING:
    from pipelines.project import Project, SeedFile
    from pipelines.warehouse.base import Warehouse


def seed_spec(project: Project, seed: SeedFile) -> dg.AssetSpec:
    spec = seed.properties
    return dg.AssetSpec(
        key=seed_key(seed.name),
        group_name="seeds",
        description=spec.description or f"Seed {seed.name} ({seed.path.name})",
        kinds={"csv"},
        tags={"ssot/layer": "seeds", **dict.fromkeys(spec.config.tags, "")},
        metadata={
            "seed_file": dg.MetadataValue.path(str(seed.path.relative_to(project.root))),
            "relation": str(seed_relation(seed.name)),
        },
        skippable=True,
    )


def load_seed_asset(
    session: Warehouse, seed: SeedFile, *, run_id: str, reload: bool = False
) -> tuple[list[str], list[Any]]:
    """Load the seed unless its file is unchanged since it was loaded (``reload``: anyway):
    messages for the run's log, and its materialization."""
    relation = seed_relation(seed.name)
    fingerprint = seed_fingerprint(seed)
    known = read_versions(session, [relation]).get(str(relation))
    loaded = reload or not (known and known[1] == fingerprint and session.exists(relation))
    if loaded:
        with session.transaction():
            rows = load_seed(session, seed)
            record_change(session, relation, run_id, fingerprint=fingerprint)
        notes = []
    else:
        notes = [f"{seed.path.name} is unchanged since it was loaded"]
        rows = session.row_count(relation)
    return notes, [
        dg.AssetMaterialization(
            asset_key=seed_key(seed.name),
            metadata={
                "rebuilt": loaded,
                "fingerprint": fingerprint,
                "dagster/row_count": rows,
                "dagster/column_schema": table_schema_from_warehouse(session.columns(relation)),
            },
        )
    ]
