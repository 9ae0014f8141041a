"""Freshness: is a source table's newest data recent enough?

A source or table in ``sources/*.yml`` may declare ``freshness`` (``warn_after_hours``,
``error_after_hours``). After each load, the age of the table's newest row is measured in the
warehouse: ``now - MAX(cursor)`` when the cursor is a timestamp, else ``now - MAX(loaded_at)``
(the last time a load landed rows). ``now`` is the project's clock (:meth:`Project.now`).
A load tells the check what it knows of those values (the time it wrote its rows, the cursor
it stored), so on DuckDB the check reads only the part of the table that can hold newer ones.
Beyond ``error_after_hours`` the check fails with severity error, beyond ``warn_after_hours``
with severity warn. A freshness check never blocks downstream: stale data is still the latest
truth the warehouse has, and holding back the models would not make it fresher.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.modelling.materialize import timestamp_literal
from pipelines.quality.checks import CheckOutcome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipelines.config import FreshnessSpec, SourceSpec, SourceTableSpec
    from pipelines.warehouse.base import Relation, Warehouse

CHECK_NAME = "freshness"


def freshness_of(source: SourceSpec, table: SourceTableSpec) -> FreshnessSpec | None:
    """The table's SLA: its own, else its source's."""
    return table.freshness or source.freshness


def describe(spec: FreshnessSpec, measured: str) -> str:
    limits = []
    if spec.warn_after_hours is not None:
        limits.append(f"warns after {spec.warn_after_hours:g} h")
    if spec.error_after_hours is not None:
        limits.append(f"fails after {spec.error_after_hours:g} h")
    return f"age of the newest {measured}: {', '.join(limits)} (never blocks downstream)"


def _newest(warehouse: Warehouse, relation: Relation, column: str, floor: Any) -> Any:
    """``MAX(column)`` of ``relation``, looked for at or above ``floor`` first (a timestamp)."""
    values = exp.column(column, quoted=True)
    newest = exp.select(exp.Max(this=values.copy())).from_(relation.to_table())
    if isinstance(floor, datetime):
        found = warehouse.scalar(
            newest.where(exp.GTE(this=values, expression=timestamp_literal(floor)))
        )
        if found is not None:
            return found
    return warehouse.scalar(newest)


def check_freshness(
    warehouse: Warehouse,
    relation: Relation,
    spec: FreshnessSpec,
    *,
    cursor: str | None,
    loaded_at_column: str,
    now: datetime,
    floors: Mapping[str, Any] | None = None,
) -> CheckOutcome:
    """Measure the age of ``relation``'s newest cursor value (or load) against ``spec``.

    ``floors``: column -> a value its newest value is known to be at least, if that value is
    still in the table (the cursor a load stored, the time it wrote its rows). The newest
    value is then looked for among the values at or above it, a filter DuckDB answers from
    each block's bounds (a day's load of 5 M-row tables: the blocks it wrote
    instead of the whole column); when none is, the whole column is read. Either way the
    result is the column's maximum.
    """
    latest, measured = None, "load"
    known = floors or {}
    if cursor is not None:
        value = _newest(warehouse, relation, cursor, known.get(cursor))
        if isinstance(value, datetime):
            latest, measured = value, f"`{cursor}`"
    if latest is None:
        latest = _newest(warehouse, relation, loaded_at_column, known.get(loaded_at_column))
    description = describe(spec, measured)
    if latest is None:
        return CheckOutcome(
            name=CHECK_NAME,
            severity="error" if spec.error_after_hours is not None else "warn",
            description=description,
            failing_rows=1,
            sample=[{"latest": None, "reason": "the table has no rows"}],
            observed={"latest": "none"},
        )
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=now.tzinfo)
    age_hours = (now - latest).total_seconds() / 3600
    severity, failed = "warn", False
    if spec.error_after_hours is not None and age_hours > spec.error_after_hours:
        severity, failed = "error", True
    elif spec.warn_after_hours is not None and age_hours > spec.warn_after_hours:
        failed = True
    elif spec.error_after_hours is not None and spec.warn_after_hours is None:
        severity = "error"
    observed = {
        "age_hours": round(age_hours, 2),
        "latest": latest.isoformat(),
        "now": now.isoformat(),
    }
    return CheckOutcome(
        name=CHECK_NAME,
        severity=severity,
        description=description,
        failing_rows=int(failed),
        sample=[observed] if failed else [],
        observed=observed,
    )
