"""Parity: the demo end to end on DuckDB and on BigQuery (the local emulator, through the real
client) yields the same conformed and mart tables, row for row (each row hashed)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from pipelines.warehouse.bigquery import BigQueryWarehouse

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TABLES = [
    "conformed.int_customer_records",
    "conformed.dim_customer",
    "conformed.dim_product",
    "conformed.fct_orders",
    "conformed.fct_payments",
    "marts.customer_lifetime_value",
]
#: columns whose values depend on the engine or the moment, not on the data
ENGINE_COLUMNS = {"_ssot_row_hash", "valid_from", "valid_to"}


def _plain(value):
    if isinstance(value, Decimal | float):
        return round(float(value), 6)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def row_hashes(rows: list[dict]) -> list[str]:
    """One hash per row of its values by column name (engine columns left out), sorted."""
    hashed = []
    for row in rows:
        kept = {k: _plain(v) for k, v in sorted(row.items()) if k not in ENGINE_COLUMNS}
        hashed.append(hashlib.sha256(json.dumps(kept, default=str).encode()).hexdigest())
    return sorted(hashed)


def current(table: str, columns: list[str]) -> str:
    """The rows readers see: a snapshot's current versions."""
    return f"select * from {table}" + (" where is_current" if "is_current" in columns else "")


def test_the_demo_gives_the_same_tables_on_duckdb_and_bigquery(
    project_copy, bigquery_endpoint
) -> None:
    ws = project_copy()
    project_id = f"ssot-parity-{uuid.uuid4().hex[:8]}"
    with (ws.root / "pyproject.toml").open("a") as handle:
        handle.write(
            f'\n[tool.ssot.targets.emulator]\ntype = "bigquery"\nproject = "{project_id}"\n'
            f'api_endpoint = "{bigquery_endpoint}"\n'
        )
    assert ws.ssot("demo", "init", "--scale", "0.02", "--seed", "11").returncode == 0
    local = ws.ssot("run")
    assert local.returncode == 0, local.stdout + local.stderr
    remote = ws.ssot("run", env={"SSOT_TARGET": "emulator"})
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "warehouse built: BigQuery project" in remote.stdout
    # the cost guard's estimate: `ssot plan` dry-runs what a changed model would rebuild
    mart = ws.root / "models" / "marts" / "customer_lifetime_value.sql"
    probed = "built as (\n    select\n"  # the query both a whole build and an increment run
    assert probed in mart.read_text()
    mart.write_text(mart.read_text().replace(probed, probed + "        1 as plan_probe,\n"))
    plan = ws.ssot("plan", env={"SSOT_TARGET": "emulator"})
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "bytes (dry run)" in plan.stdout and "customer_lifetime_value" in plan.stdout
    assert "estimated scan of the rebuilds" in plan.stdout
    # a new model and one reading it: the second cannot be dry-run before the first is built,
    # so it shows no estimate instead of failing the plan
    marts = ws.root / "models" / "marts"
    (marts / "plan_probe_new.sql").write_text("select 1 as x\n")
    (marts / "plan_probe_child.sql").write_text("select x from {{ ref('plan_probe_new') }}\n")
    plan = ws.ssot("plan", env={"SSOT_TARGET": "emulator"})
    assert plan.returncode == 0, plan.stdout + plan.stderr
    rows = {
        cells[0]: cells
        for line in plan.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip(" │").split("│")])
        and cells[0].startswith("plan_probe")
    }
    assert rows["plan_probe_child"][-1] == "-", plan.stdout
    assert rows["plan_probe_new"][-1] != "-", plan.stdout
    for extra in ("plan_probe_new", "plan_probe_child"):
        (marts / f"{extra}.sql").unlink()

    bq = BigQueryWarehouse(project_id, api_endpoint=bigquery_endpoint)
    try:
        with duckdb.connect(str(ws.warehouse), read_only=True) as con:
            for table in TABLES:
                schema, name = table.split(".")
                columns = [
                    r[0]
                    for r in con.execute(
                        "select column_name from information_schema.columns "
                        "where table_schema = ? and table_name = ?",
                        [schema, name],
                    ).fetchall()
                ]
                cursor = con.execute(current(table, columns))
                names = [d[0] for d in cursor.description]
                ours = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
                theirs = bq.query(current(table, columns)).to_pylist()
                assert len(ours) == len(theirs) > 0, table
                assert sorted(ours[0]) == sorted(theirs[0]), f"{table}: columns differ"
                assert row_hashes(ours) == row_hashes(theirs), f"{table}: rows differ"
    finally:
        bq.close()
