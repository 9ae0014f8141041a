"""Running a data check in the warehouse and keeping its result.

A check is a query of failing rows (a yml test, a data test, an expectation, a freshness rule).
:func:`run_check` counts those rows and samples a few inside the warehouse (a table is never
loaded whole) and returns a :class:`CheckOutcome`; :func:`record_outcomes` appends every outcome
to ``ssot_meta.check_results``, so the history of each check, failing samples included, stays
queryable after later runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from pipelines.errors import ModelError, WarehouseError
from pipelines.project import META_SCHEMA
from pipelines.quality.builtin_tests import count_of, sample_of
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    import pyarrow as pa

    from pipelines.warehouse.base import Warehouse

CHECK_RESULTS = Relation(META_SCHEMA, "check_results")


@dataclass(frozen=True)
class WrittenColumns:
    """The columns of the rows an incremental build wrote, against its table's."""

    #: the table's columns, in order
    table: tuple[str, ...]
    #: those the written rows hold too
    shown: tuple[str, ...]
    #: those holding the table's own types there. The insert cast the written rows to the
    #: table's types: a value compared before that cast (a DOUBLE key against a BIGINT one,
    #: say) may not be the value the table holds, so only these columns are judged on them.
    stored_as_written: frozenset[str]


def written_columns(warehouse: Warehouse, table: Relation, written: Relation) -> WrittenColumns:
    """What the checks of an increment may read from the rows it wrote (one place for the
    built-in tests, the data tests and the GX suites)."""
    written_types = dict(warehouse.columns(written))
    table_types = dict(warehouse.columns(table))
    shown = tuple(name for name in table_types if name in written_types)
    return WrittenColumns(
        tuple(table_types), shown, frozenset(n for n in shown if written_types[n] == table_types[n])
    )


SAMPLE_ROWS = 5
#: what a check run on an increment looked at (its result's `observed.checked`)
INCREMENT_CHECKED = (
    "the rows this build could have broken: those it wrote (for unique, with the rows sharing "
    "their values), and for relationships those whose parent value is gone since"
)
#: what a per-row expectation or a data test run on an increment looked at
WRITTEN_CHECKED = "the rows this build wrote (the rest passed when they were written)"


@dataclass(frozen=True)
class CheckOutcome:
    """One evaluation of one check."""

    name: str
    severity: str  # error (blocks publishing and downstream) | warn (reported)
    description: str
    failing_rows: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    query: str = ""
    #: observed values worth showing next to the result (a freshness age, a metric)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0

    @property
    def blocks(self) -> bool:
        return not self.passed and self.severity == "error"


def jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with dates, decimals and bytes turned into JSON-safe values."""
    return json.loads(json.dumps(rows, default=str))  # type: ignore[no-any-return]


def run_check(
    warehouse: Warehouse,
    failing: exp.Query,
    *,
    name: str,
    severity: str,
    description: str,
    what: str,
    increment: exp.Query | None = None,
    checked: str = INCREMENT_CHECKED,
) -> CheckOutcome:
    """Count the rows ``failing`` selects and sample a few; passed means none.

    ``what`` names the check for an error message (file, model, test) when its query fails.
    ``increment``: count and sample these failing rows instead (the ones the rows a build
    wrote can have caused, on a table that passed before); the outcome still records the
    whole query, the one to run to see every failing row; ``checked`` says which rows the
    increment looked at (its ``observed.checked``).
    """
    evaluated = failing if increment is None else increment
    try:
        failures = int(warehouse.scalar(count_of(evaluated)) or 0)
        sample = warehouse.query(sample_of(evaluated, SAMPLE_ROWS)).to_pylist() if failures else []
    except WarehouseError as exc:
        raise ModelError(f"{what} cannot run: {exc}") from None
    return CheckOutcome(
        name=name,
        severity=severity,
        description=description,
        failing_rows=failures,
        sample=jsonable(sample),
        query=recorded_query(warehouse, failing),
        observed={"checked": checked} if increment is not None else {},
    )


def recorded_query(warehouse: Warehouse, failing: exp.Query) -> str:
    """The query a check's result records for ``failing`` (its failing rows): what to run to
    see them, and by which a later run knows the check is the same."""
    return sample_of(failing, SAMPLE_ROWS).sql(dialect=warehouse.dialect, pretty=True)


def passing_checks(warehouse: Warehouse, asset: str) -> dict[str, str]:
    """check name -> its query, for each check of ``asset`` whose latest result on the
    published table passed."""
    return {
        name: row["query"] or ""
        for name, row in latest_results(warehouse, asset).items()
        if row["passed"]
    }


#: functions whose result changes from one run to the next, by name where sqlglot does not
#: know them (DuckDB's now(), say): a check calling one is run again every time
_VOLATILE_NAMES = frozenset(
    {
        "now",
        "today",
        "random",
        "setseed",
        "uuid",
        "uuidv4",
        "uuidv7",
        "gen_random_uuid",
        "transaction_timestamp",
        "nextval",
        "currval",
        "approx_quantiles",
        "reservoir_quantile",
        "arbitrary",
        "getenv",
    }
)
_VOLATILE = (
    exp.CurrentDate,
    exp.CurrentDatetime,
    exp.CurrentTime,
    exp.CurrentTimestamp,
    exp.CurrentTimestampLTZ,
    exp.Localtimestamp,
    exp.Rand,
    exp.Randn,
    exp.Uuid,
    exp.TableSample,  # a sample draws other rows each time
    exp.ApproxQuantile,  # approximate: may differ between runs
    exp.ApproxQuantiles,
    exp.AnyValue,  # whichever row comes first
    exp.First,
    exp.Last,
)


def _volatile(query: exp.Expr) -> bool:
    """Whether ``query`` reads the clock, draws random values or samples rows."""
    if query.find(*_VOLATILE) is not None:
        return True
    for select in query.find_all(exp.Select):
        if select.args.get("limit") is not None and select.args.get("order") is None:
            return True  # which rows a LIMIT without ORDER BY keeps is up to the engine
    for call in query.find_all(exp.Anonymous):
        name = str(call.name).lower()
        if name in _VOLATILE_NAMES or name.startswith(("current_", "get_current_")):
            return True
    return False


def relations_read(query: exp.Expr) -> list[Relation] | None:
    """The relations ``query`` reads (its CTEs aside); None when one is not named by its
    schema alone (no schema, or another catalog's), so what it is cannot be told."""
    ctes = {cte.alias_or_name for cte in query.find_all(exp.CTE)}
    read: list[Relation] = []
    for table in query.find_all(exp.Table):
        if table.catalog:
            return None
        if not table.db:
            if table.name in ctes:
                continue
            return None
        relation = Relation(table.db, table.name)
        if relation not in read:
            read.append(relation)
    return read


#: in a kept result's `observed`: when the check was last evaluated
_EVALUATED_AT = "evaluated_at"


@dataclass(frozen=True)
class CheckReuse:
    """The latest result of each check of a model on its published table, and when each
    relation last changed: a check of a model that was not rebuilt keeps its latest result
    when its definition is the same, it reads neither the clock nor random values, and
    nothing it reads changed since. Its result would be the same; running it again on an
    unchanged table of millions of rows cost seconds per model."""

    latest: Mapping[str, dict[str, Any]]
    #: relation -> when its content last changed (``ssot_meta.data_versions``)
    changed: Mapping[str, datetime]
    #: a relation -> what its content depends on besides itself (the relations a view reads)
    depends: Callable[[Relation], list[Relation]] = lambda relation: []

    def outcome(
        self,
        name: str,
        query: str,
        reads: list[Relation] | None,
        *,
        severity: str,
        description: str,
        evaluated: exp.Expr | None = None,
    ) -> CheckOutcome | None:
        """The latest result of check ``name``, when it holds still; else None (run it).
        ``query``: the check's query as its results record it; ``reads``: the relations it
        reads (None: not known); ``evaluated``: the query it runs, looked at for volatile
        functions."""
        last = self.latest.get(name)
        if last is None or (last["query"] or "") != query or reads is None:
            return None
        if evaluated is not None and _volatile(evaluated):
            return None
        observed = json.loads(last["observed"]) if last["observed"] else {}
        if "checked" in observed:
            return None  # it looked at an increment's rows only: the whole table once now
        # judged against the evaluation itself, not a later run that kept its result
        if _EVALUATED_AT in observed:
            try:
                evaluated_at = datetime.fromisoformat(str(observed[_EVALUATED_AT]))
            except ValueError:
                return None
            if evaluated_at.tzinfo is None:
                return None
        elif "reused" in observed:
            return None  # kept before evaluations were dated: when it ran is not known
        else:
            evaluated_at = last["checked_at"]
        pending, seen = list(reads), set()
        while pending:
            relation = pending.pop()
            if relation in seen:
                continue
            seen.add(relation)
            changed = self.changed.get(str(relation))
            if changed is None or changed >= evaluated_at:
                return None  # unknown, or changed since (or at the same instant)
            pending += self.depends(relation)
        observed.setdefault(
            "reused",
            f"the result of run {last['run_id']} at {evaluated_at.isoformat(timespec='seconds')}: "
            "the check and everything it reads are unchanged since",
        )
        observed[_EVALUATED_AT] = evaluated_at.isoformat()
        return CheckOutcome(
            name=name,
            severity=severity,
            description=description,
            failing_rows=int(last["failing_rows"] or 0),
            sample=json.loads(last["failing_sample"]) if last["failing_sample"] else [],
            query=query,
            observed=observed,
        )


def latest_results(warehouse: Warehouse, asset: str) -> dict[str, dict[str, Any]]:
    """check name -> the row of its latest result on ``asset``'s published table."""
    if not warehouse.exists(CHECK_RESULTS):
        return {}
    name, checked = exp.column("check_name", quoted=True), exp.column("checked_at", quoted=True)
    latest = exp.Window(
        this=exp.RowNumber(), partition_by=[name], order=exp.Order(expressions=[checked.desc()])
    )
    query = (
        exp.select(exp.Star())
        .from_(CHECK_RESULTS.to_table())
        .where(exp.column("asset", quoted=True).eq(exp.Literal.string(asset)))
        .where(exp.column("published", quoted=True))
        .qualify(exp.EQ(this=latest, expression=exp.Literal.number(1)))
    )
    return {row["check_name"]: row for row in warehouse.query(query).to_pylist()}


def check_results_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("run_id", pa.string()),
            ("asset", pa.string()),
            ("check_name", pa.string()),
            ("severity", pa.string()),
            ("passed", pa.bool_()),
            ("failing_rows", pa.int64()),
            ("failing_sample", pa.string()),
            ("observed", pa.string()),
            ("query", pa.string()),
            ("audited", pa.string()),
            ("published", pa.bool_()),
            ("checked_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def record_outcomes(
    warehouse: Warehouse,
    outcomes: Iterable[CheckOutcome],
    *,
    run_id: str,
    asset: str,
    audited: str,
    published: bool,
) -> None:
    """Append each outcome to ``ssot_meta.check_results`` (one row per check and run).

    ``audited``: the relation the checks read (the published table, or the candidate kept
    after a failed audit); ``published``: whether that build was published.
    """
    import pyarrow as pa

    checked_at = datetime.now(UTC)
    rows = [
        {
            "run_id": run_id,
            "asset": asset,
            "check_name": o.name,
            "severity": o.severity,
            "passed": o.passed,
            "failing_rows": o.failing_rows,
            "failing_sample": json.dumps(o.sample) if o.sample else None,
            "observed": json.dumps(o.observed, default=str) if o.observed else None,
            "query": o.query or None,
            "audited": audited,
            "published": published,
            "checked_at": checked_at,
        }
        for o in outcomes
    ]
    if rows:
        warehouse.append_arrow(
            CHECK_RESULTS, pa.Table.from_pylist(rows, schema=check_results_schema())
        )
