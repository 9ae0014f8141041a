"""Check outcomes as Dagster asset check results (shared by every asset kind)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from pipelines.quality.checks import CheckOutcome


def check_result(outcome: CheckOutcome, key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """A check outcome as Dagster shows it: passed, severity, failing rows and a sample."""
    metadata: dict[str, Any] = {"failing_rows": outcome.failing_rows}
    if outcome.query:
        metadata["query"] = dg.MetadataValue.md(f"```sql\n{outcome.query}\n```")
    if outcome.sample:
        metadata["failing_sample"] = dg.MetadataValue.json(outcome.sample)
    for name, value in outcome.observed.items():
        metadata[name] = value if isinstance(value, int | float | str) else str(value)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR
        if outcome.severity == "error"
        else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=outcome.description,
    )
