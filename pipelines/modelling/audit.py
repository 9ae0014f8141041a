"""The checks of a model: its yml tests, the data tests attached to it and its GX suite, run
in the warehouse against the model's relation or a candidate of it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.modelling.graph import DataTest, ModelGraph, ModelNode, referenced_model
from pipelines.modelling.materialize import (
    CHANGE_COLUMN,
    feed_reset_at,
    feed_rows,
    written_relation,
)
from pipelines.quality.builtin_tests import (
    INCREMENT_TESTS,
    failing_rows,
    increment_failing_rows,
    scoped_rows,
    where_is_row_local,
)
from pipelines.quality.checks import (
    WRITTEN_CHECKED,
    CheckOutcome,
    CheckReuse,
    recorded_query,
    relations_read,
    run_check,
    written_columns,
)
from pipelines.quality.expectations import run_suite

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from pipelines.config import TestSpec
    from pipelines.warehouse.base import Relation, Warehouse


def checks_detail(outcomes: list[CheckOutcome]) -> str:
    """`failed: a; warned: b`, for the audit log."""
    return "; ".join(
        [
            *(f"failed: {o.name}" for o in outcomes if o.blocks),
            *(f"warned: {o.name}" for o in outcomes if not o.passed and not o.blocks),
        ]
    )


def describe_data_test(test: DataTest) -> str:
    blocks = ", blocks downstream" if test.severity == "error" else ""
    return f"no row of data_tests/{test.file.path.name} (severity {test.severity}{blocks})"


def describe_test(test: TestSpec) -> str:
    if not test.is_builtin:
        arguments = ", ".join(f"{k}={v!r}" for k, v in test.arguments.items())
        on = f"`{test.column}` passes" if test.column else "passes"
        blocks = ", blocks downstream" if test.severity == "error" else ""
        return f"{on} {test.name}({arguments}) (severity {test.severity}{blocks})"
    what = {
        "unique": f"`{test.column}` has no duplicate values",
        "not_null": f"`{test.column}` is never null",
        "accepted_values": f"`{test.column}` is one of {test.values}",
        "relationships": f"every `{test.column}` exists in {test.to}.{test.field}",
    }[test.name]
    return f"{what} (severity {test.severity}{', blocks downstream' if test.severity == 'error' else ''})"


def parent_changes(
    warehouse: Warehouse, graph: ModelGraph, test: TestSpec, since: datetime | None
) -> exp.Query | None:
    """The values a relationships test's parent rows held before they changed since
    ``since`` (in a column named as the test's `field`); None when the parent keeps no change
    feed complete since then."""
    parent = graph.nodes.get(referenced_model(test.to or ""))
    if parent is None or since is None or test.field is None:
        return None
    spec = parent.build_spec
    reset = feed_reset_at(warehouse, spec)
    if spec.change_feed is None or reset is None or reset >= since:
        return None
    before = feed_rows(spec.change_feed, since).where(
        exp.column(CHANGE_COLUMN, quoted=True).eq(exp.Literal.string("before"))
    )
    return exp.select(exp.column(test.field, quoted=True)).from_(before.subquery("changed"))


def evaluate_tests(
    warehouse: Warehouse,
    graph: ModelGraph,
    node: ModelNode,
    relation: Relation | None = None,
    *,
    written: Relation | None = None,
    passing: Mapping[str, str] | None = None,
    since: datetime | None = None,
    reuse: CheckReuse | None = None,
) -> list[CheckOutcome]:
    """Run every check of ``node`` (yml tests, data tests, its GX suite) in the warehouse;
    failing rows are counted and sampled there, never all loaded. ``relation``: audit this
    relation as the model (a candidate) instead of the model's own.

    ``written``: the rows an incremental build wrote into it (a snapshot's: the versions it
    opened or closed, as they are now). A `unique`, `not_null`, `accepted_values` or
    `relationships` test (the first three also with a `where` made of the row's own values
    alone, see :func:`~pipelines.quality.builtin_tests.where_is_row_local`) whose last
    result on the published table passed
    (``passing``: check name -> the query it ran, so a test whose definition changed runs
    whole) then looks only at what those rows can have broken; for `relationships`, also at
    the rows whose parent changed since ``since`` (the model's last build), which only a
    parent keeping a complete change feed since then can tell (else the test runs whole).
    A data test that asks ``is_incremental()`` and passed last time with the same query runs
    its incremental branch, where ``written('model')`` reads those rows. A GX suite's per-row
    expectations without ``mostly`` that passed last time read those rows alone. Every other
    check reads the whole table.

    ``reuse``: for a model that was not rebuilt, its checks' latest results, each kept instead
    of run when the check's query is the same, calls no clock or random function, and
    nothing it reads changed since (:class:`~pipelines.quality.checks.CheckReuse`).
    """
    audited = relation or node.relation
    table = audited.to_table()
    passed_before = passing or {}

    def resolve(name: str) -> Any:
        # a test of the model against itself (a parent id among its own ids) reads the
        # version being audited on both sides
        model = referenced_model(name)
        return (audited if model == node.name else graph.nodes[model].relation).to_table()

    columns = written_columns(warehouse, audited, written) if written else None
    # the columns a relationships increment shows, of the written rows and the others alike
    shown = columns.shown if columns else ()
    # those whose written values are the values stored (see WrittenColumns)
    stored_as_written = columns.stored_as_written if columns else frozenset()

    def passed_as_is(name: str, failing: Any) -> bool:
        """Whether the check passed last time, running this same query."""
        return passed_before.get(name) == recorded_query(warehouse, failing)

    def kept(name: str, failing: exp.Query, severity: str, description: str) -> Any:
        if reuse is None:
            return None
        return reuse.outcome(
            name,
            recorded_query(warehouse, failing),
            relations_read(failing),
            severity=severity,
            description=description,
            evaluated=failing,
        )

    def increment(test: TestSpec, failing: Any) -> Any:
        if written is None or not test.is_builtin or test.name not in INCREMENT_TESTS:
            return None
        # a `where` that reads the clock or other tables may bring rows in that no build
        # touched (one made of a row's own values only admits or drops the rows written, and
        # must name only columns those rows hold; a relationships increment shows only some
        # of their columns); an increment that does not select the column, or holds it with
        # another type than the table (the insert converted it), cannot say what it wrote
        if test.where and (
            test.name == "relationships" or not where_is_row_local(test, stored_as_written)
        ):
            return None
        if test.column not in stored_as_written:
            return None
        if not passed_as_is(test.check_name, failing):
            return None
        held = None
        if test.name == "relationships":
            held = parent_changes(warehouse, graph, test, since)
            if held is None:
                return None
        return increment_failing_rows(
            test,
            table,
            written.to_table(),
            resolve,
            held,
            columns=shown,
            keys_replaced=test.name == "unique" and keys_replaced(test.column),
        )

    def keys_replaced(column: str | None) -> bool:
        """Whether the build deleted every row holding a key it wrote before writing it: an
        incremental model's delete + insert on ``column`` alone (a merge writing every column
        is applied that way, see materialize._apply_increment)."""
        spec = node.build_spec
        if spec.materialized != "incremental" or spec.unique_key != (column,):
            return False
        if spec.strategy == "delete+insert":
            return True
        # the increment's columns but its deletion flag (never stored) hold every column
        applied = set(shown) - {spec.deleted_flag}
        return spec.strategy == "merge" and applied >= set(columns.table if columns else [])

    where = node.model.properties_path or node.model.path
    outcomes = []
    for test in node.tests:
        failing = (
            failing_rows(test, table, resolve)
            if test.is_builtin
            else graph.generic_test_query(node, test, scoped_rows(test, table))
        )
        description = describe_test(test)
        outcomes.append(
            kept(test.check_name, failing, test.severity, description)
            or run_check(
                warehouse,
                failing,
                name=test.check_name,
                severity=test.severity,
                description=description,
                what=f"{where}: test {test.check_name!r} of model {node.name!r}",
                increment=increment(test, failing),
            )
        )
    for data_test in node.data_tests:
        failing = graph.data_test_query(data_test, {node.name: audited})
        increment_rows = None
        if data_test.parsed.asks_incremental:
            # the test's own is_incremental() branch says which rows a build can have broken;
            # the recorded query names it, so an edit to that branch alone makes the next
            # increment's audit run whole
            branch = graph.data_test_query(
                data_test, {node.name: audited}, written or written_relation(node.relation)
            )
            # the digest of the branch as it reads the model's own table, whatever relation
            # this audit reads (a build beside the table, a candidate)
            named = (
                branch
                if audited == node.relation
                else graph.data_test_query(
                    data_test, {}, written or written_relation(node.relation)
                )
            )
            digest = hashlib.sha256(named.sql(dialect=warehouse.dialect).encode()).hexdigest()
            failing.add_comments([f" its is_incremental() branch: {digest[:16]} "])
            # and only when every column the written rows share with the table holds the
            # stored type: the increment's rows were cast when inserted, and a test reading
            # them before that cast (a DOUBLE total against a DECIMAL one, say) could judge
            # values the table does not hold
            if (
                written is not None
                and len(stored_as_written) == len(shown)
                and passed_as_is(data_test.check_name, failing)
            ):
                increment_rows = branch
        description = describe_data_test(data_test)
        outcomes.append(
            kept(data_test.check_name, failing, data_test.severity, description)
            or run_check(
                warehouse,
                failing,
                name=data_test.check_name,
                severity=data_test.severity,
                description=description,
                what=f"{data_test.file.path}: data test {data_test.name!r}",
                increment=increment_rows,
                checked=WRITTEN_CHECKED,
            )
        )
    if node.suite is not None:
        outcomes += run_suite(
            warehouse,
            node.suite,
            audited,
            written=written,
            passing=passed_before,
            reuse=reuse,
            written_as=columns,
        )
    return outcomes
