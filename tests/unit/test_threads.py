"""work_ahead: a worker thread produces (reads a source, builds models) while the caller consumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipelines.threads import work_ahead


def test_yields_everything_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def produce() -> Iterator[int]:
        for i in range(50):
            threads.append(threading.current_thread().name)
            yield i

    assert list(work_ahead(produce())) == list(range(50))
    assert set(threads) == {"ssot-work-ahead"}


def test_an_error_in_the_worker_is_raised_to_the_consumer_after_what_came_before() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("model x failed")

    got = []
    with pytest.raises(ValueError, match="model x failed"):
        for item in work_ahead(produce()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_stops_the_worker_within_a_few_items() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    items = work_ahead(produce(), depth=2)
    assert next(items) == 0
    time.sleep(0.1)  # let the worker fill the hand-off
    items.close()  # what a cancelled run does to the step's generator
    settled = len(produced)
    time.sleep(0.1)
    assert len(produced) == settled  # the worker has stopped
    assert settled <= 5  # one handed over, two waiting, one being put, at most one more
