"""Seeds: CSV reference tables loaded into `seeds.<name>` and read by models through ref()."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError, ModelError
from pipelines.modelling import ModelGraph, seed_relation
from pipelines.project import load_project
from pipelines.seeds import load_seed
from pipelines.warehouse.duckdb import DuckDBWarehouse

CSV = "code,name,rate,since\n01,Alpha,1.25,2026-01-02\n02,Beta,,2026-02-03\n"
YML = """
seeds:
  - name: codes
    description: test codes
    config:
      column_types: {code: varchar}
"""


def load(make_project, files: dict[str, str]) -> tuple[dict[str, str], list[dict]]:
    """(column -> type, rows) of `seeds.codes` after loading it."""
    project = load_project(make_project(files))
    with DuckDBWarehouse(":memory:") as warehouse:
        rows = load_seed(warehouse, project.seeds["codes"])
        table = warehouse.query("select * from seeds.codes order by code")
        assert rows == table.num_rows
        return dict(warehouse.columns(seed_relation("codes"))), table.to_pylist()


def test_types_are_read_from_the_csv_and_column_types_override_them(make_project) -> None:
    columns, rows = load(make_project, {"seeds/codes.csv": CSV, "seeds/codes.yml": YML})
    assert columns == {
        "code": "VARCHAR",  # leading zeros kept: declared text
        "name": "VARCHAR",
        "rate": "DOUBLE",
        "since": "DATE",
    }
    assert [r["code"] for r in rows] == ["01", "02"]
    assert rows[1]["rate"] is None


def test_without_column_types_codes_are_read_as_numbers(make_project) -> None:
    columns, _ = load(make_project, {"seeds/codes.csv": CSV})
    assert columns["code"] == "BIGINT"


def test_column_types_naming_a_missing_column_is_an_error(make_project) -> None:
    with pytest.raises(ConfigError, match=r"codes\.yml: column_types of seed 'codes' name nope"):
        load(
            make_project,
            {"seeds/codes.csv": CSV, "seeds/codes.yml": YML.replace("code: varchar", "nope: int")},
        )


def test_a_value_that_does_not_cast_names_the_seed(make_project) -> None:
    with pytest.raises(ConfigError, match=r"seed 'codes' \(codes\.csv\) does not load"):
        load(
            make_project,
            {"seeds/codes.csv": CSV, "seeds/codes.yml": YML.replace("code: varchar", "name: int")},
        )


def test_a_yml_entry_without_its_csv_is_an_error(make_project) -> None:
    with pytest.raises(
        ConfigError, match=r"describes seed 'codes' but there is no seeds/codes\.csv"
    ):
        load_project(make_project({"seeds/codes.yml": YML}))


def test_models_ref_seeds_and_depend_on_them(make_project) -> None:
    graph = ModelGraph(
        load_project(
            make_project(
                {
                    "seeds/codes.csv": CSV,
                    "models/staging/a.sql": "select 1 as id",
                    "models/conformed/b.sql": (
                        "select a.id, c.name from {{ ref('a') }} as a, {{ ref('codes') }} as c"
                    ),
                }
            )
        )
    )
    node = graph.nodes["b"]
    assert (node.upstream, node.seeds) == (["a"], ["codes"])
    assert '"seeds"."codes"' in graph.compile("b", "duckdb")


def test_a_ref_to_nothing_lists_models_and_seeds(make_project) -> None:
    with pytest.raises(ModelError, match=r"ref\('nope'\) names no model or seed.*known: a, codes"):
        ModelGraph(
            load_project(
                make_project(
                    {
                        "seeds/codes.csv": CSV,
                        "models/staging/a.sql": "select * from {{ ref('nope') }}",
                    }
                )
            )
        )
