from __future__ import annotations

import json
import sqlite3

import pytest

from pipelines.errors import TerminalSourceError, TransientSourceError
from pipelines.extract import connector_for
from pipelines.landing import BATCH_ID_COLUMN, _chunks, _Load, land_table
from pipelines.project import load_project
from pipelines.warehouse.base import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

SOURCE = """
name: app
owner: team@example.com
connection: {url_env: SSOT_TEST_APP_URL, default: 'sqlite:///data/app.sqlite'}
tables:
  - name: users
    primary_key: [id]
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: email, type: string, pattern: '^[^@]+@[^@]+$'}
      - {name: signed_up, type: timestamp}
"""

FILES_SOURCE = """
name: exports
owner: team@example.com
connection: {url_env: SSOT_TEST_EXPORTS_URL, default: 'file://data/exports'}
tables:
  - name: rows
    path: '*.csv'
    primary_key: [id]
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: amount, type: 'decimal(12,2)', min: 0}
"""


def dying_connector(*, batches: int, stable_schema: bool) -> type:
    """A connector class that reads ``batches`` batches of 5 rows, then loses its connection."""
    real = connector_for

    class Dies:
        def __init__(self, *args, **kwargs) -> None:
            self.inner = real(*args, **kwargs)
            self.stable_schema = stable_schema

        def keys_are_unique(self, table):
            return self.inner.keys_are_unique(table)

        def native_table(self, table, pull):
            return None  # its rows must come through read(), which dies

        def read(self, table, **kwargs):
            units = self.inner.read(table, **{**kwargs, "batch_rows": 5})
            for _ in range(batches):
                yield next(units)
            raise TransientSourceError("connection reset by peer")

    return Dies


@pytest.fixture
def app(make_project, monkeypatch):
    monkeypatch.delenv("SSOT_TEST_APP_URL", raising=False)
    monkeypatch.delenv("SSOT_TEST_EXPORTS_URL", raising=False)
    root = make_project({"sources/app.yml": SOURCE, "sources/exports.yml": FILES_SOURCE})
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("create table users (id integer, email text, signed_up text)")
        con.executemany(
            "insert into users values (?, ?, ?)",
            [
                (1, "a@x.com", "2026-01-01T10:00:00+02:00"),
                (2, "not-an-email", "2026-01-01T10:00:00Z"),
                (None, "c@x.com", "2026-01-01 10:00:00"),
                (4, "d@x.com", "yesterday"),
                (5, None, None),
            ],
        )
    project = load_project(root)
    with DuckDBWarehouse(":memory:") as warehouse:
        yield project, warehouse, root


def landed_then_thirty_more(app) -> tuple:
    """The users landed once, then 30 more in the source; (project, warehouse, source, table)."""
    project, warehouse, root = app
    source = project.sources["app"]
    table = source.table("users")
    land_table(project, warehouse, source, table, run_id="r1")
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.executemany(
            "insert into users values (?, ?, ?)", [(i, f"u{i}@x.com", None) for i in range(10, 40)]
        )
    return project, warehouse, source, table


def test_rows_land_or_are_quarantined_and_counts_reconcile(app) -> None:
    project, warehouse, _ = app
    source = project.sources["app"]
    result = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (5, 2, 3)
    landed = warehouse.query("select id, signed_up from raw.app__users order by id").to_pylist()
    assert [r["id"] for r in landed] == [1, 5]
    assert str(landed[0]["signed_up"]) == "2026-01-01 08:00:00+00:00"  # offset text -> UTC
    quarantined = warehouse.query(
        "select record_key, failed_checks, original_row from ssot_meta.quarantine"
    ).to_pylist()
    reasons = {
        json.loads(q["original_row"])["email"]: {c["check"] for c in json.loads(q["failed_checks"])}
        for q in quarantined
    }
    assert reasons == {"not-an-email": {"pattern"}, "c@x.com": {"null_key"}, "d@x.com": {"type"}}
    audit = warehouse.query("select * from ssot_meta.audit").to_pylist()
    assert [(a["asset"], a["rows_in"], a["rows_out"], a["rows_quarantined"]) for a in audit] == [
        ("raw/app/users", 5, 2, 3)
    ]
    assert warehouse.scalar(f"select count(distinct {BATCH_ID_COLUMN}) from raw.app__users") == 1


def test_bad_rows_read_again_are_counted_as_already_quarantined(app) -> None:
    # a table without a cursor is read whole by every load: its bad rows come again each time,
    # are held once, and the load says how many of its quarantined rows were already held
    project, warehouse, root = app
    source = project.sources["app"]
    first = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert (first.rows_quarantined, first.rows_already_quarantined) == (3, 0)
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("insert into users values (6, 'still-not-an-email', null)")
    again = land_table(project, warehouse, source, source.table("users"), run_id="r2")
    assert (again.rows_read, again.rows_landed, again.rows_unchanged) == (6, 0, 2)
    assert (again.rows_quarantined, again.rows_already_quarantined) == (4, 3)
    assert warehouse.scalar("select count(*) from ssot_meta.quarantine") == 4
    details = warehouse.query(
        "select run_id, detail from ssot_meta.audit order by recorded_at"
    ).to_pylist()
    assert "already quarantined" not in details[0]["detail"]
    assert details[1]["detail"].endswith("; already quarantined 3")


def test_a_bad_record_read_twice_in_one_load_is_held_once(app) -> None:
    # the same bad line in two exported files (a re-export) read by one load
    project, warehouse, root = app
    exports = root / "data" / "exports"
    exports.mkdir()
    for day in ("a", "b"):
        (exports / f"{day}.csv").write_text(f"id,amount\n1,-5\n{ord(day)},7\n")
    source = project.sources["exports"]
    result = land_table(project, warehouse, source, source.table("rows"), run_id="r1")
    assert (result.rows_read, result.rows_landed) == (4, 2)
    assert (result.rows_quarantined, result.rows_already_quarantined) == (2, 1)
    assert warehouse.scalar("select count(*) from ssot_meta.quarantine") == 1


def test_a_load_stops_at_its_next_batch_once_the_run_is_cancelled(app, monkeypatch) -> None:
    import threading

    from pipelines.errors import LoadCancelledError

    project, warehouse, source, table = landed_then_thirty_more(app)
    before = warehouse.query("select * from raw.app__users order by id").to_pylist()
    stop = threading.Event()
    real = connector_for
    read_after_stop: list[int] = []

    class Cancelled:
        """The run is cancelled while the load reads its first batch."""

        def __init__(self, *args, **kwargs) -> None:
            self.inner = real(*args, **kwargs)
            self.stable_schema = self.inner.stable_schema

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def read(self, table, **kwargs):
            for i, unit in enumerate(self.inner.read(table, **kwargs)):
                if stop.is_set():
                    read_after_stop.append(i)
                yield unit
                stop.set()

    monkeypatch.setattr("pipelines.landing.connector_for", Cancelled)
    with pytest.raises(LoadCancelledError, match=r"app\.users stopped: the run was cancelled"):
        land_table(project, warehouse, source, table, run_id="r2", batch_rows=5, stop=stop)
    # at most what the read-ahead holds (two queued, one in hand), not all seven batches
    assert len(read_after_stop) <= 3
    assert warehouse.query("select * from raw.app__users order by id").to_pylist() == before
    (outcome,) = warehouse.query(
        "select outcome, detail from ssot_meta.audit where run_id = 'r2'"
    ).to_pylist()
    assert outcome["outcome"] == "failed" and "cancelled" in outcome["detail"]


def test_a_new_source_column_lands_and_is_reported(app) -> None:
    project, warehouse, root = app
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("alter table users add column job_title text")
    source = project.sources["app"]
    result = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert result.extra_columns == ("job_title",)
    assert "job_title" in [name for name, _ in warehouse.columns(Relation("raw", "app__users"))]
    assert "new columns: job_title" in warehouse.scalar("select detail from ssot_meta.audit")


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "staged"])
def test_a_load_failing_mid_stream_rolls_back_everything(app, monkeypatch, streamed) -> None:
    project, warehouse, source, table = landed_then_thirty_more(app)
    state_before = warehouse.query("select * from ssot_meta.load_state").to_pylist()

    # straight into raw, or through the scratch table
    monkeypatch.setattr(
        "pipelines.landing.connector_for", dying_connector(batches=1, stable_schema=streamed)
    )
    with pytest.raises(TransientSourceError, match="connection reset"):
        land_table(project, warehouse, source, table, run_id="r2", batch_rows=5)
    assert warehouse.row_count(Relation("raw", "app__users")) == 2
    assert warehouse.query("select * from ssot_meta.load_state").to_pylist() == state_before
    outcomes = warehouse.query(
        "select outcome, detail from ssot_meta.audit order by recorded_at"
    ).to_pylist()
    assert [o["outcome"] for o in outcomes] == ["success", "failed"]
    assert "connection reset by peer" in outcomes[1]["detail"]


def test_rerunning_a_load_lands_nothing_twice(app) -> None:
    project, warehouse, root = app
    source = project.sources["app"]
    table = source.table("users")
    first = land_table(project, warehouse, source, table, run_id="r1")
    again = land_table(project, warehouse, source, table, run_id="r2", full_refresh=True)
    assert (first.rows_landed, again.rows_landed, again.rows_unchanged) == (2, 0, 2)
    assert warehouse.row_count(Relation("raw", "app__users")) == 2
    # the same bad rows are read again, but each stays in the quarantine once
    assert warehouse.scalar("select count(*) from ssot_meta.quarantine") == 3
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("update users set email = 'new@x.com' where id = 5")
    changed = land_table(project, warehouse, source, table, run_id="r3")
    assert (changed.rows_landed, changed.rows_unchanged) == (1, 1)
    assert warehouse.row_count(Relation("raw", "app__users")) == 3


def test_many_small_files_are_coalesced_and_nothing_is_lost(app) -> None:
    project, warehouse, root = app
    folder = root / "data" / "exports"
    folder.mkdir()
    expected_rows = 0
    for day in range(30):
        lines = [f"{day * 10 + i},{i}.50" for i in range(5)] + ["broken,line,here"]
        if day % 7 == 0:
            lines.append(f"{day * 10 + 9},-1.00")  # negative amount: contract rejects it
        (folder / f"d{day:02}.csv").write_text("id,amount\n" + "\n".join(lines) + "\n")
        expected_rows += len(lines)
    source = project.sources["exports"]
    result = land_table(
        project, warehouse, source, source.table("rows"), run_id="r1", batch_rows=1000
    )
    assert result.rows_read == expected_rows
    assert result.rows_landed == 30 * 5
    assert result.rows_quarantined == 30 + 5
    locations = (
        warehouse.query("select original_row from ssot_meta.quarantine").column(0).to_pylist()
    )
    assert sum('"location": "d00.csv:7"' in row for row in locations) == 1


def test_replay_lands_what_passes_after_a_contract_fix(app, make_project) -> None:
    from pipelines import quarantine

    project, warehouse, root = app
    source = project.sources["app"]
    land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert quarantine.summary(warehouse).column("pending").to_pylist() == [1, 1, 1]

    # loosen the contract: any email text is fine now; bad timestamps and null keys still fail
    path = root / "sources" / "app.yml"
    path.write_text(path.read_text().replace(", pattern: '^[^@]+@[^@]+$'", ""))
    fixed = load_project(root)
    source = fixed.sources["app"]
    result = quarantine.replay(fixed, warehouse, source, source.table("users"))
    assert (result.pending, result.landed, result.still_failing, result.unparseable) == (3, 1, 2, 0)
    emails = warehouse.query("select email from raw.app__users order by id").column(0).to_pylist()
    assert emails == ["a@x.com", "not-an-email", None]
    summary = {
        (r["source"], r["table"], r["check"]): (r["pending"], r["replayed"])
        for r in quarantine.summary(warehouse).to_pylist()
    }
    assert summary[("app", "users", "email:pattern")] == (0, 1)
    # nothing is deleted, and a second replay has nothing new to land
    assert warehouse.scalar("select count(*) from ssot_meta.quarantine") == 3
    again = quarantine.replay(fixed, warehouse, source, source.table("users"))
    assert (again.pending, again.landed) == (2, 0)
    # every replay is in the audit log, even one that landed nothing
    assert warehouse.scalar("select count(*) from ssot_meta.audit where kind = 'replay'") == 2


def test_a_retyped_column_is_an_error_naming_old_and_new_type(app) -> None:
    project, warehouse, root = app
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("alter table users add column score integer")
        con.execute("update users set score = 1")
    source = project.sources["app"]
    land_table(project, warehouse, source, source.table("users"), run_id="r1")
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("update users set score = 'high', email = email || 'x' where id = 1")
        con.execute("update users set score = null where id <> 1")
    with pytest.raises(TerminalSourceError) as info:
        land_table(
            project, warehouse, source, source.table("users"), run_id="r2", full_refresh=True
        )
    message = str(info.value)
    assert "app.yml" in message and "'users'" in message and "'score'" in message
    assert "BIGINT" in message and "VARCHAR" in message


def test_freeze_policy_refuses_a_new_column(app) -> None:
    _, warehouse, root = app
    path = root / "sources" / "app.yml"
    path.write_text(
        path.read_text().replace(
            "    primary_key: [id]", "    primary_key: [id]\n    schema_policy: freeze"
        )
    )
    frozen = load_project(root)
    source = frozen.sources["app"]
    land_table(frozen, warehouse, source, source.table("users"), run_id="r1")
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("alter table users add column nickname text")
        con.execute("update users set nickname = 'n'")
    with pytest.raises(
        TerminalSourceError, match=r"schema_policy is freeze.*new column 'nickname'"
    ):
        land_table(frozen, warehouse, source, source.table("users"), run_id="r2", full_refresh=True)


def test_duplicate_keys_inside_one_batch_all_land_as_versions(app) -> None:
    project, warehouse, root = app
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.executemany(
            "insert into users values (?, ?, ?)",
            [
                (7, "v1@x.com", "2026-01-01T00:00:00Z"),
                (7, "v2@x.com", "2026-01-02T00:00:00Z"),
                (7, "v2@x.com", "2026-01-02T00:00:00Z"),
            ],
        )
    source = project.sources["app"]
    result = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    # two distinct versions of key 7 land, the exact repeat once; nothing is quarantined for it
    versions = (
        warehouse.query("select email from raw.app__users where id = 7 order by email")
        .column(0)
        .to_pylist()
    )
    assert versions == ["v1@x.com", "v2@x.com"]
    assert result.rows_read == 8 and result.rows_quarantined == 3 and result.rows_landed == 4
    # the streamed attempt saw the exact repeat, rolled back and landed through the scratch table
    assert result.path == "staged"


def test_database_rows_stream_straight_into_raw(app) -> None:
    project, warehouse, root = app
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.executemany(
            "insert into users values (?, ?, ?)",
            [(7, "v1@x.com", "2026-01-01T00:00:00Z"), (7, "v2@x.com", "2026-01-02T00:00:00Z")],
        )
    source = project.sources["app"]
    result = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert result.path == "streamed"
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (7, 4, 3)
    assert "streamed" in warehouse.scalar("select detail from ssot_meta.audit")
    # nothing is left behind in ssot_meta but the load's own records
    leftovers = warehouse.query(
        "select table_name from information_schema.tables where table_schema = 'ssot_meta' "
        "and table_name like '\\_%' escape '\\'"
    ).to_pylist()
    assert leftovers == []


def test_file_rows_land_through_the_scratch_table(app) -> None:
    project, warehouse, root = app
    (root / "data" / "exports").mkdir()
    (root / "data" / "exports" / "a.csv").write_text("id,amount\n1,2.50\n")
    source = project.sources["exports"]
    result = land_table(project, warehouse, source, source.table("rows"), run_id="r1")
    assert (result.path, result.rows_landed) == ("staged", 1)


def test_the_quarantine_summary_reads_a_read_only_warehouse_before_any_replay(
    app, tmp_path
) -> None:
    """`ssot quarantine list` reads the published file read-only; the replay columns are only
    added by the first replay, so the summary must not need them."""
    from pipelines import quarantine

    project, _, _ = app
    source = project.sources["app"]
    path = tmp_path / "w.duckdb"
    with DuckDBWarehouse(path) as writer:
        land_table(project, writer, source, source.table("users"), run_id="r1")
    with DuckDBWarehouse(path, read_only=True) as reader:
        assert quarantine.summary(reader).column("pending").to_pylist() == [1, 1, 1]
        assert quarantine.summary(reader).column("replayed").to_pylist() == [0, 0, 0]


def _add_users(root, ids) -> None:
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.executemany(
            "insert into users values (?, ?, ?)",
            [(i, f"u{i}@x.com", "2026-01-01T00:00:00Z") for i in ids],
        )


def _tables_like(warehouse, pattern: str) -> list[str]:
    rows = warehouse.query(
        f"select table_name from duckdb_tables() where table_name like '{pattern}'"
    ).to_pylist()
    return [r["table_name"] for r in rows]


def test_a_first_load_commits_in_chunks_and_puts_the_table_in_place(app, monkeypatch) -> None:
    project, warehouse, root = app
    _add_users(root, range(10, 60))
    monkeypatch.setattr("pipelines.landing.FIRST_LOAD_COMMIT_BATCHES", 2)
    released = []
    monkeypatch.setattr(warehouse, "release_cache", lambda: released.append(1))
    source = project.sources["app"]
    result = land_table(
        project, warehouse, source, source.table("users"), run_id="r1", batch_rows=5
    )
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (55, 52, 3)
    assert warehouse.row_count(Relation("raw", "app__users")) == 52
    assert len(released) >= 5  # 55 rows read in batches of 5, committed two batches at a time
    assert _tables_like(warehouse, "%first_load%") == []
    assert warehouse.scalar("select count(*) from ssot_meta.load_state") == 1
    # the next load compares with what landed: nothing twice
    again = land_table(project, warehouse, source, source.table("users"), run_id="r2", batch_rows=5)
    assert again.rows_landed == 0


def test_a_first_load_failing_after_some_commits_leaves_no_raw_table(app, monkeypatch) -> None:
    project, warehouse, root = app
    _add_users(root, range(10, 60))
    monkeypatch.setattr("pipelines.landing.FIRST_LOAD_COMMIT_BATCHES", 2)
    monkeypatch.setattr(
        "pipelines.landing.connector_for", dying_connector(batches=5, stable_schema=True)
    )
    released = []
    monkeypatch.setattr(warehouse, "release_cache", lambda: released.append(1))
    source = project.sources["app"]
    with pytest.raises(TransientSourceError, match="connection reset"):
        land_table(project, warehouse, source, source.table("users"), run_id="r1", batch_rows=5)
    assert len(released) == 2  # two parts of two batches had been committed
    assert not warehouse.exists(Relation("raw", "app__users"))
    assert _tables_like(warehouse, "%first_load%") == []
    assert not warehouse.exists(Relation("ssot_meta", "load_state")) or not warehouse.scalar(
        "select count(*) from ssot_meta.load_state"
    )
    assert warehouse.scalar("select outcome from ssot_meta.audit") == "failed"


def test_a_first_load_into_an_empty_raw_table_keeps_its_columns(app) -> None:
    project, warehouse, root = app
    source = project.sources["app"]
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("alter table users add column job_title text")
        con.execute("delete from users")  # nothing to land: raw is created empty
    land_table(project, warehouse, source, source.table("users"), run_id="r1")
    raw = Relation("raw", "app__users")
    assert warehouse.exists(raw) and warehouse.row_count(raw) == 0
    columns = [name for name, _ in warehouse.columns(raw)]
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute(
            "insert into users values (1, 'a@x.com', null, 'cook'), (2, 'b@x.com', null, null)"
        )
    result = land_table(project, warehouse, source, source.table("users"), run_id="r2")
    assert (result.rows_landed, result.extra_columns) == (2, ("job_title",))
    assert [name for name, _ in warehouse.columns(raw)] == [*columns, "job_title"]
    assert warehouse.scalar("select job_title from raw.app__users where id = 1") == "cook"


def test_a_first_load_failing_in_its_last_transaction_leaves_raw_as_it_was(
    app, monkeypatch
) -> None:
    project, warehouse, root = app
    source = project.sources["app"]
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("delete from users")
    land_table(project, warehouse, source, source.table("users"), run_id="r0")  # raw: empty
    raw = Relation("raw", "app__users")
    columns = warehouse.columns(raw)
    state = warehouse.query("select * from ssot_meta.load_state").to_pylist()
    _add_users(root, range(10, 30))
    real_finish = _Load._finish

    def finish_then_fail(self, *args, **kwargs):
        real_finish(self, *args, **kwargs)  # raw has been swapped by now
        raise RuntimeError("disk full")

    monkeypatch.setattr(_Load, "_finish", finish_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        land_table(project, warehouse, source, source.table("users"), run_id="r1", batch_rows=5)
    assert warehouse.columns(raw) == columns and warehouse.row_count(raw) == 0
    assert warehouse.query("select * from ssot_meta.load_state").to_pylist() == state
    assert _tables_like(warehouse, "%first_load%") == []
    monkeypatch.setattr(_Load, "_finish", real_finish)
    result = land_table(project, warehouse, source, source.table("users"), run_id="r2")
    assert result.rows_landed == 20 and warehouse.row_count(raw) == 20


@pytest.mark.parametrize(("batches", "size"), [(0, 3), (1, 1), (5, 1), (6, 3), (7, 3)])
def test_chunks_split_batches_into_runs_without_losing_one(batches, size) -> None:
    runs = [list(run) for run in _chunks(iter(range(batches)), size)]
    assert [x for run in runs for x in run] == list(range(batches))
    assert all(len(run) == size for run in runs[:-1])
    assert not runs or 1 <= len(runs[-1]) <= size


def test_a_fresh_table_left_by_a_killed_first_load_is_dropped_by_the_next_load(app) -> None:
    project, warehouse, _ = app
    leftover = Relation("raw", "_ssot_first_load__app__users")
    warehouse.replace_with_select(leftover, "select 1 as half_written")
    source = project.sources["app"]
    result = land_table(project, warehouse, source, source.table("users"), run_id="r1")
    assert result.rows_landed == 2
    assert not warehouse.exists(leftover)


KEYED = SOURCE.replace(
    "    primary_key: [id]\n", "    primary_key: [id]\n    delete_detection: key_diff\n"
)


def test_versions_landed_before_a_key_column_was_added_are_tombstoned(
    make_project, monkeypatch
) -> None:
    """The key gains a column: the rows landed before hold NULL in it, and the source no
    longer has those keys, so each gets its tombstone (NULL key parts compare as equal)."""
    monkeypatch.delenv("SSOT_TEST_APP_URL", raising=False)
    root = make_project({"sources/app.yml": KEYED})
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("create table users (id integer, email text, signed_up text)")
        con.executemany("insert into users values (?, ?, null)", [(1, "a@x"), (2, "b@x")])
    with DuckDBWarehouse(":memory:") as warehouse:

        def land(run_id: str) -> None:
            project = load_project(root)
            source = project.sources["app"]
            land_table(project, warehouse, source, source.table("users"), run_id=run_id)

        land("r1")
        with sqlite3.connect(root / "data" / "app.sqlite") as con:
            con.execute("alter table users add column tenant text")
            con.execute("update users set tenant = 'eu'")
        (root / "sources" / "app.yml").write_text(
            KEYED.replace("primary_key: [id]", "primary_key: [tenant, id]")
            + "      - {name: tenant, type: string, nullable: false}\n"
        )
        land("r2")
        latest = warehouse.query(
            "select tenant, id, _ssot_op from raw.app__users qualify row_number() over "
            "(partition by tenant, id order by _ssot_loaded_at desc) = 1 order by all"
        ).to_pylist()
    assert latest == [
        {"tenant": "eu", "id": 1, "_ssot_op": "upsert"},
        {"tenant": "eu", "id": 2, "_ssot_op": "upsert"},
        {"tenant": None, "id": 1, "_ssot_op": "delete"},
        {"tenant": None, "id": 2, "_ssot_op": "delete"},
    ]


def test_a_load_says_when_it_wrote_and_the_cursor_it_stored(make_project, monkeypatch) -> None:
    """What the freshness check is told: the load's timestamp only when it wrote rows, and the
    cursor as stored (the highest value read so far, kept by a load that reads nothing new)."""
    monkeypatch.delenv("SSOT_TEST_APP_URL", raising=False)
    root = make_project(
        {
            "sources/app.yml": SOURCE.replace(
                "primary_key: [id]", "primary_key: [id]\n    cursor: signed_up"
            )
        }
    )
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("create table users (id integer, email text, signed_up text)")
        con.executemany(
            "insert into users values (?, ?, ?)",
            [(1, "a@x.com", "2026-01-01T10:00:00Z"), (2, "b@x.com", "2026-01-03T08:30:00Z")],
        )
    project = load_project(root)
    source = project.sources["app"]
    with DuckDBWarehouse(":memory:") as warehouse:
        first = land_table(project, warehouse, source, source.table("users"), run_id="r1")
        raw = "raw.app__users"
        assert first.rows_landed == 2
        assert first.loaded_at == warehouse.scalar(f"select max(_ssot_loaded_at) from {raw}")
        assert first.cursor == warehouse.scalar(f"select max(signed_up) from {raw}")
        again = land_table(project, warehouse, source, source.table("users"), run_id="r2")
        assert again.rows_landed == 0 and again.loaded_at is None
        assert again.cursor == first.cursor
