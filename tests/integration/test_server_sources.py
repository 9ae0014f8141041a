"""The same sources/*.yml pull from PostgreSQL and MariaDB: the warehouse equals the SQLite run."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALE, SEED = "0.05", "11"
COMPARED = [
    "conformed.dim_customer",
    "conformed.fct_orders",
    "conformed.fct_payments",
    "marts.customer_lifetime_value",
]


def test_servers_and_sqlite_give_the_same_warehouse(project_copy, pg_url, mysql_url) -> None:
    on_servers = project_copy()
    init = on_servers.ssot(
        "demo",
        "init",
        "--scale",
        SCALE,
        "--seed",
        SEED,
        "--crm-url",
        pg_url,
        "--shop-url",
        mysql_url,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    run = on_servers.ssot("run", env={"SSOT_CRM_URL": pg_url, "SSOT_SHOP_URL": mysql_url})
    assert run.returncode == 0, run.stdout + run.stderr

    on_files = project_copy()
    assert on_files.ssot("demo", "init", "--scale", SCALE, "--seed", SEED).returncode == 0
    run_files = on_files.ssot("run")
    assert run_files.returncode == 0, run_files.stdout + run_files.stderr

    servers, files = on_servers.fingerprints(COMPARED), on_files.fingerprints(COMPARED)
    assert all(count > 0 for count, _ in files.values())
    assert servers == files
