"""Deterministic demo data: a small company's operational systems, messy like real ones.

``init_demo`` creates a CRM (SQLite or PostgreSQL), a web shop (SQLite or MariaDB/MySQL) and
billing export files with 365 days of history plus ground-truth files; ``advance_demo`` moves the
simulated clock forward by whole days. See ``docs/demo-data.md`` for the schemas, the mess and the
matching guarantee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.demo.generator import advance_demo, init_demo
    from pipelines.demo.state import DemoError, DemoState, load_state

__all__ = ["DemoError", "DemoState", "advance_demo", "init_demo", "load_state"]


def __getattr__(name: str) -> Any:
    """The package's names, imported when first asked for: a run reading the demo clock
    (``pipelines.demo.clock``) must not load the generator and the database drivers it writes
    with (0.35 s a run)."""
    if name in ("advance_demo", "init_demo"):
        from pipelines.demo import generator

        return getattr(generator, name)
    if name in ("DemoError", "DemoState", "load_state"):
        from pipelines.demo import state

        return getattr(state, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
