"""Materializations: turn a compiled model into a table or view in the warehouse.

Each materialization is built from sqlglot expressions, so it runs unchanged on every backend.

``incremental`` models (dbt's semantics): the first build, or a full refresh, creates the table
from the whole query; later builds run the query with ``is_incremental()`` true (so it selects
only new or changed rows), stage its result in ``ssot_meta`` and apply it with the model's
``incremental_strategy``:

* ``append``: insert every staged row;
* ``merge``: update the rows whose ``unique_key`` matches a staged row, insert the others;
* ``delete+insert``: delete the rows whose ``unique_key`` matches a staged row, insert all staged.

``on_schema_change`` says what happens when the staged rows have columns the table lacks or
lack some it has: ``ignore`` (the default, as in dbt: new columns are dropped, missing ones stay
NULL), ``append_new_columns`` (add them to the table) or ``fail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from pipelines.errors import ModelError
from pipelines.project import META_SCHEMA
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pathlib import Path

    from pipelines.warehouse.base import Warehouse

INCREMENTAL_STRATEGIES = frozenset({"append", "merge", "delete+insert"})
SCHEMA_CHANGE_POLICIES = frozenset({"ignore", "append_new_columns", "fail"})


@dataclass(frozen=True)
class BuildSpec:
    """How one model is materialized."""

    relation: Relation
    materialized: str
    path: Path | str
    unique_key: tuple[str, ...] = ()
    strategy: str = "append"
    on_schema_change: str = "ignore"


def materialize(
    warehouse: Warehouse, spec: BuildSpec, query: exp.Query, *, incremental: bool = False
) -> int | None:
    """Build ``spec.relation`` from the model's parsed query; the backend renders it.

    ``incremental``: apply ``query`` (rendered with ``is_incremental()`` true) to the existing
    table instead of replacing it. Returns the rows an incremental build staged, else None.
    """
    if spec.materialized == "view":
        warehouse.replace_with_select(spec.relation, query, kind="VIEW")
        return None
    if not incremental:
        warehouse.replace_with_select(spec.relation, query, kind="TABLE")
        return None
    return _apply_increment(warehouse, spec, query)


def _apply_increment(warehouse: Warehouse, spec: BuildSpec, query: exp.Query) -> int:
    relation = spec.relation
    staged = Relation(META_SCHEMA, f"_increment__{relation.schema}__{relation.name}")
    warehouse.replace_with_select(staged, query, kind="TABLE")
    try:
        incoming = warehouse.columns(staged)
        columns = _reconcile_columns(warehouse, spec, incoming)
        missing = [k for k in spec.unique_key if k not in dict(incoming)]
        if missing:
            raise ModelError(
                f"{spec.path}: unique_key column(s) {', '.join(missing)} are not in the "
                f"model's output; select them or fix `unique_key`"
            )
        rows = warehouse.row_count(staged)
        if rows:
            if spec.strategy == "merge":
                warehouse.execute(_merge(relation, staged, spec.unique_key, columns))
            else:
                if spec.strategy == "delete+insert":
                    warehouse.execute(_delete_matching(relation, staged, spec.unique_key))
                select = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(
                    staged.to_table()
                )
                warehouse.insert_select(relation, columns, select)
        return rows
    finally:
        warehouse.drop(staged)


def _reconcile_columns(
    warehouse: Warehouse, spec: BuildSpec, incoming: list[tuple[str, str]]
) -> list[str]:
    """The staged columns to write, after applying ``on_schema_change``."""
    existing = dict(warehouse.columns(spec.relation))
    added = [(n, t) for n, t in incoming if n not in existing]
    removed = [n for n in existing if n not in dict(incoming)]
    if (added or removed) and spec.on_schema_change == "fail":
        changes = [f"new column {n!r} ({t})" for n, t in added] + [
            f"missing column {n!r}" for n in removed
        ]
        raise ModelError(
            f"{spec.path}: on_schema_change is fail and the model's columns changed: "
            f"{'; '.join(changes)}. Rebuild it with `ssot run --full-refresh "
            f"{spec.relation.name}` or set on_schema_change."
        )
    if spec.on_schema_change == "append_new_columns":
        for name, kind in added:
            warehouse.add_column(spec.relation, name, kind)
        return [n for n, _ in incoming]
    return [n for n, _ in incoming if n in existing]


def _matches(keys: tuple[str, ...], left: str, right: str) -> exp.Condition:
    return exp.and_(
        *[
            exp.column(k, table=left, quoted=True).eq(exp.column(k, table=right, quoted=True))
            for k in keys
        ]
    )


def _delete_matching(relation: Relation, staged: Relation, keys: tuple[str, ...]) -> exp.Expression:
    target = relation.to_table()
    target.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
    found = (
        exp.select("1").from_(exp.alias_(staged.to_table(), "s")).where(_matches(keys, "s", "t"))
    )
    return exp.Delete(this=target, where=exp.Where(this=exp.Exists(this=found)))


def _merge(
    relation: Relation, staged: Relation, keys: tuple[str, ...], columns: list[str]
) -> exp.Expression:
    def q(name: str) -> str:
        return exp.to_identifier(name, quoted=True).sql("duckdb")

    updates = [c for c in columns if c not in keys]
    set_clause = ", ".join(f"{q(c)} = s.{q(c)}" for c in updates)
    when_matched = f"WHEN MATCHED THEN UPDATE SET {set_clause} " if updates else ""
    sql = (
        f"MERGE INTO {relation.to_table().sql('duckdb')} AS t "
        f"USING {staged.to_table().sql('duckdb')} AS s "
        f"ON {_matches(keys, 's', 't').sql('duckdb')} "
        f"{when_matched}"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in columns)}) "
        f"VALUES ({', '.join(f's.{q(c)}' for c in columns)})"
    )
    merge = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(merge, exp.Merge)
    return merge
