"""One suite for every warehouse backend (parametrized by the `warehouse` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import xxhash
from sqlglot import exp

from pipelines.errors import TerminalWarehouseError, TransientSourceError
from pipelines.warehouse.base import Relation, Warehouse, merge_statement
from pipelines.warehouse.duckdb import (
    INCREMENT_MEMORY_MIN_MB,
    INCREMENT_MEMORY_PER_THREAD_MB,
    DuckDBWarehouse,
    _megabytes,
)

BACKENDS = ["duckdb"]


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        session = DuckDBWarehouse(tmp_path / "w.duckdb")
    with session:
        yield session


SCHEMA = pa.schema(
    [("id", pa.int64()), ("amount", pa.decimal128(12, 2)), ("at", pa.timestamp("us", tz="UTC"))]
)


def batches(n: int, size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, n, size):
        ids = list(range(start, min(n, start + size)))
        yield pa.record_batch(
            [
                pa.array(ids),
                pa.array([None] * len(ids), pa.decimal128(12, 2)),
                pa.array([0] * len(ids), pa.timestamp("us", tz="UTC")),
            ],
            schema=SCHEMA,
        )


def test_replace_from_arrow_streams_and_replaces(warehouse: Warehouse) -> None:
    rel = Relation("raw", "things")
    assert warehouse.replace_from_arrow(rel, SCHEMA, batches(25, 10)) == 25
    assert warehouse.row_count(rel) == 25
    assert warehouse.replace_from_arrow(rel, SCHEMA, batches(3, 10)) == 3
    assert warehouse.row_count(rel) == 3
    assert [name for name, _ in warehouse.columns(rel)] == ["id", "amount", "at"]


def test_append_creates_then_appends(warehouse: Warehouse) -> None:
    rel = Relation("ssot_meta", "log")
    warehouse.append_arrow(rel, pa.table({"a": [1, 2]}))
    warehouse.append_arrow(rel, pa.table({"a": [3]}))
    assert warehouse.scalar("select sum(a) from ssot_meta.log") == 6


def test_failed_transaction_leaves_the_old_table(warehouse: Warehouse) -> None:
    rel = Relation("raw", "things")
    warehouse.replace_from_arrow(rel, SCHEMA, batches(5, 10))

    def exploding() -> Iterator[pa.RecordBatch]:
        yield from batches(2, 10)
        raise TransientSourceError("source died mid-stream")

    # the producer's own error comes out (a transient source error stays retryable)
    with pytest.raises(TransientSourceError, match="source died"), warehouse.transaction():
        warehouse.replace_from_arrow(rel, SCHEMA, exploding())
    assert warehouse.row_count(rel) == 5


def test_replace_with_select_view_and_table(warehouse: Warehouse) -> None:
    src = Relation("raw", "things")
    warehouse.replace_from_arrow(src, SCHEMA, batches(4, 10))
    view = Relation("staging", "v")
    warehouse.replace_with_select(
        view, exp.select("id").from_(src.to_table()).where("id > 1"), kind="VIEW"
    )
    assert warehouse.row_count(view) == 2
    assert warehouse.exists(view)
    warehouse.drop(view, kind="VIEW")
    assert not warehouse.exists(view)


def test_errors_are_terminal_and_carry_the_sql(warehouse: Warehouse) -> None:
    with pytest.raises(TerminalWarehouseError, match="select \\* from missing_table"):
        warehouse.execute("select * from missing_table")


def test_timestamps_are_utc_whatever_the_machine_zone(warehouse: Warehouse) -> None:
    value = warehouse.scalar("select cast(timestamptz '2026-01-01 10:00:00+02:00' as timestamp)")
    assert str(value) == "2026-01-01 08:00:00"


def test_second_writer_gets_a_transient_error(tmp_path: Path) -> None:
    # DuckDB allows one writing process per file; another process's open is a lock conflict.
    import subprocess
    import sys

    path = tmp_path / "locked.duckdb"
    with DuckDBWarehouse(path):
        code = (
            "from pipelines.warehouse.duckdb import DuckDBWarehouse\n"
            "from pipelines.errors import TransientWarehouseError\n"
            f"try:\n    DuckDBWarehouse({str(path)!r})\nexcept TransientWarehouseError:\n    raise SystemExit(7)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
    assert result.returncode == 7, result.stderr


def test_insert_row_creates_the_table_then_appends_typed_values(warehouse) -> None:
    from datetime import UTC, datetime

    schema = pa.schema(
        [
            ("name", pa.string()),
            ("n", pa.int64()),
            ("ratio", pa.float64()),
            ("ok", pa.bool_()),
            ("at", pa.timestamp("us", tz="UTC")),
        ]
    )
    table = Relation("ssot_meta", "rows")
    first = {
        "name": "it's",
        "n": 1,
        "ratio": 1e-05,
        "ok": True,
        "at": datetime(2026, 1, 2, tzinfo=UTC),
    }
    second = {"name": None, "n": 2, "ratio": 0.5, "ok": False, "at": None}
    warehouse.insert_row(table, schema, first)
    warehouse.insert_row(table, schema, second)
    assert warehouse.query(exp.select("*").from_(table.to_table()).order_by("n")).to_pylist() == [
        first,
        second,
    ]


def test_insert_rows_writes_awkward_values_exactly(warehouse) -> None:
    from datetime import UTC, datetime

    schema = pa.schema(
        [("k", pa.string()), ("x", pa.float64()), ("at", pa.timestamp("us", tz="UTC"))]
    )
    table = Relation("ssot_meta", "awkward")
    warehouse.insert_rows(table, schema, [{"k": "first", "x": 1.0, "at": None}])  # creates it
    rows = [
        {
            "k": "quote ' and \\ backslash",
            "x": float("inf"),
            "at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        },
        {"k": "naive time is UTC", "x": -0.1, "at": datetime(2026, 1, 2, 3, 4, 5)},
        {"k": "nan", "x": float("nan"), "at": None},
    ]
    warehouse.insert_rows(table, schema, rows)
    got = warehouse.query(exp.select("*").from_(table.to_table()).order_by("k")).to_pylist()
    by_key = {row["k"]: row for row in got}
    assert by_key["quote ' and \\ backslash"]["x"] == float("inf")
    assert by_key["quote ' and \\ backslash"]["at"] == datetime(
        2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC
    )
    assert by_key["naive time is UTC"]["at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert by_key["naive time is UTC"]["x"] == -0.1
    assert by_key["nan"]["x"] != by_key["nan"]["x"]  # NaN
    assert len(got) == 4


def test_a_bookkeeping_value_of_an_unknown_type_is_refused(warehouse) -> None:
    schema = pa.schema([("k", pa.string())])
    table = Relation("ssot_meta", "typed")
    warehouse.insert_rows(table, schema, [{"k": "first"}])
    with pytest.raises(TypeError, match="no SQL literal for a dict"):
        warehouse.insert_rows(table, schema, [{"k": {"not": "text"}}])


def test_replace_rows_replaces_by_key_and_appends_new_keys(warehouse) -> None:
    schema = pa.schema([("model", pa.string()), ("sql", pa.string())])
    table = Relation("ssot_meta", "state")
    warehouse.replace_rows(
        table, schema, "model", [{"model": "a", "sql": "1"}, {"model": "b", "sql": "1"}]
    )
    warehouse.replace_rows(
        table, schema, "model", [{"model": "a", "sql": "2"}, {"model": "c's", "sql": "2"}]
    )
    got = warehouse.query(exp.select("*").from_(table.to_table()).order_by("model")).to_pylist()
    assert got == [
        {"model": "a", "sql": "2"},
        {"model": "b", "sql": "1"},
        {"model": "c's", "sql": "2"},
    ]


def test_exists_follows_creates_drops_and_rollbacks(warehouse) -> None:
    rel = Relation("conformed", "t")
    other = Relation("conformed", "v")
    assert not warehouse.exists(rel)
    warehouse.replace_with_select(rel, exp.select(exp.Literal.number(1).as_("x")))
    assert warehouse.exists(rel)
    warehouse.drop(rel)
    assert not warehouse.exists(rel)
    # a table created and seen inside a rolled-back transaction is gone afterwards
    with pytest.raises(RuntimeError), warehouse.transaction():
        warehouse.replace_with_select(other, exp.select(exp.Literal.number(1).as_("x")))
        assert warehouse.exists(other)
        raise RuntimeError("roll back")
    assert not warehouse.exists(other)
    # seen inside a committed transaction, then dropped by a statement written as text
    with warehouse.transaction():
        warehouse.replace_with_select(other, exp.select(exp.Literal.number(1).as_("x")))
        assert warehouse.exists(other)
    assert warehouse.exists(other)
    warehouse.execute('DROP TABLE "conformed"."v"')
    assert not warehouse.exists(other)
    # a view whose table is gone still exists (it can be dropped and replaced)
    warehouse.replace_with_select(rel, exp.select(exp.Literal.number(1).as_("x")))
    view = Relation("conformed", "over_t")
    warehouse.replace_with_select(view, exp.select("x").from_(rel.to_table()), kind="VIEW")
    warehouse.drop(rel)
    assert warehouse.exists(view) and warehouse.is_view(view)


def test_a_dropped_table_is_forgotten_alone(tmp_path, monkeypatch) -> None:
    one = exp.select(exp.Literal.number(1).as_("x"))
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        kept, scratch, other = (Relation("ssot_meta", n) for n in ("audit", "_scratch", "log"))
        for relation in (kept, scratch, other):
            warehouse.replace_with_select(relation, one)
            assert warehouse.exists(relation)
        asked: list[Relation] = []
        describe = warehouse._describe
        monkeypatch.setattr(warehouse, "_describe", lambda r: asked.append(r) or describe(r))
        warehouse.drop(scratch)
        # what is known of the other tables still holds: no catalog lookup
        assert warehouse.exists(kept) and warehouse.exists(other) and asked == []
        assert not warehouse.exists(scratch) and asked == [scratch]
        # a drop naming the table in another case forgets it too
        warehouse.drop(Relation("SSOT_META", "LOG"))
        assert not warehouse.exists(other)
        # a drop written as text forgets everything
        asked.clear()
        warehouse.execute('DROP TABLE IF EXISTS "ssot_meta"."nothing"')
        assert warehouse.exists(kept) and asked == [kept]
        # inside a transaction: what it created and dropped is forgotten, the rest stays
        fresh = Relation("ssot_meta", "fresh")
        with warehouse.transaction():
            warehouse.replace_with_select(fresh, one)
            warehouse.replace_with_select(scratch, one)
            assert warehouse.exists(fresh) and warehouse.exists(scratch)
            asked.clear()
            warehouse.drop(scratch)
            assert warehouse.exists(fresh) and warehouse.exists(kept) and asked == []
            assert not warehouse.exists(scratch)
        assert warehouse.exists(fresh) and not warehouse.exists(scratch)


def test_release_cache_keeps_the_configured_memory_limit(tmp_path) -> None:
    with DuckDBWarehouse(tmp_path / "w.duckdb", memory_limit="300MB") as warehouse:
        before = warehouse.scalar("select current_setting('memory_limit')")
        warehouse.replace_with_select(
            Relation("raw", "t"),
            exp.select("*").from_(exp.func("range", exp.Literal.number(100000))),
        )
        warehouse.release_cache()
        assert warehouse.scalar("select current_setting('memory_limit')") == before
    with DuckDBWarehouse(tmp_path / "v.duckdb") as warehouse:
        default = warehouse.scalar("select current_setting('memory_limit')")
        warehouse.release_cache()
        assert warehouse.scalar("select current_setting('memory_limit')") == default


def test_increments_get_a_bounded_buffer_pool_that_whole_builds_lift(tmp_path) -> None:
    setting = "select current_setting('memory_limit')"
    with DuckDBWarehouse(
        tmp_path / "w.duckdb", memory_limit="4GB", threads=2, builders=2
    ) as warehouse:
        configured = warehouse.scalar(setting)
        assert not warehouse.memory_bounded()
        with warehouse.memory_for_increments(), warehouse.builders() as (first, second):
            bounded = warehouse.scalar(setting)
            # 2 threads: the least pool (DuckDB shows it in MiB, rounded)
            assert _megabytes(str(bounded)) == pytest.approx(INCREMENT_MEMORY_MIN_MB, rel=0.01)
            assert first.memory_bounded() and second.memory_bounded()
            with second.memory_for_whole_build():
                assert first.scalar(setting) == configured  # the database's one setting
                assert not first.memory_bounded()
                with first.memory_for_whole_build():
                    assert warehouse.scalar(setting) == configured
                # lifted until the last whole build ends
                assert warehouse.scalar(setting) == configured
            assert warehouse.scalar(setting) == bounded
            assert first.memory_bounded()
        assert warehouse.scalar(setting) == configured
        assert not warehouse.memory_bounded()
        with warehouse.memory_for_whole_build():  # no bound: nothing to lift
            assert warehouse.scalar(setting) == configured
        assert warehouse.scalar(setting) == configured
    # more threads, a bigger pool; never more than the session's own limit
    with (
        DuckDBWarehouse(tmp_path / "v.duckdb", memory_limit="4GB", threads=8) as warehouse,
        warehouse.memory_for_increments(),
    ):
        bounded = warehouse.scalar(setting)
        assert _megabytes(str(bounded)) == pytest.approx(
            8 * INCREMENT_MEMORY_PER_THREAD_MB, rel=0.01
        )
    with DuckDBWarehouse(tmp_path / "x.duckdb", memory_limit="300MB") as warehouse:
        configured = warehouse.scalar(setting)
        with warehouse.memory_for_increments():
            assert warehouse.scalar(setting) == configured
            assert not warehouse.memory_bounded()  # a retry would get no more


def test_one_writing_session_per_file_in_a_process(tmp_path) -> None:
    first = DuckDBWarehouse(tmp_path / "w.duckdb")
    with pytest.raises(TerminalWarehouseError, match="already open for writing in this process"):
        DuckDBWarehouse(tmp_path / "w.duckdb")
    with DuckDBWarehouse(tmp_path / "other.duckdb"):
        pass  # another file is fine
    first.close()
    with DuckDBWarehouse(tmp_path / "w.duckdb") as second:  # once closed, the file is free
        assert second.scalar("select 1") == 1


# -- publishing for readers (DuckDB: one writer per file, so readers open a published copy) ---


def test_readers_open_the_published_copy_while_the_build_file_is_written(tmp_path) -> None:
    import duckdb

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    session = DuckDBWarehouse(build, publish_to=published)
    session.execute("create table t as select 1 as v")
    assert session.publish() == str(published)

    session = DuckDBWarehouse(build, publish_to=published)  # the next run
    session.execute("create or replace table t as select 2 as v")
    with duckdb.connect(str(published), read_only=True) as reader:
        # the run is writing the build file; readers see the last published version
        assert reader.execute("select v from t").fetchall() == [(1,)]
        session.publish()
        # a reader that had the old copy open keeps reading it, whole
        assert reader.execute("select v from t").fetchall() == [(1,)]
    with duckdb.connect(str(published), read_only=True) as reader:
        assert reader.execute("select v from t").fetchall() == [(2,)]
    # the version readers saw before is kept as a spare for the next publish, beside the
    # digests of the copies' stretches
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".w.duckdb.digests",
        ".w.duckdb.spare",
        "w.build.duckdb",
        "w.duckdb",
    ]


def test_a_publish_rewrites_the_spare_copy_only_when_no_reader_has_it(tmp_path) -> None:
    import duckdb

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    spare = tmp_path / ".w.duckdb.spare"

    def publish(value: int) -> None:
        session = DuckDBWarehouse(build, publish_to=published)
        session.execute(f"create or replace table t as select {value} as v")
        session.publish()

    publish(1)
    publish(2)  # what readers saw (1) is kept as the spare
    assert spare.exists()
    with duckdb.connect(str(spare), read_only=True) as reader:  # still open: not touched
        held = spare.stat().st_ino
        publish(3)
        assert reader.execute("select v from t").fetchall() == [(1,)]
        assert published.stat().st_ino != held  # a fresh copy was published instead
    # no reader now: the spare (2) is brought up to date and becomes the published file
    held = spare.stat().st_ino
    publish(4)
    assert published.stat().st_ino == held
    assert published.read_bytes() == build.read_bytes()
    with duckdb.connect(str(published), read_only=True) as reader:
        assert reader.execute("select v from t").fetchall() == [(4,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".w.duckdb.digests",
        ".w.duckdb.spare",
        "w.build.duckdb",
        "w.duckdb",
    ]


def test_a_spare_is_rewritten_where_it_differs_in_every_stretch(tmp_path, monkeypatch) -> None:
    """Stretches are compared by several threads: each differing one is rewritten, the last
    partial one too, and a longer spare is cut to the build file's size."""
    import os

    import pipelines.warehouse.duckdb as backend

    monkeypatch.setattr(backend, "_SYNC_CHUNK", 4096)
    build, spare = tmp_path / "b", tmp_path / "s"
    data = bytearray(os.urandom(4096 * 9 + 100))
    build.write_bytes(bytes(data))
    for stretch in (1, 2, 7):
        data[stretch * 4096 + 5] ^= 0xFF
    data[-1] ^= 0xFF  # in the last, partial stretch
    spare.write_bytes(bytes(data) + b"tail")  # differs in stretches 1, 2, 7, 9 and is longer
    refreshed = backend._refresh_spare(build, spare)
    assert refreshed is not None
    assert spare.read_bytes() == build.read_bytes()
    whole = build.read_bytes()
    assert refreshed[0] == [
        xxhash.xxh3_128_digest(whole[start : start + 4096]) for start in range(0, len(whole), 4096)
    ]


def test_a_spare_with_recorded_digests_is_not_read(tmp_path, monkeypatch) -> None:
    """With the digests of the spare's stretches, a stretch is rewritten where the build file's
    digest differs from the recorded one: the spare's own bytes are not compared (here a
    stretch the record says holds the build file's bytes is left as it is), and a recorded
    list shorter than the file rewrites the rest. The record is trusted only for the spare's
    identity as recorded."""
    import os

    import pipelines.warehouse.duckdb as backend

    monkeypatch.setattr(backend, "_SYNC_CHUNK", 4096)
    build, spare = tmp_path / "b", tmp_path / "s"
    new = os.urandom(4096 * 6)
    build.write_bytes(new)
    spare.write_bytes(bytes(4096 * 6))
    recorded = [xxhash.xxh3_128_digest(new[i : i + 4096]) for i in range(0, 4096 * 4, 4096)]
    recorded[1] = b"another digest"
    identity = backend._identity(spare.stat())
    refreshed = backend._refresh_spare(build, spare, recorded, identity)
    assert refreshed is not None
    held = spare.read_bytes()
    for stretch in (0, 2, 3):  # recorded as equal: trusted, not rewritten
        assert held[stretch * 4096 : (stretch + 1) * 4096] == bytes(4096)
    for stretch in (1, 4, 5):  # recorded otherwise, or not recorded: rewritten
        assert (
            held[stretch * 4096 : (stretch + 1) * 4096]
            == new[stretch * 4096 : (stretch + 1) * 4096]
        )
    # a record for another identity (the file was written since) is not used: bytes compared
    spare.write_bytes(bytes(4096 * 6))
    assert backend._refresh_spare(build, spare, recorded, identity) is not None
    assert spare.read_bytes() == new


def test_publishes_keep_digests_of_both_copies_and_distrust_a_changed_spare(
    tmp_path, monkeypatch
) -> None:
    import os

    import duckdb

    import pipelines.warehouse.duckdb as backend

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    spare, store = tmp_path / ".w.duckdb.spare", tmp_path / ".w.duckdb.digests"
    given: list[object] = []
    during: list[object] = []  # what to do to the published file while the spare is refreshed
    refresh = backend._refresh_spare

    def watched(build_file, spare_file, known=None, identity=None):
        # the record is gone, on disk, before the spare may change
        assert not store.exists()
        given.append(known)
        for act in during:
            act()
        return refresh(build_file, spare_file, known, identity)

    monkeypatch.setattr(backend, "_refresh_spare", watched)
    versions = iter(range(1, 100))

    def publish() -> None:
        session = DuckDBWarehouse(build, publish_to=published)
        session.execute(f"create or replace table t as select {next(versions)} as v")
        session.publish()
        assert published.read_bytes() == build.read_bytes()

    def recorded() -> set[str]:
        return set(backend._read_digests(store))

    publish()  # the first publish copies the build file twice, the spare with its digests
    assert recorded() == {str(spare.stat().st_ino)}
    publish()  # the spare's record is used; the published copy's digests recorded
    assert given[-1] is not None
    assert recorded() == {str(published.stat().st_ino)}
    publish()  # the spare had no record yet; now both copies have one
    assert given[-1] is None
    assert recorded() == {str(published.stat().st_ino), str(spare.stat().st_ino)}
    publish()  # the spare's record is used instead of reading it
    assert given[-1] is not None

    # a spare written since its record was made is compared byte by byte again
    with spare.open("r+b") as handle:
        handle.write(b"\0" * 64)
    publish()
    assert given[-1] is None

    # ... even when its modification time is set back (its change time still moved)
    publish()
    stat = spare.stat()
    with spare.open("r+b") as handle:
        handle.write(b"\0" * 64)
    os.utime(spare, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    publish()
    assert given[-1] is None

    # the published copy written to while a publish runs (a read-write connection, say)
    # gets no record: when it is the spare, it is compared byte by byte
    publish()

    def scribble() -> None:
        with published.open("r+b") as handle:
            handle.write(b"\0" * 64)

    during.append(scribble)
    publish()
    during.clear()
    assert str(spare.stat().st_ino) not in recorded()
    publish()
    assert given[-1] is None
    with duckdb.connect(str(published), read_only=True) as reader:
        assert reader.execute("select v from t").fetchall() == [(next(versions) - 1,)]


def test_a_first_publish_leaves_a_spare_held_open_as_it_was(tmp_path) -> None:
    """With the published file gone, a publish copies the build file afresh and prepares a new
    spare: a reader holding the old spare keeps reading what it held, and the new spare gets
    the digests of its stretches."""
    import os

    import pipelines.warehouse.duckdb as backend

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    spare, store = tmp_path / ".w.duckdb.spare", tmp_path / ".w.duckdb.digests"

    def publish(value: int) -> None:
        session = DuckDBWarehouse(build, publish_to=published)
        session.execute(f"create or replace table t as select {value} as v")
        session.publish()

    publish(1)
    publish(2)  # what readers saw (1) is now the spare
    before = spare.read_bytes()
    published.unlink()  # someone removed the published copy
    reader = os.open(spare, os.O_RDONLY)  # a reader of the previous version
    try:
        publish(3)
        assert os.pread(reader, len(before) + 1, 0) == before
        assert os.fstat(reader).st_ino != spare.stat().st_ino
    finally:
        os.close(reader)
    assert published.read_bytes() == spare.read_bytes() == build.read_bytes()
    assert str(spare.stat().st_ino) in backend._read_digests(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".w.duckdb.digests",
        ".w.duckdb.spare",
        "w.build.duckdb",
        "w.duckdb",
    ]


def test_a_spare_any_process_holds_open_is_never_rewritten(tmp_path) -> None:
    from pipelines.warehouse.duckdb import _open_elsewhere

    spare = tmp_path / "s.duckdb"
    spare.write_bytes(b"x")
    assert not _open_elsewhere(spare)
    # an open descriptor without any lock (a copy in progress, a reader whose lock went away
    # when its process closed another descriptor of the file) keeps the spare as it is
    with spare.open("rb"):
        assert _open_elsewhere(spare)


def test_publish_waits_for_a_thread_that_holds_the_session(tmp_path) -> None:
    import threading
    import time

    warehouse = DuckDBWarehouse(tmp_path / "b.duckdb", publish_to=tmp_path / "p.duckdb")
    order: list[str] = []
    holding = threading.Event()

    def build() -> None:
        with warehouse.exclusive:
            holding.set()
            time.sleep(0.3)
            warehouse.replace_with_select(
                Relation("marts", "late"), exp.select(exp.Literal.number(1).as_("x"))
            )
            order.append("built")

    worker = threading.Thread(target=build)
    worker.start()
    assert holding.wait(5)
    warehouse.publish()
    order.append("published")
    worker.join()
    assert order == ["built", "published"]
    with DuckDBWarehouse(tmp_path / "p.duckdb", read_only=True) as reader:
        assert reader.exists(Relation("marts", "late"))  # what the thread built was published


def test_a_table_is_compacted_when_a_fifth_of_its_rows_are_deleted_ones(tmp_path) -> None:
    """DuckDB's own vacuum, which rewrote every table an incremental run touched at each
    checkpoint, is off; a publish rewrites only a table whose deleted rows reached the share."""
    import duckdb

    from pipelines.warehouse.duckdb import COMPACT_DEAD_SHARE, COMPACT_MIN_ROWS

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    facts, small = Relation("marts", "facts"), Relation("marts", "small")
    rows = 2 * COMPACT_MIN_ROWS

    def session() -> DuckDBWarehouse:
        return DuckDBWarehouse(build, publish_to=published)

    def replace_share(warehouse: DuckDBWarehouse, share: float, salt: int) -> None:
        # an incremental merge: some rows deleted all over the table, their new versions appended
        step = round(1 / share)
        warehouse.execute(f"delete from marts.facts where id % {step} = {salt}")
        warehouse.execute(
            f"insert into marts.facts select id + {rows * (salt + 1)}, 'v' || id "
            f"from range({rows // step}) r(id)"
        )

    def stored(path: Path, relation: Relation) -> tuple[int, int]:
        with duckdb.connect(str(path), read_only=True) as reader:
            total = reader.execute(
                f"select estimated_size from duckdb_tables() where table_name = '{relation.name}'"
            ).fetchone()
            live = reader.execute(f"select count(*) from {relation}").fetchone()
        assert total is not None and live is not None
        return int(total[0]), int(live[0])

    warehouse = session()
    warehouse.execute(
        f"create schema marts; create table marts.facts as select id, 'v' || id as v from range({rows}) r(id)"
    )
    warehouse.execute("create table marts.small as select id from range(1000) r(id)")
    warehouse.annotate(facts, "The facts.", {"owner": "team"})
    warehouse.publish()
    warehouse = session()
    replace_share(warehouse, 0.1, 0)
    warehouse.execute("delete from marts.small where id < 900")  # too small to bother
    assert warehouse.dead_rows()[facts] == (rows + rows // 10, rows // 10)
    assert small not in warehouse.dead_rows()
    warehouse.publish()
    assert warehouse.compacted == []
    total, live = stored(published, facts)
    assert total - live == rows // 10  # the deleted rows are still stored, as they would not be
    # with DuckDB's vacuum at the checkpoint
    warehouse = session()
    replace_share(warehouse, 0.25, 1)  # more than 20 % of the stored rows are deleted now
    dead = warehouse.dead_rows()[facts]
    assert dead[1] >= COMPACT_DEAD_SHARE * dead[0]
    order = warehouse.query("select id from marts.facts order by rowid").column("id").to_pylist()
    warehouse.publish()
    assert warehouse.compacted == [facts]
    assert stored(published, facts) == (len(order), len(order))
    with duckdb.connect(str(published), read_only=True) as reader:
        # the same rows in the same order, and the table's description kept
        assert [
            r[0] for r in reader.execute("select id from marts.facts order by rowid").fetchall()
        ] == order
        comment = reader.execute(
            "select comment from duckdb_tables() where table_name = 'facts'"
        ).fetchone()
        assert comment == ("The facts.\nowner=team",)
        assert reader.execute("select count(*) from marts.small").fetchone() == (100,)


def test_compacting_skips_tables_with_constraints_and_never_blocks_a_publish(
    tmp_path, monkeypatch
) -> None:
    import duckdb

    from pipelines.errors import WarehouseError
    from pipelines.warehouse.duckdb import COMPACT_MIN_ROWS

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    rows = 2 * COMPACT_MIN_ROWS
    warehouse = DuckDBWarehouse(build, publish_to=published)
    # a rewrite by CREATE TABLE AS would drop the key: the table is left as it is
    warehouse.execute(
        f"create table keyed (id bigint primary key); insert into keyed select * from range({rows})"
    )
    warehouse.execute(f"create table plain as select * from range({rows}) r(id)")
    warehouse.publish()
    warehouse = DuckDBWarehouse(build, publish_to=published)
    warehouse.execute("delete from keyed where id % 2 = 0; delete from plain where id % 2 = 0")
    assert set(warehouse.dead_rows()) == {Relation("main", "plain")}

    def broken(self, done) -> None:
        done.append(Relation("main", "plain"))
        raise WarehouseError("DuckDB: out of disk space")

    monkeypatch.setattr(DuckDBWarehouse, "compact", broken)
    warehouse.execute("insert into plain values (-1)")
    warehouse.publish()  # compacting failed: what the run committed is published all the same
    assert warehouse.compact_failure == "DuckDB: out of disk space"
    assert warehouse.compacted == [Relation("main", "plain")]
    with duckdb.connect(str(published), read_only=True) as reader:
        assert reader.execute("select count(*) from plain where id = -1").fetchone() == (1,)
        assert (
            reader.execute(
                "select count(*) from duckdb_constraints() where table_name = 'keyed'"
            ).fetchone()[0]
            > 0
        )


def test_a_missing_build_file_starts_from_the_published_one(tmp_path) -> None:
    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    with DuckDBWarehouse(published) as old:  # a warehouse from before builds were separate
        old.execute("create table t as select 7 as v")
    with DuckDBWarehouse(build, publish_to=published) as session:
        assert session.scalar("select v from t") == 7


def test_an_empty_table_from_a_schema_has_the_types_duckdb_gives_arrow(tmp_path) -> None:
    """Without rows the DuckDB backend writes DDL itself; the columns must be the ones DuckDB
    makes of the same Arrow schema when it scans it (one row forces the scan)."""
    import itertools

    schema = pa.schema(
        [
            ("i8", pa.int8()),
            ("i16", pa.int16()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("f32", pa.float32()),
            ("f64", pa.float64()),
            ("s", pa.string()),
            ("ls", pa.large_string()),
            ("b", pa.bool_()),
            ("d", pa.date32()),
            ("ts", pa.timestamp("us")),
            ("tsz", pa.timestamp("us", tz="UTC")),
            ("tsb", pa.timestamp("us", tz="Europe/Berlin")),
            ("dec", pa.decimal128(12, 2)),
            ("wide", pa.decimal128(38, 9)),
            ("odd name", pa.int64()),
        ]
    )
    row = pa.RecordBatch.from_pylist([dict.fromkeys(schema.names)], schema=schema)
    counter = itertools.count()
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        empty, scanned = Relation("s", "empty"), Relation("s", "scanned")
        assert warehouse.replace_from_arrow(empty, schema, ()) == 0
        warehouse.replace_from_arrow(scanned, schema, iter([row]))
        assert warehouse.columns(empty) == warehouse.columns(scanned)
        assert warehouse.row_count(empty) == 0
        # a type the DDL does not know: DuckDB reads the schema itself
        odd = pa.schema([("n", pa.uint32()), ("t", pa.timestamp("ns"))])
        name = Relation("s", f"odd_{next(counter)}")
        warehouse.replace_from_arrow(name, odd, ())
        assert [t for _, t in warehouse.columns(name)] == ["UINTEGER", "TIMESTAMP_NS"]


@pytest.mark.parametrize(
    ("source", "target", "lossless"),
    [
        ("INTEGER", "BIGINT", True),
        ("SMALLINT", "BIGINT", True),
        ("BIGINT", "BIGINT", True),
        ("HUGEINT", "BIGINT", False),
        ("UBIGINT", "BIGINT", False),
        ("FLOAT", "DOUBLE", True),
        ("DOUBLE", "FLOAT", False),
        ("DECIMAL(10,2)", "DECIMAL(12,2)", True),
        ("DECIMAL(12,2)", "DECIMAL(12,2)", True),
        ("DECIMAL(14,2)", "DECIMAL(12,2)", False),
        ("DECIMAL(12,3)", "DECIMAL(12,2)", False),
        ("DECIMAL(12,2)", "DECIMAL(13,3)", False),  # same value, another scale: left to Arrow
        ("VARCHAR", "VARCHAR", True),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE", True),
        ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", False),  # the zone is the contract's to apply
        ("DATE", "TIMESTAMP WITH TIME ZONE", False),
        ("VARCHAR", "BIGINT", False),
        ("BLOB", "VARCHAR", False),
        ("INTEGER[]", "VARCHAR", False),
        ("UUID", "VARCHAR", False),
    ],
)
def test_which_source_types_a_native_load_takes_as_they_are(source, target, lossless) -> None:
    with DuckDBWarehouse(":memory:") as warehouse:
        assert warehouse.widens_losslessly(source, target) is lossless


def test_an_error_in_the_middle_of_a_streamed_query_is_a_warehouse_error(tmp_path) -> None:
    from pipelines.errors import WarehouseError

    sql = "SELECT CASE WHEN i < 250000 THEN i ELSE error('boom at ' || i) END AS i FROM range(300000) t(i)"
    with DuckDBWarehouse(tmp_path / "w.duckdb") as warehouse:
        batches = warehouse.query_batches(sql, 1000)
        assert next(batches).num_rows == 1000  # the first batches arrive
        with pytest.raises(WarehouseError, match="boom at"):
            list(batches)


@pytest.mark.parametrize(
    ("setting", "megabytes"),
    [
        ("122.0 MiB", 127),
        ("18.8 GiB", 20186),
        ("1.5GB", 1500),
        ("512 bytes", 2**40),  # not a form DuckDB prints: no limit assumed
        ("16383.9 PiB", 2**40),  # DuckDB's "no limit"
    ],
)
def test_memory_settings_read_as_megabytes(setting, megabytes) -> None:
    from pipelines.warehouse.duckdb import _megabytes

    assert _megabytes(setting) == megabytes


def test_the_native_buffer_pool_grows_with_row_width_up_to_the_session_limit() -> None:
    native_memory = DuckDBWarehouse._native_memory
    assert native_memory(150, 20_000) == 128
    assert native_memory(2048, 20_000) == 128
    assert native_memory(2049, 20_000) == 192
    assert native_memory(10_240, 20_000) == 640
    assert native_memory(10_240, 300) == 300


def test_a_stretch_written_short_is_written_on_and_a_write_that_stops_is_an_error(
    tmp_path, monkeypatch
) -> None:
    """A write may stop short without an error (a full disk, a file size limit): the rest of
    the stretch is written, and a write that writes nothing fails the copy, so no digest
    record ever covers bytes the copy lacks."""
    import os

    import pipelines.warehouse.duckdb as backend

    monkeypatch.setattr(backend, "_SYNC_CHUNK", 4096)
    build = tmp_path / "b"
    build.write_bytes(os.urandom(4096 * 3 + 10))
    real = os.pwrite

    def halves(fd, data, offset):  # at most half of what is asked, at least one byte
        return real(fd, bytes(data)[: max(1, len(data) // 2)], offset)

    monkeypatch.setattr(os, "pwrite", halves)
    digests, status = backend._copy_with_digests(build, tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == build.read_bytes()
    assert status.st_size == build.stat().st_size and len(digests) == 4

    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
    with pytest.raises(OSError, match="no byte written"):
        backend._copy_with_digests(build, tmp_path / "d")


def test_a_publish_removes_the_partial_copies_of_a_publish_that_died(tmp_path) -> None:
    import os

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    session = DuckDBWarehouse(build, publish_to=published)
    session.execute("create table t as select 1 as v")
    session.publish()
    dead = 2**22 + 12345  # above the kernel's pid limit: no such process
    stale = [tmp_path / f".w.duckdb.publishing-{dead}", tmp_path / f".w.duckdb.spare-{dead}"]
    running = tmp_path / f".w.duckdb.spare-{os.getppid()}"  # a process that is alive
    # one named with this process's id: left by an earlier process that had the same id
    stale.append(tmp_path / f".w.duckdb.publishing-{os.getpid()}")
    # names no publish gives are left alone, and do not stop the publish
    odd = [tmp_path / ".w.duckdb.publishing-\u00b2", tmp_path / f".w.duckdb.spare-{10**20}"]
    for path in [*stale, running, *odd]:
        path.write_bytes(b"partial")
    session = DuckDBWarehouse(build, publish_to=published)
    session.publish()
    assert not any(path.exists() for path in stale)
    assert running.exists() and all(path.exists() for path in odd)


def test_builder_sessions_have_their_own_transactions_and_publish_waits_for_them(
    tmp_path: Path,
) -> None:
    import threading
    import time

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    session = DuckDBWarehouse(build, publish_to=published, builders=2)
    with session.builders() as builders:
        assert len(builders) == 2 and builders[0] is session
        first, second = builders
        with first.transaction():
            first.execute("CREATE TABLE a AS SELECT 1 AS x")
            with second.transaction():  # at the same time, on the same file
                second.execute("CREATE TABLE b AS SELECT 2 AS x")
                assert not second.exists(Relation("main", "a"))  # not committed yet
        assert second.scalar("SELECT x FROM a") == 1 and first.scalar("SELECT x FROM b") == 2
        # a publish (the end of a run) waits for a builder still building its model
        building = threading.Event()

        def build_slowly() -> None:
            with second.exclusive, second.transaction():
                building.set()
                time.sleep(0.5)
                second.execute("CREATE TABLE c AS SELECT 3 AS x")

        worker = threading.Thread(target=build_slowly)
        worker.start()
        assert building.wait(5)
        session.publish()
        worker.join()
    with DuckDBWarehouse(published, read_only=True) as reader:
        assert reader.scalar("SELECT x FROM c") == 3  # committed before the publish
    assert DuckDBWarehouse(build, builders=1).close() is None  # the file is free again


def test_every_builder_session_is_closed_even_when_one_close_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = DuckDBWarehouse(tmp_path / "w.duckdb", builders=3)
    real_close = DuckDBWarehouse.close
    tried: list[Warehouse] = []

    def close(self: DuckDBWarehouse) -> None:
        tried.append(self)
        if self is not session and len(tried) == 1:
            raise OSError("the disk went away")
        real_close(self)

    monkeypatch.setattr(DuckDBWarehouse, "close", close)
    with pytest.raises(OSError, match="the disk went away"), session.builders() as builders:
        assert len(builders) == 3
    assert builders[1] in tried and builders[2] in tried  # the failure did not stop the rest
    session.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="no posix_fadvise here")
def test_a_build_file_is_read_ahead_in_stretches_in_the_background(tmp_path, monkeypatch) -> None:
    import os

    import pipelines.warehouse.duckdb as backend

    monkeypatch.setattr(backend, "_READ_AHEAD_CHUNK", 4096)
    monkeypatch.setattr(backend, "_available_memory", lambda: 1 << 30)
    asked: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        asked.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", advise)
    build = tmp_path / "ssot.build.duckdb"
    build.write_bytes(os.urandom(4096 * 5 + 10))
    thread = backend.read_ahead(build)
    assert thread is not None and thread.daemon
    thread.join(10)
    assert asked == [(offset, 4096, os.POSIX_FADV_WILLNEED) for offset in range(0, 4096 * 6, 4096)]


def test_a_build_file_is_not_read_ahead_when_it_would_crowd_memory(tmp_path, monkeypatch) -> None:
    import pipelines.warehouse.duckdb as backend

    build = tmp_path / "ssot.build.duckdb"
    build.write_bytes(b"x" * 1000)
    monkeypatch.setattr(backend, "_available_memory", lambda: 1999)  # more than half of it
    assert backend.read_ahead(build) is None
    monkeypatch.setattr(backend, "_available_memory", lambda: None)  # cannot tell
    assert backend.read_ahead(build) is None
    monkeypatch.setattr(backend, "_available_memory", lambda: 2000)
    thread = backend.read_ahead(build)
    assert thread is not None
    thread.join(10)
    assert backend.read_ahead(tmp_path / "missing.duckdb") is None


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="no posix_fadvise here")
def test_a_session_opening_a_file_read_ahead_keeps_its_lock(tmp_path, monkeypatch) -> None:
    # the read-ahead's descriptor closing after DuckDB took its lock would release that lock
    # (POSIX record locks go with any descriptor the process closes): a second process could
    # then write the build file during the run. Opening a session stops the read-ahead first.
    import os
    import subprocess
    import sys
    import threading

    import pipelines.warehouse.duckdb as backend

    path = tmp_path / "ssot.build.duckdb"
    with DuckDBWarehouse(path) as wh:
        wh.execute("CREATE TABLE t AS SELECT range AS i FROM range(100000)")
    monkeypatch.setattr(backend, "_READ_AHEAD_CHUNK", 4096)
    monkeypatch.setattr(backend, "_available_memory", lambda: 1 << 40)
    asking = threading.Event()
    real = os.posix_fadvise

    def slow(fd: int, offset: int, length: int, advice: int) -> None:
        asking.set()
        threading.Event().wait(0.01)  # still asking when the session opens
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", slow)
    thread = backend.read_ahead(path)
    assert thread is not None and asking.wait(10)
    with DuckDBWarehouse(path) as wh:
        assert not thread.is_alive()  # stopped and joined before DuckDB took the file
        assert backend.read_ahead(path) is None  # a file written here is not read ahead
        other = subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r})"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode != 0 and "lock" in other.stderr.lower(), other.stderr
        assert wh.scalar("SELECT count(*) FROM t") == 100000


def test_the_scanner_copies_of_a_process_are_removed_at_its_exit() -> None:
    import atexit

    import pipelines.warehouse.duckdb as backend

    kind = next((k for k in ("sqlite", "postgres", "mysql") if backend.scanner_available(k)), None)
    if kind is None:
        pytest.skip("no DuckDB scanner extension installed here")
    backend.remove_scanner_copies()
    copy = backend._scanner_extension(kind)
    assert copy.is_file() and copy.parent.name.startswith("ssot-duckdb-ext-")
    backend.remove_scanner_copies()  # what the exit handler does
    assert not copy.parent.exists()
    again = backend._scanner_extension(kind)  # a later load copies it again
    assert again.is_file() and again.parent != copy.parent
    atexit.unregister(backend.remove_scanner_copies)
    backend.remove_scanner_copies()
    assert not again.parent.exists()


def test_a_scanner_copy_is_handed_out_only_once_it_is_whole(monkeypatch) -> None:
    # two loads side by side open their first scanner at once: the second must not get the
    # copy the first is still writing (DuckDB refused such a half-written file)
    import atexit
    import threading
    import time

    import pipelines.warehouse.duckdb as backend

    kind = next((k for k in ("sqlite", "postgres", "mysql") if backend.scanner_available(k)), None)
    if kind is None:
        pytest.skip("no DuckDB scanner extension installed here")
    source = backend._extension_file(kind)
    assert source is not None
    backend.remove_scanner_copies()
    copying = threading.Event()
    real_copy = backend.shutil.copyfile

    def slow_copy(src: object, dst: object) -> object:
        Path(str(dst)).write_bytes(b"half")  # what a reader would see part way through
        copying.set()
        time.sleep(0.3)
        return real_copy(src, dst)

    monkeypatch.setattr(backend.shutil, "copyfile", slow_copy)
    first: list[Path] = []
    writer = threading.Thread(target=lambda: first.append(backend._scanner_extension(kind)))
    writer.start()
    try:
        assert copying.wait(5)
        second = backend._scanner_extension(kind)  # asked while the first copy is being made
        assert second.stat().st_size == source.stat().st_size
    finally:
        writer.join()
        atexit.unregister(backend.remove_scanner_copies)
        backend.remove_scanner_copies()
    assert first == [second]


@pytest.mark.parametrize("compress_text", [False, True])
def test_text_is_fsst_compressed_only_when_the_target_asks(tmp_path, compress_text) -> None:
    import duckdb

    build, published = tmp_path / "w.build.duckdb", tmp_path / "w.duckdb"
    session = DuckDBWarehouse(build, publish_to=published, compress_text=compress_text)
    # distinct, similar texts: FSST's case (a dictionary would not pay)
    session.execute(
        "create table t as select 'invoice-' || lpad(i::varchar, 9, '0') as id "
        "from range(300000) as r(i)"
    )
    session.publish()
    with duckdb.connect(str(published), read_only=True) as reader:
        methods = {
            m
            for (m,) in reader.execute(
                "select distinct compression from pragma_storage_info('t') "
                "where segment_type = 'VARCHAR'"
            ).fetchall()
        }
    assert any("FSST" in method for method in methods) == compress_text


@pytest.mark.parametrize("setting", [None, "true"])
def test_a_duckdb_target_leaves_text_uncompressed_unless_told(make_project, setting) -> None:
    from pipelines.project import load_project
    from pipelines.warehouse import open_warehouse

    root = make_project({})
    if setting is not None:
        pyproject = root / "pyproject.toml"
        text = pyproject.read_text()
        assert 'type = "duckdb"' in text
        pyproject.write_text(
            text.replace('type = "duckdb"', f'type = "duckdb"\ncompress_text = {setting}', 1)
        )
    with open_warehouse(load_project(root)) as session:
        disabled = session.scalar("select current_setting('disabled_compression_methods')")
    assert (str(disabled).lower() == "fsst,dict_fsst") == (setting is None)


def test_a_merge_replaces_deletes_and_inserts_rows_by_key(warehouse: Warehouse) -> None:
    target = Relation("marts", "accounts")
    warehouse.ensure_schema("marts")
    warehouse.execute(
        "CREATE TABLE marts.accounts AS SELECT * FROM (VALUES (1, 'a', 10), (1, 'b', 20), "
        "(2, 'a', 30)) AS v(region, code, balance)"
    )
    warehouse.execute(
        "CREATE TABLE marts.staged AS SELECT * FROM (VALUES (1, 'a', 11, false), "
        "(1, 'b', 0, true), (3, 'c', 0, true), (3, 'a', 40, NULL)) AS v(region, code, balance, gone)"
    )
    deleting = exp.Coalesce(
        this=exp.column("gone", table="s", quoted=True), expressions=[exp.false()]
    )
    merge = merge_statement(
        target,
        Relation("marts", "staged").to_table(),
        ["region", "code"],
        ["region", "code", "balance"],
        delete_when=deleting,
    )
    warehouse.execute(merge)
    rows = warehouse.query("SELECT * FROM marts.accounts ORDER BY region, code").to_pylist()
    # updated, deleted, a deletion of an absent key ignored, a NULL flag inserted, one untouched
    assert [(r["region"], r["code"], r["balance"]) for r in rows] == [
        (1, "a", 11),
        (2, "a", 30),
        (3, "a", 40),
    ]
    # from a query, with no other column than the key: new keys are inserted, the rest kept
    keys_only = exp.union(
        exp.select(exp.alias_(exp.Literal.number(2), "region", quoted=True)),
        exp.select(exp.alias_(exp.Literal.number(4), "region", quoted=True)),
        distinct=False,
    )
    warehouse.execute("CREATE TABLE marts.regions AS SELECT DISTINCT region FROM marts.accounts")
    warehouse.execute(
        merge_statement(Relation("marts", "regions"), keys_only, ["region"], ["region"])
    )
    regions = warehouse.query("SELECT region FROM marts.regions ORDER BY region").column(0)
    assert regions.to_pylist() == [1, 2, 3, 4]
