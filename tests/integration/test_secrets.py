"""A source password never reaches the run output, Dagster's event log, metadata or ssot_meta."""

from __future__ import annotations

import duckdb
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "Sup3r-s3cret-pw"


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{SECRET}@{host}"


def test_passwords_stay_out_of_every_output(project_copy, pg_url, mysql_url) -> None:
    ws = project_copy()
    init = ws.ssot(
        "demo",
        "init",
        "--scale",
        "0.02",
        "--seed",
        "9",
        "--crm-url",
        pg_url,
        "--shop-url",
        mysql_url,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    # the local servers use trust auth (PostgreSQL) and an empty root password (MariaDB) is not
    # what we send, so only PostgreSQL gets the password; MariaDB gets it as a query parameter
    env = {
        "SSOT_CRM_URL": with_password(pg_url),
        "SSOT_SHOP_URL": f"{mysql_url}?password_hint={SECRET}",
    }
    run = ws.ssot("run", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert SECRET not in run.stdout + run.stderr

    # a failing load: the error names the source but not the password
    broken = ws.ssot(
        "run",
        env={
            **env,
            "SSOT_CRM_URL": with_password(pg_url)
            .replace("127.0.0.1", "127.0.0.1:1")
            .replace(":5432", ""),
        },
    )
    assert broken.returncode == 1
    assert SECRET not in broken.stdout + broken.stderr
    assert "crm" in broken.stdout

    with ws.instance() as instance:
        for record in instance.get_runs():
            for entry in instance.all_logs(record.run_id):
                assert SECRET not in str(entry), entry.dagster_event_type
            assert SECRET not in str(record.run_config) + str(record.tags)

    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        for table in ("audit", "quarantine", "load_state"):
            rows = con.execute(f"select * from ssot_meta.{table}").fetchall()
            assert SECRET not in str(rows), table
    assert SECRET not in (ws.demo / "state.json").read_text()
