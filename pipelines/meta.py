"""The warehouse's own bookkeeping in `ssot_meta`: the audit log, the quarantine, load state.

Every load and build appends one audit row in the same transaction as the data it describes,
so the log never claims a load that did not commit (nor misses one that did).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.project import META_SCHEMA
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.warehouse.base import Warehouse

AUDIT = Relation(META_SCHEMA, "audit")
QUARANTINE = Relation(META_SCHEMA, "quarantine")


@dataclass(frozen=True)
class AuditEntry:
    """One step of a run as the audit log keeps it."""

    run_id: str
    asset: str
    kind: str  # load | build | checks | publish
    rows_in: int
    rows_out: int
    rows_quarantined: int
    duration_s: float
    outcome: str  # success | failed | blocked (publish refused by a blocking check)
    detail: str = ""


def audit_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("run_id", pa.string()),
            ("asset", pa.string()),
            ("kind", pa.string()),
            ("rows_in", pa.int64()),
            ("rows_out", pa.int64()),
            ("rows_quarantined", pa.int64()),
            ("duration_s", pa.float64()),
            ("outcome", pa.string()),
            ("detail", pa.string()),
            ("recorded_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def record_audit(warehouse: Warehouse, *entries: AuditEntry) -> None:
    """Append audit rows (one statement for all of them)."""
    now = datetime.now(UTC)
    warehouse.insert_rows(
        AUDIT, audit_schema(), [{**e.__dict__, "recorded_at": now} for e in entries]
    )


#: what a load's audit detail says of the quarantined rows the quarantine already held (read
#: again), before their count
ALREADY_QUARANTINED = "already quarantined"

# A step tried again in the same run (a model or load out of memory beside other work runs
# again alone) keeps its failed attempt in the log; a failure counts as an error of the run
# only among an asset's latest entries (a retry of a model kept as it was writes only its
# checks' entry, so the build's kind alone would not tell).
_RUNS_SQL = f"""
with entries as (
    select *, max(recorded_at) over (partition by run_id, asset) as last_recorded_at
    from ssot_meta.audit
)
select
    run_id,
    min(recorded_at) as started_at,
    max(recorded_at) as finished_at,
    count(distinct asset) as assets,
    sum(case when kind = 'load' then rows_out else 0 end) as rows_landed,
    -- the rows each load added to the quarantine: those it already held were read again
    sum(
        case when kind = 'load' then rows_quarantined - coalesce(try_cast(
            regexp_extract(detail, '{ALREADY_QUARANTINED} ([0-9]+)', 1) as bigint), 0)
        else 0 end
    ) as rows_quarantined,
    sum(case when kind = 'build' and outcome = 'success' then 1 else 0 end) as built,
    sum(case when kind = 'publish' and outcome = 'success' then 1 else 0 end) as published,
    sum(case when kind = 'publish' and outcome = 'blocked' then 1 else 0 end) as blocked,
    sum(case when kind = 'checks' and outcome = 'failed' then 1 else 0 end) as checks_failed,
    sum(
        case when outcome = 'failed' and kind <> 'checks' and recorded_at = last_recorded_at
        then 1 else 0 end
    ) as errors
from entries
group by run_id
order by started_at desc
"""


def recent_runs(warehouse: Warehouse, limit: int = 10) -> pa.Table:
    """One row per run of the audit log, newest first: what it landed, built, published and
    refused."""
    import sqlglot

    query = sqlglot.parse_one(_RUNS_SQL, read="duckdb")
    assert isinstance(query, exp.Select)
    return warehouse.query(query.limit(limit))


def last_durations(
    warehouse: Warehouse,
    kind: str,
    assets: list[str],
    *,
    like: str | None = None,
    unlike: str | None = None,
) -> dict[str, float]:
    """asset -> seconds its latest successful ``kind`` step took (those of ``assets`` that have
    one); ``like``/``unlike``: of the steps whose detail holds / does not hold this text."""
    if not assets or not warehouse.exists(AUDIT):
        return {}
    where: list[exp.Expr] = [
        exp.column("kind").eq(exp.Literal.string(kind)),
        exp.column("outcome").eq(exp.Literal.string("success")),
        exp.column("asset").isin(*[exp.Literal.string(a) for a in assets]),
    ]
    if like is not None:
        where.append(exp.column("detail").like(exp.Literal.string(f"%{like}%")))
    if unlike is not None:
        where.append(exp.Not(this=exp.column("detail").like(exp.Literal.string(f"%{unlike}%"))))
    latest = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("asset")],
        order=exp.Order(expressions=[exp.Ordered(this=exp.column("recorded_at"), desc=True)]),
    )
    query = (
        exp.select("asset", "duration_s")
        .from_(AUDIT.to_table())
        .where(exp.and_(*where))
        .qualify(latest.eq(1))
    )
    return {row["asset"]: float(row["duration_s"]) for row in warehouse.query(query).to_pylist()}


def run_entries(warehouse: Warehouse, run: str) -> pa.Table:
    """Every audit row of the run whose id is or starts with ``run``, in the order written."""
    import sqlglot

    query = (
        exp.select(
            "run_id",
            "asset",
            "kind",
            "outcome",
            "rows_in",
            "rows_out",
            "rows_quarantined",
            "duration_s",
            "detail",
            "recorded_at",
        )
        .from_(AUDIT.to_table())
        .where(exp.column("run_id").like(exp.Literal.string(f"{run}%")))
        # rows written by one statement share their time: then in the order a step goes
        .order_by(
            "recorded_at",
            "asset",
            sqlglot.parse_one(
                "case kind when 'load' then 0 when 'build' then 1 when 'checks' then 2 "
                "when 'publish' then 3 else 4 end"
            ),
        )
    )
    return warehouse.query(query)


# ---------------------------------------------------------------------------------------------
# Load state: the cursor and the files each source table has landed, per table.

LOAD_STATE = Relation(META_SCHEMA, "load_state")


@dataclass(frozen=True)
class LoadState:
    """Where the last successful load of a source table stopped."""

    cursor_type: str | None = None  # timestamp | number | string
    cursor_value: str | None = None  # ISO timestamp, number or text, as text
    files: dict[str, str] | None = None  # path -> fingerprint of every landed file
    batch_id: str | None = None

    def cursor(self) -> datetime | int | float | str | None:
        if self.cursor_value is None:
            return None
        if self.cursor_type == "timestamp":
            return datetime.fromisoformat(self.cursor_value)
        if self.cursor_type == "number":
            number = float(self.cursor_value)
            return int(number) if number.is_integer() else number
        return self.cursor_value


def load_state_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),
            ("table", pa.string()),
            ("cursor_type", pa.string()),
            ("cursor_value", pa.string()),
            ("files", pa.string()),
            ("batch_id", pa.string()),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _state_filter(source: str, table: str) -> exp.Condition:
    return exp.and_(
        exp.column("source", quoted=True).eq(exp.Literal.string(source)),
        exp.column("table", quoted=True).eq(exp.Literal.string(table)),
    )


def read_load_state(warehouse: Warehouse, source: str, table: str) -> LoadState:
    if not warehouse.exists(LOAD_STATE):
        return LoadState()
    rows = warehouse.query(
        exp.select("cursor_type", "cursor_value", "files", "batch_id")
        .from_(LOAD_STATE.to_table())
        .where(_state_filter(source, table))
    ).to_pylist()
    return _load_state(rows[0]) if rows else LoadState()


def _load_state(row: dict[str, Any]) -> LoadState:
    return LoadState(
        cursor_type=row["cursor_type"],
        cursor_value=row["cursor_value"],
        files=json.loads(row["files"]) if row["files"] else None,
        batch_id=row["batch_id"],
    )


def load_states(warehouse: Warehouse) -> dict[tuple[str, str], LoadState]:
    """(source, table) -> its load state, for every table with one, in one query."""
    if not warehouse.exists(LOAD_STATE):
        return {}
    rows = warehouse.query(
        exp.select("source", "table", "cursor_type", "cursor_value", "files", "batch_id").from_(
            LOAD_STATE.to_table()
        )
    ).to_pylist()
    return {(row["source"], row["table"]): _load_state(row) for row in rows}


def write_load_state(warehouse: Warehouse, source: str, table: str, state: LoadState) -> None:
    """Replace the table's state row; call inside the load's transaction."""

    if warehouse.exists(LOAD_STATE):
        warehouse.execute(exp.delete(LOAD_STATE.to_table(), where=_state_filter(source, table)))
    row = {
        "source": source,
        "table": table,
        "cursor_type": state.cursor_type,
        "cursor_value": state.cursor_value,
        "files": json.dumps(state.files, sort_keys=True) if state.files is not None else None,
        "batch_id": state.batch_id,
        "updated_at": datetime.now(UTC),
    }
    warehouse.insert_row(LOAD_STATE, load_state_schema(), row)
