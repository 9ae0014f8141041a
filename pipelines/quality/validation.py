"""The value checks of a source contract, as a pandera schema, reported row by row.

The yml says what a valid value is (`nullable`, `accepted_values`, `pattern`, `min`/`max`,
`max_length`; primary keys are never null or blank). This module turns that into one
`pandera.pandas.DataFrameSchema` per contract, runs it lazily (every failure, not the first) on the
already-coerced columns, and maps pandera's failure cases back to row positions with a sentence a
person can act on.

pandas and pandera are imported on first use: importing them costs most of a second, and many
commands (listing sources, compiling models) never validate a batch.

The check functions work on the Arrow data behind each pandas column (columns are
`pd.ArrowDtype`), so patterns run in Arrow's regex engine (RE2) when it can compile them and in
Python's `re` otherwise. A misplaced check (a `pattern` on a number, `min` on text) is a
:class:`~pipelines.errors.ConfigError` when the contract is built, not a surprise per batch.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import ColumnSpec, SourceTableSpec, decimal_params
from pipelines.errors import ConfigError
from pipelines.quality.coercion import arrow_type, preview

_NUMERIC = ("integer", "bigint", "float")

#: held while pandera builds or runs a schema. Loads run side by side, and pandera imports its
#: backends on first use: two threads doing so at once deadlocked on Python's import locks
#: (pandera.backends.base.builtin_checks). Validation holds the interpreter's lock anyway,
#: so taking turns costs nothing.
_PANDERA = threading.RLock()


@dataclass(frozen=True)
class RowFailure:
    """One failed check of one row: `row` is the position in the batch."""

    row: int
    column: str
    check: str
    detail: str


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _is_numeric(column: ColumnSpec) -> bool:
    return column.type in _NUMERIC or decimal_params(column.type) is not None


def check_placement(source: str, table: SourceTableSpec) -> None:
    """Refuse checks that cannot apply to the column's type, naming the yml key to change."""
    for column in table.columns:
        where = f"sources/{source}.yml: table {table.name!r}, column {column.name!r}"
        if (column.min is not None or column.max is not None) and not _is_numeric(column):
            raise ConfigError(
                f"{where}: min/max apply to integer, bigint, float and decimal columns, "
                f"not {column.type}; remove them or change the type"
            )
        for key, value in (("pattern", column.pattern), ("max_length", column.max_length)):
            if value is not None and column.type != "string":
                raise ConfigError(
                    f"{where}: {key} applies to string columns, not {column.type}; "
                    "remove it or declare the column as string"
                )
        for key, bound in (("min", column.min), ("max", column.max)):
            if bound is not None and _bound_value(column, bound) is None:
                raise ConfigError(
                    f"{where}: {key} {bound!r} cannot bound a {column.type} column (not a "
                    "finite number, or beyond a 64-bit integer); change it"
                )


class RowValidator:
    """Builds the pandera schema of one source table once, and validates batches with it."""

    def __init__(self, source: str, table: SourceTableSpec) -> None:
        check_placement(source, table)
        self._source, self._table = source, table
        self._keys = frozenset(table.primary_key)
        self.checked = tuple(c for c in table.columns if self._has_checks(c))
        self._by_name = {c.name: c for c in self.checked}
        #: each checked column's check functions (the ones the pandera schema calls)
        self._checks = {c.name: _column_checks(c, c.name in self._keys) for c in self.checked}
        self._schema: Any = None

    def _has_checks(self, column: ColumnSpec) -> bool:
        return (
            column.name in self._keys
            or not column.nullable
            or column.accepted_values is not None
            or column.pattern is not None
            or column.min is not None
            or column.max is not None
            or column.max_length is not None
        )

    @property
    def schema(self) -> Any:
        """The `pandera.pandas.DataFrameSchema` (built, and pandera imported, on first use)."""
        with _PANDERA:
            if self._schema is None:
                self._schema = _build_schema(
                    f"{self._source}.{self._table.name}", self.checked, self._keys, self._checks
                )
        return self._schema

    def failures(self, columns: Mapping[str, pa.Array]) -> list[RowFailure]:
        """Every failed check of the coerced `columns` (nulls from failed coercion included).

        The pandera schema judges and words every failure, but it is shown only the rows that
        can fail it: those for which one of the very check functions it calls, or its null
        rule, says no (a vectorized pass over the batch in Arrow). A row passing all of them
        passes the schema, so nothing is missed, and a batch with no such row never reaches
        pandas at all. Handing pandera a day's batch of 10,000-40,000 rows to find the few
        dozen bad ones cost 0.03-0.08 s a batch. A batch with a column of another type than
        declared goes to pandera whole (its dtype failure is tied to no row: an error below).
        """
        if not self.checked:
            return []
        data = {c.name: _array(columns[c.name]) for c in self.checked}
        suspects = self._suspects(data)
        if suspects is not None and len(suspects) == 0:
            return []
        if suspects is not None:
            data = {name: values.take(suspects) for name, values in data.items()}
        with _PANDERA:
            from pandera.errors import SchemaErrors

            pd = _pandas()
            frame = pa.table(data).to_pandas(types_mapper=pd.ArrowDtype)
            try:
                self.schema.validate(frame, lazy=True)
            except SchemaErrors as exc:
                cases = exc.failure_cases
            else:
                return []
        out = []
        for column, check, value, index in cases[
            ["column", "check", "failure_case", "index"]
        ].itertuples(index=False):
            if index is None or pd.isna(index) or column not in self._by_name:
                raise RuntimeError(
                    f"{self._source}.{self._table.name}: pandera reported a failure not tied to a "
                    f"row ({column}: {check}); this is a bug in pipelines.quality"
                )
            row = int(index) if suspects is None else suspects[int(index)].as_py()
            out.append(self._describe(row, self._by_name[column], str(check), value))
        return out

    def _suspects(self, data: Mapping[str, pa.Array]) -> pa.Array | None:
        """Positions of the rows a check function or the null rule of the schema rejects, in
        order; None when a column is not of its declared type (the schema sees every row)."""
        bad = None
        for column in self.checked:
            values = data[column.name]
            if values.type != arrow_type(column):
                return None
            # a check judges values, not NULLs (pandera leaves NULLs out of a check, and
            # `is_in` answers False for one): the null rule decides about those
            present = pc.is_valid(values)
            rejected = [
                pc.and_(present, pc.invert(fn(values).fill_null(True)))
                for _, fn in self._checks[column.name]
            ]
            if not _takes_nulls(column, self._keys):
                rejected.append(pc.is_null(values))
            for mask in rejected:
                bad = mask if bad is None else pc.or_(bad, mask)
        if bad is None:
            return pa.array([], type=pa.int64())
        return pc.indices_nonzero(bad)

    def _describe(self, row: int, column: ColumnSpec, check: str, value: Any) -> RowFailure:
        key = column.name in self._keys
        if check == "not_nullable":
            if key:
                return RowFailure(row, column.name, "null_key", "primary key value is missing")
            return RowFailure(
                row, column.name, "not_null", "value is missing (column is not nullable)"
            )
        if check == "null_key":
            detail = f"primary key value {preview(value)} is blank"
        elif check == "accepted_values":
            allowed = ", ".join(str(v) for v in column.accepted_values or ())
            detail = f"{preview(value)} not in [{allowed}]"
        elif check == "pattern":
            detail = f"{preview(value)} does not match {column.pattern}"
        elif check == "min" and column.min is not None:
            detail = f"{value} is less than min {_number(column.min)}"
        elif check == "max" and column.max is not None:
            detail = f"{value} is greater than max {_number(column.max)}"
        elif check == "max_length":
            detail = f"{len(str(value))} characters exceed max_length {column.max_length}: {preview(value)}"
        else:
            detail = f"{preview(value)} failed {check}"
        return RowFailure(row, column.name, check, detail)


# ---------------------------------------------------------------------------------------------
# Check functions on the Arrow data behind a pandas column.

_ArrowCheck = Callable[[pa.Array], pa.Array]


def _blank_key(arr: pa.Array) -> pa.Array:
    return pc.not_equal(pc.utf8_trim_whitespace(arr), "")


# The check functions make their Arrow values (a value set, a bound) on first use: pyarrow
# imports pandas when it makes its first array or scalar (0.65 s on a slow machine), which the
# project's validation (`ssot validate`, `ssot plan`, loading the definitions) then does not
# pay. A run still does, with the first Arrow array it makes (loading the seeds); the bounds'
# values are judged when the contract is built (`check_placement`).


def _accepted(values: list[Any]) -> _ArrowCheck:
    names = sorted({str(v).strip().upper() for v in values})

    @functools.cache
    def allowed() -> pa.Array:
        return pa.array(names, type=pa.string())

    def check(arr: pa.Array) -> pa.Array:
        text = arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
        return pc.is_in(pc.utf8_upper(pc.utf8_trim_whitespace(text)), value_set=allowed())

    return check


def _full_match(pattern: str) -> _ArrowCheck:
    compiled = re.compile(pattern)

    def check(arr: pa.Array) -> pa.Array:
        try:
            return pc.match_substring_regex(arr, f"^(?:{pattern})$")
        except pa.ArrowInvalid:  # RE2 cannot compile it (look-around, back-references)
            return pa.array(
                [None if v is None else compiled.fullmatch(v) is not None for v in arr.to_pylist()],
                type=pa.bool_(),
            )

    return check


def _bound_value(column: ColumnSpec, value: float) -> Decimal | int | float | None:
    """`value` as the column compares it without float rounding surprises; None when it
    cannot bound the column (NaN; infinite on a decimal or integer column; an integer beyond
    64 bits)."""
    if math.isnan(value):
        return None
    if decimal_params(column.type) is not None:
        return Decimal(repr(value)) if math.isfinite(value) else None
    if column.type != "float" and value.is_integer():
        return int(value) if -(2**63) <= value < 2**63 else None
    return value if column.type == "float" or math.isfinite(value) else None


def _compared(column: ColumnSpec, value: float, compare: Callable[..., pa.Array]) -> _ArrowCheck:
    """``compare(values, bound)``, the bound made (as an Arrow scalar) on first use."""

    @functools.cache
    def bound() -> pa.Scalar:
        held = _bound_value(column, value)
        if isinstance(held, Decimal):
            return pa.scalar(held)
        return pa.scalar(held, type=pa.int64() if isinstance(held, int) else pa.float64())

    return lambda arr: compare(arr, bound())


def _no_longer_than(length: int) -> _ArrowCheck:
    return lambda arr: pc.less_equal(pc.utf8_length(arr), length)


def _column_checks(column: ColumnSpec, key: bool) -> list[tuple[str, _ArrowCheck]]:
    checks: list[tuple[str, _ArrowCheck]] = []
    if key and column.type == "string":
        checks.append(("null_key", _blank_key))
    if column.accepted_values is not None:
        checks.append(("accepted_values", _accepted(column.accepted_values)))
    if column.pattern is not None:
        checks.append(("pattern", _full_match(column.pattern)))
    if column.min is not None:
        checks.append(("min", _compared(column, column.min, pc.greater_equal)))
    if column.max is not None:
        checks.append(("max", _compared(column, column.max, pc.less_equal)))
    if column.max_length is not None:
        checks.append(("max_length", _no_longer_than(column.max_length)))
    return checks


def _takes_nulls(column: ColumnSpec, keys: frozenset[str]) -> bool:
    """The schema's null rule: a column may hold NULLs when the yml says so, a key never."""
    return column.nullable and column.name not in keys


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _pandas() -> Any:
    """pandas, imported on first use (no type stubs are installed, so it is typed as Any)."""
    return importlib.import_module("pandas")


def _build_schema(
    name: str,
    columns: tuple[ColumnSpec, ...],
    keys: frozenset[str],
    checks: Mapping[str, list[tuple[str, _ArrowCheck]]],
) -> Any:
    import pandera.pandas as pandera

    pd = _pandas()

    def on_series(fn: _ArrowCheck) -> Callable[[Any], Any]:
        def run(series: Any) -> Any:
            data = pa.array(series)
            if isinstance(data, pa.ChunkedArray):
                data = data.combine_chunks()
            passed = fn(data).fill_null(True)
            return pd.Series(passed.to_numpy(zero_copy_only=False), index=series.index, dtype=bool)

        return run

    return pandera.DataFrameSchema(
        {
            column.name: pandera.Column(
                pd.ArrowDtype(arrow_type(column)),
                nullable=_takes_nulls(column, keys),
                checks=[
                    pandera.Check(on_series(fn), name=check, error=check)
                    for check, fn in checks[column.name]
                ],
            )
            for column in columns
        },
        name=name,
    )
