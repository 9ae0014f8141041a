from __future__ import annotations

from pipelines.meta import AuditEntry, recent_runs, record_audit
from pipelines.warehouse.duckdb import DuckDBWarehouse


def entry(
    run_id: str, asset: str, kind: str, outcome: str, quarantined: int = 0, detail: str = ""
) -> AuditEntry:
    return AuditEntry(
        run_id=run_id,
        asset=asset,
        kind=kind,
        rows_in=0,
        rows_out=1,
        rows_quarantined=quarantined,
        duration_s=0.1,
        outcome=outcome,
        detail=detail,
    )


def test_a_run_s_quarantined_rows_are_those_its_loads_added() -> None:
    # a load whose lookback read 3 bad records again, and another with 4 new ones
    with DuckDBWarehouse(":memory:") as warehouse:
        again = "unchanged 2; deleted 0; incremental; streamed; already quarantined 3"
        record_audit(warehouse, entry("r1", "raw/crm/contacts", "load", "success", 5, again))
        record_audit(warehouse, entry("r1", "raw/shop/orders", "load", "success", 4, "unchanged 0"))
        (run,) = recent_runs(warehouse).to_pylist()
    assert run["rows_quarantined"] == 6


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
