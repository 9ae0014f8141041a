"""Deterministic demo data: a small company's operational systems, messy like real ones.

``init_demo`` creates a CRM (SQLite or PostgreSQL), a web shop (SQLite or MariaDB/MySQL) and
billing export files with 365 days of history plus ground-truth files; ``advance_demo`` moves the
simulated clock forward by whole days. See ``docs/demo-data.md`` for the schemas, the mess and the
matching guarantee.
"""

from __future__ import annotations

from pipelines.demo.generator import advance_demo, init_demo
from pipelines.demo.state import DemoError, DemoState, load_state

__all__ = ["DemoError", "DemoState", "advance_demo", "init_demo", "load_state"]
