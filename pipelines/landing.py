"""Land one source table: extract -> contract -> `raw.<source>__<table>` + quarantine + audit.

Rows stream through in bounded batches; each batch is split by the source contract into rows
that land and rows that go to `ssot_meta.quarantine` with their reasons. The raw table, the
quarantine rows and the audit entry are written in one transaction, and the counts reconcile:
rows read == rows landed + rows quarantined, or the load fails loudly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipelines.errors import SsotError, TerminalSourceError
from pipelines.extract import DEFAULT_BATCH_ROWS, Extracted, connector_for
from pipelines.meta import QUARANTINE, AuditEntry, record_audit
from pipelines.modelling.graph import source_relation
from pipelines.quality.contracts import Contract, Reject, contract_schema, quarantine_rows

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceSpec, SourceTableSpec
    from pipelines.project import Project
    from pipelines.warehouse.base import Relation, Warehouse

BATCH_ID_COLUMN = "_ssot_batch_id"
LOADED_AT_COLUMN = "_ssot_loaded_at"


@dataclass(frozen=True)
class LoadResult:
    relation: Relation
    batch_id: str
    rows_read: int
    rows_landed: int
    rows_quarantined: int
    extra_columns: tuple[str, ...]
    duration_s: float


def land_table(
    project: Project,
    warehouse: Warehouse,
    source: SourceSpec,
    table: SourceTableSpec,
    *,
    run_id: str,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_batch: Callable[[int], None] | None = None,
) -> LoadResult:
    """Replace the raw table with the source's current rows; quarantine what fails the contract."""
    import pyarrow as pa

    started = time.perf_counter()
    relation = source_relation(source.name, table.name)
    batch_id = f"{run_id}:{source.name}.{table.name}:{uuid.uuid4().hex[:8]}"
    loaded_at = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    contract = Contract(source.name, table)
    connector = connector_for(project.source_url(source), source=source.name, root=project.root)

    counts = {"read": 0, "landed": 0, "quarantined": 0}
    quarantine: list[pa.Table] = []
    extras: tuple[str, ...] = ()
    units = coalesce(connector.read(table, batch_rows=batch_rows), batch_rows)

    def validated() -> Iterator[pa.RecordBatch]:
        for unit in units:
            if unit.batch is None:
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
                counts["landed"] += result.valid.num_rows
                yield result.valid
            if on_batch is not None:
                on_batch(counts["read"])

    stream = validated()
    first = next(stream, None)
    if first is None:
        schema = contract_schema(table)
    else:
        schema = first.schema
        extras = tuple(name for name in schema.names if name not in contract_schema(table).names)
    out_schema = schema.append(pa.field(BATCH_ID_COLUMN, pa.string())).append(
        pa.field(LOADED_AT_COLUMN, pa.timestamp("us", tz="UTC"))
    )

    def with_load_columns() -> Iterator[pa.RecordBatch]:
        for batch in _chain(first, stream):
            if batch.schema.names != schema.names:
                unexpected = sorted(set(batch.schema.names) ^ set(schema.names))
                raise TerminalSourceError(
                    f"source {source.name!r}, table {table.name!r}: columns changed within one "
                    f"load ({', '.join(unexpected)}); declare them in sources/{source.name}.yml"
                )
            n = batch.num_rows
            yield pa.RecordBatch.from_arrays(
                [
                    *batch.cast(schema).columns,
                    pa.array([batch_id] * n, pa.string()),
                    pa.repeat(loaded_at, n),
                ],
                schema=out_schema,
            )

    with warehouse.transaction():
        landed = warehouse.replace_from_arrow(relation, out_schema, with_load_columns())
        if quarantine:
            warehouse.append_arrow(QUARANTINE, pa.concat_tables(quarantine))
        if counts["read"] != counts["landed"] + counts["quarantined"] or landed != counts["landed"]:
            raise SsotError(
                f"load of {source.name}.{table.name} does not reconcile: read {counts['read']}, "
                f"landed {landed}, quarantined {counts['quarantined']}"
            )
        duration = time.perf_counter() - started
        record_audit(
            warehouse,
            AuditEntry(
                run_id=run_id,
                asset=f"raw/{source.name}/{table.name}",
                kind="load",
                rows_in=counts["read"],
                rows_out=landed,
                rows_quarantined=counts["quarantined"],
                duration_s=duration,
                outcome="success",
                detail=f"new columns: {', '.join(extras)}" if extras else "",
            ),
        )
    return LoadResult(
        relation=relation,
        batch_id=batch_id,
        rows_read=counts["read"],
        rows_landed=landed,
        rows_quarantined=counts["quarantined"],
        extra_columns=extras,
        duration_s=time.perf_counter() - started,
    )


def coalesce(units: Iterable[Extracted], batch_rows: int) -> Iterator[Extracted]:
    """Merge small units (one per small file) into batches of about ``batch_rows`` rows.

    The contract has a fixed cost per batch, so a folder of many small daily files would
    otherwise cost far more than one file of the same size. Batches whose columns cannot be
    unified (a file with a different layout) are passed on separately.
    """
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rejects: list[Reject] = []
    rows = 0

    def flush() -> Iterator[Extracted]:
        nonlocal pending, rejects, rows
        if not pending and not rejects:
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
        yield Extracted(batch, tuple(rejects))
        pending, rejects, rows = [], [], 0

    for unit in units:
        if unit.batch is not None and unit.batch.num_rows:
            if pending and unit.batch.schema.names != pending[0].schema.names:
                yield from flush()
            pending.append(unit.batch)
            rows += unit.batch.num_rows
        rejects.extend(unit.rejects)
        if rows + len(rejects) >= batch_rows:
            yield from flush()
    yield from flush()


def _chain(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest
