"""Singular data tests (`data_tests/*.sql`): attached to the model built last among their refs,
run as Dagster asset checks after it; `error` blocks downstream, `warn` reports."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.assets.models import build_model_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project

MODELS = {
    "models/staging/a.sql": "select 1 as id, 10 as amount union all select 2, -5",
    "models/staging/b.sql": "select 1 as id",
    "models/conformed/c.sql": "select * from {{ ref('a') }}",
    "models/marts/d.sql": "select * from {{ ref('c') }}",
}
NEGATIVE = "select * from {{ ref('a') }} where amount < 0"
CROSS = "select b.id from {{ ref('b') }} as b left join {{ ref('c') }} as c using (id) where c.id is null"


def graph_with(make_project, tests: dict[str, str]) -> ModelGraph:
    files = {**MODELS, **{f"data_tests/{name}.sql": sql for name, sql in tests.items()}}
    return ModelGraph(load_project(make_project(files)))


def test_a_data_test_joins_the_model_built_last_among_its_refs(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": NEGATIVE, "b_in_c": CROSS})
    assert [t.name for t in graph.nodes["a"].data_tests] == ["no_negative"]
    assert [t.name for t in graph.nodes["c"].data_tests] == ["b_in_c"]
    # the test reads b, so c's check runs only once b is built
    assert "b" in graph.nodes["c"].upstream
    assert graph.order.index("b") < graph.order.index("c")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select 1", "ref\\(\\) at least one model"),
        ("select * from {{ ref('nope') }}", "ref\\('nope'\\) names no model or seed"),
        (
            "{{ config(severity='fatal') }} select * from {{ ref('a') }}",
            "severity 'fatal'; use 'error'",
        ),
    ],
)
def test_bad_data_tests_name_their_file(make_project, sql, message) -> None:
    with pytest.raises(ModelError, match=rf"data_tests/t\.sql: .*{message}"):
        graph_with(make_project, {"t": sql})


def run(project_root, names: list[str]) -> dg.ExecuteInProcessResult:
    graph = ModelGraph(load_project(project_root))
    assets = [build_model_asset(graph, graph.nodes[name]) for name in graph.order if name in names]
    resource = WarehouseResource(project_dir=str(project_root))
    return dg.materialize(assets, resources={"warehouse": resource}, raise_on_error=False)


def test_a_failing_error_data_test_blocks_downstream(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": NEGATIVE})
    result = run(graph.project.root, ["a", "c", "d"])
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations["data_test__no_negative"]
    assert not failed.passed
    assert failed.metadata["failing_rows"].value == 1
    assert failed.metadata["failing_sample"].value == [{"id": 2, "amount": -5}]
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"staging/a"}  # c and d never ran


def test_a_failing_warn_data_test_only_reports(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": "{{ config(severity='warn') }} " + NEGATIVE})
    result = run(graph.project.root, ["a", "c", "d"])
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"staging/a", "conformed/c", "marts/d"}
