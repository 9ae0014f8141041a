"""DuckDB backend: the embedded default warehouse, one file on this machine.

The only module (with the BigQuery backend) allowed to import an engine driver; it imports
``duckdb`` lazily so that loading the Dagster definitions stays fast.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

from pipelines.errors import TerminalWarehouseError, TransientWarehouseError, WarehouseError
from pipelines.warehouse.base import Relation, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

_TRANSIENT_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


def _map_error(exc: Exception, sql: str) -> WarehouseError:
    """One place where DuckDB's exceptions become transient or terminal project errors."""
    message = str(exc)
    snippet = " ".join(sql.split())[:300]
    cls = (
        TransientWarehouseError
        if any(marker in message.lower() for marker in _TRANSIENT_MARKERS)
        else TerminalWarehouseError
    )
    return cls(f"DuckDB: {message.strip()}\n  while running: {snippet}")


class DuckDBWarehouse(Warehouse):
    """A read-write session on a DuckDB database file (or ``:memory:``)."""

    dialect: ClassVar[str] = "duckdb"
    supports_transactions: ClassVar[bool] = True
    row_hash_type: ClassVar[str] = "UBIGINT"

    def __init__(
        self,
        path: Path | str,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        read_only: bool = False,
    ) -> None:
        import duckdb

        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        try:
            self._con = duckdb.connect(self._path, read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise _map_error(exc, f"open {self._path}") from exc
        # Every timestamp the project handles is UTC; casts between TIMESTAMPTZ and TIMESTAMP
        # must not depend on the machine's zone.
        self._con.execute("SET TimeZone = 'UTC'")
        self._in_transaction = False
        self._counter = itertools.count()

    @property
    def location(self) -> str:
        return self._path

    def close(self) -> None:
        self._con.close()

    # -- SQL ----------------------------------------------------------------------------------
    def execute(self, sql: exp.Expression | str) -> None:
        import duckdb

        text = self.render(sql)
        try:
            self._con.execute(text)
        except duckdb.Error as exc:
            raise _map_error(exc, text) from exc

    def query(self, sql: exp.Expression | str) -> pa.Table:
        import duckdb

        text = self.render(sql)
        try:
            return self._con.execute(text).to_arrow_table()
        except duckdb.Error as exc:
            raise _map_error(exc, text) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:  # nested: the outer transaction decides
            yield
            return
        self.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self.execute("ROLLBACK")
            raise
        self._in_transaction = False
        self.execute("COMMIT")

    # -- objects ------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        self.execute(exp.Create(this=exp.to_identifier(schema, quoted=True), kind="SCHEMA", exists=True))

    def _info_schema_filter(self, relation: Relation) -> exp.Condition:
        return exp.and_(
            exp.column("table_schema").eq(exp.Literal.string(relation.schema)),
            exp.column("table_name").eq(exp.Literal.string(relation.name)),
        )

    def exists(self, relation: Relation) -> bool:
        query = (
            exp.select(exp.Count(this=exp.Star()))
            .from_(exp.table_("tables", db="information_schema"))
            .where(self._info_schema_filter(relation))
        )
        return bool(self.scalar(query))

    def columns(self, relation: Relation) -> list[tuple[str, str]]:
        query = (
            exp.select("column_name", "data_type")
            .from_(exp.table_("columns", db="information_schema"))
            .where(self._info_schema_filter(relation))
            .order_by("ordinal_position")
        )
        rows = self.query(query).to_pylist()
        return [(row["column_name"], row["data_type"]) for row in rows]

    def row_hash(self, columns: Sequence[exp.Expression]) -> exp.Expression:
        # DuckDB's hash() combines any number of values of any type, NULLs included.
        return exp.Anonymous(this="hash", expressions=list(columns))

    # -- Arrow landing ------------------------------------------------------------------------
    def _arrow_view_name(self) -> str:
        return f"__ssot_arrow_{next(self._counter)}"

    def replace_from_arrow(
        self, relation: Relation, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> int:
        import pyarrow as pa

        written = 0
        failure: list[BaseException] = []

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal written
            try:
                for batch in batches:
                    written += batch.num_rows
                    yield batch
            except BaseException as exc:  # re-raised below as itself, not as a DuckDB error
                failure.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(schema, counted())
        view = self._arrow_view_name()
        self.ensure_schema(relation.schema)
        self._con.register(view, reader)
        try:
            self.execute(
                exp.Create(
                    this=relation.to_table(),
                    kind="TABLE",
                    replace=True,
                    expression=exp.select("*").from_(exp.to_identifier(view, quoted=True)),
                )
            )
        except WarehouseError:
            if failure:  # the batches' producer failed (a source error): that is the error
                raise failure[0] from None
            raise
        finally:
            self._con.unregister(view)
        return written

    def append_arrow(self, relation: Relation, table: pa.Table, *, add_columns: bool = False) -> int:
        view = self._arrow_view_name()
        self.ensure_schema(relation.schema)
        self._con.register(view, table)
        try:
            source = exp.select("*").from_(exp.to_identifier(view, quoted=True))
            if self.exists(relation):
                if add_columns:
                    present = {name for name, _ in self.columns(relation)}
                    incoming = self.query(exp.Describe(this=source))
                    for name, kind in zip(
                        incoming.column("column_name").to_pylist(),
                        incoming.column("column_type").to_pylist(),
                        strict=True,
                    ):
                        if name not in present:
                            self.add_column(relation, name, kind)
                names = [exp.to_identifier(name, quoted=True) for name in table.column_names]
                self.execute(
                    exp.Insert(
                        this=exp.Schema(this=relation.to_table(), expressions=names),
                        expression=source,
                    )
                )
            else:
                self.execute(exp.Create(this=relation.to_table(), kind="TABLE", expression=source))
        finally:
            self._con.unregister(view)
        return int(table.num_rows)
