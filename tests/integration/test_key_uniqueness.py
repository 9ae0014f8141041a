"""A database source says whether its key is unique; a streamed load skips its duplicate check
only then, and a source with duplicate rows still lands each version once."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
import pytest

from pipelines.config import SourceTableSpec
from pipelines.extract import connector_for
from pipelines.urls import mysql_connect_args

pytestmark = pytest.mark.integration

# table -> (DDL, is its key `id`/`(id, part)` guaranteed unique by the database?)
TABLES = {
    "with_pk": ("create table with_pk (id integer primary key, v text)", True),
    "with_unique": ("create table with_unique (id integer not null, v text, unique (id))", True),
    "composite": (
        "create table composite (id integer not null, part integer not null, v text, "
        "primary key (id, part))",
        True,
    ),
    "no_key": ("create table no_key (id integer, v text)", False),
    "wider_key": (  # unique on (id, v) does not make id unique
        "create table wider_key (id integer not null, v varchar(20) not null, unique (id, v))",
        False,
    ),
}


def spec(name: str) -> SourceTableSpec:
    key = ["id", "part"] if name == "composite" else ["id"]
    columns = [{"name": column, "type": "integer"} for column in key]
    return SourceTableSpec.model_validate({"name": name, "primary_key": key, "columns": columns})


def check(url: str, root: Path) -> None:
    connector = connector_for(url, source="src", root=root)
    found = {name: connector.keys_are_unique(spec(name)) for name in TABLES}
    assert found == {name: unique for name, (_, unique) in TABLES.items()}


def create_all(execute: Callable[[str], object]) -> None:
    for ddl, _ in TABLES.values():
        execute(ddl)


def test_sqlite_reports_unique_keys(tmp_path) -> None:
    path = tmp_path / "src.sqlite"
    with sqlite3.connect(path) as con:
        create_all(con.execute)
    check(f"sqlite:///{path}", tmp_path)


def test_postgres_reports_unique_keys(pg_url, tmp_path) -> None:
    with psycopg.connect(pg_url, autocommit=True) as con:
        create_all(con.execute)
        # a same-named table in another schema must not answer for the one the source reads
        con.execute("create schema other")
        con.execute("create table other.no_key (id integer primary key)")
    check(pg_url, tmp_path)


def test_mariadb_reports_unique_keys(mysql_url, tmp_path) -> None:
    con = pymysql.connect(**mysql_connect_args(mysql_url), autocommit=True)
    try:
        with con.cursor() as cur:
            create_all(cur.execute)
    finally:
        con.close()
    check(mysql_url, tmp_path)
