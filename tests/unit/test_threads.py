"""work_ahead: a worker thread produces (reads a source, builds models) while the caller consumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pipelines.threads import _wait_for, work_ahead


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


def test_a_consumer_that_stops_waits_for_the_item_in_progress_and_no_more() -> None:
    produced: list[int] = []
    slow_started = threading.Event()
    slow_done = threading.Event()

    def produce() -> Iterator[int]:
        for i in range(1_000_000):
            if i == 3:  # the item in progress when the consumer stops: it takes a while
                slow_started.set()
                time.sleep(0.3)
                slow_done.set()
            produced.append(i)
            yield i

    items = work_ahead(produce(), depth=2)
    assert next(items) == 0
    assert slow_started.wait(5)  # 1 and 2 wait in the hand-off, 3 is being produced
    items.close()  # what a cancelled run does to the step's generator
    # close() returned only once the worker had finished its item, and it made no other
    assert slow_done.is_set()
    assert not [t for t in threading.enumerate() if t.name == "ssot-work-ahead"]
    assert produced == [0, 1, 2, 3]


class _Worker:
    """A thread stand-in whose join() is interrupted as told."""

    def __init__(self, interrupts: int, alive_for: int) -> None:
        self.interrupts, self.alive_for, self.joins = interrupts, alive_for, 0

    def is_alive(self) -> bool:
        return self.joins < self.alive_for

    def join(self, timeout: float | None = None) -> None:
        self.joins += 1
        if self.interrupts:
            self.interrupts -= 1
            raise KeyboardInterrupt


def test_one_interrupt_while_waiting_is_raised_after_the_worker_stopped() -> None:
    worker = _Worker(interrupts=1, alive_for=3)
    with pytest.raises(KeyboardInterrupt):
        _wait_for(worker, None)  # type: ignore[arg-type]
    assert worker.joins == 3  # it kept waiting until the worker was done


def test_a_second_interrupt_is_raised_at_once() -> None:
    worker = _Worker(interrupts=2, alive_for=10)
    with pytest.raises(KeyboardInterrupt):
        _wait_for(worker, None)  # type: ignore[arg-type]
    assert worker.joins == 2


def test_the_wait_has_one_deadline_in_all() -> None:
    stuck = threading.Thread(target=time.sleep, args=(3,), daemon=True)
    stuck.start()
    started = time.monotonic()
    _wait_for(stuck, 0.2)
    assert time.monotonic() - started < 1.0 and stuck.is_alive()


def test_a_consumer_that_stops_closes_the_generator_in_the_worker() -> None:
    cleaned_in: list[str] = []

    def produce() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:  # what a generator that holds something (a pool, a cursor) releases
            cleaned_in.append(threading.current_thread().name)

    items = work_ahead(produce(), depth=1, name="ssot-test-worker")
    assert next(items) == 0
    items.close()
    assert cleaned_in == ["ssot-test-worker"]
