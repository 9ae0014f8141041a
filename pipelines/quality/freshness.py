"""Freshness: is a source table's newest data recent enough?

A source or table in ``sources/*.yml`` may declare ``freshness`` (``warn_after_hours``,
``error_after_hours``). After each load, the age of the table's newest row is measured in the
warehouse: ``now - MAX(cursor)`` when the cursor is a timestamp, else ``now - MAX(loaded_at)``
(the last time a load landed rows). ``now`` is the project's clock (:meth:`Project.now`).
Beyond ``error_after_hours`` the check fails with severity error, beyond ``warn_after_hours``
with severity warn. A freshness check never blocks downstream: stale data is still the latest
truth the warehouse has, and holding back the models would not make it fresher.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlglot import exp

from pipelines.quality.checks import CheckOutcome

if TYPE_CHECKING:
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


def check_freshness(
    warehouse: Warehouse,
    relation: Relation,
    spec: FreshnessSpec,
    *,
    cursor: str | None,
    loaded_at_column: str,
    now: datetime,
) -> CheckOutcome:
    """Measure the age of ``relation``'s newest cursor value (or load) against ``spec``."""
    latest, measured = None, "load"
    if cursor is not None:
        value = warehouse.scalar(
            exp.select(exp.Max(this=exp.column(cursor, quoted=True))).from_(relation.to_table())
        )
        if isinstance(value, datetime):
            latest, measured = value, f"`{cursor}`"
    if latest is None:
        latest = warehouse.scalar(
            exp.select(exp.Max(this=exp.column(loaded_at_column, quoted=True))).from_(
                relation.to_table()
            )
        )
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
