"""Freshness SLAs: the age of a source table's newest cursor value (or load) against the SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipelines.config import FreshnessSpec
from pipelines.quality.freshness import check_freshness
from pipelines.warehouse import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RAW = Relation("raw", "t")
SLA = FreshnessSpec(warn_after_hours=24, error_after_hours=48)


@pytest.fixture
def warehouse():
    with DuckDBWarehouse(":memory:") as wh:
        yield wh


def land(wh: DuckDBWarehouse, newest: datetime | None, loaded: datetime, n: int = 3) -> None:
    values = [newest - timedelta(hours=i) if newest else None for i in range(n)]
    wh.append_arrow(
        RAW,
        pa.table(
            {
                "updated_at": pa.array(values, pa.timestamp("us", tz="UTC")),
                "seq": pa.array(range(n), pa.int64()),
                "_ssot_loaded_at": pa.array([loaded] * n, pa.timestamp("us", tz="UTC")),
            }
        ),
    )


def check(wh, cursor: str | None = "updated_at", sla: FreshnessSpec = SLA):
    return check_freshness(wh, RAW, sla, cursor=cursor, loaded_at_column="_ssot_loaded_at", now=NOW)


@pytest.mark.parametrize(
    ("age_hours", "passed", "severity"),
    [(2, True, "warn"), (30, False, "warn"), (50, False, "error")],
)
def test_the_newest_cursor_value_is_measured_against_the_sla(
    warehouse, age_hours, passed, severity
) -> None:
    land(warehouse, NOW - timedelta(hours=age_hours), loaded=NOW)
    outcome = check(warehouse)
    assert outcome.passed is passed and outcome.severity == severity
    assert outcome.observed["age_hours"] == pytest.approx(age_hours)
    assert "`updated_at`" in outcome.description
    assert outcome.sample == ([] if passed else [outcome.observed])


def test_without_a_timestamp_cursor_the_last_load_counts(warehouse) -> None:
    land(warehouse, NOW - timedelta(days=30), loaded=NOW - timedelta(hours=3))
    outcome = check(warehouse, cursor="seq")
    assert outcome.passed and outcome.observed["age_hours"] == pytest.approx(3)
    assert "newest load" in outcome.description
    assert check(warehouse, cursor=None).observed["age_hours"] == pytest.approx(3)


def test_an_empty_table_is_not_fresh(warehouse) -> None:
    land(warehouse, None, loaded=NOW, n=0)
    outcome = check(warehouse)
    assert not outcome.passed and outcome.severity == "error"


def test_error_only_sla_fails_with_severity_error(warehouse) -> None:
    land(warehouse, NOW - timedelta(hours=5), loaded=NOW)
    outcome = check(warehouse, sla=FreshnessSpec(error_after_hours=4))
    assert not outcome.passed and outcome.severity == "error"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "needs warn_after_hours"),
        ({"warn_after_hours": 5, "error_after_hours": 2}, "warn first"),
    ],
)
def test_bad_slas_are_refused(fields, message) -> None:
    with pytest.raises(ValidationError, match=message):
        FreshnessSpec(**fields)
