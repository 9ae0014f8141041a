"""Column lineage traced by sqlglot: through CTEs, joins, unions, `*` and expressions."""

from __future__ import annotations

import pytest
import sqlglot

from pipelines.errors import ModelError
from pipelines.modelling.lineage import ColumnSource, column_lineage
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


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_lineage_is_the_same_in_each_dialect(dialect) -> None:
    query = sqlglot.parse_one("select o.amount * 2 as double_amount from staging.orders as o")
    traced = column_lineage(query, UPSTREAM, dialect=dialect, path="m.sql")
    assert traced == {"double_amount": [ColumnSource(ORDERS, "amount")]}
