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

A ``deleted_flag`` (a boolean column of the model's output) lets an increment delete: a row
whose flag is true removes the rows of its ``unique_key`` (``merge``, ``delete+insert``) or
closes its current version (snapshot) and is not written; the flag column is never stored.
A snapshot built from an increment (it asks ``is_incremental()``) touches only the keys the
increment holds; built from its whole query it closes every key the query no longer has.

A model whose changes another model reads (``changes('model')``) keeps a **change feed** in
``ssot_meta.changes__<schema>__<model>``: each build appends the rows it replaced or deleted
(``_ssot_change = 'before'``) and the rows it wrote (``'after'``), stamped with the build's
time (``_ssot_changed_at``). A build from the whole query of an incremental model empties the
feed and writes one ``'reset'`` row: a reader built before it must rebuild whole.

``on_schema_change`` says what happens when the staged rows have columns the table lacks or
lack some it has: ``ignore`` (the default, as in dbt: new columns are dropped, missing ones stay
NULL), ``append_new_columns`` (add them to the table) or ``fail``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlglot import exp

from pipelines.errors import ModelError
from pipelines.project import META_SCHEMA
from pipelines.warehouse.base import Relation, keys_match, merge_statement

if TYPE_CHECKING:
    from pathlib import Path

    from pipelines.warehouse.base import Warehouse

INCREMENTAL_STRATEGIES = frozenset({"append", "merge", "delete+insert"})
VALID_FROM, VALID_TO, IS_CURRENT = "valid_from", "valid_to", "is_current"
SNAPSHOT_HASH = "_ssot_row_hash"
SNAPSHOT_COLUMNS = (VALID_FROM, VALID_TO, IS_CURRENT, SNAPSHOT_HASH)
SCHEMA_CHANGE_POLICIES = frozenset({"ignore", "append_new_columns", "fail"})
#: a change feed's own columns, and the marker of a feed emptied by a whole rebuild
CHANGE_COLUMN, CHANGED_AT_COLUMN, RESET = "_ssot_change", "_ssot_changed_at", "reset"


def change_feed_relation(relation: Relation) -> Relation:
    """Where the change feed of the model published as ``relation`` is kept."""
    return Relation(META_SCHEMA, f"changes__{relation.schema}__{relation.name}")


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
    #: the output column that marks an increment's row as a deletion of its key
    deleted_flag: str | None = None
    #: where each build records what it changed (another model reads it), if anywhere
    change_feed: Relation | None = None
    #: the model's columns the feed keeps (None: all of them)
    feed_columns: frozenset[str] | None = None

    def fed(self, columns: list[str]) -> list[str]:
        """Those of ``columns`` the change feed keeps (``feed_columns`` is lower case: column
        names are case-insensitive on every backend)."""
        keep = self.feed_columns
        return [c for c in columns if keep is None or c.lower() in keep]


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
    written: Relation | None = None,
) -> int | None:
    """Build ``spec.relation`` from the model's parsed query; the backend renders it.

    ``incremental``: apply ``query`` (rendered with ``is_incremental()`` true) to the existing
    table instead of replacing it. Returns the rows an incremental build staged (for a snapshot:
    the versions opened or closed), else None. ``at``: the build's time (snapshots' validity,
    the change feed's stamp). ``written``: where an incremental model's (or a snapshot's)
    build keeps the rows it wrote, as they are now (for its audit; the caller drops it).
    """
    at = at or datetime.now(UTC)
    if spec.materialized == "snapshot":
        return _snapshot(warehouse, spec, query, at, partial=incremental, written=written)
    if spec.materialized == "view":
        _replace(warehouse, spec.relation, query, "VIEW")
        return None
    if not incremental or warehouse.is_view(spec.relation):
        _replace(warehouse, spec.relation, query, "TABLE")
        if spec.change_feed is not None:
            reset_feed(warehouse, spec, at)
        return None
    return _apply_increment(warehouse, spec, query, at, written)


def written_relation(relation: Relation) -> Relation:
    """Where an incremental build keeps the rows it wrote until they are audited."""
    return Relation(META_SCHEMA, f"_written__{relation.schema}__{relation.name}")


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


def _apply_increment(
    warehouse: Warehouse,
    spec: BuildSpec,
    query: exp.Query,
    at: datetime,
    written: Relation | None = None,
) -> int:
    relation, flag = spec.relation, spec.deleted_flag
    staged = Relation(META_SCHEMA, f"_increment__{relation.schema}__{relation.name}")
    warehouse.replace_with_select(staged, query, kind="TABLE")
    replaced: Relation | None = None
    try:
        incoming = warehouse.columns(staged)
        if flag is not None:
            _require_flag(spec, flag, [name for name, _ in incoming])
        columns = _reconcile_columns(warehouse, spec, [c for c in incoming if c[0] != flag])
        missing = [k for k in spec.unique_key if k not in dict(incoming)]
        if missing:
            raise ModelError(
                f"{spec.path}: unique_key column(s) {', '.join(missing)} are not in the "
                f"model's output; select them or fix `unique_key`"
            )
        # the rows the increment writes (a flagged row only deletes its key)
        live = exp.select(exp.Star()).from_(staged.to_table())
        if flag is not None:
            live = live.where(exp.not_(is_flagged(flag, "")))
        rows = warehouse.row_count(staged)
        if rows and spec.strategy == "merge":
            _require_unique(warehouse, spec, staged, "a merge")
        if rows:
            everything = [name for name, _ in warehouse.columns(relation)]
            # A merge that writes every column of the table is done as delete + insert: the
            # same rows, and an UPDATE of keys spread over a big table rewrites every row
            # group it touches when DuckDB checkpoints (5 M rows, 50,000 keys: 2.2 s against
            # 0.2 s for delete + insert).
            whole_rows = set(columns) >= set(everything)
            deleting = spec.strategy != "append" and (spec.strategy != "merge" or whole_rows)
            if spec.change_feed is not None and spec.strategy != "append":
                if deleting and _has_row_ids(warehouse, everything):
                    # the rows replaced are found once, for the feed and for the delete
                    replaced = _replaced_rows(warehouse, spec, staged, everything)
                    before = exp.select(exp.Star()).from_(replaced.to_table())
                else:
                    before = _matched(relation, staged, spec.unique_key)
                _log_change(warehouse, spec, before, everything, at, "before")
            if not deleting and spec.strategy == "merge":
                flagged = is_flagged(flag, "s") if flag else None
                warehouse.execute(
                    merge_statement(
                        relation, staged.to_table(), spec.unique_key, columns, delete_when=flagged
                    )
                )
            else:
                if replaced is not None:
                    warehouse.execute(_delete_rows(warehouse, relation, replaced))
                elif deleting:
                    warehouse.execute(_delete_matching(relation, staged, spec.unique_key))
                select = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(
                    live.subquery("s")
                )
                warehouse.insert_select(relation, columns, select)
            if spec.change_feed is not None:
                _log_change(warehouse, spec, live, columns, at, "after")
        if written is not None:
            warehouse.replace_with_select(written, live)
        return rows
    finally:
        try:
            warehouse.drop(staged)
        finally:
            if replaced is not None:
                warehouse.drop(replaced)


def _require_flag(spec: BuildSpec, flag: str, columns: list[str]) -> None:
    if flag not in columns:
        raise ModelError(
            f"{spec.path}: deleted_flag {flag!r} is not a column of the model's increment; "
            "select it (true for a row that deletes its key)"
        )


def _key_staged(staged: Relation, keys: tuple[str, ...]) -> exp.Expression:
    """Whether ``staged`` holds the key of the target row (alias t).

    A single key is an ``IN`` test: DuckDB then filters the target's scan by the staged keys'
    range, so where they are all new (an append-mostly table: order lines, payments) no row
    group of the target is read; the correlated ``EXISTS`` a key of several columns needs
    became a null-safe join that scanned every row (10 M order lines to find none: about 0.3 s
    a day). Both match no NULL key, as ``=`` does not.
    """
    if len(keys) == 1:
        (key,) = keys
        values = exp.select(exp.column(key, quoted=True)).from_(staged.to_table())
        return exp.In(this=exp.column(key, table="t", quoted=True), query=values.subquery())
    found = (
        exp.select("1").from_(exp.alias_(staged.to_table(), "s")).where(keys_match(keys, "s", "t"))
    )
    return exp.Exists(this=found)


def _matched(relation: Relation, staged: Relation, keys: tuple[str, ...]) -> exp.Select:
    """The rows of ``relation`` whose key is in ``staged``."""
    return (
        exp.select(exp.Star())
        .from_(exp.alias_(relation.to_table(), "t"))
        .where(_key_staged(staged, keys))
    )


#: the column of a replaced-rows table holding each row's id in the model's table
REPLACED_ROW_ID = "_ssot_replaced_row_id"


def _has_row_ids(warehouse: Warehouse, columns: list[str]) -> bool:
    """Whether the warehouse names each row of a table with these ``columns`` by an id: it has
    row ids and no column hides them (a DuckDB column named ``rowid`` does)."""
    row_id = warehouse.row_id_column
    return row_id is not None and all(c.lower() != row_id.lower() for c in columns)


def _replaced_rows(
    warehouse: Warehouse, spec: BuildSpec, staged: Relation, columns: list[str]
) -> Relation:
    """Keep, beside the model's table, the id and the fed ``columns`` of each of its rows whose
    key ``staged`` holds: the rows an increment replaces, found by one join of the whole table
    that both their change feed record and their delete use (on a 5 M-row table keyed by text,
    finding them twice cost about 0.1 s more). Only for a warehouse with row ids, in the
    transaction that deletes them (a row's id holds until its table is next rewritten)."""
    assert warehouse.row_id_column is not None
    relation = spec.relation
    replaced = Relation(META_SCHEMA, f"_replaced__{relation.schema}__{relation.name}")
    found = _matched(relation, staged, spec.unique_key)
    found.set(
        "expressions",
        [
            exp.alias_(
                exp.column(warehouse.row_id_column, table="t"), REPLACED_ROW_ID, quoted=True
            ),
            *[exp.column(c, table="t", quoted=True) for c in spec.fed(columns)],
        ],
    )
    warehouse.replace_with_select(replaced, found, kind="TABLE")
    return replaced


def _delete_rows(warehouse: Warehouse, relation: Relation, replaced: Relation) -> exp.Expression:
    """Delete the rows of ``relation`` that ``replaced`` (:func:`_replaced_rows`) names by id."""
    assert warehouse.row_id_column is not None
    ids = exp.select(exp.column(REPLACED_ROW_ID, quoted=True)).from_(replaced.to_table())
    return exp.Delete(
        this=relation.to_table(),
        where=exp.Where(
            this=exp.In(this=exp.column(warehouse.row_id_column), query=ids.subquery())
        ),
    )


def add_missing_columns(
    warehouse: Warehouse,
    relation: Relation,
    columns: list[tuple[str, str]],
    present: list[tuple[str, str]] | None = None,
) -> None:
    """Add to ``relation`` those of ``columns`` (name, type as :meth:`Warehouse.columns`
    reports it) it lacks. ``present``: ``relation``'s columns, when the caller has read them."""
    have = {name for name, _ in (warehouse.columns(relation) if present is None else present)}
    for name, type_sql in columns:
        if name not in have:
            warehouse.add_column(relation, name, type_sql)


def feed_rows(feed: Relation, since: datetime | None) -> exp.Select:
    """The changes ``feed`` recorded after ``since`` (all of them when None), without its
    reset marker."""
    query = (
        exp.select(exp.Star())
        .from_(feed.to_table())
        .where(exp.column(CHANGE_COLUMN, quoted=True).neq(exp.Literal.string(RESET)))
    )
    if since is None:
        return query
    changed_at = exp.column(CHANGED_AT_COLUMN, quoted=True)
    return query.where(exp.GT(this=changed_at, expression=timestamp_literal(since)))


def feed_reset_at(warehouse: Warehouse, spec: BuildSpec) -> datetime | None:
    """When the model's change feed last started again (None: it has none)."""
    if spec.change_feed is None or not warehouse.exists(spec.change_feed):
        return None
    value = warehouse.scalar(
        exp.select(exp.Max(this=exp.column(CHANGED_AT_COLUMN, quoted=True)))
        .from_(spec.change_feed.to_table())
        .where(exp.column(CHANGE_COLUMN, quoted=True).eq(exp.Literal.string(RESET)))
    )
    return value if isinstance(value, datetime) else None


def prune_feed(warehouse: Warehouse, spec: BuildSpec, read_until: datetime) -> None:
    """Drop the feed's changes every reader has read (those up to ``read_until``)."""
    if spec.change_feed is None or not warehouse.exists(spec.change_feed):
        return
    warehouse.execute_dml(
        exp.Delete(
            this=spec.change_feed.to_table(),
            where=exp.Where(
                this=exp.and_(
                    exp.column(CHANGE_COLUMN, quoted=True).neq(exp.Literal.string(RESET)),
                    exp.LTE(
                        this=exp.column(CHANGED_AT_COLUMN, quoted=True),
                        expression=timestamp_literal(read_until),
                    ),
                )
            ),
        )
    )


def has_history(warehouse: Warehouse, relation: Relation) -> bool:
    """Whether ``relation`` is a snapshot's table (it has the validity columns)."""
    return set(SNAPSHOT_COLUMNS) <= {name for name, _ in warehouse.columns(relation)}


def reset_feed(warehouse: Warehouse, spec: BuildSpec, at: datetime | None = None) -> None:
    """The model's feed starts again, empty but for its reset marker (after a whole rebuild,
    or when what a build changed is unknown): its readers build whole."""
    at = at or datetime.now(UTC)
    assert spec.change_feed is not None
    kept = spec.fed([name for name, _ in warehouse.columns(spec.relation)])
    changes = exp.select(
        *[exp.column(c, quoted=True) for c in kept],
        exp.alias_(exp.cast(exp.null(), exp.DataType.build("VARCHAR")), CHANGE_COLUMN, quoted=True),
        exp.alias_(
            exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")), CHANGED_AT_COLUMN, quoted=True
        ),
    ).from_(spec.relation.to_table())
    warehouse.drop_existing(spec.change_feed)
    warehouse.replace_with_select(spec.change_feed, changes.where(exp.false()))
    warehouse.insert_select(
        spec.change_feed,
        [CHANGE_COLUMN, CHANGED_AT_COLUMN],
        exp.select(exp.Literal.string(RESET), timestamp_literal(at)),
    )


def widen_feed(warehouse: Warehouse, spec: BuildSpec, at: datetime | None = None) -> bool:
    """Start the model's feed again when it lacks a column it must keep (a reader now reads
    it, or the model gained it): older changes cannot tell that column, so the feed starts
    again with it and its readers build whole once. Whether it did."""
    feed = spec.change_feed
    if feed is None or not warehouse.exists(feed) or not warehouse.exists(spec.relation):
        return False
    kept = {name.lower() for name, _ in warehouse.columns(feed)}
    wanted = spec.fed([name for name, _ in warehouse.columns(spec.relation)])
    if all(name.lower() in kept for name in wanted):
        return False
    reset_feed(warehouse, spec, at)
    return True


def _log_change(
    warehouse: Warehouse,
    spec: BuildSpec,
    rows: exp.Select,
    columns: list[str],
    at: datetime,
    kind: str,
) -> None:
    """Append ``columns`` of ``rows`` to the change feed as ``kind`` ('before'/'after') at ``at``."""
    feed = spec.change_feed
    assert feed is not None
    if not warehouse.exists(feed):
        reset_feed(warehouse, spec, at)
    elif spec.feed_columns is None:
        # the model may have gained a column (on_schema_change)
        add_missing_columns(warehouse, feed, warehouse.columns(spec.relation))
    else:
        widen_feed(warehouse, spec, at)
    columns = spec.fed(columns)
    warehouse.insert_select(
        feed,
        [*columns, CHANGE_COLUMN, CHANGED_AT_COLUMN],
        exp.select(
            *[exp.column(c, table="r", quoted=True) for c in columns],
            exp.Literal.string(kind),
            timestamp_literal(at),
        ).from_(rows.subquery("r")),
    )


def _snapshot(
    warehouse: Warehouse,
    spec: BuildSpec,
    query: exp.Query,
    at: datetime,
    *,
    partial: bool,
    written: Relation | None = None,
) -> int:
    """Apply ``query`` to the snapshot's history. ``partial``: the query holds only the keys an
    increment touches (and deletions flagged by ``deleted_flag``); keys it lacks are left
    alone. Otherwise it holds every live key, and a current key it lacks is closed.
    ``written``: where the build keeps every version it wrote, as they are now: those it
    opened and those it closed (the first build: every version)."""
    relation, keys, flag = spec.relation, spec.unique_key, spec.deleted_flag
    staged = Relation(META_SCHEMA, f"_snapshot__{relation.schema}__{relation.name}")
    shape = Relation(META_SCHEMA, f"_snapshot_shape__{relation.schema}__{relation.name}")
    try:
        warehouse.replace_with_select(shape, query, kind="VIEW")
        produced = [name for name, _ in warehouse.columns(shape)]
        flagged = partial and flag is not None
        if flagged and flag is not None:
            _require_flag(spec, flag, produced)
        columns = [c for c in produced if not (flagged and c == flag)]
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
        deleting = is_flagged(flag, "") if flagged and flag is not None else exp.false()
        warehouse.replace_with_select(
            staged,
            exp.select(
                *[exp.column(c, quoted=True) for c in columns],
                exp.alias_(fingerprint, SNAPSHOT_HASH, quoted=True),
                exp.alias_(deleting, _DELETING, quoted=True),
            ).from_(shape.to_table()),
        )
        _require_unique(warehouse, spec, staged, "a snapshot")
        now = timestamp_literal(at)
        if not has_history(warehouse, relation):
            # the first build, or the model was built another way before: history starts now
            select = exp.select(
                *[exp.column(c, quoted=True) for c in (*columns, SNAPSHOT_HASH)],
                exp.alias_(now, VALID_FROM, quoted=True),
                exp.alias_(
                    exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")), VALID_TO, quoted=True
                ),
                exp.alias_(exp.true(), IS_CURRENT, quoted=True),
            ).from_(staged.to_table())
            _replace(
                warehouse, relation, select.where(exp.not_(_deleting("")), copy=False), "TABLE"
            )
            if written is not None:
                warehouse.replace_with_select(written, exp.select("*").from_(relation.to_table()))
            if spec.change_feed is not None:
                reset_feed(warehouse, spec, at)
            return warehouse.row_count(relation)
        produced_types = [c for c in warehouse.columns(staged) if c[0] != _DELETING]
        history_types = warehouse.columns(relation)
        _require_history_types(spec, history_types, produced_types)
        add_missing_columns(warehouse, relation, produced_types, present=history_types)
        current = exp.column(IS_CURRENT, table="t", quoted=True)
        same_hash = exp.column(SNAPSHOT_HASH, table="s", quoted=True).eq(
            exp.column(SNAPSHOT_HASH, table="t", quoted=True)
        )
        changed: exp.Condition
        joined: exp.From | None = None
        if partial:
            # a current version changes when the increment holds its key with other values
            # or as a deletion. Joined (the staged keys are unique), not a correlated EXISTS:
            # DuckDB planned that one about four times slower (20,000 keys in 1 M rows:
            # 0.14 s against 0.03 s)
            joined = exp.From(this=exp.alias_(staged.to_table(), "s"))
            changed = exp.and_(
                keys_match(keys, "s", "t"), exp.or_(_deleting("s"), exp.not_(same_hash))
            )
        else:
            # ... when the query no longer holds that version
            changed = exp.Not(
                this=exp.Exists(
                    this=exp.select("1")
                    .from_(exp.alias_(staged.to_table(), "s"))
                    .where(exp.and_(keys_match(keys, "s", "t"), same_hash))
                )
            )
        target = relation.to_table()
        target.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
        close = exp.Update(
            this=target,
            expressions=[
                exp.column(VALID_TO, quoted=True).eq(now),
                exp.column(IS_CURRENT, quoted=True).eq(exp.false()),
            ],
            where=exp.Where(this=exp.and_(current, changed)),
        )
        if joined is not None:
            close.set("from_", joined)
        closed = warehouse.execute_dml(close)
        still_current = (
            exp.select("1")
            .from_(exp.alias_(relation.to_table(), "t"))
            .where(exp.and_(current, keys_match(keys, "s", "t")))
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
            .where(exp.not_(_deleting("s")))
            .where(exp.Not(this=exp.Exists(this=still_current))),
        )
        if written is not None or (spec.change_feed is not None and (closed or opened)):
            # the versions this build opened or closed, in one scan, which the feed then reads
            # (two scans of one condition each, which a zone map might narrow, took longer)
            changed_now = exp.or_(
                *(exp.column(c, quoted=True).eq(now.copy()) for c in (VALID_FROM, VALID_TO))
            )
            versions: exp.Query = (
                exp.select("*")
                .from_(relation.to_table())
                .where(changed_now if closed or opened else exp.false())  # none: no scan
            )
            if written is not None:
                warehouse.replace_with_select(written, versions)
                versions = exp.select("*").from_(written.to_table())
            if spec.change_feed is not None and (closed or opened):
                _log_snapshot_change(warehouse, spec, at, versions)
        return closed + opened
    finally:
        warehouse.drop(staged)
        warehouse.drop(shape, kind="VIEW")


#: a snapshot's staged rows: whether the row deletes its key
_DELETING = "_ssot_deleting"


def _require_history_types(
    spec: BuildSpec, history_types: list[tuple[str, str]], produced: list[tuple[str, str]]
) -> None:
    """Refuse, before anything is written, a snapshot query whose column now has another type
    than its history's (a key once text, now an integer): its rows would be compared with
    versions of the other type, and even a widening changes the row hash of every unchanged
    row (DuckDB hashes an INTEGER and a BIGINT of one value differently), which would version
    them all again. A snapshot keeps its history, so it is not rebuilt; the message says how
    to start it over."""
    history = {name.lower(): type_sql for name, type_sql in history_types}
    changed = [
        f"{name} ({history[name.lower()]} in the history, {type_sql} now)"
        for name, type_sql in produced
        if name.lower() in history and history[name.lower()].upper() != type_sql.upper()
    ]
    if changed:
        raise ModelError(
            f"{spec.path}: the snapshot's query changed the type of {', '.join(changed)}. "
            f"A snapshot keeps its history and is not rebuilt: to start it over with the new "
            f"types, drop {spec.relation} by hand (its earlier versions are lost), or cast the "
            "column back in the model"
        )


def _deleting(table: str) -> exp.Column:
    return exp.column(_DELETING, table=table or None, quoted=True)


def _log_snapshot_change(
    warehouse: Warehouse, spec: BuildSpec, at: datetime, versions: exp.Query
) -> None:
    """A snapshot's feed: the versions this build closed, as they were while current
    (before), and the versions it opened (after). ``versions``: a query of the versions it
    opened or closed (and maybe others, which the feed leaves out)."""
    columns = [name for name, _ in warehouse.columns(spec.relation)]
    was_current = {
        VALID_TO: exp.cast(exp.null(), exp.DataType.build("TIMESTAMPTZ")),
        IS_CURRENT: exp.true(),
    }
    closed = exp.select(
        *[
            exp.alias_(was_current[c], c, quoted=True)
            if c in was_current
            else exp.column(c, quoted=True)
            for c in columns
        ]
    )
    opened = exp.select(exp.Star())
    for kind, select, column in (("before", closed, VALID_TO), ("after", opened, VALID_FROM)):
        rows = select.from_(versions.subquery("versions")).where(
            exp.column(column, quoted=True).eq(timestamp_literal(at))
        )
        _log_change(warehouse, spec, rows, columns, at, kind)


def _require_unique(warehouse: Warehouse, spec: BuildSpec, staged: Relation, what: str) -> None:
    """Fail before anything is written when ``staged`` repeats a key (for a merge, NULL keys
    are not repeats: they match no row, and each is inserted)."""
    keys = [exp.column(k, quoted=True) for k in spec.unique_key]
    repeated = warehouse.scalar(
        exp.select(exp.Count(this=exp.Star())).from_(
            exp.select(*keys)
            .from_(staged.to_table())
            .where(*(exp.not_(k.is_(exp.null())) for k in keys) if what == "a merge" else [])
            .group_by(*keys)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            .subquery("repeated")
        )
    )
    if repeated:
        source = "model's output" if what == "a snapshot" else "model's increment"
        raise ModelError(
            f"{spec.path}: {what.split()[-1]} unique_key ({', '.join(spec.unique_key)}) repeats "
            f"for {repeated} key(s) in the {source}; {what} needs one row per key. "
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


def _delete_matching(relation: Relation, staged: Relation, keys: tuple[str, ...]) -> exp.Expression:
    target = relation.to_table()
    target.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
    return exp.Delete(this=target, where=exp.Where(this=_key_staged(staged, keys)))


def is_flagged(flag: str, table: str = "") -> exp.Expression:
    """Whether a staged row deletes its key (a NULL flag does not)."""
    return exp.Coalesce(
        this=exp.column(flag, table=table or None, quoted=True), expressions=[exp.false()]
    )
