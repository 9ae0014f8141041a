"""An incremental model through `ssot run`: created once, then merged with each day's increment;
`--full-refresh MODEL` rebuilds it from its whole query."""

from __future__ import annotations

import re

import duckdb
import pytest

pytestmark = pytest.mark.slow

MODEL = """
{{ config(materialized='incremental', unique_key='order_id', on_schema_change='fail') }}
-- the latest status of every order, merged from the orders changed since the last build
select order_id, status, updated_at
from {{ ref('stg_shop__orders') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
"""


def build_details(path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [
            row[0]
            for row in con.execute(
                "select detail from ssot_meta.audit where kind = 'build' "
                "and asset = 'marts/order_status' order by recorded_at"
            ).fetchall()
        ]


def same_as_a_full_query(path) -> None:
    with duckdb.connect(str(path), read_only=True) as con:
        ours = con.execute("select * from marts.order_status order by order_id").fetchall()
        full = con.execute(
            "select order_id, status, updated_at from staging.stg_shop__orders order by order_id"
        ).fetchall()
    assert ours == full and len(ours) > 100


def test_an_incremental_model_merges_each_days_changes(project_copy) -> None:
    ws = project_copy()
    (ws.root / "models" / "marts" / "order_status.sql").write_text(MODEL)
    assert ws.ssot("demo", "init", "--scale", "0.05", "--seed", "3").returncode == 0
    first = ws.ssot("run")
    assert first.returncode == 0, first.stdout + first.stderr
    traces = sorted((ws.root / "target" / "cache" / "lineage").iterdir())
    for _ in range(2):
        assert ws.ssot("demo", "advance", "--days", "1").returncode == 0
        run = ws.ssot("run")
        assert run.returncode == 0, run.stdout + run.stderr
        same_as_a_full_query(ws.warehouse)
        # the models' lineage is traced on their whole queries: each day's builds read it
        # back, none is traced (and cached) again
        assert sorted((ws.root / "target" / "cache" / "lineage").iterdir()) == traces
    details = build_details(ws.warehouse)
    # the first build creates the table from the whole query; later ones merge an increment
    assert details[0] == "never built"
    increments = [int(re.search(r"increment of (\d+) rows", d)[1]) for d in details[1:]]  # type: ignore[index]
    assert len(increments) == 2 and all(0 < n < 100 for n in increments), details

    refresh = ws.ssot("run", "--full-refresh", "order_status")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert "increment" not in build_details(ws.warehouse)[-1]  # rebuilt from the whole query
    same_as_a_full_query(ws.warehouse)

    wrong = ws.ssot("run", "--full-refresh", "dim_product")
    assert wrong.returncode != 0
    assert "rebuilt on every run anyway" in wrong.stdout + wrong.stderr
    history = ws.ssot("run", "--full-refresh", "dim_customer")
    assert history.returncode != 0
    assert "keeps history that a rebuild would lose" in history.stdout + history.stderr
