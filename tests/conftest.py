"""Shared fixtures: minimal throwaway projects, and full copies of this project for end-to-end runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from pipelines.project import copy_project_files

MINIMAL_PYPROJECT = """
[tool.ssot]
name = "t"
default_target = "local"
[tool.ssot.targets.local]
type = "duckdb"
path = "warehouse/t.duckdb"
"""

MINIMAL_SOURCE = """
name: app
owner: team@example.com
connection: {url_env: SSOT_TEST_APP_URL, default: 'sqlite:///data/app.sqlite'}
tables:
  - name: users
    primary_key: [id]
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: email, type: string, pii: email}
"""


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a project into tmp_path: ``make_project({"models/staging/a.sql": "select 1"})``."""

    def write(files: dict[str, str] | None = None, *, source: bool = True) -> Path:
        (tmp_path / "pyproject.toml").write_text(MINIMAL_PYPROJECT)
        for folder in ("sources", "models", "expectations"):
            (tmp_path / folder).mkdir(exist_ok=True)
        if source:
            (tmp_path / "sources" / "app.yml").write_text(MINIMAL_SOURCE)
        for rel, text in (files or {}).items():
            path = tmp_path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return tmp_path

    return write


REPO = Path(__file__).resolve().parents[1]


@dataclass
class Workspace:
    root: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSOT_")}
        env["DAGSTER_HOME"] = str(self.root / ".dagster")
        env["SSOT_PROJECT_DIR"] = str(self.root)
        return env

    def ssot(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def instance(self):  # -> DagsterInstance (a context manager)
        """The project's persistent Dagster instance, as `ssot run` and the UI use it."""
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.root / ".dagster")))

    def fingerprints(self, tables: list[str]) -> dict[str, tuple[int, int]]:
        """(row count, order-independent hash of all rows) per table of the built warehouse.

        A snapshot (SCD2) table counts its current versions without their validity columns:
        its history depends on when runs happened, its current state must not.
        """
        import duckdb

        snapshot_columns = "valid_from, valid_to, is_current, _ssot_row_hash"
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            found = {}
            for name in tables:
                schema, table = name.split(".")
                is_snapshot = con.execute(
                    "select count(*) from information_schema.columns where table_schema = ? "
                    "and table_name = ? and column_name = 'is_current'",
                    [schema, table],
                ).fetchone()[0]
                rows = (
                    f"(select * exclude ({snapshot_columns}) from {name} where is_current)"
                    if is_snapshot
                    else name
                )
                found[name] = con.execute(
                    f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from {rows} as t"
                ).fetchone()
            return found

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "ssot.duckdb"

    @property
    def demo(self) -> Path:
        return self.root / "demo_data"


def copy_project(root: Path) -> Workspace:
    """Copy the project's own files (not its data, warehouse or Dagster history) into ``root``."""
    if root.exists():
        raise FileExistsError(root)
    return Workspace(copy_project_files(REPO, root))


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Workspace]:
    """Each call returns a fresh copy of the project in its own temp folder."""
    return lambda: copy_project(tmp_path_factory.mktemp("ssot") / "project")


# -- the BigQuery emulator ---------------------------------------------------------------------

EMULATOR = REPO / ".venv-bq-emulator" / "bin" / "local-bigquery"
EMULATOR_PROJECT = "ssot-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _emulator_unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"the BigQuery emulator {reason}; CI=true requires it (`make emulator`)", pytrace=False
        )
    pytest.skip(f"the BigQuery emulator {reason}; `make emulator` installs it")


@pytest.fixture(scope="session")
def bigquery_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://127.0.0.1:PORT` of a local BigQuery emulator (local-bigquery) started for this test
    session on loopback, with its data in a temporary folder; stopped afterwards."""
    if not EMULATOR.exists():
        _emulator_unavailable(f"is not installed ({EMULATOR} is missing)")
    port, grpc_port = _free_port(), _free_port()
    data = tmp_path_factory.mktemp("bq-emulator")
    log = (data / "emulator.log").open("w")
    process = subprocess.Popen(
        [
            str(EMULATOR),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            "--project",
            EMULATOR_PROJECT,
            "--data-dir",
            str(data / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    probe = f"{endpoint}/bigquery/v2/projects/{EMULATOR_PROJECT}/datasets"
    deadline = time.monotonic() + 90
    try:
        while True:
            if process.poll() is not None:
                _emulator_unavailable(
                    f"exited with status {process.returncode}: {(data / 'emulator.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(probe, timeout=30) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                _emulator_unavailable(f"did not answer on {endpoint} within 90 s")
            time.sleep(0.3)
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
