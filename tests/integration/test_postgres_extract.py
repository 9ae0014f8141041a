"""PostgreSQL extraction: DuckDB's scanner and the psycopg path land the same rows, incrementally too."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from pipelines.extract import Pull, connector_for
from pipelines.landing import land_table
from pipelines.project import load_project
from pipelines.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.integration

SOURCE = """
name: pgsrc
owner: team@example.com
connection: {url_env: SSOT_TEST_PGSRC_URL, default: 'postgresql://unused'}
tables:
  - name: items
    primary_key: [id]
    cursor: changed_at
    lookback: 1h
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: price, type: 'decimal(12,2)'}
      - {name: label, type: string}
      - {name: changed_at, type: timestamp, nullable: false}
      - {name: seen_at, type: timestamp}
"""


@pytest.fixture
def pg_items(pg_url, make_project, monkeypatch):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "create table items (id integer primary key, price numeric(12,2), label text, "
            "changed_at timestamptz not null, seen_at text)"
        )
        con.execute(
            "insert into items select g, g * 1.25, case when g % 7 = 0 then null else 'item ' || g end, "
            "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', "
            "to_char(timestamptz '2026-01-01' + g * interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS') || '+02:00' "
            "from generate_series(1, 3000) g"
        )
    monkeypatch.setenv("SSOT_TEST_PGSRC_URL", pg_url)
    project = load_project(make_project({"sources/pgsrc.yml": SOURCE}))
    return project, pg_url


def land_with(engine: str, project, monkeypatch) -> list[tuple]:
    monkeypatch.setenv("SSOT_EXTRACT_ENGINE", engine)
    source = project.sources["pgsrc"]
    with DuckDBWarehouse(":memory:") as warehouse:
        result = land_table(
            project, warehouse, source, source.table("items"), run_id="r", batch_rows=700
        )
        assert result.rows_landed == 3000
        return warehouse.query(
            "select id, price, label, changed_at, seen_at from raw.pgsrc__items order by id"
        ).to_pylist()


def test_scanner_and_dbapi_land_identical_rows(pg_items, monkeypatch) -> None:
    project, _ = pg_items
    assert land_with("auto", project, monkeypatch) == land_with("dbapi", project, monkeypatch)


@pytest.mark.parametrize("engine", ["auto", "dbapi"])
def test_the_cursor_is_pushed_down_to_postgres(pg_items, monkeypatch, engine) -> None:
    project, pg_url = pg_items
    monkeypatch.setenv("SSOT_EXTRACT_ENGINE", engine)
    table = project.sources["pgsrc"].table("items")
    connector = connector_for(pg_url, source="pgsrc", root=project.root)
    floor = datetime(2026, 1, 2, 0, 0, tzinfo=UTC)  # minute 1440 onwards
    rows = sum(
        u.batch.num_rows for u in connector.read(table, pull=Pull(cursor_floor=floor)) if u.batch
    )
    assert rows == 3000 - 1440 + 1
    keys = sum(u.batch.num_rows for u in connector.read_keys(table) if u.batch)
    assert keys == 3000


def test_the_scanner_reads_wide_rows_in_batches_of_bounded_bytes(pg_url, monkeypatch) -> None:
    """Rows of 8 KB at the 122,880 rows a DuckDB warehouse asks for would be 1 GB batches."""
    from pipelines.warehouse.duckdb import ARROW_BATCH_BYTES, SourceScanner

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "create table wide as select g as id, repeat(md5(g::text), 250) as body "
            "from generate_series(1, 20000) g"
        )
    scanner = SourceScanner("postgres", pg_url)
    try:
        sizes = [b.num_rows for b in scanner.table_batches("wide", 122_880)]
        # a source query (an incremental pull) is not probed: batches as asked
        asked = [b.num_rows for b in scanner.query_batches("select * from wide", 5_000)]
    finally:
        scanner.close()
    assert sum(sizes) == 20_000
    assert max(sizes) <= ARROW_BATCH_BYTES // 8_000  # 8,016 bytes a row
    assert len(sizes) > 2
    assert sum(asked) == 20_000 and max(asked) == 5_000
