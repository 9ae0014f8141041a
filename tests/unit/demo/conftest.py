"""Fixtures of the demo generator's unit tests: small worlds generated once per test module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.demo import init_demo

SMALL = 0.05
"""Scale of the worlds the tests generate: 500 people, ~2,500 orders, generated in well under 1 s."""


@pytest.fixture(scope="module")
def make_world(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_world(seed=3, scale=0.05)`` -> a fresh demo directory initialised with those."""

    def make(*, seed: int = 3, scale: float = SMALL) -> Path:
        out = tmp_path_factory.mktemp("demo")
        init_demo(out, scale=scale, seed=seed)
        return out

    return make
