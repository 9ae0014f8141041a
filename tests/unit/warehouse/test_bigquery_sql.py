"""The BigQuery backend's SQL rules, without a connection: what BigQuery spells differently is
rewritten with the same meaning, what it cannot express is an error (never silently dropped)."""

from __future__ import annotations

import pytest
import sqlglot

from pipelines.errors import ModelError, TerminalWarehouseError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.warehouse.bigquery import BigQueryWarehouse
from pipelines.warehouse.duckdb import DuckDBWarehouse


def duckdb_sql(text: str):
    return sqlglot.parse_one(text, read="duckdb")


def test_a_global_regexp_replace_loses_only_its_flag() -> None:
    query = duckdb_sql("select regexp_replace(phone, '[^0-9]', '', 'g') as digits from t")
    assert BigQueryWarehouse.sql_for(query) == (
        "SELECT REGEXP_REPLACE(phone, '[^0-9]', '') AS digits FROM t"
    )
    # the caller's expression is untouched: DuckDB still gets its flag
    assert "'g'" in DuckDBWarehouse.sql_for(query)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("regexp_replace(a, 'x', '')", "replaces only the first match"),
        ("regexp_replace(a, 'x', '', 'gi')", "takes no flags"),
    ],
)
def test_what_bigquery_cannot_express_is_an_error(call, message) -> None:
    with pytest.raises(TerminalWarehouseError, match=message):
        BigQueryWarehouse.sql_for(duckdb_sql(f"select {call} from t"))


def test_compile_names_the_model_that_cannot_be_written(make_project) -> None:
    root = make_project({"models/staging/m.sql": "select regexp_replace('a-b', '-', '') as x"})
    graph = ModelGraph(load_project(root))
    assert "regexp_replace" in graph.compile("m", "duckdb").lower()
    with pytest.raises(ModelError, match=r"m\.sql: .*replaces only the first match"):
        graph.compile("m", "bigquery")


def test_the_cost_guard_is_on_every_query_job_config() -> None:
    """Constructing the session makes no request; each job config carries the target's cap."""
    guarded = BigQueryWarehouse(
        "p", maximum_bytes_billed=5_000_000, api_endpoint="http://127.0.0.1:9"
    )
    assert guarded._job_config().maximum_bytes_billed == 5_000_000
    dry = guarded._job_config(dry_run=True, use_query_cache=False)
    assert dry.dry_run is True and dry.maximum_bytes_billed == 5_000_000
    unguarded = BigQueryWarehouse("p", api_endpoint="http://127.0.0.1:9")
    assert unguarded._job_config().maximum_bytes_billed is None


def test_column_types_from_a_table_s_schema_are_written_as_information_schema_writes_them() -> None:
    from google.cloud.bigquery import SchemaField

    from pipelines.warehouse.bigquery import _column_type

    def typed(*args, **kwargs) -> str:
        return _column_type(SchemaField(*args, **kwargs))

    assert typed("i", "INTEGER") == "INT64" and typed("f", "FLOAT") == "FLOAT64"
    assert typed("b", "BOOLEAN") == "BOOL" and typed("t", "TIMESTAMP") == "TIMESTAMP"
    assert typed("n", "NUMERIC", precision=18, scale=2) == "NUMERIC(18, 2)"
    assert typed("n", "BIGNUMERIC", precision=40) == "BIGNUMERIC(40)"
    assert typed("s", "STRING", max_length=10) == "STRING(10)"
    assert typed("a", "INTEGER", mode="REPEATED") == "ARRAY<INT64>"
    assert typed("r", "RANGE", range_element_type="DATE") == "RANGE<DATE>"
    nested = SchemaField("x", "STRING", max_length=3)
    assert (
        typed("s", "RECORD", mode="REPEATED", fields=[SchemaField("a", "INTEGER"), nested])
        == "ARRAY<STRUCT<a INT64, x STRING(3)>>"
    )
    # as the tables API sends a schema (numbers as text, legacy names, a repeated field and
    # a name that needs quoting inside a struct)
    rest = SchemaField.from_api_repr(
        {
            "name": "r",
            "type": "RECORD",
            "fields": [
                {"name": "n", "type": "NUMERIC", "precision": "18", "scale": "2"},
                {"name": "tags", "type": "STRING", "mode": "REPEATED"},
                {"name": "my field", "type": "GEOGRAPHY"},
                {"name": "j", "type": "JSON"},
                {"name": "i", "type": "INTERVAL"},
            ],
        }
    )
    assert _column_type(rest) == (
        "STRUCT<n NUMERIC(18, 2), tags ARRAY<STRING>, `my field` GEOGRAPHY, j JSON, i INTERVAL>"
    )
