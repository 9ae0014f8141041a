"""Fixtures for tests that need real database servers.

``pg_url``
    A fresh, uniquely named PostgreSQL database, e.g.
    ``postgresql://postgres@127.0.0.1:5432/ssot_test_1a2b3c4d5e6f``; dropped after the test.
``mysql_url``
    A fresh, uniquely named MariaDB/MySQL database, e.g.
    ``mysql://root@127.0.0.1:3306/ssot_test_1a2b3c4d5e6f``; dropped after the test.

Both connect as an administrator to create and drop the database. The servers default to the
local ones of the development machines and CI (PostgreSQL 127.0.0.1:5432 as ``postgres`` with
trust auth, MariaDB 127.0.0.1:3306 as ``root`` with an empty password); point them elsewhere
with ``SSOT_TEST_PG_ADMIN_URL`` / ``SSOT_TEST_MYSQL_ADMIN_URL`` (the database part of those URLs is
the one connected to for CREATE/DROP DATABASE; its user and password go into the yielded URL).

A server that cannot be reached skips the test with the reason, except when the environment
variable ``CI`` is ``true``: CI promises the servers, so there the test fails with a clear
message instead of silently skipping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import pytest

from pipelines.urls import mysql_connect_args, strip_password

PG_ADMIN_URL = os.environ.get(
    "SSOT_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN_URL = os.environ.get("SSOT_TEST_MYSQL_ADMIN_URL", "mysql://root@127.0.0.1:3306/")
CONNECT_TIMEOUT = 5


def _unreachable(what: str, url: str, exc: Exception) -> NoReturn:
    where = strip_password(url)
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{what} at {where} is not reachable ({exc}); CI=true requires it: start the server "
            "in .ci/run before the tests",
            pytrace=False,
        )
    pytest.skip(f"{what} at {where} is not reachable ({exc}); start it to run this test")


def _database_url(admin_url: str, database: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{database}", query="", fragment=""))


def _unique_name() -> str:
    return f"ssot_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped (with its connections) after the test."""
    name = _unique_name()
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        _unreachable("PostgreSQL", PG_ADMIN_URL, exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield _database_url(PG_ADMIN_URL, name)
    finally:
        with psycopg.connect(
            PG_ADMIN_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _mysql_admin() -> Any:
    return pymysql.connect(
        **mysql_connect_args(MYSQL_ADMIN_URL), connect_timeout=CONNECT_TIMEOUT, autocommit=True
    )


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """URL of a fresh MariaDB/MySQL database (utf8mb4), dropped after the test."""
    name = _unique_name()
    try:
        admin = _mysql_admin()
    except pymysql.MySQLError as exc:
        _unreachable("MariaDB/MySQL", MYSQL_ADMIN_URL, exc)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        admin.close()
    try:
        yield _database_url(MYSQL_ADMIN_URL, name)
    finally:
        admin = _mysql_admin()
        try:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()


# -- the BigQuery emulator ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
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
