"""Coercion of source values to the contract's logical types, one type at a time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pyarrow as pa
import pytest

from pipelines.config import ColumnSpec
from pipelines.quality.coercion import arrow_type, coerce_column, coercer_for


def coerce(
    values: list[Any], type_: str, arrow: pa.DataType | None = None, **spec: Any
) -> tuple[list[Any], dict[int, str]]:
    column = ColumnSpec(name="c", type=type_, **spec)
    result = coerce_column(pa.array(values, type=arrow), coercer_for(column))
    assert result.values.type == arrow_type(column)
    return result.values.to_pylist(), {e.row: e.check for e in result.errors}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# timestamps


def test_offset_and_z_strings_become_utc() -> None:
    values, errors = coerce(
        ["2026-01-03T09:15:00+02:00", "2026-01-03T09:15:00Z", "2026-01-03T09:15:00.5-0130"],
        "timestamp",
    )
    assert errors == {}
    assert values == [
        utc(2026, 1, 3, 7, 15),
        utc(2026, 1, 3, 9, 15),
        utc(2026, 1, 3, 10, 45, 0, 500000),
    ]


def test_naive_strings_are_read_in_the_column_timezone() -> None:
    values, errors = coerce(
        ["2026-01-03 09:15:00", "2026-07-03 09:15:00", "2026-01-03"],
        "timestamp",
        timezone="Europe/Berlin",
    )
    assert errors == {}
    assert values == [utc(2026, 1, 3, 8, 15), utc(2026, 7, 3, 7, 15), utc(2026, 1, 2, 23, 0)]


def test_naive_strings_default_to_utc() -> None:
    assert coerce(["2026-01-03 09:15:00"], "timestamp")[0] == [utc(2026, 1, 3, 9, 15)]


def test_offsets_and_naive_values_mixed_in_one_column() -> None:
    values, errors = coerce(
        ["2026-01-03T09:15:00+02:00", "2026-01-03 09:15:00", " 2026-01-03T09:15:00Z ", None],
        "timestamp",
        timezone="America/New_York",
    )
    assert errors == {}
    assert values == [utc(2026, 1, 3, 7, 15), utc(2026, 1, 3, 14, 15), utc(2026, 1, 3, 9, 15), None]


def test_ambiguous_local_time_takes_the_first_occurrence() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25: first in CEST (+02:00).
    values, errors = coerce(
        ["2026-10-25 02:30:00", "2026-10-25 04:00:00"], "timestamp", timezone="Europe/Berlin"
    )
    assert errors == {}
    assert values == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3, 0)]


def test_integers_are_epoch_milliseconds() -> None:
    values, errors = coerce([1767225600000, 1767225600123, None], "timestamp")
    assert errors == {}
    assert values == [utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 0, 123000), None]


def test_epoch_milliseconds_out_of_range_are_rejected() -> None:
    values, errors = coerce([1767225600000, 10**18], "timestamp")
    assert values == [utc(2026, 1, 1), None]
    assert errors == {1: "type"}


def test_typed_timestamps_are_converted_to_utc() -> None:
    aware = pa.array(
        [datetime(2026, 1, 3, 9, 15, tzinfo=timezone(timedelta(hours=2)))],
        pa.timestamp("ms", tz="+02:00"),
    )
    assert coerce(aware.to_pylist(), "timestamp", aware.type)[0] == [utc(2026, 1, 3, 7, 15)]
    naive = [datetime(2026, 1, 3, 9, 15)]
    assert coerce(naive, "timestamp", pa.timestamp("us"), timezone="Europe/Berlin")[0] == [
        utc(2026, 1, 3, 8, 15)
    ]
    assert coerce([date(2026, 1, 3)], "timestamp", pa.date32())[0] == [utc(2026, 1, 3)]


def test_nanosecond_timestamps_are_truncated_to_microseconds() -> None:
    arr = pa.array([1_767_225_600_000_000_001], pa.timestamp("ns", tz="UTC"))
    result = coerce_column(arr, coercer_for(ColumnSpec(name="c", type="timestamp")))
    assert result.values.to_pylist() == [utc(2026, 1, 1)]


def test_unreadable_timestamps_are_rejected() -> None:
    values, errors = coerce(
        ["2026-01-03 09:15:00", "yesterday", "2026-13-01 00:00:00", "2026-01-03 25:00"], "timestamp"
    )
    assert values == [utc(2026, 1, 3, 9, 15), None, None, None]
    assert errors == {1: "type", 2: "type", 3: "type"}


# ---------------------------------------------------------------------------------------------
# decimals


def test_floats_round_half_even_to_the_scale() -> None:
    values, errors = coerce(
        [2.675, 0.125, 0.135, 19.995, 1.005, -2.675, 0.1 + 0.2], "decimal(12,2)"
    )
    assert errors == {}
    assert values == [
        Decimal(v) for v in ("2.68", "0.12", "0.14", "20.00", "1.00", "-2.68", "0.30")
    ]


def test_decimal_strings_are_parsed_exactly() -> None:
    values, errors = coerce(["12.5", "12.50", " 7 ", "1e3", "-.5", "+3", "12.500"], "decimal(12,2)")
    assert errors == {}
    assert values == [
        Decimal(v) for v in ("12.50", "12.50", "7.00", "1000.00", "-0.50", "3.00", "12.50")
    ]


def test_decimal_strings_that_would_need_rounding_are_rejected() -> None:
    values, errors = coerce(["12.345", "1.00", "abc", "NaN"], "decimal(12,2)")
    assert values == [None, Decimal("1.00"), None, None]
    assert errors == {0: "type", 2: "type", 3: "type"}


def test_decimals_that_do_not_fit_the_precision_are_rejected() -> None:
    values, errors = coerce(["9999999999.99", "10000000000.00", "12345678901"], "decimal(12,2)")
    assert values == [Decimal("9999999999.99"), None, None]
    assert errors == {1: "type", 2: "type"}
    values, errors = coerce([1.5, 1e11, 9999999999.995, float("nan")], "decimal(12,2)")
    assert values == [Decimal("1.50"), None, None, None]
    assert errors == {1: "type", 2: "type", 3: "type"}


def test_integers_and_decimals_into_a_decimal_column() -> None:
    assert coerce([3, None], "decimal(5,1)")[0] == [Decimal("3.0"), None]
    values, errors = coerce([Decimal("1.25"), Decimal("1.2")], "decimal(5,1)", pa.decimal128(6, 2))
    assert values == [None, Decimal("1.2")]
    assert errors == {0: "type"}


def test_tiny_floats_round_to_zero() -> None:
    assert coerce([1e-30, 5e-3], "decimal(12,2)")[0] == [Decimal("0.00"), Decimal("0.00")]


# ---------------------------------------------------------------------------------------------
# integers, floats, booleans, dates, strings


def test_integers_from_strings() -> None:
    values, errors = coerce(["42", " 42 ", "+7", "-3", "007", None], "integer")
    assert errors == {}
    assert values == [42, 42, 7, -3, 7, None]


def test_strings_that_are_not_integers_are_rejected() -> None:
    values, errors = coerce(["1", "4.2", "abc", "0x10", "99999999999999999999", "1_000"], "bigint")
    assert values == [1, None, None, None, None, None]
    assert errors == {i: "type" for i in range(1, 6)}


@pytest.mark.parametrize(
    "type_", ["integer", "float", "decimal(12,2)", "boolean", "date", "timestamp"]
)
def test_blank_text_is_missing_not_malformed(type_: str) -> None:
    assert coerce(["", "   ", None], type_) == ([None, None, None], {})


def test_blank_text_stays_text_in_a_string_column() -> None:
    assert coerce(["", "  "], "string") == (["", "  "], {})


def test_integers_from_floats_must_be_whole() -> None:
    values, errors = coerce([3.0, 3.5, float("nan")], "integer")
    assert values == [3, None, None]
    assert errors == {1: "type", 2: "type"}


def test_floats_from_strings() -> None:
    values, errors = coerce(["1.5", " 2 ", "1e3", "-.5", "x1"], "float")
    assert values == [1.5, 2.0, 1000.0, -0.5, None]
    assert errors == {4: "type"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("FALSE", False), (" Yes ", True), ("no", False), ("1", True), ("0", False)],
)
def test_booleans_from_strings(raw: str, expected: bool) -> None:
    assert coerce([raw], "boolean") == ([expected], {})


def test_booleans_from_integers_and_rejections() -> None:
    assert coerce([1, 0, None], "boolean") == ([True, False, None], {})
    values, errors = coerce(["maybe", "true"], "boolean")
    assert values == [None, True]
    assert errors == {0: "type"}
    assert coerce([2, 1], "boolean") == ([None, True], {0: "type"})


def test_dates() -> None:
    values, errors = coerce(["2026-01-03", " 2026-01-04 ", "2026-02-30", "03/01/2026"], "date")
    assert values == [date(2026, 1, 3), date(2026, 1, 4), None, None]
    assert errors == {2: "type", 3: "type"}
    aware = pa.array([datetime(2026, 1, 3, 23, 30, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    assert coerce(aware.to_pylist(), "date", aware.type, timezone="Europe/Berlin")[0] == [
        date(2026, 1, 4)
    ]


def test_any_scalar_becomes_its_string() -> None:
    assert coerce([1, None], "string")[0] == ["1", None]
    assert coerce([True], "string")[0] == ["true"]
    assert coerce([Decimal("1.50")], "string", pa.decimal128(5, 2))[0] == ["1.50"]
    nested = pa.array([{"a": 1}], pa.struct([("a", pa.int64())]))
    result = coerce_column(nested, coercer_for(ColumnSpec(name="c", type="string")))
    assert result.values.to_pylist() == ['{"a": 1}']


def test_dictionary_encoded_input() -> None:
    arr = pa.array(["1", "2", "1", "x"]).dictionary_encode()
    result = coerce_column(arr, coercer_for(ColumnSpec(name="c", type="integer")))
    assert result.values.to_pylist() == [1, 2, 1, None]
    assert [e.row for e in result.errors] == [3]


def test_all_null_column_of_null_type() -> None:
    for type_ in ("integer", "timestamp", "decimal(12,2)", "string", "boolean", "date", "float"):
        assert coerce([None, None], type_, pa.null()) == ([None, None], {})


# ---------------------------------------------------------------------------------------------
# invalid UTF-8


def test_invalid_utf8_is_replaced_and_reported() -> None:
    blob = pa.array([b"caf\xc3\xa9", b"bad\xff", None], pa.binary())
    for arr in (blob, blob.view(pa.string())):  # a string array that lies about its encoding
        result = coerce_column(arr, coercer_for(ColumnSpec(name="c", type="string")))
        assert result.values.to_pylist() == ["café", "bad\ufffd", None]
        assert [(e.row, e.check) for e in result.errors] == [(1, "encoding")]


def test_invalid_utf8_in_a_number_column_does_not_crash() -> None:
    arr = pa.array([b"12", b"1\xff"], pa.binary()).view(pa.string())
    result = coerce_column(arr, coercer_for(ColumnSpec(name="c", type="integer")))
    assert result.values.to_pylist() == [12, None]
    assert sorted(e.check for e in result.errors) == ["encoding", "type"]


# ---------------------------------------------------------------------------------------------
# The vector levels agree with the scalar parser, and bad values cost only themselves.

MIXED: dict[str, list[Any]] = {
    "integer": [
        "1",
        " 2",
        "+3",
        "-4",
        "4.5",
        "x",
        "0x1F",
        "9223372036854775807",
        "9223372036854775808",
        None,
    ],
    "float": ["1", "2.5e3", " .5 ", "inf", "nan", "1,5", "1_0", None],
    "decimal(12,2)": [
        "1",
        "2.345",
        "2.340",
        " 3 ",
        "1e2",
        "1e-1",
        ".",
        "-",
        None,
        "99999999999.99",
    ],
    "boolean": ["yes", "No", " 1", "2", "y", None],
    "date": ["2026-01-03", "2026-1-3", "20260103", "2026-01-03T10:00:00", "2026-02-29", None],
    "timestamp": [
        "2026-01-03T09:15:00+02:00",
        "2026-01-03 09:15",
        "2026-01-03T09:15:00,5",
        "2026-03-29 02:30:00",
        "2026-10-25 02:30:00",
        "20260103T091500",
        "2026-01-03T09:15:00 +02:00",
        None,
    ],
}


@pytest.mark.parametrize("type_", sorted(MIXED))
def test_whole_column_equals_value_by_value(type_: str) -> None:
    column = ColumnSpec(name="c", type=type_, timezone="Europe/Berlin")
    coercer = coercer_for(column)
    whole = coerce_column(pa.array(MIXED[type_]), coercer)
    for i, value in enumerate(MIXED[type_]):
        single = coerce_column(pa.array([value], pa.string()), coercer)
        alone, together = single.values[0].as_py(), whole.values[i].as_py()
        assert repr(alone) == repr(together), (type_, value)
        assert bool(single.errors) == any(e.row == i for e in whole.errors), (type_, value)


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("integer", "17", "seventeen"),
        ("decimal(12,2)", "17.25", "17,25"),
        ("timestamp", "2026-01-03T09:15:00+02:00", "03/01/2026"),
        ("date", "2026-01-03", "03/01/2026"),
        ("float", "1.5", "1.5.1"),
    ],
)
def test_python_parser_sees_only_the_bad_values(type_: str, good: str, bad: str) -> None:
    coercer = coercer_for(ColumnSpec(name="c", type=type_))
    seen: list[Any] = []
    scalar = coercer.scalar

    def counting(value: Any) -> Any:
        seen.append(value)
        return scalar(value)

    coercer.scalar = counting  # type: ignore[method-assign]
    values = [good] * 10_000
    for i in (5, 5_000, 9_999):
        values[i] = bad
    result = coerce_column(pa.array(values), coercer)
    assert seen == [bad, bad, bad]
    assert [e.row for e in result.errors] == [5, 5_000, 9_999]


def test_nonexistent_local_time_uses_the_offset_before_the_gap() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29 (clocks jump 02:00 -> 03:00); read it as +01:00.
    values, errors = coerce(["2026-03-29 02:30:00"], "timestamp", timezone="Europe/Berlin")
    assert (values, errors) == ([utc(2026, 3, 29, 1, 30)], {})


@pytest.mark.parametrize("scale", [0, 2, 4])
def test_float_decimals_match_rounding_their_text(scale: int) -> None:
    rnd = random.Random(scale)
    floats = [round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 6)) for _ in range(3000)]
    floats += [rnd.uniform(-1e3, 1e3) for _ in range(1000)]  # full 17-digit floats
    quantum = Decimal(1).scaleb(-scale)
    expected = [Decimal(repr(f)).quantize(quantum, rounding=ROUND_HALF_EVEN) for f in floats]
    # whole column (one fast cast when possible), then only values already at the scale
    assert coerce(floats, f"decimal(18,{scale})") == (expected, {})
    at_scale = [float(d) for d in expected]
    assert coerce(at_scale, f"decimal(18,{scale})") == (expected, {})
