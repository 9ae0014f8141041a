"""Run the project's job through Dagster, in this process, recorded in the persistent instance.

`ssot run` and the daily schedule run the very same job of the same code location, so a run
started from the command line shows up in the UI's run history under the `ssot` location and
can be re-executed from failure there. The run is created the way the webserver creates one
(with the code location's origin) and executed in-process, so progress can be streamed from
Dagster's own events as they happen.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipelines.assets.keys import JOB_NAME
from pipelines.atomic import write_text_atomically
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    import dagster as dg

    from pipelines.project import Project

DAGSTER_HOME_DIRNAME = ".dagster"
DEFINITIONS_MODULE = "pipelines.definitions"

#: dagster.yaml written for a new project-local instance: one queued run at a time (DuckDB has
#: one writer), telemetry off.
#: Run config of `ssot run`: Dagster's own console log is silenced; the CLI prints progress,
#: warnings and errors from the run's events instead (the full log stays in the run history).
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

INSTANCE_CONFIG: dict[str, Any] = {
    "run_coordinator": {
        "module": "dagster._core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"max_concurrent_runs": 1},
    },
    "telemetry": {"enabled": False},
}
EVENT_LOG_CLASS = {"module": "pipelines.event_log", "class": "ProjectEventLogStorage"}


def instance_config(home: Path) -> dict[str, Any]:
    """dagster.yaml of a project instance at ``home``: INSTANCE_CONFIG, and Dagster's SQLite
    event log with one engine per file and no flush per event (event_log.py), in the place
    Dagster's own would be (``home``/history/runs)."""
    event_log = {**EVENT_LOG_CLASS, "config": {"base_dir": str(home / "history" / "runs")}}
    return {**INSTANCE_CONFIG, "event_log_storage": event_log}


def _generated(config: Any) -> bool:
    """Whether ``config`` is a dagster.yaml this project wrote, unedited: what an earlier
    version wrote, or the current one for some home (the project moved)."""
    if config == INSTANCE_CONFIG:
        return True
    try:
        base_dir = config["event_log_storage"]["config"]["base_dir"]
    except (TypeError, KeyError):
        return False
    return bool(config == instance_config(Path(str(base_dir)).parent.parent))


def dagster_home(project: Project) -> Path:
    """$DAGSTER_HOME, else `<project>/.dagster` (created with a dagster.yaml on first use; a
    dagster.yaml this project wrote and nobody edited is brought up to date)."""
    home = Path(os.environ.get("DAGSTER_HOME") or project.root / DAGSTER_HOME_DIRNAME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_config(home)
    try:
        written = yaml.safe_load(config.read_text(encoding="utf-8")) if config.exists() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config}: not valid YAML ({exc}); fix it or delete it") from None
    if written != wanted and (written is None or _generated(written)):
        write_text_atomically(config, yaml.safe_dump(wanted, sort_keys=False))
    return home


def location_name(project: Project) -> str:
    """The code location name declared in workspace.yaml (runs are matched to it in the UI)."""
    workspace = project.root / "workspace.yaml"
    try:
        data = yaml.safe_load(workspace.read_text(encoding="utf-8"))
        for entry in data["load_from"]:
            module = entry.get("python_module")
            if isinstance(module, dict) and module.get("module_name") == DEFINITIONS_MODULE:
                return str(module.get("location_name") or DEFINITIONS_MODULE)
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{workspace}: cannot read the code location ({exc})") from exc
    raise ConfigError(f"{workspace}: no python_module entry loads {DEFINITIONS_MODULE}")


def run_config_for(
    full_refresh: Sequence[dg.AssetKey], rebuild: Sequence[dg.AssetKey] = ()
) -> dict[str, Any]:
    """The run config of `ssot run`: quiet console log; and for the step that loads the seeds,
    lands the source tables and builds the models, the source tables pulled from scratch
    (`source.table`), the incremental models rebuilt from their whole query, and the models
    built (the seeds loaded, `seeds/<name>`) even when up to date."""
    from pipelines.assets.models import MODELS_STEP
    from pipelines.project import RAW_SCHEMA, SEEDS_SCHEMA

    models: dict[str, list[str]] = {}
    for option, keys in (("full_refresh", full_refresh), ("rebuild", rebuild)):
        for key in keys:
            if key.path[0] == SEEDS_SCHEMA:  # `seeds/<name>`, loaded again either way
                models.setdefault("rebuild", []).append(key.to_user_string())
            elif key.path[0] == RAW_SCHEMA:  # `source.table`
                models.setdefault(option, []).append(".".join(key.path[1:]))
            else:
                models.setdefault(option, []).append(key.path[-1])
    return {**RUN_CONFIG, **({"ops": {MODELS_STEP: {"config": models}}} if models else {})}


def import_dagster_storage() -> None:
    """Import what opening an instance and executing a run import (Dagster's storage, with
    SQLAlchemy and Alembic, and its execution modules), ahead of the run."""
    import dagster._core.execution.api
    import dagster._core.storage.runs.sqlite
    import dagster._core.storage.schedules.sqlite  # noqa: F401

    import pipelines.event_log  # noqa: F401


@contextmanager
def project_instance(project: Project) -> Iterator[dg.DagsterInstance]:
    import dagster as dg

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home(project))
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool


def run_job(
    project: Project,
    instance: dg.DagsterInstance,
    *,
    on_event: Callable[[dg.DagsterEvent], None] | None = None,
    tags: dict[str, str] | None = None,
    full_refresh: Sequence[dg.AssetKey] = (),
    rebuild: Sequence[dg.AssetKey] = (),
) -> RunOutcome:
    """Create a run of the project's job in ``instance`` and execute it in this process.

    ``full_refresh``: source tables whose loads ignore their stored cursor and incremental
    models rebuilt from scratch; ``rebuild``: models built even when they are up to date.
    """
    from dagster._core.execution.api import execute_run_iterator
    from dagster._core.origin import JobPythonOrigin
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.remote_representation.external import RemoteJob
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    from pipelines.project import project_active

    run_config = run_config_for(full_refresh, rebuild)
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=DEFINITIONS_MODULE,
            working_directory=str(project.root),
        ),
        location_name=location_name(project),
    )
    # the definitions and resources of the run are built from this very project and its
    # graph: a command that has just loaded and validated it does not load it again
    with project_active(project):
        with origin.create_location(instance) as code_location:
            (repo,) = code_location.get_repositories().values()
            remote_job: RemoteJob = repo.get_full_job(JOB_NAME)
            python_origin: JobPythonOrigin = remote_job.get_python_origin()
            plan = code_location.get_execution_plan(
                remote_job,
                run_config=run_config,
                step_keys_to_execute=None,
                known_state=None,
                instance=instance,
            )
            run = instance.create_run(
                job_name=JOB_NAME,
                run_id=None,
                run_config=run_config,
                resolved_op_selection=None,
                step_keys_to_execute=None,
                op_selection=None,
                status=None,
                root_run_id=None,
                parent_run_id=None,
                tags={"ssot/started_by": "ssot run", **(tags or {})},
                job_snapshot=remote_job.job_snapshot,
                execution_plan_snapshot=plan.execution_plan_snapshot,
                parent_job_snapshot=remote_job.parent_job_snapshot,
                remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=python_origin,
                asset_selection=None,
                asset_check_selection=None,
                asset_graph=repo.asset_graph,
            )
        recon_job = recon_job_from_origin(python_origin)
        for event in execute_run_iterator(recon_job, run, instance):
            if on_event is not None:
                on_event(event)
        final = instance.get_run_by_id(run.run_id)
        return RunOutcome(run_id=run.run_id, success=final is not None and final.is_success)
