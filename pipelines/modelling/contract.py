"""A model's contract: the columns its yml declares (and their `data_type`s) must be what its
SQL produces. Checked on every build, inside the build's transaction, so a model that breaks
its contract leaves the previous table in place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlglot import exp
from sqlglot.errors import ParseError

from pipelines.errors import ModelError

if TYPE_CHECKING:
    from pipelines.modelling.graph import ModelNode
    from pipelines.warehouse.base import Relation, Warehouse


def yml_line(path: Path, model: str, column: str | None = None) -> int | None:
    """The line of ``model``'s entry in a models yml (of its ``column`` when given), if found."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None

    def named(name: str) -> re.Pattern[str]:
        return re.compile(rf"""(?:^|[\s{{,-])name:\s*['"]?{re.escape(name)}['"]?\s*(?:[,}}]|$)""")

    model_pattern, start = named(model), None
    for number, line in enumerate(lines, start=1):
        if start is None:
            if model_pattern.search(line):
                start = number
                if column is None:
                    return number
        elif column is not None and named(column).search(line):
            return number
    return None


def _same_type(declared: str, actual: str, authored: str, dialect: str) -> bool:
    """Whether a yml ``data_type`` (written in the model's dialect, ``authored``) is the type the
    warehouse reports (in its ``dialect``): both are rendered in the warehouse's dialect. A
    reported type without parameters (NUMERIC for NUMERIC(18, 2)) matches on its name."""
    try:
        wanted = exp.DataType.build(declared, dialect=authored)
        found = exp.DataType.build(actual, dialect=dialect)
    except (ParseError, ValueError):
        return declared.strip().lower() == actual.strip().lower()
    if wanted.sql(dialect=dialect) == found.sql(dialect=dialect):
        return True
    return not found.expressions and wanted.this == found.this


def check_contract(warehouse: Warehouse, node: ModelNode, relation: Relation | None = None) -> None:
    """Raise a ModelError naming the yml file and line of the first column that breaks it.
    ``relation``: check this build of the model (a candidate) instead of the model's own."""
    declared = node.model.properties.columns
    if not declared:
        return
    built = dict(warehouse.columns(relation or node.relation))
    path = node.model.properties_path or node.model.path
    for column in declared:
        line = yml_line(path, node.name, column.name) if path.suffix in (".yml", ".yaml") else None
        where = f"{path}:{line}" if line else str(path)
        if column.name not in built:
            raise ModelError(
                f"{where}: model {node.name!r} declares column {column.name!r}, but its SQL "
                f"({node.model.path.name}) does not produce it; it produces "
                f"{', '.join(built)}. Select the column or remove it from the yml."
            )
        if column.data_type and not _same_type(
            column.data_type, built[column.name], node.dialect, warehouse.dialect
        ):
            raise ModelError(
                f"{where}: model {node.name!r} declares {column.name!r} as "
                f"{column.data_type}, but its SQL produces {built[column.name]}. Cast it in "
                f"{node.model.path.name} or fix data_type."
            )
