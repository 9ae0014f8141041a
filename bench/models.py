"""The modelling engine against plain DuckDB, dbt-duckdb and dagster-dbt on a 200-model project.

Usage (from the repository root)::

    .venv/bin/python bench/models.py                 # 200 models
    .venv/bin/python bench/models.py --models 60     # a quicker run
    .venv/bin/python bench/models.py --skip-dbt      # without lines (b) and (c)

One run generates the same project twice, in a temp folder: as this project (models/<layer>/)
and as a dbt project (dbt_project.yml, profiles.yml for dbt-duckdb), with identical SQL: a
quarter of the models are staging models over a generated 20,000-row table, half are conformed
models joining one to three of them, a quarter are marts aggregating conformed ones. Then it
measures, each in a fresh process:

(a) plain DuckDB: the 200 compiled `CREATE OR REPLACE TABLE` statements in one process;
(ours) parse + compile of the 200 models (load_project, ModelGraph, compile each to DuckDB),
    loading the Dagster definitions, and a full `ssot run` on a persistent Dagster instance;
(b) dbt-duckdb: `dbt parse`, then `dbt run`;
(c) dagster-dbt: the same dbt project as `@dbt_assets`, materialized through a persistent
    Dagster instance (what users of the Dagster + dbt stack run).

Per-model overhead of a run = (its wall time - (a)) / models. dbt and dagster-dbt run from
bench/.venv-dbt (created from bench/requirements-dbt.txt when missing or stale). It prints a
table with the targets of the modelling issue marked PASS or MISS (nothing is asserted) and
writes the figures as JSON to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _project import write_results

ROOT = Path(__file__).resolve().parents[1]
DBT_VENV = ROOT / "bench" / ".venv-dbt"
DBT_REQUIREMENTS = ROOT / "bench" / "requirements-dbt.txt"

TARGET_PARSE = 0.25  # our parse+compile <= 1/4 of `dbt parse`
TARGET_OVERHEAD = 0.5  # our per-model overhead <= 1/2 of dagster-dbt's
TARGET_DEFS_S = 3.0  # definitions of a 200-model project load in <= 3 s


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the generated project


def model_sql(n_models: int) -> dict[str, tuple[str, str]]:
    """name -> (layer, SQL with ref()s), deterministic."""
    staging = max(1, n_models // 4)
    marts = max(1, n_models // 4)
    conformed = n_models - staging - marts
    models: dict[str, tuple[str, str]] = {}
    for i in range(staging):
        models[f"stg_{i:03d}"] = (
            "staging",
            f"select range as id, (range * {i + 7}) % 97 as grp, "
            f"(range * {i + 13}) % 1000 / 10.0 as amount, 'k' || (range % {i + 3}) as label "
            "from range(20000)",
        )
    for i in range(conformed):
        refs = [f"stg_{(i + k) % staging:03d}" for k in range(1 + i % 3)]
        joins = " ".join(
            f"join {{{{ ref('{r}') }}}} as s{k} on s{k}.id = s0.id" for k, r in enumerate(refs) if k
        )
        amounts = " + ".join(f"s{k}.amount" for k in range(len(refs)))
        models[f"int_{i:03d}"] = (
            "conformed",
            f"select s0.id, s0.grp, {amounts} as amount from {{{{ ref('{refs[0]}') }}}} as s0 {joins}",
        )
    for i in range(marts):
        source = f"int_{(i * 2) % conformed:03d}"
        models[f"mart_{i:03d}"] = (
            "marts",
            f"select grp, count(*) as n, sum(amount) as total from {{{{ ref('{source}') }}}} "
            "group by grp",
        )
    return models


def write_projects(work: Path, n_models: int) -> tuple[Path, Path]:
    models = model_sql(n_models)
    ours, dbt = work / "ssot_project", work / "dbt_project"
    for layer in ("staging", "conformed", "marts"):
        (ours / "models" / layer).mkdir(parents=True)
        (dbt / "models" / layer).mkdir(parents=True)
    (ours / "sources").mkdir()
    (ours / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.ssot]
            name = "bench_models"
            default_target = "local"
            [tool.ssot.targets.local]
            type = "duckdb"
            path = "warehouse/bench.duckdb"
            threads = 2
            """
        )
    )
    (ours / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: pipelines.definitions\n"
        "      working_directory: .\n      location_name: ssot\n"
    )
    (dbt / "dbt_project.yml").write_text(
        textwrap.dedent(
            """
            name: bench_models
            version: "1.0"
            profile: bench_models
            model-paths: ["models"]
            models:
              bench_models:
                +materialized: table
            """
        )
    )
    (dbt / "profiles.yml").write_text(
        textwrap.dedent(
            f"""
            bench_models:
              target: local
              outputs:
                local:
                  type: duckdb
                  path: {dbt / "bench.duckdb"}
                  threads: 2
            """
        )
    )
    for name, (layer, sql) in models.items():
        (ours / "models" / layer / f"{name}.sql").write_text(sql + "\n")
        (dbt / "models" / layer / f"{name}.sql").write_text(sql + "\n")
    return ours, dbt


# ---------------------------------------------------------------------------------------------
# children (each in a fresh process; they print one JSON line)


def child_plain(project: str) -> dict[str, Any]:
    """(a): the compiled statements, executed by DuckDB in one process, in dependency order."""
    sys.path.insert(0, str(ROOT))
    import duckdb

    from pipelines.modelling import ModelGraph
    from pipelines.project import load_project

    graph = ModelGraph(load_project(Path(project)))
    statements = []
    for name in graph.order:
        relation = graph.nodes[name].relation
        statements.append(
            f'CREATE SCHEMA IF NOT EXISTS "{relation.schema}"; CREATE OR REPLACE TABLE '
            f'"{relation.schema}"."{relation.name}" AS {graph.compile(name, "duckdb")}'
        )
    path = Path(project) / "plain.duckdb"
    with duckdb.connect(str(path), config={"threads": 2}) as con:
        started = time.perf_counter()
        for sql in statements:
            con.execute(sql)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "models": len(statements)}


def child_parse(project: str) -> dict[str, Any]:
    """(ours): load the project, build the graph, compile every model to DuckDB."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from pipelines.modelling import ModelGraph
    from pipelines.project import load_project

    imported = time.perf_counter()
    graph = ModelGraph(load_project(Path(project)))
    for name in graph.order:
        graph.compile(name, "duckdb")
    done = time.perf_counter()
    return {"seconds": done - imported, "import_s": imported - started, "models": len(graph.order)}


def child_definitions(project: str) -> dict[str, Any]:
    """(ours): import the Dagster definitions module as `dagster dev` does, from scratch."""
    os.environ["SSOT_PROJECT_DIR"] = project
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import pipelines.definitions as definitions

    defs = definitions.defs
    loaded = time.perf_counter() - started
    heavy = sorted(m for m in ("great_expectations", "pandas", "pandera") if m in sys.modules)
    keys = {key for assets in defs.assets or [] for key in getattr(assets, "keys", ())}
    return {"seconds": loaded, "assets": len(keys), "heavy_imports": heavy}


CHILDREN = {"plain": child_plain, "parse": child_parse, "definitions": child_definitions}


def run_child(kind: str, project: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return seconds


# ---------------------------------------------------------------------------------------------
# dbt and dagster-dbt


DAGSTER_DBT_RUNNER = """
import sys, time
from pathlib import Path
import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

project_dir = Path(sys.argv[1])
project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
dbt = DbtCliResource(
    project_dir=project_dir,
    profiles_dir=project_dir,
    dbt_executable=str(Path(sys.executable).with_name("dbt")),
)

@dbt_assets(manifest=project.manifest_path)
def models(context, dbt: DbtCliResource):
    yield from dbt.cli(["run"], context=context).stream()

started = time.perf_counter()
with dg.DagsterInstance.get() as instance:
    result = dg.materialize(
        [models],
        resources={"dbt": dbt},
        instance=instance,
    )
assert result.success
print(time.perf_counter() - started)
"""


def ensure_dbt_python() -> str:
    python = DBT_VENV / "bin" / "python"
    stamp = DBT_VENV / ".requirements.sha256"
    digest = hashlib.sha256(DBT_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(python)
    if not python.exists():
        base = shutil.which("python3.11") or sys.executable
        log(f"creating {DBT_VENV.relative_to(ROOT)}")
        subprocess.run([base, "-m", "venv", str(DBT_VENV)], check=True)
        (DBT_VENV / ".gitignore").write_text("*\n")
    log(f"installing {DBT_REQUIREMENTS.relative_to(ROOT)} (a few minutes the first time)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(DBT_REQUIREMENTS)], check=True
    )
    stamp.write_text(digest + "\n")
    return str(python)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--skip-dbt", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PROJECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, project = args.child
        print(json.dumps(CHILDREN[kind](project)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench_models_"))
    results: dict[str, Any] = {
        "benchmark": "bench/models",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": args.models,
        "cores": os.cpu_count(),
    }
    try:
        ours, dbt = write_projects(work, args.models)
        log(f"{args.models} models written to {work}")
        plain = run_child("plain", ours)
        results["plain"] = plain
        log(f"(a) plain DuckDB: {plain['seconds']:.2f}s")
        results["parse"] = run_child("parse", ours)
        log(f"ours parse+compile: {results['parse']['seconds']:.2f}s")
        results["definitions"] = run_child("definitions", ours)
        log(f"ours definitions load: {results['definitions']['seconds']:.2f}s")
        env = {**os.environ, "DAGSTER_HOME": str(ours / ".dagster"), "SSOT_PROJECT_DIR": str(ours)}
        ssot = str(Path(sys.executable).with_name("ssot"))
        results["ours_run_s"] = timed([ssot, "run"], ours, env)
        log(f"ours ssot run: {results['ours_run_s']:.2f}s")
        results["ours_rerun_s"] = timed([ssot, "run"], ours, env)
        log(f"ours ssot run again (all up to date): {results['ours_rerun_s']:.2f}s")
        if not args.skip_dbt:
            python = ensure_dbt_python()
            dbt_bin = str(Path(python).with_name("dbt"))
            dbt_env = {**os.environ, "DBT_PROFILES_DIR": str(dbt), "DO_NOT_TRACK": "1"}
            results["dbt_parse_s"] = timed([dbt_bin, "parse"], dbt, dbt_env)
            log(f"(b) dbt parse: {results['dbt_parse_s']:.2f}s")
            results["dbt_run_s"] = timed([dbt_bin, "run"], dbt, dbt_env)
            log(f"(b) dbt run: {results['dbt_run_s']:.2f}s")
            runner = work / "dagster_dbt_run.py"
            runner.write_text(DAGSTER_DBT_RUNNER)
            home = work / "dagster_dbt_home"
            home.mkdir()
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            dd_env = {**dbt_env, "DAGSTER_HOME": str(home)}
            started = time.perf_counter()
            timed([python, str(runner), str(dbt)], dbt, dd_env)
            results["dagster_dbt_s"] = time.perf_counter() - started
            log(f"(c) dagster-dbt materialize: {results['dagster_dbt_s']:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    write_results(results, "models", args.out)
    return 0


def report(r: dict[str, Any]) -> None:
    n = r["models"]
    plain = r["plain"]["seconds"]

    def per_model(total: float) -> float:
        return (total - plain) / n * 1000

    print(f"\nbench/models: {n} models, {r['cores']} cores, {r['started_utc']}")
    print(
        f"(a) plain DuckDB, {n} statements:          {plain:7.2f} s ({plain / n * 1000:.1f} ms/model)"
    )
    print(f"ours: parse + compile:                   {r['parse']['seconds']:7.2f} s")
    defs = r["definitions"]
    print(
        f"ours: Dagster definitions load:          {defs['seconds']:7.2f} s ({defs['assets']} assets, heavy imports: {', '.join(defs['heavy_imports']) or 'none'})"
    )
    print(
        f"ours: ssot run (persistent instance):    {r['ours_run_s']:7.2f} s = {per_model(r['ours_run_s']):.1f} ms/model over (a)"
    )
    print(f"ours: ssot run again, all up to date:    {r['ours_rerun_s']:7.2f} s")
    rows = [
        (
            "definitions load <= 3 s",
            defs["seconds"],
            TARGET_DEFS_S,
            defs["seconds"] <= TARGET_DEFS_S,
        )
    ]
    if "dbt_parse_s" in r:
        print(f"(b) dbt parse:                           {r['dbt_parse_s']:7.2f} s")
        print(
            f"(b) dbt run:                             {r['dbt_run_s']:7.2f} s = {per_model(r['dbt_run_s']):.1f} ms/model over (a)"
        )
        print(
            f"(c) dagster-dbt materialize:             {r['dagster_dbt_s']:7.2f} s = {per_model(r['dagster_dbt_s']):.1f} ms/model over (a)"
        )
        parse_ratio = r["parse"]["seconds"] / r["dbt_parse_s"]
        overhead_ratio = per_model(r["ours_run_s"]) / per_model(r["dagster_dbt_s"])
        rows = [
            (
                "parse+compile / dbt parse <= 0.25",
                parse_ratio,
                TARGET_PARSE,
                parse_ratio <= TARGET_PARSE,
            ),
            (
                "overhead / dagster-dbt's <= 0.5",
                overhead_ratio,
                TARGET_OVERHEAD,
                overhead_ratio <= TARGET_OVERHEAD,
            ),
            *rows,
        ]
    print()
    for label, value, _, ok in rows:
        print(f"{label:40s} {value:8.2f}   {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    raise SystemExit(main())
