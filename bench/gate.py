"""The quality gate's cost: auditing the demo's fact table against building it.

Usage (from the repository root)::

    .venv/bin/python bench/gate.py               # scale 100: fct_orders has about 5 M rows
    .venv/bin/python bench/gate.py --scale 10    # a quicker run

In a throwaway copy of the project it generates the demo (`ssot demo init --scale S`) and builds
the warehouse once (`ssot run`). Then, in one process, it rebuilds `conformed.fct_orders` the way
a run does (write-audit-publish: the build and its audit in one transaction) --repeat times and
times each part: the build (materialize + contract) and the audit (every check of the model: its
yml tests, generic tests and GX suite, failing rows counted and sampled in the warehouse). Each
repetition is rolled back, so all of them see the same data. It reports the medians and
audit/build against the quality-gate issue's target (<= 25 %), PASS or MISS (nothing is
asserted); figures go to --out as JSON.
"""

from __future__ import annotations

import argparse
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
    from pipelines.modelling import ModelGraph, materialize
    from pipelines.modelling.audit import evaluate_tests
    from pipelines.modelling.contract import check_contract
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
            try:
                with warehouse.transaction():
                    started = time.perf_counter()
                    materialize(warehouse, node.build_spec, query)
                    check_contract(warehouse, node)
                    built = time.perf_counter()
                    outcomes = evaluate_tests(warehouse, graph, node)
                    audited = time.perf_counter()
                    if node.suite is not None:
                        run_suite(warehouse, node.suite, node.relation)
                    suite_done = time.perf_counter()
                    rows = warehouse.row_count(node.relation)
                    raise _Rollback
            except _Rollback:
                pass
            builds.append(built - started)
            audits.append(audited - built)
            suites.append(suite_done - audited)
            checks = len(outcomes)
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
    print(f"build (materialize + contract), median:   {results['build_median_s']:7.2f} s")
    print(f"audit (every check of the model), median: {results['audit_median_s']:7.2f} s")
    print(f"  of which the GX suite:                  {results['suite_median_s']:7.2f} s")
    print(
        f"audit / build <= {TARGET:.0%}:                  {ratio:7.1%}  {'PASS' if ratio <= TARGET else 'MISS'}"
    )
    write_results(results, "gate", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
