"""Deletions in increments (`deleted_flag`) and change feeds (what `changes('model')` reads),
on a real DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlglot
from test_materialize import history  # the same target table, the same view of its versions

from pipelines.errors import ModelError
from pipelines.modelling.materialize import (
    BuildSpec,
    change_feed_relation,
    feed_reset_at,
    materialize,
    prune_feed,
)
from pipelines.warehouse.base import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

TARGET = Relation("conformed", "orders")
FEED = change_feed_relation(TARGET)
DAY = [datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 6)]
FIRST = [(1, "a", 10), (2, "b", 20), (3, "c", 30)]


@pytest.fixture
def warehouse():
    with DuckDBWarehouse(":memory:") as wh:
        yield wh


def values(rows: list[tuple]) -> str:
    """A query of (id, name, amount, gone) rows; 3-tuples are live rows."""
    full = [(*r, False) if len(r) == 3 else r for r in rows]
    text = ", ".join(
        f"({i}, {'NULL' if n is None else repr(n)}, {'NULL' if a is None else a}, {str(g).lower()})"
        for i, n, a, g in full
    )
    return f"select * from (values {text}) as v(id, name, amount, gone)"


def spec(**kwargs) -> BuildSpec:
    settings = {
        "relation": TARGET,
        "materialized": "incremental",
        "path": "models/orders.sql",
        "unique_key": ("id",),
        "strategy": "merge",
        "deleted_flag": "gone",
        "change_feed": FEED,
        **kwargs,
    }
    return BuildSpec(**settings)


def whole(rows: list[tuple]) -> str:
    """The whole query: what graph.query makes of a model with a deleted_flag."""
    return f"select id, name, amount from ({values(rows)}) where not gone"


def build(warehouse, sql: str, *, incremental: bool, at: datetime, **kwargs) -> int | None:
    return materialize(
        warehouse,
        spec(**kwargs),
        sqlglot.parse_one(sql, read="duckdb"),
        incremental=incremental,
        at=at,
    )


def table(warehouse, relation: Relation = TARGET, order: str = "all") -> list[tuple]:
    return [
        tuple(r.values())
        for r in warehouse.query(f"select * from {relation} order by {order}").to_pylist()
    ]


def feed(warehouse) -> list[tuple]:
    return [
        (r["_ssot_change"], r["_ssot_changed_at"].day, r["id"], r["name"])
        for r in warehouse.query(
            f"select * from {FEED} order by _ssot_changed_at, _ssot_change desc, id"
        ).to_pylist()
    ]


@pytest.mark.parametrize("strategy", ["merge", "delete+insert"])
def test_a_flagged_row_deletes_its_key_and_is_not_stored(warehouse, strategy) -> None:
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0], strategy=strategy)
    staged = build(
        warehouse,
        values([(2, None, None, True), (3, "C", 31), (4, "d", 40), (9, None, None, True)]),
        incremental=True,
        at=DAY[1],
        strategy=strategy,
    )
    assert staged == 4
    assert table(warehouse) == [(1, "a", 10), (3, "C", 31), (4, "d", 40)]
    assert [name for name, _ in warehouse.columns(TARGET)] == ["id", "name", "amount"]


def test_the_feed_holds_what_each_build_replaced_deleted_and_wrote(warehouse) -> None:
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0])
    assert feed(warehouse) == [("reset", 1, None, None)]
    build(
        warehouse,
        values([(2, None, None, True), (3, "C", 31), (4, "d", 40)]),
        incremental=True,
        at=DAY[1],
    )
    assert feed(warehouse) == [
        ("reset", 1, None, None),
        ("before", 2, 2, "b"),  # deleted
        ("before", 2, 3, "c"),  # replaced
        ("after", 2, 3, "C"),
        ("after", 2, 4, "d"),  # new
    ]
    assert feed_reset_at(warehouse, spec()) == DAY[0]
    # a whole rebuild starts the feed again: readers built before it must rebuild whole
    build(warehouse, whole(FIRST), incremental=False, at=DAY[2])
    assert feed(warehouse) == [("reset", 3, None, None)]
    assert feed_reset_at(warehouse, spec()) == DAY[2]


@pytest.mark.parametrize("strategy", ["merge", "delete+insert"])
@pytest.mark.parametrize("kept", [None, frozenset({"id", "name"})])
def test_rows_replaced_are_fed_and_deleted_by_their_row_ids(warehouse, strategy, kept) -> None:
    # the rows an increment replaces are found once (with their row ids) for the feed's
    # before image and for the delete; nothing of that is left behind
    build(
        warehouse, whole(FIRST), incremental=False, at=DAY[0], strategy=strategy, feed_columns=kept
    )
    build(
        warehouse,
        values([(1, None, None, True), (3, "C", 31), (4, "d", 40)]),
        incremental=True,
        at=DAY[1],
        strategy=strategy,
        feed_columns=kept,
    )
    assert table(warehouse) == [(2, "b", 20), (3, "C", 31), (4, "d", 40)]
    assert feed(warehouse) == [
        ("reset", 1, None, None),
        ("before", 2, 1, "a"),
        ("before", 2, 3, "c"),
        ("after", 2, 3, "C"),
        ("after", 2, 4, "d"),
    ]
    fed = [name for name, _ in warehouse.columns(FEED)]
    assert fed == (["id", "name", "amount"] if kept is None else ["id", "name"]) + [
        "_ssot_change",
        "_ssot_changed_at",
    ]
    left = warehouse.query(
        "select table_name from information_schema.tables where table_schema = 'ssot_meta' "
        "and table_name not like 'changes%'"
    ).column(0)
    assert left.to_pylist() == []


def test_a_feed_missing_at_an_increment_starts_with_a_reset(warehouse) -> None:
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0], change_feed=None)
    build(warehouse, values([(1, "A", 11)]), incremental=True, at=DAY[1])
    assert feed(warehouse) == [
        ("reset", 2, None, None),
        ("before", 2, 1, "a"),
        ("after", 2, 1, "A"),
    ]


def test_pruning_drops_only_what_every_reader_has_read(warehouse) -> None:
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0])
    build(warehouse, values([(1, "A", 11)]), incremental=True, at=DAY[1])
    build(warehouse, values([(2, "B", 21)]), incremental=True, at=DAY[3])
    prune_feed(warehouse, spec(), DAY[2])  # the slowest reader last built on day 2
    assert feed(warehouse) == [
        ("reset", 1, None, None),
        ("before", 4, 2, "b"),
        ("after", 4, 2, "B"),
    ]


def test_a_deleted_flag_the_increment_lacks_names_the_model(warehouse) -> None:
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0])
    with pytest.raises(
        ModelError, match=r"models/orders\.sql: deleted_flag 'gone' is not a column"
    ):
        build(warehouse, "select 1 as id, 'x' as name, 1 as amount", incremental=True, at=DAY[1])


# -- snapshots -------------------------------------------------------------------------------


WRITTEN = Relation("ssot_meta", "_written__conformed__orders")


def snap(
    warehouse, sql: str, at: datetime, *, partial: bool, written: Relation | None = None
) -> int | None:
    return materialize(
        warehouse,
        spec(materialized="snapshot", strategy="merge"),
        sqlglot.parse_one(sql, read="duckdb"),
        incremental=partial,
        at=at,
        written=written,
    )


@pytest.mark.parametrize("keep_written", [False, True])
def test_a_snapshot_increment_touches_only_its_keys_and_closes_flagged_ones(
    warehouse, keep_written: bool
) -> None:
    snap(warehouse, whole(FIRST), DAY[0], partial=False)
    # key 1 is not in the increment: left alone; 2 is deleted; 3 changed; 4 is new
    changed = snap(
        warehouse,
        values([(2, None, None, True), (3, "C", 31), (4, "d", 40)]),
        DAY[1],
        partial=True,
        written=WRITTEN if keep_written else None,
    )
    assert changed == 4  # 2 and 3 closed, 3 and 4 opened
    if keep_written:  # every version the build wrote, as it is now: closed (2, 3), opened (3, 4)
        kept = warehouse.query(
            "select id, name, valid_to is not null as closed, is_current "
            f"from {WRITTEN} order by id, closed desc"
        ).to_pylist()
        assert [tuple(r.values()) for r in kept] == [
            (2, "b", True, False),
            (3, "c", True, False),
            (3, "C", False, True),
            (4, "d", False, True),
        ]
    assert history(warehouse) == [
        (1, "a", 1, None, True),
        (2, "b", 1, 2, False),
        (3, "c", 1, 2, False),
        (3, "C", 2, None, True),
        (4, "d", 2, None, True),
    ]
    assert "gone" not in {name for name, _ in warehouse.columns(TARGET)}
    # the feed: the versions closed (before) and opened (after)
    assert feed(warehouse) == [
        ("reset", 1, None, None),
        ("before", 2, 2, "b"),
        ("before", 2, 3, "c"),
        ("after", 2, 3, "C"),
        ("after", 2, 4, "d"),
    ]
    # built from its whole query again, a key the query lacks is closed
    snap(warehouse, whole([(3, "C", 31)]), DAY[2], partial=False)
    assert [(i, n, c) for i, n, _, _, c in history(warehouse) if c] == [(3, "C", True)]
    assert ("before", 3, 1, "a") in feed(warehouse) and ("before", 3, 4, "d") in feed(warehouse)


def test_a_model_column_named_rowid_is_not_taken_for_the_row_ids(warehouse) -> None:
    # DuckDB's rowid is hidden by a column of that name: rows sharing its value must not go
    rows = "select * from (values (1, 100), (2, 100), (3, 7)) as v(id, rowid)"
    build(warehouse, rows, incremental=False, at=DAY[0], deleted_flag=None)
    build(
        warehouse,
        "select 1 as id, 101 as rowid",
        incremental=True,
        at=DAY[1],
        deleted_flag=None,
        strategy="delete+insert",
    )
    assert table(warehouse, order="id") == [(1, 101), (2, 100), (3, 7)]
    assert [
        (r["_ssot_change"], r["id"])
        for r in warehouse.query(
            f"select * from {FEED} where _ssot_change <> 'reset' order by _ssot_change desc, id"
        ).to_pylist()
    ] == [("before", 1), ("after", 1)]


def test_the_rows_replaced_are_deleted_by_their_ids_on_duckdb(warehouse, monkeypatch) -> None:
    statements: list[str] = []
    real = DuckDBWarehouse.execute

    def execute(self, sql) -> None:
        statements.append(self.render(sql))
        real(self, sql)

    monkeypatch.setattr(DuckDBWarehouse, "execute", execute)
    build(warehouse, whole(FIRST), incremental=False, at=DAY[0], strategy="delete+insert")
    build(warehouse, values([(3, "C", 31)]), incremental=True, at=DAY[1], strategy="delete+insert")
    deletes = [s for s in statements if s.startswith("DELETE FROM")]
    assert deletes == [
        'DELETE FROM "conformed"."orders" WHERE rowid IN '
        '(SELECT "_ssot_replaced_row_id" FROM "ssot_meta"."_replaced__conformed__orders")'
    ]
