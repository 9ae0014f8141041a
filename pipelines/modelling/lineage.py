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


def columns_read(query: exp.Query, schema: str) -> dict[str, frozenset[str] | None]:
    """For each table of ``schema`` that ``query`` reads, the names of the columns it may read
    from it; None where it may read every column (a `*`, a NATURAL join). Meant for deciding
    what to keep, so it errs on the side of more: an unqualified column name anywhere in the
    query counts for every such table, whatever table it belongs to."""
    from sqlglot.optimizer.scope import traverse_scope

    read: dict[str, set[str] | None] = {}
    aliases: dict[str, set[str]] = {}
    for scope in traverse_scope(query):
        here = {
            alias: source.name
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table) and source.db == schema
        }
        if not here:
            continue
        for alias, name in here.items():
            read.setdefault(name, set())
            aliases.setdefault(alias, set()).add(name)
        select = scope.expression
        everything = isinstance(select, exp.Select) and (
            any(isinstance(p, exp.Star) for p in select.expressions)
            or any(j.args.get("method") == "NATURAL" for j in select.args.get("joins") or [])
        )
        for projection in select.expressions if isinstance(select, exp.Select) else []:
            if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                everything = everything or projection.table in here or not projection.table
        if everything:
            for name in here.values():
                read[name] = None
    names = {
        c.name
        for c in query.find_all(exp.Column)
        if not c.table and not isinstance(c.this, exp.Star)
    }
    names |= {i.name for join in query.find_all(exp.Join) for i in join.args.get("using") or []}
    for column in query.find_all(exp.Column):
        for name in aliases.get(column.table, ()):
            found = read[name]
            if found is not None:
                found.add(column.name)
    for name, found in read.items():
        if found is not None:
            if names & set(aliases):  # a table alias used as a column: the whole row
                read[name] = None
            else:
                found |= names
    return {name: None if found is None else frozenset(found) for name, found in read.items()}
