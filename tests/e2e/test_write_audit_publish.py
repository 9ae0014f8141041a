"""Write-audit-publish on the demo: a bad build is refused and kept, readers keep the last good
version, and the next good run publishes; analysts read the published file while a run writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

pytestmark = pytest.mark.slow

TABLES = ["conformed.fct_orders", "marts.customer_lifetime_value"]


def rows(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_bad_build_is_blocked_kept_and_the_next_good_run_publishes(project_copy) -> None:
    ws = project_copy()
    assert ws.ssot("demo", "init", "--scale", "0.05", "--seed", "5").returncode == 0
    good = ws.ssot("run")
    assert good.returncode == 0, good.stdout + good.stderr
    before = ws.fingerprints(TABLES)

    # A bad load: fct_orders now carries every order twice (duplicated keys).
    model = ws.root / "models" / "conformed" / "fct_orders.sql"
    original = model.read_text()
    model.write_text(
        f"select * from (\n{original}\n) as a\nunion all\nselect * from (\n{original}\n) as b\n"
    )
    bad = ws.ssot("run")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "blocking check failed: conformed/fct_orders: unique__order_id" in bad.stdout
    assert "readers keep the previous version" in bad.stdout
    # readers still get the last good version of the table and of what depends on it
    assert ws.fingerprints(TABLES) == before
    orders = before["conformed.fct_orders"][0]
    # the refused build is kept for inspection, with the duplicates that failed it
    assert rows(
        ws.warehouse,
        "select count(*), count(distinct order_id) from ssot_meta.candidate__conformed__fct_orders",
    ) == [(2 * orders, orders)]
    (result,) = rows(
        ws.warehouse,
        "select passed, failing_rows, failing_sample, audited, published "
        "from ssot_meta.check_results where asset = 'conformed/fct_orders' "
        "and check_name = 'unique__order_id' order by checked_at desc limit 1",
    )
    passed, failing, sample, audited, published = result
    assert (passed, failing, published) == (False, orders, False)
    # built whole beside the published table, audited there, never renamed over it: kept
    assert audited == "ssot_meta.candidate__conformed__fct_orders (refused, not published)"
    assert len(json.loads(sample)) == 5
    assert rows(
        ws.warehouse,
        "select outcome from ssot_meta.audit where asset = 'conformed/fct_orders' "
        "and kind = 'publish' order by recorded_at",
    ) == [("success",), ("blocked",)]

    # The fix lands with a new day of data: the next run publishes it.
    model.write_text(original)
    assert ws.ssot("demo", "advance", "--days", "1").returncode == 0
    fixed = ws.ssot("run")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    after = ws.fingerprints(TABLES)
    assert after["conformed.fct_orders"][0] > orders
    assert rows(
        ws.warehouse,
        "select count(*) = count(distinct order_id) from conformed.fct_orders",
    ) == [(True,)]
    # every check result stays in the history, one row per check and run
    history = rows(
        ws.warehouse,
        "select count(distinct run_id) from ssot_meta.check_results "
        "where asset = 'conformed/fct_orders' and check_name = 'unique__order_id'",
    )
    assert history == [(3,)]
    audit = ws.ssot("audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert audit.stdout.count("\n│ ") == 3  # three runs, newest first


READER = textwrap.dedent(
    """
    import json, sys, time
    import duckdb

    path, stop_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
    seen, errors, queries = {}, [], 0
    import os
    while not os.path.exists(stop_file):
        try:
            with duckdb.connect(path, read_only=True) as con:
                counts = con.execute(
                    "select (select count(*) from conformed.fct_orders),"
                    " (select count(*) from marts.customer_lifetime_value),"
                    " (select count(*) from conformed.fct_orders where order_id is null)"
                ).fetchone()
            seen[json.dumps(counts)] = seen.get(json.dumps(counts), 0) + 1
            queries += 1
        except Exception as exc:  # any error is a failure of the test
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.02)
    json.dump({"seen": seen, "errors": errors, "queries": queries}, open(out, "w"))
    """
)


def test_readers_query_the_published_warehouse_while_a_full_run_writes(project_copy) -> None:
    ws = project_copy()
    assert ws.ssot("demo", "init", "--scale", "0.05", "--seed", "6").returncode == 0
    assert ws.ssot("run").returncode == 0
    old = tuple(
        rows(
            ws.warehouse,
            "select (select count(*) from conformed.fct_orders),"
            " (select count(*) from marts.customer_lifetime_value), 0",
        )[0]
    )
    assert ws.ssot("demo", "advance", "--days", "2").returncode == 0

    stop, out = ws.root / "reader.stop", ws.root / "reader.json"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(ws.warehouse), str(stop), str(out)]
    )
    try:
        time.sleep(1.0)
        run = ws.ssot("run", "--all")  # every model rebuilt while the reader queries
        assert run.returncode == 0, run.stdout + run.stderr
        time.sleep(1.0)
    finally:
        stop.write_text("")
        reader.wait(timeout=60)
    report = json.loads(out.read_text())
    new = tuple(
        rows(
            ws.warehouse,
            "select (select count(*) from conformed.fct_orders),"
            " (select count(*) from marts.customer_lifetime_value), 0",
        )[0]
    )
    assert new != old
    seen = {tuple(json.loads(k)) for k in report["seen"]}
    assert report["errors"] == []
    assert report["queries"] > 20
    # only ever the whole old version or the whole new one, and the new one once published
    assert seen <= {old, new} and new in seen and old in seen, (seen, old, new)


def test_a_run_whose_publish_fails_says_so_and_exits_1(project_copy) -> None:
    ws = project_copy()
    assert ws.ssot("demo", "init", "--scale", "0.02", "--seed", "8").returncode == 0
    assert ws.ssot("run").returncode == 0
    ws.warehouse.unlink()
    ws.warehouse.mkdir()  # a folder where the published file must go: the rename fails
    run = ws.ssot("run")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "built, but not published for readers" in run.stdout
    assert (ws.warehouse.parent / "ssot.build.duckdb").is_file()  # what was built is kept
