"""The demo end to end: generate the systems, `ssot run`, compare the warehouse with ground truth."""

from __future__ import annotations

import csv
import sqlite3
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

SCALE = "0.2"
SEED = "7"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def bad_keys(demo: Path, system: str, table: str) -> set[str]:
    return {
        r["record_key"]
        for r in read_csv(demo / "truth" / "bad_records.csv")
        if r["system"] == system and r["table"] == table
    }


@pytest.fixture(scope="module")
def built(project_copy):
    ws = project_copy()
    init = ws.ssot("demo", "init", "--scale", SCALE, "--seed", SEED)
    assert init.returncode == 0, init.stdout + init.stderr
    run = ws.ssot("run")
    assert run.returncode == 0, run.stdout + run.stderr
    con = duckdb.connect(str(ws.warehouse), read_only=True)
    yield ws, run, con
    con.close()


def test_run_prints_progress_summary_and_how_to_query(built) -> None:
    ws, run, _ = built
    out = run.stdout
    assert "Run summary" in out
    assert "raw/crm/contacts" in out and "marts/customer_lifetime_value" in out
    assert "quarantined" in out
    assert str(ws.warehouse) in out.replace("\n", "")
    assert "ssot query" in out


def test_dim_customer_has_exactly_one_row_per_real_person(built) -> None:
    ws, _, con = built
    truth = read_csv(ws.demo / "truth" / "people.csv")
    people = {r["person_id"] for r in truth}
    current = "select count(*) from conformed.dim_customer where is_current"
    assert con.execute(current).fetchone()[0] == len(people)

    # the partition of source records into people is exactly the truth's
    by_key: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for key, system, record in con.execute(
        "select customer_key, source_system, record_id from conformed.int_customer_records"
    ).fetchall():
        by_key[key].add((system, record))
    by_person: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in truth:
        by_person[r["person_id"]].add((r["system"], r["record_id"]))
    assert sorted(map(sorted, by_key.values())) == sorted(map(sorted, by_person.values()))


def test_order_totals_reconcile_with_the_shop_to_the_cent(built) -> None:
    ws, _, con = built
    bad_orders = bad_keys(ws.demo, "shop", "orders")
    bad_lines = bad_keys(ws.demo, "shop", "order_lines")
    expected: dict[int, Decimal] = defaultdict(Decimal)
    with sqlite3.connect(ws.demo / "shop.sqlite") as shop:
        orders = {row[0] for row in shop.execute("select order_id from orders")}
        for line_id, order_id, qty, price in shop.execute(
            "select order_line_id, order_id, quantity, cast(unit_price as text) from order_lines"
        ):
            if str(line_id) not in bad_lines:
                expected[order_id] += Decimal(qty) * Decimal(price).quantize(Decimal("0.01"))
    valid_orders = {o for o in orders if str(o) not in bad_orders}
    actual = dict(con.execute("select order_id, order_total from conformed.fct_orders").fetchall())
    assert set(actual) == valid_orders
    mismatched = {
        o: (actual[o], expected.get(o, Decimal(0)))
        for o in valid_orders
        if actual[o] != expected.get(o, Decimal(0))
    }
    assert not mismatched, list(mismatched.items())[:5]
    assert sum(actual.values()) == sum(expected[o] for o in valid_orders)


def test_every_bad_row_is_quarantined_once_and_nothing_is_lost(built) -> None:
    ws, _, con = built
    truth_bad = read_csv(ws.demo / "truth" / "bad_records.csv")
    quarantined = con.execute(
        'select source, "table", count(*) from ssot_meta.quarantine group by all'
    ).fetchall()
    per_table = defaultdict(int)
    for r in truth_bad:
        per_table[(r["system"], r["table"])] += 1
    assert {(s, t): n for s, t, n in quarantined} == dict(per_table)
    # every load reconciles: rows read = rows landed + rows quarantined
    for asset, rows_in, rows_out, rows_q in con.execute(
        "select asset, rows_in, rows_out, rows_quarantined from ssot_meta.audit where kind = 'load'"
    ).fetchall():
        assert rows_in == rows_out + rows_q, asset


def test_the_run_is_in_the_persistent_dagster_instance(built) -> None:
    import dagster as dg

    ws = built[0]
    with ws.instance() as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        (record,) = runs
        assert record.job_name == "ssot_all"
        assert record.is_success
        assert record.remote_job_origin is not None
        assert record.remote_job_origin.location_name == "ssot"
        materialized = instance.get_latest_materialization_event(
            dg.AssetKey(["conformed", "dim_customer"])
        )
        assert materialized is not None and materialized.run_id == record.run_id


def test_every_model_publishes_its_column_lineage(built) -> None:
    import dagster as dg

    ws = built[0]
    with ws.instance() as instance:
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["marts", "customer_lifetime_value"])
        )
        assert event is not None and event.asset_materialization is not None
        lineage = event.asset_materialization.metadata["dagster/column_lineage"].value
        deps = {
            column: sorted((d.asset_key.to_user_string(), d.column_name) for d in found)
            for column, found in lineage.deps_by_column.items()
        }
        assert deps["revenue"] == [
            ("conformed/fct_orders", "order_total"),
            ("conformed/fct_orders", "status"),
        ]
        assert deps["orders"] == []  # count(*) reads no column
        customer = instance.get_latest_materialization_event(
            dg.AssetKey(["conformed", "dim_customer"])
        )
        assert customer is not None and customer.asset_materialization is not None
        customer_deps = customer.asset_materialization.metadata["dagster/column_lineage"].value
        assert [
            (d.asset_key.to_user_string(), d.column_name)
            for d in customer_deps.deps_by_column["country_name"]
        ] == [("seeds/countries", "country_name")]
        staged = instance.get_latest_materialization_event(
            dg.AssetKey(["staging", "stg_shop__orders"])
        )
        assert staged is not None and staged.asset_materialization is not None
        staged_deps = staged.asset_materialization.metadata["dagster/column_lineage"].value
        assert [
            (d.asset_key.to_user_string(), d.column_name)
            for d in staged_deps.deps_by_column["order_id"]
        ] == [("raw/shop/orders", "order_id")]
        for node_key in instance.get_asset_keys():
            if node_key.path[0] in ("staging", "conformed", "marts"):
                latest = instance.get_latest_materialization_event(node_key)
                assert latest is not None and latest.asset_materialization is not None
                assert "dagster/column_lineage" in latest.asset_materialization.metadata, node_key


def test_lifetime_value_matches_the_shop_per_real_person(built) -> None:
    """Revenue per person and currency, recomputed from the shop's own tables via the truth."""
    ws, _, con = built
    bad_orders = bad_keys(ws.demo, "shop", "orders")
    bad_lines = bad_keys(ws.demo, "shop", "order_lines")
    person_of_customer = {
        r["record_id"]: r["person_id"]
        for r in read_csv(ws.demo / "truth" / "people.csv")
        if r["system"] == "shop"
    }
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    with sqlite3.connect(ws.demo / "shop.sqlite") as shop:
        orders = {
            oid: (str(cid), status.strip().upper(), currency.strip().upper())
            for oid, cid, status, currency in shop.execute(
                "select order_id, customer_id, status, currency from orders"
            )
            if str(oid) not in bad_orders
        }
        for line_id, oid, qty, price in shop.execute(
            "select order_line_id, order_id, quantity, cast(unit_price as text) from order_lines"
        ):
            if str(line_id) in bad_lines or oid not in orders:
                continue
            customer, status, currency = orders[oid]
            if customer in person_of_customer and status not in {"CANCELLED", "REFUNDED"}:
                amount = Decimal(qty) * Decimal(price).quantize(Decimal("0.01"))
                expected[(person_of_customer[customer], currency)] += amount

    key_of_person = {}
    for key, _system, record in con.execute(
        "select customer_key, source_system, record_id from conformed.int_customer_records where source_system = 'shop'"
    ).fetchall():
        key_of_person[person_of_customer[record]] = key
    actual = {
        (key, currency): revenue
        for key, currency, revenue in con.execute(
            "select customer_key, currency, revenue from marts.customer_lifetime_value"
        ).fetchall()
    }
    expected_by_key = {
        (key_of_person[p], c): v
        for (p, c), v in expected.items()
        if v or (key_of_person[p], c) in actual
    }
    assert {k: v for k, v in actual.items() if v} == {k: v for k, v in expected_by_key.items() if v}
    negative = con.execute(
        "select count(*) from marts.customer_lifetime_value where outstanding < 0"
    ).fetchone()[0]
    assert negative == 0  # nobody paid more than they were charged


def test_country_names_come_from_the_countries_seed(built) -> None:
    ws, _, con = built
    with (ws.root / "seeds" / "countries.csv").open(newline="") as handle:
        names = {row["country_code"]: row["country_name"] for row in csv.DictReader(handle)}
    rows = con.execute(
        "select country_code, country_name, count(*) from conformed.dim_customer group by all"
    ).fetchall()
    assert sum(n for code, _, n in rows if code in names) > 0
    for code, name, _ in rows:
        assert name == names.get(code), code
