"""The project's Dagster instance: its dagster.yaml, and its event log storage."""

from __future__ import annotations

import dagster as dg
import sqlalchemy
import yaml

from pipelines.event_log import ProjectEventLogStorage
from pipelines.project import load_project
from pipelines.runner import (
    EARLIER_INSTANCE_CONFIGS,
    INSTANCE_CONFIG,
    dagster_home,
    project_instance,
)


def test_a_new_or_untouched_dagster_yaml_gets_the_current_config(make_project, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = load_project(make_project())
    config = dagster_home(project) / "dagster.yaml"
    assert yaml.safe_load(config.read_text()) == INSTANCE_CONFIG
    # what an earlier version wrote, unchanged: brought up to date
    config.write_text(yaml.safe_dump(EARLIER_INSTANCE_CONFIGS[0]))
    dagster_home(project)
    assert yaml.safe_load(config.read_text()) == INSTANCE_CONFIG
    # edited by the user: left alone
    edited = {**EARLIER_INSTANCE_CONFIGS[0], "telemetry": {"enabled": True}}
    config.write_text(yaml.safe_dump(edited))
    dagster_home(project)
    assert yaml.safe_load(config.read_text()) == edited


@dg.asset
def numbers() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def test_runs_are_recorded_through_one_engine_per_file(make_project, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = load_project(make_project())
    with project_instance(project) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, ProjectEventLogStorage)
        runs = [dg.materialize([numbers], instance=instance).run_id for _ in range(2)]
        event = instance.get_latest_materialization_event(dg.AssetKey("numbers"))
        assert event is not None and event.run_id == runs[-1]
        assert len(instance.get_records_for_run(runs[0]).records) > 5
        # one engine per run file and the index, kept between writes
        engine = storage._engines[runs[0]]
        with engine.connect() as conn:
            mode = conn.execute(sqlalchemy.text("PRAGMA journal_mode")).scalar()
            synchronous = conn.execute(sqlalchemy.text("PRAGMA synchronous")).scalar()
        assert (mode, synchronous) == ("wal", 1)  # 1: NORMAL (the default, FULL, is 2)
        assert set(storage._engines) >= {*runs, "index"}
    assert storage._engines == {}  # disposed with the instance
