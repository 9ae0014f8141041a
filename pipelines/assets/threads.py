"""Overlap the warehouse's work with Dagster's bookkeeping.

Dagster stores each event (a materialization, a check result) in its event log as it is yielded,
which costs several milliseconds per event with the default SQLite storage; the warehouse spends
most of a model's build inside the engine. Both release the GIL while they wait or compute, so a
worker thread that builds the next model while the step's thread hands the last one's events to
Dagster keeps both cores busy. Only the step's thread talks to Dagster; only the worker uses the
warehouse session while it runs.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def run_ahead(items: Iterator[T], *, ahead: int = 2) -> Iterator[T]:
    """Yield what ``items`` yields, computing it in a worker thread at most ``ahead`` items in
    advance. An exception in the worker is raised here. When the consumer stops early (a run
    cancelled), the worker finishes the item it is producing (a model's build commits or rolls
    back whole) and produces no more."""
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                handoff.put((item, None))
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put((_DONE, exc))
            return
        handoff.put((_DONE, None))

    worker = threading.Thread(target=work, name="ssot-run-ahead", daemon=True)
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
        while worker.is_alive():  # unblock a worker waiting to hand over an item
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        worker.join()
