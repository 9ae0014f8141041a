"""The project's Dagster instance: its dagster.yaml, and its event log storage."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg
import sqlalchemy
import yaml
from dagster._core.instance.ref import InstanceRef

from pipelines.event_log import KEPT_ENGINES, ProjectEventLogStorage
from pipelines.project import load_project
from pipelines.runner import INSTANCE_CONFIG, dagster_home, instance_config, project_instance


def test_a_new_or_untouched_dagster_yaml_gets_the_current_config(make_project, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = load_project(make_project())
    home = dagster_home(project)
    config = home / "dagster.yaml"
    current = yaml.safe_load(config.read_text())
    assert current == instance_config(home)
    assert current["event_log_storage"]["config"] == {"base_dir": str(home / "history" / "runs")}
    # what an earlier version wrote, or what this one wrote for another place: brought up to date
    for earlier in (INSTANCE_CONFIG, instance_config(Path("/elsewhere/.dagster"))):
        config.write_text(yaml.safe_dump(earlier))
        dagster_home(project)
        assert yaml.safe_load(config.read_text()) == current
    # edited by the user: left alone
    edited = {**current, "telemetry": {"enabled": True}}
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
        engine = storage._engines[runs[-1]]
        with engine.connect() as conn:
            mode = conn.execute(sqlalchemy.text("PRAGMA journal_mode")).scalar()
            synchronous = conn.execute(sqlalchemy.text("PRAGMA synchronous")).scalar()
        assert (mode, synchronous) == ("wal", 1)  # 1: NORMAL (the default, FULL, is 2)
        # many runs: the index's engine and the most recent runs' are kept
        runs += [dg.materialize([numbers], instance=instance).run_id for _ in range(KEPT_ENGINES)]
        assert len(storage._engines) == KEPT_ENGINES
        assert "index" in storage._engines and runs[-1] in storage._engines
        assert runs[0] not in storage._engines
        assert len(instance.get_records_for_run(runs[0]).records) > 5  # opened again
        # wiped (as `dagster instance wipe` does): later runs are recorded in new files
        instance.wipe()
        assert instance.get_records_for_run(runs[-1]).records == []
        again = dg.materialize([numbers], instance=instance).run_id
        assert len(instance.get_records_for_run(again).records) > 5
        runs.append(again)
    assert storage._engines == {}  # disposed with the instance
    # the instance opened by its directory alone (as the UI or a test does) finds the history
    home = dagster_home(project)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as reopened:
        event = reopened.get_latest_materialization_event(dg.AssetKey("numbers"))
        assert event is not None and event.run_id == runs[-1]
    assert (home / "history" / "runs" / f"{runs[-1]}.db").is_file()
    assert not (home / "history" / "runs" / f"{runs[0]}.db").exists()  # wiped


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="checked")])
def checked() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"rows": 3},
        check_results=[dg.AssetCheckResult(check_name="positive", passed=True)],
    )


def test_schema_probes_are_asked_until_the_answer_is_yes(make_project, monkeypatch) -> None:
    """Dagster asks, per asset or check event, whether a table, an asset-key column or a
    finished migration exists; a yes is kept (the schema only gains them), a no is asked
    again, and a wipe forgets every answer."""
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    asked: list[tuple[str, str]] = []

    def counted(cls: type, method: str) -> None:
        original = getattr(cls, method)

        def probe(self, *args):
            asked.append((method, args[-1]))
            return original(self, *args)

        monkeypatch.setattr(cls, method, probe)

    counted(SqliteEventLogStorage, "has_table")
    counted(SqlEventLogStorage, "_has_asset_key_col_on_connection")
    counted(SqlEventLogStorage, "has_secondary_index")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = load_project(make_project())
    with project_instance(project) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, ProjectEventLogStorage)
        runs = [dg.materialize([checked], instance=instance).run_id]
        settled = len(asked)
        runs += [dg.materialize([checked], instance=instance).run_id for _ in range(2)]
        # each run stored a planned and an evaluated check event, a materialization, and read
        # the check's target materialization: after the first run, no probe reached the database
        assert asked.count(("has_table", "asset_check_executions")) == 1
        assert ("_has_asset_key_col_on_connection", "last_materialization_timestamp") in asked
        assert len(asked) == settled
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("checked"), "positive")]
        )
        latest = record[dg.AssetCheckKey(dg.AssetKey("checked"), "positive")]
        assert latest.run_id == runs[-1] and latest.status.value == "SUCCEEDED"
        # a table that does not exist is asked for every time
        assert not storage.has_table("no_such_table")
        assert not storage.has_table("no_such_table")
        assert asked.count(("has_table", "no_such_table")) == 2
        # wiped: asked again
        instance.wipe()
        before = asked.count(("has_table", "asset_check_executions"))
        dg.materialize([checked], instance=instance)
        assert asked.count(("has_table", "asset_check_executions")) == before + 1


def _schema(path: Path) -> tuple[set[tuple[str, str, str]], list[str]]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        objects = set(conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
        revisions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    return objects, [*revisions, mode]


def test_run_files_are_copies_of_an_empty_one_dagster_made(
    make_project, monkeypatch, tmp_path
) -> None:
    """A run's new event file is a copy of an empty one Dagster's own code made and stamped
    (once per schema), and a stamped file is not checked again: no migration script
    is loaded for either. The copy has exactly the schema and revision Dagster's own gives."""
    from dagster._core.storage.event_log import SqliteEventLogStorage
    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster.version import __version__

    revisions_read: list[str] = []
    original = sqlite_event_log.check_alembic_revision

    def counted(config: object, conn: object) -> object:
        revisions_read.append(str(getattr(conn, "engine", "")))
        return original(config, conn)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_event_log, "check_alembic_revision", counted)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    project = load_project(make_project())
    with project_instance(project) as instance:
        first = dg.materialize([checked], instance=instance).run_id
        made = len(revisions_read)  # the index, and the empty run file made once
        second = dg.materialize([checked], instance=instance).run_id
        assert len(revisions_read) == made  # the second run's file: a copy, not checked
        base = Path(instance.event_log_storage._base_dir)  # type: ignore[attr-defined]
    assert len(list(base.glob(f".empty-run-{__version__}-?*.db"))) == 1
    assert not [p for p in base.iterdir() if ".db." in p.name]  # no staged copy left
    with project_instance(project) as instance:  # the stamped index is not checked again
        third = dg.materialize([checked], instance=instance).run_id
        runs = set(instance.event_log_storage.get_all_run_ids())
    assert len(revisions_read) == made
    assert runs == {first, second, third}  # the hidden empty file is not taken for a run
    # Dagster's own storage, for comparison: the same tables, indexes, revision and WAL mode
    monkeypatch.setattr(sqlite_event_log, "check_alembic_revision", original)
    own = SqliteEventLogStorage(str(tmp_path / "own"))
    with own.run_connection("a-run"):  # the run's file made by Dagster's own code
        pass
    own.dispose()
    assert _schema(base / f"{second}.db") == _schema(tmp_path / "own" / "a-run.db")


def test_a_run_file_made_meanwhile_elsewhere_is_kept(tmp_path, monkeypatch) -> None:
    """Another process (the UI) may make a run's file between the check and the copy: the copy
    is linked only where no file is, so that file and what it holds stay."""
    from pipelines import event_log

    storage = ProjectEventLogStorage(str(tmp_path))
    path = Path(storage.path_for_shard("a-run"))
    copy = event_log._durable_copy

    def copy_while_another_makes_it(source: Path, target: Path) -> None:
        copy(source, target)
        path.write_bytes(b"")  # made meanwhile (an empty file stands for it here)

    monkeypatch.setattr(event_log, "_durable_copy", copy_while_another_makes_it)
    storage._new_run_file("a-run")
    assert path.read_bytes() == b""  # not replaced by the copy
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".a-run")] == []
    monkeypatch.setattr(event_log, "_durable_copy", copy)
    path.unlink()
    (empty,) = tmp_path.glob(".empty-run-*.db")
    with storage.run_connection("a-run"):  # made here: a copy of the empty one, stamped
        pass
    assert path.read_bytes() == empty.read_bytes()  # nothing written to it yet
    assert _schema(path)[1][-1] == "wal"
    storage.dispose()


def test_the_empty_run_file_follows_the_schema(tmp_path, monkeypatch) -> None:
    """Another schema (Dagster gained a migration) makes its own empty file and removes the
    earlier one; an empty file deleted under a running process is made again, not given up."""
    from pipelines import event_log

    storage = ProjectEventLogStorage(str(tmp_path))
    with storage.run_connection("first"):
        pass
    (before,) = tmp_path.glob(".empty-run-*.db")
    monkeypatch.setattr(event_log, "_schema_mark", lambda: "another")
    with storage.run_connection("second"):
        pass
    (after,) = tmp_path.glob(".empty-run-*.db")
    assert after != before and after.name.endswith("-another.db")
    after.unlink()  # deleted by hand while this process runs
    with storage.run_connection("third"):
        pass
    assert after.is_file()
    assert Path(storage.path_for_shard("third")).read_bytes() == after.read_bytes()
    storage.dispose()
