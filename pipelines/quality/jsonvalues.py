"""JSON text for values as a source gave them, whatever Python type Arrow handed back.

Quarantine rows keep the original row as JSON so an operator can see exactly what arrived.
`json.dumps` refuses decimals, datetimes and bytes and writes `NaN` (which is not JSON), so every
value goes through :func:`plain` first. Nothing here raises on odd input: a value that cannot be
written faithfully is written as its `str()`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any


def plain(value: Any) -> Any:
    """`value` made of JSON types only; decimals become strings so no digit is lost."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return str(value)


def _default(value: Any) -> Any:
    """Called by the encoder only for values it cannot write itself."""
    return plain(value)


def dumps(value: Any) -> str:
    """JSON text of `value`, non-ASCII characters kept as they are.

    The encoder does the common case alone (it asks :func:`_default` about decimals, dates and
    bytes); only values it refuses outright (NaN, keys that are not strings) take the slower walk
    through :func:`plain` first. Quarantining thousands of rows stays cheap that way.
    """
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, default=_default)
    except (ValueError, TypeError):
        return json.dumps(plain(value), ensure_ascii=False)
