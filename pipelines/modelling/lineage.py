"""Column-level lineage of a model, traced by sqlglot through CTEs, joins, unions and `*`.

Each output column of a model maps to the upstream columns (a model's or a raw table's) it is
computed from. Tracing needs the upstream tables' columns (to expand `*` and resolve unqualified
names); the caller passes them, read from the warehouse once the upstream is built.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlglot import exp
from sqlglot.errors import SqlglotError

from pipelines.atomic import write_text_atomically
from pipelines.errors import ModelError
from pipelines.warehouse.base import Relation

#: the folder (under the project) where traced lineage is kept, one file per digest of all it
#: depends on; safe to delete
LINEAGE_CACHE = Path("target") / "cache" / "lineage"
#: a cached trace no build has used for this long is removed when a new one is written
LINEAGE_CACHE_DAYS = 30


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


def cached_column_lineage(
    query: exp.Query,
    upstream: Mapping[Relation, Sequence[str]],
    *,
    dialect: str,
    path: Path | str,
    cache: Path,
) -> dict[str, list[ColumnSource]]:
    """:func:`column_lineage`, kept in the folder ``cache`` under a digest of the query's SQL,
    the dialect, the upstream columns, sqlglot's version and this module's code (so a change
    to how lineage is traced or stored is a new key), so an unchanged model is not traced
    again at every build (5-130 ms a model, 0.4 s of a run of the demo). A cache file that
    cannot be read or written is ignored."""
    import sqlglot

    inputs = [
        _tracer_digest(),
        str(getattr(sqlglot, "__version__", "")),
        dialect,
        query.sql(dialect=dialect),
        sorted([str(relation), list(columns)] for relation, columns in upstream.items()),
    ]
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
    file = cache / f"{key}.json"
    try:
        kept = json.loads(file.read_text(encoding="utf-8"))
        found = {
            column: [ColumnSource(Relation(s, t), c) for s, t, c in sources]
            for column, sources in kept.items()
        }
        with contextlib.suppress(OSError):
            os.utime(file)  # used: kept by the pruning below
        return found
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # not traced yet, or unreadable: trace it
    traced = column_lineage(query, upstream, dialect=dialect, path=path)
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
        # whole or not at all, for a concurrent reader
        write_text_atomically(
            file,
            json.dumps(
                {
                    column: [[s.relation.schema, s.relation.name, s.column] for s in sources]
                    for column, sources in traced.items()
                }
            ),
        )
    _prune(cache, time.time() - LINEAGE_CACHE_DAYS * 86400)
    return traced


def _prune(cache: Path, before: float) -> None:
    """Remove the cached traces last used before ``before`` (a timestamp): those of models
    since edited or removed."""
    with contextlib.suppress(OSError):
        for entry in cache.glob("*.json"):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < before:
                    entry.unlink()


@functools.cache
def _tracer_digest() -> str:
    """A digest of this module's code: a change to how lineage is traced is a new cache key."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def columns_read(query: exp.Query, schema: str) -> dict[str, frozenset[str] | None]:
    """For each table of ``schema`` that ``query`` reads, the names (lower case) of the
    columns it may read from it; None where it may read any column.

    Meant for deciding what to keep, so it errs on the side of more: an unqualified column name
    anywhere in the query counts for every such table, and anything that reads columns without
    naming them (a `*` other than `count(*)`, `COLUMNS(...)`, `#1`, PIVOT, NATURAL JOIN, an alias with a
    column list, a table alias used as a value, a dotted name that is not `alias.column`)
    counts as reading them all.
    """
    from sqlglot.optimizer.scope import traverse_scope, walk_in_scope

    scopes = list(traverse_scope(query))
    read: dict[str, set[str] | None] = {}
    aliases: dict[str, set[str]] = {}  # alias (lower case) -> the tables of schema it names
    known: set[str] = set()  # every alias or table name a column may be qualified with
    everything = any(
        isinstance(node, exp.Columns | exp.PositionalColumn | exp.Pivot)
        or (isinstance(node, exp.Join) and node.args.get("method") == "NATURAL")
        for node in query.walk()
    )
    for scope in scopes:
        known |= {alias.lower() for alias in scope.sources}
        here = {
            alias.lower(): source
            for alias, source in scope.sources.items()
            if isinstance(source, exp.Table) and source.db == schema
        }
        for alias, table in here.items():
            read.setdefault(table.name, set())
            aliases.setdefault(alias, set()).add(table.name)
            alias_node = table.args.get("alias")
            if isinstance(alias_node, exp.TableAlias) and alias_node.columns:
                read[table.name] = None  # columns renamed by position
        stars = [
            node
            for node in walk_in_scope(scope.expression)
            if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count)
        ]
        for star in stars:
            owner = star.parent.table.lower() if isinstance(star.parent, exp.Column) else ""
            for alias, table in here.items():
                if not owner or owner == alias:
                    read[table.name] = None
    columns = [c for c in query.find_all(exp.Column) if not isinstance(c.this, exp.Star)]
    names = {c.name.lower() for c in columns if not c.table}
    names |= {
        i.name.lower() for join in query.find_all(exp.Join) for i in join.args.get("using") or []
    }
    for column in columns:
        qualifier = column.table.lower()
        if column.args.get("db") is not None or (qualifier and qualifier not in known):
            everything = True  # a struct field (`s.x`, `c.s.x`) or a name not in scope
        for table_name in aliases.get(qualifier, ()) if qualifier else ():
            found = read[table_name]
            if found is not None:
                found.add(column.name.lower())
    if everything or names & set(aliases):  # a table alias used as a value: the whole row
        return dict.fromkeys(read)
    return {
        name: None if found is None else frozenset(found | names) for name, found in read.items()
    }
