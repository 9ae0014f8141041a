"""The persisted state of a demo world (``out_dir/state.json``) and the demo's error type.

The state is deliberately small: the seed and scale that define the world, the simulated day,
where the CRM and shop tables live, and the next free id of every sequence. Everything bulky that
``advance_demo`` needs (who exists, which orders are still moving, which payments are due) lives
in ``out_dir/.generator/world.npz`` (see :mod:`pipelines.demo.world`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pipelines.atomic import write_text_atomically
from pipelines.errors import SsotError

STATE_FILE = "state.json"
STATE_VERSION = 1
PEOPLE_PER_SCALE = 10_000
MIN_PEOPLE = 50


class DemoError(SsotError):
    """The demo generator cannot do what was asked (missing or invalid state, bad arguments)."""


@dataclass
class DemoState:
    """Seed, scale, clock and id sequences of one generated world."""

    seed: int
    scale: float
    day: int = 0
    crm_url: str | None = None
    """PostgreSQL URL (password removed) of the CRM tables; None means ``crm.sqlite``."""
    shop_url: str | None = None
    """MariaDB/MySQL URL (password removed) of the shop tables; None means ``shop.sqlite``."""
    job_title_added: bool = False
    next_person_id: int = 1
    next_junk_identity: int = 0
    next_account_id: int = 1
    next_contact_num: int = 1
    contact_rows: int = 0
    """Rows ever inserted into ``contacts`` (the 1-based row position of the next row - 1)."""
    next_customer_id: int = 1
    next_product_id: int = 1
    next_order_id: int = 1
    next_order_line_id: int = 1
    next_invoice_num: int = 1
    next_payment_num: int = 1
    version: int = STATE_VERSION

    @property
    def people(self) -> int:
        """Real persons created by ``init_demo`` (10,000 x scale)."""
        return people_for_scale(self.scale)

    def save(self, out_dir: Path) -> None:
        """Write ``state.json`` atomically (write + rename) so a crash never leaves half a file."""
        write_text_atomically(
            out_dir / STATE_FILE, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        )


def people_for_scale(scale: float) -> int:
    """Number of real persons at a scale, rejecting scales too small to be meaningful."""
    if not scale > 0:
        raise DemoError(f"scale must be > 0, got {scale!r}")
    people = round(PEOPLE_PER_SCALE * scale)
    if people < MIN_PEOPLE:
        raise DemoError(
            f"scale {scale!r} gives {people} people; use scale >= {MIN_PEOPLE / PEOPLE_PER_SCALE}"
        )
    return people


def load_state(out_dir: Path) -> DemoState:
    """Read ``out_dir/state.json``; raises :class:`DemoError` if it is missing or unreadable."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        raise DemoError(
            f"no demo world at {out_dir}: {path} does not exist; run init_demo({str(out_dir)!r}) "
            "first"
        )
    try:
        raw: Any = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoError(f"{path} is not readable JSON ({exc}); re-run init_demo") from exc
    if not isinstance(raw, dict):
        raise DemoError(f"{path} must hold a JSON object; re-run init_demo")
    known = {f.name for f in fields(DemoState)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DemoError(f"{path} has unknown keys {unknown}; it was written by another version")
    if raw.get("version") != STATE_VERSION:
        raise DemoError(
            f"{path} has version {raw.get('version')!r}, expected {STATE_VERSION}; re-run init_demo"
        )
    try:
        return DemoState(**raw)
    except TypeError as exc:
        raise DemoError(f"{path} is incomplete ({exc}); re-run init_demo") from exc
