"""Seeds: small CSV reference tables kept in the project (`seeds/<name>.csv`), loaded into
`seeds.<name>` on every run and read by models through `ref('<name>')`, as in dbt.

Types are read from the CSV (integers, decimals, dates, text); `config.column_types` in a
seeds yml overrides them per column, in the warehouse's SQL dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlglot import exp
from sqlglot.errors import ParseError

from pipelines.errors import ConfigError, WarehouseError
from pipelines.modelling import seed_relation
from pipelines.project import META_SCHEMA
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pipelines.project import SeedFile
    from pipelines.warehouse.base import Warehouse


def seed_fingerprint(seed: SeedFile) -> str:
    """Changes when the CSV or its column types change (then models reading it rebuild)."""
    import hashlib
    import json

    digest = hashlib.sha256(seed.path.read_bytes())
    digest.update(json.dumps(seed.properties.config.column_types, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def load_seed(warehouse: Warehouse, seed: SeedFile) -> int:
    """Replace `seeds.<name>` with the CSV's rows; returns the row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = seed.properties.config.column_types
    where = seed.properties_path or seed.path
    try:
        table = pacsv.read_csv(
            seed.path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(types, pa.string()), strings_can_be_null=True
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"{seed.path}: cannot read the seed CSV: {exc}") from None
    unknown = sorted(set(types) - set(table.column_names))
    if unknown:
        raise ConfigError(
            f"{where}: column_types of seed {seed.name!r} name {', '.join(unknown)}, which "
            f"{seed.path.name} does not have (it has {', '.join(table.column_names)})"
        )
    columns: list[exp.Expr] = []
    for name in table.column_names:
        column = exp.column(name, quoted=True)
        if name in types:
            try:
                kind = exp.DataType.build(types[name], dialect=warehouse.dialect)
            except (ParseError, ValueError):
                raise ConfigError(
                    f"{where}: column_types of seed {seed.name!r}: {types[name]!r} is not a "
                    f"{warehouse.dialect} type"
                ) from None
            columns.append(exp.cast(column, kind).as_(name, quoted=True))
        else:
            columns.append(column)
    scratch = Relation(META_SCHEMA, f"_seed__{seed.name}")
    relation = seed_relation(seed.name)
    try:
        warehouse.replace_from_arrow(scratch, table.schema, table.to_batches())
        warehouse.replace_with_select(relation, exp.select(*columns).from_(scratch.to_table()))
    except WarehouseError as exc:
        raise ConfigError(
            f"{where}: seed {seed.name!r} ({seed.path.name}) does not load: {exc}"
        ) from None
    finally:
        warehouse.drop(scratch)
    return int(table.num_rows)
