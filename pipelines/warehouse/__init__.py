"""Warehouse backends. `open_warehouse` picks the backend for the selected target."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.warehouse.base import Relation, Warehouse

if TYPE_CHECKING:
    from pipelines.project import Project


def open_warehouse(project: Project, *, read_only: bool = False) -> Warehouse:
    """Open a session on the project's selected target (``$SSOT_TARGET`` or the default).

    A writing session works on the target's build file and :meth:`Warehouse.publish` hands
    its commits to readers; ``read_only`` opens what readers see (the published file), which
    works while a run is writing.
    """
    target = project.target
    if target.type == "duckdb":
        from pipelines.warehouse.duckdb import DuckDBWarehouse

        published = project.resolve_path(target.path)
        if read_only:
            return DuckDBWarehouse(
                published, threads=target.threads, memory_limit=target.memory_limit, read_only=True
            )
        return DuckDBWarehouse(
            project.resolve_path(target.build_file()),
            threads=target.threads,
            memory_limit=target.memory_limit,
            publish_to=published,
            builders=target.builders,
            compress_text=target.compress_text,
        )
    if target.type == "bigquery":
        import os

        from pipelines.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse(
            target.project,
            location=target.location,
            maximum_bytes_billed=target.maximum_bytes_billed,
            api_endpoint=os.environ.get("SSOT_BIGQUERY_API_ENDPOINT") or target.api_endpoint,
        )
    raise AssertionError(f"unhandled target type {target.type!r}")


def read_ahead(project: Project) -> None:
    """Start reading what a run of the project's selected target will read, where that helps:
    a DuckDB target's build file, into the page cache in the background (see
    :func:`pipelines.warehouse.duckdb.read_ahead`). The run does not wait for it; a session
    opening that file stops it first, waiting at most for the request in progress."""
    target = project.target
    if target.type == "duckdb":
        from pipelines.warehouse.duckdb import read_ahead as read_file_ahead

        read_file_ahead(project.resolve_path(target.build_file()))


def backend_for(dialect: str) -> type[Warehouse] | None:
    """The backend class that speaks ``dialect`` (its SQL rules without a connection), if any."""
    if dialect == "duckdb":
        from pipelines.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse
    if dialect == "bigquery":
        from pipelines.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse
    return None


__all__ = ["Relation", "Warehouse", "backend_for", "open_warehouse", "read_ahead"]
