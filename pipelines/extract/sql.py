"""Relational sources over DB-API drivers: SQLite, PostgreSQL, MySQL/MariaDB.

Rows are fetched in bounded batches through a server-side cursor where the driver has one, and
turned into Arrow column by column. The query selects every column (``SELECT *``) so that a
column the contract does not declare yet is seen and reported, not silently ignored.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from sqlglot import exp

from pipelines.errors import SourceError, TerminalSourceError, TransientSourceError
from pipelines.extract.base import DEFAULT_BATCH_ROWS, Connector, CursorValue, Extracted, Pull
from pipelines.urls import mysql_connect_args, redact_url, scrub, with_query_param

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import ColumnSpec, SourceTableSpec
    from pipelines.warehouse.base import NativeTable

CONNECT_ATTEMPTS = 4
T = TypeVar("T")
BACKOFF_SECONDS = 0.5


def rows_to_batch(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """Arrow batch from driver rows; a column whose values do not share a type becomes text."""
    from operator import itemgetter

    import pyarrow as pa

    # a list per column: `zip(*rows)` makes an iterator per row, and Arrow converts a tuple
    # several times slower than a list (600,000 one-column rows: 0.39 s against 0.02 s)
    columns = [list(map(itemgetter(i), rows)) for i in range(len(names))]
    arrays = []
    for values in columns:
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


class SqlConnector(Connector):
    """Shared fetch loop; subclasses open the connection and name their sqlglot dialect."""

    dialect: ClassVar[str]
    stable_schema = True

    @abstractmethod
    def _connect(self) -> Any: ...

    def _cursor(self, connection: Any) -> Any:
        return connection.cursor()

    def _prepare(self, connection: Any, table: SourceTableSpec) -> None:
        """Session settings the table's query relies on (none by default)."""

    def _is_transient(self, exc: Exception) -> bool:
        return False

    def _open(self) -> Any:
        return self._with_retries(self._connect, self._is_transient, self.url)

    def _with_retries(
        self, connect: Callable[[], T], is_transient: Callable[[Exception], bool], url: str
    ) -> T:
        """Connect, retrying transient failures with exponential backoff; errors carry no secret."""
        delay = BACKOFF_SECONDS
        where = f"source {self.source!r} at {redact_url(self.url)}"
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return connect()
            except SourceError:
                raise
            except Exception as exc:
                message = scrub(str(exc), url)
                if not is_transient(exc):
                    raise TerminalSourceError(f"cannot connect to {where}: {message}") from None
                if attempt == CONNECT_ATTEMPTS:
                    raise TransientSourceError(
                        f"cannot reach {where} after {attempt} attempts: {message}. "
                        "Check that the server is running and the URL env var is right."
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _cursor_condition(self, column: ColumnSpec, floor: CursorValue) -> exp.Expression:
        """``column >= floor`` as the source must compare it (timestamps may be stored as text)."""
        col = exp.column(column.name, quoted=True)
        if isinstance(floor, datetime):
            return self._timestamp_at_or_after(col, column, floor)
        return exp.GTE(this=col, expression=exp.convert(floor))

    def _timestamp_at_or_after(
        self, col: exp.Column, column: ColumnSpec, floor: datetime
    ) -> exp.Expression:
        """Default: the source stores naive timestamps (or ISO text) in ``column.timezone``."""
        local = floor.astimezone(ZoneInfo(column.timezone)).replace(tzinfo=None)
        return exp.GTE(
            this=col, expression=exp.Literal.string(local.isoformat(sep=" ", timespec="seconds"))
        )

    def select_query(self, table: SourceTableSpec, pull: Pull | None) -> exp.Select:
        """`SELECT *` of the table, restricted to rows at or after the cursor floor."""
        query = exp.select("*").from_(exp.to_identifier(table.source_identifier, quoted=True))
        if pull is not None and pull.cursor_floor is not None and table.cursor:
            query = query.where(
                self._cursor_condition(table.column(table.cursor), pull.cursor_floor)
            )
        return query

    def read(
        self,
        table: SourceTableSpec,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pull: Pull | None = None,
    ) -> Iterator[Extracted]:
        yield from self._fetch(table, self.select_query(table, pull), batch_rows)

    #: SQL naming the schema an unqualified table name resolves to (information_schema sources)
    current_schema_sql: ClassVar[str] = "current_schema()"

    def keys_are_unique(self, table: SourceTableSpec) -> bool:
        keys = set(table.primary_key)
        return any(columns <= keys for columns in self._unique_column_sets(table))

    def _unique_column_sets(self, table: SourceTableSpec) -> list[set[str]]:
        """The column sets of the table's primary key and unique constraints."""
        query = f"""
            SELECT tc.constraint_name, kcu.column_name
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_name = tc.constraint_name
             AND kcu.table_schema = tc.table_schema
             AND kcu.table_name = tc.table_name
            WHERE tc.table_schema = {self.current_schema_sql}
              AND tc.table_name = %s
              AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
        """
        connection = self._open()
        try:
            cursor = connection.cursor()
            cursor.execute(query, (table.source_identifier,))
            sets: dict[str, set[str]] = {}
            for name, column in cursor.fetchall():
                sets.setdefault(name, set()).add(column)
            cursor.close()
        finally:
            connection.close()
        return list(sets.values())

    def read_keys(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        keys = [exp.column(k, quoted=True) for k in table.primary_key]
        query = exp.select(*keys).from_(exp.to_identifier(table.source_identifier, quoted=True))
        yield from self._fetch(table, query, batch_rows)

    def _fetch(
        self, table: SourceTableSpec, query: exp.Select, batch_rows: int
    ) -> Iterator[Extracted]:
        sql = query.sql(dialect=self.dialect)
        connection = self._open()
        try:
            self._prepare(connection, table)
            cursor = self._cursor(connection)
            try:
                cursor.execute(sql)
            except Exception as exc:
                raise TerminalSourceError(
                    f"source {self.source!r}: cannot read table {table.source_identifier!r} "
                    f"({exc}); check `tables` in sources/{self.source}.yml"
                ) from None
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(batch_rows):
                yield Extracted(rows_to_batch(names, rows))
            cursor.close()
        finally:
            connection.close()


class SqliteConnector(SqlConnector):
    schemes = ("sqlite",)
    dialect = "sqlite"

    def _connect(self) -> Any:
        import sqlite3

        path = Path(unquote(self.url.removeprefix("sqlite:///")))
        if not path.is_file():
            raise TerminalSourceError(
                f"source {self.source!r}: SQLite file {path} does not exist. For the demo run "
                "`ssot demo init`; otherwise set the source's URL env var."
            )
        # The warehouse may pull batches from one of its own threads.
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def _unique_column_sets(self, table: SourceTableSpec) -> list[set[str]]:
        connection = self._open()
        try:
            return [set(columns) for columns in _unique_column_lists(connection, table)]
        finally:
            connection.close()

    #: keys a query of the key listing returns at most (one text of a few MB)
    KEYS_PER_QUERY = 200_000

    def read_keys(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        """Every current key, ``KEYS_PER_QUERY`` keys per query, in one read transaction (one
        snapshot of the file): SQLite joins a query's keys into one CSV text, which Arrow
        parses. Fetched row by row, Python's sqlite3 releases and takes back the interpreter's
        lock for every row, and waits for it while other threads run: listing the demo shop's
        604,122 customer keys took 0.3-0.4 s of a scale-100 day's run on one machine, 1.8 s on a
        slower one (docs/performance.md, the sixteenth session).
        The queries page along a key column that is the table's INTEGER PRIMARY KEY or has a
        single-column unique index; without one (a view, say), or for key types other than
        integer and text, the rows are fetched one by one as before. A page holding values of
        other storage classes (SQLite stores any value in any column) is fetched as rows too."""
        import sqlite3

        import pyarrow as pa

        connection = self._open()
        try:
            page = _key_page(connection, table)
        except sqlite3.Error:
            page = None
        except BaseException:
            connection.close()
            raise
        if page is None:
            connection.close()
            yield from super().read_keys(table, batch_rows=batch_rows)
            return
        try:
            connection.execute("BEGIN")  # every page from the same snapshot
            after: Any = None
            while True:
                paged, bound = after is not None, () if after is None else (after,)
                limit = self.KEYS_PER_QUERY
                try:
                    listed, rows, typed, last = connection.execute(
                        page.listing(paged, limit), bound
                    ).fetchone()
                except sqlite3.Error:  # a page longer than SQLite's longest text, say
                    listed, rows, typed, last = connection.execute(
                        page.listing(paged, limit, text=False), bound
                    ).fetchone()
                if not rows:
                    break
                keys = page.parse(listed) if listed is not None and typed == rows else None
                if keys is None or keys.num_rows != rows:  # values of other types: as rows
                    cursor = connection.execute(page.rows(paged, limit), bound)
                    keys = pa.Table.from_batches(
                        [rows_to_batch(table.primary_key, cursor.fetchall())]
                    )
                yield from (Extracted(b) for b in keys.to_batches(batch_rows))
                after = last
        finally:
            connection.close()

    def _timestamp_at_or_after(
        self, col: exp.Column, column: ColumnSpec, floor: datetime
    ) -> exp.Expression:
        # SQLite has no timestamp type: datetime() normalizes ISO text, applying any UTC offset
        # the value carries, so text with mixed offsets compares correctly. Naive text is read
        # in the column's zone.
        if column.timezone == "UTC":
            value = floor.astimezone(UTC).replace(tzinfo=None)
        else:
            value = floor.astimezone(ZoneInfo(column.timezone)).replace(tzinfo=None)
        return exp.GTE(
            this=exp.Anonymous(this="datetime", expressions=[col]),
            expression=exp.Literal.string(value.isoformat(sep=" ", timespec="seconds")),
        )


#: How PostgreSQL tables are read (for comparison or debugging): `auto` (the default: DuckDB's
#: scanner, and a first load into DuckDB read by the warehouse itself), `arrow` (the scanner, but
#: every load through Arrow in this process), `dbapi` (the psycopg cursor, through Arrow).
ENGINE_ENV = "SSOT_EXTRACT_ENGINE"
ENGINES = ("auto", "arrow", "dbapi")


def _engine() -> str:
    from pipelines.errors import ConfigError

    value = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if value not in ENGINES:
        raise ConfigError(f"{ENGINE_ENV}={value!r}: use one of {', '.join(ENGINES)}")
    return value


#: declared key types the SQLite key listing sends as text: the storage class each value must
#: have to be written as a CSV field, and the Arrow type the field is parsed as
_LISTED_KEY_TYPES = {
    "integer": ("integer", "int64"),
    "bigint": ("integer", "int64"),
    "string": ("text", "string"),
}
#: SQLite's own collations (a source application's own cannot be named by another connection)
_BUILTIN_COLLATIONS = frozenset({"BINARY", "NOCASE", "RTRIM"})


def _quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("sqlite")


def _primary_key(connection: Any, name: str) -> list[str]:
    """The columns of a SQLite table's primary key, in key order."""
    rows = connection.execute(
        "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (name,)
    ).fetchall()
    return [str(column) for (column,) in rows]


def _unique_indexes(connection: Any, name: str) -> list[tuple[str, list[tuple[str | None, str]]]]:
    """(origin, its (column, collation) pairs in index order) of each unique index of a SQLite
    table that covers every row (a partial index does not); the column of an expression is
    None."""
    indexes = connection.execute(
        'SELECT name, origin FROM pragma_index_list(?) WHERE "unique" AND NOT "partial"', (name,)
    ).fetchall()
    return [
        (
            str(origin),
            [
                (column, str(collation).upper())
                for column, collation in connection.execute(
                    "SELECT name, coll FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno",
                    (index,),
                ).fetchall()
            ],
        )
        for index, origin in indexes
    ]


def _unique_column_lists(connection: Any, table: SourceTableSpec) -> list[list[str]]:
    """The columns of a SQLite table's primary key (in key order) and of each unique index
    that covers every row (in index order; an index on an expression is no set of columns)."""
    name = table.source_identifier
    primary = _primary_key(connection, name)
    return ([primary] if primary else []) + [
        [str(column) for column, _ in columns]
        for _, columns in _unique_indexes(connection, name)
        if all(column is not None for column, _ in columns)
    ]


def _page_columns(connection: Any, name: str) -> list[tuple[str, str]]:
    """(column, collation) of each single column a SQLite table's rows can be paged along, in
    an index's order: its rowid when it is named (an INTEGER PRIMARY KEY, which holds integers
    only), and the column of each single-column unique index that covers every row, with the
    index's collation (the one its values are unique under, in the order it keeps)."""
    indexes = _unique_indexes(connection, name)
    pages: list[tuple[str, str]] = []
    if not any(origin == "pk" for origin, _ in indexes):  # a primary key without an index
        primary = _primary_key(connection, name)
        if len(primary) == 1:
            pages.append((primary[0], "BINARY"))
    for _, columns in indexes:
        if len(columns) == 1 and columns[0][0] is not None:  # not an expression
            pages.append((str(columns[0][0]), columns[0][1]))
    return pages


@dataclass(frozen=True)
class _KeyPage:
    """The queries listing a SQLite table's keys a page at a time, in the order of ``along``
    under ``collation``: a key column that is unique under it, in an index that keeps that
    order, so each page is a range of the index and no value repeats across a page's end."""

    table: str
    keys: tuple[str, ...]
    storage: tuple[str, ...]  # the storage class each key column's values must have
    types: tuple[str, ...]  # the Arrow type of each key column's field
    along: str
    collation: str

    def rows(self, after: bool, limit: int) -> str:
        """The page's keys as rows: after the previous page's last value (a parameter)."""
        along = f"{_quoted(self.along)} COLLATE {self.collation}"
        where = " AND ".join(f"{_quoted(k)} IS NOT NULL" for k in self.keys)
        if after:
            where += f" AND {along} > ?"
        columns = ", ".join(_quoted(k) for k in self.keys)
        return (
            f"SELECT {columns} FROM {_quoted(self.table)} WHERE {where} "
            f"ORDER BY {along} LIMIT {limit}"
        )

    def listing(self, after: bool, limit: int, *, text: bool = True) -> str:
        """The page as one row: its keys as CSV text (a line each; NULL when not ``text``);
        how many; how many hold values of the storage classes the text is for; the last value
        of ``along``. (A key missing a value is left out, as the key contract rejects it.)"""
        fields = [
            _quoted(k) if kind == "int64" else f"""'"' || replace({_quoted(k)}, '"', '""') || '"'"""
            for k, kind in zip(self.keys, self.types, strict=True)
        ]
        line = " || ',' || ".join(fields)
        typed = " AND ".join(
            f"typeof({_quoted(k)}) = '{storage}'"
            for k, storage in zip(self.keys, self.storage, strict=True)
        )
        return (
            f"SELECT {f'CAST(group_concat({line}, char(10)) AS BLOB)' if text else 'NULL'}, "
            "count(*), "
            f"coalesce(sum({typed}), 0), "
            f"max({_quoted(self.along)} COLLATE {self.collation}) FROM ({self.rows(after, limit)})"
        )

    def parse(self, listed: bytes) -> pa.Table | None:
        """The keys of ``listed`` as Arrow columns; None when a field does not parse as its
        column's type."""
        import pyarrow as pa
        import pyarrow.csv as csv

        try:
            return csv.read_csv(
                pa.BufferReader(listed),
                read_options=csv.ReadOptions(column_names=list(self.keys)),
                parse_options=csv.ParseOptions(newlines_in_values="string" in self.types),
                convert_options=csv.ConvertOptions(
                    column_types={
                        k: pa.type_for_alias(kind)
                        for k, kind in zip(self.keys, self.types, strict=True)
                    },
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid:
            return None


def _key_page(connection: Any, table: SourceTableSpec) -> _KeyPage | None:
    """How to list ``table``'s keys a page at a time; None when its keys are of other types or
    none of its key columns is unique on its own in an index (a view, say) under one of
    SQLite's own collations."""
    listed = [_LISTED_KEY_TYPES.get(table.column(k).type) for k in table.primary_key]
    if any(kind is None for kind in listed):
        return None
    for column, collation in _page_columns(connection, table.source_identifier):
        if column in table.primary_key and collation in _BUILTIN_COLLATIONS:
            return _KeyPage(
                table.source_identifier,
                tuple(table.primary_key),
                tuple(kind[0] for kind in listed if kind is not None),
                tuple(kind[1] for kind in listed if kind is not None),
                column,
                collation,
            )
    return None


class PostgresConnector(SqlConnector):
    """PostgreSQL: read through DuckDB's parallel postgres scanner when it is installed (the
    project pins its wheel), else through a psycopg server-side cursor."""

    schemes = ("postgresql", "postgres")
    dialect = "postgres"

    def _scanner_url(self, table: SourceTableSpec) -> str:
        # Naive timestamps compare in the cursor column's zone (see _timestamp_at_or_after).
        zone = table.column(table.cursor).timezone if table.cursor else "UTC"
        return with_query_param(self.url, "options", f"-c TimeZone={zone}")

    def _use_scanner(self) -> bool:
        from pipelines.warehouse.duckdb import scanner_available

        return _engine() != "dbapi" and scanner_available("postgres")

    def _open_scanner(self, table: SourceTableSpec) -> Any:
        from pipelines.errors import TransientWarehouseError
        from pipelines.warehouse.duckdb import SourceScanner

        url = self._scanner_url(table)

        def is_transient(exc: Exception) -> bool:
            text = str(exc).lower()
            unreachable = "could not connect" in text or "connection refused" in text
            return unreachable or isinstance(exc, TransientWarehouseError)

        return self._with_retries(lambda: SourceScanner("postgres", url), is_transient, url)

    def _scan(
        self, table: SourceTableSpec, batches: Callable[[Any], Iterator[pa.RecordBatch]]
    ) -> Iterator[Extracted]:
        from pipelines.errors import WarehouseError

        scanner = self._open_scanner(table)
        try:
            for batch in batches(scanner):
                yield Extracted(batch)
        except WarehouseError as exc:
            raise TerminalSourceError(
                f"source {self.source!r}: cannot read table {table.source_identifier!r}: "
                f"{scrub(str(exc), self._scanner_url(table))}; check `tables` in sources/{self.source}.yml"
            ) from None
        finally:
            scanner.close()

    def read(
        self,
        table: SourceTableSpec,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pull: Pull | None = None,
    ) -> Iterator[Extracted]:
        if not self._use_scanner():
            yield from super().read(table, batch_rows=batch_rows, pull=pull)
            return
        if pull is None or pull.cursor_floor is None or not table.cursor:
            # a full pull: DuckDB scans the table with parallel connections
            yield from self._scan(
                table, lambda s: s.table_batches(table.source_identifier, batch_rows)
            )
            return
        # incremental: the source filters by the cursor itself
        sql = self.select_query(table, pull).sql(dialect=self.dialect)
        yield from self._scan(table, lambda s: s.query_batches(sql, batch_rows))

    def native_table(self, table: SourceTableSpec, pull: Pull) -> NativeTable | None:
        from pipelines.warehouse.base import NativeTable

        if _engine() != "auto" or not self._use_scanner():
            return None
        if pull.cursor_floor is not None and table.cursor:
            return None
        return NativeTable("postgres", self._scanner_url(table), table.source_identifier)

    def read_keys(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        if not self._use_scanner():
            yield from super().read_keys(table, batch_rows=batch_rows)
            return
        keys = [exp.column(k, quoted=True) for k in table.primary_key]
        sql = (
            exp.select(*keys)
            .from_(exp.to_identifier(table.source_identifier, quoted=True))
            .sql(self.dialect)
        )
        yield from self._scan(table, lambda s: s.query_batches(sql, batch_rows))

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, connect_timeout=10)

    def _timestamp_at_or_after(
        self, col: exp.Column, column: ColumnSpec, floor: datetime
    ) -> exp.Expression:
        # Works for timestamptz columns and for ISO text with or without offsets: naive values
        # are read in the session zone, which _prepare sets to the cursor column's zone.
        return exp.GTE(
            this=exp.cast(col, "TIMESTAMPTZ"),
            expression=exp.cast(
                exp.Literal.string(floor.astimezone(UTC).isoformat(sep=" ")), "TIMESTAMPTZ"
            ),
        )

    def _prepare(self, connection: Any, table: SourceTableSpec) -> None:
        from psycopg import sql

        zone = table.column(table.cursor).timezone if table.cursor else "UTC"
        connection.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(zone)))

    def _cursor(self, connection: Any) -> Any:
        # A named cursor is server-side: rows stream instead of being materialized client-side.
        return connection.cursor(name="ssot_extract")

    def _is_transient(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError)


class MySqlConnector(SqlConnector):
    schemes = ("mysql", "mariadb")
    dialect = "mysql"
    current_schema_sql = "DATABASE()"

    def _connect(self) -> Any:
        import pymysql
        import pymysql.cursors

        return pymysql.connect(
            **mysql_connect_args(self.url), cursorclass=pymysql.cursors.SSCursor, connect_timeout=10
        )

    def _is_transient(self, exc: Exception) -> bool:
        import pymysql

        return isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in ((2003,), (2013,))
