"""Data quality: source contracts applied to every extracted batch, and dbt-style model tests.

`Contract` coerces and validates what a connector extracted (rows that fail go to quarantine
with every reason); `failing_rows`/`failure_count`/`failure_sample` compile the yml tests of
models (`unique`, `not_null`, `accepted_values`, `relationships`) into SQL for any warehouse.
"""

from __future__ import annotations

from pipelines.quality.builtin_tests import failing_rows, failure_count, failure_sample
from pipelines.quality.contracts import (
    QUARANTINE_SCHEMA,
    Contract,
    ContractResult,
    Reject,
    arrow_type,
    contract_schema,
    quarantine_rows,
)

__all__ = [
    "QUARANTINE_SCHEMA",
    "Contract",
    "ContractResult",
    "Reject",
    "arrow_type",
    "contract_schema",
    "failing_rows",
    "failure_count",
    "failure_sample",
    "quarantine_rows",
]
