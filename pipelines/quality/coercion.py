"""Turn one source column into the contract's logical type, and say which values would not go.

Sources hand values over as they stored them: SQLite text timestamps with or without offsets,
epoch milliseconds, decimals as floats or strings, integers as CSV text. Each logical type has a
coercer with three levels, tried in order:

1. ``fast``: one vectorized Arrow cast of the whole column. Clean batches never leave it.
2. ``tolerant``: a vectorized pass that reads what Arrow can and leaves nulls where it is unsure
   (regular-expression filters, trimming). If it still raises on some value, the column is
   halved until the raising values sit in small slices, which are left null.
3. ``scalar``: the Python parser. It sees only the values the vector levels left null, is the
   authority on what is accepted, and says in words why a value is refused.

So the cost of a bad value is proportional to the number of bad values, not to the batch size,
and the vector levels never accept a value the Python parser would refuse (they only decline).

Invalid UTF-8 in text never crashes: undecodable bytes are replaced with U+FFFD and the row is
flagged with the ``encoding`` check, before any type-specific work.

Empty or blank text in a column that is not a string (an empty CSV field) is a missing value, not
a malformed one: it becomes null, and the nullable/key checks decide whether that is allowed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.config import ColumnSpec, decimal_params
from pipelines.quality.jsonvalues import dumps

#: Every timestamp leaves the contract in UTC with microsecond precision.
TIMESTAMP = pa.timestamp("us", tz="UTC")

# pyarrow reads PYARROW_IGNORE_TIMEZONE on every Python -> Arrow conversion (`pa.array`); when it
# is truthy, an aware datetime's wall clock is stored as if it were UTC (09:15+02:00 becomes 09:15Z).
# pandera sets it to "1" on import unless it is already set (for pyspark), and validation imports
# pandera on the first batch it checks, so every later batch of the run would land timestamps with
# offsets (PostgreSQL timestamptz rows, typed timestamps) shifted by their offset. Setting it to the
# empty string, which pyarrow reads as false, keeps the offsets and stops pandera from setting it.
# validation.py imports this module before it imports pandera.
os.environ["PYARROW_IGNORE_TIMEZONE"] = ""

_NAIVE_US = pa.timestamp("us")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Epoch milliseconds of 0001-01-01 and 9999-12-31 23:59:59.999: the range Python can represent.
_EPOCH_MS_MIN, _EPOCH_MS_MAX = -62_135_596_800_000, 253_402_300_799_999
#: Below this many values, a slice whose vector cast raised is handed to the scalar parser whole.
_LEAF = 64
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")
#: Decimal arithmetic wide enough for any decimal128 plus a float's digits.
_WIDE = Context(prec=80)

_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# RE2 patterns for the tolerant vector level; anything they do not match goes to the Python parser.
_RE2_INT = r"^-?[0-9]{1,18}$"
_RE2_FLOAT = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_RE2_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_RE2_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)
_RE2_OFFSET = r":[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$"


class BadValue(Exception):
    """Raised by a scalar parser: the value cannot become the column's type; `detail` says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class CellError:
    """One value of one row that could not be coerced (`check` is ``type`` or ``encoding``)."""

    row: int
    check: str
    detail: str


@dataclass(frozen=True)
class CoercedColumn:
    """The column in its logical type (null where coercion failed) and the failures."""

    values: pa.Array
    errors: tuple[CellError, ...]


def arrow_type(column: ColumnSpec) -> pa.DataType:
    """The Arrow type a contract column has after coercion."""
    params = decimal_params(column.type)
    if params is not None:
        return pa.decimal128(*params)
    return {
        "integer": pa.int64(),
        "bigint": pa.int64(),
        "float": pa.float64(),
        "string": pa.string(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": TIMESTAMP,
    }[column.type]


def preview(value: Any, limit: int = 60) -> str:
    """`repr` of a value, cut short so one huge cell cannot flood a quarantine message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Coercers: one per logical type.


def _null_scalar(type_: pa.DataType) -> pa.Scalar:
    return pa.scalar(None, type=type_)


def _keep(arr: pa.Array, mask: pa.Array) -> pa.Array:
    """`arr` where `mask` is true, null elsewhere."""
    return pc.if_else(mask, arr, _null_scalar(arr.type))


def _all_true(mask: pa.Array) -> bool:
    """True when no element of `mask` is false (nulls do not count)."""
    return pc.all(mask).as_py() is not False


def _is_numeric(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
    )


class Coercer:
    """The three levels for one logical type (see the module docstring).

    The base has no vector level for any input type, so unexpected Arrow types (a struct in an
    integer column) fall through to `scalar`, which refuses them with a reason.
    """

    target: pa.DataType

    def fast(self, arr: pa.Array) -> pa.Array:
        """The whole column at once; raises if a value does not fit. A null where the source
        had a value is not a verdict: that value goes to `scalar`."""
        raise pa.ArrowNotImplementedError(f"no vectorized path from {arr.type}")

    def tolerant(self, arr: pa.Array) -> pa.Array:
        """Like `fast`, but filters out values it cannot read instead of raising on them."""
        return self.fast(arr)

    def scalar(self, value: Any) -> Any:
        """One Python value in the target type, or :class:`BadValue` saying why not."""
        raise NotImplementedError


class _Integer(Coercer):
    target = pa.int64()

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_string(t):
            # Arrow also reads hexadecimal ('0x1F'); the contract does not, so those go to scalar.
            hexadecimal = pc.match_substring(arr, "x", ignore_case=True)
            return pc.if_else(hexadecimal, _null_scalar(self.target), arr.cast(self.target))
        if _is_numeric(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
            return arr.cast(self.target)
        return super().fast(arr)

    def tolerant(self, arr: pa.Array) -> pa.Array:
        if pa.types.is_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
            return _keep(text, pc.match_substring_regex(text, _RE2_INT)).cast(self.target)
        if pa.types.is_floating(arr.type):
            whole = pc.and_(pc.is_finite(arr), pc.equal(pc.floor(arr), arr))
            return _keep(arr, pc.and_(whole, pc.less_equal(pc.abs(arr), 2.0**53))).cast(self.target)
        return self.fast(arr)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if not _INT_TEXT.fullmatch(text):
                raise BadValue(f"{preview(value)} is not an integer")
            number = int(text)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float | Decimal):
            if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
                raise BadValue(f"{value} is not an integer")
            if value != int(value):
                raise BadValue(f"{value} is not a whole number")
            number = int(value)
        else:
            raise BadValue(f"{preview(value)} ({type(value).__name__}) is not an integer")
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise BadValue(f"{number} does not fit a 64-bit integer")
        return number


class _Float(Coercer):
    target = pa.float64()

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_string(t) or _is_numeric(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
            return arr.cast(self.target)
        return super().fast(arr)

    def tolerant(self, arr: pa.Array) -> pa.Array:
        if pa.types.is_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
            return _keep(text, pc.match_substring_regex(text, _RE2_FLOAT)).cast(self.target)
        return self.fast(arr)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not _FLOAT_TEXT.fullmatch(text):
                raise BadValue(f"{preview(value)} is not a number")
            return float(text)
        if isinstance(value, int | float | Decimal):
            try:
                return float(value)
            except OverflowError as exc:
                raise BadValue(f"{value} does not fit a float") from exc
        raise BadValue(f"{preview(value)} ({type(value).__name__}) is not a number")


class _Decimal(Coercer):
    def __init__(self, precision: int, scale: int) -> None:
        self.precision, self.scale = precision, scale
        self.target = pa.decimal128(precision, scale)
        self._quantum = Decimal(1).scaleb(-scale)
        self._limit = Decimal(10) ** (precision - scale)
        whole = precision - scale
        forms = [rf"[0-9]{{1,{whole}}}(?:\.[0-9]{{0,{scale}}})?"] if whole else []
        if scale:
            forms.append(rf"\.[0-9]{{1,{scale}}}")
        self._re2_fits = rf"^[+-]?(?:{'|'.join(forms)})$"
        # Floats are read through their shortest text (at most 17 significant digits) into a
        # decimal wide enough to hold it; values too tiny for that width go to `scalar`.
        width = 38 if whole <= 16 else 76
        self._wide = (pa.decimal128 if width == 38 else pa.decimal256)(width, width - whole)
        self._tiny = 10.0 ** (whole - (width - 17))
        # Below this magnitude a float's spacing is far finer than the scale's last digit.
        self._fine_below = 2.0**51 / 10**scale

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_floating(t):
            return self._floats_at_scale(arr)
        if (
            pa.types.is_string(t)
            or pa.types.is_integer(t)
            or pa.types.is_decimal(t)
            or pa.types.is_null(t)
        ):
            return arr.cast(self.target)
        return super().fast(arr)

    def tolerant(self, arr: pa.Array) -> pa.Array:
        if pa.types.is_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
            return _keep(text, pc.match_substring_regex(text, self._re2_fits)).cast(self.target)
        if pa.types.is_floating(arr.type):
            size = pc.abs(arr)
            readable = pc.or_(pc.equal(size, 0.0), pc.greater_equal(size, self._tiny))
            fits = pc.and_(pc.is_finite(arr), pc.less(size, float(self._limit)))
            return self._floats_at_scale(_keep(arr, pc.and_(fits, readable)))
        return self.fast(arr)

    def _floats_at_scale(self, arr: pa.Array) -> pa.Array:
        """Floats as decimals, quickly when the source wrote at most `scale` decimals (12.5, 3.99).

        `units` counts the scale's last digit (1243 for 12.43 at scale 2). When `units / 10**scale`
        gives back every float (IEEE division rounds correctly), each float's shortest text has at
        most `scale` decimals, so no rounding is needed and one cast gives the decimals. Any other
        float needs its text rounded, which is several times slower.
        """
        floats = arr.cast(pa.float64())
        size = pc.max(pc.abs(floats)).as_py()
        if size is None or size < self._fine_below:
            factor = 10.0**self.scale
            units = pc.round(pc.multiply(floats, factor))
            if _all_true(pc.equal(pc.divide(units, factor), floats)):
                nearest = floats.cast(self.target)
                landed = pc.round(pc.multiply(nearest.cast(pa.float64()), factor))
                if _all_true(pc.equal(landed, units)):
                    return nearest
        return self._round_floats(floats)

    def _round_floats(self, arr: pa.Array) -> pa.Array:
        """Half-even rounding of each float's shortest decimal text (what the source wrote)."""
        exact = arr.cast(pa.float64()).cast(pa.string()).cast(self._wide)
        return pc.round(exact, ndigits=self.scale, round_mode="half_to_even").cast(self.target)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise BadValue(f"{value} (bool) is not a decimal number")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise BadValue(f"{value} is not a decimal number")
            number = self._quantize(Decimal(repr(value)), value)
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, Decimal) or (
            isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip())
        ):
            exact = Decimal(value.strip()) if isinstance(value, str) else value
            if not exact.is_finite():
                raise BadValue(f"{preview(value)} is not a decimal number")
            number = self._quantize(exact, value)
            if number != exact:
                raise BadValue(
                    f"{preview(value)} has more than {self.scale} decimal places; "
                    f"decimal({self.precision},{self.scale}) would have to round it"
                )
        elif isinstance(value, str):
            raise BadValue(f"{preview(value)} is not a decimal number")
        else:
            raise BadValue(f"{preview(value)} ({type(value).__name__}) is not a decimal number")
        if abs(number) >= self._limit:
            raise BadValue(f"{preview(value)} does not fit decimal({self.precision},{self.scale})")
        return number

    def _quantize(self, number: Decimal, original: Any) -> Decimal:
        try:
            return number.quantize(self._quantum, rounding=ROUND_HALF_EVEN, context=_WIDE)
        except InvalidOperation as exc:
            raise BadValue(
                f"{preview(original)} does not fit decimal({self.precision},{self.scale})"
            ) from exc


class _Boolean(Coercer):
    target = pa.bool_()

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_boolean(t) or pa.types.is_null(t):
            return arr.cast(self.target)
        if pa.types.is_integer(t):
            known = pc.is_in(arr, value_set=pa.array([0, 1], type=t))
            return _keep(pc.not_equal(arr, pa.scalar(0, type=t)), known)
        if pa.types.is_string(t):
            word = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
            true = pc.is_in(word, value_set=pa.array(_TRUE))
            false = pc.is_in(word, value_set=pa.array(_FALSE))
            return _keep(true, pc.or_(true, false))
        return super().fast(arr)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
        raise BadValue(f"{preview(value)} is not a boolean (true/false, 1/0, yes/no)")


class _String(Coercer):
    target = pa.string()

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_string(t):
            return arr
        if (
            _is_numeric(t)
            or pa.types.is_boolean(t)
            or pa.types.is_temporal(t)
            or pa.types.is_null(t)
        ):
            return arr.cast(self.target)
        return super().fast(arr)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list | tuple):
            return dumps(value)
        return str(value)


class _Date(Coercer):
    target = pa.date32()

    def __init__(self, zone: str) -> None:
        self.zone, self._zone = zone, ZoneInfo(zone)

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_timestamp(t) and t.tz is not None:
            local = pc.local_timestamp(arr.cast(pa.timestamp(t.unit, tz=self.zone)))
            return local.cast(self.target)
        if (
            pa.types.is_string(t)
            or pa.types.is_date(t)
            or pa.types.is_timestamp(t)
            or pa.types.is_null(t)
        ):
            return arr.cast(self.target)
        return super().fast(arr)

    def tolerant(self, arr: pa.Array) -> pa.Array:
        if pa.types.is_string(arr.type):
            text = pc.utf8_trim_whitespace(arr)
            return _keep(text, pc.match_substring_regex(text, _RE2_DATE)).cast(self.target)
        return self.fast(arr)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise BadValue(f"{preview(value)} is not an ISO 8601 date") from None
        if isinstance(value, datetime):
            return value.astimezone(self._zone).date() if value.tzinfo else value.date()
        if isinstance(value, date):
            return value
        raise BadValue(f"{preview(value)} ({type(value).__name__}) is not a date")


class _Timestamp(Coercer):
    target = TIMESTAMP

    def __init__(self, zone: str) -> None:
        self.zone, self._zone = zone, ZoneInfo(zone)

    def fast(self, arr: pa.Array) -> pa.Array:
        t = arr.type
        if pa.types.is_string(t):
            # One cast, guessed from the first value: Arrow spends as long refusing a value as
            # reading it, so trying "all with offsets" on naive text (or the reverse) is not free.
            # A failed guess (mixed or broken text) goes to `tolerant`, which splits the column.
            if self._first_has_offset(arr):
                return arr.cast(self.target)
            return self._localize(arr.cast(_NAIVE_US))
        if pa.types.is_timestamp(t):
            # Sub-microsecond digits are dropped rather than refused.
            micro = arr.cast(pa.timestamp("us", tz=t.tz), safe=t.unit != "ns")
            return micro.cast(self.target) if t.tz is not None else self._localize(micro)
        if pa.types.is_date(t):
            return self._localize(arr.cast(_NAIVE_US))
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            millis = arr.cast(pa.float64()) if pa.types.is_floating(t) else arr.cast(pa.int64())
            known = pc.and_(
                pc.greater_equal(millis, _EPOCH_MS_MIN), pc.less_equal(millis, _EPOCH_MS_MAX)
            )
            micros = pc.multiply(_keep(millis, known), 1000)
            if pa.types.is_floating(t):
                micros = pc.round(micros).cast(pa.int64())
            return micros.cast(self.target)
        if pa.types.is_null(t):
            return arr.cast(self.target)
        return super().fast(arr)

    @staticmethod
    def _first_has_offset(arr: pa.Array) -> bool:
        head = arr.slice(0, 1000).drop_null()
        if len(head) == 0:
            return False
        text = pc.utf8_trim_whitespace(head.slice(0, 1))
        return bool(pc.match_substring_regex(text, _RE2_OFFSET)[0].as_py())

    def tolerant(self, arr: pa.Array) -> pa.Array:
        if not pa.types.is_string(arr.type):
            return self.fast(arr)
        text = pc.utf8_trim_whitespace(arr)
        text = _keep(text, pc.match_substring_regex(text, _RE2_TIMESTAMP))
        offset = pc.fill_null(pc.match_substring_regex(text, _RE2_OFFSET), False)
        aware = _keep(text, offset).cast(self.target)
        naive = self._localize(_keep(text, pc.invert(offset)).cast(_NAIVE_US))
        return pc.if_else(offset, aware, naive)

    def _localize(self, naive: pa.Array) -> pa.Array:
        """Wall-clock times in the column's zone -> UTC (ambiguous or missing local times raise)."""
        if self.zone != "UTC":
            naive = pc.assume_timezone(naive, timezone=self.zone)
        return naive.cast(self.target)

    def scalar(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise BadValue(f"{value} (bool) is not a timestamp")
        if isinstance(value, int | float):
            return self._from_millis(value)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise BadValue(f"{preview(value)} is not an ISO 8601 timestamp") from None
        if not isinstance(value, datetime) and isinstance(value, date):
            value = datetime.combine(value, time())
        if not isinstance(value, datetime):
            raise BadValue(f"{preview(value)} ({type(value).__name__}) is not a timestamp")
        try:
            local = value if value.tzinfo else value.replace(tzinfo=self._zone)
            return local.astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise BadValue(f"{preview(value)} is out of the supported range") from exc

    @staticmethod
    def _from_millis(millis: float) -> datetime:
        if not (math.isfinite(millis) and _EPOCH_MS_MIN <= millis <= _EPOCH_MS_MAX):
            raise BadValue(f"{millis} epoch milliseconds is outside years 1-9999")
        return _EPOCH + timedelta(milliseconds=millis)


def coercer_for(column: ColumnSpec) -> Coercer:
    """The coercer of a contract column (its timezone must be a valid IANA name)."""
    params = decimal_params(column.type)
    if params is not None:
        return _Decimal(*params)
    factories: dict[str, Callable[[], Coercer]] = {
        "integer": _Integer,
        "bigint": _Integer,
        "float": _Float,
        "string": _String,
        "boolean": _Boolean,
        "date": lambda: _Date(column.timezone),
        "timestamp": lambda: _Timestamp(column.timezone),
    }
    return factories[column.type]()


# ---------------------------------------------------------------------------------------------
# The driver shared by every type.

_GIVE_UP = (pa.ArrowNotImplementedError, pa.ArrowTypeError, NotImplementedError)
_NARROW = (pa.ArrowInvalid, OverflowError)


def _tolerant(arr: pa.Array, fn: Callable[[pa.Array], pa.Array], target: pa.DataType) -> pa.Array:
    """`fn(arr)`, with nulls in the small slices where it raised (found by halving)."""
    try:
        return fn(arr)
    except _GIVE_UP:
        return pa.nulls(len(arr), target)
    except _NARROW:
        if len(arr) <= _LEAF:
            return pa.nulls(len(arr), target)
        middle = len(arr) // 2
        halves = (arr.slice(0, middle), arr.slice(middle))
        return pa.concat_arrays([_tolerant(half, fn, target) for half in halves])


class Unreadable:
    """Stands in for an Arrow value Python cannot represent (e.g. a date in year 300000)."""

    def __init__(self, type_: pa.DataType) -> None:
        self.text = f"<{type_} value outside Python's range>"

    def __repr__(self) -> str:
        return self.text


def python_values(arr: pa.Array) -> list[Any]:
    """`arr.to_pylist()`, except that values Python cannot hold become :class:`Unreadable`."""
    try:
        return list(arr.to_pylist())
    except (ValueError, OverflowError, pa.ArrowException):
        values: list[Any] = []
        for i in range(len(arr)):
            try:
                values.append(arr[i].as_py())
            except (ValueError, OverflowError, pa.ArrowException):
                values.append(Unreadable(arr.type))
        return values


def values_at(arr: pa.Array, positions: pa.Array) -> list[Any]:
    """Python values of `arr` at `positions` (see :func:`python_values`), for any Arrow type."""
    try:
        picked = arr.take(positions)
    except pa.ArrowNotImplementedError:  # no take kernel for some types (string_view, ...)
        every = python_values(arr)
        return [every[i] for i in positions.to_pylist()]
    return python_values(picked)


def _left_null(source: pa.Array, result: pa.Array) -> pa.Array:
    """Positions where the source had a value and the result has none."""
    return pc.indices_nonzero(pc.and_(pc.is_valid(source), pc.is_null(result)))


def _decode_text(arr: pa.Array) -> tuple[pa.Array, list[CellError]]:
    """Text columns as valid UTF-8 `string`; undecodable bytes replaced and reported."""
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        try:
            arr.validate(full=True)
            return (arr if pa.types.is_string(t) else arr.cast(pa.string())), []
        except pa.ArrowInvalid:
            if pa.types.is_string(t):
                raw = arr.view(pa.binary())
            elif pa.types.is_large_string(t):
                raw = arr.view(pa.large_binary()).cast(pa.binary())
            else:
                raw = arr.view(pa.binary_view()).cast(pa.binary())
    elif (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        raw = arr.cast(pa.binary())
    else:
        return arr, []
    text = _tolerant(raw, lambda a: a.cast(pa.string()), pa.string())
    positions = _left_null(raw, text)
    if len(positions) == 0:
        return text, []
    errors: list[CellError] = []
    repaired: list[str] = []
    for row, blob in zip(positions.to_pylist(), values_at(raw, positions), strict=True):
        try:
            repaired.append(blob.decode("utf-8"))
        except UnicodeDecodeError as exc:
            fixed = blob.decode("utf-8", "replace")
            repaired.append(fixed)
            errors.append(
                CellError(
                    row,
                    "encoding",
                    f"invalid UTF-8 ({exc.reason}) in {preview(fixed)}; bytes replaced with U+FFFD",
                )
            )
    mask = pc.and_(pc.is_valid(raw), pc.is_null(text))
    return pc.replace_with_mask(text, mask, pa.array(repaired, type=pa.string())), errors


def coerce_column(arr: pa.Array, coercer: Coercer) -> CoercedColumn:
    """`arr` in the coercer's type; values that could not be coerced are null and reported."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    arr, errors = _decode_text(arr)
    try:
        values = coercer.fast(arr)
    except (*_GIVE_UP, *_NARROW):
        values = _tolerant(arr, coercer.tolerant, coercer.target)
    positions = _left_null(arr, values)
    if len(positions) == 0:
        return CoercedColumn(values, tuple(errors))
    parsed: list[Any] = []
    blank_is_null = coercer.target != pa.string()
    for row, value in zip(positions.to_pylist(), values_at(arr, positions), strict=True):
        try:
            if isinstance(value, Unreadable):
                raise BadValue(value.text)
            if blank_is_null and isinstance(value, str) and not value.strip():
                parsed.append(None)  # an empty CSV field: missing, not malformed
                continue
            parsed.append(coercer.scalar(value))
        except BadValue as exc:
            parsed.append(None)
            errors.append(CellError(row, "type", exc.detail))
    mask = pc.and_(pc.is_valid(arr), pc.is_null(values))
    values = pc.replace_with_mask(values, mask, pa.array(parsed, type=coercer.target))
    return CoercedColumn(values, tuple(sorted(errors, key=lambda e: e.row)))
