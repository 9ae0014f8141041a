"""Extraction from PostgreSQL: this project's extract+land path against COPY and against dlt.

Usage (from the repository root, with the local PostgreSQL on 127.0.0.1:5432)::

    .venv/bin/python bench/extract.py                                  # 5,000,000 and 1,000,000 rows
    .venv/bin/python bench/extract.py --rows 500000 --small-rows 100000  # a quicker run

One run creates a throwaway database ``ssot_bench_extract_<random>`` holding ``orders_bench``
(``--rows`` rows) and ``orders_bench_small`` (``--small-rows`` rows), filled server-side from
``generate_series``, and drops it at the end (also on an error or Ctrl-C). It then times:

(a) ``psql -c "COPY (SELECT * FROM orders_bench) TO STDOUT (FORMAT binary)" > /dev/null``:
    the physical bound (median of ``--copy-repeats`` runs);
(b) ``pipelines.landing.land_table`` from a temporary project whose ``sources/bench.yml``
    declares the table, into a fresh DuckDB file, in a fresh process that reports its own peak
    RSS (VmHWM): once for ``orders_bench`` and once for ``orders_bench_small``;
(c) dlt's ``sql_table`` source (``backend="pyarrow"``) into a DuckDB file, run by the Python of
    ``bench/.venv-dlt`` (created from ``bench/requirements-dlt.txt`` when missing or stale).

It prints a table with the targets ((b) <= 1.5 x (a); (c)/(b) >= 5; peak RSS at N <= 1.2 x at the
small size), each marked PASS or MISS (nothing is asserted), and writes the figures as JSON to
``--out`` (default: /tmp/ssot-bench/extract-<UTC timestamp>.json).

This file imports only the standard library at the top: the dlt child runs it with the dlt
venv's Python, where the project is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
DLT_VENV = ROOT / "bench" / ".venv-dlt"
DLT_REQUIREMENTS = ROOT / "bench" / "requirements-dlt.txt"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BIG_TABLE = "orders_bench"
SMALL_TABLE = "orders_bench_small"

TARGET_B_OVER_A = 1.5  # (b) seconds <= 1.5 x (a) seconds
TARGET_C_OVER_B = 5.0  # (c) seconds >= 5 x (b) seconds
TARGET_RSS_RATIO = 1.2  # (b) peak RSS at N <= 1.2 x at the small size

TABLE_DDL = """
CREATE TABLE {table} (
    order_id    bigint NOT NULL,
    customer_id integer,
    amount      numeric(12,2),
    currency    text,
    status      text,
    note        text,
    created_at  timestamptz,
    updated_at  timestamptz
)
"""

# Every value follows from the row number i, so a run is reproducible. NULLs: customer_id on
# every 1009th row, amount on every 997th, note on every 101st. note is 20-60 characters.
TABLE_FILL = """
INSERT INTO {table}
SELECT i,
       CASE WHEN i % 1009 = 0 THEN NULL ELSE (i * 7919) % 250000 + 1 END,
       CASE WHEN i % 997 = 0 THEN NULL ELSE ((i * 7907) % 1000000) / 100.0 END,
       (ARRAY['EUR', 'USD', 'GBP'])[i % 3 + 1],
       (ARRAY['PLACED', 'PAID', 'SHIPPED', 'CANCELLED', 'REFUNDED'])[i % 5 + 1],
       CASE WHEN i % 101 = 0 THEN NULL
            ELSE left(md5(i::text) || md5((i + 1)::text), 20 + (i % 41)::int) END,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '6 seconds',
       timestamptz '2024-01-01 00:00:00+00' + i * interval '6 seconds'
           + (i % 86400) * interval '1 second'
FROM generate_series(1::bigint, {rows}::bigint) AS g(i)
"""

PROJECT_PYPROJECT = """\
[tool.ssot]
name = "bench_extract"
default_target = "local"
[tool.ssot.targets.local]
type = "duckdb"
path = "warehouse/bench.duckdb"
"""

SOURCE_YML = """\
name: bench
owner: bench@example.com
connection: {{url_env: SSOT_BENCH_EXTRACT_URL, default: '{url}'}}
tables:
  - name: orders
    identifier: {table}
    primary_key: [order_id]
    cursor: updated_at
    columns:
      - {{name: order_id, type: integer, nullable: false}}
      - {{name: customer_id, type: integer}}
      - {{name: amount, type: 'decimal(12,2)'}}
      - {{name: currency, type: string}}
      - {{name: status, type: string}}
      - {{name: note, type: string}}
      - {{name: created_at, type: timestamp}}
      - {{name: updated_at, type: timestamp, nullable: false}}
"""


def other_cpu_ticks() -> dict[int, int] | None:
    """CPU ticks used so far by each process that is neither this benchmark (this script and its
    descendants) nor the PostgreSQL server: other work competing for the cores."""
    me = os.getpid()
    procs: dict[int, tuple[int, str, int]] = {}  # pid -> (parent, name, utime + stime)
    try:
        entries = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for proc in entries:
        with contextlib.suppress(OSError, ValueError):
            stat = (proc / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            procs[int(proc.name)] = (int(fields[1]), name, int(fields[11]) + int(fields[12]))

    def ours(pid: int) -> bool:
        seen: set[int] = set()
        while pid in procs and pid not in seen:
            if pid == me:
                return True
            seen.add(pid)
            pid = procs[pid][0]
        return False

    return {
        pid: ticks
        for pid, (_, name, ticks) in procs.items()
        if not name.startswith("postgres") and not ours(pid)
    }


def other_cpu_seconds(before: dict[int, int] | None, after: dict[int, int] | None) -> float | None:
    """A lower bound: processes that started and ended between the two snapshots are missed."""
    if before is None or after is None:
        return None
    ticks = sum(max(t - before.get(pid, 0), 0) for pid, t in after.items())
    return ticks / os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def versions(*names: str) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# children: each runs in its own process and writes <work>/result.json


def child_ssot(url: str, table: str, work: Path, code: str) -> dict[str, Any]:
    """(b): this project's extract -> contract -> land into a fresh DuckDB file.

    ``code`` holds the copy of ``pipelines/`` taken when the run started, so that both sizes
    run the same code even while the working tree changes.
    """
    sys.path.insert(0, code)
    import pipelines
    from pipelines.extract import connector_for
    from pipelines.landing import land_table
    from pipelines.project import load_project
    from pipelines.warehouse.duckdb import DuckDBWarehouse

    root = work / "project"
    (root / "sources").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PROJECT_PYPROJECT)
    (root / "sources" / "bench.yml").write_text(SOURCE_YML.format(url=url, table=table))
    project = load_project(root)
    source = project.sources["bench"]
    # the read path the connector takes (DuckDB's postgres scanner when its wheel is installed
    # and SSOT_EXTRACT_ENGINE is not `dbapi`, else the psycopg server-side cursor)
    connector = connector_for(project.source_url(source), source="bench", root=root)
    use_scanner = getattr(connector, "_use_scanner", None)
    engine = "duckdb-postgres-scanner" if use_scanner and use_scanner() else "psycopg-cursor"
    path = work / "bench.duckdb"
    started = time.perf_counter()
    with DuckDBWarehouse(path, threads=2) as warehouse:
        result = land_table(project, warehouse, source, source.table("orders"), run_id="bench")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows_read": result.rows_read,
        "rows_landed": result.rows_landed,
        "rows_quarantined": result.rows_quarantined,
        "peak_rss_mb": peak_rss_mb(),
        "duckdb_file_mb": path.stat().st_size / 2**20,
        "engine": engine,
        "path": result.path,
        "pipelines_from": str(Path(pipelines.__file__).parent),
        "versions": versions("duckdb", "duckdb-extension-postgres", "pyarrow", "psycopg"),
    }


def child_dlt(url: str, table: str, work: Path, code: str) -> dict[str, Any]:
    """(c): dlt's sql_table source, pyarrow backend, into a DuckDB file (dlt's defaults otherwise)."""
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = str(work / "dlt_data")
    import dlt
    from dlt.sources.sql_database import sql_table

    path = work / "dlt.duckdb"
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; name the driver pinned for dlt
    driver_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    started = time.perf_counter()
    resource = sql_table(credentials=driver_url, table=table, backend="pyarrow")
    pipeline = dlt.pipeline(
        pipeline_name="bench_extract",
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="bench",
        pipelines_dir=str(work / "dlt_pipelines"),
    )
    pipeline.run(resource)
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as client:
        qualified = client.make_qualified_table_name(table)
        rows = client.execute_sql(f"SELECT count(*) FROM {qualified}")[0][0]
    return {
        "seconds": seconds,
        "rows_landed": int(rows),
        "peak_rss_mb": peak_rss_mb(),
        "duckdb_file_mb": path.stat().st_size / 2**20,
        "versions": versions("dlt", "duckdb", "pyarrow", "sqlalchemy", "psycopg2-binary"),
    }


CHILDREN = {"ssot": child_ssot, "dlt": child_dlt}


def run_child(
    kind: str, python: str, url: str, table: str, code: str = "-", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one child in a fresh process and a fresh temp folder; its result plus the process wall time."""
    work = Path(tempfile.mkdtemp(prefix=f"bench_extract_{kind}_"))
    try:
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("SSOT_", "DLT_"))}
        child_env.update(env or {})
        logfile = work / "child.log"
        started = time.perf_counter()
        with logfile.open("w") as out:
            proc = subprocess.run(
                [
                    python,
                    str(Path(__file__).resolve()),
                    "--child",
                    kind,
                    url,
                    table,
                    str(work),
                    code,
                ],
                cwd=work,
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        process_seconds = time.perf_counter() - started
        if proc.returncode != 0:
            tail = logfile.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{kind} child exited with {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads((work / "result.json").read_text())
        result["process_seconds"] = process_seconds
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the parent: setup, the three lines, the report


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def ensure_dlt_python() -> str:
    """bench/.venv-dlt's Python, creating the venv or reinstalling when the pins changed."""
    python = DLT_VENV / "bin" / "python"
    stamp = DLT_VENV / ".requirements.sha256"
    digest = hashlib.sha256(DLT_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(python)
    if not python.exists():
        base = shutil.which("python3.11")
        if base is None and sys.version_info[:2] == (3, 11):
            base = sys.executable
        if base is None:
            raise RuntimeError("python3.11 not found: it is needed to create bench/.venv-dlt")
        log(f"creating {DLT_VENV.relative_to(ROOT)} with {base}")
        subprocess.run([base, "-m", "venv", str(DLT_VENV)], check=True)
        # keep the venv out of `git status` (.gitignore lists only `.venv/`)
        (DLT_VENV / ".gitignore").write_text("*\n")
    log(f"installing {DLT_REQUIREMENTS.relative_to(ROOT)} into {DLT_VENV.relative_to(ROOT)}")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(DLT_REQUIREMENTS)], check=True
    )
    stamp.write_text(digest + "\n")
    return str(python)


def setup_database(admin_url: str, database: str, tables: dict[str, int]) -> dict[str, Any]:
    """Create the database and fill each table; returns the timings of every step."""
    import psycopg
    from psycopg import sql

    timings: dict[str, Any] = {}
    started = time.perf_counter()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        server_version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    timings["create_database_s"] = time.perf_counter() - started
    timings["server_version"] = server_version
    with psycopg.connect(with_database(admin_url, database), autocommit=True) as con:
        for table, rows in tables.items():
            step: dict[str, Any] = {"rows": rows}
            name = sql.Identifier(table)
            t0 = time.perf_counter()
            con.execute(sql.SQL(TABLE_DDL).format(table=name))
            con.execute(sql.SQL(TABLE_FILL).format(table=name, rows=sql.Literal(rows)))
            step["insert_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            con.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (order_id)").format(name))
            step["primary_key_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            con.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
            step["vacuum_analyze_s"] = time.perf_counter() - t0
            size = con.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
            step["size_mb"] = size[0] / 2**20  # type: ignore[index]
            step["total_s"] = step["insert_s"] + step["primary_key_s"] + step["vacuum_analyze_s"]
            timings[table] = step
            log(f"  {table}: {rows:,} rows in {step['total_s']:.1f}s ({step['size_mb']:,.0f} MB)")
    timings["total_s"] = time.perf_counter() - started
    return timings


def drop_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def time_copy(url: str, table: str, repeats: int) -> dict[str, Any]:
    """(a): psql streams the whole table in binary COPY format to /dev/null."""
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql not found on PATH")
    query = f"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)"
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", query],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        runs.append(time.perf_counter() - started)
    return {"seconds": statistics.median(runs), "runs_s": runs, "command": f'psql -c "{query}"'}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


def verdict(value: float | None, target: float, at_most: bool) -> str:
    if value is None:
        return "n/a"
    return "PASS" if (value <= target if at_most else value >= target) else "MISS"


def ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str) -> float | None:
    if key in numerator and key in denominator and denominator[key]:
        return float(numerator[key]) / float(denominator[key])
    return None


def report(results: dict[str, Any]) -> str:
    rows, small = results["rows"], results["small_rows"]
    lines = results["lines"]
    out = [
        f"bench/extract: PostgreSQL {results['setup'].get('server_version', '?')} table of "
        f"{rows:,} rows (small: {small:,}), {results['machine']['cores']} cores, "
        f"{results['started_utc']}",
        f"code: pipelines/ at commit {results['code'].get('commit', '?')} with "
        f"{results['code'].get('uncommitted_files', '?')} uncommitted files "
        f"(snapshot {results['code'].get('sha256', '?')}); (b) read path: "
        f"{lines.get('b', {}).get('engine', '?')}, load path: {lines.get('b', {}).get('path', '?')}",
        f"setup (create database, fill, primary key, VACUUM ANALYZE both tables): "
        f"{results['setup'].get('total_s', float('nan')):.1f}s",
        "",
        f"{'line':<46} {'rows':>11} {'seconds':>9} {'rows/s':>11} {'peak RSS':>10} "
        f"{'other CPU':>10}",
    ]
    labels = {
        "a": "(a) psql COPY binary -> /dev/null",
        "b": "(b) ssot land_table -> DuckDB",
        "b_small": "(b) ssot land_table -> DuckDB, small table",
        "c": "(c) dlt sql_table pyarrow -> DuckDB",
    }
    for key, label in labels.items():
        line = lines.get(key, {})
        if "error" in line:
            last = [t for t in line["error"].splitlines() if t.strip()][-1].strip()
            out.append(f"{label:<46} failed: {last[:100]}")
            continue
        if "seconds" not in line:
            out.append(f"{label:<46} {'skipped':>11}")
            continue
        n = line.get("rows_landed", line.get("rows", 0))
        rss = f"{line['peak_rss_mb']:,.0f} MB" if "peak_rss_mb" in line else "-"
        other = line.get("other_cpu_cores")
        other_text = "?" if other is None else f"{other:.2f}"
        out.append(
            f"{label:<46} {n:>11,} {line['seconds']:>9.2f} {line['rows_per_s']:>11,.0f} {rss:>10} "
            f"{other_text:>10}"
        )
    out += ["", f"{'target':<46} {'measured':>11} {'target':>9} {'result':>11}"]
    for target in results["targets"]:
        measured = "n/a" if target["value"] is None else f"{target['value']:.2f} x"
        out.append(
            f"{target['name']:<46} {measured:>11} {target['target']:>9} {target['result']:>11}"
        )
    return "\n".join(out)


def snapshot_code(into: Path) -> dict[str, Any]:
    """Copy ``pipelines/`` as it is now; the commit, the uncommitted files and a content hash."""
    shutil.copytree(
        ROOT / "pipelines",
        into / "pipelines",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    digest = hashlib.sha256()
    for path in sorted((into / "pipelines").rglob("*.py")):
        digest.update(path.relative_to(into).as_posix().encode() + b"\0" + path.read_bytes())
    info: dict[str, Any] = {"path": str(into), "sha256": digest.hexdigest()[:16]}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(ROOT)]
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "pipelines"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info["uncommitted_files"] = len(status.splitlines())
    return info


def measure(args: argparse.Namespace, results: dict[str, Any], database: str, code: str) -> None:
    url = with_database(args.pg_url, database)
    lines: dict[str, Any] = results["lines"]

    def attempt(key: str, fn: Any, rows: int) -> None:
        others_before = other_cpu_ticks()
        started = time.perf_counter()
        try:
            line = fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            log(f"  {key} failed: {exc}")
            lines[key] = {"error": str(exc)}
            return
        line.setdefault("rows", rows)
        # other work on the machine distorts the figures: keep it next to them
        wall = time.perf_counter() - started
        other = other_cpu_seconds(others_before, other_cpu_ticks())
        if other is not None and wall > 0:
            line["other_cpu_s"] = other
            line["other_cpu_cores"] = other / wall
        landed = line.get("rows_landed", rows)
        if landed != rows:
            line["warning"] = f"landed {landed:,} rows of {rows:,}"
            log(f"  {key}: {line['warning']}")
        line["rows_per_s"] = landed / line["seconds"] if line["seconds"] else None
        lines[key] = line
        extra = f", peak RSS {line['peak_rss_mb']:,.0f} MB" if "peak_rss_mb" in line else ""
        log(f"  {key}: {line['seconds']:.2f}s{extra}")

    log(f"(a) psql COPY binary of {BIG_TABLE}, {args.copy_repeats} run(s)")
    attempt("a", lambda: time_copy(url, BIG_TABLE, args.copy_repeats), args.rows)
    log(f"(b) land_table of {BIG_TABLE}")
    engine_env = {"SSOT_EXTRACT_ENGINE": args.ssot_engine} if args.ssot_engine != "auto" else {}
    attempt(
        "b", lambda: run_child("ssot", sys.executable, url, BIG_TABLE, code, engine_env), args.rows
    )
    log(f"(b) land_table of {SMALL_TABLE}")
    attempt(
        "b_small",
        lambda: run_child("ssot", sys.executable, url, SMALL_TABLE, code, engine_env),
        args.small_rows,
    )
    if args.skip_dlt:
        return
    log("(c) dlt sql_table, backend=pyarrow")
    try:
        started = time.perf_counter()
        python = ensure_dlt_python()
        results["dlt_venv_s"] = time.perf_counter() - started
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        lines["c"] = {"error": f"bench/.venv-dlt: {exc}"}
        return
    attempt("c", lambda: run_child("dlt", python, url, BIG_TABLE), args.rows)


def summarize(results: dict[str, Any]) -> None:
    lines = results["lines"]
    a, b, b_small, c = (lines.get(k, {}) for k in ("a", "b", "b_small", "c"))
    b_over_a = ratio(b, a, "seconds")
    c_over_b = ratio(c, b, "seconds")
    rss = ratio(b, b_small, "peak_rss_mb")
    results["ratios"] = {"b_over_a": b_over_a, "c_over_b": c_over_b, "rss_n_over_small": rss}
    results["targets"] = [
        {
            "name": "(b)/(a) seconds",
            "value": b_over_a,
            "target": f"<= {TARGET_B_OVER_A:g} x",
            "result": verdict(b_over_a, TARGET_B_OVER_A, at_most=True),
        },
        {
            "name": "(c)/(b) seconds",
            "value": c_over_b,
            "target": f">= {TARGET_C_OVER_B:g} x",
            "result": verdict(c_over_b, TARGET_C_OVER_B, at_most=False),
        },
        {
            "name": "(b) peak RSS, N / small",
            "value": rss,
            "target": f"<= {TARGET_RSS_RATIO:g} x",
            "result": verdict(rss, TARGET_RSS_RATIO, at_most=True),
        },
    ]


def output_path(out: str | None, stamp: str) -> Path:
    if out is None:
        return Path(tempfile.gettempdir()) / "ssot-bench" / f"extract-{stamp}.json"
    path = Path(out)
    return path if path.suffix == ".json" else path / f"extract-{stamp}.json"


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of orders_bench")
    parser.add_argument(
        "--small-rows", type=int, default=1_000_000, help="rows of the table for the RSS comparison"
    )
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="a database to connect to as admin"
    )
    parser.add_argument(
        "--copy-repeats", type=int, default=3, help="runs of (a); the median counts"
    )
    parser.add_argument(
        "--ssot-engine",
        choices=("auto", "arrow", "dbapi"),
        default="auto",
        help="line (b): the project's default path (a first load read by DuckDB itself), "
        "the scanner through Arrow (SSOT_EXTRACT_ENGINE=arrow) or the psycopg cursor "
        "(SSOT_EXTRACT_ENGINE=dbapi)",
    )
    parser.add_argument("--skip-dlt", action="store_true", help="leave out line (c)")
    parser.add_argument("--out", help="JSON file, or a folder for extract-<UTC timestamp>.json")
    parser.add_argument(
        "--child", nargs=5, metavar=("KIND", "URL", "TABLE", "DIR", "CODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        kind, url, table, work, code = args.child
        result = CHILDREN[kind](url, table, Path(work), code)
        (Path(work) / "result.json").write_text(json.dumps(result))
        return

    signal.signal(signal.SIGTERM, _terminate)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "benchmark": "bench/extract",
        "started_utc": now.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": args.rows,
        "small_rows": args.small_rows,
        "ssot_engine": args.ssot_engine,
        "machine": machine(),
        "loadavg_at_start": list(os.getloadavg()),
        "setup": {},
        "lines": {},
    }
    database = f"ssot_bench_extract_{secrets.token_hex(4)}"
    code = Path(tempfile.mkdtemp(prefix="bench_extract_code_"))
    results["code"] = snapshot_code(code)
    log(
        f"code: pipelines/ at {results['code'].get('commit', '?')} "
        f"(+{results['code'].get('uncommitted_files', '?')} uncommitted files), copied to {code}"
    )
    log(f"setup: database {database}")
    try:
        results["setup"] = setup_database(
            args.pg_url, database, {BIG_TABLE: args.rows, SMALL_TABLE: args.small_rows}
        )
        log(f"setup took {results['setup']['total_s']:.1f}s")
        measure(args, results, database, str(code))
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        shutil.rmtree(code, ignore_errors=True)
        try:
            drop_database(args.pg_url, database)
            log(f"dropped database {database}")
        except Exception as exc:
            log(f"could not drop database {database}: {exc}; drop it by hand")
        signal.signal(signal.SIGINT, previous)
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["loadavg_at_end"] = list(os.getloadavg())
    summarize(results)
    text = report(results)
    print(text, flush=True)
    path = output_path(args.out, stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
