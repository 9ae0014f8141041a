"""Time the demo generator at several scales: rows per second and peak memory.

Usage (from the repository root)::

    .venv/bin/python bench/demo_scale.py                 # scales 1, 10 and 100
    .venv/bin/python bench/demo_scale.py --scales 1 10   # a quicker run

Each scale runs in its own process (so peak RSS is that run's own) into a temporary directory
that is deleted afterwards: ``init_demo`` to SQLite + flat files, then one ``advance_demo`` day.
"rows" counts every row written at init: database rows plus export-file lines.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(scale: float, out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from pipelines.demo import advance_demo, init_demo

    started = time.perf_counter()
    init_demo(out, scale=scale, seed=42)
    init_s = time.perf_counter() - started
    summary = json.loads((out / "truth" / "summary.json").read_text())
    rows = sum(t["rows"] for t in summary["tables"].values())
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    started = time.perf_counter()
    advance_demo(out, days=1)
    advance_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "scale": scale,
        "init_s": init_s,
        "rows": rows,
        "advance_s": advance_s,
        "peak_rss_mb": peak_mb,
        "disk_mb": disk / 2**20,
        "orders": summary["tables"]["shop.orders"]["rows"],
        "order_lines": summary["tables"]["shop.order_lines"]["rows"],
        "people": summary["people"]["created"],
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument("--child", nargs=2, metavar=("SCALE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(float(args.child[0]), Path(args.child[1]))
        return
    print(
        f"{'scale':>6} {'people':>9} {'orders':>10} {'lines':>11} {'rows':>11} {'init s':>8} "
        f"{'rows/s':>10} {'advance s':>10} {'peak RSS':>9} {'disk':>8}"
    )
    for scale in args.scales:
        tmp = Path(tempfile.mkdtemp(prefix="demo_scale_"))
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(scale), str(tmp / "demo")],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                raise SystemExit(f"scale {scale} failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"{r['scale']:>6g} {r['people']:>9,} {r['orders']:>10,} {r['order_lines']:>11,} "
            f"{r['rows']:>11,} {r['init_s']:>8.1f} {r['rows'] / r['init_s']:>10,.0f} "
            f"{r['advance_s']:>10.2f} {r['peak_rss_mb']:>7,.0f}MB {r['disk_mb']:>6,.0f}MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
