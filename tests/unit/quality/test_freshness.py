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


class _Recording:
    """The warehouse, with the queries the check asked."""

    def __init__(self, warehouse: DuckDBWarehouse) -> None:
        self.warehouse = warehouse
        self.asked: list[str] = []

    def scalar(self, query):
        self.asked.append(query.sql(dialect="duckdb"))
        return self.warehouse.scalar(query)


@pytest.mark.parametrize("hours_below", [0, 5, -5, None], ids=["at", "below", "above", "none"])
def test_a_floor_narrows_the_read_and_never_the_answer(warehouse, hours_below) -> None:
    """The newest value is looked for at or above what the load knows of it; a floor above
    every value (the table changed since) falls back to the whole column: the same age."""
    newest = NOW - timedelta(hours=30)
    land(warehouse, newest - timedelta(days=40), loaded=NOW - timedelta(days=40), n=50)
    land(warehouse, newest, loaded=NOW - timedelta(hours=2))
    floor = None if hours_below is None else newest - timedelta(hours=hours_below)
    recording = _Recording(warehouse)
    outcome = check_freshness(
        recording,
        RAW,
        SLA,
        cursor="updated_at",
        loaded_at_column="_ssot_loaded_at",
        now=NOW,
        floors={"updated_at": floor},
    )
    assert outcome.observed["latest"] == newest.isoformat()
    assert outcome.observed["age_hours"] == pytest.approx(30) and not outcome.passed
    filtered = [q for q in recording.asked if '"updated_at" >=' in q]
    whole = [q for q in recording.asked if "WHERE" not in q]
    if hours_below is None:
        assert (len(filtered), len(whole)) == (0, 1)
    elif hours_below >= 0:
        assert (len(filtered), len(whole)) == (1, 0)  # the whole column is never read
    else:
        assert (len(filtered), len(whole)) == (1, 1)


def test_the_load_time_floor_serves_a_table_without_a_timestamp_cursor(warehouse) -> None:
    land(warehouse, NOW - timedelta(days=30), loaded=NOW - timedelta(days=9), n=20)
    land(warehouse, NOW - timedelta(days=30), loaded=NOW - timedelta(hours=3))
    recording = _Recording(warehouse)
    outcome = check_freshness(
        recording,
        RAW,
        SLA,
        cursor=None,
        loaded_at_column="_ssot_loaded_at",
        now=NOW,
        floors={"_ssot_loaded_at": NOW - timedelta(hours=3)},
    )
    assert outcome.passed and outcome.observed["age_hours"] == pytest.approx(3)
    assert len(recording.asked) == 1 and '"_ssot_loaded_at" >=' in recording.asked[0]
