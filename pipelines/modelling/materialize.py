"""Materializations: turn a compiled model into a table or view in the warehouse.

Each materialization is built from sqlglot expressions, so it runs unchanged on every backend.

``incremental`` models (dbt's semantics): the first build, or a full refresh, creates the table
from the whole query; later builds run the query with ``is_incremental()`` true (so it selects
only new or changed rows), stage its result in ``ssot_meta`` and apply it with the model's
``incremental_strategy``:

* ``append``: insert every staged row;
* ``merge``: update the rows whose ``unique_key`` matches a staged row, insert the others;
* ``delete+insert``: delete the rows whose ``unique_key`` matches a staged row, insert all staged.

``snapshot`` models keep history as slowly changing dimension type 2: every version of each
``unique_key`` with ``valid_from``, ``valid_to`` and ``is_current``. Each build compares the
query's rows with the current versions (on ``check_cols``, all columns by default): a changed
key's current version is closed (``valid_to`` = the build time) and its new version opened; a key
gone from the query (a deleted entity) is closed; unchanged keys are left alone. A query that
repeats a ``unique_key`` fails the build before anything is written.

``on_schema_change`` says what happens when the staged rows have columns the table lacks or
lack some it has: ``ignore`` (the default, as in dbt: new columns are dropped, missing ones stay
NULL), ``append_new_columns`` (add them to the table) or ``fail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
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
VALID_FROM, VALID_TO, IS_CURRENT = "valid_from", "valid_to", "is_current"
SNAPSHOT_HASH = "_ssot_row_hash"
SNAPSHOT_COLUMNS = (VALID_FROM, VALID_TO, IS_CURRENT, SNAPSHOT_HASH)
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
    #: snapshot: the columns whose change opens a new version (None: all of them)
    check_cols: tuple[str, ...] | None = None


def timestamp_literal(value: datetime) -> exp.Expression:
    """A TIMESTAMPTZ literal (rendered for each warehouse by sqlglot)."""
    return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("TIMESTAMPTZ"))


def materialize(
    warehouse: Warehouse,
    spec: BuildSpec,
    query: exp.Query,
    *,
    incremental: bool = False,
    at: datetime | None = None,
) -> int | None:
    """Build ``spec.relation`` from the model's parsed query; the backend renders it.

    ``incremental``: apply ``query`` (rendered with ``is_incremental()`` true) to the existing
    table instead of replacing it. Returns the rows an incremental build staged (for a snapshot:
    the versions opened or closed), else None. ``at``: the build's time (snapshots' validity).
    """
    if spec.materialized == "snapshot":
        return _snapshot(warehouse, spec, query, at or datetime.now(UTC))
    if spec.materialized == "view":
        _replace(warehouse, spec.relation, query, "VIEW")
        return None
    if not incremental or warehouse.is_view(spec.relation):
        _replace(warehouse, spec.relation, query, "TABLE")
        return None
    return _apply_increment(warehouse, spec, query)


def candidate_relation(relation: Relation) -> Relation:
    """Where the candidate of a build that failed its audit is kept for inspection."""
    return Relation(META_SCHEMA, f"candidate__{relation.schema}__{relation.name}")


def keep_candidate(
    warehouse: Warehouse, spec: BuildSpec, query: exp.Query, *, incremental: bool
) -> Relation:
    """Write the rows a build produced, which its audit refused, beside the published table.

    The build itself was rolled back (the published table is untouched); this writes what it
    would have published: the model's rows (a view model: a view of them), or for an
    incremental build the increment it would have applied.
    """
    candidate = candidate_relation(spec.relation)
    warehouse.drop_existing(candidate)
    kind = "VIEW" if spec.materialized == "view" else "TABLE"
    warehouse.replace_with_select(candidate, query, kind=kind)
    return candidate


def _replace(warehouse: Warehouse, relation: Relation, query: exp.Query, kind: str) -> None:
    """CREATE OR REPLACE ``kind``; a relation of the other kind (the model's materialization
    changed) is dropped first, in the same transaction."""
    if warehouse.exists(relation) and warehouse.is_view(relation) != (kind == "VIEW"):
        warehouse.drop(relation, kind="TABLE" if kind == "VIEW" else "VIEW")
    warehouse.replace_with_select(relation, query, kind=kind)


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


def _snapshot(warehouse: Warehouse, spec: BuildSpec, query: exp.Query, at: datetime) -> int:
    relation, keys = spec.relation, spec.unique_key
    staged = Relation(META_SCHEMA, f"_snapshot__{relation.schema}__{relation.name}")
    shape = Relation(META_SCHEMA, f"_snapshot_shape__{relation.schema}__{relation.name}")
    try:
        warehouse.replace_with_select(shape, query, kind="VIEW")
        columns = [name for name, _ in warehouse.columns(shape)]
        clashing = [c for c in columns if c in SNAPSHOT_COLUMNS]
        if clashing:
            raise ModelError(
                f"{spec.path}: snapshot columns {', '.join(clashing)} are added by the "
                "snapshot; rename them in the model"
            )
        tracked = list(spec.check_cols or columns)
        missing = [c for c in (*keys, *tracked) if c not in columns]
        if missing:
            raise ModelError(
                f"{spec.path}: unique_key/check_cols column(s) {', '.join(missing)} are not in "
                f"the model's output ({', '.join(columns)})"
            )
        fingerprint = warehouse.row_hash([exp.column(c, quoted=True) for c in tracked])
        warehouse.replace_with_select(
            staged,
            exp.select(
                *[exp.column(c, quoted=True) for c in columns],
                exp.alias_(fingerprint, SNAPSHOT_HASH, quoted=True),
            ).from_(shape.to_table()),
        )
        _require_unique(warehouse, spec, staged)
        now = timestamp_literal(at)
        existing = {name for name, _ in warehouse.columns(relation)}
        if not set(SNAPSHOT_COLUMNS) <= existing:
            # the first build, or the model was built another way before: history starts now
            select = exp.select(
                *[exp.column(c, quoted=True) for c in (*columns, SNAPSHOT_HASH)],
                exp.alias_(now, VALID_FROM, quoted=True),
                exp.alias_(
                    exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")), VALID_TO, quoted=True
                ),
                exp.alias_(exp.true(), IS_CURRENT, quoted=True),
            ).from_(staged.to_table())
            _replace(warehouse, relation, select, "TABLE")
            return warehouse.row_count(relation)
        for name, kind in warehouse.columns(staged):
            if name not in existing:
                warehouse.add_column(relation, name, kind)
        current = exp.column(IS_CURRENT, table="t", quoted=True)
        same_version = exp.and_(
            _matches(keys, "s", "t"),
            exp.column(SNAPSHOT_HASH, table="s", quoted=True).eq(
                exp.column(SNAPSHOT_HASH, table="t", quoted=True)
            ),
        )
        target = relation.to_table()
        target.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
        close = exp.Update(
            this=target,
            expressions=[
                exp.column(VALID_TO, quoted=True).eq(now),
                exp.column(IS_CURRENT, quoted=True).eq(exp.false()),
            ],
            where=exp.Where(
                this=exp.and_(
                    current,
                    exp.Not(
                        this=exp.Exists(
                            this=exp.select("1")
                            .from_(exp.alias_(staged.to_table(), "s"))
                            .where(same_version)
                        )
                    ),
                )
            ),
        )
        closed = warehouse.execute_dml(close)
        still_current = (
            exp.select("1")
            .from_(exp.alias_(relation.to_table(), "t"))
            .where(exp.and_(current, _matches(keys, "s", "t")))
        )
        opened = warehouse.insert_select(
            relation,
            [*columns, SNAPSHOT_HASH, VALID_FROM, VALID_TO, IS_CURRENT],
            exp.select(
                *[exp.column(c, table="s", quoted=True) for c in (*columns, SNAPSHOT_HASH)],
                now,
                exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")),
                exp.true(),
            )
            .from_(exp.alias_(staged.to_table(), "s"))
            .where(exp.Not(this=exp.Exists(this=still_current))),
        )
        return closed + opened
    finally:
        warehouse.drop(staged)
        warehouse.drop(shape, kind="VIEW")


def _require_unique(warehouse: Warehouse, spec: BuildSpec, staged: Relation) -> None:
    keys = [exp.column(k, quoted=True) for k in spec.unique_key]
    repeated = warehouse.scalar(
        exp.select(exp.Count(this=exp.Star())).from_(
            exp.select(*keys)
            .from_(staged.to_table())
            .group_by(*keys)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            .subquery("repeated")
        )
    )
    if repeated:
        raise ModelError(
            f"{spec.path}: snapshot unique_key ({', '.join(spec.unique_key)}) repeats for "
            f"{repeated} key(s) in the model's output; a snapshot needs one row per key. "
            "Nothing was written."
        )


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
