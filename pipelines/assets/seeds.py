"""One Dagster asset per seed: load `seeds/<name>.csv` into `seeds.<name>`."""

# No `from __future__ import annotations` here: Dagster reads the asset functions'
# annotations (context type, resources) at definition time and needs real classes.

import dagster as dg
from dagster import AssetExecutionContext

from pipelines.assets.keys import seed_key
from pipelines.assets.resources import WarehouseResource
from pipelines.assets.schema import table_schema_from_warehouse
from pipelines.modelling import seed_relation
from pipelines.modelling.state import read_versions, record_change
from pipelines.project import Project, SeedFile
from pipelines.seeds import load_seed, seed_fingerprint


def build_seed_asset(project: Project, seed: SeedFile) -> dg.AssetsDefinition:
    spec = seed.properties

    @dg.asset(
        key=seed_key(seed.name),
        group_name="seeds",
        description=spec.description or f"Seed {seed.name} ({seed.path.name})",
        kinds={"csv"},
        tags={"ssot/layer": "seeds", **dict.fromkeys(spec.config.tags, "")},
        metadata={
            "seed_file": dg.MetadataValue.path(str(seed.path.relative_to(project.root))),
            "relation": str(seed_relation(seed.name)),
        },
    )
    def _seed(context: AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
        session = warehouse.session
        relation = seed_relation(seed.name)
        fingerprint = seed_fingerprint(seed)
        known = read_versions(session, [relation]).get(str(relation))
        loaded = not (known and known[1] == fingerprint and session.exists(relation))
        if loaded:
            with session.transaction():
                rows = load_seed(session, seed)
                record_change(session, relation, context.run.run_id, fingerprint=fingerprint)
        else:
            context.log.info(f"{seed.path.name} is unchanged since it was loaded")
            rows = session.row_count(relation)
        return dg.MaterializeResult(
            metadata={
                "rebuilt": loaded,
                "fingerprint": fingerprint,
                "dagster/row_count": rows,
                "dagster/column_schema": table_schema_from_warehouse(
                    session.columns(seed_relation(seed.name))
                ),
            }
        )

    return _seed
