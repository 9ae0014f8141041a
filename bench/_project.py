"""What the end-to-end benchmarks share: a throwaway copy of the project and `ssot` in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.project import copy_project_files

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def copy_project(root: Path) -> Path:
    """The project's own files (no data, warehouse or Dagster history) copied into ``root``."""
    return copy_project_files(ROOT, root)


def ssot(root: Path, *args: str) -> float:
    """Run `ssot ARGS` on the project in ``root``; its wall time in seconds (raises on failure)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSOT_")}
    env.update({"SSOT_PROJECT_DIR": str(root), "DAGSTER_HOME": str(root / ".dagster")})
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("ssot")), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ssot {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return seconds


def write_results(results: dict[str, Any], name: str, out: str | None) -> Path:
    """Write a benchmark's figures as JSON to ``out`` (default: /tmp/ssot-bench/<name>-<UTC>.json)."""
    path = Path(out or f"/tmp/ssot-bench/{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"written: {path}")
    return path
