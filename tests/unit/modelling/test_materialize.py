"""Incremental materializations on a real DuckDB: append, merge, delete+insert, schema changes."""

from __future__ import annotations

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
