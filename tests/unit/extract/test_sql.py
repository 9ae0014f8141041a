from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.config import SourceTableSpec
from pipelines.errors import TerminalSourceError, TransientSourceError
from pipelines.extract import connector_for
from pipelines.extract.sql import _KeyPage, rows_to_batch

SPEC = SourceTableSpec.model_validate(
    {"name": "items", "primary_key": ["id"], "columns": [{"name": "id", "type": "integer"}]}
)


def test_sqlite_streams_all_columns_in_bounded_batches(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table items (id integer, price numeric, extra text)")
        con.executemany("insert into items values (?, ?, ?)", [(i, i * 1.5, "e") for i in range(7)])
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    units = list(connector.read(SPEC, batch_rows=3))
    assert [u.batch.num_rows for u in units] == [3, 3, 1]
    # every column comes through, declared or not: drift is visible downstream
    assert units[0].batch.schema.names == ["id", "price", "extra"]


def test_sqlite_missing_file_says_what_to_do(tmp_path: Path) -> None:
    connector = connector_for(f"sqlite:///{tmp_path}/none.sqlite", source="crm", root=tmp_path)
    with pytest.raises(TerminalSourceError, match="ssot demo init"):
        list(connector.read(SPEC))


def test_sqlite_missing_table_names_the_yml(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    sqlite3.connect(db).close()
    connector = connector_for(f"sqlite:///{db}", source="crm", root=tmp_path)
    with pytest.raises(TerminalSourceError, match=r"sources/crm\.yml"):
        list(connector.read(SPEC))


def test_mixed_type_column_falls_back_to_text() -> None:
    batch = rows_to_batch(["a", "b"], [(1, Decimal("1.10")), ("x", Decimal("2.00"))])
    assert batch.column(0).to_pylist() == ["1", "x"]
    assert batch.column(1).to_pylist() == [Decimal("1.10"), Decimal("2.00")]


def test_unreachable_postgres_retries_then_fails_without_the_password(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("pipelines.extract.sql.BACKOFF_SECONDS", 0.01)
    url = "postgresql://app:s3cret-pw@127.0.0.1:1/db"
    connector = connector_for(url, source="crm", root=tmp_path)
    with pytest.raises(TransientSourceError) as info:
        list(connector.read(SPEC))
    assert "s3cret-pw" not in str(info.value)
    assert "after 4 attempts" in str(info.value)


def test_the_demo_sources_index_their_cursor_as_incremental_pulls_read_it(
    make_project, monkeypatch
) -> None:
    """An incremental pull of the demo's SQLite tables seeks through an index instead of
    scanning (a 5 M-row orders table: 0.42 s a pull scanned, 0.07 s through the index)."""
    from datetime import UTC, datetime

    from pipelines.demo import init_demo
    from pipelines.extract.base import Pull
    from pipelines.project import load_project

    repo = Path(__file__).resolve().parents[3]
    root = make_project(
        {
            f"sources/{name}.yml": (repo / "sources" / f"{name}.yml").read_text()
            for name in ("crm", "shop")
        },
        source=False,
    )
    init_demo(root / "demo_data", scale=0.05, seed=3)
    for name in ("SSOT_CRM_URL", "SSOT_SHOP_URL"):
        monkeypatch.delenv(name, raising=False)
    project = load_project(root)
    pull = Pull(cursor_floor=datetime(2026, 1, 1, tzinfo=UTC))
    planned = {}
    for source in (project.sources["crm"], project.sources["shop"]):
        url = project.source_url(source)
        connector = connector_for(url, source=source.name, root=root)
        for table in source.tables:
            if table.column(table.cursor).type != "timestamp":
                continue
            sql = connector.select_query(table, pull).sql(dialect="sqlite")
            with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
                plan = con.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            planned[f"{source.name}.{table.name}"] = " ".join(str(step[-1]) for step in plan)
    assert set(planned) == {
        "crm.accounts",
        "crm.contacts",
        "shop.customers",
        "shop.products",
        "shop.orders",
    }
    for table, plan in planned.items():
        assert f"USING INDEX ix_{table.split('.')[1]}_updated_at" in plan, f"{table}: {plan}"


def _keys_spec(kind: str, name: str = "items") -> SourceTableSpec:
    return SourceTableSpec.model_validate(
        {"name": name, "primary_key": ["id"], "columns": [{"name": "id", "type": kind}]}
    )


def _listed(connector, spec: SourceTableSpec) -> list:
    return [
        v for u in connector.read_keys(spec, batch_rows=4) for v in u.batch.column(0).to_pylist()
    ]


def _parsed_pages(monkeypatch) -> list[int | None]:
    """The rows of each page parsed from its text (None: not parseable), as they come."""
    pages: list[int | None] = []
    parse = _KeyPage.parse

    def parsed(page: _KeyPage, listed: bytes) -> object:
        keys = parse(page, listed)
        pages.append(None if keys is None else keys.num_rows)
        return keys

    monkeypatch.setattr(_KeyPage, "parse", parsed)
    return pages


def test_sqlite_lists_every_key_page_by_page(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "s.sqlite"
    tags = ["a", 'say "hi"', "comma,in", "line\nbreak", "carriage\rreturn", "", "ünï"]
    with sqlite3.connect(db) as con:
        con.execute("create table items (id integer primary key, name text)")
        con.executemany("insert into items values (?, ?)", [(i * 3, "n") for i in range(1, 24)])
        con.execute("create table tags (id text primary key)")
        con.executemany("insert into tags values (?)", [(t,) for t in tags])
        con.execute("create view items_view as select id from items")
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 5)
    pages = _parsed_pages(monkeypatch)
    # 23 keys in pages of 5: every one listed once, each page parsed from its text
    assert sorted(_listed(connector, _keys_spec("integer"))) == [i * 3 for i in range(1, 24)]
    assert pages == [5, 5, 5, 5, 3]
    pages.clear()
    assert sorted(_listed(connector, _keys_spec("string", "tags"))) == sorted(tags)
    assert pages == [5, 2]
    # a view has no index to page along: its keys come row by row, all of them
    pages.clear()
    view = _keys_spec("integer", "items_view")
    assert sorted(_listed(connector, view)) == [i * 3 for i in range(1, 24)]
    assert pages == []


def test_sqlite_key_listing_takes_values_of_other_types_as_rows(
    tmp_path: Path, monkeypatch
) -> None:
    db = tmp_path / "s.sqlite"
    odd = ["x7", "", "7\n8", '"5"']
    with sqlite3.connect(db) as con:
        # SQLite keeps text in an integer column as it is, and a null in a key that is no
        # rowid
        con.execute("create table items (id integer not null unique, other int)")
        con.executemany("insert into items values (?, 0)", [(i,) for i in range(1, 8)])
        con.executemany("insert into items values (?, 0)", [(v,) for v in odd])
        con.execute("create table loose (id int unique)")
        con.executemany("insert into loose values (?)", [(None,), (None,), (1,), (2,)])
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 3)
    pages = _parsed_pages(monkeypatch)
    listed = _listed(connector, _keys_spec("integer"))
    assert sorted(map(str, listed)) == sorted([*map(str, range(1, 8)), *map(str, odd)])
    # the pages of integers alone are read as text, the others as rows (the values as SQLite
    # holds them: an empty text, a line break, quotes are never taken for keys they are not)
    assert pages == [3, 3]
    # keys without a value are left out (the key contract rejects them either way)
    assert sorted(_listed(connector, _keys_spec("integer", "loose"))) == [1, 2]


def test_sqlite_key_listing_pages_only_along_a_column_unique_on_every_row(
    tmp_path: Path, monkeypatch
) -> None:
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as con:
        # `a` is unique among the rows with b = 0 only: no page may end inside a run of a's
        con.execute("create table pairs (a int, b int)")
        con.execute("create unique index pairs_a on pairs (a) where b = 0")
        pairs = [(a, b) for a in range(1, 5) for b in range(3)]
        con.executemany("insert into pairs values (?, ?)", pairs)
        # unique as written (binary), not case-blind as the column compares: 'A' and 'a' both
        con.execute("create table codes (id text collate nocase)")
        con.execute("create unique index codes_id on codes (id collate binary)")
        codes = ["a", "A", "b", "B", "c"]
        con.executemany("insert into codes values (?)", [(c,) for c in codes])
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 1)
    spec = SourceTableSpec.model_validate(
        {
            "name": "pairs",
            "primary_key": ["a", "b"],
            "columns": [{"name": "a", "type": "integer"}, {"name": "b", "type": "integer"}],
        }
    )
    listed = [
        row
        for unit in connector.read_keys(spec)
        for row in zip(*unit.batch.to_pydict().values(), strict=True)
    ]
    assert sorted(listed) == pairs
    assert sorted(_listed(connector, _keys_spec("string", "codes"))) == sorted(codes)


def test_sqlite_key_listing_reads_one_snapshot(tmp_path: Path, monkeypatch) -> None:
    """Keys deleted while the pages are read are still listed: every page reads the snapshot
    the first one saw (a key missing from a later page would be taken for a deleted row)."""
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("pragma journal_mode = wal")
        con.execute("create table items (id integer primary key)")
        con.executemany("insert into items values (?)", [(i,) for i in range(1, 13)])
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 5)
    parse = _KeyPage.parse

    def parsed_then_deleted(page: _KeyPage, listed: bytes) -> object:
        with sqlite3.connect(db) as writer:  # the source goes on changing meanwhile
            writer.execute("delete from items where id > 5")
        return parse(page, listed)

    monkeypatch.setattr(_KeyPage, "parse", parsed_then_deleted)
    assert sorted(_listed(connector, _keys_spec("integer"))) == list(range(1, 13))
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from items").fetchone() == (5,)


def test_sqlite_key_listing_reads_a_page_too_long_for_one_text_as_rows(
    tmp_path: Path, monkeypatch
) -> None:
    db = tmp_path / "s.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table items (id integer primary key)")
        con.executemany("insert into items values (?)", [(i,) for i in range(1000, 1100)])
    connector = connector_for(f"sqlite:///{db}", source="s", root=tmp_path)
    connect = type(connector)._connect

    def limited(self: object) -> sqlite3.Connection:
        connection = connect(self)  # type: ignore[arg-type]
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 200)  # a text of 40 keys at most
        return connection

    monkeypatch.setattr(type(connector), "_connect", limited)
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 30)
    pages = _parsed_pages(monkeypatch)
    assert sorted(_listed(connector, _keys_spec("integer"))) == list(range(1000, 1100))
    assert pages == [30, 30, 30, 10]
    monkeypatch.setattr(type(connector), "KEYS_PER_QUERY", 50)
    pages.clear()
    assert sorted(_listed(connector, _keys_spec("integer"))) == list(range(1000, 1100))
    assert pages == []  # each page too long as one text: read as rows
