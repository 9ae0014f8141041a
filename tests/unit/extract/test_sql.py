from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from pipelines.config import SourceTableSpec
from pipelines.errors import TerminalSourceError, TransientSourceError
from pipelines.extract import connector_for
from pipelines.extract.sql import rows_to_batch

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
