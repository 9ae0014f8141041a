"""The quality gate's cost: auditing the demo's fact table against building it.

Usage (from the repository root)::

    .venv/bin/python bench/gate.py               # scale 100: fct_orders has about 5 M rows
    .venv/bin/python bench/gate.py --scale 10    # a quicker run

In a throwaway copy of the project it generates the demo (`ssot demo init --scale S`) and builds
the warehouse once (`ssot run`). Then, in one process, it rebuilds `conformed.fct_orders` whole
the way a run does (`write_audit_publish`: on DuckDB the table is built and committed beside
the published one, audited there, and renamed over it with the build's bookkeeping) --repeat
times and times each part: the build (the query written and committed, the contract checked)
and the audit (every check of the model: its yml tests, generic tests, data tests and GX
suite, failing rows counted and sampled in the warehouse; the suite is run once more alone to
show its share). The publish of each repetition is rolled back, so all of them see the same
data. It reports the medians and audit/build against the quality-gate issue's target
(<= 25 %), PASS or MISS (nothing is asserted); figures go to --out as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _project import copy_project, log, ssot, write_results

TARGET = 0.25
MODEL = "fct_orders"


class _Rollback(Exception):
    """Undo a timed build so the next repetition starts from the same table."""


def measure(root: Path, repeat: int) -> dict[str, Any]:
    os.environ["SSOT_PROJECT_DIR"] = str(root)
    from pipelines.modelling import ModelGraph
    from pipelines.modelling.audit import evaluate_tests
    from pipelines.modelling.publish import write_audit_publish
    from pipelines.project import load_project
    from pipelines.quality.expectations import run_suite
    from pipelines.warehouse import open_warehouse

    project = load_project(root)
    graph = ModelGraph(project)
    node = graph.nodes[MODEL]
    query = graph.query(MODEL)
    builds, audits, suites = [], [], []
    checks = rows = 0
    warehouse = open_warehouse(project)
    try:
        for attempt in range(repeat):
            times: dict[str, float] = {}

            def audit(relation: Any, written: Any, times: dict[str, float] = times) -> Any:
                nonlocal checks, rows
                times["built"] = time.perf_counter()
                outcomes = evaluate_tests(warehouse, graph, node, relation)
                times["audited"] = time.perf_counter()
                if node.suite is not None:
                    run_suite(warehouse, node.suite, relation)
                times["suite"] = time.perf_counter() - times["audited"]
                checks, rows = len(outcomes), warehouse.row_count(relation)
                return outcomes

            def roll_back(rows: int, staged: int | None) -> None:
                raise _Rollback  # the publish's transaction: nothing reaches the table

            started = time.perf_counter()
            with contextlib.suppress(_Rollback):
                write_audit_publish(
                    warehouse, node, query, incremental=False, audit=audit, on_publish=roll_back
                )
            builds.append(times["built"] - started)
            audits.append(times["audited"] - times["built"])
            suites.append(times["suite"])
            log(
                f"#{attempt + 1}: build {builds[-1]:.2f}s, audit {audits[-1]:.2f}s "
                f"({checks} checks; the GX suite alone {suites[-1]:.2f}s)"
            )
    finally:
        warehouse.close()
    return {
        "rows": rows,
        "checks": checks,
        "build_s": builds,
        "audit_s": audits,
        "suite_s": suites,
        "build_median_s": statistics.median(builds),
        "audit_median_s": statistics.median(audits),
        "suite_median_s": statistics.median(suites),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--keep",
        default=None,
        help="build the project in this folder and keep it; when it already holds a built "
        "project, measure on it without generating or building again",
    )
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_gate_"))
    reuse = (work / "project" / "warehouse" / "ssot.duckdb").exists()
    root = work / "project" if reuse else copy_project(work / "project")
    results: dict[str, Any] = {
        "benchmark": "bench/gate",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "cores": os.cpu_count(),
    }
    try:
        if reuse:
            log(f"measuring on the project built before in {root}")
        else:
            results["demo_init_s"] = ssot(
                root, "demo", "init", "--scale", str(args.scale), "--seed", str(args.seed)
            )
            log(f"demo at scale {args.scale}: {results['demo_init_s']:.1f}s")
            results["first_build_s"] = ssot(root, "run")
            log(f"warehouse built: {results['first_build_s']:.1f}s")
        results.update(measure(root, args.repeat))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ratio = results["audit_median_s"] / results["build_median_s"]
    results["ratio"] = ratio
    print(f"\nbench/gate: scale {args.scale}, {results['cores']} cores, {results['started_utc']}")
    print(f"conformed.{MODEL}: {results['rows']:,} rows, {results['checks']} checks")
    print(f"build (written, committed, contract):     {results['build_median_s']:7.2f} s")
    print(f"audit (every check of the model), median: {results['audit_median_s']:7.2f} s")
    print(f"  of which the GX suite:                  {results['suite_median_s']:7.2f} s")
    print(
        f"audit / build <= {TARGET:.0%}:                  {ratio:7.1%}  {'PASS' if ratio <= TARGET else 'MISS'}"
    )
    write_results(results, "gate", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
