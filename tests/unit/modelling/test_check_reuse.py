"""A model that is not rebuilt keeps its checks' latest results while nothing they read
changed; any change to what a check reads, or to the check, runs it again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlglot

from pipelines.assets.models import build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.quality.checks import CheckReuse, relations_read
from pipelines.warehouse import Relation, open_warehouse

T0 = datetime(2026, 11, 1, tzinfo=UTC)
QUERY = "SELECT * FROM m.t WHERE x IS NULL"


def latest(query: str = QUERY, failing: int = 0) -> dict[str, dict[str, object]]:
    return {
        "c": {
            "query": query,
            "checked_at": T0,
            "run_id": "r1",
            "failing_rows": failing,
            "failing_sample": json.dumps([{"x": None}]) if failing else None,
            "observed": json.dumps({"unexpected_count": failing}),
        }
    }


def kept(reuse: CheckReuse, query: str = QUERY, reads=None) -> object:
    reads = [Relation("m", "t")] if reads is None else reads
    return reuse.outcome("c", query, reads, severity="error", description="now")


def test_a_result_is_kept_only_while_the_check_and_what_it_reads_hold_still() -> None:
    unchanged = {"m.t": T0 - timedelta(hours=1), "m.p": T0 - timedelta(days=1)}
    outcome = kept(CheckReuse(latest(failing=2), unchanged))
    assert outcome is not None
    # the latest result, with today's severity and description, and where it comes from
    assert (outcome.failing_rows, outcome.blocks, outcome.description) == (2, True, "now")
    assert outcome.sample == [{"x": None}] and outcome.query == QUERY
    assert "the result of run r1" in outcome.observed["reused"]
    assert outcome.observed["unexpected_count"] == 2

    assert kept(CheckReuse({}, unchanged)) is None  # never run on the published table
    assert kept(CheckReuse(latest("SELECT 1"), unchanged)) is None  # the check changed
    changed = {**unchanged, "m.t": T0 + timedelta(seconds=1)}
    assert kept(CheckReuse(latest(), changed)) is None  # the table changed since
    assert kept(CheckReuse(latest(), {"m.p": T0})) is None  # no version known for m.t
    # a view's rows change with what it reads
    through_view = CheckReuse(
        latest(), {**unchanged, "m.p": T0 + timedelta(1)}, lambda r: [Relation("m", "p")]
    )
    assert kept(through_view) is None


def kept_for(query: str) -> object:
    """The kept result of a check running ``query`` on an unchanged m.t."""
    reuse = CheckReuse(latest(), {"m.t": T0 - timedelta(hours=1)})
    parsed = sqlglot.parse_one(query, read="duckdb")
    return reuse.outcome(
        "c", QUERY, relations_read(parsed), severity="warn", description="", evaluated=parsed
    )


@pytest.mark.parametrize(
    "query",
    [
        "select * from m.t where x > now()",
        "select * from m.t where x > current_date",
        "select * from m.t where random() < 0.5",
        "select * from m.t using sample 10%",
        "select nextval('s') from m.t",
        "select uuidv7() from m.t",
        "select approx_quantile(x, 0.5) from m.t",
        "select any_value(x) from m.t",
        "select first(x) from m.t",
        "select reservoir_quantile(x, 0.5) from m.t",
        "select * from (select * from m.t limit 5)",  # which 5 rows is up to the engine
        "select * from other.m.t",  # another catalog's table
        "select * from t",  # no schema: which table is not known
    ],
)
def test_a_check_reading_the_clock_chance_or_an_unknown_table_runs_again(query) -> None:
    assert kept_for(query) is None


def test_a_steady_check_of_a_known_table_is_kept() -> None:
    assert kept_for("select * from m.t where x is null") is not None
    reuse = CheckReuse(latest(), {"m.t": T0 - timedelta(hours=1)})
    assert reuse.outcome("c", QUERY, None, severity="warn", description="") is None


def test_relations_read_skips_ctes_and_refuses_unqualified_tables() -> None:
    query = sqlglot.parse_one(
        "with w as (select * from m.a) select * from w join m.b using (id) join m.a using (id)"
    )
    read = relations_read(query)
    assert read is not None and sorted(map(str, read)) == ["m.a", "m.b"]
    assert relations_read(sqlglot.parse_one("select * from a")) is None


MODELS = {
    "models/staging/a.sql": "select 1 as id union all select 2",
    "models/staging/aa.sql": "select 1 as id union all select 2",
    "models/marts/b.sql": "select id, id * 2 as doubled from {{ ref('a') }}",
    "models/marts/schema.yml": """\
        version: 2
        models:
          - name: b
            columns:
              - name: id
                tests:
                  - unique
                  # reads aa, which b neither refs nor waits for
                  - unique: {config: {where: "id in (select id from staging.aa)"}}
                  - not_null: {config: {where: "current_date > date '2000-01-01'"}}
        """,
    "data_tests/doubled_is_even.sql": "select * from {{ ref('b') }} where doubled % 2 <> 0",
    "expectations/b.json": json.dumps(
        {
            "name": "b",
            "expectations": [
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "id", "min_value": 1},
                },
                {
                    "type": "expect_column_mean_to_be_between",
                    "kwargs": {"column": "id", "min_value": 1},
                },
                {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "doubled"}},
            ],
        }
    ),
}


def run(root) -> None:
    graph = ModelGraph(load_project(root))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [build_models_asset(graph)],
            resources={"warehouse": WarehouseResource(project_dir=str(root))},
            instance=instance,
        )
        assert result.success


def results_of_last_run(root) -> dict[str, dict[str, object]]:
    return results_of(root, "marts/b")


def results_of(root, asset: str) -> dict[str, dict[str, object]]:
    """The check results of ``asset`` in the latest run."""
    with open_warehouse(load_project(root), read_only=True) as warehouse:
        rows = warehouse.query(
            "select check_name, passed, observed, query from ssot_meta.check_results "
            f"where asset = '{asset}' and run_id = (select run_id from ssot_meta.check_results "
            "order by checked_at desc limit 1)"
        ).to_pylist()
    return {
        row["check_name"]: {**row, "observed": json.loads(row["observed"] or "{}")} for row in rows
    }


def test_a_model_not_rebuilt_keeps_its_results_until_what_a_check_reads_changes(
    make_project,
) -> None:
    root = make_project(MODELS)
    run(root)
    first = results_of_last_run(root)
    assert len(first) == 7 and all(r["passed"] for r in first.values())
    assert not any("reused" in r["observed"] for r in first.values())

    run(root)  # nothing changed: every result is there again, kept
    second = results_of_last_run(root)
    assert set(second) == set(first)
    reused = {name for name, r in second.items() if "reused" in r["observed"]}
    # all but the test whose `where` reads the clock
    (clocked,) = [name for name in first if name.startswith("not_null__id")]
    assert reused == set(first) - {clocked}
    assert all(second[name]["query"] == first[name]["query"] for name in reused)

    # aa, which one test of b reads and b does not, is rebuilt: b is not, that test runs again
    (root / "models/staging/aa.sql").write_text("select 1 as id union all select 3")
    run(root)
    third = results_of_last_run(root)
    (reading_c,) = [name for name in first if name.startswith("unique__id__")]
    assert {name for name, r in third.items() if "reused" not in r["observed"]} == {
        reading_c,
        clocked,
    }
    assert "reused" in third["unique__id"]["observed"]


def test_a_result_is_judged_against_its_evaluation_and_never_kept_from_an_increment() -> None:
    before = {"m.t": T0 - timedelta(hours=1)}
    # a change at the very instant of the evaluation counts as a change
    assert kept(CheckReuse(latest(), {"m.t": T0})) is None
    # a result kept before is judged against the run that evaluated it, not the one that
    # kept it (here: kept at T0, evaluated an hour and a half before, the table changed between)
    result = latest()
    result["c"]["observed"] = json.dumps(
        {"reused": "...", "evaluated_at": (T0 - timedelta(minutes=90)).isoformat()}
    )
    assert kept(CheckReuse(result, before)) is None
    outcome = kept(CheckReuse(result, {"m.t": T0 - timedelta(hours=2)}))
    assert outcome is not None
    assert outcome.observed["evaluated_at"] == (T0 - timedelta(minutes=90)).isoformat()
    # a result kept before evaluations were dated, or with a date that cannot be read
    for observed in ({"reused": "..."}, {"reused": "...", "evaluated_at": "yesterday"}):
        result = latest()
        result["c"]["observed"] = json.dumps(observed)
        assert kept(CheckReuse(result, {"m.t": T0 - timedelta(days=9)})) is None
    # a result that looked at an increment's rows only is not kept
    result = latest()
    result["c"]["observed"] = json.dumps({"checked": "the rows this build wrote"})
    assert kept(CheckReuse(result, before)) is None


def test_a_view_over_a_model_rebuilt_with_an_added_column_checks_again(make_project) -> None:
    """A non-breaking change (a column added) records no new data version, yet a view of
    `*` over the model shows the new column: the view's checks run again."""
    root = make_project(
        {
            "models/staging/a.sql": "select 1 as id",
            "models/marts/v.sql": "{{ config(materialized='view') }} select * from {{ ref('a') }}",
            "expectations/v.json": json.dumps(
                {
                    "name": "v",
                    "expectations": [
                        {
                            "type": "expect_table_columns_to_match_set",
                            "kwargs": {"column_set": ["id"]},
                            "severity": "warning",
                        }
                    ],
                }
            ),
        }
    )
    run(root)
    run(root)
    (name,) = results_of(root, "marts/v")
    assert "reused" in results_of(root, "marts/v")[name]["observed"]
    (root / "models/staging/a.sql").write_text("select 1 as id, 2 as extra")
    run(root)
    after = results_of(root, "marts/v")[name]
    assert "reused" not in after["observed"] and not after["passed"]
