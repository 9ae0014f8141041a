"""The warehouse's own bookkeeping tables in `ssot_meta`: the audit log and the quarantine.

Every load and build appends one audit row in the same transaction as the data it describes,
so the log never claims a load that did not commit (nor misses one that did).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

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
    kind: str  # load | build
    rows_in: int
    rows_out: int
    rows_quarantined: int
    duration_s: float
    outcome: str  # success | failed
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


def record_audit(warehouse: Warehouse, entry: AuditEntry) -> None:
    import pyarrow as pa

    row = {**entry.__dict__, "recorded_at": datetime.now(UTC)}
    warehouse.append_arrow(AUDIT, pa.Table.from_pylist([row], schema=audit_schema()))
