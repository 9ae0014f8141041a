"""dbt-style models: Jinja rendering, the dependency graph, sqlglot compilation, materializations."""

from __future__ import annotations

from pipelines.modelling.graph import (
    DataTest,
    ModelGraph,
    ModelNode,
    referenced_model,
    seed_relation,
    source_relation,
)
from pipelines.modelling.materialize import BuildSpec, materialize

__all__ = [
    "BuildSpec",
    "DataTest",
    "ModelGraph",
    "ModelNode",
    "materialize",
    "referenced_model",
    "seed_relation",
    "source_relation",
]
