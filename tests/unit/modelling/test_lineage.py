"""Column lineage traced by sqlglot: through CTEs, joins, unions, `*` and expressions."""

from __future__ import annotations

import pytest
import sqlglot

from pipelines.errors import ModelError
from pipelines.modelling.lineage import (
    ColumnSource,
    cached_column_lineage,
    column_lineage,
    columns_read,
)
from pipelines.warehouse.base import Relation

ORDERS = Relation("staging", "orders")
CUSTOMERS = Relation("staging", "customers")
REFUNDS = Relation("raw", "shop__refunds")
UPSTREAM = {
    ORDERS: ["order_id", "customer_id", "amount", "status"],
    CUSTOMERS: ["customer_id", "email", "first_name", "last_name"],
    REFUNDS: ["order_id", "amount"],
}

SQL = """
with paid as (
    select * from staging.orders where status = 'PAID'
),
money as (
    select order_id, amount from paid
    union all
    select order_id, -amount from raw.shop__refunds
)
select
    p.order_id,
    c.first_name || ' ' || c.last_name as full_name,
    (select sum(m.amount) from money as m where m.order_id = p.order_id) as net,
    'web' as channel,
    count(*) over () as n_orders
from paid as p
join staging.customers as c using (customer_id)
"""


def trace(sql: str) -> dict[str, list[tuple[str, str]]]:
    query = sqlglot.parse_one(sql, read="duckdb")
    traced = column_lineage(query, UPSTREAM, dialect="duckdb", path="models/x.sql")
    return {col: [(str(s.relation), s.column) for s in found] for col, found in traced.items()}


def test_each_output_column_maps_to_the_columns_it_reads() -> None:
    assert trace(SQL) == {
        "order_id": [("staging.orders", "order_id")],
        "full_name": [("staging.customers", "first_name"), ("staging.customers", "last_name")],
        "net": [("raw.shop__refunds", "amount"), ("staging.orders", "amount")],
        "channel": [],
        "n_orders": [],
    }


def test_star_is_expanded_from_the_upstream_columns() -> None:
    assert trace("select * from staging.customers") == {
        name: [("staging.customers", name)] for name in UPSTREAM[CUSTOMERS]
    }


def test_an_unknown_column_is_an_error_naming_the_model_file() -> None:
    query = sqlglot.parse_one("select o.nope from staging.orders as o", read="duckdb")
    with pytest.raises(ModelError, match=r"models/x.sql: column lineage .*nope"):
        column_lineage(query, UPSTREAM, dialect="duckdb", path="models/x.sql")


def test_traced_lineage_is_kept_by_what_it_depends_on(tmp_path, monkeypatch) -> None:
    import pipelines.modelling.lineage as lineage

    calls = []
    real = lineage.column_lineage

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lineage, "column_lineage", counted)
    query = sqlglot.parse_one(SQL, read="duckdb")

    def cached(upstream=UPSTREAM, sql=query):
        return cached_column_lineage(
            sql, upstream, dialect="duckdb", path="models/x.sql", cache=tmp_path / "c"
        )

    first = cached()
    assert first == real(query, UPSTREAM, dialect="duckdb", path="models/x.sql")
    assert cached() == first and len(calls) == 1  # read back, not traced again
    # another upstream column list, another query: traced again
    wider = {**UPSTREAM, CUSTOMERS: [*UPSTREAM[CUSTOMERS], "phone"]}
    assert cached(upstream=wider) == first and len(calls) == 2
    star = sqlglot.parse_one("select * from staging.customers", read="duckdb")
    assert (
        set(cached(upstream=wider, sql=star)) == {*UPSTREAM[CUSTOMERS], "phone"} and len(calls) == 3
    )
    # a damaged file is traced again and replaced
    for file in (tmp_path / "c").iterdir():
        file.write_text("{not json")
    assert cached() == first and len(calls) == 4
    assert cached() == first and len(calls) == 4


def test_cached_traces_unused_for_a_month_are_pruned(tmp_path) -> None:
    import os
    import time

    cache = tmp_path / "c"
    query = sqlglot.parse_one(SQL, read="duckdb")

    def cached(sql=query):
        return cached_column_lineage(
            sql, UPSTREAM, dialect="duckdb", path="models/x.sql", cache=cache
        )

    cached()
    (used,) = cache.iterdir()
    stale = cache / ("0" * 64 + ".json")
    stale.write_text("{}")
    month_ago = time.time() - 31 * 86400
    for entry in (used, stale):
        os.utime(entry, (month_ago, month_ago))
    cached()  # read back: marked as used
    assert used.stat().st_mtime > month_ago + 86400
    cached(sqlglot.parse_one("select o.amount from staging.orders as o", read="duckdb"))
    # a new trace was written: the one unused for a month went, the one just used stayed
    assert stale not in set(cache.iterdir()) and used.exists() and len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_lineage_is_the_same_in_each_dialect(dialect) -> None:
    query = sqlglot.parse_one("select o.amount * 2 as double_amount from staging.orders as o")
    traced = column_lineage(query, UPSTREAM, dialect=dialect, path="m.sql")
    assert traced == {"double_amount": [ColumnSource(ORDERS, "amount")]}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # qualified and unqualified, in a FILTER clause, in a union
        (
            "select k from f.a group by k having count(*) filter (where kind = 'before') > 1 "
            "union select x.k from f.b as x where x.v > 0",
            {"a": {"k", "kind"}, "b": {"k", "kind", "v"}},
        ),
        # a column of another table, qualified, is not read from the feed
        (
            "select c.k, t.other from f.a as c join t on t.k = c.k",
            {"a": {"k"}},
        ),
        # a correlated subquery reading the feed's alias
        (
            "select c.k from f.a as c where exists (select 1 from t where t.v = c.v2)",
            {"a": {"k", "v2"}},
        ),
        ("select * from f.a", {"a": None}),
        ("select c.*, t.k from f.a as c join t on t.k = c.k", {"a": None}),
        ("select t.* from f.a as c join t on t.k = c.k", {"a": {"k"}}),
        ("select * from (select k from f.a) as s", {"a": {"k"}}),
        ("select k from f.a natural join t", {"a": None}),
        ("select a.k from f.a join t using (j)", {"a": {"k", "j"}}),
        # the alias used as a column: the whole row
        ("select c from f.a as c", {"a": None}),
        # names are case-insensitive; count(*) reads no column
        ("select C.Amount, count(*) from f.a as c group by all", {"a": {"amount"}}),
        ("select A.v from f.a", {"a": {"v"}}),
        # reading columns without naming them
        ("select columns('amount_.*') from f.a", {"a": None}),
        ("select min(columns(*)) from f.a", {"a": None}),
        ("select #1 from f.a", {"a": None}),
        ("select (c.*) from f.a as c", {"a": None}),
        ("select x from f.a as c(k, x)", {"a": None}),
        ("select * from f.a pivot (sum(v) for kind in ('x'))", {"a": None}),
        # struct fields: `s` and `c.s` are not table aliases
        ("select s.x from f.a", {"a": None}),
        ("select c.s.x from f.a as c", {"a": None}),
    ],
)
def test_the_columns_a_query_reads_from_a_schema_s_tables(sql, expected) -> None:
    found = columns_read(sqlglot.parse_one(sql, read="duckdb"), "f")
    assert found == {k: None if v is None else frozenset(v) for k, v in expected.items()}
