"""A first load that DuckDB reads from PostgreSQL itself ("native") lands exactly what the Arrow
path lands: the same raw rows and fingerprints, the same quarantine with the same reasons, the
same cursor; and it steps aside (nothing written) whenever it does not apply."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import pipelines.landing as landing
from pipelines.extract.sql import PostgresConnector
from pipelines.landing import land_table
from pipelines.meta import read_load_state
from pipelines.project import load_project
from pipelines.warehouse.base import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.integration

HEADER = """
name: pgsrc
owner: team@example.com
connection: {url_env: SSOT_TEST_PGSRC_URL, default: 'postgresql://unused'}
tables:"""

SOURCE = (
    HEADER
    + """
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
)

# Rows whose number is 1-5 modulo 97 break a rule each (150 rows); 2 rows have a
# blank key and 1 a NULL changed_at, so 153 of 2,900 rows fail.
FILL = """
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

# The source's columns in another order than the yml's: the quarantine records a row's values
# in the source's order, on both paths.
DDL = """
create table things (
    changed_at timestamptz, small smallint, big bigint, price numeric(10,2), ratio real,
    status text, ref varchar(20), active boolean, born date, code text
)
"""


@pytest.fixture
def pg_things(pg_url, make_project, monkeypatch):
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(DDL)
        con.execute(
            "insert into things (code, small, big, price, ratio, status, ref, active, born, "
            "changed_at) " + FILL
        )
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
    leftovers = _outcome_leftovers(warehouse)
    detail = warehouse.scalar(
        "select detail from ssot_meta.audit where asset = 'raw/pgsrc/things' "
        "order by recorded_at desc limit 1"
    )
    return {
        "detail": detail,
        "raw": raw,
        "quarantine": quarantine,
        "cursor": (state.cursor_type, state.cursor_value),
        "leftovers": leftovers,
    }


def _one_table(pg_url, make_project, monkeypatch, statements: list[str], table_yml: str):
    """A project whose source `pgsrc` holds the one table ``statements`` create and fill."""
    with psycopg.connect(pg_url, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)
    monkeypatch.setenv("SSOT_TEST_PGSRC_URL", pg_url)
    project = load_project(make_project({"sources/pgsrc.yml": HEADER + table_yml}))
    return project, project.sources["pgsrc"]


def _outcome_leftovers(warehouse) -> list[dict[str, Any]]:
    return warehouse.query(
        "select table_name from information_schema.tables where table_name like '%first_load%'"
    ).to_pylist()


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
    assert native_outcome.pop("detail").endswith("full pull; native")
    assert arrow_outcome.pop("detail").endswith("full pull; streamed")
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
        outcome = _outcome(warehouse)
    assert (result.path, result.rows_read) == ("streamed", 2900)
    assert outcome["leftovers"] == []
    assert (
        "(native load not used: column 'changed_at' is VARCHAR in the source and "
        "TIMESTAMP WITH TIME ZONE in raw: the contract converts it)"
    ) in outcome["detail"]


def test_an_extra_source_column_lands_through_arrow(pg_things, pg_url) -> None:
    project, _ = pg_things
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("alter table things add column extra text default 'x'")
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        detail = _outcome(warehouse)["detail"]
    assert (result.path, result.extra_columns) == ("streamed", ("extra",))
    assert (result.native_note or "").startswith("native load not used: the source's columns")
    assert "native load not used: the source's columns are not the declared ones" in detail
    assert "(not declared: extra)" in detail


def test_many_failing_rows_roll_back_to_the_arrow_path(pg_things, monkeypatch) -> None:
    project, _ = pg_things
    monkeypatch.setattr(landing, "NATIVE_QUARANTINE_LIMIT", 10)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        outcome = _outcome(warehouse)
    assert (result.path, result.rows_read, result.rows_quarantined) == ("streamed", 2900, 153)
    assert (len(outcome["raw"]), len(outcome["quarantine"])) == (2747, 153)
    assert outcome["leftovers"] == []
    assert "(native load rolled back: more than 10 rows fail the contract" in outcome["detail"]


def test_a_failure_at_the_end_of_a_native_load_counts_nothing_twice(pg_things, monkeypatch) -> None:
    """The native load got as far as its bookkeeping: the Arrow path starts again from zero."""
    from pipelines.errors import WarehouseMemoryError

    project, _ = pg_things
    real = landing._Load._finish

    def finish(self, *args, **kwargs):
        if self.path == "native":
            raise WarehouseMemoryError("out of memory (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(landing._Load, "_finish", finish)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        outcome = _outcome(warehouse)
        audit = warehouse.query(
            "select rows_in, rows_out, rows_quarantined from ssot_meta.audit"
        ).to_pylist()
    assert (result.path, result.rows_read, result.rows_quarantined) == ("streamed", 2900, 153)
    assert (len(outcome["raw"]), len(outcome["quarantine"])) == (2747, 153)
    assert audit == [{"rows_in": 2900, "rows_out": 2747, "rows_quarantined": 153}]
    assert "(native load rolled back: WarehouseMemoryError: out of memory" in outcome["detail"]


def test_running_out_of_memory_after_the_insert_falls_back(pg_things, monkeypatch) -> None:
    from pipelines.errors import WarehouseMemoryError

    project, _ = pg_things

    def broken(self, fresh, order, row_bytes):
        raise WarehouseMemoryError("Out of Memory Error (simulated)")

    monkeypatch.setattr(landing._Load, "_check_landed", broken)
    with DuckDBWarehouse(":memory:") as warehouse:
        result = _land(project, warehouse)
        outcome = _outcome(warehouse)
    assert (result.path, result.rows_read, result.rows_quarantined) == ("streamed", 2900, 153)
    assert len(outcome["raw"]) == 2747
    assert outcome["leftovers"] == []
    assert "rolled back: WarehouseMemoryError: Out of Memory Error (simulated)" in outcome["detail"]


def test_another_warehouse_error_after_the_insert_fails_the_load(pg_things, monkeypatch) -> None:
    """Reading the source again would not help (disk full, a lost connection): raw stays as it
    was, the fresh table is gone, the audit log says why."""
    from pipelines.errors import TerminalWarehouseError

    project, _ = pg_things
    reads = []
    real_read = PostgresConnector.read

    def counted(self, *args, **kwargs):
        reads.append(1)
        return real_read(self, *args, **kwargs)

    def broken(self, fresh, order, row_bytes):
        raise TerminalWarehouseError("No space left on device (simulated)")

    monkeypatch.setattr(landing._Load, "_check_landed", broken)
    monkeypatch.setattr(PostgresConnector, "read", counted)
    with DuckDBWarehouse(":memory:") as warehouse:
        with pytest.raises(TerminalWarehouseError, match="No space left"):
            _land(project, warehouse)
        assert not warehouse.exists(RAW)
        assert _outcome_leftovers(warehouse) == []
        failed = warehouse.query("select outcome, detail from ssot_meta.audit").to_pylist()
    assert reads == []  # not read a second time through Arrow
    assert failed[0]["outcome"] == "failed" and "No space left" in failed[0]["detail"]


def test_an_unreachable_source_fails_as_the_arrow_path_does(make_project, monkeypatch) -> None:
    from pipelines.errors import SourceError

    monkeypatch.setenv("SSOT_TEST_PGSRC_URL", "postgresql://postgres:s3cret@127.0.0.1:1/nowhere")
    monkeypatch.setattr("pipelines.extract.sql.CONNECT_ATTEMPTS", 1)
    project = load_project(make_project({"sources/pgsrc.yml": SOURCE}))
    with DuckDBWarehouse(":memory:") as warehouse, pytest.raises(SourceError) as failure:
        _land(project, warehouse)
    assert "s3cret" not in str(failure.value)


def test_the_backend_never_names_the_password_of_a_source_it_cannot_attach() -> None:
    from pipelines.errors import WarehouseError
    from pipelines.warehouse.base import NativeTable

    url = "postgresql://postgres:s3cret-pass@127.0.0.1:1/nowhere?connect_timeout=2"
    with DuckDBWarehouse(":memory:") as warehouse:
        with (
            pytest.raises(WarehouseError) as failure,
            warehouse.native_table(NativeTable("postgres", url, "things")),
        ):
            pass
        assert "s3cret" not in str(failure.value)
        assert "127.0.0.1" in str(failure.value)  # still says where
        assert "s3cret" not in repr(NativeTable("postgres", url, "things"))


def test_a_float_cursor_with_nan_continues_as_on_the_arrow_path(
    pg_url, make_project, monkeypatch
) -> None:
    """NaN is never the top of a cursor (pyarrow's max skips it): the next load still pulls."""
    project, source = _one_table(
        pg_url,
        make_project,
        monkeypatch,
        [
            "create table seqs (id integer primary key, seq double precision not null)",
            "insert into seqs values (1, 1), (2, 'NaN'), (3, 3)",
        ],
        """
  - name: seqs
    primary_key: [id]
    cursor: seq
    columns:
      - {name: id, type: integer}
      - {name: seq, type: float, nullable: false}
""",
    )

    def first_state(arrow: bool) -> tuple[str, Any, Any]:
        with monkeypatch.context() as patch:
            if arrow:
                _arrow_only(patch)
            with DuckDBWarehouse(":memory:") as warehouse:
                result = land_table(project, warehouse, source, source.table("seqs"), run_id="r")
                state = read_load_state(warehouse, "pgsrc", "seqs")
                return result.path, state.cursor_type, state.cursor_value

    assert first_state(arrow=False)[1:] == first_state(arrow=True)[1:]
    assert first_state(arrow=False)[0] == "native"
    with DuckDBWarehouse(":memory:") as warehouse:
        land_table(project, warehouse, source, source.table("seqs"), run_id="r1")
        with psycopg.connect(pg_url, autocommit=True) as con:
            con.execute("insert into seqs values (4, 4), (5, 5)")
        later = land_table(project, warehouse, source, source.table("seqs"), run_id="r2")
        assert later.rows_landed == 2


def test_wide_rows_get_a_bigger_buffer_pool_and_the_settings_come_back(pg_url) -> None:
    from pipelines.warehouse.base import NativeTable

    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(
            "create table narrow as select g as id, 'x' || g as label from generate_series(1, 50) g"
        )
        con.execute(
            "create table wide as select g as id, repeat('y', 8000) as body from generate_series(1, 50) g"
        )

    def memory(warehouse) -> str:
        return warehouse.scalar("select current_setting('memory_limit')")

    with DuckDBWarehouse(":memory:", memory_limit="3GB") as warehouse:
        before = memory(warehouse)
        with warehouse.native_table(NativeTable("postgres", pg_url, "narrow")) as scan:
            assert scan.columns == [("id", "INTEGER"), ("label", "VARCHAR")]
            assert memory(warehouse) == "122.0 MiB"  # 128 MB
            assert warehouse.scalar("select current_setting('preserve_insertion_order')") is False
        with (
            pytest.raises(RuntimeError, match="body failed"),
            warehouse.native_table(NativeTable("postgres", pg_url, "wide")),
        ):
            assert memory(warehouse) == "488.2 MiB"  # 8 KB rows: 8 x 64 MB
            raise RuntimeError("body failed")
        # back as they were, the source detached, also after the failure
        assert memory(warehouse) == before
        assert warehouse.scalar("select current_setting('preserve_insertion_order')") is True
        attached = (
            "select count(*) from duckdb_databases() where database_name like '_ssot_source%'"
        )
        assert warehouse.scalar(attached) == 0
    with DuckDBWarehouse(":memory:", memory_limit="64MB") as warehouse:
        with warehouse.native_table(NativeTable("postgres", pg_url, "wide")):
            during = memory(warehouse)  # never above the session's own limit
            assert during.endswith(" MiB") and float(during.split()[0]) <= 61.0
        assert memory(warehouse) == "61.0 MiB"


def test_the_engine_switch_sends_a_first_load_through_arrow(pg_things, monkeypatch) -> None:
    from pipelines.errors import ConfigError

    project, _ = pg_things
    monkeypatch.setenv("SSOT_EXTRACT_ENGINE", "arrow")
    with DuckDBWarehouse(":memory:") as warehouse:
        assert _land(project, warehouse).path == "streamed"
    monkeypatch.setenv("SSOT_EXTRACT_ENGINE", "fast")
    with DuckDBWarehouse(":memory:") as warehouse, pytest.raises(ConfigError, match="arrow"):
        _land(project, warehouse)


def test_duplicate_rows_in_a_source_without_a_key_land_once(
    pg_url, make_project, monkeypatch
) -> None:
    """No primary key in the source: the native load finds the repeated version, rolls back,
    and the staged path lands each version once."""
    project, source = _one_table(
        pg_url,
        make_project,
        monkeypatch,
        [
            "create table dups (id integer, label text)",
            "insert into dups values (1, 'a'), (1, 'a'), (2, 'b')",
        ],
        """
  - name: dups
    primary_key: [id]
    columns:
      - {name: id, type: integer}
      - {name: label, type: string}
""",
    )
    with DuckDBWarehouse(":memory:") as warehouse:
        result = land_table(project, warehouse, source, source.table("dups"), run_id="r")
        assert (result.path, result.rows_landed, result.rows_unchanged) == ("staged", 2, 1)
        assert warehouse.row_count(Relation("raw", "pgsrc__dups")) == 2
        assert _outcome_leftovers(warehouse) == []


def test_the_asset_says_how_its_table_was_landed(pg_things, pg_url) -> None:
    import dagster as dg

    from pipelines.assets.models import build_models_asset
    from pipelines.assets.raw import Landing
    from pipelines.assets.resources import WarehouseResource
    from pipelines.modelling import ModelGraph

    project, _ = pg_things
    source = project.sources["pgsrc"]

    def materialized() -> dict[str, Any]:
        # the build step with this table alone to land, and no model
        asset = build_models_asset(
            ModelGraph.of(project), [], landings=[Landing(source, source.table("things"))]
        )
        resource = WarehouseResource(project_dir=str(project.root))
        result = dg.materialize([asset], resources={"warehouse": resource})
        event = result.get_asset_materialization_events()[0]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    first = materialized()
    assert (first["load_path"], first["rows_landed"]) == ("native", 2747)
    assert "native_load" not in first
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute("alter table things add column extra text")
    # raw is not empty any more: an ordinary incremental load, no native note
    second = materialized()
    assert (second["load_path"], second["pull"]) == ("streamed", "incremental")
    assert "native_load" not in second
