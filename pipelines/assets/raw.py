"""One Dagster asset per source table: land it in `raw` through its contract."""

# No `from __future__ import annotations` here: Dagster reads the asset functions'
# annotations (context type, resources) at definition time and needs real classes.

import dagster as dg
from dagster import AssetExecutionContext

from pipelines.assets.checks import check_result
from pipelines.assets.keys import source_key
from pipelines.assets.resources import WarehouseResource
from pipelines.assets.schema import table_schema_for_source
from pipelines.config import SourceSpec, SourceTableSpec
from pipelines.landing import BATCH_ID_COLUMN, LOADED_AT_COLUMN, land_table
from pipelines.meta import AuditEntry, record_audit
from pipelines.project import Project
from pipelines.quality.checks import record_outcomes
from pipelines.quality.freshness import CHECK_NAME as FRESHNESS
from pipelines.quality.freshness import check_freshness, freshness_of
from pipelines.quality.freshness import describe as describe_freshness


class LandConfig(dg.Config):
    """Run-time options of a source table's load (set by `ssot run --full-refresh ...`)."""

    full_refresh: bool = False
    """Ignore the stored cursor and file state and pull every row again (nothing is duplicated)."""


def _owner(value: str) -> list[str]:
    return [value] if "@" in value or value.startswith("team:") else [f"team:{value}"]


def build_source_asset(
    project: Project, source: SourceSpec, table: SourceTableSpec
) -> dg.AssetsDefinition:
    key = source_key(source.name, table.name)
    pii = sorted({c.pii for c in table.columns if c.pii != "none"})
    sla = freshness_of(source, table)
    specs = (
        [
            dg.AssetCheckSpec(
                name=FRESHNESS,
                asset=key,
                blocking=False,
                description=describe_freshness(
                    sla, f"`{table.cursor}`" if table.cursor else "load"
                ),
            )
        ]
        if sla is not None
        else []
    )

    @dg.asset(
        key=key,
        group_name="raw",
        description=(table.description or f"{source.name}.{table.name}")
        + f"\n\nLanded from `{source.name}` ({source.description}) through its source contract "
        "into an append-only raw table (new and changed rows only); rows failing the contract go "
        "to ssot_meta.quarantine.",
        owners=_owner(source.owner),
        kinds={"python"},
        tags={"ssot/layer": "raw", **({"ssot/pii": ""} if pii else {})},
        metadata={
            "dagster/column_schema": table_schema_for_source(table),
            "source_file": dg.MetadataValue.path(
                str(project.source_files[source.name].relative_to(project.root))
            ),
            "primary_key": ", ".join(table.primary_key),
            "pii_columns": ", ".join(c.name for c in table.columns if c.pii != "none") or "none",
            **({"freshness_sla": sla.model_dump_json(exclude_none=True)} if sla else {}),
        },
        check_specs=specs,
    )
    def _land(
        context: AssetExecutionContext, config: LandConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:  # type: ignore[type-arg]
        session = warehouse.session
        result = land_table(
            project,
            session,
            source,
            table,
            run_id=context.run.run_id,
            full_refresh=config.full_refresh,
        )
        if result.extra_columns:
            context.log.warning(
                f"{source.name}.{table.name}: new source column(s) not in the contract landed as-is: "
                f"{', '.join(result.extra_columns)}; declare them in sources/{source.name}.yml"
            )
        outcomes = []
        if sla is not None:
            outcomes.append(
                check_freshness(
                    session,
                    result.relation,
                    sla,
                    cursor=table.cursor,
                    loaded_at_column=LOADED_AT_COLUMN,
                    now=project.now(),
                )
            )
            record_outcomes(
                session,
                outcomes,
                run_id=context.run.run_id,
                asset=key.to_user_string(),
                audited=str(result.relation),
                published=True,
            )
            record_audit(
                session,
                AuditEntry(
                    run_id=context.run.run_id,
                    asset=key.to_user_string(),
                    kind="checks",
                    rows_in=0,
                    rows_out=result.rows_landed,
                    rows_quarantined=0,
                    duration_s=0.0,
                    outcome="success" if all(o.passed for o in outcomes) else "warned",
                    detail="; ".join(
                        f"{o.name}: {o.observed.get('age_hours', 'no rows')} h old"
                        + ("" if o.passed else f" ({o.severity})")
                        for o in outcomes
                    ),
                ),
            )
        return dg.MaterializeResult(
            check_results=[check_result(o) for o in outcomes],
            metadata={
                "dagster/row_count": session.row_count(result.relation),
                "rows_read": result.rows_read,
                "rows_landed": result.rows_landed,
                "rows_unchanged": result.rows_unchanged,
                "rows_deleted": result.rows_deleted,
                "rows_quarantined": result.rows_quarantined,
                "pull": "incremental" if result.incremental else "full",
                "load_path": result.path,
                **({"native_load": result.native_note} if result.native_note else {}),
                "new_columns": ", ".join(result.extra_columns) or "none",
                "batch_id": result.batch_id,
                "table": str(result.relation),
                "duration_s": round(result.duration_s, 3),
                "batch_column": BATCH_ID_COLUMN,
            },
        )

    return _land
