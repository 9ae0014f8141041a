"""Land one source table: extract -> contract -> append to `raw.<source>__<table>`.

`raw` is append-only: each load appends the rows that are new or changed since the table's
latest landed version (a row fingerprint tells them apart), so rerunning a load, or an
incremental pull whose lookback re-reads rows, never duplicates anything. Rows that fail the
source contract go to `ssot_meta.quarantine` with their reasons. For sources that hard-delete,
keys that disappeared land as tombstones (`_ssot_op = 'delete'`).

Everything a load writes (raw rows, tombstones, quarantine rows, the cursor and file state, the
audit entry) commits in one transaction, and the counts reconcile:
rows read == rows landed + rows unchanged + rows quarantined, or the load fails loudly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.errors import (
    LoadCancelledError,
    SourceError,
    SsotError,
    TerminalSourceError,
    WarehouseError,
    WarehouseMemoryError,
)
from pipelines.extract import Connector, Extracted, Pull, connector_for
from pipelines.meta import (
    ALREADY_QUARANTINED,
    QUARANTINE,
    AuditEntry,
    LoadState,
    read_load_state,
    record_audit,
    write_load_state,
)
from pipelines.modelling.graph import source_relation
from pipelines.modelling.materialize import timestamp_literal
from pipelines.modelling.state import record_change
from pipelines.project import META_SCHEMA
from pipelines.quality.contracts import Contract, Reject, contract_schema, quarantine_rows
from pipelines.threads import work_ahead
from pipelines.urls import scrub
from pipelines.warehouse.base import NativeTable, Relation

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceSpec, SourceTableSpec
    from pipelines.project import Project
    from pipelines.warehouse.base import Warehouse

_log = logging.getLogger(__name__)

#: what the audit entry of a load that pulled the whole table says
FULL_PULL = "full pull"
BATCH_ID_COLUMN = "_ssot_batch_id"
LOADED_AT_COLUMN = "_ssot_loaded_at"
OP_COLUMN = "_ssot_op"
ROW_HASH_COLUMN = "_ssot_row_hash"
LANDING_COLUMNS = (BATCH_ID_COLUMN, LOADED_AT_COLUMN, OP_COLUMN, ROW_HASH_COLUMN)


@dataclass(frozen=True)
class LoadResult:
    relation: Relation
    batch_id: str
    rows_read: int
    rows_landed: int
    rows_unchanged: int
    rows_quarantined: int
    rows_deleted: int
    extra_columns: tuple[str, ...]
    incremental: bool
    #: "streamed" (source -> raw in one statement), "native" (the warehouse read the source
    #: itself) or "staged" (through a scratch table)
    path: str
    duration_s: float
    #: why a first load did not take the native path, or rolled back from it (None: it did, or
    #: it was not tried)
    native_note: str | None = None
    #: when this load wrote its rows (each holds it in `_ssot_loaded_at`); None: it wrote none
    loaded_at: datetime | None = None
    #: the table's cursor after this load, the highest value read so far (None: no cursor yet)
    cursor: Any = None
    #: of ``rows_quarantined``, the records the quarantine already held: read again (by a
    #: cursor's lookback, from a re-exported file, or twice in this load), held once
    rows_already_quarantined: int = 0


# ---------------------------------------------------------------------------------------------


def land_table(
    project: Project,
    warehouse: Warehouse,
    source: SourceSpec,
    table: SourceTableSpec,
    *,
    run_id: str,
    full_refresh: bool = False,
    batch_rows: int | None = None,
    replay: Iterable[Extracted] | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Append what is new in the source table to raw; quarantine what fails the contract.

    ``replay`` lands these rows (quarantined rows given another chance) instead of pulling
    from the source; the table's cursor and file state are left as they are. A load that fails
    leaves raw, the quarantine and the state untouched and is recorded in the audit log as
    failed, with its (password-free) reason. ``batch_rows``: rows per batch (default: what the
    warehouse backend appends best). ``stop``: once set (the run is cancelled), the load stops
    at its next batch and keeps nothing (a load the warehouse reads natively in one statement
    runs to its end).
    """
    started = time.perf_counter()
    batch_rows = batch_rows or warehouse.landing_batch_rows
    try:
        connector = connector_for(project.source_url(source), source=source.name, root=project.root)
        previous = (
            LoadState() if full_refresh else read_load_state(warehouse, source.name, table.name)
        )
        if previous.batch_id is not None and not warehouse.exists(
            source_relation(source.name, table.name)
        ):
            previous = LoadState()  # raw was dropped by hand: pull everything again
        # A database read keeps one shape from its first batch to its last: its rows stream
        # straight into raw, written once. Files and APIs may change shape mid-read, and a
        # replay mixes records of many loads: those land through a scratch table first.
        load = _Load(warehouse, source, table, previous, run_id, started, stop)
        if warehouse.supports_transactions:  # where first loads go through a fresh table
            warehouse.drop_existing(load.fresh)  # left by a first load that was killed
        if replay is None and connector.stable_schema:
            try:
                return load.streamed(connector, batch_rows)
            except _RepeatedVersions:
                # rolled back: land again, counting afresh, through the scratch table, which
                # removes them
                load = _Load(warehouse, source, table, previous, run_id, started, stop)
        return load.staged(connector, batch_rows, replay)
    except Exception as exc:
        reason = scrub(f"{type(exc).__name__}: {exc}", project.source_url(source))
        # the warehouse itself may be what failed: the load's own error matters more
        with contextlib.suppress(WarehouseError):
            record_audit(
                warehouse,
                AuditEntry(
                    run_id=run_id,
                    asset=f"raw/{source.name}/{table.name}",
                    kind="load" if replay is None else "replay",
                    rows_in=0,
                    rows_out=0,
                    rows_quarantined=0,
                    duration_s=time.perf_counter() - started,
                    outcome="failed",
                    detail=reason[:2000],
                ),
            )
        raise


#: a first load commits every this many batches (with DuckDB about a million rows) and releases
#: the engine's cache of them, so its memory stays flat however big the table
FIRST_LOAD_COMMIT_BATCHES = 8


#: a native first load with more failing rows than this lands through Arrow instead, which
#: quarantines rows in bulk (below it, they move out in one query)
NATIVE_QUARANTINE_LIMIT = 10_000
#: the name a native load's read-back gives the engine's row id
NATIVE_ROW_ID = "_ssot_row_id"
#: a native load's read-back comes in batches of at most this many rows and about this many
#: bytes (pandera's fixed cost per batch makes fewer, bigger batches cheaper)
NATIVE_CHECK_BATCH_ROWS = 1 << 18
NATIVE_CHECK_BATCH_BYTES = 64 << 20


class _NotNative(Exception):
    """A native first load that does not apply after all (rolled back; Arrow lands the table)."""


class _RepeatedVersions(Exception):
    """A streamed pull held the same version of a key twice (the source has duplicate rows)."""


class _Load:
    """One load of one source table: its identity, its running counts, and its two paths."""

    def __init__(
        self,
        warehouse: Warehouse,
        source: SourceSpec,
        table: SourceTableSpec,
        previous: LoadState,
        run_id: str,
        started: float,
        stop: threading.Event | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.stop = stop
        self.source = source
        self.table = table
        self.previous = previous
        self.run_id = run_id
        self.started = started
        self.relation = source_relation(source.name, table.name)
        self.batch_id = f"{run_id}:{source.name}.{table.name}:{uuid.uuid4().hex[:8]}"
        self.loaded_at = datetime.now(UTC)
        self.contract = Contract(source.name, table)
        self.declared = contract_schema(table)
        self.pull = _pull_for(table, previous)
        self.files: dict[str, str] = dict(previous.files or {})
        self.read = self.valid = self.quarantined = 0
        self.quarantine: list[pa.Table] = []
        #: of the rows quarantined, those the quarantine already held (known once it is added)
        self.already_quarantined = 0
        self.top_cursor: Any = None
        self.scratch = Relation(META_SCHEMA, f"_landing__{source.name}__{table.name}")
        #: where a first load lands before it takes raw's place
        self.fresh = Relation(self.relation.schema, f"_ssot_first_load__{self.relation.name}")
        self.names: list[str] = []  # the columns this load read, in order
        self.path = "staged"
        #: why a native first load was not used or rolled back (None: not tried, or it landed)
        self.fallback: str | None = None
        #: raw's type of each declared column, for a native first load
        self._types: dict[str, str] = {}

    # -- the two paths ------------------------------------------------------------------------
    def streamed(self, connector: Connector, batch_rows: int) -> LoadResult:
        """Source -> contract -> raw in one statement: each row is written once."""
        self.path = "streamed"
        native = self._native_source(connector)
        if native is None:
            unique = connector.keys_are_unique(self.table)
        else:
            # While the engine writes, a helper thread asks the source's catalog about the key
            # and imports what the contract's checks need (pandas and pandera, about 0.4 s).
            with ThreadPoolExecutor(2, thread_name_prefix="ssot-native-load") as helper:
                ready = helper.submit(self.contract.prepare)
                asked = helper.submit(connector.keys_are_unique, self.table)
                result = self._native_first_load(connector, native, asked, ready)
            if result is not None:
                return result
            unique = asked.result()
        units = connector.read(self.table, batch_rows=batch_rows, pull=self.pull)
        schema, batches = _first_shape(
            self.validated(coalesce(_read_ahead(units), batch_rows)), self.declared
        )
        self.names = list(schema.names)
        warehouse = self.warehouse
        try:
            # no rows: the incoming columns and their warehouse types, for the schema checks
            warehouse.replace_from_arrow(self.scratch, schema, ())
            has_rows = holds_rows(warehouse, self.relation)
            if warehouse.supports_transactions and not has_rows:
                landed, deleted = self._first_load(connector, schema, batches, unique)
                return self._result(landed, deleted, replay=False)
            with warehouse.transaction():
                self._reconcile_schema(self.scratch)
                with warehouse.arrow_source(schema, self._same_shape(schema, batches)) as rows:
                    landed = self._append_changed(
                        rows, schema.names, dedupe=False, compare=has_rows
                    )
                # A source that cannot repeat a key needs no check (it costs a pass over the rows).
                if landed and not unique and self._repeated_versions(self.relation):
                    raise _RepeatedVersions
                deleted = self._finish(connector, landed, keys=None, replay=False)
        finally:
            warehouse.drop(self.scratch)
        return self._result(landed, deleted, replay=False)

    def _first_load(
        self,
        connector: Connector,
        schema: pa.Schema,
        batches: Iterator[pa.RecordBatch],
        unique: bool,
    ) -> tuple[int, int]:
        """The first load of a table (raw missing or empty): often a whole table of millions of
        rows, so memory must not grow with it. The rows stream into a fresh table beside raw in
        commits of FIRST_LOAD_COMMIT_BATCHES batches, each followed by releasing the engine's
        cache of what it wrote (an open transaction keeps what it appends in memory); the last
        transaction puts the fresh table in raw's place together with the state, quarantine and
        audit entry. A failure drops the fresh table: raw stays as it was. Rows are written
        once, as on the streamed path."""
        warehouse = self.warehouse
        fresh = self.fresh
        try:
            self._create_fresh()
            landed = 0
            for chunk in _chunks(self._same_shape(schema, batches), FIRST_LOAD_COMMIT_BATCHES):
                with warehouse.transaction(), warehouse.arrow_source(schema, chunk) as rows:
                    landed += _append_changed(
                        warehouse,
                        fresh,
                        rows,
                        self.table,
                        schema.names,
                        self._landing_values(),
                        dedupe=False,
                        compare=False,  # raw held nothing to compare with
                    )
                warehouse.release_cache()
            with warehouse.transaction():
                if landed and not unique and self._repeated_versions(fresh):
                    raise _RepeatedVersions
                warehouse.drop_existing(self.relation)
                warehouse.rename(fresh, self.relation.name)
                deleted = self._finish(connector, landed, keys=None, replay=False, first=True)
        except BaseException:
            with contextlib.suppress(WarehouseError):
                warehouse.drop_existing(fresh)
            raise
        return landed, deleted

    def _create_fresh(self) -> None:
        """The empty fresh table a first load fills: raw's columns when raw exists (empty), the
        scratch table's otherwise, with the schema policy applied as to raw (raw itself is left
        as it is until the last transaction)."""
        warehouse = self.warehouse
        if warehouse.exists(self.relation):
            warehouse.replace_with_select(
                self.fresh,
                exp.select(exp.Star()).from_(self.relation.to_table()).where(exp.false()),
            )
        _reconcile_schema(
            warehouse, self.fresh, self.scratch, self.source, self.table, self.declared.names
        )

    # -- the native first load ------------------------------------------------------------------
    def _native_source(self, connector: Connector) -> NativeTable | None:
        """The source table, when this is a first load (raw missing or empty) that the warehouse
        can read from the source itself."""
        warehouse = self.warehouse
        if not warehouse.supports_transactions or warehouse.row_id_column is None:
            return None
        native = connector.native_table(self.table, self.pull)
        if native is None or not warehouse.reads_natively(native.kind):
            return None
        if holds_rows(warehouse, self.relation):
            return None
        return native

    def _native_first_load(
        self,
        connector: Connector,
        native: NativeTable,
        unique: Future[bool],
        ready: Future[None],
    ) -> LoadResult | None:
        """A first load the warehouse reads from the source itself: one INSERT ... SELECT with
        the contract's types, the landing columns and the fingerprint, in parallel, no Arrow in
        this process. Then the contract's checks (the same pandera schema) run over the checked
        columns read back, and the rows that fail move to the quarantine with their reasons.
        The insert commits into the fresh table (nobody reads it); what readers see (raw, the
        quarantine, the state, the audit entry) then commits in one transaction, as after a
        first load through Arrow.

        None (nothing written; the Arrow path lands the table, and the audit entry says why)
        when it does not apply: the source cannot be attached, a source column the contract
        would have to convert (or cannot hold), columns other than the declared ones; or when,
        after the insert, more than NATIVE_QUARANTINE_LIMIT rows fail or the engine runs out of
        memory. Any other error after the insert fails the load (reading the source again
        would not help): the fresh table is dropped and raw stays as it was."""
        warehouse, fresh = self.warehouse, self.fresh
        names = list(self.declared.names)
        inserting = False
        try:
            with warehouse.native_table(native) as scan:
                self._native_types(scan.columns)
                inserting = True
                # The insert commits on its own: the fresh table is nobody's to read yet, and
                # DuckDB commits rows it wrote and deleted in one transaction (the failing rows,
                # below) by writing them again, which took seconds on millions of rows.
                with warehouse.transaction():
                    landed = warehouse.insert_select(
                        fresh,
                        [*names, *LANDING_COLUMNS],
                        self._native_select(scan.table, names, self._types),
                    )
                with warehouse.transaction():
                    order = [name for name, _ in scan.columns]  # the source's, as read
                    ready.result()
                    rejected = self._check_landed(fresh, order, scan.row_bytes)
                    self.path, self.names = "native", names
                    self.read, self.quarantined = landed, rejected
                    self.valid = landed = landed - rejected
                    if warehouse.row_count(fresh) != landed:
                        raise SsotError(
                            f"load of {self.source.name}.{self.table.name}: the fresh table "
                            f"holds {warehouse.row_count(fresh)} rows, not the {landed} that "
                            "passed; this is a bug in pipelines.landing"
                        )
                    if landed and not unique.result() and self._repeated_versions(fresh):
                        raise _RepeatedVersions
                    warehouse.drop_existing(self.relation)
                    warehouse.rename(fresh, self.relation.name)
                    deleted = self._finish(connector, landed, keys=None, replay=False, first=True)
        except (_NotNative, WarehouseError) as exc:
            with contextlib.suppress(WarehouseError):
                warehouse.drop_existing(fresh)
            if inserting and not isinstance(exc, _NotNative | WarehouseMemoryError):
                raise
            # said in the audit entry's detail and the log: a slower load should say why
            what = "rolled back" if inserting else "not used"
            self.fallback = (
                f"native load {what}: "
                + scrub(
                    str(exc) if isinstance(exc, _NotNative) else f"{type(exc).__name__}: {exc}",
                    native.url,
                )[:300]
            )
            _log.log(
                logging.WARNING if inserting else logging.INFO,
                "%s.%s: %s; landing through Arrow",
                self.source.name,
                self.table.name,
                self.fallback,
            )
            self.read = self.valid = self.quarantined = 0
            self.quarantine.clear()
            self.top_cursor = None
            self.path, self.names = "streamed", []
            return None
        except BaseException:
            with contextlib.suppress(WarehouseError):
                warehouse.drop_existing(fresh)
            raise
        return self._result(landed, deleted, replay=False)

    def _native_types(self, source_columns: list[tuple[str, str]]) -> None:
        """Create the fresh table (raw's columns) and keep the warehouse type of each declared
        column in ``self._types``; _NotNative unless the source has exactly the declared columns
        and each of its types widens to the declared one without changing a value."""
        warehouse = self.warehouse
        declared = list(self.declared.names)
        source = dict(source_columns)
        reserved = {(warehouse.row_id_column or "").lower(), NATIVE_ROW_ID}
        if set(source) != set(declared):
            missing = sorted(set(declared) - set(source))
            extra = sorted(set(source) - set(declared))
            raise _NotNative(
                "the source's columns are not the declared ones"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not declared: {', '.join(extra)})" if extra else "")
            )
        clash = sorted(n for n in declared if n.lower() in reserved)
        if clash:
            raise _NotNative(f"column {clash[0]!r} has a name the native load uses itself")
        warehouse.replace_from_arrow(self.scratch, self.declared, ())
        try:
            self._create_fresh()
        finally:
            warehouse.drop(self.scratch)
        target = dict(warehouse.columns(self.fresh))
        for name in declared:
            if not warehouse.widens_losslessly(source[name], target[name]):
                warehouse.drop(self.fresh)
                raise _NotNative(
                    f"column {name!r} is {source[name]} in the source and {target[name]} in "
                    "raw: the contract converts it"
                )
        self._types = {n: target[n] for n in declared}

    def _native_select(
        self, table: exp.Table, names: list[str], types: dict[str, str]
    ) -> exp.Select:
        """The source's columns cast to raw's types, the landing columns and the fingerprint,
        as the streamed path computes them from Arrow."""
        dialect = self.warehouse.dialect
        typed = exp.select(
            *[
                exp.cast(
                    exp.column(n, table="s", quoted=True),
                    exp.DataType.build(types[n], dialect=dialect),
                ).as_(n, quoted=True)
                for n in names
            ]
        ).from_(exp.alias_(table, "s"))
        data = [exp.column(n, table="c", quoted=True) for n in names]
        return exp.select(*data, *self._landing_values(), self.warehouse.row_hash(data)).from_(
            typed.subquery("c")
        )

    def _check_landed(self, fresh: Relation, order: list[str], row_bytes: int) -> int:
        """Run the contract's checks over the rows a native load wrote, and move those that
        fail to the quarantine with the contract's reasons, their values in the source's column
        ``order`` (as the Arrow path records them). Also takes the top cursor of the rows that
        pass, with the Arrow path's own function. The number of rows moved."""
        import numpy as np
        import pyarrow as pa

        warehouse, contract, cursor = self.warehouse, self.contract, self.table.cursor
        read = [*contract.checked_columns]
        if cursor and cursor not in read:
            read.append(cursor)
        if not read:
            return 0
        row_id = exp.column(warehouse.row_id_column or "rowid")
        read_back = exp.select(
            row_id.as_(NATIVE_ROW_ID), *[exp.column(n, quoted=True) for n in read]
        ).from_(fresh.to_table())
        failing: list[int] = []
        # batches of about NATIVE_CHECK_BATCH_BYTES (a row's checked columns are at most the row)
        rows_per_batch = max(
            1024, min(NATIVE_CHECK_BATCH_ROWS, NATIVE_CHECK_BATCH_BYTES // max(1, row_bytes))
        )
        for batch in warehouse.query_batches(read_back, rows_per_batch):
            checked = {n: batch.column(n) for n in contract.checked_columns}
            positions = contract.failing_rows(checked) if checked else []
            if positions:
                row_ids = batch.column(NATIVE_ROW_ID).to_pylist()
                failing += [row_ids[i] for i in positions]
                if len(failing) > NATIVE_QUARANTINE_LIMIT:
                    raise _NotNative(
                        f"more than {NATIVE_QUARANTINE_LIMIT} rows fail the contract; the "
                        "Arrow path quarantines them in bulk"
                    )
            if cursor:
                values = batch.column(cursor)
                if positions:  # the top cursor of the rows that pass
                    keep = np.ones(batch.num_rows, dtype=bool)
                    keep[positions] = False
                    values = values.filter(pa.array(keep))
                self._raise_top_cursor(values)
        if not failing:
            return 0
        these = row_id.isin(*[exp.Literal.number(i) for i in failing])
        rows = warehouse.query(
            exp.select(*[exp.column(n, quoted=True) for n in order])
            .from_(fresh.to_table())
            .where(these)
        )
        moved = 0
        for batch in rows.to_batches():
            result = contract.apply(batch, self.batch_id)
            if result.rows_valid:
                raise SsotError(
                    f"load of {self.source.name}.{self.table.name}: the contract passed rows "
                    "its checks had failed; this is a bug in pipelines.landing"
                )
            moved += result.rows_rejected
            self.quarantine.append(result.quarantine)
        deleted = warehouse.execute_dml(exp.delete(fresh.to_table()).where(these))
        if not moved == deleted == len(failing):
            raise SsotError(
                f"load of {self.source.name}.{self.table.name}: {len(failing)} rows failed the "
                f"contract, {moved} went to the quarantine and {deleted} left raw; this is a "
                "bug in pipelines.landing"
            )
        return len(failing)

    def staged(
        self, connector: Connector, batch_rows: int, replay: Iterable[Extracted] | None
    ) -> LoadResult:
        """Source -> contract -> scratch table -> raw: for sources whose shape may change."""
        import pyarrow as pa

        units = (
            connector.read(self.table, batch_rows=batch_rows, pull=self.pull)
            if replay is None
            else replay
        )
        warehouse = self.warehouse
        # The scratch table is written outside the transaction: DuckDB keeps a transaction's
        # small appends in memory until commit, and a load must not grow with the table. Only
        # what readers see (raw, quarantine, state, audit) commits atomically below.
        warehouse.drop(self.scratch)
        try:
            # Batches append one by one (bounded memory); a column that appears in a later
            # batch (a newer file, schema drift) is added to the scratch table as it comes.
            names = self.names
            for batch in self.validated(coalesce(_read_ahead(units), batch_rows)):
                warehouse.append_arrow(
                    self.scratch, pa.Table.from_batches([batch]), add_columns=True
                )
                names += [name for name in batch.schema.names if name not in names]
            if not names:  # nothing new: an empty scratch table with the contract's columns
                warehouse.replace_from_arrow(self.scratch, self.declared, ())
                names += self.declared.names
            with warehouse.transaction():
                self._reconcile_schema(self.scratch)
                landed = self._append_changed(
                    self.scratch.to_table(),
                    names,
                    dedupe=_has_repeated_keys(warehouse, self.scratch, self.table),
                )
                deleted = self._finish(
                    connector,
                    landed,
                    keys=self.scratch if self.pull.is_full else None,
                    replay=replay is not None,
                )
        finally:
            warehouse.drop(self.scratch)
        return self._result(landed, deleted, replay=replay is not None)

    # -- reading ------------------------------------------------------------------------------
    def validated(self, units: Iterable[Extracted]) -> Iterator[pa.RecordBatch]:
        """The rows that pass the contract; the others are kept for the quarantine."""

        for unit in units:
            if self.stop is not None and self.stop.is_set():
                raise LoadCancelledError(
                    f"load of {self.source.name}.{self.table.name} stopped: the run was "
                    f"cancelled after {self.read:,} rows were read; nothing of it was kept"
                )
            self.files.update(unit.files)
            if unit.batch is None:
                if unit.rejects:
                    rejected = quarantine_rows(
                        self.source.name, self.table.name, self.batch_id, unit.rejects
                    )
                    self.read += rejected.num_rows
                    self.quarantined += rejected.num_rows
                    self.quarantine.append(rejected)
                continue
            result = self.contract.apply(unit.batch, self.batch_id, unit.rejects)
            self.read += result.rows_in
            self.quarantined += result.rows_rejected
            if result.quarantine.num_rows:
                self.quarantine.append(result.quarantine)
            if result.valid.num_rows:
                self.valid += result.valid.num_rows
                if self.table.cursor:
                    self._raise_top_cursor(result.valid.column(self.table.cursor))
                yield _text_for_null_columns(result.valid)

    def _raise_top_cursor(self, values: pa.Array) -> None:
        """Keep the highest cursor value read (NaN and nulls never count)."""
        import pyarrow.compute as pc

        top = pc.max(values).as_py()
        if top is not None and (self.top_cursor is None or top > self.top_cursor):
            self.top_cursor = top

    def _same_shape(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        for batch in batches:
            if batch.schema.equals(schema):
                yield batch
                continue
            try:
                yield batch.select(schema.names).cast(schema)
            except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TerminalSourceError(
                    f"sources/{self.source.name}.yml, table {self.table.name!r}: the source "
                    f"changed its columns in the middle of a read ({exc}). Declare every "
                    "column with its type under `columns`."
                ) from None

    # -- SQL of a load (engine-neutral: sqlglot expressions, the backend renders them) --------
    def _landing_values(self) -> list[exp.Expression]:
        """_ssot_batch_id, _ssot_loaded_at and _ssot_op of the rows this load appends."""
        return [
            exp.Literal.string(self.batch_id),
            timestamp_literal(self.loaded_at),
            exp.Literal.string("upsert"),
        ]

    def _reconcile_schema(self, incoming_relation: Relation) -> None:
        _reconcile_schema(
            self.warehouse,
            self.relation,
            incoming_relation,
            self.source,
            self.table,
            self.declared.names,
        )

    def _append_changed(
        self, rows: exp.Table, names: list[str], *, dedupe: bool, compare: bool | None = None
    ) -> int:
        return _append_changed(
            self.warehouse,
            self.relation,
            rows,
            self.table,
            names,
            self._landing_values(),
            dedupe,
            compare,
        )

    def _repeated_versions(self, relation: Relation) -> bool:
        """Did this load append some (key, fingerprint) twice to ``relation``? (Only a source's
        duplicate rows.)"""
        keys = [*_key_columns(self.table), exp.column(ROW_HASH_COLUMN, quoted=True)]
        query = exp.select(exp.Count(this=exp.Star())).from_(
            exp.select(*keys)
            .from_(relation.to_table())
            .where(exp.column(BATCH_ID_COLUMN, quoted=True).eq(exp.Literal.string(self.batch_id)))
            .group_by(*keys)
            .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            .subquery("repeated")
        )
        return bool(self.warehouse.scalar(query))

    def _finish(
        self,
        connector: Connector,
        landed: int,
        *,
        keys: Relation | None,
        replay: bool,
        first: bool = False,
    ) -> int:
        """Tombstones, quarantine, the reconciliation, the state and the audit entry. ``first``:
        a first load, whose raw held nothing that could have been deleted since."""
        import pyarrow as pa

        warehouse, table, source = self.warehouse, self.table, self.source
        deleted = 0
        if table.delete_detection == "key_diff" and not replay and not first:
            deleted = _land_tombstones(
                warehouse,
                self.relation,
                keys,
                connector,
                self.contract,
                table,
                self.batch_id,
                self.loaded_at,
            )
        if landed or deleted:  # models reading this table have something new to build from
            record_change(warehouse, self.relation, self.run_id, at=self.loaded_at)
        if self.quarantine:
            rejected = pa.concat_tables(self.quarantine)
            added = _append_new_quarantine(warehouse, rejected, f"{source.name}__{table.name}")
            self.already_quarantined = rejected.num_rows - added
        if self.read != self.valid + self.quarantined:
            raise SsotError(
                f"load of {source.name}.{table.name} does not reconcile: read {self.read}, "
                f"valid {self.valid}, quarantined {self.quarantined}"
            )
        if not replay:
            write_load_state(warehouse, source.name, table.name, self._next_state())
        record_audit(
            warehouse,
            AuditEntry(
                run_id=self.run_id,
                asset=f"raw/{source.name}/{table.name}",
                kind="replay" if replay else "load",
                rows_in=self.read,
                rows_out=landed,
                rows_quarantined=self.quarantined,
                duration_s=time.perf_counter() - self.started,
                outcome="success",
                # a replay lands only the rows that pass now: it quarantines nothing
                detail=f"unchanged {self.valid - landed}"
                if replay
                else _detail(
                    self.valid - landed,
                    deleted,
                    self._extras(),
                    self.pull,
                    self.path if self.fallback is None else f"{self.path} ({self.fallback})",
                )
                + _already_quarantined(self.already_quarantined),
            ),
        )
        return deleted

    def _extras(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.declared.names)

    def _next_state(self) -> LoadState:
        """The cursor after this load: the highest cursor read so far (it never moves back)."""
        previous = self.previous
        cursor_type, cursor_value = previous.cursor_type, previous.cursor_value
        if self.top_cursor is not None:
            kind, text = _cursor_text(self.top_cursor)
            old = previous.cursor()
            new = LoadState(cursor_type=kind, cursor_value=text).cursor()
            if old is None or kind != cursor_type or (new is not None and new > old):  # type: ignore[operator]
                cursor_type, cursor_value = kind, text
        return LoadState(
            cursor_type=cursor_type,
            cursor_value=cursor_value,
            files=self.files or None,
            batch_id=self.batch_id,
        )

    def _result(self, landed: int, deleted: int, *, replay: bool) -> LoadResult:
        return LoadResult(
            relation=self.relation,
            batch_id=self.batch_id,
            rows_read=self.read,
            rows_landed=landed,
            rows_unchanged=self.valid - landed,
            rows_quarantined=self.quarantined,
            rows_already_quarantined=self.already_quarantined,
            rows_deleted=deleted,
            extra_columns=self._extras(),
            incremental=not replay and not self.pull.is_full,
            path=self.path,
            duration_s=time.perf_counter() - self.started,
            native_note=self.fallback,
            loaded_at=self.loaded_at if landed or deleted else None,
            # a replay of quarantined rows leaves the stored cursor as it was
            cursor=(self.previous if replay else self._next_state()).cursor(),
        )


def _first_shape(
    batches: Iterator[pa.RecordBatch], declared: pa.Schema
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The columns of the first batch (the contract's when there is none), and every batch."""
    import itertools

    first = next(batches, None)
    if first is None:
        return declared, iter(())
    return first.schema, itertools.chain([first], batches)


def _detail(unchanged: int, deleted: int, extras: tuple[str, ...], pull: Pull, path: str) -> str:
    parts = [f"unchanged {unchanged}", f"deleted {deleted}"]
    parts.append("incremental" if not pull.is_full else FULL_PULL)
    parts.append(path)
    if extras:
        parts.append(f"new columns: {', '.join(extras)}")
    return "; ".join(parts)


def _already_quarantined(rows: int) -> str:
    """What the audit detail says of quarantined rows the quarantine already held."""
    return f"; {ALREADY_QUARANTINED} {rows}" if rows else ""


def holds_rows(warehouse: Warehouse, relation: Relation) -> bool:
    """Whether the raw table ``relation`` holds rows: a load into it is not a first load (one
    into a missing or empty raw table is, and lands through a fresh table)."""
    return warehouse.exists(relation) and warehouse.row_count(relation) > 0


def pulls_whole_table(table: SourceTableSpec, state: LoadState) -> bool:
    """Whether a load from ``state`` reads the whole source table: the first one, or a table
    with neither a cursor nor landed files to skip (its every load reads every row)."""
    return _pull_for(table, state).is_full


def _pull_for(table: SourceTableSpec, state: LoadState) -> Pull:
    cursor = state.cursor()
    if isinstance(cursor, datetime):
        cursor = cursor - table.lookback_delta
    return Pull(cursor_floor=cursor if table.cursor else None, known_files=state.files or {})


def _text_for_null_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """An undeclared column that is NULL in every row has no type yet: land it as text."""
    import pyarrow as pa

    if not any(pa.types.is_null(field.type) for field in batch.schema):
        return batch
    schema = pa.schema(
        [
            field.with_type(pa.string()) if pa.types.is_null(field.type) else field
            for field in batch.schema
        ]
    )
    return batch.cast(schema)


# ---------------------------------------------------------------------------------------------
# SQL of a load (engine-neutral: sqlglot expressions, the backend renders them)


def _key_columns(table: SourceTableSpec, alias: str | None = None) -> list[exp.Column]:
    return [exp.column(key, table=alias, quoted=True) for key in table.primary_key]


def _version_order(table: SourceTableSpec, alias: str) -> list[exp.Ordered]:
    """Newest version first: the latest load, then (within one load) the highest cursor."""
    order = [exp.Ordered(this=exp.column(LOADED_AT_COLUMN, table=alias, quoted=True), desc=True)]
    if table.cursor:
        order.append(
            exp.Ordered(
                this=exp.column(table.cursor, table=alias, quoted=True),
                desc=True,
                nulls_first=False,
            )
        )
    return order


def latest_versions(
    relation: Relation,
    table: SourceTableSpec,
    *,
    tombstoned_only: bool = False,
    among: exp.Query | None = None,
) -> exp.Select:
    """Each key's latest landed row (a tombstone when the key was deleted).

    ``tombstoned_only``: only the keys that have a tombstone (the only ones whose latest row
    can be one); ``among``: only the keys this query selects (the key columns, by name).
    Ranking those instead of every key of a big raw table is what keeps an incremental
    load's cost near its increment's.
    """
    rank = exp.Window(
        this=exp.RowNumber(),
        partition_by=_key_columns(table, "v"),
        order=exp.Order(expressions=_version_order(table, "v")),
    )
    rows = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("v"))).from_(
        exp.alias_(relation.to_table(), "v")
    )
    if tombstoned_only:
        among = (
            exp.select(*_key_columns(table))
            .distinct()
            .from_(relation.to_table())
            .where(exp.column(OP_COLUMN, quoted=True).eq(exp.Literal.string("delete")))
        )
    if among is not None:
        # a join with the (few) keys: a correlated EXISTS made DuckDB probe every row of raw
        # (0.9 s on 10 M rows with no tombstone at all, against 2 ms). NULL-safe: rows landed
        # before a key column was added hold NULL in it, and ranking groups those too
        rows = rows.join(
            among.subquery("d"),
            on=exp.and_(
                *[
                    exp.NullSafeEQ(
                        this=exp.column(k, table="d", quoted=True),
                        expression=exp.column(k, table="v", quoted=True),
                    )
                    for k in table.primary_key
                ]
            ),
        )
    return rows.qualify(exp.EQ(this=rank, expression=exp.Literal.number(1)))


def _reconcile_schema(
    warehouse: Warehouse,
    relation: Relation,
    candidate: Relation,
    source: SourceSpec,
    table: SourceTableSpec,
    declared: list[str],
) -> None:
    """Create raw on the first load; afterwards apply the table's schema policy to changes."""
    incoming = [(n, t) for n, t in warehouse.columns(candidate) if n not in LANDING_COLUMNS]
    if not warehouse.exists(relation):
        hash_type = exp.DataType.build(warehouse.row_hash_type, dialect=warehouse.dialect)
        landing_types = {
            BATCH_ID_COLUMN: exp.DataType.build("TEXT"),
            LOADED_AT_COLUMN: exp.DataType.build("TIMESTAMPTZ"),
            OP_COLUMN: exp.DataType.build("TEXT"),
            ROW_HASH_COLUMN: hash_type,
        }
        select = (
            exp.select(
                "*",
                *[
                    exp.cast(exp.Null(), kind).as_(n, quoted=True)
                    for n, kind in landing_types.items()
                ],
            )
            .from_(candidate.to_table())
            .where(exp.false())
        )
        warehouse.replace_with_select(relation, select)
        return
    existing = {n: t for n, t in warehouse.columns(relation) if n not in LANDING_COLUMNS}
    where = f"sources/{source.name}.yml, table {table.name!r}"
    for name, kind in incoming:
        if name in existing and existing[name] != kind:
            raise TerminalSourceError(
                f"{where}: column {name!r} changed type from {existing[name]} to {kind}. "
                f"Declare the type you want under `columns`, or migrate raw.{relation.name} and "
                "rerun with --full-refresh."
            )
    added = [(n, t) for n, t in incoming if n not in existing]
    removed = [n for n in existing if n not in dict(incoming) and n not in declared]
    if table.schema_policy == "freeze" and (added or removed):
        changes = [f"new column {n!r} ({t})" for n, t in added] + [
            f"removed column {n!r}" for n in removed
        ]
        raise TerminalSourceError(
            f"{where}: schema_policy is freeze but the source changed: {'; '.join(changes)}. "
            "Declare the change in the yml or set schema_policy: evolve."
        )
    for name, kind in added:
        warehouse.add_column(relation, name, kind)


def _append_changed(
    warehouse: Warehouse,
    relation: Relation,
    rows: exp.Table,
    table: SourceTableSpec,
    data_columns: list[str],
    landing_values: list[exp.Expression],
    dedupe: bool,
    compare: bool | None = None,
) -> int:
    """Append the incoming rows that raw does not hold yet: a new key, or a version never landed.

    A version already landed (same key, same values) is not landed again, so reruns, lookback
    overlaps and full refreshes never duplicate rows nor re-append an old version on top of a
    newer one. A key whose latest row is a tombstone takes any version again (it came back).
    ``rows`` is read once (it may be a stream); with ``dedupe``, identical versions of a key
    within ``rows`` (a file exported twice) land once. ``compare``: whether raw may hold rows
    to compare with (by default: whether it holds any).
    """
    fingerprint = warehouse.row_hash([exp.column(n, table="c", quoted=True) for n in data_columns])

    def same_key(alias: str) -> exp.Condition:
        return exp.and_(
            *[
                exp.EQ(
                    this=exp.column(k, table=alias, quoted=True),
                    expression=exp.column(k, table="c", quoted=True),
                )
                for k in table.primary_key
            ]
        )

    landed_before = (
        exp.select("1")
        .from_(exp.alias_(relation.to_table(), "r"))
        .where(same_key("r"))
        .where(
            exp.EQ(this=exp.column(ROW_HASH_COLUMN, table="r", quoted=True), expression=fingerprint)
        )
    )
    deleted_now = (
        exp.select("1")
        .from_(latest_versions(relation, table, tombstoned_only=True).subquery("l"))
        .where(same_key("l"))
        .where(exp.column(OP_COLUMN, table="l", quoted=True).eq(exp.Literal.string("delete")))
    )
    unchanged = exp.and_(exp.Exists(this=landed_before), exp.Not(this=exp.Exists(this=deleted_now)))
    select = exp.select(
        *[exp.column(n, table="c", quoted=True) for n in data_columns],
        *landing_values,
        fingerprint,
    ).from_(exp.alias_(rows, "c"))
    # The filters cost a join and a sort: the first load of a table has nothing to compare
    # with, and a pull whose keys are unique holds no duplicate versions.
    if compare if compare is not None else warehouse.row_count(relation):
        select = select.where(exp.Not(this=exp.paren(unchanged)))
    if dedupe:
        first = exp.Window(
            this=exp.RowNumber(), partition_by=[*_key_columns(table, "c"), fingerprint]
        )
        select = select.qualify(exp.EQ(this=first, expression=exp.Literal.number(1)))
    columns = [*data_columns, BATCH_ID_COLUMN, LOADED_AT_COLUMN, OP_COLUMN, ROW_HASH_COLUMN]
    return warehouse.insert_select(relation, columns, select)


def _has_repeated_keys(warehouse: Warehouse, candidate: Relation, table: SourceTableSpec) -> bool:
    keys = _key_columns(table)
    distinct = exp.Count(
        this=exp.Distinct(expressions=[exp.Tuple(expressions=keys)] if len(keys) > 1 else keys)
    )
    query = exp.select(exp.Sub(this=exp.Count(this=exp.Star()), expression=distinct)).from_(
        candidate.to_table()
    )
    return bool(warehouse.scalar(query))


def _land_tombstones(
    warehouse: Warehouse,
    relation: Relation,
    keys: Relation | None,
    connector: Connector,
    contract: Contract,
    table: SourceTableSpec,
    batch_id: str,
    loaded_at: datetime,
) -> int:
    """Tombstones for keys live in raw but gone from the source (a key diff).

    ``keys`` holds every row of a full pull; without it (an incremental pull saw only changed
    rows, or the rows streamed past) the source is asked for its whole key set.
    """
    keys_relation = keys
    if keys_relation is None:
        keys_relation = Relation(META_SCHEMA, f"_landing_keys__{contract.source}__{table.name}")
        key_spec = table.model_copy(
            update={"columns": [table.column(k) for k in table.primary_key]}
        )
        key_contract = Contract(contract.source, key_spec)
        key_schema = contract_schema(key_spec)

        def key_batches() -> Iterator[pa.RecordBatch]:
            for unit in connector.read_keys(table):
                if unit.batch is not None:
                    yield key_contract.apply(unit.batch, batch_id).valid.select(key_schema.names)

        warehouse.replace_from_arrow(keys_relation, key_schema, key_batches())
    present = (
        exp.select("1")
        .from_(exp.alias_(keys_relation.to_table(), "k"))
        .where(
            exp.and_(
                *[
                    exp.EQ(
                        this=exp.column(k, table="k", quoted=True),
                        expression=exp.column(k, table="r", quoted=True),
                    )
                    for k in table.primary_key
                ]
            )
        )
    )
    # the keys raw holds and the source no longer has, found on the keys alone; only their
    # versions are ranked (ranking every key's versions took 0.35 s of a day's load of
    # 600,000 shop customers)
    gone = (
        exp.select(*_key_columns(table, "r"))
        .distinct()
        .from_(exp.alias_(relation.to_table(), "r"))
        .where(exp.Not(this=exp.Exists(this=present)))
    )
    live = latest_versions(relation, table, among=gone).subquery("l")
    select = (
        exp.select(
            *_key_columns(table, "l"),
            exp.Literal.string(batch_id),
            timestamp_literal(loaded_at),
            exp.Literal.string("delete"),
        )
        .from_(live)
        .where(exp.column(OP_COLUMN, table="l", quoted=True).eq(exp.Literal.string("upsert")))
    )
    deleted = warehouse.insert_select(
        relation, [*table.primary_key, BATCH_ID_COLUMN, LOADED_AT_COLUMN, OP_COLUMN], select
    )
    if keys_relation is not keys:
        warehouse.drop(keys_relation)
    return deleted


def _append_new_quarantine(warehouse: Warehouse, rows: pa.Table, name: str) -> int:
    """Quarantine each bad record once: a record already held (same source row), or read twice
    by this load, is not added again; how many were added. ``name``: the load's own
    (``<source>__<table>``), which its scratch table is named after (loads run side by side)."""
    staged = Relation(META_SCHEMA, f"_quarantine_incoming__{name}")
    warehouse.replace_from_arrow(staged, rows.schema, rows.to_batches())
    if not warehouse.exists(QUARANTINE):
        warehouse.replace_with_select(
            QUARANTINE, exp.select("*").from_(staged.to_table()).where(exp.false())
        )
    record = ("source", "table", "original_row")
    same = exp.and_(
        *[
            exp.column(c, table="q", quoted=True).eq(exp.column(c, table="s", quoted=True))
            for c in record
        ]
    )
    held = exp.select("1").from_(exp.alias_(QUARANTINE.to_table(), "q")).where(same)
    first = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column(c, table="s", quoted=True) for c in record],
        order=exp.Order(
            expressions=[exp.Ordered(this=exp.column("failed_checks", table="s", quoted=True))]
        ),
    )
    select = (
        exp.select(*[exp.column(c, table="s", quoted=True) for c in rows.column_names])
        .from_(exp.alias_(staged.to_table(), "s"))
        .where(exp.Not(this=exp.Exists(this=held)))
        .qualify(first.eq(1))
    )
    added = warehouse.insert_select(QUARANTINE, rows.column_names, select)
    warehouse.drop(staged)
    return added


def _cursor_text(value: Any) -> tuple[str, str]:
    if isinstance(value, datetime):
        return "timestamp", value.astimezone(UTC).isoformat()
    if isinstance(value, int | float | Decimal):
        return "number", str(value)
    return "string", str(value)


# ---------------------------------------------------------------------------------------------


def coalesce(units: Iterable[Extracted], batch_rows: int) -> Iterator[Extracted]:
    """Merge small units (one per small file) into batches of about ``batch_rows`` rows.

    The contract has a fixed cost per batch, so a folder of many small daily files would
    otherwise cost far more than one file of the same size. Batches whose columns cannot be
    unified (a file with a different layout) are passed on separately.
    """
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rejects: list[Reject] = []
    files: list[tuple[str, str]] = []
    rows = 0

    def flush() -> Iterator[Extracted]:
        nonlocal pending, rejects, files, rows
        if not pending and not rejects and not files:
            return
        batch: pa.RecordBatch | None = None
        if len(pending) == 1:
            batch = pending[0]
        elif pending:
            try:
                merged = pa.concat_tables(
                    [pa.Table.from_batches([b]) for b in pending], promote_options="permissive"
                )
                batch = merged.combine_chunks().to_batches()[0]
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                for single in pending[:-1]:
                    yield Extracted(single)
                batch = pending[-1]
        yield Extracted(batch, tuple(rejects), tuple(files))
        pending, rejects, files, rows = [], [], [], 0

    for unit in units:
        if unit.batch is not None and unit.batch.num_rows:
            if pending and unit.batch.schema.names != pending[0].schema.names:
                yield from flush()
            pending.append(unit.batch)
            rows += unit.batch.num_rows
        rejects.extend(unit.rejects)
        files.extend(unit.files)
        if rows + len(rejects) >= batch_rows:
            yield from flush()
    yield from flush()


def _chunks(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[Iterator[pa.RecordBatch]]:
    """``batches`` in runs of ``size`` batches, each run consumed before the next is asked for."""
    for first in batches:

        def run(first: pa.RecordBatch = first) -> Iterator[pa.RecordBatch]:
            yield first
            for _, batch in zip(range(size - 1), batches, strict=False):
                yield batch

        yield run()


def _read_ahead(units: Iterable[Extracted]) -> Iterator[Extracted]:
    """The source (a driver or DuckDB's scanner) reads the next batches in a thread while this
    one validates and lands the current one; at most two wait, so memory stays bounded."""
    return work_ahead(units, depth=2, name="ssot-extract", join_timeout=30)


__all__ = ["LANDING_COLUMNS", "LoadResult", "SourceError", "land_table", "latest_versions"]
