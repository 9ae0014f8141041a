"""Warehouse backends. `open_warehouse` picks the backend for the selected target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.warehouse.base import Relation, Warehouse

if TYPE_CHECKING:
    from pipelines.project import Project


def open_warehouse(project: Project, *, read_only: bool = False) -> Warehouse:
    """Open a session on the project's selected target (``$SSOT_TARGET`` or the default)."""
    target = project.target
    if target.type == "duckdb":
        from pipelines.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(
            project.resolve_path(target.path),
            threads=target.threads,
            memory_limit=target.memory_limit,
            read_only=read_only,
        )
    raise AssertionError(f"unhandled target type {target.type!r}")


__all__ = ["Relation", "Warehouse", "open_warehouse"]
