from __future__ import annotations

import gc
from pathlib import Path

import pytest
import sqlglot

from pipelines.cli import RunReporter, main

ROOT = Path(__file__).resolve().parents[2]


def test_validate_reports_the_project(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SSOT_PROJECT_DIR", str(ROOT))
    assert main(["validate"]) == 0
    assert "project ok: 3 sources (8 tables)" in capsys.readouterr().out


def test_compile_writes_every_model_for_bigquery(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SSOT_PROJECT_DIR", str(ROOT))
    assert main(["compile", "--dialect", "bigquery", "--out", str(tmp_path)]) == 0
    files = sorted((tmp_path / "bigquery").rglob("*.sql"))
    assert {f.stem for f in files} >= {"dim_customer", "fct_orders", "customer_lifetime_value"}
    for file in files:
        sqlglot.parse_one(file.read_text(), read="bigquery")


def test_compile_for_a_target_uses_its_engines_dialect(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("SSOT_PROJECT_DIR", str(ROOT))
    assert main(["compile", "--target", "local", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "duckdb" / "conformed" / "dim_customer.sql").exists()
    assert main(["compile", "--target", "nope", "--out", str(tmp_path)]) == 2
    assert "--target 'nope' is not in [tool.ssot.targets] (known: local)" in capsys.readouterr().err


def test_config_errors_exit_2_with_the_file_named(make_project, monkeypatch, capsys) -> None:
    root = make_project({"models/staging/a.sql": "select * from {{ ref('missing') }}"})
    monkeypatch.setenv("SSOT_PROJECT_DIR", str(root))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "a.sql" in err and "ref('missing')" in err


def test_run_without_demo_data_says_what_to_do(make_project, monkeypatch, capsys) -> None:
    root = make_project()
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('name = "t"', 'name = "t"\ndemo_dir = "data"')
    )
    monkeypatch.setenv("SSOT_PROJECT_DIR", str(root))
    monkeypatch.delenv("SSOT_TEST_APP_URL", raising=False)
    threshold = gc.get_threshold()
    assert main(["run"]) == 2
    assert "ssot demo init" in capsys.readouterr().err
    # stopped before its setup was done: the collector is as it was
    assert gc.isenabled() and gc.get_threshold() == threshold


def test_a_run_collects_garbage_after_its_setup_and_leaves_the_collector_as_it_was(
    monkeypatch,
) -> None:
    import pipelines.cli as cli

    seen: dict[str, object] = {}

    def run(args, set_up) -> int:
        seen["setting up"] = gc.isenabled()
        set_up()
        seen["running"] = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
        return 0

    monkeypatch.setattr(cli, "_run", run)
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    assert main(["run"]) == 0
    assert seen["setting up"] is False
    enabled, running_threshold, running_frozen = seen["running"]
    assert enabled and running_threshold == cli.RUN_GC_THRESHOLD and running_frozen > frozen
    assert gc.isenabled() and gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen


def test_a_run_leaves_what_its_caller_froze_frozen(monkeypatch) -> None:
    import pipelines.cli as cli

    monkeypatch.setattr(cli, "_run", lambda args, set_up: set_up() or 0)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert main(["run"]) == 0
        assert gc.get_freeze_count() == frozen and gc.isenabled()
    finally:
        gc.unfreeze()


def test_the_command_exits_with_its_code_after_the_exit_handlers(make_project) -> None:
    """`ssot` leaves without finalizing the interpreter, but output, running threads and exit
    handlers are not lost and the exit code is main's."""
    import subprocess
    import sys

    root = make_project({"models/staging/a.sql": "select * from {{ ref('missing') }}"})
    script = (
        "import atexit, sys, threading, time\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        "    print('thread finished', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "from pipelines.cli import entry\n"
        "sys.argv = ['ssot', *sys.argv[1:]]\n"
        "entry()\n"
    )

    def validate(project: Path, *, profile: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"SSOT_PROJECT_DIR": str(project), "PATH": "/usr/bin:/bin"}
        command = [sys.executable, "-c", script, "validate"]
        if profile is not None:  # under cProfile, which writes its results at exit
            (profile.parent / "entry.py").write_text(script)
            command = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(profile),
                str(profile.parent / "entry.py"),
                "validate",
            ]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    ok = validate(ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "project ok" in ok.stdout and ok.stdout.rstrip().endswith("exit handler ran")
    assert "thread finished" in ok.stdout  # a thread still running was waited for
    profiled = validate(ROOT, profile=root / "out.prof")
    assert profiled.returncode == 0, profiled.stderr
    assert (root / "out.prof").stat().st_size > 0  # a profiler's results are not lost
    bad = validate(root)
    assert bad.returncode == 2
    assert "ref('missing')" in bad.stderr and "exit handler ran" in bad.stdout


def test_reporter_maps_steps_of_double_underscore_models_to_their_keys() -> None:
    reporter = RunReporter(["raw/crm/contacts", "staging/stg_crm__contacts"])
    assert reporter._by_step["staging__stg_crm__contacts"] == "staging/stg_crm__contacts"
    assert reporter._by_step["raw__crm__contacts"] == "raw/crm/contacts"


def test_the_run_summary_says_which_quarantined_rows_were_already_held() -> None:
    from pipelines.cli import AssetLine, _quarantined

    line = AssetLine(key="raw/crm/contacts", quarantined=21, already_quarantined=15)
    assert _quarantined(line) == "21 (15 already held)"
    line.already_quarantined = 0
    assert _quarantined(line) == "21"


def test_the_heartbeat_of_the_step_counts_its_assets(capsys) -> None:
    import time

    from pipelines.cli import HEARTBEAT_SECONDS

    keys = ["raw/crm/contacts", "seeds/countries", "staging/stg_crm__contacts"]
    reporter = RunReporter(keys, {"models": keys})
    reporter._step_started["models"] = time.perf_counter() - HEARTBEAT_SECONDS - 1
    reporter.lines["raw/crm/contacts"].status = "ok"
    reporter.heartbeat()
    assert "models step: 1 of 3 assets finished" in capsys.readouterr().out


def test_query_fetches_only_the_rows_it_prints() -> None:
    from pipelines.cli import _limited

    assert (
        _limited("select a from t order by a", 21, "duckdb")
        == "SELECT * FROM (SELECT a FROM t ORDER BY a) AS q LIMIT 21"
    )
    assert _limited("describe t", 21, "duckdb") == "describe t"  # not a query: as given
    assert _limited("select from (", 21, "duckdb") == "select from ("  # the warehouse reports it


def test_the_query_hint_after_a_run_names_a_model_of_the_project(make_project) -> None:
    from pipelines.cli import _example_query
    from pipelines.modelling import ModelGraph
    from pipelines.project import load_project

    demo = ModelGraph(load_project(ROOT))
    assert _example_query(demo) == (
        "select * from marts.customer_lifetime_value order by revenue desc limit 5"
    )
    root = make_project(
        {
            "models/staging/a.sql": "select 1 as x",
            "models/marts/b.sql": "select x from {{ ref('a') }}",
        }
    )
    assert _example_query(ModelGraph(load_project(root))) == "select * from marts.b limit 5"


def test_project_active_hands_the_loaded_project_and_its_graph_on(make_project, tmp_path) -> None:
    from pipelines.modelling import ModelGraph
    from pipelines.project import active_project, load_project, project_active

    root = make_project({"models/staging/a.sql": "select 1 as id"})
    project = load_project(root)
    assert active_project(root) is not project  # nothing active: loaded afresh
    with project_active(project):
        assert active_project(root) is project
        other = tmp_path / "other"
        other.mkdir()
        (other / "pyproject.toml").write_text((root / "pyproject.toml").read_text())
        assert active_project(other).root == other.resolve()  # another folder: its own
    assert active_project(root) is not project  # only while the block runs
    graph = ModelGraph.of(project)
    assert ModelGraph.of(project) is graph
    assert ModelGraph.of(load_project(root)) is not graph  # another Project object


@pytest.mark.slow
def test_a_run_loads_and_parses_the_project_once(make_project, tmp_path) -> None:
    """`ssot run` validates the project, then builds the run's definitions and resources from
    the very same Project and ModelGraph."""
    import sqlite3
    import subprocess
    import sys

    root = make_project(
        {"models/staging/people.sql": "select id, email from {{ source('app', 'users') }}"}
    )
    (root / "workspace.yaml").write_text((ROOT / "workspace.yaml").read_text())
    (root / "data").mkdir()
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("create table users (id integer primary key, email text)")
        con.execute("insert into users values (1, 'a@example.com'), (2, 'b@example.com')")
    script = (
        "import sys\n"
        "import pipelines.project as project\n"
        "from pipelines.modelling import graph\n"
        "counts = {'load_project': 0, 'ModelGraph': 0}\n"
        "load, build = project.load_project, graph.ModelGraph.__init__\n"
        "def counted_load(*a, **k):\n"
        "    counts['load_project'] += 1\n"
        "    return load(*a, **k)\n"
        "def counted_build(self, *a, **k):\n"
        "    counts['ModelGraph'] += 1\n"
        "    build(self, *a, **k)\n"
        "project.load_project = counted_load\n"
        "graph.ModelGraph.__init__ = counted_build\n"
        "from pipelines.cli import main\n"
        "code = main(['run'])\n"
        "print('COUNTS', counts['load_project'], counts['ModelGraph'])\n"
        "sys.exit(code)\n"
    )
    env = {
        "SSOT_PROJECT_DIR": str(root),
        "DAGSTER_HOME": str(tmp_path / ".dagster"),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "COUNTS 1 1" in done.stdout, done.stdout
