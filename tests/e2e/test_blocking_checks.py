"""A failing blocking check stops the run, names itself, and the run re-executes from failure."""

from __future__ import annotations

import duckdb
import pytest

pytestmark = pytest.mark.slow



def test_blocking_check_fails_the_run_and_reexecution_resumes(project_copy, monkeypatch) -> None:
    import dagster as dg
    from dagster._utils.hosted_user_process import recon_job_from_origin

    ws = project_copy()
    assert ws.ssot("demo", "init", "--scale", "0.05", "--seed", "3").returncode == 0

    # Break dim_customer: every customer twice -> the blocking `unique` check on customer_key fails.
    model = ws.root / "models" / "conformed" / "dim_customer.sql"
    original = model.read_text()
    model.write_text(f"select * from (\n{original}\n) as d\nunion all\nselect * from (\n{original}\n) as d2\n")

    run = ws.ssot("run")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "blocking check failed: conformed/dim_customer: unique__customer_key" in run.stdout
    assert "not run" in run.stdout and "marts/customer_lifetime_value" in run.stdout
    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        marts = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts'"
        ).fetchone()[0]
    assert marts == 0  # downstream of the failed check was never built

    # Fix the model, then re-execute the failed run from failure, as the UI's button does.
    model.write_text(original)
    with dg.DagsterInstance.from_ref(dg.InstanceRef.from_dir(str(ws.root / ".dagster"))) as instance:
        (failed,) = instance.get_runs()
        assert failed.status == dg.DagsterRunStatus.FAILURE
        assert failed.remote_job_origin is not None
        monkeypatch.chdir(ws.root)
        monkeypatch.setenv("SSOT_PROJECT_DIR", str(ws.root))
        recon = recon_job_from_origin(failed.job_code_origin)
        options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        with dg.execute_job(recon, instance, reexecution_options=options) as result:
            assert result.success
            executed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert executed == {"conformed__dim_customer", "marts__customer_lifetime_value"}
    with duckdb.connect(str(ws.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from marts.customer_lifetime_value").fetchone()[0] > 0
