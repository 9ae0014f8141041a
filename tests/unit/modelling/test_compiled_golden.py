"""Golden compiled SQL of the demo models, per dialect: a diff shows exactly what a change does.

Regenerate after an intended change with `UPDATE_GOLDEN=1 pytest tests/unit/modelling`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlglot

from pipelines.modelling import ModelGraph
from pipelines.project import load_project

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden"
GRAPH = ModelGraph(load_project(ROOT))
DIALECTS = ("duckdb", "bigquery")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("model", GRAPH.order)
def test_compiled_sql_matches_golden(model: str, dialect: str) -> None:
    compiled = GRAPH.compile(model, dialect) + "\n"
    path = GOLDEN / dialect / f"{model}.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(compiled)
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert compiled == path.read_text()
    # what the target's own reader accepts (BigQuery cannot be run here; sqlglot's reader can)
    sqlglot.parse_one(compiled, read=dialect)


def test_no_stale_golden_files() -> None:
    expected = {f"{d}/{m}.sql" for d in DIALECTS for m in GRAPH.order}
    present = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*.sql")}
    assert present == expected
