"""Golden compiled SQL of the demo models, per dialect: a diff shows exactly what a change does.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit/modelling`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlglot

from pipelines.modelling import ModelGraph
from pipelines.project import load_project

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
GRAPH = ModelGraph(load_project(ROOT))
DIALECTS = ("duckdb", "bigquery")
#: the models built from an increment have a second golden file: the increment's query
INCREMENTAL = [name for name in GRAPH.order if GRAPH.nodes[name].builds_increments]
#: the last build an increment's `changes()` read from, fixed so the files are stable
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
VARIANTS = [(m, False) for m in GRAPH.order] + [(m, True) for m in INCREMENTAL]


def golden_name(model: str, incremental: bool) -> str:
    return f"{model}.incremental.sql" if incremental else f"{model}.sql"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("model", "incremental"), VARIANTS)
def test_compiled_sql_matches_golden(model: str, incremental: bool, dialect: str) -> None:
    compiled = GRAPH.compile(model, dialect, incremental=incremental, since=SINCE) + "\n"
    path = GOLDEN / dialect / golden_name(model, incremental)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(compiled)
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert compiled == path.read_text()
    # what the target's own reader accepts (BigQuery cannot be run here; sqlglot's reader can)
    sqlglot.parse_one(compiled, read=dialect)


def test_no_stale_golden_files() -> None:
    expected = {f"{d}/{golden_name(m, i)}" for d in DIALECTS for m, i in VARIANTS}
    present = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*.sql")}
    assert present == expected
