"""A first load that DuckDB reads from PostgreSQL itself ("native") lands exactly what the Arrow
path lands: the same raw rows and fingerprints, the same quarantine with the same reasons, the
same cursor; and it steps aside (nothing written) whenever it does not apply."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pipelines.landing as landing
from pipelines.landing import land_table
from pipelines.meta import read_load_state
from pipelines.project import load_project
from pipelines.warehouse.base import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.integration

SOURCE = """
name: pgsrc
owner: team@example.com
connection: {url_env: SSOT_TEST_PGSRC_URL, default: 'postgresql://unused'}
tables:
  - name: things
    primary_key: [code]
    cursor: changed_at
    columns:
      - {name: code, type: string}
      - {name: small, type: integer}
      - {name: big, type: bigint, min: 0}
      - {name: price, type: 'decimal(12,2)', max: 5000}
      - {name: ratio, type: float}
      - {name: status, type: string, accepted_values: [new, done]}
      - {name: ref, type: string, pattern: '[A-Z]{2}-[0-9]+', max_length: 8}
      - {name: active, type: boolean}
      - {name: born, type: date}
      - {name: changed_at, type: timestamp, nullable: false}
"""

# Rows whose number is 1-5 modulo 97 break a rule each (150 rows); 2 rows have a
# blank key and 1 a NULL changed_at, so 153 of 2,900 rows fail.
FILL = """
insert into things
select case when g % 1000 = 0 then '  ' else 'k' || g end,
       (g % 30000)::smallint,
       case when g % 97 = 1 then -g else g * 1000 end,
       case when g % 97 = 2 then 9999.99 else (g % 4000) + 0.25 end,
       case when g % 5 = 0 then null else g / 7.0 end,
       case when g % 97 = 3 then 'lost' when g % 2 = 0 then 'new' else 'done' end,
       case when g % 97 = 4 then 'bad' when g % 97 = 5 then 'AB-1234567' else 'AB-' || g % 1000 end,
       g % 3 = 0,
       date '2020-01-01' + g,
       case when g = 1234 then null
            else timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute' end
from generate_series(1, 2900) g
"""

DDL = """
create table things (
    code text, small smallint, big bigint, price numeric(10,2), ratio real, status text,
    ref varchar(20), active boolean, born date, changed_at timestamptz
)
"""


@pytest.fixture
def pg_things(pg_url, make_project, monkeypatch):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(DDL)
        con.execute(FILL)
    monkeypatch.setenv("SSOT_TEST_PGSRC_URL", pg_url)
    project = load_project(make_project({"sources/pgsrc.yml": SOURCE}))
    return project, pg_url


RAW = Relation("raw", "pgsrc__things")


def _land(project, warehouse, **kwargs: Any):
    source = project.sources["pgsrc"]
    return land_table(project, warehouse, source, source.table("things"), run_id="r", **kwargs)


def _outcome(warehouse) -> dict[str, Any]:
    """What a load leaves behind, without the values that differ by load (batch id, time)."""
    raw = warehouse.query(
        "select * exclude (_ssot_batch_id, _ssot_loaded_at) from raw.pgsrc__things order by code"
    ).to_pylist()
    quarantine = warehouse.query(
        "select record_key, failed_checks, original_row from ssot_meta.quarantine "
        "order by record_key, failed_checks"
    ).to_pylist()
    state = read_load_state(warehouse, "pgsrc", "things")
    leftovers = warehouse.query(
        "select table_name from information_schema.tables where table_name like '%first_load%'"
    ).to_pylist()
    return {
        "raw": raw,
        "quarantine": quarantine,
        "cursor": (state.cursor_type, state.cursor_value),
        "leftovers": leftovers,
    }


def _arrow_only(monkeypatch) -> None:
    """The same scanner, read into Arrow in this process: the path a native load must match."""
    monkeypatch.setattr(DuckDBWarehouse, "reads_natively", lambda self, kind: False)


def test_a_native_first_load_lands_what_the_arrow_path_lands(pg_things, monkeypatch) -> None:
    project, _ = pg_things
    with DuckDBWarehouse(":memory:") as warehouse:
        native = _land(project, warehouse)
        native_outcome = _outcome(warehouse)
    with monkeypatch.context() as patch:
        _arrow_only(patch)
        with DuckDBWarehouse(":memory:") as warehouse:
            arrow = _land(project, warehouse)
            arrow_outcome = _outcome(warehouse)

    assert (native.path, arrow.path) == ("native", "streamed")
    counts = ("rows_read", "rows_landed", "rows_unchanged", "rows_quarantined", "rows_deleted")
    assert [getattr(native, c) for c in counts] == [getattr(arrow, c) for c in counts]
    assert (native.rows_read, native.rows_quarantined) == (2900, 153)
    assert native_outcome == arrow_outcome
    reasons = " ".join(row["failed_checks"] for row in native_outcome["quarantine"])
    for check in ("null_key", "min", "max", "accepted_values", "pattern", "max_length", "not_null"):
        assert f'"{check}"' in reasons, check


def test_the_next_load_compares_with_what_a_native_load_landed(pg_things, pg_url) -> None:
    """Same fingerprints: a full re-pull lands nothing, and a changed row lands once."""
    project, _ = pg_things
    with DuckDBWarehouse(":memory:") as warehouse:
        assert _land(project, warehouse).path == "native"
        again = _land(project, warehouse, full_refresh=True)
        assert (again.path, again.rows_landed, again.rows_unchanged) == ("streamed", 0, 2747)
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute("update things set big = 7, changed_at = now() where code = 'k10'")
        changed = _land(project, warehouse)
        assert (changed.path, changed.rows_landed) == ("streamed", 1)
        assert warehouse.scalar("select count(*) from raw.pgsrc__things where code = 'k10'") == 2


def test_a_source_the_contract_must_convert_lands_through_arrow(
    pg_things, pg_url, monkeypatch
) -> None:
    project, _ = pg_things
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("alter table things alter column changed_at type text")
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        assert result.path == "streamed"
        assert result.rows_read == 2900
        assert _outcome(warehouse)["leftovers"] == []


def test_an_extra_source_column_lands_through_arrow(pg_things, pg_url) -> None:
    project, _ = pg_things
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("alter table things add column extra text default 'x'")
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        assert (result.path, result.extra_columns) == ("streamed", ("extra",))


def test_many_failing_rows_roll_back_to_the_arrow_path(pg_things, monkeypatch) -> None:
    project, _ = pg_things
    monkeypatch.setattr(landing, "NATIVE_QUARANTINE_LIMIT", 10)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        outcome = _outcome(warehouse)
    assert (result.path, result.rows_quarantined) == ("streamed", 153)
    assert len(outcome["quarantine"]) == 153
    assert outcome["leftovers"] == []


def test_failing_rows_move_out_in_chunks(pg_things, monkeypatch) -> None:
    project, _ = pg_things
    monkeypatch.setattr(landing, "NATIVE_QUARANTINE_CHUNK", 4)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        assert (result.path, result.rows_quarantined, result.rows_landed) == ("native", 153, 2747)
        assert warehouse.row_count(RAW) == 2747


def test_a_warehouse_error_in_a_native_load_leaves_nothing_and_falls_back(
    pg_things, monkeypatch
) -> None:
    from pipelines.errors import TerminalWarehouseError

    project, _ = pg_things

    def broken(self, fresh, names):
        raise TerminalWarehouseError("out of memory (simulated)")

    monkeypatch.setattr(landing._Load, "_quarantine_landed", broken)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        outcome = _outcome(warehouse)
    assert (result.path, result.rows_read, result.rows_quarantined) == ("streamed", 2900, 153)
    assert len(outcome["raw"]) == 2747
    assert outcome["leftovers"] == []


def test_an_unreachable_source_fails_as_the_arrow_path_does(make_project, monkeypatch) -> None:
    from pipelines.errors import SourceError

    monkeypatch.setenv("SSOT_TEST_PGSRC_URL", "postgresql://postgres:s3cret@127.0.0.1:1/nowhere")
    monkeypatch.setattr("pipelines.extract.sql.CONNECT_ATTEMPTS", 1)
    project = load_project(make_project({"sources/pgsrc.yml": SOURCE}))
    with DuckDBWarehouse(":memory:") as warehouse, pytest.raises(SourceError) as failure:
        _land(project, warehouse)
    assert "s3cret" not in str(failure.value)
