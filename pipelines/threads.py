"""Work ahead in a thread: one place for the project's producer/consumer hand-off.

DuckDB, the source drivers and SQLite all release the GIL while they wait or compute, so a
worker thread that produces the next items (batches read from a source, models built in the
warehouse) while the calling thread consumes the last ones (validating and landing them, handing
their events to Dagster) keeps both cores busy.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def work_ahead(
    items: Iterable[T],
    *,
    depth: int = 2,
    name: str = "ssot-work-ahead",
    join_timeout: float | None = None,
) -> Generator[T, None, None]:
    """Yield what ``items`` yields, produced in a worker thread at most ``depth`` items ahead.

    An exception in the worker is raised here, after the items produced before it. When the
    consumer stops early (an error, a cancelled run: close the generator), the worker finishes
    the item it is producing, produces no more and closes ``items`` (a generator's cleanup
    runs in the worker), and the consumer waits for it (at most ``join_timeout`` seconds in
    all, when given: a reader stuck on the network must not hang the run). An interrupt
    during that wait is raised once the worker has stopped; a second one is raised at once
    (whoever shares something with the worker must guard it, see ``Warehouse.exclusive``).
    """
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not hand_over((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((_DONE, exc))
            return
        finally:
            # a generator stopped early cleans up here, in the thread that ran it (its
            # error then has no consumer left to go to)
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        hand_over((_DONE, None))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        _wait_for(worker, join_timeout)


def _wait_for(worker: threading.Thread, timeout: float | None) -> None:
    """Join ``worker`` for at most ``timeout`` seconds in all; the first interrupt that arrives
    meanwhile is raised once the worker has stopped, a second one at once."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interrupted: BaseException | None = None
    while worker.is_alive():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        try:
            worker.join(timeout=left)
        except BaseException as exc:  # KeyboardInterrupt, a run's termination
            if interrupted is not None:
                raise
            interrupted = exc
    if interrupted is not None:
        raise interrupted
