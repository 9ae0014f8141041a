"""Column-level lineage of a model, traced by sqlglot through CTEs, joins, unions and `*`.

Each output column of a model maps to the upstream columns (a model's or a raw table's) it is
computed from. Tracing needs the upstream tables' columns (to expand `*` and resolve unqualified
names); the caller passes them, read from the warehouse once the upstream is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp
from sqlglot.errors import SqlglotError

from pipelines.errors import ModelError
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class ColumnSource:
    """An upstream column an output column is computed from."""

    relation: Relation
    column: str


def column_lineage(
    query: exp.Query,
    upstream: Mapping[Relation, Sequence[str]],
    *,
    dialect: str,
    path: Path | str,
) -> dict[str, list[ColumnSource]]:
    """For every output column of ``query``, the upstream columns it reads (sorted, no repeats).

    A column computed from constants only maps to an empty list. ``upstream`` gives the columns
    of each relation the query reads.
    """
    from sqlglot.lineage import lineage

    schema: dict[str, dict[str, dict[str, str]]] = {}
    for relation, columns in upstream.items():
        # the type does not matter for lineage; the names do
        schema.setdefault(relation.schema, {})[relation.name] = dict.fromkeys(columns, "TEXT")
    try:
        nodes = lineage(None, query, schema=schema, dialect=dialect)
    except SqlglotError as exc:
        raise ModelError(f"{path}: column lineage cannot be traced: {exc}") from None
    assert isinstance(nodes, dict)
    traced: dict[str, list[ColumnSource]] = {}
    for output, node in nodes.items():
        found: set[ColumnSource] = set()
        for step in node.walk():
            table = step.expression
            if isinstance(table, exp.Table) and table.db:
                found.add(ColumnSource(Relation(table.db, table.name), step.name.split(".")[-1]))
        traced[output] = sorted(found, key=lambda s: (s.relation.schema, s.relation.name, s.column))
    return traced
