"""The source tables as Dagster assets: one asset per table, landed in `raw` through its
contract by the build step (`pipelines.assets.models`), side by side with the other loads and
with the models whose sources are already landed."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from pipelines.assets.checks import check_result
from pipelines.assets.keys import source_key
from pipelines.assets.schema import table_schema_for_source
from pipelines.landing import (
    BATCH_ID_COLUMN,
    LOADED_AT_COLUMN,
    holds_rows,
    land_table,
    pulls_whole_table,
)
from pipelines.meta import AuditEntry, LoadState, record_audit
from pipelines.modelling.graph import source_relation
from pipelines.quality.checks import record_outcomes
from pipelines.quality.freshness import CHECK_NAME as FRESHNESS
from pipelines.quality.freshness import check_freshness, freshness_of
from pipelines.quality.freshness import describe as describe_freshness

if TYPE_CHECKING:
    from pipelines.config import SourceSpec, SourceTableSpec
    from pipelines.project import Project
    from pipelines.warehouse.base import Relation, Warehouse


def _owner(value: str) -> list[str]:
    return [value] if "@" in value or value.startswith("team:") else [f"team:{value}"]


@dataclass(frozen=True)
class Landing:
    """One source table the build step lands: its raw asset."""

    source: SourceSpec
    table: SourceTableSpec

    @property
    def key(self) -> dg.AssetKey:
        return source_key(self.source.name, self.table.name)

    @property
    def name(self) -> str:
        """How the step's scheduler and the audit log name it: ``raw/<source>/<table>``."""
        return self.key.to_user_string()

    @property
    def option(self) -> str:
        """How the step's config names it: ``<source>.<table>``."""
        return f"{self.source.name}.{self.table.name}"

    @property
    def relation(self) -> Relation:
        return source_relation(self.source.name, self.table.name)


def landings(project: Project) -> list[Landing]:
    return [Landing(source, table) for source, table in project.source_tables()]


def source_spec(project: Project, landing: Landing) -> dg.AssetSpec:
    source, table = landing.source, landing.table
    pii = sorted({c.pii for c in table.columns if c.pii != "none"})
    sla = freshness_of(source, table)
    return dg.AssetSpec(
        key=landing.key,
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
        skippable=True,
    )


def source_check_specs(landing: Landing) -> list[dg.AssetCheckSpec]:
    sla = freshness_of(landing.source, landing.table)
    if sla is None:
        return []
    cursor = landing.table.cursor
    return [
        dg.AssetCheckSpec(
            name=FRESHNESS,
            asset=landing.key,
            blocking=False,
            description=describe_freshness(sla, f"`{cursor}`" if cursor else "load"),
        )
    ]


def pulls_everything(
    landing: Landing, states: Mapping[tuple[str, str], LoadState], *, full_refresh: bool
) -> bool:
    """Whether the load reads the whole source table: asked to, never landed before, or a
    table every load of which reads it whole (``states``: `meta.load_states`)."""
    state = states.get((landing.source.name, landing.table.name), LoadState())
    return full_refresh or pulls_whole_table(landing.table, state)


def writes_first_load(session: Warehouse, landing: Landing) -> bool:
    """Whether the load writes raw as a first load (raw missing or empty): through a fresh
    table whose engine cache is released as it goes, which changes the warehouse's memory
    limit for everything running (`Warehouse.release_cache`, `native_table`)."""
    return not holds_rows(session, landing.relation)


def land_source(
    project: Project,
    session: Warehouse,
    landing: Landing,
    *,
    run_id: str,
    full_refresh: bool,
    stop: threading.Event | None = None,
) -> tuple[list[str], list[Any]]:
    """Land one source table and measure its freshness: the warnings for the run's log, and
    its events (the materialization, then its check results). ``stop``: see ``land_table``."""
    source, table = landing.source, landing.table
    key = landing.key
    result = land_table(
        project, session, source, table, run_id=run_id, full_refresh=full_refresh, stop=stop
    )
    warnings = []
    if result.extra_columns:
        warnings.append(
            f"{source.name}.{table.name}: new source column(s) not in the contract landed as-is: "
            f"{', '.join(result.extra_columns)}; declare them in sources/{source.name}.yml"
        )
    outcomes = []
    sla = freshness_of(source, table)
    if sla is not None:
        # only a timestamp cursor tells an age (any other: the newest load does); what the load
        # knows of the newest values spares reading the whole columns
        cursor = (
            table.cursor
            if table.cursor and table.column(table.cursor).type == "timestamp"
            else None
        )
        floors = {LOADED_AT_COLUMN: result.loaded_at, **({cursor: result.cursor} if cursor else {})}
        outcomes.append(
            check_freshness(
                session,
                result.relation,
                sla,
                cursor=cursor,
                loaded_at_column=LOADED_AT_COLUMN,
                now=project.now(),
                floors=floors,
            )
        )
        record_outcomes(
            session,
            outcomes,
            run_id=run_id,
            asset=landing.name,
            audited=str(result.relation),
            published=True,
        )
        record_audit(
            session,
            AuditEntry(
                run_id=run_id,
                asset=landing.name,
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
    materialization = dg.AssetMaterialization(
        asset_key=key,
        metadata={
            "dagster/row_count": session.row_count(result.relation),
            "rows_read": result.rows_read,
            "rows_landed": result.rows_landed,
            "rows_unchanged": result.rows_unchanged,
            "rows_deleted": result.rows_deleted,
            "rows_quarantined": result.rows_quarantined,
            "rows_already_quarantined": result.rows_already_quarantined,
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
    return warnings, [materialization, *(check_result(o, key) for o in outcomes)]
