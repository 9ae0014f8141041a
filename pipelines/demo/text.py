"""Vectorised string building on numpy's variable-width ``StringDType``.

Row values are never formatted one by one in Python: ids, money amounts, timestamps, e-mail
addresses and phone numbers are assembled column-wise with ``numpy.strings`` so that scale 100
(tens of millions of values) stays in the range of seconds.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.dtypes import StringDType

Arr = npt.NDArray[Any]

S = StringDType()
"""Plain variable-width string dtype (no missing values; nulls travel as separate masks)."""

_TWO_DIGITS = np.array([f"{i:02d}" for i in range(100)], dtype=S)


def strs(values: Any) -> Arr:
    """A ``StringDType`` array from any sequence or array of strings."""
    return np.array(list(values) if isinstance(values, (list, tuple)) else values, dtype=S)


def take(values: Any, index: Arr) -> Arr:
    """``values[index]`` as strings; ``values`` is usually a small vocabulary."""
    table = values if isinstance(values, np.ndarray) and values.dtype == S else strs(values)
    return table[np.asarray(index, dtype=np.int64)]


def cat(*parts: Arr | str) -> Arr:
    """Element-wise concatenation of string arrays and scalar strings."""
    arrays = [p if isinstance(p, str) else np.asarray(p, dtype=S) for p in parts]
    result = reduce(np.strings.add, arrays)
    return np.asarray(result, dtype=S)


def num(values: Arr, width: int = 0) -> Arr:
    """Decimal rendering of non-negative integers, zero-padded to ``width``."""
    rendered = np.asarray(values, dtype=np.int64).astype(S)
    return np.strings.zfill(rendered, width) if width else rendered


def money(cents: Arr) -> Arr:
    """Exact two-decimal rendering of integer cents, e.g. -1234 -> '-12.34'."""
    c = np.asarray(cents, dtype=np.int64)
    magnitude = np.abs(c)
    sign = np.where(c < 0, "-", "").astype(S)
    return cat(sign, (magnitude // 100).astype(S), ".", _TWO_DIGITS[magnitude % 100])


def where(mask: Arr, when_true: Arr | str, when_false: Arr | str) -> Arr:
    """``numpy.where`` that keeps the ``StringDType``."""
    return np.asarray(np.where(mask, when_true, when_false), dtype=S)


def to_fixed(values: Arr) -> Arr:
    """Fixed-width unicode copy (``np.savez`` cannot store ``StringDType``)."""
    if values.size == 0:
        return np.array([], dtype="U1")
    width = max(1, int(np.strings.str_len(values).max()))
    return np.asarray(values, dtype=S).astype(f"U{width}")
