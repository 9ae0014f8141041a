"""Great Expectations 1.x suites (`expectations/<model>.json`), run in the warehouse as SQL.

A suite file is GX 1.x's own JSON (``{"name": ..., "expectations": [{"type": ..., "kwargs":
{...}, "meta": {...}, "severity": ...}]}``), so suites written or profiled with GX move in
unchanged. Each expectation compiles to sqlglot expressions and runs inside the warehouse
session of the build it audits: in the same transaction as the candidate (write-audit-publish),
on every backend sqlglot renders for, without moving a table into pandas. All the per-row
expectations of a suite share one scan of the table; set-based ones (uniqueness, distinct
values) add one grouped query each. A failing expectation keeps a sample of its failing rows.

GX's own SQL engine is not used at run time: on DuckDB it returns empty metric results (its
connection goes back to the pool before results are read), it cannot see a candidate that is
not committed yet, and importing it costs seconds per run. The semantics follow GX's (nulls
ignored by value expectations and counted by ``mostly`` over non-null values, strict bounds,
``mostly``), and the tests compare every supported type with GX's own engine.

Severity: GX's ``severity`` (``critical``, ``warning``, ``info``) maps to ``error`` (blocks
publishing and downstream) for ``critical`` and ``warn`` otherwise; ``meta.severity`` may say
``error``/``warn`` directly. An expectation with neither blocks, like a yml test.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.errors import ConfigError, ModelError, WarehouseError
from pipelines.quality.checks import (
    SAMPLE_ROWS,
    WRITTEN_CHECKED,
    CheckOutcome,
    WrittenColumns,
    jsonable,
    written_columns,
)

if TYPE_CHECKING:
    from pipelines.quality.checks import CheckReuse
    from pipelines.warehouse.base import Relation, Warehouse

#: a sqlglot expression (conditions and values alike)
Sql = Any

#: GX 1.x severity -> ours
GX_SEVERITIES = {"critical": "error", "warning": "warn", "info": "warn"}
SUITE_KEYS = {"name", "expectations", "meta", "notes", "id", "suite_parameters"}
EXPECTATION_KEYS = {
    "type",
    "kwargs",
    "meta",
    "notes",
    "id",
    "severity",
    "description",
    "rendered_content",
    "expectation_context",
}
#: kwargs every expectation may carry that do not change what is checked
PASSIVE_KWARGS = {
    "result_format",
    "catch_exceptions",
    "meta",
    "include_config",
    "notes",
    "severity",
    "description",
    "batch_id",
}
#: the kwargs of the supported types (anything else is a typo GX itself would refuse)
KNOWN_KWARGS = PASSIVE_KWARGS | {
    "column",
    "column_A",
    "column_B",
    "column_list",
    "column_set",
    "column_index",
    "value_set",
    "value",
    "min_value",
    "max_value",
    "strict_min",
    "strict_max",
    "mostly",
    "regex",
    "regex_list",
    "match_on",
    "or_equal",
    "ignore_row_if",
    "sum_total",
    "exact_match",
}


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    path: Path
    index: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        names = [self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs]
        return [str(n) for n in [*names, *self.kwargs.get("column_list", [])]]

    @property
    def check_name(self) -> str:
        """Unique per model: the type without `expect_`, its column(s), a digest of its kwargs."""
        words = [self.type.removeprefix("expect_"), *self.columns]
        rest = {
            k: v
            for k, v in self.kwargs.items()
            if k not in ("column", "column_A", "column_B", "column_list")
            and k not in PASSIVE_KWARGS
        }
        name = "__".join(words)
        if rest:
            digest = hashlib.sha1(
                json.dumps(rest, sort_keys=True, default=str).encode()
            ).hexdigest()
            name += f"__{digest[:6]}"
        return f"gx__{name}"

    @property
    def where(self) -> str:
        return f"{self.path}: expectation #{self.index + 1} ({self.type})"

    def describe(self) -> str:
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.kwargs.items() if k not in PASSIVE_KWARGS
        )
        blocks = ", blocks downstream" if self.severity == "error" else ""
        return (
            f"GX {self.type}({arguments}) from {self.path.name} (severity {self.severity}{blocks})"
        )


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    expectations: tuple[Expectation, ...]


def load_suite(path: Path) -> Suite:
    """Read and check a GX 1.x suite file; every mistake names the file and the expectation."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON expectation suite ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise ConfigError(
            f'{path}: a GX 1.x suite is an object with "name" and a list "expectations"'
        )
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown suite key(s) {', '.join(unknown)}")
    expectations = []
    for index, item in enumerate(data["expectations"]):
        where = f"{path}: expectation #{index + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            if isinstance(item, dict) and "expectation_type" in item:
                raise ConfigError(
                    f'{where}: "expectation_type" is GX 0.x; GX 1.x suites say "type"'
                )
            raise ConfigError(f'{where}: needs "type" (e.g. "expect_column_values_to_not_be_null")')
        unknown = sorted(set(item) - EXPECTATION_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        kwargs = item.get("kwargs") or {}
        meta = item.get("meta") or {}
        if not isinstance(kwargs, dict) or not isinstance(meta, dict):
            raise ConfigError(f'{where}: "kwargs" and "meta" must be objects')
        expectation = Expectation(
            type=item["type"],
            kwargs=kwargs,
            severity=_severity(item, meta, where),
            path=path,
            index=index,
            meta=meta,
        )
        _checked(expectation)
        expectations.append(expectation)
    names = [e.check_name for e in expectations]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{path}: the same expectation twice: {', '.join(repeated)}")
    return Suite(
        name=str(data.get("name") or path.stem), path=path, expectations=tuple(expectations)
    )


def _severity(item: dict[str, Any], meta: dict[str, Any], where: str) -> str:
    if "severity" in meta:
        if meta["severity"] not in ("error", "warn"):
            raise ConfigError(f"{where}: meta.severity {meta['severity']!r}; use 'error' or 'warn'")
        return str(meta["severity"])
    gx = item.get("severity")
    if gx is None:
        return "error"
    if gx not in GX_SEVERITIES:
        raise ConfigError(
            f"{where}: severity {gx!r}; GX's are {', '.join(GX_SEVERITIES)} (critical blocks)"
        )
    return GX_SEVERITIES[gx]


# ---------------------------------------------------------------------------------------------
# the supported expectation types


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _lit(value: Any) -> Sql:
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def _count_if(condition: Sql) -> Sql:
    return exp.Sum(
        this=exp.Case(
            ifs=[exp.If(this=condition, true=exp.Literal.number(1))], default=exp.Literal.number(0)
        )
    )


def _outside(value: Sql, kwargs: dict[str, Any]) -> Sql | None:
    """value < min (<= when strict_min) OR value > max (>= when strict_max); None: no bound."""
    tests: list[Sql] = []
    if kwargs.get("min_value") is not None:
        low = _lit(kwargs["min_value"])
        tests.append(
            exp.LTE(this=value, expression=low)
            if kwargs.get("strict_min")
            else exp.LT(this=value, expression=low)
        )
    if kwargs.get("max_value") is not None:
        high = _lit(kwargs["max_value"])
        tests.append(
            exp.GTE(this=value, expression=high)
            if kwargs.get("strict_max")
            else exp.GT(this=value, expression=high)
        )
    return exp.or_(*tests) if tests else None


def _in_bounds(value: Any, kwargs: dict[str, Any]) -> bool:
    if value is None:
        return False
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and (value <= low if kwargs.get("strict_min") else value < low):
        return False
    return not (high is not None and (value >= high if kwargs.get("strict_max") else value > high))


@dataclass(frozen=True)
class RowRule:
    """A per-row expectation: which rows it looks at and which of those fail."""

    considered: Sql  # rows counted by `mostly`
    failing: Sql  # among the considered rows


def _not_null(*columns: str) -> Sql:
    return exp.and_(*[exp.Not(this=exp.Is(this=_col(c), expression=exp.null())) for c in columns])


def _all_null(*columns: str) -> Sql:
    return exp.and_(*[exp.Is(this=_col(c), expression=exp.null()) for c in columns])


def _ignored_rows(kwargs: dict[str, Any], columns: Sequence[str], default: str) -> Sql:
    """GX's `ignore_row_if` for pair and multicolumn expectations, as the rows it keeps."""
    mode = kwargs.get("ignore_row_if", default)
    if mode in ("both_values_are_missing", "all_values_are_missing"):
        return exp.Not(this=exp.paren(_all_null(*columns)))
    if mode in ("either_value_is_missing", "any_value_is_missing"):
        return _not_null(*columns)
    if mode in ("neither", "never"):
        return exp.true()
    raise ConfigError(f"ignore_row_if {mode!r} is not one of GX's values")


def _row_rule(e: Expectation) -> RowRule | None:
    k, t = e.kwargs, e.type
    c = str(k.get("column"))
    failing: Sql
    ok: Sql
    total: Sql
    if t == "expect_column_values_to_not_be_null":
        return RowRule(exp.true(), exp.Is(this=_col(c), expression=exp.null()))
    if t == "expect_column_values_to_be_null":
        return RowRule(exp.true(), _not_null(c))
    if t in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        values = [_lit(v) for v in k.get("value_set") or []]
        member = exp.In(this=_col(c), expressions=values) if values else exp.false()
        failing = (
            exp.Not(this=member) if t.endswith("to_be_in_set") and "not_be" not in t else member
        )
        return RowRule(_not_null(c), failing)
    if t == "expect_column_values_to_be_between":
        outside = _outside(_col(c), k)
        if outside is None:
            raise ConfigError(f"{e.where}: needs min_value, max_value or both")
        return RowRule(_not_null(c), outside)
    if t in ("expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"):
        matches = exp.RegexpLike(
            this=exp.cast(_col(c), "text"), expression=exp.Literal.string(str(k["regex"]))
        )
        failing = matches if t.startswith("expect_column_values_to_not") else exp.Not(this=matches)
        return RowRule(_not_null(c), failing)
    if t == "expect_column_values_to_match_regex_list":
        regexes = [
            exp.RegexpLike(this=exp.cast(_col(c), "text"), expression=exp.Literal.string(str(r)))
            for r in k["regex_list"]
        ]
        matched = exp.or_(*regexes) if k.get("match_on", "any") == "any" else exp.and_(*regexes)
        return RowRule(_not_null(c), exp.Not(this=exp.paren(matched)))
    if t == "expect_column_value_lengths_to_be_between":
        outside = _outside(exp.Length(this=exp.cast(_col(c), "text")), k)
        if outside is None:
            raise ConfigError(f"{e.where}: needs min_value, max_value or both")
        return RowRule(_not_null(c), outside)
    if t == "expect_column_value_lengths_to_equal":
        return RowRule(
            _not_null(c),
            exp.NEQ(this=exp.Length(this=exp.cast(_col(c), "text")), expression=_lit(k["value"])),
        )
    if t in (
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
    ):
        a, b = str(k["column_A"]), str(k["column_B"])
        if t.endswith("equal"):
            ok = exp.EQ(this=_col(a), expression=_col(b))
        elif k.get("or_equal"):
            ok = exp.GTE(this=_col(a), expression=_col(b))
        else:
            ok = exp.GT(this=_col(a), expression=_col(b))
        # a comparison with a NULL is not true: such rows fail unless ignored
        failing = exp.Not(this=exp.func("coalesce", exp.paren(ok), exp.false()))
        return RowRule(_ignored_rows(k, [a, b], "both_values_are_missing"), failing)
    if t == "expect_multicolumn_sum_to_equal":
        columns = [str(x) for x in k["column_list"]]
        total = _col(columns[0])
        for name in columns[1:]:
            total = exp.Add(this=total, expression=_col(name))
        failing = exp.Not(
            this=exp.func(
                "coalesce",
                exp.paren(exp.EQ(this=total, expression=_lit(k["sum_total"]))),
                exp.false(),
            )
        )
        return RowRule(_ignored_rows(k, columns, "all_values_are_missing"), failing)
    if t == "expect_select_column_values_to_be_unique_within_record":
        columns = [str(x) for x in k["column_list"]]
        # as in GX, two missing values in one record repeat each other
        pairs = [
            exp.NullSafeEQ(this=_col(x), expression=_col(y))
            for i, x in enumerate(columns)
            for y in columns[i + 1 :]
        ]
        failing = exp.func("coalesce", exp.paren(exp.or_(*pairs)), exp.false())
        return RowRule(_ignored_rows(k, columns, "all_values_are_missing"), failing)
    return None


def _duplicates(e: Expectation) -> tuple[list[str], Sql] | None:
    """Uniqueness expectations: the key columns and the rows they consider."""
    k, t = e.kwargs, e.type
    if t == "expect_column_values_to_be_unique":
        return [str(k["column"])], _not_null(k["column"])
    if t == "expect_compound_columns_to_be_unique":
        columns = [str(x) for x in k["column_list"]]
        return columns, _ignored_rows(k, columns, "all_values_are_missing")
    return None


#: aggregate expectations: type -> the SQL of the observed value over the table
_AGGREGATES: dict[str, Callable[[dict[str, Any], Callable[[Sql], Sql]], Sql]] = {
    "expect_table_row_count_to_be_between": lambda k, _: exp.Count(this=exp.Star()),
    "expect_table_row_count_to_equal": lambda k, _: exp.Count(this=exp.Star()),
    "expect_column_min_to_be_between": lambda k, _: exp.Min(this=_col(k["column"])),
    "expect_column_max_to_be_between": lambda k, _: exp.Max(this=_col(k["column"])),
    "expect_column_mean_to_be_between": lambda k, _: exp.Avg(this=_col(k["column"])),
    "expect_column_sum_to_be_between": lambda k, _: exp.func(
        "coalesce", exp.Sum(this=_col(k["column"])), exp.Literal.number(0)
    ),
    "expect_column_median_to_be_between": lambda k, median: median(_col(k["column"])),
    "expect_column_stdev_to_be_between": lambda k, _: exp.Stddev(this=_col(k["column"])),
    "expect_column_unique_value_count_to_be_between": lambda k, _: exp.Count(
        this=exp.Distinct(expressions=[_col(k["column"])])
    ),
    "expect_column_proportion_of_unique_values_to_be_between": lambda k, _: exp.Div(
        this=exp.cast(exp.Count(this=exp.Distinct(expressions=[_col(k["column"])])), "double"),
        expression=exp.func("nullif", exp.Count(this=_col(k["column"])), exp.Literal.number(0)),
    ),
}
_SCHEMA = {
    "expect_column_to_exist",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_columns_to_match_set",
    "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
}
_DISTINCT = {
    "expect_column_distinct_values_to_be_in_set",
    "expect_column_distinct_values_to_contain_set",
    "expect_column_distinct_values_to_equal_set",
}
_ROW_TYPES = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_equal",
    "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
}
_UNIQUE = {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
_AT_LEAST_TWO_COLUMNS = {
    "expect_compound_columns_to_be_unique",
    "expect_select_column_values_to_be_unique_within_record",
}
SUPPORTED = frozenset(_ROW_TYPES | _UNIQUE | set(_AGGREGATES) | _SCHEMA | _DISTINCT)
#: kwargs each type needs
_REQUIRED: dict[str, tuple[str, ...]] = {
    # a single-column expectation needs its column
    **{
        t: ("column",)
        for t in SUPPORTED
        if t.startswith("expect_column_") and not t.startswith("expect_column_pair")
    },
    "expect_column_values_to_be_in_set": ("column", "value_set"),
    "expect_column_values_to_not_be_in_set": ("column", "value_set"),
    "expect_column_values_to_match_regex": ("column", "regex"),
    "expect_column_values_to_not_match_regex": ("column", "regex"),
    "expect_column_values_to_match_regex_list": ("column", "regex_list"),
    "expect_column_value_lengths_to_equal": ("column", "value"),
    "expect_column_pair_values_a_to_be_greater_than_b": ("column_A", "column_B"),
    "expect_column_pair_values_to_be_equal": ("column_A", "column_B"),
    "expect_multicolumn_sum_to_equal": ("column_list", "sum_total"),
    "expect_select_column_values_to_be_unique_within_record": ("column_list",),
    "expect_compound_columns_to_be_unique": ("column_list",),
    "expect_table_row_count_to_equal": ("value",),
    "expect_table_columns_to_match_ordered_list": ("column_list",),
    "expect_table_columns_to_match_set": ("column_set",),
    "expect_table_column_count_to_equal": ("value",),
    "expect_column_distinct_values_to_be_in_set": ("column", "value_set"),
    "expect_column_distinct_values_to_contain_set": ("column", "value_set"),
    "expect_column_distinct_values_to_equal_set": ("column", "value_set"),
}


def _checked(e: Expectation) -> None:
    if e.type not in SUPPORTED:
        raise ConfigError(
            f"{e.where}: this expectation type is not supported in the warehouse; supported: "
            f"{', '.join(sorted(SUPPORTED))}. Write the rule as a data test (data_tests/*.sql) "
            "instead"
        )
    missing = [k for k in _REQUIRED.get(e.type, ()) if e.kwargs.get(k) is None]
    if missing:
        raise ConfigError(f"{e.where}: kwargs need {', '.join(missing)}")
    if e.type in _AT_LEAST_TWO_COLUMNS and len(e.kwargs.get("column_list") or []) < 2:
        raise ConfigError(f"{e.where}: column_list needs at least two columns")
    unknown = sorted(set(e.kwargs) - KNOWN_KWARGS - {"row_condition", "condition_parser"})
    if unknown:
        raise ConfigError(f"{e.where}: unknown kwarg(s) {', '.join(unknown)}")
    if e.kwargs.get("row_condition"):
        raise ConfigError(
            f"{e.where}: row_condition is not supported; filter in a data test instead"
        )
    mostly = e.kwargs.get("mostly", 1)
    if not isinstance(mostly, int | float) or not 0 <= mostly <= 1:
        raise ConfigError(f"{e.where}: mostly must be a number between 0 and 1, got {mostly!r}")


# ---------------------------------------------------------------------------------------------
# running a suite


def run_suite(
    warehouse: Warehouse,
    suite: Suite,
    relation: Relation,
    *,
    written: Relation | None = None,
    passing: Collection[str] = (),
    reuse: CheckReuse | None = None,
    written_as: WrittenColumns | None = None,
) -> list[CheckOutcome]:
    """Evaluate every expectation of ``suite`` on ``relation``, in the warehouse.

    ``written``: the rows an incremental build wrote into ``relation``. A per-row expectation
    without ``mostly`` whose latest result on the published table passed (its check name is
    in ``passing``; the name carries a digest of its kwargs, so an edited one runs whole) is
    then evaluated on those rows alone: a row the build did not write is the row that passed.
    Every other expectation (``mostly``, aggregates, uniqueness, distinct values) reads the
    whole table. ``reuse``: the latest results of a table that was not rebuilt, kept for
    each expectation whose query is the same and the table unchanged since. ``written_as``:
    the written rows' columns as the model's audit found them (found here when not given).
    """
    # an increment that does not select a column, or holds it with another type than the
    # table (the insert converted its values), cannot say what it wrote there
    if written is not None and written_as is None:
        written_as = written_columns(warehouse, relation, written)
    selected = {n.lower() for n in written_as.stored_as_written} if written_as else set()
    on_increment = {
        e.index
        for e in suite.expectations
        if written is not None
        and e.check_name in passing
        and _row_local(e)
        and all(c.lower() in selected for c in e.columns)
    }
    try:
        return _run(warehouse, suite, relation, written, on_increment, reuse)
    except WarehouseError as exc:
        raise ModelError(f"{suite.path}: the suite cannot run on {relation}: {exc}") from None


def _row_local(e: Expectation) -> bool:
    """Whether each row passes or fails ``e`` on its own (no ``mostly`` share of the table)."""
    return e.type in _ROW_TYPES and float(e.kwargs.get("mostly", 1)) >= 1


def scan_query(
    suite: Suite,
    table: exp.Table,
    median: Callable[[Sql], Sql] | None = None,
    only: Callable[[Expectation], bool] = lambda _: True,
) -> exp.Select | None:
    """The one query that evaluates every per-row rule (rows considered and failing) and
    every aggregate of ``suite`` in a single scan of ``table``; None when it has neither.
    ``median``: the backend's aggregate median (:meth:`Warehouse.median`); ``only``: the
    expectations to evaluate (default all)."""
    selects: list[Sql] = []
    for e in suite.expectations:
        if not only(e):
            continue
        rule = _row_rule(e) if e.type in _ROW_TYPES else None
        if rule is not None:
            selects.append(
                exp.alias_(_count_if(rule.considered), f"considered_{e.index}", quoted=True)
            )
            selects.append(
                exp.alias_(
                    _count_if(exp.and_(exp.paren(rule.considered), exp.paren(rule.failing))),
                    f"failing_{e.index}",
                    quoted=True,
                )
            )
        elif e.type in _AGGREGATES:
            value = _AGGREGATES[e.type](e.kwargs, median or (lambda v: exp.Median(this=v)))
            selects.append(exp.alias_(value, f"value_{e.index}", quoted=True))
    return exp.select(*selects).from_(table.copy()) if selects else None


def _run(
    warehouse: Warehouse,
    suite: Suite,
    relation: Relation,
    written: Relation | None,
    on_increment: set[int],
    reuse: CheckReuse | None = None,
) -> list[CheckOutcome]:
    table = relation.to_table()
    rules = {e.index: _row_rule(e) for e in suite.expectations if e.type in _ROW_TYPES}
    shown = {
        e.index: _shown_query(e, table, rules.get(e.index), warehouse) for e in suite.expectations
    }
    kept: dict[int, CheckOutcome] = {}
    if reuse is not None:
        for e in suite.expectations:
            text = shown[e.index]
            result = reuse.outcome(
                e.check_name,
                text.sql(dialect=warehouse.dialect, pretty=True) if text is not None else "",
                [relation],
                severity=e.severity,
                description=e.describe(),
                evaluated=text,
            )
            if result is not None:
                kept[e.index] = result
    scan: dict[str, Any] = {}
    # one scan of the table for what reads it whole, one of the written rows for the rest
    for scanned, only in (
        (table, lambda e: e.index not in on_increment and e.index not in kept),
        (written.to_table() if written else None, lambda e: e.index in on_increment),
    ):
        query = scan_query(suite, scanned, warehouse.median, only) if scanned else None
        if query is not None:
            scan.update(warehouse.query(query).to_pylist()[0])
    columns: list[str] | None = None
    outcomes = []
    for e in suite.expectations:
        query = shown[e.index]
        if e.index in kept:
            outcomes.append(kept[e.index])
        elif e.type in _ROW_TYPES:
            rule = rules[e.index]
            assert rule is not None
            outcome = _mostly(
                e, int(scan[f"considered_{e.index}"] or 0), int(scan[f"failing_{e.index}"] or 0)
            )
            observed = outcome[2]
            if e.index in on_increment:
                observed = {**observed, "checked": WRITTEN_CHECKED}
            if outcome[1]:
                condition = exp.and_(exp.paren(rule.considered), exp.paren(rule.failing))
                rows = written.to_table() if written and e.index in on_increment else table
                sample = warehouse.query(
                    exp.select("*").from_(rows.copy()).where(condition).limit(SAMPLE_ROWS)
                ).to_pylist()
                # the query that shows every failing row is the one over the table
                outcomes.append(_outcome(e, outcome[1], sample, observed, query, warehouse))
            else:
                outcomes.append(_outcome(e, 0, [], observed, query, warehouse))
        elif e.type in _UNIQUE:
            outcomes.append(_unique(warehouse, e, table))
        elif e.type in _AGGREGATES:
            value = scan[f"value_{e.index}"]
            if e.type == "expect_table_row_count_to_equal":
                ok = value == e.kwargs["value"]
            else:
                ok = _in_bounds(value, e.kwargs)
            observed = {"observed_value": _plain(value)}
            outcomes.append(
                _outcome(e, 0 if ok else 1, [] if ok else [observed], observed, query, warehouse)
            )
        elif e.type in _SCHEMA:
            if columns is None:
                columns = [name for name, _ in warehouse.columns(relation)]
            outcomes.append(_schema(e, columns))
        else:
            outcomes.append(_distinct(warehouse, e, table))
    return outcomes


def _repeated(e: Expectation, table: exp.Table) -> exp.Select:
    """The key values a uniqueness expectation finds more than once, with their rows."""
    keys, considered = _duplicates(e)  # type: ignore[misc]
    key_columns = [_col(k) for k in keys]
    return (
        exp.select(*key_columns, exp.alias_(exp.Count(this=exp.Star()), "rows", quoted=True))
        .from_(table.copy())
        .where(considered)
        .group_by(*key_columns)
        .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
    )


def _shown_query(
    e: Expectation, table: exp.Table, rule: RowRule | None, warehouse: Warehouse
) -> exp.Select | None:
    """The query a result of ``e`` shows (and by which a kept result is matched): the
    failing rows of a per-row rule, the repeated keys, the aggregate's value or the distinct
    values; None for a schema expectation, which reads no rows."""
    if rule is not None:
        condition = exp.and_(exp.paren(rule.considered), exp.paren(rule.failing))
        return exp.select("*").from_(table.copy()).where(condition)
    if e.type in _UNIQUE:
        return _repeated(e, table)
    if e.type in _AGGREGATES:
        value = _AGGREGATES[e.type](e.kwargs, warehouse.median)
        return exp.select(exp.alias_(value, "observed_value", quoted=True)).from_(table.copy())
    if e.type in _DISTINCT:
        return _distinct_values(e, table)
    return None


def _mostly(e: Expectation, considered: int, failing: int) -> tuple[bool, int, dict[str, Any]]:
    """(passed, failing rows to report, observed) with GX's `mostly`: the share of considered
    rows that pass must be at least `mostly`."""
    mostly = float(e.kwargs.get("mostly", 1))
    share = (considered - failing) / considered if considered else 1.0
    passed = failing == 0 or share >= mostly - 1e-12
    observed: dict[str, Any] = {"unexpected_count": failing, "considered_rows": considered}
    if mostly < 1:
        observed["unexpected_percent"] = round(100 * failing / considered, 4) if considered else 0.0
    return passed, 0 if passed else failing, observed


def _outcome(
    e: Expectation,
    failing: int,
    sample: list[dict[str, Any]],
    observed: dict[str, Any],
    query: exp.Query | None = None,
    warehouse: Warehouse | None = None,
) -> CheckOutcome:
    return CheckOutcome(
        name=e.check_name,
        severity=e.severity,
        description=e.describe(),
        failing_rows=failing,
        sample=jsonable(sample),
        query=query.sql(dialect=warehouse.dialect, pretty=True)
        if query is not None and warehouse
        else "",
        observed=observed,
    )


def _unique(warehouse: Warehouse, e: Expectation, table: exp.Table) -> CheckOutcome:
    keys, considered = _duplicates(e)  # type: ignore[misc]
    key_columns = [_col(k) for k in keys]
    counted = (
        exp.select(*key_columns, exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True))
        .from_(table.copy())
        .where(considered)
        .group_by(*key_columns)
    )
    row = warehouse.query(
        exp.select(
            exp.alias_(
                exp.func("coalesce", exp.Sum(this=_col("_n")), exp.Literal.number(0)),
                "rows",
                quoted=True,
            ),
            exp.alias_(
                exp.func(
                    "coalesce",
                    _count_if(exp.GT(this=_col("_n"), expression=exp.Literal.number(1))),
                    exp.Literal.number(0),
                ),
                "keys",
                quoted=True,
            ),
            exp.alias_(
                exp.func(
                    "coalesce",
                    exp.Sum(
                        this=exp.Case(
                            ifs=[
                                exp.If(
                                    this=exp.GT(this=_col("_n"), expression=exp.Literal.number(1)),
                                    true=_col("_n"),
                                )
                            ],
                            default=exp.Literal.number(0),
                        )
                    ),
                    exp.Literal.number(0),
                ),
                "duplicated_rows",
                quoted=True,
            ),
        ).from_(counted.subquery("counted"))
    ).to_pylist()[0]
    considered_rows, failing = int(row["rows"]), int(row["duplicated_rows"])
    passed, failing, observed = _mostly(e, considered_rows, failing)
    repeated = _repeated(e, table)
    if passed:
        return _outcome(e, 0, [], observed, repeated, warehouse)
    sample = warehouse.query(repeated.limit(SAMPLE_ROWS)).to_pylist()
    return _outcome(e, failing, sample, observed, repeated, warehouse)


def _distinct_values(e: Expectation, table: exp.Table) -> exp.Select:
    return (
        exp.select(exp.alias_(_col(e.kwargs["column"]), "value", quoted=True))
        .distinct()
        .from_(table.copy())
        .where(_not_null(e.kwargs["column"]))
    )


def _distinct(warehouse: Warehouse, e: Expectation, table: exp.Table) -> CheckOutcome:
    query = _distinct_values(e, table)
    found = warehouse.query(query)["value"].to_pylist()
    expected = set(e.kwargs["value_set"])
    seen = {_plain(v) for v in found}
    if e.type.endswith("be_in_set"):
        bad = sorted(seen - expected, key=str)
        ok = not bad
    elif e.type.endswith("contain_set"):
        bad = sorted(expected - seen, key=str)
        ok = not bad
    else:
        bad = sorted(seen ^ expected, key=str)
        ok = not bad
    observed = {"observed_value": sorted(seen, key=str)}
    sample = [] if ok else [{"value": v} for v in bad[:SAMPLE_ROWS]]
    return _outcome(e, 0 if ok else len(bad), sample, observed, query, warehouse)


def _schema(e: Expectation, columns: list[str]) -> CheckOutcome:
    k, t = e.kwargs, e.type
    if t == "expect_column_to_exist":
        ok = k["column"] in columns
        if ok and k.get("column_index") is not None:
            ok = columns.index(k["column"]) == k["column_index"]
    elif t == "expect_table_columns_to_match_ordered_list":
        ok = list(columns) == list(k["column_list"])
    elif t == "expect_table_columns_to_match_set":
        wanted = set(k["column_set"])
        ok = set(columns) == wanted if k.get("exact_match", True) else wanted <= set(columns)
    elif t == "expect_table_column_count_to_equal":
        ok = len(columns) == k["value"]
    else:
        ok = _in_bounds(len(columns), k)
    observed: dict[str, Any] = {
        "observed_value": len(columns) if "column_count" in t else list(columns)
    }
    return _outcome(e, 0 if ok else 1, [] if ok else [{"columns": list(columns)}], observed)


def _plain(value: Any) -> Any:
    """A warehouse value as plain JSON-able Python (decimals as floats)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
