"""The demo generator writes the same data to PostgreSQL and MariaDB as to SQLite."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest

from pipelines.demo import advance_demo, init_demo, load_state

pytestmark = pytest.mark.integration

SCALE, SEED = 0.05, 13
CRM_TABLES = ("accounts", "contacts")
SHOP_TABLES = ("customers", "products", "orders", "order_lines")
MONEY_COLUMNS = {"products": 4, "order_lines": 4}
"""SQLite's NUMERIC affinity keeps 26.00 as the integer 26: compare money as 2-decimal text."""


def canonical(value: Any, money: bool) -> Any:
    """One representation per value whatever the backend returned."""
    if money and value is not None:
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def rows_of(table: str, fetched: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    money = MONEY_COLUMNS.get(table, -1)
    rows = (tuple(canonical(v, i == money) for i, v in enumerate(row)) for row in fetched)
    return sorted(rows, key=repr)


def sqlite_tables(db: Path, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as con:
        return {t: rows_of(t, con.execute(f"select * from {t}").fetchall()) for t in tables}


def pg_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as con:
        return {
            t: rows_of(t, con.execute(f"select * from {t}".encode()).fetchall()) for t in CRM_TABLES
        }


def mysql_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    parts = urlsplit(url)
    con = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
    )
    try:
        out = {}
        with con.cursor() as cur:
            for t in SHOP_TABLES:
                cur.execute(f"select * from {t}")
                out[t] = rows_of(t, list(cur.fetchall()))
        return out
    finally:
        con.close()


def flat_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in ("billing", "truth")
    }


def assert_same(files: Path, servers: Path, pg_url: str, mysql_url: str) -> None:
    crm_files = sqlite_tables(files / "crm.sqlite", CRM_TABLES)
    shop_files = sqlite_tables(files / "shop.sqlite", SHOP_TABLES)
    crm_servers, shop_servers = pg_tables(pg_url), mysql_tables(mysql_url)
    for table in CRM_TABLES:
        assert len(crm_servers[table]) == len(crm_files[table]) > 0, table
        assert crm_servers[table] == crm_files[table], table
    for table in SHOP_TABLES:
        assert len(shop_servers[table]) == len(shop_files[table]) > 0, table
        assert shop_servers[table] == shop_files[table], table
    assert flat_files(servers) == flat_files(files)


def test_servers_receive_the_same_data_as_sqlite(tmp_path, pg_url, mysql_url) -> None:
    files, servers = tmp_path / "files", tmp_path / "servers"
    init_demo(files, scale=SCALE, seed=SEED)
    lines: list[str] = []
    state = init_demo(
        servers, scale=SCALE, seed=SEED, crm_url=pg_url, shop_url=mysql_url, progress=lines.append
    )
    assert state.crm_url == pg_url and state.shop_url == mysql_url
    assert not (servers / "crm.sqlite").exists() and not (servers / "shop.sqlite").exists()
    assert any(line.startswith("shop.orders: ") for line in lines)
    assert_same(files, servers, pg_url, mysql_url)

    # advance_demo finds the servers through state.json; the schema change lands there too
    advance_demo(files, days=3)
    advance_demo(servers, days=3)
    assert load_state(servers).crm_url == pg_url
    assert_same(files, servers, pg_url, mysql_url)
    with psycopg.connect(pg_url) as con:
        names = [
            r[0]
            for r in con.execute(
                b"select column_name from information_schema.columns "
                b"where table_name = 'contacts' order by ordinal_position"
            )
        ]
    assert names[-1] == "job_title"


def test_a_password_is_never_written_to_state(tmp_path, pg_url) -> None:
    parts = urlsplit(pg_url)
    with_password = pg_url.replace(f"{parts.username}@", f"{parts.username}:secret@", 1)
    state = init_demo(tmp_path, scale=SCALE, seed=SEED, crm_url=with_password)
    assert "secret" not in (tmp_path / "state.json").read_text()
    assert state.crm_url == pg_url
