"""Incremental pulls and incremental model builds over several demo days give the same
warehouse as a full pull and build of the last day."""

from __future__ import annotations

import csv

import duckdb
import pytest

from pipelines.meta import ALREADY_QUARANTINED

pytestmark = pytest.mark.slow

COMPARED = [
    "staging.stg_crm__accounts",
    "staging.stg_crm__contacts",
    "staging.stg_shop__customers",
    "staging.stg_shop__products",
    "staging.stg_shop__orders",
    "staging.stg_shop__order_lines",
    "staging.stg_billing__invoices",
    "staging.stg_billing__payments",
    "conformed.int_customer_records",
    "conformed.dim_customer",
    "conformed.dim_product",
    "conformed.fct_orders",
    "conformed.fct_payments",
    "marts.customer_lifetime_value",
]
#: the demo's models that each daily run builds from its increment
INCREMENTAL = [
    "staging/stg_crm__contacts",
    "staging/stg_shop__orders",
    "staging/stg_shop__order_lines",
    "staging/stg_billing__invoices",
    "conformed/int_customer_records",
    "conformed/fct_orders",
    "conformed/fct_payments",
    "marts/customer_lifetime_value",
]


def quarantined(path) -> dict[tuple[str, str], int]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            'select source, "table", count(*) from ssot_meta.quarantine group by all'
        ).fetchall()
    return {(s, t): n for s, t, n in rows}


def truth_bad(demo) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    with (demo / "truth" / "bad_records.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = (row["system"], row["table"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def load_stats(path) -> dict[str, tuple[int, int, str]]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select asset, rows_in, rows_out, detail from ssot_meta.audit where kind = 'load' "
            "and run_id = (select run_id from ssot_meta.audit order by recorded_at desc limit 1)"
        ).fetchall()
    return {asset: (rows_in, rows_out, detail) for asset, rows_in, rows_out, detail in rows}


def build_details(path) -> dict[str, str]:
    """asset -> the detail of its build in the latest run."""
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select asset, detail from ssot_meta.audit where kind = 'build' "
            "and run_id = (select run_id from ssot_meta.audit order by recorded_at desc limit 1)"
        ).fetchall()
    return dict(rows)


def test_incremental_days_equal_a_full_pull(project_copy) -> None:
    daily = project_copy()
    assert daily.ssot("demo", "init", "--scale", "0.1", "--seed", "5").returncode == 0
    assert daily.ssot("run").returncode == 0
    for _ in range(4):  # day 3 adds a column to CRM contacts: drift lands on the way
        assert daily.ssot("demo", "advance", "--days", "1").returncode == 0
        run = daily.ssot("run")
        assert run.returncode == 0, run.stdout + run.stderr
        stats = load_stats(daily.warehouse)
        # pulls after the first read only what changed (plus the lookback window)
        assert "incremental" in stats["raw/shop/orders"][2]
        assert stats["raw/shop/orders"][0] < 1000
        # ... and the models apply only what changed to their tables
        details = build_details(daily.warehouse)
        assert all("increment of" in details[model] for model in INCREMENTAL), details
        assert "versions opened or closed" in details["conformed/dim_customer"]
        assert "built whole" not in details["conformed/dim_customer"], details

    # a rerun with nothing new lands nothing
    again = daily.ssot("run")
    assert again.returncode == 0
    assert all(landed == 0 for _, landed, _ in load_stats(daily.warehouse).values())

    # the same world pulled in one go
    full = project_copy()
    assert full.ssot("demo", "init", "--scale", "0.1", "--seed", "5").returncode == 0
    assert full.ssot("demo", "advance", "--days", "4").returncode == 0
    assert full.ssot("run").returncode == 0

    assert daily.fingerprints(COMPARED) == full.fingerprints(COMPARED)
    # each bad record is quarantined exactly once, however many runs read it
    assert quarantined(daily.warehouse) == quarantined(full.warehouse) == truth_bad(full.demo)
    # ... and the loads say so: each load's quarantined rows less those the quarantine already
    # held (a cursor's lookback reads some bad rows again) add up to what it holds
    with duckdb.connect(str(daily.warehouse), read_only=True) as con:
        loads = con.execute(
            "select asset, rows_quarantined, detail from ssot_meta.audit where kind = 'load'"
        ).fetchall()
    added: dict[tuple[str, str], int] = {}
    for asset, rows, detail in loads:
        marker = f"; {ALREADY_QUARANTINED} "
        held = int(detail.rsplit(marker, 1)[1]) if marker in detail else 0
        _, source, table = asset.split("/")
        added[(source, table)] = added.get((source, table), 0) + rows - held
    assert {key: n for key, n in added.items() if n} == quarantined(daily.warehouse)

    with duckdb.connect(str(daily.warehouse), read_only=True) as con:
        tombstones = con.execute(
            "select count(*) from raw.shop__customers where _ssot_op = 'delete'"
        ).fetchone()[0]
        assert tombstones > 0  # the demo hard-deletes customers; key_diff saw them go
        cols = [r[0] for r in con.execute("describe raw.crm__contacts").fetchall()]
        assert "job_title" in cols
        # dim_customer keeps history (SCD2): the daily runs closed versions along the way
        closed, open_closed, bad_periods = con.execute(
            "select count(*) filter (where not is_current), "
            "count(*) filter (where not is_current and valid_to is null), "
            "count(*) filter (where valid_to <= valid_from) from conformed.dim_customer"
        ).fetchone()
        assert closed > 0 and open_closed == 0 and bad_periods == 0
    with duckdb.connect(str(full.warehouse), read_only=True) as con:
        # one run saw one state: no history yet
        assert con.execute(
            "select count(*) from conformed.dim_customer where not is_current"
        ).fetchone() == (0,)
