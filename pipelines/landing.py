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
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.errors import SourceError, SsotError, TerminalSourceError, WarehouseError
from pipelines.extract import DEFAULT_BATCH_ROWS, Extracted, Pull, connector_for
from pipelines.meta import (
    QUARANTINE,
    AuditEntry,
    LoadState,
    read_load_state,
    record_audit,
    write_load_state,
)
from pipelines.modelling.graph import source_relation
from pipelines.project import META_SCHEMA
from pipelines.quality.contracts import Contract, Reject, contract_schema, quarantine_rows
from pipelines.urls import scrub
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceSpec, SourceTableSpec
    from pipelines.project import Project
    from pipelines.warehouse.base import Warehouse

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
    duration_s: float


# ---------------------------------------------------------------------------------------------


def land_table(
    project: Project,
    warehouse: Warehouse,
    source: SourceSpec,
    table: SourceTableSpec,
    *,
    run_id: str,
    full_refresh: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    replay: Iterable[Extracted] | None = None,
) -> LoadResult:
    """Append what is new in the source table to raw; quarantine what fails the contract.

    ``replay`` lands these rows (quarantined rows given another chance) instead of pulling
    from the source; the table's cursor and file state are left as they are. A load that fails
    leaves raw, the quarantine and the state untouched and is recorded in the audit log as
    failed, with its (password-free) reason.
    """
    started = time.perf_counter()
    try:
        return _land_table(
            project,
            warehouse,
            source,
            table,
            run_id=run_id,
            full_refresh=full_refresh,
            batch_rows=batch_rows,
            replay=replay,
        )
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


def _land_table(
    project: Project,
    warehouse: Warehouse,
    source: SourceSpec,
    table: SourceTableSpec,
    *,
    run_id: str,
    full_refresh: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    replay: Iterable[Extracted] | None = None,
) -> LoadResult:
    import pyarrow as pa

    started = time.perf_counter()
    relation = source_relation(source.name, table.name)
    batch_id = f"{run_id}:{source.name}.{table.name}:{uuid.uuid4().hex[:8]}"
    loaded_at = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    contract = Contract(source.name, table)
    declared = contract_schema(table)
    connector = connector_for(project.source_url(source), source=source.name, root=project.root)

    previous = LoadState() if full_refresh else read_load_state(warehouse, source.name, table.name)
    if previous.batch_id is not None and not warehouse.exists(relation):
        previous = LoadState()  # raw was dropped by hand: pull everything again
    pull = _pull_for(table, previous)
    source_units = (
        connector.read(table, batch_rows=batch_rows, pull=pull) if replay is None else replay
    )

    counts = {"read": 0, "valid": 0, "quarantined": 0}
    quarantine: list[pa.Table] = []
    files: dict[str, str] = dict(previous.files or {})
    units = coalesce(prefetch(source_units), batch_rows)

    def validated() -> Iterator[pa.RecordBatch]:
        for unit in units:
            files.update(unit.files)
            if unit.batch is None:
                if unit.rejects:
                    rejected = quarantine_rows(source.name, table.name, batch_id, unit.rejects)
                    counts["read"] += rejected.num_rows
                    counts["quarantined"] += rejected.num_rows
                    quarantine.append(rejected)
                continue
            result = contract.apply(unit.batch, batch_id, unit.rejects)
            counts["read"] += result.rows_in
            counts["quarantined"] += result.rows_rejected
            if result.quarantine.num_rows:
                quarantine.append(result.quarantine)
            if result.valid.num_rows:
                counts["valid"] += result.valid.num_rows
                yield _text_for_null_columns(result.valid)

    def with_load_columns(batch: pa.RecordBatch) -> pa.Table:
        n = batch.num_rows
        return (
            pa.Table.from_batches([batch])
            .append_column(
                pa.field(BATCH_ID_COLUMN, pa.string()), pa.repeat(pa.scalar(batch_id), n)
            )
            .append_column(
                pa.field(LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC")), pa.repeat(loaded_at, n)
            )
            .append_column(pa.field(OP_COLUMN, pa.string()), pa.repeat(pa.scalar("upsert"), n))
        )

    candidate = Relation(META_SCHEMA, f"_landing__{source.name}__{table.name}")
    # The candidate is scratch space, written outside the transaction: DuckDB keeps a
    # transaction's small appends in memory until commit, and a load must not grow with the
    # table. Only what readers see (raw, quarantine, state, audit) commits atomically below.
    warehouse.drop(candidate)
    # Batches append one by one (bounded memory); a column that appears in a later batch
    # (a newer file, schema drift) is added to the candidate as it comes.
    seen: list[str] = []
    valid = 0
    for batch in validated():
        valid += warehouse.append_arrow(candidate, with_load_columns(batch), add_columns=True)
        seen += [name for name in batch.schema.names if name not in seen]
    if not seen:  # nothing new: an empty candidate with the contract's columns
        empty = pa.RecordBatch.from_pylist([], schema=declared)
        warehouse.append_arrow(candidate, with_load_columns(empty), add_columns=True)
        seen = list(declared.names)
    extras = tuple(n for n in seen if n not in declared.names)
    data_columns = [*declared.names, *extras]
    with warehouse.transaction():
        _reconcile_schema(warehouse, relation, candidate, source, table, declared.names)
        landed = _append_changed(warehouse, relation, candidate, table, data_columns)
        deleted = 0
        if table.delete_detection == "key_diff" and replay is None:
            deleted = _land_tombstones(
                warehouse,
                relation,
                candidate,
                connector,
                contract,
                table,
                pull,
                batch_id,
                loaded_at,
            )
        if quarantine:
            _append_new_quarantine(warehouse, pa.concat_tables(quarantine))
        unchanged = valid - landed
        if counts["read"] != valid + counts["quarantined"] or valid != counts["valid"]:
            raise SsotError(
                f"load of {source.name}.{table.name} does not reconcile: read {counts['read']}, "
                f"valid {valid}, quarantined {counts['quarantined']}"
            )
        if replay is None:
            write_load_state(
                warehouse,
                source.name,
                table.name,
                _next_state(warehouse, candidate, table, previous, files, batch_id),
            )
        record_audit(
            warehouse,
            AuditEntry(
                run_id=run_id,
                asset=f"raw/{source.name}/{table.name}",
                kind="load" if replay is None else "replay",
                rows_in=counts["read"],
                rows_out=landed,
                rows_quarantined=counts["quarantined"],
                duration_s=time.perf_counter() - started,
                outcome="success",
                detail=_detail(unchanged, deleted, extras, pull)
                if replay is None
                else f"unchanged {unchanged}",
            ),
        )
        warehouse.drop(candidate)
    return LoadResult(
        relation=relation,
        batch_id=batch_id,
        rows_read=counts["read"],
        rows_landed=landed,
        rows_unchanged=unchanged,
        rows_quarantined=counts["quarantined"],
        rows_deleted=deleted,
        extra_columns=extras,
        incremental=replay is None and not pull.is_full,
        duration_s=time.perf_counter() - started,
    )


def _detail(unchanged: int, deleted: int, extras: tuple[str, ...], pull: Pull) -> str:
    parts = [f"unchanged {unchanged}", f"deleted {deleted}"]
    parts.append("incremental" if not pull.is_full else "full pull")
    if extras:
        parts.append(f"new columns: {', '.join(extras)}")
    return "; ".join(parts)


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


def _version_order(table: SourceTableSpec) -> list[exp.Ordered]:
    """Newest version first: the latest load, then (within one load) the highest cursor."""
    order = [exp.Ordered(this=exp.column(LOADED_AT_COLUMN, quoted=True), desc=True)]
    if table.cursor:
        order.append(
            exp.Ordered(this=exp.column(table.cursor, quoted=True), desc=True, nulls_first=False)
        )
    return order


def latest_versions(relation: Relation, table: SourceTableSpec) -> exp.Select:
    """Each key's latest landed row (a tombstone when the key was deleted)."""
    rank = exp.Window(
        this=exp.RowNumber(),
        partition_by=_key_columns(table),
        order=exp.Order(expressions=_version_order(table)),
    )
    return (
        exp.select("*")
        .from_(relation.to_table())
        .qualify(exp.EQ(this=rank, expression=exp.Literal.number(1)))
    )


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
        select = (
            exp.select("*", exp.cast(exp.Null(), hash_type).as_(ROW_HASH_COLUMN, quoted=True))
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
    candidate: Relation,
    table: SourceTableSpec,
    data_columns: list[str],
) -> int:
    """Append candidate rows that raw does not hold yet: a new key, or a version never landed.

    A version already landed (same key, same values) is not landed again, so reruns, lookback
    overlaps and full refreshes never duplicate rows nor re-append an old version on top of a
    newer one. A key whose latest row is a tombstone takes any version again (it came back).
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
        .from_(latest_versions(relation, table).subquery("l"))
        .where(same_key("l"))
        .where(exp.column(OP_COLUMN, table="l", quoted=True).eq(exp.Literal.string("delete")))
    )
    unchanged = exp.and_(exp.Exists(this=landed_before), exp.Not(this=exp.Exists(this=deleted_now)))
    # within one candidate, identical versions of a key (a file exported twice) land once
    dedupe = exp.Window(
        this=exp.RowNumber(),
        partition_by=[*_key_columns(table, "c"), fingerprint],
        order=exp.Order(
            expressions=[exp.Ordered(this=exp.column(LOADED_AT_COLUMN, table="c", quoted=True))]
        ),
    )
    columns = [*data_columns, BATCH_ID_COLUMN, LOADED_AT_COLUMN, OP_COLUMN]
    select = exp.select(
        *[exp.column(n, table="c", quoted=True) for n in columns],
        fingerprint.as_(ROW_HASH_COLUMN),
    ).from_(exp.alias_(candidate.to_table(), "c"))
    # The two filters cost a join and a sort; skip each when it cannot remove anything: the
    # first load of a table has nothing to compare with, and a pull whose keys are unique (any
    # database table) holds no duplicate versions.
    if warehouse.row_count(relation):
        select = select.where(exp.Not(this=exp.paren(unchanged)))
    if _has_repeated_keys(warehouse, candidate, table):
        select = select.qualify(exp.EQ(this=dedupe, expression=exp.Literal.number(1)))
    return warehouse.insert_select(relation, [*columns, ROW_HASH_COLUMN], select)


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
    candidate: Relation,
    connector: Any,
    contract: Contract,
    table: SourceTableSpec,
    pull: Pull,
    batch_id: str,
    loaded_at: pa.Scalar,
) -> int:
    """Tombstones for keys live in raw but gone from the source (a key diff)."""

    keys_relation = candidate
    if not pull.is_full:
        # An incremental pull saw only changed rows: ask the source for its whole key set.
        keys_relation = Relation(META_SCHEMA, f"{candidate.name}__keys")
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
    live = latest_versions(relation, table).subquery("l")
    present = (
        exp.select("1")
        .from_(exp.alias_(keys_relation.to_table(), "k"))
        .where(
            exp.and_(
                *[
                    exp.EQ(
                        this=exp.column(k, table="k", quoted=True),
                        expression=exp.column(k, table="l", quoted=True),
                    )
                    for k in table.primary_key
                ]
            )
        )
    )
    select = (
        exp.select(
            *_key_columns(table, "l"),
            exp.Literal.string(batch_id),
            exp.cast(
                exp.Literal.string(loaded_at.as_py().isoformat()), exp.DataType.build("TIMESTAMPTZ")
            ),
            exp.Literal.string("delete"),
        )
        .from_(live)
        .where(exp.column(OP_COLUMN, table="l", quoted=True).eq(exp.Literal.string("upsert")))
        .where(exp.Not(this=exp.Exists(this=present)))
    )
    deleted = warehouse.insert_select(
        relation, [*table.primary_key, BATCH_ID_COLUMN, LOADED_AT_COLUMN, OP_COLUMN], select
    )
    if keys_relation is not candidate:
        warehouse.drop(keys_relation)
    return deleted


def _append_new_quarantine(warehouse: Warehouse, rows: pa.Table) -> None:
    """Quarantine each bad record once: a record already held (same source row) is not added again."""
    staged = Relation(META_SCHEMA, "_quarantine_incoming")
    warehouse.replace_from_arrow(staged, rows.schema, rows.to_batches())
    if not warehouse.exists(QUARANTINE):
        warehouse.replace_with_select(
            QUARANTINE, exp.select("*").from_(staged.to_table()).where(exp.false())
        )
    same = exp.and_(
        *[
            exp.column(c, table="q", quoted=True).eq(exp.column(c, table="s", quoted=True))
            for c in ("source", "table", "original_row")
        ]
    )
    held = exp.select("1").from_(exp.alias_(QUARANTINE.to_table(), "q")).where(same)
    select = (
        exp.select(*[exp.column(c, table="s", quoted=True) for c in rows.column_names])
        .from_(exp.alias_(staged.to_table(), "s"))
        .where(exp.Not(this=exp.Exists(this=held)))
    )
    warehouse.insert_select(QUARANTINE, rows.column_names, select)
    warehouse.drop(staged)


def _next_state(
    warehouse: Warehouse,
    candidate: Relation,
    table: SourceTableSpec,
    previous: LoadState,
    files: dict[str, str],
    batch_id: str,
) -> LoadState:
    """The cursor after this load: the highest cursor landed so far (it never moves back)."""
    cursor_type, cursor_value = previous.cursor_type, previous.cursor_value
    if table.cursor:
        top = warehouse.scalar(
            exp.select(exp.Max(this=exp.column(table.cursor, quoted=True))).from_(
                candidate.to_table()
            )
        )
        if top is not None:
            kind, text = _cursor_text(top)
            old = previous.cursor()
            new = LoadState(cursor_type=kind, cursor_value=text).cursor()
            if old is None or kind != cursor_type or (new is not None and new > old):  # type: ignore[operator]
                cursor_type, cursor_value = kind, text
    return LoadState(
        cursor_type=cursor_type, cursor_value=cursor_value, files=files or None, batch_id=batch_id
    )


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


def prefetch(units: Iterable[Extracted], depth: int = 2) -> Iterator[Extracted]:
    """Read ahead in a thread: the source (a driver or DuckDB's scanner, both releasing the GIL
    while they wait or work) produces the next batches while this thread validates and lands
    the current one. At most ``depth`` batches wait, so memory stays bounded; an error in the
    reader is raised here, in order, as itself."""
    import queue
    import threading

    done = object()
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for unit in units:
                while not stop.is_set():
                    try:
                        slots.put(unit, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put(exc)

    reader = threading.Thread(target=produce, name="ssot-extract", daemon=True)
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join(timeout=30)


__all__ = ["LANDING_COLUMNS", "LoadResult", "SourceError", "land_table", "latest_versions"]
