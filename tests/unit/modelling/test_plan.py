"""`ssot plan` and up-to-date models: what changed since the last build, breaking or not, and
which models a run rebuilds (the rest keep their tables)."""

from __future__ import annotations

import pytest

from pipelines.assets import build_definitions
from pipelines.modelling import ModelGraph
from pipelines.modelling.state import classify_change, make_plan
from pipelines.project import load_project
from pipelines.warehouse import open_warehouse
from pipelines.warehouse.duckdb import DuckDBWarehouse

OLD = "SELECT a, b + 1 AS c FROM t WHERE x > 0"


@pytest.mark.parametrize(
    ("new", "kind"),
    [
        ("SELECT a, b + 1 AS c, d FROM t WHERE x > 0", "non-breaking"),  # a column added
        ("SELECT d, a, b + 1 AS c FROM t WHERE x > 0", "non-breaking"),  # added first
        ("SELECT a, b + 2 AS c FROM t WHERE x > 0", "breaking"),  # an expression changed
        ("SELECT a FROM t WHERE x > 0", "breaking"),  # a column removed
        ("SELECT a, b + 1 AS c FROM t WHERE x > 1", "breaking"),  # other rows
        ("SELECT a, b + 1 AS c FROM u WHERE x > 0", "breaking"),  # another table
        ("SELECT a, b + 1 AS c FROM t WHERE x > 0 UNION ALL SELECT 1, 2", "breaking"),
        ("SELECT a, b + 1 AS c, UNNEST(l) AS d FROM t WHERE x > 0", "breaking"),  # more rows
    ],
)
def test_only_added_columns_are_non_breaking(new, kind) -> None:
    assert classify_change(OLD, new, "duckdb") == kind


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("SELECT DISTINCT a FROM t", "SELECT DISTINCT a, d FROM t"),
        (
            "SELECT a, SUM(b) AS s FROM t GROUP BY ALL",
            "SELECT a, SUM(b) AS s, d FROM t GROUP BY ALL",
        ),
    ],
)
def test_a_column_added_that_splits_rows_is_breaking(old, new) -> None:
    assert classify_change(old, new, "duckdb") == "breaking"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # a metric or a constant added under GROUP BY ALL keeps the groups
        (
            "SELECT a, SUM(b) AS s FROM t GROUP BY ALL",
            "SELECT a, SUM(b) AS s, COUNT(*) AS n FROM t GROUP BY ALL",
        ),
        (
            "SELECT a, SUM(b) AS s FROM t GROUP BY ALL",
            "SELECT a, SUM(b) AS s, 1 AS one FROM t GROUP BY ALL",
        ),
        # DISTINCT ON keeps one row per key whatever the columns
        ("SELECT DISTINCT ON (a) a FROM t", "SELECT DISTINCT ON (a) a, d FROM t"),
        # an unnest inside a scalar subquery yields one value per row
        ("SELECT a FROM t", "SELECT a, (SELECT MAX(x) FROM UNNEST(l) AS u(x)) AS m FROM t"),
    ],
)
def test_a_column_added_that_keeps_the_rows_is_non_breaking(old, new) -> None:
    assert classify_change(old, new, "duckdb") == "non-breaking"


MODELS = {
    "models/staging/a.sql": "select 1 as id, 10 as amount",
    "models/staging/b.sql": "select 2 as id",
    "models/conformed/c.sql": "select id, amount * 2 as doubled from {{ ref('a') }}",
    "models/marts/d.sql": "select count(*) as n from {{ ref('c') }}",
    "models/marts/e.sql": "select * from {{ ref('b') }}",
}


def run(root, **config) -> dict[str, bool]:
    """Materialize every model in process; model -> was it rebuilt?"""
    defs = build_definitions(load_project(root))
    job = defs.resolve_implicit_global_asset_job_def()
    ops = {"models": {"config": {k: ["*"] for k, v in config.items() if v}}} if config else {}
    result = job.execute_in_process(run_config={"ops": ops} if ops else {})
    assert result.success
    return {
        e.asset_key.path[-1]: bool(e.materialization.metadata["rebuilt"].value)
        for e in result.get_asset_materialization_events()
    }


def plan(root) -> dict[str, tuple[str, str, bool]]:
    project = load_project(root)
    with DuckDBWarehouse(project.resolve_path(project.target.path), read_only=True) as wh:
        made = make_plan(ModelGraph(project), wh)
    return {n: (p.change, p.kind, p.rebuild) for n, p in made.models.items()}


def test_a_run_rebuilds_what_changed_and_what_reads_it(make_project) -> None:
    root = make_project(MODELS, source=False)
    assert all(run(root).values())  # the first run builds everything
    assert not any(run(root).values())  # nothing changed: every table is kept
    assert not any(rebuild for _, _, rebuild in plan(root).values())

    # a non-breaking change (a new column) rebuilds only that model
    (root / "models/staging/a.sql").write_text("select 1 as id, 10 as amount, 'x' as note")
    assert plan(root)["a"] == ("modified", "non-breaking", True)
    assert plan(root)["c"] == ("unchanged", "", False)
    assert run(root) == {"a": True, "b": False, "c": False, "d": False, "e": False}

    # a breaking change rebuilds the model and everything downstream, nothing else
    (root / "models/staging/a.sql").write_text("select 1 as id, 11 as amount, 'x' as note")
    assert plan(root)["a"] == ("modified", "breaking", True)
    assert {n for n, (_, _, rebuild) in plan(root).items() if rebuild} == {"a", "c", "d"}
    assert run(root) == {"a": True, "b": False, "c": True, "d": True, "e": False}

    # told to, a run rebuilds everything
    assert all(run(root, rebuild=True).values())


def test_a_dropped_table_is_rebuilt(make_project) -> None:
    root = make_project(MODELS, source=False)
    run(root)
    project = load_project(root)
    wh = open_warehouse(project)  # the build file; publishing shows the drop to readers
    wh.execute('drop table "marts"."e"')
    wh.publish()
    assert plan(root)["e"] == ("added", "", True)
    assert run(root)["e"] is True
