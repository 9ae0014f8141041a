"""Column schemas shown in the Dagster UI, built from source contracts and model yml."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from pipelines.config import SourceTableSpec
    from pipelines.modelling.graph import ModelNode


def table_schema_for_source(table: SourceTableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=col.name,
                type=col.type,
                description=col.description or None,
                constraints=dg.TableColumnConstraints(
                    nullable=col.nullable and col.name not in table.primary_key
                ),
                tags={"pii": col.pii} if col.pii != "none" else {},
            )
            for col in table.columns
        ]
    )


def table_schema_for_model(node: ModelNode) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=col.name,
                type=col.data_type or "unknown",
                description=col.description or None,
                tags={"pii": str(col.meta["pii"])} if col.meta.get("pii") else {},
            )
            for col in node.model.properties.columns
        ]
    )


def table_schema_from_warehouse(columns: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=name, type=kind) for name, kind in columns])
