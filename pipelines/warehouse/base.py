"""The warehouse backend interface: the one seam between engine-neutral code and an engine.

Shared code (extraction landing, model materialization, checks) talks to a :class:`Warehouse`
and never asks which engine it is: engine differences are class attributes (``dialect``,
``supports_transactions``) and the few methods each backend implements. SQL crosses this
boundary as sqlglot expressions or as text already rendered in ``dialect``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

from pipelines.errors import TerminalWarehouseError

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Relation:
    """A table or view in the warehouse: schema (dataset) and name."""

    schema: str
    name: str

    def to_table(self) -> exp.Table:
        return exp.table_(
            exp.to_identifier(self.name, quoted=True),
            db=exp.to_identifier(self.schema, quoted=True),
        )

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def folded(self) -> tuple[str, str]:
        """Schema and name as the warehouses compare unquoted names: without case."""
        return self.schema.lower(), self.name.lower()


@dataclass(frozen=True)
class NativeTable:
    """A table of an operational database, for a warehouse that can read that kind of database
    itself (``Warehouse.reads_natively``): the rows then go from the source to the warehouse's
    storage without passing through Arrow in this process. ``url`` holds credentials: it never
    goes into a message."""

    kind: str  # "postgres"
    url: str
    identifier: str  # the table's name in the source

    def __repr__(self) -> str:
        return f"NativeTable({self.kind!r}, <url>, {self.identifier!r})"


@dataclass(frozen=True)
class NativeScan:
    """An attached :class:`NativeTable`: what to select from, its columns with the types the
    warehouse reads them as (in ``dialect``), in the source's order, and how wide its rows are."""

    table: exp.Table
    columns: list[tuple[str, str]]
    #: bytes of a wide row (an estimate from the first rows)
    row_bytes: int


def _literal(value: Any) -> exp.Expression:
    """A Python value as a SQL literal every dialect reads the same way."""
    from datetime import datetime

    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    if isinstance(value, datetime):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("TIMESTAMPTZ"))
    return exp.Literal.string(str(value))


def keys_match(keys: Sequence[str], left: str, right: str) -> exp.Condition:
    """``left.k = right.k`` for every key column ``k`` (two aliased relations)."""
    return exp.and_(
        *[
            exp.column(k, table=left, quoted=True).eq(exp.column(k, table=right, quoted=True))
            for k in keys
        ]
    )


def merge_statement(
    target: Relation,
    source: exp.Table | exp.Query,
    keys: Sequence[str],
    columns: Sequence[str],
    *,
    delete_when: exp.Expr | None = None,
) -> exp.Merge:
    """``MERGE`` into ``target`` (aliased ``t``) from ``source`` (a table or a query, aliased
    ``s``) on equal ``keys``: a row of ``s`` whose key ``t`` holds replaces that row's other
    ``columns`` (or, where ``delete_when`` holds, deletes it); any other row is inserted
    (unless ``delete_when`` holds for it). ``delete_when`` is a condition on ``s``. One
    builder for the incremental models' merges and the backends' keyed bookkeeping writes;
    each backend renders it."""

    def column(name: str, table: str | None = None) -> exp.Column:
        return exp.column(name, table=table, quoted=True)

    into = target.to_table()
    into.set("alias", exp.TableAlias(this=exp.to_identifier("t")))
    using = source.copy() if isinstance(source, exp.Table) else exp.Subquery(this=source.copy())
    using.set("alias", exp.TableAlias(this=exp.to_identifier("s")))
    whens: list[exp.When] = []
    if delete_when is not None:
        whens.append(
            exp.When(
                matched=True, source=False, condition=delete_when.copy(), then=exp.var("DELETE")
            )
        )
    updates = [c for c in columns if c not in keys]
    if updates:
        whens.append(
            exp.When(
                matched=True,
                source=False,
                then=exp.Update(expressions=[column(c).eq(column(c, "s")) for c in updates]),
            )
        )
    whens.append(
        exp.When(
            matched=False,
            source=False,
            condition=exp.not_(delete_when.copy()) if delete_when is not None else None,
            then=exp.Insert(
                this=exp.Tuple(expressions=[column(c) for c in columns]),
                expression=exp.Tuple(expressions=[column(c, "s") for c in columns]),
            ),
        )
    )
    return exp.Merge(
        this=into,
        using=using,
        on=keys_match(keys, "t", "s"),
        whens=exp.Whens(expressions=whens),
    )


class Warehouse(ABC):
    """One open session with a warehouse. Use as a context manager or call :meth:`close`."""

    #: sqlglot dialect the backend speaks; models are compiled to it.
    dialect: ClassVar[str]
    #: True when DDL and DML can be grouped in one atomic transaction.
    supports_transactions: ClassVar[bool] = False
    #: SQL type of :meth:`row_hash` values, in ``dialect``.
    row_hash_type: ClassVar[str]
    #: rows per Arrow batch a load hands the backend (what it appends best in one piece)
    landing_batch_rows: ClassVar[int] = 50_000

    # -- lifecycle ----------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    @property
    def exclusive(self) -> threading.RLock:
        """Held while one thread needs the session to itself across several statements (a
        model's whole build, the end-of-run publish), so that a thread that outlives its step
        and the resource teardown never use the session at once."""
        lock: threading.RLock | None = self.__dict__.get("_exclusive")
        if lock is None:
            lock = self.__dict__.setdefault("_exclusive", threading.RLock())
        return lock

    @contextmanager
    def builders(self) -> Iterator[list[Warehouse]]:
        """Sessions that may build models at the same time, each in its own transactions:
        this one, and as many more as the backend is set to run (closed on leaving). This
        base yields this session alone: models are built one after another."""
        yield [self]

    def publish(self) -> str | None:
        """End of a run: make what it committed visible to readers, then close the session.

        Returns where readers find it when that moved (a published file), else None.
        Backends whose readers see every commit directly only close. A backend that keeps
        deleted rows may rewrite tables without them first (:attr:`compacted`).
        """
        self.close()
        return None

    @property
    def compacted(self) -> list[Relation]:
        """The tables the last :meth:`publish` rewrote without their deleted rows."""
        return list(self.__dict__.get("_compacted", []))

    @property
    def compact_failure(self) -> str | None:
        """Why the last :meth:`publish` stopped compacting (it published all the same)."""
        return self.__dict__.get("_compact_failure")

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for humans (a file path, a project id); never holds secrets."""

    # -- SQL ----------------------------------------------------------------------------------
    def render(self, sql: exp.Expression | exp.Query | str) -> str:
        """SQL text in ``dialect``; an expression the dialect cannot express is an error, never
        silently changed (sqlglot's default would drop what it cannot write)."""
        return sql if isinstance(sql, str) else self.sql_for(sql)

    @classmethod
    def sql_for(cls, expression: exp.Expression | exp.Query, *, pretty: bool = False) -> str:
        from sqlglot.errors import ErrorLevel, UnsupportedError

        try:
            text: str = cls.prepare(expression).sql(
                dialect=cls.dialect, pretty=pretty, unsupported_level=ErrorLevel.RAISE
            )
        except UnsupportedError as exc:
            raise TerminalWarehouseError(
                f"this SQL cannot be written for {cls.dialect}: {exc}\n  "
                f"{' '.join(expression.sql(dialect='duckdb').split())[:300]}"
            ) from None
        return text

    @classmethod
    def prepare(cls, expression: Any) -> Any:
        """Rewrite, on a copy, what ``dialect`` spells differently with the same meaning; raise
        UnsupportedError for what it cannot express. The default changes nothing."""
        return expression

    @abstractmethod
    def execute(self, sql: exp.Expression | str) -> None:
        """Run a statement whose result is not needed."""

    @abstractmethod
    def query(self, sql: exp.Expression | str) -> pa.Table:
        """Run a query and return its full result as Arrow (small results only)."""

    def scalar(self, sql: exp.Expression | str) -> Any:
        table = self.query(sql)
        return table.column(0)[0].as_py() if table.num_rows else None

    def estimate_bytes(self, sql: exp.Expression | exp.Query | str) -> int | None:
        """The bytes a query would scan, estimated without running it, where the engine can
        say (BigQuery's dry run); None elsewhere."""
        return None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group statements atomically where the backend can; a no-op elsewhere."""
        yield

    # -- objects ------------------------------------------------------------------------------
    @abstractmethod
    def ensure_schema(self, schema: str) -> None: ...

    @abstractmethod
    def exists(self, relation: Relation) -> bool: ...

    @abstractmethod
    def is_view(self, relation: Relation) -> bool:
        """True when ``relation`` exists and is a view (not a table)."""

    @abstractmethod
    def columns(self, relation: Relation) -> list[tuple[str, str]]:
        """(name, type as the engine spells it) of a table or view, in order."""

    def row_count(self, relation: Relation) -> int:
        count = self.scalar(exp.select(exp.Count(this=exp.Star())).from_(relation.to_table()))
        return int(count or 0)

    def replace_with_select(
        self, relation: Relation, select: exp.Query, *, kind: str = "TABLE"
    ) -> None:
        """Atomically create or replace a table/view with the result of ``select``."""
        self.ensure_schema(relation.schema)
        self.execute(
            exp.Create(this=relation.to_table(), kind=kind, replace=True, expression=select)
        )

    @abstractmethod
    def execute_dml(self, statement: exp.Expression) -> int:
        """Run an UPDATE, DELETE or MERGE; the number of rows it touched."""

    @abstractmethod
    def insert_select(self, relation: Relation, columns: Sequence[str], select: exp.Query) -> int:
        """INSERT INTO relation (columns) <select>; columns not named stay NULL. Returns rows inserted."""

    @staticmethod
    def _insert(relation: Relation, columns: Sequence[str], select: exp.Query) -> exp.Insert:
        names = [exp.to_identifier(name, quoted=True) for name in columns]
        return exp.Insert(
            this=exp.Schema(this=relation.to_table(), expressions=names), expression=select
        )

    def add_column(self, relation: Relation, name: str, type_sql: str) -> None:
        """ALTER TABLE ... ADD COLUMN; ``type_sql`` as :meth:`columns` reports it."""
        kind = exp.DataType.build(type_sql, dialect=self.dialect)
        self.execute(
            exp.Alter(
                this=relation.to_table(),
                kind="TABLE",
                actions=[exp.ColumnDef(this=exp.to_identifier(name, quoted=True), kind=kind)],
            )
        )

    def rename(self, relation: Relation, name: str) -> None:
        """ALTER TABLE ... RENAME TO ``name`` (in the same schema)."""
        self.execute(
            exp.Alter(
                this=relation.to_table(),
                kind="TABLE",
                actions=[
                    exp.AlterRename(this=exp.Table(this=exp.to_identifier(name, quoted=True)))
                ],
            )
        )

    def release_cache(self) -> None:  # noqa: B027 (an optional hook: most engines keep nothing)
        """Let the engine drop what it caches of committed data (a long load calls this between
        its commits). The default does nothing."""

    @contextmanager
    def memory_for_increments(self) -> Iterator[None]:
        """Work inside builds increments: each reads a few rows of big tables once, so an
        engine that caches what it reads may keep little (a bounded buffer pool, whose memory
        is used again, rather than fresh memory for every page read). A build inside
        :meth:`memory_for_whole_build` lifts the bound while it runs. Called on the session
        that opened the builders, with no build running; the default does nothing."""
        yield

    @contextmanager
    def memory_for_whole_build(self) -> Iterator[None]:
        """A whole build (or a retry after running out of memory) gets the engine's whole
        memory while it runs, whatever bound :meth:`memory_for_increments` set (on this
        session or the one it was opened from). The default does nothing."""
        yield

    def memory_bounded(self) -> bool:
        """Whether work on this session now runs under the bound of
        :meth:`memory_for_increments` (an out-of-memory error there is worth a retry with the
        whole memory). The default: never."""
        return False

    @abstractmethod
    def row_hash(self, columns: Sequence[exp.Expression]) -> exp.Expression:
        """A 64-bit fingerprint of a row's values (NULL-safe), to tell changed rows from unchanged."""

    def annotate(  # noqa: B027 (an optional hook: an engine without comments skips it)
        self, relation: Relation, description: str, labels: Mapping[str, str]
    ) -> None:
        """Attach a description (and, where the engine has them, labels) to a published table
        or view, for people browsing the warehouse. ``labels`` keys and values are lowercase
        letters, digits, ``_`` and ``-`` (at most 63 characters)."""

    def copy_table(self, source: Relation, target: Relation) -> None:
        """Replace ``target`` with a copy of table ``source`` (where a candidate starts from the
        published version)."""
        self.replace_with_select(target, exp.select("*").from_(source.to_table()))

    def publish_table(self, candidate: Relation, target: Relation) -> None:
        """Replace ``target`` by the audited table ``candidate`` in one atomic statement (a
        view of that name is dropped first), then drop the candidate."""
        if self.is_view(target):
            self.drop(target, kind="VIEW")
        self.replace_with_select(target, exp.select("*").from_(candidate.to_table()))
        self.drop(candidate)

    def median(self, value: exp.Expression) -> exp.Expression:
        """The aggregate median of ``value`` (the middle of the two middle values for an even
        count), in ``dialect``."""
        return exp.Median(this=value)

    def drop(self, relation: Relation, *, kind: str = "TABLE") -> None:
        self.execute(exp.Drop(tables=[relation.to_table()], kind=kind, exists=True))

    def drop_existing(self, relation: Relation) -> None:
        """Drop the table or view of that name, whichever it is, if there is one."""
        if self.exists(relation):
            self.drop(relation, kind="VIEW" if self.is_view(relation) else "TABLE")

    # -- reading operational databases directly (optional) -------------------------------------
    #: the pseudo-column naming a row of a table (for the rows a native load must take out)
    row_id_column: ClassVar[str | None] = None

    def reads_natively(self, kind: str) -> bool:
        """Whether this warehouse can scan a ``kind`` database itself (see :class:`NativeTable`)."""
        return False

    def native_table(self, source: NativeTable) -> AbstractContextManager[NativeScan]:
        """Attach ``source`` for the duration of the context (outside any transaction). Raises
        a WarehouseError when the source cannot be attached or has no such table."""
        raise TerminalWarehouseError(f"{type(self).__name__} cannot read {source.kind} itself")

    def widens_losslessly(self, source_type: str, target_type: str) -> bool:
        """Whether every value of ``source_type`` casts to ``target_type`` unchanged and without
        error (both in ``dialect``), as the source contract would coerce it."""
        return False

    def query_batches(self, sql: exp.Expression | str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The result of ``sql`` in batches of at most ``batch_rows`` rows. Run no other statement
        on this session until the iterator is exhausted."""
        yield from self.query(sql).to_batches(batch_rows)

    # -- Arrow landing ------------------------------------------------------------------------
    @abstractmethod
    def arrow_source(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> AbstractContextManager[exp.Table]:
        """The streamed batches as a table that one statement inside the block reads, once.

        Memory stays bounded: rows flow from the producer into the statement. An exception the
        producer raises (a source error) surfaces as itself, not as a warehouse error.
        """

    @abstractmethod
    def replace_from_arrow(
        self, relation: Relation, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> int:
        """Replace ``relation`` with the streamed batches (bounded memory); returns rows written.

        Readers see the old table until the new one is complete.
        """

    def insert_row(self, relation: Relation, schema: pa.Schema, row: Mapping[str, Any]) -> None:
        """Append one bookkeeping row (audit, state); see :meth:`insert_rows`."""
        self.insert_rows(relation, schema, [row])

    def insert_rows(
        self, relation: Relation, schema: pa.Schema, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Append a few bookkeeping rows in one INSERT ... VALUES once the table exists; the
        first rows create it with ``schema``'s types."""
        import pyarrow as pa

        if not rows:
            return
        if not self.exists(relation):
            self.append_arrow(
                relation, pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
            )
            return
        values = [
            exp.Tuple(expressions=[_literal(row.get(field.name)) for field in schema])
            for row in rows
        ]
        self.execute(self._insert(relation, schema.names, exp.values(values)))  # type: ignore[arg-type]

    def replace_rows(
        self, relation: Relation, schema: pa.Schema, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Bookkeeping rows keyed by ``key`` (a model's state): drop the rows holding their key
        values, then append them (see :meth:`insert_rows`)."""
        if rows and self.exists(relation):
            values = [_literal(row[key]) for row in rows]
            self.execute(
                exp.delete(relation.to_table(), where=exp.column(key, quoted=True).isin(*values))
            )
        self.insert_rows(relation, schema, rows)

    @abstractmethod
    def append_arrow(
        self, relation: Relation, table: pa.Table, *, add_columns: bool = False
    ) -> int:
        """Append rows by column name, creating the table from the Arrow schema if it does not exist.

        Columns the table lacks are an error, or with ``add_columns`` are added first (as
        nullable columns of the Arrow type); columns the rows lack stay NULL.
        """
