"""Model contracts: the yml's columns and data_types must be what the SQL produces; a build
that breaks its contract fails naming the yml line and leaves the previous table served."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.assets.models import build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.modelling.contract import check_contract, yml_line
from pipelines.project import load_project
from pipelines.warehouse.duckdb import DuckDBWarehouse

YML = """\
version: 2
models:
  - name: other
    columns:
      - name: id
  - name: people
    description: one row per person
    columns:
      - name: id
        data_type: integer
      - {name: email, data_type: varchar}
      - name: signed_up
        data_type: date
"""
GOOD = "select 1 as id, 'a@x' as email, date '2026-01-01' as signed_up"


def project_with(make_project, sql: str):
    root = make_project(
        {
            "models/staging/people.sql": sql,
            "models/staging/other.sql": "select 1 as id",
            "models/staging/people.yml": YML,
        }
    )
    return load_project(root)


def build(project, name: str) -> None:
    graph = ModelGraph(project)
    with DuckDBWarehouse(project.resolve_path(project.target.path)) as warehouse:
        warehouse.replace_with_select(graph.nodes[name].relation, graph.query(name))
        check_contract(warehouse, graph.nodes[name])


def test_yml_line_finds_the_models_column_not_another_models(tmp_path) -> None:
    path = tmp_path / "people.yml"
    path.write_text(YML)
    assert yml_line(path, "people") == 6
    assert yml_line(path, "people", "id") == 9
    assert yml_line(path, "people", "email") == 11
    assert yml_line(path, "people", "nope") is None


def test_a_model_that_keeps_its_contract_builds(make_project) -> None:
    build(project_with(make_project, GOOD), "people")


def test_a_missing_column_names_the_yml_line(make_project) -> None:
    project = project_with(make_project, "select 1 as id, date '2026-01-01' as signed_up")
    with pytest.raises(
        ModelError, match=r"people\.yml:11: model 'people' declares column 'email', but its SQL"
    ):
        build(project, "people")


def test_a_wrong_type_names_declared_and_produced_types(make_project) -> None:
    project = project_with(make_project, "select 1 as id, 'a@x' as email, now() as signed_up")
    with pytest.raises(
        ModelError,
        match=r"people\.yml:12: model 'people' declares 'signed_up' as date, but its SQL "
        r"produces TIMESTAMP WITH TIME ZONE",
    ):
        build(project, "people")


def test_a_build_that_breaks_its_contract_keeps_the_previous_table(make_project) -> None:
    project = project_with(make_project, GOOD)
    resource = WarehouseResource(project_dir=str(project.root))

    def materialize() -> dg.ExecuteInProcessResult:
        graph = ModelGraph(load_project(project.root))
        asset = build_models_asset(graph, ["people"])
        return dg.materialize([asset], resources={"warehouse": resource}, raise_on_error=False)

    assert materialize().success
    (project.root / "models/staging/people.sql").write_text(
        "select 2 as id, 'b@x' as email, 'not a date' as signed_up"
    )
    failed = materialize()
    assert not failed.success
    assert "declares 'signed_up' as date" in str(failed.all_events)
    with DuckDBWarehouse(project.resolve_path(project.target.path)) as warehouse:
        assert warehouse.query("select id, email from staging.people").to_pylist() == [
            {"id": 1, "email": "a@x"}
        ]
