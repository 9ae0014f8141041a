"""Relational sources over DB-API drivers: SQLite, PostgreSQL, MySQL/MariaDB.

Rows are fetched in bounded batches through a server-side cursor where the driver has one, and
turned into Arrow column by column. The query selects every column (``SELECT *``) so that a
column the contract does not declare yet is seen and reported, not silently ignored.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from sqlglot import exp

from pipelines.errors import SourceError, TerminalSourceError, TransientSourceError
from pipelines.extract.base import DEFAULT_BATCH_ROWS, Connector, Extracted
from pipelines.urls import mysql_connect_args, redact_url

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceTableSpec

CONNECT_ATTEMPTS = 4
BACKOFF_SECONDS = 0.5


def rows_to_batch(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """Arrow batch from driver rows; a column whose values do not share a type becomes text."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
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

    @abstractmethod
    def _connect(self) -> Any: ...

    def _cursor(self, connection: Any) -> Any:
        return connection.cursor()

    def _is_transient(self, exc: Exception) -> bool:
        return False

    def _open(self) -> Any:
        delay = BACKOFF_SECONDS
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                return self._connect()
            except SourceError:
                raise
            except Exception as exc:
                where = f"source {self.source!r} at {redact_url(self.url)}"
                if not self._is_transient(exc):
                    raise TerminalSourceError(f"cannot connect to {where}: {exc}") from None
                if attempt == CONNECT_ATTEMPTS:
                    raise TransientSourceError(
                        f"cannot reach {where} after {attempt} attempts: {exc}. "
                        "Check that the server is running and the URL env var is right."
                    ) from None
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def read(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        query = exp.select("*").from_(exp.to_identifier(table.source_identifier, quoted=True))
        sql = query.sql(dialect=self.dialect)
        connection = self._open()
        try:
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


class PostgresConnector(SqlConnector):
    schemes = ("postgresql", "postgres")
    dialect = "postgres"

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, connect_timeout=10)

    def _cursor(self, connection: Any) -> Any:
        # A named cursor is server-side: rows stream instead of being materialized client-side.
        return connection.cursor(name="ssot_extract")

    def _is_transient(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.OperationalError)


class MySqlConnector(SqlConnector):
    schemes = ("mysql", "mariadb")
    dialect = "mysql"

    def _connect(self) -> Any:
        import pymysql
        import pymysql.cursors

        return pymysql.connect(
            **mysql_connect_args(self.url), cursorclass=pymysql.cursors.SSCursor, connect_timeout=10
        )

    def _is_transient(self, exc: Exception) -> bool:
        import pymysql

        return isinstance(exc, pymysql.err.OperationalError) and exc.args[:1] in ((2003,), (2013,))
