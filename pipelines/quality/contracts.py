"""The source contract, applied to every extracted batch before it reaches the warehouse.

A batch arrives as the source gave it. :meth:`Contract.apply` coerces each declared column to its
logical type (:mod:`pipelines.quality.coercion`), validates the values with the contract's pandera
schema (:mod:`pipelines.quality.validation`) and splits the rows: those that pass continue typed,
those that fail go to quarantine with *every* reason and their original values. Nothing is lost:
``rows_in == rows_valid + rows_rejected`` for every call, counting the lines a connector could not
even parse (:class:`Reject`).

Duplicate primary keys inside a batch are kept: staging picks the latest version of each key.
Columns the contract does not declare pass through untouched and are listed in
``extra_columns`` so the caller can report the schema drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa

from pipelines.config import ColumnSpec, SourceTableSpec, decimal_params
from pipelines.errors import ConfigError, TerminalSourceError
from pipelines.quality.coercion import (
    arrow_type,
    coerce_column,
    coercer_for,
    python_values,
    values_at,
)
from pipelines.quality.jsonvalues import dumps
from pipelines.quality.validation import RowFailure, RowValidator

__all__ = [
    "QUARANTINE_SCHEMA",
    "Contract",
    "ContractResult",
    "Reject",
    "arrow_type",
    "contract_schema",
    "quarantine_rows",
]

#: One row per rejected record, whatever the table; JSON keeps it schema-independent.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("record_key", pa.string()),
        pa.field("failed_checks", pa.string(), nullable=False),
        pa.field("original_row", pa.string(), nullable=False),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

_REASON = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)$", re.DOTALL)
_CHECK_ORDER = {
    name: i
    for i, name in enumerate(
        (
            "encoding",
            "type",
            "null_key",
            "not_null",
            "accepted_values",
            "pattern",
            "min",
            "max",
            "max_length",
        )
    )
}


def contract_schema(table: SourceTableSpec) -> pa.Schema:
    """Declared columns in order, typed, non-nullable where the contract (or the key) says so."""
    keys = set(table.primary_key)
    return pa.schema(
        [
            pa.field(c.name, arrow_type(c), nullable=c.nullable and c.name not in keys)
            for c in table.columns
        ]
    )


@dataclass(frozen=True)
class Reject:
    """A record the connector could not even parse (broken CSV line, invalid JSON line)."""

    location: str
    record: str
    reason: str


@dataclass(frozen=True)
class ContractResult:
    """The outcome of one batch: typed valid rows, quarantine rows and the counts that reconcile."""

    valid: pa.RecordBatch
    quarantine: pa.Table
    rows_in: int
    rows_valid: int
    rows_rejected: int
    extra_columns: tuple[str, ...]


_Check = dict[str, str | None]


def _check(column: str | None, check: str, detail: str) -> _Check:
    return {"column": column, "check": check, "detail": detail}


def _reject_check(reason: str) -> _Check:
    """'broken_csv_line: expected 7 fields, saw 5' -> check 'broken_csv_line' and the rest."""
    match = _REASON.match(reason)
    if match:
        return _check(None, match.group(1), match.group(2))
    return _check(None, "unparseable", reason)


def quarantine_rows(
    source: str,
    table: str,
    batch_id: str,
    rejects: Sequence[Reject],
    *,
    at: datetime | None = None,
) -> pa.Table:
    """QUARANTINE_SCHEMA rows for records the connector could not parse."""
    return _quarantine_table(
        source,
        table,
        batch_id,
        [None] * len(rejects),
        [[_reject_check(r.reason)] for r in rejects],
        [{"location": r.location, "record": r.record} for r in rejects],
        at or datetime.now(UTC),
    )


def _quarantine_table(
    source: str,
    table: str,
    batch_id: str,
    keys: Sequence[str | None],
    failed_checks: Sequence[list[_Check]],
    originals: Sequence[Any],
    at: datetime,
) -> pa.Table:
    n = len(originals)
    return pa.table(
        {
            "source": pa.array([source] * n, pa.string()),
            "table": pa.array([table] * n, pa.string()),
            "batch_id": pa.array([batch_id] * n, pa.string()),
            "record_key": pa.array(keys, pa.string()),
            "failed_checks": pa.array([dumps(checks) for checks in failed_checks], pa.string()),
            "original_row": pa.array([dumps(original) for original in originals], pa.string()),
            "quarantined_at": pa.array([at] * n, QUARANTINE_SCHEMA.field("quarantined_at").type),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _is_text(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    )


def _readable(arr: pa.Array) -> pa.Array:
    """Text with invalid UTF-8 viewed as its bytes, so turning it into Python cannot raise."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _readable(arr.dictionary_decode())
    if not _is_text(t):
        return arr
    try:
        arr.validate(full=True)
        return arr
    except pa.ArrowInvalid:
        if pa.types.is_string(t):
            return arr.view(pa.binary())
        if pa.types.is_large_string(t):
            return arr.view(pa.large_binary())
        return arr.view(pa.binary_view())


def _passthrough(arr: pa.Array) -> pa.Array:
    """An undeclared column as it came, in a form every Arrow kernel and writer accepts.

    Nested values (lists, structs, maps) become JSON text, invalid UTF-8 is replaced, and view
    layouts become their plain equivalents (Arrow cannot filter a `string_view`).
    """
    t = arr.type
    if pa.types.is_dictionary(t):
        return _passthrough(arr.dictionary_decode())
    if pa.types.is_nested(t) or pa.types.is_union(t) or isinstance(t, pa.ExtensionType):
        texts = [None if v is None else dumps(v) for v in python_values(_readable(arr))]
        return pa.array(texts, pa.string())
    if _is_text(t):
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid:
            values = python_values(_readable(arr))
            return pa.array(
                [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values],
                pa.string(),
            )
        return arr.cast(pa.string()) if pa.types.is_string_view(t) else arr
    if pa.types.is_binary_view(t):
        return arr.cast(pa.binary())
    return arr


class Contract:
    """The contract of one source table, reused for every batch extracted from it."""

    def __init__(self, source: str, table: SourceTableSpec) -> None:
        self.source, self.table = source, table
        for column in table.columns:
            _check_column(source, table, column)
        self.schema = contract_schema(table)
        self._coercers = {c.name: coercer_for(c) for c in table.columns}
        self._validator = RowValidator(source, table)

    def apply(
        self, batch: pa.RecordBatch, batch_id: str, rejects: Sequence[Reject] = ()
    ) -> ContractResult:
        """Coerce and validate `batch`; `rejects` are the lines its connector could not parse."""
        at = datetime.now(UTC)
        batch = self._absent_as_null(batch)
        names = batch.schema.names
        self._require_columns(names)
        coerced, problems = self._check_rows(batch)

        declared = set(coerced)
        extras = [i for i, name in enumerate(names) if name not in declared]
        extra_arrays = [_passthrough(batch.column(i)) for i in extras]
        extra_fields = [
            pa.field(names[i], a.type) for i, a in zip(extras, extra_arrays, strict=True)
        ]
        valid = pa.RecordBatch.from_arrays(
            [*coerced.values(), *extra_arrays], schema=pa.schema([*self.schema, *extra_fields])
        )

        bad = sorted(problems)
        if bad:
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[bad] = False
            valid = valid.filter(pa.array(keep))
        quarantine = self._quarantine(batch, batch_id, bad, problems, rejects, at)
        return ContractResult(
            valid=valid,
            quarantine=quarantine,
            rows_in=batch.num_rows + len(rejects),
            rows_valid=valid.num_rows,
            rows_rejected=len(bad) + len(rejects),
            extra_columns=tuple(names[i] for i in extras),
        )

    def prepare(self) -> None:
        """Build the pandera schema now (importing pandas and pandera), e.g. in a helper thread
        while rows are written elsewhere; :meth:`apply` would build it on first use."""
        _ = self._validator.schema

    @property
    def checked_columns(self) -> list[str]:
        """The declared columns that have value checks (keys, non-nullable, rules)."""
        return [c.name for c in self._validator.checked]

    def failing_rows(self, columns: Mapping[str, pa.Array]) -> list[int]:
        """Positions of the rows that fail a value check, for columns already of their declared
        types (``checked_columns``, e.g. read back from a table a native load wrote); the same
        pandera schema as :meth:`apply` decides. :meth:`apply` on those rows says why."""
        return sorted({failure.row for failure in self._validator.failures(columns)})

    def _check_rows(
        self, batch: pa.RecordBatch
    ) -> tuple[dict[str, pa.Array], dict[int, list[RowFailure]]]:
        """Coerced declared columns, and every failure of every row that has one."""
        problems: dict[int, list[RowFailure]] = {}
        unparsed: set[tuple[int, str]] = set()
        coerced: dict[str, pa.Array] = {}
        for column in self.table.columns:
            raw = batch.column(column.name)
            result = coerce_column(raw, self._coercers[column.name])
            coerced[column.name] = result.values
            for error in result.errors:
                failure = RowFailure(error.row, column.name, error.check, error.detail)
                problems.setdefault(error.row, []).append(failure)
                unparsed.add((error.row, column.name))
        for failure in self._validator.failures(coerced):
            already_reported = (failure.row, failure.column) in unparsed
            if not (already_reported and failure.check in ("not_null", "null_key")):
                problems.setdefault(failure.row, []).append(failure)
        return coerced, problems

    def _absent_as_null(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Under schema_policy evolve, a declared nullable column the source dropped reads as NULL.

        Keys and non-nullable columns stay required (their absence is an error naming them).
        """
        if self.table.schema_policy != "evolve":
            return batch
        present = set(batch.schema.names)
        for column in self.table.columns:
            if (
                column.name in present
                or not column.nullable
                or column.name in self.table.primary_key
            ):
                continue
            if any(n.lower() == column.name.lower() for n in present):
                continue  # a case change is a rename the user must see
            batch = batch.append_column(column.name, pa.nulls(batch.num_rows))
        return batch

    def _require_columns(self, names: list[str]) -> None:
        present = set(names)
        for column in self.table.columns:
            if column.name in present:
                if names.count(column.name) > 1:
                    raise TerminalSourceError(
                        f"source {self.source!r}, table {self.table.name!r}: the batch has column "
                        f"{column.name!r} more than once; the source must name its columns uniquely"
                    )
                continue
            near = [n for n in names if n.lower() == column.name.lower()]
            hint = f" (the batch has {near[0]!r}: names are case-sensitive)" if near else ""
            raise TerminalSourceError(
                f"source {self.source!r}, table {self.table.name!r}: the source has no column "
                f"{column.name!r}{hint}, which sources/{self.source}.yml declares. "
                f"Fix the yml (rename or remove the column) or the source (add the column back)."
            )

    def _quarantine(
        self,
        batch: pa.RecordBatch,
        batch_id: str,
        bad: list[int],
        problems: dict[int, list[RowFailure]],
        rejects: Sequence[Reject],
        at: datetime,
    ) -> pa.Table:
        order = {c.name: i for i, c in enumerate(self.table.columns)}
        positions = pa.array(bad, pa.int64())
        names = batch.schema.names
        columns = [values_at(_readable(batch.column(i)), positions) for i in range(len(names))]
        originals = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        keys = [
            dumps({k: original.get(k) for k in self.table.primary_key}) for original in originals
        ]
        failed_checks = [
            [
                _check(f.column, f.check, f.detail)
                for f in sorted(
                    problems[row],
                    key=lambda f: (order[f.column], _CHECK_ORDER.get(f.check, len(_CHECK_ORDER))),
                )
            ]
            for row in bad
        ]
        table = _quarantine_table(
            self.source, self.table.name, batch_id, keys, failed_checks, originals, at
        )
        if not rejects:
            return table
        parsed = quarantine_rows(self.source, self.table.name, batch_id, rejects, at=at)
        return pa.concat_tables([table, parsed])


def _check_column(source: str, table: SourceTableSpec, column: ColumnSpec) -> None:
    """Refuse what the yml model accepts but a contract cannot apply (zone names, decimal sizes)."""
    where = f"sources/{source}.yml: table {table.name!r}, column {column.name!r}"
    params = decimal_params(column.type)
    if params is not None and not (1 <= params[0] <= 38 and params[1] <= params[0]):
        raise ConfigError(
            f"{where}: {column.type} is not supported; use decimal(p,s) with 1 <= p <= 38 "
            "and s <= p"
        )
    try:
        ZoneInfo(column.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{where}: timezone {column.timezone!r} is not an IANA zone name "
            "(e.g. 'UTC', 'Europe/Berlin')"
        ) from exc
