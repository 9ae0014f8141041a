"""Materializations: turn a compiled model into a table or view in the warehouse.

Each materialization is a function of (warehouse, relation, parsed SELECT) built from sqlglot
expressions, so it runs unchanged on every backend. Incremental and snapshot (SCD2)
materializations join this module; they share the same signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp

    from pipelines.warehouse.base import Relation, Warehouse


def _table(warehouse: Warehouse, relation: Relation, query: exp.Query) -> None:
    warehouse.replace_with_select(relation, query, kind="TABLE")


def _view(warehouse: Warehouse, relation: Relation, query: exp.Query) -> None:
    warehouse.replace_with_select(relation, query, kind="VIEW")


MATERIALIZERS: dict[str, Callable[[Warehouse, Relation, exp.Query], None]] = {
    "table": _table,
    "view": _view,
}


def materialize(
    warehouse: Warehouse, relation: Relation, query: exp.Query, materialized: str
) -> None:
    """Build ``relation`` from the model's parsed query; the backend renders it in its dialect."""
    MATERIALIZERS[materialized](warehouse, relation, query)
