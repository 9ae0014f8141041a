"""The Dagster resource that hands assets a warehouse session for the selected target.

One session is opened per run (the definitions use the in-process executor) because DuckDB
allows one writing process per file; when the run ends the session publishes what the run
committed for readers and closes.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from pipelines.project import Project, active_project
from pipelines.warehouse import Warehouse, open_warehouse

#: run id -> why publishing the warehouse for readers failed at the end of that run, for the
#: `ssot run` command, which executes runs in this process and must not call such a run a
#: success (Dagster reports a teardown failure only as an engine event)
PUBLISH_FAILURES: dict[str, str] = {}


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Opens the project's target warehouse for the duration of a run."""

    project_dir: str

    _session: Warehouse | None = PrivateAttr(default=None)

    @cached_property
    def project(self) -> Project:
        return active_project(Path(self.project_dir))

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._session = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """The run is over (succeeded or not): publish what it committed to readers."""
        if self._session is not None:
            session, self._session = self._session, None
            try:
                published = session.publish()
            except Exception as exc:
                if context.run is not None:
                    PUBLISH_FAILURES[context.run.run_id] = f"{type(exc).__name__}: {exc}"
                raise
            if context.log is not None and session.compacted:
                context.log.info(
                    "rewrote without their deleted rows: "
                    + ", ".join(str(r) for r in session.compacted)
                )
            if context.log is not None and session.compact_failure:
                context.log.warning(
                    "could not rewrite a table without its deleted rows (published all the "
                    f"same; the next run tries again): {session.compact_failure}"
                )
            if published is not None and context.log is not None:
                context.log.info(f"published the warehouse for readers: {published}")

    @property
    def session(self) -> Warehouse:
        if self._session is None:
            self._session = open_warehouse(self.project)
        return self._session

    def describe(self) -> dict[str, Any]:
        return {"target": self.project.target_name, "location": self.session.location}
