"""The models' multi-asset step: what it tells Dagster and what it does when metadata fails."""

from __future__ import annotations

import dagster as dg

from pipelines.assets.models import build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import TerminalWarehouseError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.warehouse import Relation, open_warehouse

MODELS = {
    "models/staging/a.sql": "select 1 as id, 10 as amount union all select 2, 5",
    "models/marts/b.sql": "select id, amount * 2 as doubled from {{ ref('a') }}",
}


def run(root, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    graph = ModelGraph(load_project(root))
    return dg.materialize(
        [build_models_asset(graph)],
        resources={"warehouse": WarehouseResource(project_dir=str(root))},
        instance=instance,
        raise_on_error=False,
    )


def test_each_model_is_one_materialization_with_its_metadata_and_no_step_output(
    make_project,
) -> None:
    root = make_project(MODELS)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert result.success
        events = {
            e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        types = [e.event_type_value for e in result.all_events]
    assert set(events) == {"staging/a", "marts/b"}
    assert events["marts/b"]["dagster/row_count"].value == 2
    lineage = events["marts/b"]["dagster/column_lineage"].value
    assert [d.column_name for d in lineage.deps_by_column["doubled"]] == ["amount"]
    assert "STEP_OUTPUT" not in types  # the rows are in the warehouse: nothing is handed on


def test_metadata_that_cannot_be_written_is_a_warning_not_a_failure(
    make_project, monkeypatch
) -> None:
    root = make_project(MODELS)

    def refuse(self, relation, description, labels) -> None:
        raise TerminalWarehouseError("comments are switched off here")

    monkeypatch.setattr("pipelines.warehouse.duckdb.DuckDBWarehouse.annotate", refuse)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert result.success
        warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.level >= 30 and "description and labels not set" in e.user_message
        ]
    assert len(warnings) == 2 and "comments are switched off here" in warnings[0]
    with open_warehouse(load_project(root), read_only=True) as warehouse:
        assert warehouse.row_count(Relation("marts", "b")) == 2  # published all the same


def test_a_model_failing_in_the_worker_stops_its_dependents_and_fails_the_step(
    make_project,
) -> None:
    root = make_project(
        {
            **MODELS,
            "models/staging/broken.sql": "select id, error('bad row ' || id) as x from {{ ref('a') }}",
            "models/marts/after_broken.sql": "select * from {{ ref('broken') }}",
        }
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert not result.success
        materialized = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        observations = {
            e.asset_key.to_user_string(): e.event_specific_data.asset_observation.metadata
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        }
        errors = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= 40]
    assert materialized == {"staging/a", "marts/b"}  # the others went on
    assert "bad row" in observations["staging/broken"]["error"].value
    assert "upstream model broken failed" in observations["marts/after_broken"]["not_run"].value
    assert any("staging/broken" in m and "bad row" in m for m in errors)
    failure = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "1 model(s) not published" in failure and "staging/broken" in failure
