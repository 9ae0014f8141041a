"""The Dagster code location loads, with the whole graph grouped by layer (what the UI shows)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from pipelines.assets import build_definitions
from pipelines.project import load_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(load_project(ROOT))


def test_definitions_are_loadable(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)


def test_graph_has_every_layer_grouped_and_described(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    groups: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        groups.setdefault(node.group_name, set()).add(key.to_user_string())
        assert node.description, key
    assert set(groups) == {"raw", "seeds", "staging", "conformed", "marts"}
    assert groups["seeds"] == {"seeds/countries"}
    assert "raw/crm/contacts" in groups["raw"]
    assert "conformed/dim_customer" in groups["conformed"]
    assert groups["marts"] == {"marts/customer_lifetime_value"}
    # lineage: dim_customer depends on the conformed record map, which depends on staging
    parents = {
        k.to_user_string()
        for k in graph.get(dg.AssetKey(["conformed", "int_customer_records"])).parent_keys
    }
    assert parents == {"staging/stg_crm__contacts", "staging/stg_shop__customers"}
    staging_parents = {
        k.to_user_string()
        for k in graph.get(dg.AssetKey(["staging", "stg_crm__contacts"])).parent_keys
    }
    assert staging_parents == {"raw/crm/contacts"}
    customer_parents = {
        k.to_user_string()
        for k in graph.get(dg.AssetKey(["conformed", "dim_customer"])).parent_keys
    }
    assert customer_parents == {"conformed/int_customer_records", "seeds/countries"}


def test_yml_tests_are_asset_checks_with_severity_as_blocking(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    checks = {
        key.name: graph.get_check_spec(key)
        for key in graph.asset_check_keys
        if key.asset_key == dg.AssetKey(["conformed", "fct_orders"])
    }
    assert checks["unique__order_id"].blocking is True
    assert checks["relationships__customer_key__ref_dim_customer"].blocking is False


def test_daily_schedule_runs_the_full_job(defs: dg.Definitions) -> None:
    schedule = defs.resolve_schedule_def("ssot_all_daily")
    assert schedule.cron_schedule == "0 3 * * *"
    assert schedule.job_name == "ssot_all"
    job = defs.resolve_job_def("ssot_all")
    assert len(job.asset_layer.executable_asset_keys) == len(
        list(defs.resolve_asset_graph().get_all_asset_keys())
    )


def test_dagster_cli_validates_the_workspace(tmp_path) -> None:
    """The same check `dagster definitions validate` makes, through Dagster's own CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSOT_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    result = subprocess.run(
        [
            Path(sys.executable).with_name("dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schedule_tick_requests_a_run_of_the_whole_job(defs: dg.Definitions) -> None:
    schedule = defs.resolve_schedule_def("ssot_all_daily")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
        )
        result = schedule.evaluate_tick(context)
    (request,) = result.run_requests or []
    assert request.asset_selection is None  # the job's own selection: every asset
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
