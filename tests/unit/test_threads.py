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


def test_a_consumer_that_stops_cuts_the_worker_short_and_waits_for_it() -> None:
    produced: list[int] = []
    stops: list[str] = []
    slow_item_done = threading.Event()

    def produce() -> Iterator[int]:
        for i in range(1_000_000):
            if i == 3:  # the item in progress when the consumer stops: it takes a while
                time.sleep(0.3)
                slow_item_done.set()
            produced.append(i)
            yield i

    items = work_ahead(produce(), depth=2, on_stop=lambda: stops.append("stop"))
    assert next(items) == 0
    time.sleep(0.1)  # the worker fills the hand-off and starts on the slow item
    items.close()  # what a cancelled run does to the step's generator
    # close() returned only once the worker had finished its item and stopped
    assert slow_item_done.is_set()
    assert not [t for t in threading.enumerate() if t.name == "ssot-work-ahead"]
    assert stops == ["stop"]
    assert len(produced) <= 6  # the two waiting, the one being handed over, the slow one


def test_on_stop_is_not_called_when_everything_was_consumed() -> None:
    stops: list[str] = []
    assert list(work_ahead(iter(range(3)), on_stop=lambda: stops.append("stop"))) == [0, 1, 2]
    assert stops == []
