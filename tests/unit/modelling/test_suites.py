"""A model's GX suite (`expectations/<model>.json`) runs as its asset checks, inside the build's
transaction: a critical expectation that fails refuses the build, a warning one reports."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from pipelines.assets.models import build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.warehouse import Relation, open_warehouse

MODELS = {
    "models/staging/a.sql": "select 1 as id, 'EUR' as currency union all select 2, 'eur'",
    "models/marts/b.sql": "select * from {{ ref('a') }}",
}


def suite(*expectations: dict) -> str:
    return json.dumps({"name": "a", "expectations": list(expectations)})


REGEX = {
    "type": "expect_column_values_to_match_regex",
    "kwargs": {"column": "currency", "regex": "^[A-Z]{3}$"},
}
COUNT = {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 2}}


def run(root) -> dg.ExecuteInProcessResult:
    graph = ModelGraph(load_project(root))
    assets = [build_models_asset(graph)]
    resource = WarehouseResource(project_dir=str(root))
    return dg.materialize(assets, resources={"warehouse": resource}, raise_on_error=False)


def test_a_failing_critical_expectation_refuses_the_build(make_project) -> None:
    root = make_project(
        {**MODELS, "expectations/a.json": suite(COUNT, {**REGEX, "severity": "critical"})}
    )
    result = run(root)
    checks = {e.check_name.rsplit("__", 1)[0]: e for e in result.get_asset_check_evaluations()}
    regex = checks["gx__column_values_to_match_regex__currency"]
    assert not regex.passed and regex.metadata["failing_rows"].value == 1
    assert regex.metadata["failing_sample"].value == [{"id": 2, "currency": "eur"}]
    assert checks["gx__table_row_count_to_equal"].passed
    assert result.get_asset_materialization_events() == []  # a refused, b never ran
    with open_warehouse(load_project(root), read_only=True) as wh:
        assert not wh.exists(Relation("staging", "a"))
        assert wh.row_count(Relation("ssot_meta", "candidate__staging__a")) == 2


def test_a_failing_warning_expectation_reports_and_publishes(make_project) -> None:
    root = make_project({**MODELS, "expectations/a.json": suite({**REGEX, "severity": "warning"})})
    result = run(root)
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"staging/a", "marts/b"}


def test_a_suite_without_its_model_names_the_file(make_project) -> None:
    root = make_project({**MODELS, "expectations/nope.json": suite(COUNT)})
    with pytest.raises(ModelError, match=r"expectations/nope\.json: .*no model has that name"):
        ModelGraph(load_project(root))


def test_a_bad_suite_fails_the_graph_naming_the_file(make_project) -> None:
    root = make_project({**MODELS, "expectations/a.json": suite({"type": "expect_it_to_work"})})
    with pytest.raises(ModelError, match=r"a\.json: expectation #1 .*not supported"):
        ModelGraph(load_project(root))
