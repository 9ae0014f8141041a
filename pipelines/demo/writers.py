"""A tiny writer abstraction over SQLite, PostgreSQL and MariaDB/MySQL.

The generator produces :class:`~pipelines.demo.frame.Frame` objects; a :class:`Writer` creates
tables and moves frames into a database with that backend's fast bulk path:

* SQLite: ``executemany`` in chunks, all inside one transaction;
* PostgreSQL: ``COPY ... FROM STDIN`` in text format, rendered vectorised;
* MariaDB/MySQL: multi-row ``INSERT`` batches (PyMySQL rewrites ``executemany`` into them).

Columns of kind ``datetime`` may hold epoch seconds; they are rendered as naive UTC text
('YYYY-MM-DD HH:MM:SS') per batch, never for the whole table at once.

Money travels as integer cents and is rendered per backend (``NUMERIC(12,2)`` / ``DECIMAL(12,2)``),
so the same frame gives the same data on every backend.
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import psycopg

from pipelines.demo.clock import naive_utc
from pipelines.demo.frame import Frame
from pipelines.demo.state import DemoError
from pipelines.demo.text import S, cat, money, where
from pipelines.urls import mysql_connect_args, redact_url

Arr = npt.NDArray[Any]
Kind = Literal["int", "text", "money", "datetime"]

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class Column:
    """One column of a table contract: its name and logical kind."""

    name: str
    kind: Kind


@dataclass(frozen=True)
class TableSpec:
    """A table contract: columns in order, optional primary key and secondary indexes, and
    the column incremental pulls filter on (``cursor``, indexed the way the extractor's
    condition reads it)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: str | None = None
    indexes: tuple[str, ...] = ()
    cursor: str | None = None

    def kind(self, column: str) -> Kind:
        """Logical kind of a column (raises KeyError for an unknown column)."""
        for c in self.columns:
            if c.name == column:
                return c.kind
        raise KeyError(f"{self.name} has no column {column!r}")

    def with_column(self, column: Column) -> TableSpec:
        """The contract with one more column at the end."""
        return TableSpec(
            self.name, (*self.columns, column), self.primary_key, self.indexes, self.cursor
        )


class Writer(ABC):
    """Creates tables and writes frames into one database; call :meth:`close` when done."""

    types: dict[Kind, str]
    param = "%s"

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""

    @abstractmethod
    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for many parameter rows."""

    @abstractmethod
    def commit(self) -> None:
        """Commit the open transaction."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (uncommitted work is rolled back)."""

    def index_sql(self, table: str, column: str) -> str:
        """Statement that creates the secondary index of ``table(column)``."""
        return f"CREATE INDEX ix_{table}_{column} ON {table} ({column})"

    def cursor_index_sql(self, table: str, column: str, kind: Kind) -> str:
        """Statement that creates the index an incremental pull's ``column >= floor`` uses
        (an operational database extracted by timestamp keeps one, or each pull scans the
        whole table)."""
        # a text column gets the backend's index (MariaDB's needs a prefix length); any
        # other, the plain one
        return (
            self.index_sql(table, column)
            if kind == "text"
            else Writer.index_sql(self, table, column)
        )

    def recreate(self, spec: TableSpec) -> None:
        """Drop the table if it exists and create it empty (indexes come in :meth:`finish`)."""
        self.execute(f"DROP TABLE IF EXISTS {spec.name}")
        cols = []
        for c in spec.columns:
            pk = " PRIMARY KEY" if c.name == spec.primary_key else ""
            cols.append(f"{c.name} {self.types[c.kind]}{pk}")
        self.execute(f"CREATE TABLE {spec.name} ({', '.join(cols)}){self.table_options()}")

    def table_options(self) -> str:
        """Dialect suffix of CREATE TABLE."""
        return ""

    def finish(self, spec: TableSpec) -> None:
        """Create secondary indexes after the bulk load (cheaper than maintaining them)."""
        for column in spec.indexes:
            self.execute(self.index_sql(spec.name, column))
        if spec.cursor is not None:
            self.execute(self.cursor_index_sql(spec.name, spec.cursor, spec.kind(spec.cursor)))

    def add_column(self, spec: TableSpec, column: Column) -> None:
        """Schema change: a new nullable column."""
        self.execute(f"ALTER TABLE {spec.name} ADD COLUMN {column.name} {self.types[column.kind]}")

    def insert(self, spec: TableSpec, frame: Frame) -> None:
        """Append the frame's rows; the frame holds exactly the columns to insert."""
        names = list(frame.columns)
        placeholders = ", ".join([self.param] * len(names))
        sql = f"INSERT INTO {spec.name} ({', '.join(names)}) VALUES ({placeholders})"
        for rows in self.python_rows(spec, frame):
            self.executemany(sql, rows)

    def update(self, spec: TableSpec, key: str, frame: Frame) -> None:
        """``UPDATE ... SET <other columns> WHERE key = ...`` for each row of the frame."""
        sets = [n for n in frame.columns if n != key]
        assignments = ", ".join(f"{n} = {self.param}" for n in sets)
        sql = f"UPDATE {spec.name} SET {assignments} WHERE {key} = {self.param}"
        ordered = Frame({n: frame.columns[n] for n in [*sets, key]}, frame.nulls)
        for rows in self.python_rows(spec, ordered):
            self.executemany(sql, rows)

    def delete(self, spec: TableSpec, key: str, keys: Arr) -> None:
        """Hard delete by key."""
        sql = f"DELETE FROM {spec.name} WHERE {key} = {self.param}"
        for rows in self.python_rows(spec, Frame({key: keys})):
            self.executemany(sql, rows)

    def python_rows(self, spec: TableSpec, frame: Frame) -> Iterator[list[tuple[Any, ...]]]:
        """Chunks of parameter tuples with NULLs as None and money as the backend wants it."""
        for start in range(0, len(frame), CHUNK_ROWS):
            part = frame.take(slice(start, start + CHUNK_ROWS))
            columns = [
                self.python_values(spec.kind(name), values, part.null_mask(name))
                for name, values in part.columns.items()
            ]
            yield list(zip(*columns, strict=True))

    def python_values(self, kind: Kind, values: Arr, nulls: Arr) -> list[Any]:
        """One column as Python values."""
        if kind == "money":
            values = money(values)
        elif kind == "datetime":
            values = _datetime_text(values)
        out: list[Any] = values.tolist()
        for i in np.flatnonzero(nulls).tolist():
            out[i] = None
        return out


class SqliteWriter(Writer):
    """SQLite file; everything between open and :meth:`commit` is one transaction."""

    types: dict[Kind, str] = {
        "int": "INTEGER",
        "text": "TEXT",
        "money": "NUMERIC(12,2)",
        "datetime": "TEXT",
    }
    param = "?"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def cursor_index_sql(self, table: str, column: str, kind: Kind) -> str:
        # SQLite keeps timestamps as text and the extractor compares datetime(column), which
        # only an index on that very expression serves
        return f"CREATE INDEX ix_{table}_{column} ON {table} (datetime({column}))"

    def python_values(self, kind: Kind, values: Arr, nulls: Arr) -> list[Any]:
        if kind == "money":  # NUMERIC affinity stores numbers; floats of exact cents.
            out: list[Any] = (np.asarray(values, np.int64) / 100).tolist()
            for i in np.flatnonzero(nulls).tolist():
                out[i] = None
            return out
        return super().python_values(kind, values, nulls)

    def commit(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


class PostgresWriter(Writer):
    """PostgreSQL via psycopg 3; inserts use ``COPY FROM STDIN``."""

    types: dict[Kind, str] = {
        "int": "INTEGER",
        "text": "TEXT",
        "money": "NUMERIC(12,2)",
        "datetime": "TIMESTAMP",
    }

    def __init__(self, url: str) -> None:
        try:
            self.conn = psycopg.connect(url)
        except psycopg.Error as exc:
            raise DemoError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql.encode(), params)  # bytes: a dynamic statement, not a LiteralString

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.encode(), rows)

    def insert(self, spec: TableSpec, frame: Frame) -> None:
        names = ", ".join(frame.columns)
        statement = f"COPY {spec.name} ({names}) FROM STDIN".encode()
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for start in range(0, len(frame), CHUNK_ROWS):
                part = frame.take(slice(start, start + CHUNK_ROWS))
                copy.write(_copy_text(spec, part))

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _copy_text(spec: TableSpec, frame: Frame) -> bytes:
    """Rows in COPY text format: tab-separated, ``\\N`` for NULL, backslash escapes."""
    rendered: list[Arr] = []
    for name, values in frame.columns.items():
        kind = spec.kind(name)
        if kind == "money":
            text = money(values)
        elif kind == "datetime":
            text = _datetime_text(values)
        elif kind == "int":
            text = np.asarray(values, np.int64).astype(S)
        else:
            text = np.asarray(values, dtype=S)
            for raw, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
                text = np.strings.replace(text, raw, escaped)
        rendered.append(where(frame.null_mask(name), "\\N", text))
    parts: list[Arr | str] = []
    for i, col in enumerate(rendered):
        if i:
            parts.append("\t")
        parts.append(col)
    lines = cat(*parts, "\n")
    return "".join(lines.tolist()).encode("utf-8")


class MysqlWriter(Writer):
    """MariaDB/MySQL via PyMySQL; ``executemany`` of an INSERT becomes multi-row statements."""

    types: dict[Kind, str] = {
        "int": "INT",
        "text": "TEXT",
        "money": "DECIMAL(12,2)",
        "datetime": "DATETIME",
    }

    def __init__(self, url: str) -> None:
        import pymysql

        args = mysql_connect_args(url)
        args["password"] = args["password"] or os.environ.get("MYSQL_PWD", "")
        if not args["database"]:
            raise DemoError(f"{_safe(url)} names no database; use mysql://user@host:port/db")
        try:
            self.conn: Any = pymysql.connect(**args, autocommit=False)
        except pymysql.MySQLError as exc:
            raise DemoError(f"cannot connect to MariaDB/MySQL at {_safe(url)}: {exc}") from exc

    def table_options(self) -> str:
        return " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"

    def index_sql(self, table: str, column: str) -> str:
        return f"CREATE INDEX ix_{table}_{column} ON {table} ({column}(32))"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, tuple(params) or None)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _datetime_text(values: Arr) -> Arr:
    """'YYYY-MM-DD HH:MM:SS' of epoch seconds (already-rendered text passes through)."""
    if values.dtype.kind in "iu":
        return naive_utc(values)
    return values


def _safe(url: str) -> str:
    return redact_url(url)


_SCHEMES = {"postgresql": "pg", "postgres": "pg", "mysql": "mysql", "mariadb": "mysql"}


def check_url(url: str) -> str:
    """The backend ('pg' or 'mysql') of a server URL; DemoError for anything else."""
    scheme = urlsplit(url).scheme.lower()
    backend = _SCHEMES.get(scheme.split("+")[0])
    if backend is None:
        raise DemoError(
            f"unsupported database URL scheme {scheme!r} in {_safe(url)}; "
            "use postgresql://user@host:port/db or mysql://user:pass@host:port/db"
        )
    return backend


def open_writer(out_dir: Path, sqlite_name: str, url: str | None) -> Writer:
    """The writer for one system: ``out_dir/<sqlite_name>`` unless a server URL is given."""
    if url is None:
        return SqliteWriter(out_dir / sqlite_name)
    if check_url(url) == "pg":
        return PostgresWriter(url)
    return MysqlWriter(url)
