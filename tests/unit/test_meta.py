from __future__ import annotations

from pipelines.meta import AuditEntry, recent_runs, record_audit
from pipelines.warehouse.duckdb import DuckDBWarehouse


def entry(run_id: str, asset: str, kind: str, outcome: str) -> AuditEntry:
    return AuditEntry(
        run_id=run_id,
        asset=asset,
        kind=kind,
        rows_in=0,
        rows_out=1,
        rows_quarantined=0,
        duration_s=0.1,
        outcome=outcome,
        detail="",
    )


def test_a_step_tried_again_counts_as_an_error_only_if_its_last_attempt_failed() -> None:
    with DuckDBWarehouse(":memory:") as warehouse:
        # run r1: a model out of memory beside other work, built again alone; a load that
        # failed for good; a model refused by a blocking check
        record_audit(warehouse, entry("r1", "marts/b", "build", "failed"))
        record_audit(warehouse, entry("r1", "raw/app/users", "load", "failed"))
        # a model kept as it was, out of memory while its checks ran: its retry writes only
        # its checks' entry
        record_audit(warehouse, entry("r1", "marts/d", "build", "failed"))
        record_audit(warehouse, entry("r1", "marts/d", "checks", "success"))
        record_audit(
            warehouse,
            entry("r1", "marts/b", "build", "success"),
            entry("r1", "marts/b", "checks", "success"),
            entry("r1", "marts/b", "publish", "success"),
        )
        record_audit(
            warehouse,
            entry("r1", "marts/c", "build", "success"),
            entry("r1", "marts/c", "checks", "failed"),
            entry("r1", "marts/c", "publish", "blocked"),
        )
        runs = recent_runs(warehouse).to_pylist()
    assert len(runs) == 1
    run = runs[0]
    assert (run["errors"], run["built"], run["published"]) == (1, 2, 1)
    assert (run["blocked"], run["checks_failed"]) == (1, 1)
