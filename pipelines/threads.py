"""Work ahead in a thread: one place for the project's producer/consumer hand-off.

DuckDB, the source drivers and SQLite all release the GIL while they wait or compute, so a
worker thread that produces the next items (batches read from a source, models built in the
warehouse) while the calling thread consumes the last ones (validating and landing them, handing
their events to Dagster) keeps both cores busy.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def work_ahead(
    items: Iterable[T],
    *,
    depth: int = 2,
    name: str = "ssot-work-ahead",
    join_timeout: float | None = None,
    on_stop: Callable[[], None] | None = None,
) -> Generator[T, None, None]:
    """Yield what ``items`` yields, produced in a worker thread at most ``depth`` items ahead.

    An exception in the worker is raised here, after the items produced before it. When the
    consumer stops early (an error, a cancelled run: close the generator), ``on_stop`` is
    called (to cut short what the worker is doing, such as a running query), the worker
    produces no more, and the consumer waits for it to finish (at most ``join_timeout`` seconds
    when given: a reader stuck on the network must not hang the run), even through a second
    interrupt, so that nothing else uses what the worker holds while it still runs.
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
        hand_over((_DONE, None))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            item, error = handoff.get()
            if item is _DONE:
                finished = True
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if not finished and on_stop is not None and worker.is_alive():
            on_stop()
        _wait_for(worker, join_timeout)


def _wait_for(worker: threading.Thread, timeout: float | None) -> None:
    """Join ``worker`` (for at most ``timeout`` seconds), through interrupts: one that arrives
    while waiting is raised once the worker has stopped."""
    interrupted: BaseException | None = None
    while True:
        try:
            worker.join(timeout=timeout)
            break
        except BaseException as exc:  # KeyboardInterrupt, Dagster's termination
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
