"""The quarantine: what is held back, and replaying it after a contract or data fix.

Quarantined rows are never deleted. A replay re-validates the rows still pending against the
table's *current* contract; rows that now pass land in raw (through the same path as a pull,
so nothing lands twice) and are marked replayed; rows that still fail stay pending.
Records the connector could not parse at all (a broken CSV line) cannot be replayed: fix the
file and the next pull reads it again, since its fingerprint changed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlglot import exp

from pipelines.extract import Extracted
from pipelines.landing import land_table
from pipelines.meta import QUARANTINE
from pipelines.project import META_SCHEMA
from pipelines.quality.contracts import Contract
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceSpec, SourceTableSpec
    from pipelines.project import Project
    from pipelines.warehouse.base import Warehouse

ROW_NUMBER = "__ssot_replay_row"
REPLAYED_AT = "replayed_at"
REPLAY_BATCH = "replay_batch_id"


@dataclass(frozen=True)
class ReplayResult:
    source: str
    table: str
    pending: int  # rows considered
    landed: int  # rows that now pass (new versions landed in raw, or already there)
    still_failing: int
    unparseable: int  # connector-level rejects: fix the file instead


def _pending_filter(source: str | None, table: str | None) -> exp.Condition:
    condition: exp.Condition = exp.column(REPLAYED_AT, quoted=True).is_(exp.null())
    if source:
        condition = condition.and_(exp.column("source", quoted=True).eq(exp.Literal.string(source)))
    if table:
        condition = condition.and_(exp.column("table", quoted=True).eq(exp.Literal.string(table)))
    return condition


def _ensure_replay_columns(warehouse: Warehouse) -> None:
    present = {name for name, _ in warehouse.columns(QUARANTINE)}
    if REPLAYED_AT not in present:
        warehouse.add_column(QUARANTINE, REPLAYED_AT, "TIMESTAMP WITH TIME ZONE")
    if REPLAY_BATCH not in present:
        warehouse.add_column(QUARANTINE, REPLAY_BATCH, "VARCHAR")


def summary(warehouse: Warehouse, source: str | None = None, table: str | None = None) -> pa.Table:
    """Pending and replayed counts per source table and failed check."""
    import pyarrow as pa

    if not warehouse.exists(QUARANTINE):
        return pa.table({"source": [], "table": [], "check": [], "pending": [], "replayed": []})
    # read-only: before the first replay the table has no replay columns, and nothing is replayed
    replayed = (
        exp.column(REPLAYED_AT, quoted=True)
        if REPLAYED_AT in {name for name, _ in warehouse.columns(QUARANTINE)}
        else exp.alias_(exp.null(), REPLAYED_AT, quoted=True)
    )
    rows = warehouse.query(
        exp.select("source", "table", "failed_checks", replayed).from_(QUARANTINE.to_table())
    ).to_pylist()
    counts: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        if (source and row["source"] != source) or (table and row["table"] != table):
            continue
        checks = sorted(
            {f"{c.get('column') or '*'}:{c['check']}" for c in json.loads(row["failed_checks"])}
        )
        key = (row["source"], row["table"], ", ".join(checks))
        slot = counts.setdefault(key, [0, 0])
        slot[1 if row[REPLAYED_AT] is not None else 0] += 1
    ordered = sorted(counts.items())
    return pa.table(
        {
            "source": [k[0] for k, _ in ordered],
            "table": [k[1] for k, _ in ordered],
            "check": [k[2] for k, _ in ordered],
            "pending": [v[0] for _, v in ordered],
            "replayed": [v[1] for _, v in ordered],
        }
    )


def replay(
    project: Project,
    warehouse: Warehouse,
    source: SourceSpec,
    table: SourceTableSpec,
    *,
    run_id: str | None = None,
) -> ReplayResult:
    """Re-validate the table's pending quarantine rows; land and mark those that now pass."""
    import pyarrow as pa

    run_id = run_id or f"replay-{uuid.uuid4().hex[:12]}"
    if not warehouse.exists(QUARANTINE):
        return ReplayResult(source.name, table.name, 0, 0, 0, 0)
    _ensure_replay_columns(warehouse)
    pending = (
        warehouse.query(
            exp.select("original_row")
            .from_(QUARANTINE.to_table())
            .where(_pending_filter(source.name, table.name))
        )
        .column(0)
        .to_pylist()
    )
    records = [json.loads(text) for text in pending]
    rows = [r for r in records if not _is_unparsed(r)]
    unparseable = len(records) - len(rows)
    if not rows:
        return ReplayResult(source.name, table.name, len(records), 0, 0, unparseable)

    texts = [
        text for text, record in zip(pending, records, strict=True) if not _is_unparsed(record)
    ]
    batch = _as_batch(rows).append_column(ROW_NUMBER, pa.array(range(len(rows)), pa.int64()))
    checked = Contract(source.name, table).apply(batch, run_id)
    passing = [texts[i] for i in checked.valid.column(ROW_NUMBER).to_pylist()]
    valid = checked.valid.drop_columns([ROW_NUMBER])
    with warehouse.transaction():
        land_table(project, warehouse, source, table, run_id=run_id, replay=[Extracted(valid)])
        if passing:
            _mark_replayed(warehouse, source.name, table.name, passing, run_id)
    return ReplayResult(
        source.name, table.name, len(records), len(passing), len(rows) - len(passing), unparseable
    )


def _is_unparsed(record: dict[str, object]) -> bool:
    return set(record) == {"location", "record"}


def _as_batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    """The original rows as Arrow; a column whose values do not share a type is read as text."""
    import pyarrow as pa

    try:
        return pa.RecordBatch.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = list(dict.fromkeys(key for row in rows for key in row))
        columns = {}
        for name in names:
            values = [row.get(name) for row in rows]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                columns[name] = pa.array(
                    [None if v is None else str(v) for v in values], pa.string()
                )
        return pa.RecordBatch.from_pydict(columns)


def _mark_replayed(
    warehouse: Warehouse, source: str, table: str, originals: list[str], batch: str
) -> None:
    import pyarrow as pa

    staged = Relation(META_SCHEMA, "_replayed")
    warehouse.replace_from_arrow(
        staged,
        pa.schema([("original_row", pa.string())]),
        pa.table({"original_row": originals}).to_batches(),
    )
    matched = exp.select("original_row").from_(staged.to_table())
    warehouse.execute(
        exp.update(
            QUARANTINE.to_table(),
            {
                REPLAYED_AT: exp.cast(
                    exp.Literal.string(datetime.now(UTC).isoformat()), "TIMESTAMPTZ"
                ),
                REPLAY_BATCH: exp.Literal.string(batch),
            },
            where=_pending_filter(source, table).and_(
                exp.column("original_row", quoted=True).isin(query=matched)
            ),
        )
    )
    warehouse.drop(staged)
