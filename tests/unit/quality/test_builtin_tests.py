"""dbt-style yml tests compiled to SQL: run on DuckDB, rendered for BigQuery, pinned by golden files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from pipelines.config import TestSpec
from pipelines.errors import ConfigError
from pipelines.quality import failing_rows, failure_count, failure_sample
from pipelines.quality.builtin_tests import increment_failing_rows, parse_ref, where_is_row_local

GOLDEN = Path(__file__).parent / "golden"
ORDERS = exp.table_("orders", quoted=True)


def resolve(name: str) -> exp.Table:
    return exp.table_(name, quoted=True)


@pytest.fixture
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    # "select" is a reserved word: every test below also proves the identifiers are quoted.
    con.execute('CREATE TABLE customers (customer_id INTEGER, "select" VARCHAR)')
    con.execute("INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c'), (3, 'c again')")
    con.execute('CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, "select" VARCHAR)')
    con.execute(
        "INSERT INTO orders VALUES "
        "(1, 1, 'PAID'), (2, 2, 'PAID'), (2, 3, 'LOST'), (3, 99, 'paid'), "
        "(NULL, NULL, NULL), (4, 98, 'SHIPPED'), (4, 1, 'PAID'), (4, 2, 'PAID')"
    )
    con.execute("CREATE TABLE clean_orders AS SELECT * FROM orders WHERE order_id IN (1, 3)")
    con.execute("UPDATE clean_orders SET customer_id = 1, \"select\" = 'PAID'")
    yield con
    con.close()


def rows(con: duckdb.DuckDBPyConnection, query: exp.Expression) -> list[tuple[Any, ...]]:
    return sorted(con.execute(query.sql(dialect="duckdb")).fetchall(), key=repr)


def count(con: duckdb.DuckDBPyConnection, test: TestSpec, relation: exp.Table = ORDERS) -> int:
    result = con.execute(failure_count(test, relation, resolve).sql(dialect="duckdb")).fetchone()
    assert result is not None
    return int(result[0])


UNIQUE = TestSpec(name="unique", column="order_id")
NOT_NULL = TestSpec(name="not_null", column="select")
ACCEPTED = TestSpec(name="accepted_values", column="select", values=["PAID", "SHIPPED"])
RELATIONSHIP = TestSpec(
    name="relationships", column="customer_id", to="ref('customers')", field="customer_id"
)
TESTS = {
    "unique": UNIQUE,
    "not_null": NOT_NULL,
    "accepted_values": ACCEPTED,
    "relationships": RELATIONSHIP,
}


def test_unique_returns_each_repeated_value_and_its_count(db: duckdb.DuckDBPyConnection) -> None:
    assert rows(db, failing_rows(UNIQUE, ORDERS, resolve)) == [(2, 2), (4, 3)]
    assert count(db, UNIQUE) == 2


def test_not_null(db: duckdb.DuckDBPyConnection) -> None:
    assert rows(db, failing_rows(NOT_NULL, ORDERS, resolve)) == [(None, None, None)]
    assert count(db, NOT_NULL) == 1


def test_accepted_values_is_exact_and_skips_nulls(db: duckdb.DuckDBPyConnection) -> None:
    assert rows(db, failing_rows(ACCEPTED, ORDERS, resolve)) == [(2, 3, "LOST"), (3, 99, "paid")]
    assert count(db, ACCEPTED) == 2


def test_accepted_values_with_numbers(db: duckdb.DuckDBPyConnection) -> None:
    test = TestSpec(name="accepted_values", column="order_id", values=[1, 2, 3, None])
    assert [r[0] for r in rows(db, failing_rows(test, ORDERS, resolve))] == [4, 4, 4]


def test_relationships_finds_orphans_once(db: duckdb.DuckDBPyConnection) -> None:
    # customer 3 appears twice in the parent: a match must not be duplicated or counted as missing
    assert rows(db, failing_rows(RELATIONSHIP, ORDERS, resolve)) == [
        (3, 99, "paid"),
        (4, 98, "SHIPPED"),
    ]
    assert count(db, RELATIONSHIP) == 2


@pytest.mark.parametrize(
    "to", ["ref('customers')", 'ref("customers")', "customers", " ref( 'customers' ) "]
)
def test_relationships_to_spellings(db: duckdb.DuckDBPyConnection, to: str) -> None:
    test = TestSpec(name="relationships", column="customer_id", to=to, field="customer_id")
    assert count(db, test) == 2


def test_relationship_to_the_same_table(db: duckdb.DuckDBPyConnection) -> None:
    test = TestSpec(name="relationships", column="customer_id", to="orders", field="order_id")
    assert rows(db, failing_rows(test, ORDERS, resolve)) == [(3, 99, "paid"), (4, 98, "SHIPPED")]


@pytest.mark.parametrize("name", sorted(TESTS))
def test_every_test_passes_on_clean_data(db: duckdb.DuckDBPyConnection, name: str) -> None:
    clean = exp.table_("clean_orders", quoted=True)
    assert count(db, TESTS[name], clean) == 0
    assert count(db, TESTS[name]) > 0


def test_failure_sample_is_limited(db: duckdb.DuckDBPyConnection) -> None:
    sample = failure_sample(UNIQUE, ORDERS, resolve, limit=1)
    assert len(db.execute(sample.sql(dialect="duckdb")).fetchall()) == 1
    assert (
        len(db.execute(failure_sample(UNIQUE, ORDERS, resolve).sql(dialect="duckdb")).fetchall())
        == 2
    )
    with pytest.raises(ValueError):
        failure_sample(UNIQUE, ORDERS, resolve, limit=0)


def test_values_are_literals_not_sql(db: duckdb.DuckDBPyConnection) -> None:
    test = TestSpec(name="accepted_values", column="select", values=["PAID') OR ('1'='1"])
    assert count(db, test) == 7  # every non-null value: the quote did not end the literal


# ---------------------------------------------------------------------------------------------
# Wrong shapes


@pytest.mark.parametrize(
    ("test", "missing"),
    [
        (TestSpec(name="unique"), "`column`"),
        (TestSpec(name="not_null"), "`column`"),
        (TestSpec(name="accepted_values", column="s"), "`values`"),
        (TestSpec(name="accepted_values", column="s", values=[]), "`values`"),
        (TestSpec(name="accepted_values", column="s", values=[None]), "`values`"),
        (TestSpec(name="relationships", column="c"), "`to` and `field`"),
        (TestSpec(name="relationships", column="c", to="ref('x')"), "`field`"),
    ],
)
def test_wrong_shape_is_a_config_error(test: TestSpec, missing: str) -> None:
    with pytest.raises(ConfigError) as info:
        failing_rows(test, ORDERS, resolve)
    assert missing in str(info.value)
    assert test.name in str(info.value)


def test_unreadable_to_is_a_config_error() -> None:
    test = TestSpec(name="relationships", column="c", to="source('crm', 'accounts')", field="id")
    with pytest.raises(ConfigError, match="ref\\('model_name'\\)"):
        failing_rows(test, ORDERS, resolve)


def test_parse_ref() -> None:
    assert parse_ref("ref('dim_x')") == "dim_x"
    assert parse_ref('ref("dim_x")') == "dim_x"
    assert parse_ref("dim_x") == "dim_x"
    with pytest.raises(ConfigError):
        parse_ref("ref('dim_x\")")


# ---------------------------------------------------------------------------------------------
# Rendering: BigQuery parses, identifiers in backticks, golden files per dialect

BQ_ORDERS = exp.table_("orders", db="analytics", catalog="my-project", quoted=True)


def bq_resolve(name: str) -> exp.Table:
    return exp.table_(name, db="analytics", catalog="my-project", quoted=True)


@pytest.mark.parametrize("name", sorted(TESTS))
def test_bigquery_rendering_parses_and_uses_backticks(name: str) -> None:
    for build in (failing_rows, failure_count, failure_sample):
        sql = build(TESTS[name], BQ_ORDERS, bq_resolve).sql(dialect="bigquery")
        sqlglot.parse_one(sql, read="bigquery")
        assert "`my-project`.`analytics`.`orders`" in sql
        assert '"' not in sql


def check_golden(name: str, sql: str) -> None:
    path = GOLDEN / f"{name}.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(sql + "\n")
    assert path.read_text() == sql + "\n", (
        f"{path.name} differs; rerun with UPDATE_GOLDEN=1 if intended"
    )


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
@pytest.mark.parametrize("name", sorted(TESTS))
def test_golden_sql(name: str, dialect: str) -> None:
    relation, resolver = (BQ_ORDERS, bq_resolve) if dialect == "bigquery" else (ORDERS, resolve)
    check_golden(
        f"{name}.{dialect}",
        failing_rows(TESTS[name], relation, resolver).sql(dialect=dialect, pretty=True),
    )


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery"])
def test_golden_count_and_sample(dialect: str) -> None:
    relation, resolver = (BQ_ORDERS, bq_resolve) if dialect == "bigquery" else (ORDERS, resolve)
    check_golden(
        f"count.{dialect}",
        failure_count(UNIQUE, relation, resolver).sql(dialect=dialect, pretty=True),
    )
    check_golden(
        f"sample.{dialect}",
        failure_sample(UNIQUE, relation, resolver, 3).sql(dialect=dialect, pretty=True),
    )


def test_where_limits_a_test_to_matching_rows(db) -> None:
    # order 2 repeats (PAID and LOST); among PAID orders only 4 repeats
    assert count(db, UNIQUE) == 2
    assert count(db, UNIQUE.model_copy(update={"where": "\"select\" = 'PAID'"})) == 1
    assert count(db, RELATIONSHIP.model_copy(update={"where": "order_id = 3"})) == 1
    assert count(db, RELATIONSHIP.model_copy(update={"where": "order_id = 1"})) == 0


def test_where_comes_from_the_tests_config_as_in_dbt() -> None:
    from pipelines.config import normalize_test

    spec = normalize_test({"unique": {"config": {"where": "is_current"}}}, "customer_key")
    assert TestSpec(**spec).where == "is_current"


def test_a_where_that_is_not_sql_names_the_test() -> None:
    broken = UNIQUE.model_copy(update={"where": "is_current and ("})
    with pytest.raises(
        ConfigError, match=r"unique__order_id.*`where: is_current and \(` is not a SQL"
    ):
        failing_rows(broken, ORDERS, resolve)


def test_a_relationships_increment_counts_written_and_orphaned_rows_once(
    db: duckdb.DuckDBPyConnection,
) -> None:
    # orders passed before; then customer 2 went away (a 'before' value the parent no longer
    # holds) and the build wrote order 2 (customer 2) and order 5 (customer 97, never known);
    # the written rows carry an extra column (an increment's deletion flag)
    db.execute("CREATE TABLE kept AS SELECT * FROM orders WHERE customer_id IN (1, 2, 3)")
    db.execute("INSERT INTO kept VALUES (5, 97, 'PAID')")
    db.execute("DELETE FROM customers WHERE customer_id = 2")
    db.execute(
        "CREATE TABLE written AS SELECT *, false AS _deleted FROM kept "
        "WHERE order_id = 5 OR (order_id = 2 AND customer_id = 2)"
    )
    # the values the parent's rows held before they changed (customer 3 still exists)
    held = sqlglot.parse_one("SELECT customer_id FROM (VALUES (2), (3), (NULL)) AS t(customer_id)")
    assert isinstance(held, exp.Query)
    columns = ["order_id", "customer_id", "select"]
    increment = increment_failing_rows(
        RELATIONSHIP, exp.table_("kept"), exp.table_("written"), resolve, held, columns
    )
    # order 2 (written, its customer gone) once; order 4 (not written, customer 2) too
    assert rows(db, increment) == [(2, 2, "PAID"), (4, 2, "PAID"), (5, 97, "PAID")]
    assert rows(db, failing_rows(RELATIONSHIP, exp.table_("kept"), resolve)) == rows(db, increment)
    # the parent is read once, for the written values and the ones its rows held alike
    assert increment.sql(dialect="duckdb").count('"customers"') == 1
    # a written row without a customer has nothing to look up, whatever the parent holds
    db.execute("INSERT INTO kept VALUES (6, NULL, 'PAID')")
    db.execute("INSERT INTO written VALUES (6, NULL, 'PAID', false)")
    assert rows(db, increment) == [(2, 2, "PAID"), (4, 2, "PAID"), (5, 97, "PAID")]
    # a `where` is not applied on an increment: the test runs whole instead
    scoped = RELATIONSHIP.model_copy(update={"where": "order_id > 1"})
    with pytest.raises(ValueError, match="where"):
        increment_failing_rows(scoped, exp.table_("kept"), exp.table_("written"), resolve, held)


@pytest.mark.parametrize(
    ("where", "row_local"),
    [
        (None, True),
        ("is_current", True),
        ("is_current and amount > 0", True),
        ("valid_to is null or status in ('A', 'B')", True),
        ("cast(amount as integer) between 1 and 3 and not flag", True),
        ("name like 'x%'", True),
        ("valid_from <= now()", False),  # the clock
        ("d < current_date", False),
        ("id in (select id from other)", False),  # another table
        ("t.id = 1", False),
        ("lower(name) = 'x'", False),  # any function, to be safe
        ("not a valid condition (", False),
        ("valid_from <= current_datetime", False),  # BigQuery's clock, written as a name
        ("rowid < 10", False),  # DuckDB's row number: not a value the rows hold
        ("region = 'EU'", False),  # a column the written rows lack
        ("IS_CURRENT", True),  # names are case-insensitive
    ],
)
def test_a_where_is_row_local_only_when_a_row_s_own_values_decide_it(where, row_local) -> None:
    test = TestSpec(name="unique", column="id", where=where)
    held = ["id", "is_current", "amount", "valid_to", "valid_from", "status", "flag", "name", "d"]
    assert where_is_row_local(test, held) is row_local


def test_a_unique_increment_on_replaced_keys_reads_the_written_rows_alone(db) -> None:
    # a delete + insert on order_id: every row of the table holding a written key is written
    db.execute("CREATE TABLE kept AS SELECT * FROM clean_orders")
    db.execute("DELETE FROM kept WHERE order_id = 3")
    db.execute("INSERT INTO kept VALUES (3, 7, 'PAID'), (3, 8, 'LOST'), (5, 1, 'PAID')")
    db.execute("CREATE TABLE written AS SELECT * FROM kept WHERE order_id IN (3, 5)")
    increment = increment_failing_rows(
        UNIQUE, exp.table_("kept"), exp.table_("written"), keys_replaced=True
    )
    assert "kept" not in increment.sql(dialect="duckdb")  # the table is not read
    assert rows(db, increment) == [(3, 2)] == rows(db, failing_rows(UNIQUE, ORDERS_KEPT, resolve))
    # without the promise, the values are looked for in the table
    searched = increment_failing_rows(UNIQUE, exp.table_("kept"), exp.table_("written"))
    assert "kept" in searched.sql(dialect="duckdb") and rows(db, searched) == [(3, 2)]


ORDERS_KEPT = exp.table_("kept", quoted=True)
