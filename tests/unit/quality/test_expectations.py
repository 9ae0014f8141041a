"""GX 1.x suites run in the warehouse as SQL: every supported expectation type gives the verdict
(and the unexpected count) of Great Expectations' own engine on the same rows."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.errors import ConfigError
from pipelines.quality.expectations import SUPPORTED, load_suite, run_suite
from pipelines.warehouse import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse

REPO = Path(__file__).resolve().parents[3]

V = [1, 2, 2, 5, None, 9]  # numbers with a null and a repeat
S = ["apple", "banana", None, "cherry", "apple", "Date"]
A = [5, 3, None, 2, None, 5]
B = [1, 3, 4, None, None, 1]  # (a, b) repeats in the first and last row
C = [4, 0, 3, 8, None, 1]
ROWS = {"v": V, "s": S, "a": A, "b": B, "c": C}

# (type, kwargs): each runs on ROWS; together they pass and fail every rule at least once
CASES: list[tuple[str, dict]] = [
    ("expect_column_values_to_not_be_null", {"column": "v"}),
    ("expect_column_values_to_not_be_null", {"column": "v", "mostly": 0.8}),
    ("expect_column_values_to_not_be_null", {"column": "v", "mostly": 0.9}),
    ("expect_column_values_to_be_null", {"column": "v"}),
    ("expect_column_values_to_be_null", {"column": "a", "mostly": 0.3}),
    ("expect_column_values_to_be_unique", {"column": "v"}),
    ("expect_column_values_to_be_unique", {"column": "c"}),
    ("expect_column_values_to_be_unique", {"column": "s", "mostly": 0.6}),
    ("expect_column_values_to_be_in_set", {"column": "v", "value_set": [1, 2, 5, 9]}),
    ("expect_column_values_to_be_in_set", {"column": "v", "value_set": [1, 2]}),
    (
        "expect_column_values_to_be_in_set",
        {"column": "s", "value_set": ["apple", "banana"], "mostly": 0.5},
    ),
    ("expect_column_values_to_not_be_in_set", {"column": "s", "value_set": ["durian"]}),
    ("expect_column_values_to_not_be_in_set", {"column": "s", "value_set": ["apple"]}),
    ("expect_column_values_to_be_between", {"column": "v", "min_value": 1, "max_value": 9}),
    (
        "expect_column_values_to_be_between",
        {"column": "v", "min_value": 1, "max_value": 9, "strict_min": True},
    ),
    (
        "expect_column_values_to_be_between",
        {"column": "v", "max_value": 5, "strict_max": True, "mostly": 0.5},
    ),
    ("expect_column_values_to_be_between", {"column": "v", "min_value": 2}),
    ("expect_column_values_to_match_regex", {"column": "s", "regex": "an"}),
    ("expect_column_values_to_match_regex", {"column": "s", "regex": "^[a-z]+$"}),
    ("expect_column_values_to_match_regex", {"column": "s", "regex": "^[a-z]+$", "mostly": 0.75}),
    ("expect_column_values_to_not_match_regex", {"column": "s", "regex": "^[A-Z]"}),
    ("expect_column_values_to_not_match_regex", {"column": "s", "regex": "x"}),
    ("expect_column_values_to_match_regex_list", {"column": "s", "regex_list": ["^a", "^b", "^c"]}),
    (
        "expect_column_values_to_match_regex_list",
        {"column": "s", "regex_list": ["a", "e"], "match_on": "all"},
    ),
    ("expect_column_values_to_match_regex_list", {"column": "s", "regex_list": ["^[a-z]", "^D"]}),
    ("expect_column_value_lengths_to_be_between", {"column": "s", "min_value": 4, "max_value": 6}),
    ("expect_column_value_lengths_to_be_between", {"column": "s", "min_value": 5}),
    ("expect_column_value_lengths_to_equal", {"column": "s", "value": 5}),
    ("expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "a", "column_B": "b"}),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "a", "column_B": "b", "or_equal": True},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {
            "column_A": "a",
            "column_B": "b",
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        },
    ),
    ("expect_column_pair_values_to_be_equal", {"column_A": "a", "column_B": "b", "mostly": 0.2}),
    (
        "expect_column_pair_values_to_be_equal",
        {"column_A": "a", "column_B": "b", "ignore_row_if": "neither"},
    ),
    ("expect_multicolumn_sum_to_equal", {"column_list": ["a", "c"], "sum_total": 9}),
    (
        "expect_multicolumn_sum_to_equal",
        {
            "column_list": ["a", "c"],
            "sum_total": 9,
            "ignore_row_if": "any_value_is_missing",
            "mostly": 0.3,
        },
    ),
    (
        "expect_multicolumn_sum_to_equal",
        {
            "column_list": ["a", "c"],
            "sum_total": 9,
            "ignore_row_if": "any_value_is_missing",
            "mostly": 0.2,
        },
    ),
    ("expect_select_column_values_to_be_unique_within_record", {"column_list": ["a", "b"]}),
    ("expect_select_column_values_to_be_unique_within_record", {"column_list": ["a", "c"]}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["a", "b"]}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["v", "s"]}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["a", "b"], "ignore_row_if": "never"}),
    ("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": 6}),
    ("expect_table_row_count_to_be_between", {"min_value": 7}),
    ("expect_table_row_count_to_be_between", {"max_value": 6, "strict_max": True}),
    ("expect_table_row_count_to_equal", {"value": 6}),
    ("expect_table_row_count_to_equal", {"value": 5}),
    ("expect_column_to_exist", {"column": "s"}),
    ("expect_column_to_exist", {"column": "nope"}),
    ("expect_column_to_exist", {"column": "s", "column_index": 1}),
    ("expect_column_to_exist", {"column": "s", "column_index": 2}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": ["v", "s", "a", "b", "c"]}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": ["s", "v", "a", "b", "c"]}),
    ("expect_table_columns_to_match_set", {"column_set": ["c", "b", "a", "s", "v"]}),
    ("expect_table_columns_to_match_set", {"column_set": ["v", "s"]}),
    ("expect_table_columns_to_match_set", {"column_set": ["v", "s"], "exact_match": False}),
    ("expect_table_column_count_to_equal", {"value": 5}),
    ("expect_table_column_count_to_equal", {"value": 4}),
    ("expect_table_column_count_to_be_between", {"min_value": 6}),
    ("expect_table_column_count_to_be_between", {"min_value": 1, "max_value": 5}),
    ("expect_column_min_to_be_between", {"column": "v", "min_value": 1, "max_value": 1}),
    ("expect_column_min_to_be_between", {"column": "v", "min_value": 1, "strict_min": True}),
    ("expect_column_max_to_be_between", {"column": "v", "max_value": 9}),
    ("expect_column_max_to_be_between", {"column": "v", "max_value": 8}),
    ("expect_column_mean_to_be_between", {"column": "v", "min_value": 3.7, "max_value": 3.9}),
    ("expect_column_mean_to_be_between", {"column": "v", "min_value": 4}),
    ("expect_column_sum_to_be_between", {"column": "v", "min_value": 19, "max_value": 19}),
    ("expect_column_sum_to_be_between", {"column": "v", "max_value": 18}),
    ("expect_column_median_to_be_between", {"column": "v", "min_value": 2, "max_value": 2}),
    ("expect_column_median_to_be_between", {"column": "c", "min_value": 3, "max_value": 3}),
    ("expect_column_median_to_be_between", {"column": "a", "min_value": 4, "max_value": 4}),
    ("expect_column_median_to_be_between", {"column": "c", "min_value": 4}),
    ("expect_column_stdev_to_be_between", {"column": "v", "min_value": 3.2, "max_value": 3.3}),
    ("expect_column_stdev_to_be_between", {"column": "v", "max_value": 2.9}),
    (
        "expect_column_unique_value_count_to_be_between",
        {"column": "v", "min_value": 4, "max_value": 4},
    ),
    ("expect_column_unique_value_count_to_be_between", {"column": "s", "min_value": 5}),
    (
        "expect_column_proportion_of_unique_values_to_be_between",
        {"column": "v", "min_value": 0.8, "max_value": 0.8},
    ),
    ("expect_column_proportion_of_unique_values_to_be_between", {"column": "s", "max_value": 0.5}),
    ("expect_column_distinct_values_to_be_in_set", {"column": "v", "value_set": [1, 2, 5, 9, 10]}),
    (
        "expect_column_distinct_values_to_be_in_set",
        {"column": "s", "value_set": ["apple", "banana"]},
    ),
    ("expect_column_distinct_values_to_contain_set", {"column": "v", "value_set": [1, 9]}),
    ("expect_column_distinct_values_to_contain_set", {"column": "v", "value_set": [1, 3]}),
    ("expect_column_distinct_values_to_equal_set", {"column": "v", "value_set": [1, 2, 5, 9]}),
    ("expect_column_distinct_values_to_equal_set", {"column": "v", "value_set": [1, 2, 5]}),
]


def write_suite(tmp_path: Path, expectations: list[dict], name: str = "t") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations}))
    return path


@pytest.fixture(scope="module")
def gx_validate():
    """Validate one expectation with GX 1.x's own (pandas) engine: (success, result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batches = (
        context.data_sources.add_pandas("rows")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
    )
    frame = pa.table(ROWS).to_pandas()

    def validate(kind: str, kwargs: dict) -> tuple[bool, dict]:
        suite = gx.ExpectationSuite(name="t", expectations=[{"type": kind, "kwargs": kwargs}])
        assert len(suite.expectations) == 1, f"GX refused {kind}({kwargs})"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = batches.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, result_format="COMPLETE"
            )
        (result,) = outcome.results
        return bool(result.success), dict(result.result)

    return validate


@pytest.fixture(scope="module")
def warehouse():
    with DuckDBWarehouse(":memory:") as wh:
        wh.append_arrow(Relation("m", "rows"), pa.table(ROWS))
        yield wh


def test_every_supported_type_is_covered() -> None:
    assert {kind for kind, _ in CASES} == SUPPORTED


@pytest.mark.parametrize(("kind", "kwargs"), CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_the_verdict_is_gxs(tmp_path, gx_validate, warehouse, kind, kwargs) -> None:
    suite = load_suite(write_suite(tmp_path, [{"type": kind, "kwargs": kwargs}]))
    (ours,) = run_suite(warehouse, suite, Relation("m", "rows"))
    success, result = gx_validate(kind, kwargs)
    assert ours.passed is success, (ours, result)
    if "unexpected_count" in result and not success:
        # rows (for per-row rules) or distinct values (distinct-value rules) that fail
        assert ours.failing_rows == result["unexpected_count"], (ours, result)
    if (
        "observed_value" in result
        and result["observed_value"] is not None
        and "observed_value" in ours.observed
    ):
        observed = result["observed_value"]
        if isinstance(observed, float):
            assert ours.observed["observed_value"] == pytest.approx(observed)
        elif not isinstance(observed, list):
            assert ours.observed["observed_value"] == observed
    if not ours.passed:
        assert ours.sample, "a failing expectation keeps evidence"


def test_both_passing_and_failing_cases_exist_for_every_type(gx_validate) -> None:
    verdicts: dict[str, set[bool]] = {}
    for kind, kwargs in CASES:
        verdicts.setdefault(kind, set()).add(gx_validate(kind, kwargs)[0])
    one_sided = {k for k, v in verdicts.items() if v != {True, False}}
    # a few types can only be shown one way on one small table; keep that list short
    assert one_sided <= {"expect_column_value_lengths_to_equal"}, one_sided


def test_the_demo_suites_are_gx_suites() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx

    for path in sorted((REPO / "expectations").glob("*.json")):
        data = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**data)
        # GX drops (with a log line) what it cannot read: nothing may be dropped
        assert len(suite.expectations) == len(data["expectations"]), path
        assert len(load_suite(path).expectations) == len(data["expectations"])


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"type": "expect_column_values_to_be_fancy", "kwargs": {"column": "v"}}, "not supported"),
        ({"expectation_type": "expect_column_values_to_not_be_null"}, "GX 0.x"),
        (
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "v"}},
            "need value_set",
        ),
        (
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v", "mostyl": 1}},
            "unknown kwarg",
        ),
        (
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "v", "mostly": 1.5},
            },
            "mostly",
        ),
        (
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "v"},
                "severity": "high",
            },
            "severity 'high'",
        ),
        (
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "v", "row_condition": 'col("a")>1'},
            },
            "row_condition",
        ),
        (
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "v"}},
            "min_value, max_value",
        ),
    ],
)
def test_a_bad_expectation_names_the_file_and_its_position(
    tmp_path, warehouse, expectation, message
) -> None:
    path = write_suite(
        tmp_path, [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 1}}, expectation]
    )
    with pytest.raises(ConfigError, match=rf"t\.json: expectation #2.*{message}"):
        suite = load_suite(path)
        run_suite(warehouse, suite, Relation("m", "rows"))


def test_severity_maps_from_gx_and_meta(tmp_path) -> None:
    base = {"type": "expect_column_values_to_not_be_null"}
    suite = load_suite(
        write_suite(
            tmp_path,
            [
                {**base, "kwargs": {"column": "a"}},
                {**base, "kwargs": {"column": "b"}, "severity": "warning"},
                {**base, "kwargs": {"column": "c"}, "severity": "critical"},
                {**base, "kwargs": {"column": "v"}, "meta": {"severity": "warn"}},
                {**base, "kwargs": {"column": "s"}, "severity": "info"},
            ],
        )
    )
    assert [e.severity for e in suite.expectations] == ["error", "warn", "error", "warn", "warn"]


def test_the_same_expectation_twice_is_refused(tmp_path) -> None:
    twice = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v"}}
    with pytest.raises(ConfigError, match="the same expectation twice"):
        load_suite(write_suite(tmp_path, [twice, twice]))


def test_the_suite_scan_renders_for_bigquery_and_duckdb(tmp_path) -> None:
    """One scan for every per-row rule and aggregate; on BigQuery the backend supplies the
    median (it has no exact aggregate median), so that type is left out here."""
    import sqlglot

    expectations = [
        {"type": kind, "kwargs": kwargs}
        for kind, kwargs in dict(CASES).items()
        if kind != "expect_column_median_to_be_between"
    ]
    suite = load_suite(write_suite(tmp_path, expectations))
    from pipelines.quality.expectations import scan_query

    query = scan_query(suite, Relation("marts", "rows").to_table())
    assert query is not None
    for dialect in ("duckdb", "bigquery"):
        sql = query.sql(dialect=dialect)
        assert sqlglot.parse_one(sql, read=dialect) is not None
    bigquery = query.sql(dialect="bigquery")
    assert "REGEXP_CONTAINS" in bigquery and "`marts`.`rows`" in bigquery
