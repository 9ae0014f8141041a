"""The simulated clock and the timestamp formats of each system.

There is no wall-clock time anywhere: the world starts at 2026-01-01T00:00:00Z (day 0), the
history created by ``init_demo`` covers the 365 days before that, and ``advance_demo`` moves
the clock by whole days. Times are integer seconds since the Unix epoch (UTC) internally and
are rendered, vectorised, in the format each operational system uses.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo.text import S, cat, take

Arr = npt.NDArray[Any]

T0 = 1_767_225_600
"""2026-01-01T00:00:00Z, the start of day 0."""
DAY = 86_400
HISTORY_DAYS = 365
"""``init_demo`` creates this many days of history before day 0."""

# CRM rows carry an explicit UTC offset that varies by row; index 0 renders as 'Z'.
_OFFSET_MINUTES = np.array([0, 0, 60, 120, 330, 540, -300, -420, -480], dtype=np.int64)
_OFFSET_SUFFIX = np.array(
    ["Z", "+00:00", "+01:00", "+02:00", "+05:30", "+09:00", "-05:00", "-07:00", "-08:00"],
    dtype=S,
)
_OFFSET_WEIGHTS = np.array([0.3, 0.1, 0.15, 0.15, 0.05, 0.05, 0.1, 0.05, 0.05])


def day_start(day: int) -> int:
    """Epoch seconds at 00:00:00Z of a simulated day (day 0 = 2026-01-01)."""
    return T0 + day * DAY


def day_of(seconds: Arr) -> Arr:
    """Simulated day number of each epoch-seconds value (negative during the history)."""
    return (np.asarray(seconds, dtype=np.int64) - T0) // DAY


def date_label(day: int) -> str:
    """'YYYY-MM-DD' of a simulated day, used in export file names."""
    return str(np.datetime64(day_start(day), "s").astype("datetime64[D]"))


@lru_cache(maxsize=1)
def _times_of_day() -> Arr:
    return np.array(
        [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)], dtype=S
    )


def _render(seconds: Arr, sep: str) -> Arr:
    secs = np.asarray(seconds, dtype=np.int64)
    if secs.size == 0:
        return np.array([], dtype=S)
    epoch_days = secs // DAY
    first = int(epoch_days.min())
    dates = np.datetime_as_string(
        np.arange(first, int(epoch_days.max()) + 1).astype("datetime64[D]")
    ).astype(S)
    return cat(take(dates, epoch_days - first), sep, take(_times_of_day(), secs % DAY))


def naive_utc(seconds: Arr) -> Arr:
    """Shop format: 'YYYY-MM-DD HH:MM:SS', UTC without a zone designator."""
    return _render(seconds, " ")


def iso_z(seconds: Arr) -> Arr:
    """Billing format: 'YYYY-MM-DDTHH:MM:SSZ'."""
    return cat(_render(seconds, "T"), "Z")


def random_offsets(rng: np.random.Generator, n: int) -> Arr:
    """Offset indexes for :func:`iso_offset`, as a legacy CRM used by many offices would show."""
    return rng.choice(len(_OFFSET_MINUTES), size=n, p=_OFFSET_WEIGHTS)


def iso_offset(seconds: Arr, offsets: Arr) -> Arr:
    """CRM format: local time with an explicit offset, e.g. '2026-01-03T09:15:00+02:00'."""
    local = np.asarray(seconds, dtype=np.int64) + _OFFSET_MINUTES[offsets] * 60
    return cat(_render(local, "T"), take(_OFFSET_SUFFIX, offsets))
