"""A failing blocking check stops the run and names itself; the UI re-executes it from failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload
    return payload["data"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marts_tables(warehouse: Path) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts'"
        ).fetchone()[0]


def test_blocking_check_stops_the_run_and_the_ui_reexecutes_from_failure(project_copy) -> None:
    ws = project_copy()
    assert ws.ssot("demo", "init", "--scale", "0.05", "--seed", "3").returncode == 0

    # Break fct_orders: every order twice -> its blocking `unique` check fails.
    model = ws.root / "models" / "conformed" / "fct_orders.sql"
    original = model.read_text()
    model.write_text(
        f"select * from (\n{original}\n) as a\nunion all\nselect * from (\n{original}\n) as b\n"
    )

    run = ws.ssot("run")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "blocking check failed: conformed/fct_orders: unique__order_id" in run.stdout
    assert "not run" in run.stdout and "marts/customer_lifetime_value" in run.stdout
    assert marts_tables(ws.warehouse) == 0  # downstream of the failed check was never built
    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        audit = con.execute(
            "select outcome, detail from ssot_meta.audit "
            "where asset = 'conformed/fct_orders' and kind = 'checks'"
        ).fetchall()
    assert audit == [("failed", "failed: unique__order_id")]

    # Fix the model, open the UI's server on the same instance, re-execute from failure.
    model.write_text(original)
    port = free_port()
    server = subprocess.Popen(
        [
            Path(sys.executable).with_name("dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ws.root,
        env=ws.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        runs = None
        while time.monotonic() < deadline:
            try:
                runs = graphql(port, "{ runsOrError { ... on Runs { results { runId status } } } }")
                break
            except OSError:
                time.sleep(1)
        assert runs is not None, "dagster dev did not come up"
        (failed,) = runs["runsOrError"]["results"]
        assert failed["status"] == "FAILURE"
        launched = graphql(
            port,
            "mutation { launchPipelineReexecution(reexecutionParams: "
            f'{{parentRunId: "{failed["runId"]}", strategy: FROM_FAILURE}})'
            " { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
        )["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]
        status, steps = "QUEUED", []
        while time.monotonic() < deadline + 120 and status not in {
            "SUCCESS",
            "FAILURE",
            "CANCELED",
        }:
            time.sleep(2)
            child = graphql(
                port,
                f'{{ runOrError(runId: "{child_id}") {{ ... on Run {{ status stepKeysToExecute }} }} }}',
            )["runOrError"]
            status, steps = child["status"], child["stepKeysToExecute"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert status == "SUCCESS"
    # the step runs again (its loads find nothing new), and in it only the refused model and
    # what depends on it are built; the models published before are kept
    assert steps == ["models"]
    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        rebuilt = con.execute(
            "select asset from ssot_meta.audit where kind = 'build' and outcome = 'success' "
            "and run_id = ? order by asset",
            [child_id],
        ).fetchall()
    assert rebuilt == [
        ("conformed/fct_orders",),
        ("conformed/fct_payments",),
        ("marts/customer_lifetime_value",),
    ]
    assert marts_tables(ws.warehouse) == 1
