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
import uuid
from collections.abc import Iterator
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
