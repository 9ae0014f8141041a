"""Incremental materializations on a real DuckDB: append, merge, delete+insert, schema changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlglot

from pipelines.errors import ModelError
from pipelines.modelling.materialize import BuildSpec, materialize
from pipelines.warehouse.base import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

TARGET = Relation("conformed", "orders")
FIRST = "select * from (values (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)) as v(id, name, amount)"
# id 2 changed, id 4 is new; id 2 appears twice in the increment for delete+insert to keep both
INCREMENT = "select * from (values (2, 'B', 21), (4, 'd', 40)) as v(id, name, amount)"


@pytest.fixture
def warehouse():
    with DuckDBWarehouse(":memory:") as wh:
        yield wh


def build(warehouse, sql: str, *, incremental: bool, **spec) -> int | None:
    query = sqlglot.parse_one(sql, read="duckdb")
    return materialize(
        warehouse,
        BuildSpec(relation=TARGET, materialized="incremental", path="models/x.sql", **spec),
        query,
        incremental=incremental,
    )


def rows(warehouse) -> list[tuple]:
    return [
        tuple(r.values())
        for r in warehouse.query(f"select * from {TARGET} order by all").to_pylist()
    ]


def test_the_first_build_creates_the_table(warehouse) -> None:
    assert build(warehouse, FIRST, incremental=False) is None
    assert rows(warehouse) == [(1, "a", 10), (2, "b", 20), (3, "c", 30)]


def test_append_inserts_every_increment_row(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    assert build(warehouse, INCREMENT, incremental=True, strategy="append") == 2
    assert rows(warehouse) == [(1, "a", 10), (2, "B", 21), (2, "b", 20), (3, "c", 30), (4, "d", 40)]


def test_merge_updates_matches_and_inserts_the_rest(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    build(warehouse, INCREMENT, incremental=True, strategy="merge", unique_key=("id",))
    assert rows(warehouse) == [(1, "a", 10), (2, "B", 21), (3, "c", 30), (4, "d", 40)]
    # applying the same increment again changes nothing
    build(warehouse, INCREMENT, incremental=True, strategy="merge", unique_key=("id",))
    assert rows(warehouse) == [(1, "a", 10), (2, "B", 21), (3, "c", 30), (4, "d", 40)]


def test_delete_insert_replaces_every_row_of_a_matched_key(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    two_versions = "select * from (values (2, 'x', 1), (2, 'y', 2)) as v(id, name, amount)"
    build(warehouse, two_versions, incremental=True, strategy="delete+insert", unique_key=("id",))
    assert rows(warehouse) == [(1, "a", 10), (2, "x", 1), (2, "y", 2), (3, "c", 30)]


def test_a_composite_unique_key(warehouse) -> None:
    build(
        warehouse,
        "select 1 as a, 1 as b, 'old' as v union all select 1, 2, 'keep'",
        incremental=False,
    )
    build(
        warehouse,
        "select 1 as a, 1 as b, 'new' as v",
        incremental=True,
        strategy="merge",
        unique_key=("a", "b"),
    )
    assert rows(warehouse) == [(1, 1, "new"), (1, 2, "keep")]


WITH_EXTRA = "select 5 as id, 'e' as name, 50 as amount, 'web' as channel"


def test_on_schema_change_ignore_drops_new_columns(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    build(warehouse, WITH_EXTRA, incremental=True, strategy="append")
    assert [n for n, _ in warehouse.columns(TARGET)] == ["id", "name", "amount"]
    assert rows(warehouse)[-1] == (5, "e", 50)


def test_on_schema_change_append_new_columns_adds_them(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    build(
        warehouse,
        WITH_EXTRA,
        incremental=True,
        strategy="append",
        on_schema_change="append_new_columns",
    )
    assert rows(warehouse)[0] == (1, "a", 10, None)
    assert rows(warehouse)[-1] == (5, "e", 50, "web")


def test_a_merge_whose_increment_repeats_a_key_writes_nothing(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    with pytest.raises(
        ModelError, match=r"models/x\.sql: merge unique_key \(id\) repeats for 1 key\(s\)"
    ):
        build(
            warehouse,
            "select 2 as id, 'B' as name, 1 as amount union all select 2, 'C', 2",
            incremental=True,
            strategy="merge",
            unique_key=("id",),
        )
    assert rows(warehouse) == [(1, "a", 10), (2, "b", 20), (3, "c", 30)]


def test_a_merge_of_fewer_columns_keeps_the_others(warehouse) -> None:
    # without every column a merge updates in place (with them all it deletes and inserts)
    build(warehouse, FIRST, incremental=False)
    build(
        warehouse,
        "select 2 as id, 'B' as name union all select 4, 'd'",
        incremental=True,
        strategy="merge",
        unique_key=("id",),
    )
    assert rows(warehouse) == [(1, "a", 10), (2, "B", 20), (3, "c", 30), (4, "d", None)]


def test_on_schema_change_fail_names_the_model_and_the_column(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    with pytest.raises(
        ModelError, match=r"models/x\.sql: on_schema_change is fail .*new column 'channel'"
    ):
        build(warehouse, WITH_EXTRA, incremental=True, strategy="append", on_schema_change="fail")


def test_a_unique_key_the_model_does_not_select_is_an_error(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    with pytest.raises(ModelError, match=r"models/x\.sql: unique_key column\(s\) order_id"):
        build(warehouse, INCREMENT, incremental=True, strategy="merge", unique_key=("order_id",))


def test_the_staging_table_is_dropped(warehouse) -> None:
    build(warehouse, FIRST, incremental=False)
    build(warehouse, INCREMENT, incremental=True, strategy="merge", unique_key=("id",))
    left = warehouse.query(
        "select table_name from information_schema.tables where table_schema = 'ssot_meta'"
    ).to_pylist()
    assert left == []


# -- snapshots (SCD type 2) ------------------------------------------------------------------


DAY = [datetime(2026, 1, d, tzinfo=UTC) for d in range(1, 6)]


def snap(warehouse, rows: list[tuple], at: datetime, **spec) -> int | None:
    values = ", ".join(f"({k}, '{v}', {n})" for k, v, n in rows)
    query = sqlglot.parse_one(
        f"select * from (values {values}) as v(id, name, amount)", read="duckdb"
    )
    spec = {"unique_key": ("id",), **spec}
    return materialize(
        warehouse,
        BuildSpec(relation=TARGET, materialized="snapshot", path="models/s.sql", **spec),
        query,
        at=at,
    )


def history(warehouse) -> list[tuple]:
    return [
        (
            r["id"],
            r["name"],
            r["valid_from"].day,
            r["valid_to"] and r["valid_to"].day,
            r["is_current"],
        )
        for r in warehouse.query(f"select * from {TARGET} order by id, valid_from").to_pylist()
    ]


def test_a_snapshot_keeps_every_version_and_closes_deleted_keys(warehouse) -> None:
    assert snap(warehouse, [(1, "a", 1), (2, "b", 2)], DAY[0]) == 2
    assert (
        snap(warehouse, [(1, "a", 1), (2, "B", 2), (3, "c", 3)], DAY[1]) == 3
    )  # 1 closed, 2 opened
    assert snap(warehouse, [(2, "B", 2), (3, "c", 3)], DAY[2]) == 1  # key 1 deleted: closed
    assert snap(warehouse, [(2, "B", 2), (3, "c", 3)], DAY[3]) == 0  # nothing changed
    assert snap(warehouse, [(1, "a", 1), (2, "B", 2), (3, "c", 3)], DAY[4]) == 1  # 1 is back
    assert history(warehouse) == [
        (1, "a", 1, 3, False),
        (1, "a", 5, None, True),
        (2, "b", 1, 2, False),
        (2, "B", 2, None, True),
        (3, "c", 2, None, True),
    ]


def test_check_cols_limit_what_counts_as_a_change(warehouse) -> None:
    snap(warehouse, [(1, "a", 1)], DAY[0], check_cols=("name",))
    snap(warehouse, [(1, "a", 99)], DAY[1], check_cols=("name",))  # amount is not tracked
    assert history(warehouse) == [(1, "a", 1, None, True)]
    snap(warehouse, [(1, "z", 99)], DAY[2], check_cols=("name",))
    assert history(warehouse) == [(1, "a", 1, 3, False), (1, "z", 3, None, True)]


def test_a_snapshot_whose_key_repeats_writes_nothing(warehouse) -> None:
    snap(warehouse, [(1, "a", 1)], DAY[0])
    with pytest.raises(
        ModelError, match=r"models/s\.sql: snapshot unique_key \(id\) repeats for 1"
    ):
        snap(warehouse, [(1, "a", 1), (1, "b", 2)], DAY[1])
    assert history(warehouse) == [(1, "a", 1, None, True)]


def test_a_snapshot_whose_column_changes_type_is_refused_with_what_to_do(warehouse) -> None:
    snap(warehouse, [("'k1'", "a", 9_999_999_999)], DAY[0])  # a text key, BIGINT amounts
    with pytest.raises(
        ModelError,
        match=r"models/s\.sql: the snapshot's query changed the type of id \(VARCHAR in the "
        r"history, INTEGER now\), amount \(BIGINT in the history, INTEGER now\)\. "
        r".*drop conformed\.orders by hand",
    ):
        snap(warehouse, [(1, "a", 1)], DAY[1])
    assert history(warehouse) == [("k1", "a", 1, None, True)]
    # even a widening: an INTEGER hashes unlike the BIGINT of one value, which would version
    # every unchanged row again
    with pytest.raises(ModelError, match=r"type of amount \(BIGINT in the history, INTEGER now\)"):
        snap(warehouse, [("'k1'", "a", -1)], DAY[1])
    # the column cast back in the model: an unchanged row is not versioned again
    assert snap(warehouse, [("'k1'", "a", "cast(9999999999 as bigint)")], DAY[2]) == 0
    snap(warehouse, [("'k1'", "b", "cast(1 as bigint)")], DAY[3])
    assert history(warehouse) == [("k1", "a", 1, 4, False), ("k1", "b", 4, None, True)]


def test_a_snapshot_column_named_like_a_validity_column_is_an_error(warehouse) -> None:
    query = sqlglot.parse_one("select 1 as id, true as is_current", read="duckdb")
    with pytest.raises(ModelError, match="snapshot columns is_current are added by the snapshot"):
        materialize(
            warehouse,
            BuildSpec(relation=TARGET, materialized="snapshot", path="m.sql", unique_key=("id",)),
            query,
        )


def test_a_model_that_changes_materialization_replaces_the_old_relation(warehouse) -> None:
    def as_(kind: str, *, incremental: bool = False) -> None:
        query = sqlglot.parse_one(FIRST, read="duckdb")
        spec = BuildSpec(relation=TARGET, materialized=kind, path="m.sql", unique_key=("id",))
        materialize(warehouse, spec, query, incremental=incremental)

    as_("table")
    as_("view")
    assert warehouse.is_view(TARGET)
    as_("incremental", incremental=True)  # a view cannot take an increment: rebuilt as a table
    assert not warehouse.is_view(TARGET) and len(rows(warehouse)) == 3
    as_("snapshot")  # a plain table becomes the snapshot's first version
    assert [n for n, _ in warehouse.columns(TARGET)][-3:] == [
        "valid_from",
        "valid_to",
        "is_current",
    ]
    as_("view")
    assert warehouse.is_view(TARGET)


def test_rows_replaced_on_one_key_are_found_by_in_and_no_null_key_matches(warehouse) -> None:
    from pipelines.modelling.materialize import _matched

    staged = Relation("ssot_meta", "_increment__conformed__orders")
    one = _matched(TARGET, staged, ("id",)).sql("duckdb")
    # an IN test lets DuckDB skip the row groups outside the staged keys' range (new keys: all)
    assert 'WHERE "t"."id" IN (SELECT "id" FROM' in one and "EXISTS" not in one
    assert "EXISTS" in _matched(TARGET, staged, ("id", "name")).sql("duckdb")
    with_null = "select * from (values (1, 'a', 10), (null, 'n', 0)) as v(id, name, amount)"
    build(warehouse, with_null, incremental=False)
    increment = "select * from (values (1, 'A', 11), (null, 'm', 1)) as v(id, name, amount)"
    build(warehouse, increment, incremental=True, strategy="delete+insert", unique_key=("id",))
    assert rows(warehouse) == [(1, "A", 11), (None, "m", 1), (None, "n", 0)]
