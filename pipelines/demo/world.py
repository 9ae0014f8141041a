"""The generator's own bookkeeping: ``out_dir/.generator/world.npz``.

``advance_demo`` never reads the operational systems back (they may be on a server, and reading
millions of rows to change 1% of them would be slow). Instead the generator keeps, as compact
numpy arrays, what it needs to continue the story: the persons, which record belongs to whom and
whether it is still live, the products, the orders whose status will still change, and the
payments and invoice corrections planned for future file days. This is not a source system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo.billing import Corrections, Payments
from pipelines.demo.frame import ArrayRecord
from pipelines.demo.people import Persons
from pipelines.demo.shop import OpenOrders, Products
from pipelines.demo.state import DemoError

Arr = npt.NDArray[Any]

WORLD_DIR = ".generator"
WORLD_FILE = "world.npz"

CRM, SHOP = 0, 1


@dataclass
class Records(ArrayRecord):
    """One row per real person record ever created (junk rows are not tracked here)."""

    system: Arr
    """0 = crm.contacts, 1 = shop.customers."""
    record_num: Arr
    """Contact number (the digits of contact_id) or customer_id."""
    person_id: Arr
    live: Arr
    has_email: Arr
    has_phone: Arr
    created_at: Arr
    weight: Arr
    """How much this customer tends to order (unused for contacts)."""


@dataclass
class World:
    """Everything ``advance_demo`` needs besides ``state.json``."""

    persons: Persons
    records: Records
    accounts: Arr
    """Ids of non-junk accounts (new contacts are attached to these)."""
    products: Products
    junk_customers: Arr
    open_orders: OpenOrders
    payments: Payments
    """Payments planned for file days after the current day."""
    corrections: Corrections
    """Invoice re-exports planned for file days after the current day."""

    def save(self, out_dir: Path) -> None:
        """Write the store (uncompressed: it is rewritten every simulated day)."""
        folder = out_dir / WORLD_DIR
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Arr] = {
            "accounts": self.accounts,
            "junk_customers": self.junk_customers,
            **self.persons.to_arrays("persons"),
            **self.records.to_arrays("records"),
            **self.products.to_arrays("products"),
            **self.open_orders.to_arrays("open_orders"),
            **self.payments.to_arrays("payments"),
            **self.corrections.to_arrays("corrections"),
        }
        tmp = folder / (WORLD_FILE + ".tmp.npz")
        np.savez(tmp, allow_pickle=False, **arrays)
        tmp.replace(folder / WORLD_FILE)

    @staticmethod
    def load(out_dir: Path) -> World:
        """Read the store written by :meth:`save`."""
        path = out_dir / WORLD_DIR / WORLD_FILE
        if not path.is_file():
            raise DemoError(f"{path} is missing; the demo at {out_dir} is incomplete, re-run init")
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return World(
            persons=Persons.from_arrays(arrays, "persons"),
            records=Records.from_arrays(arrays, "records"),
            accounts=arrays["accounts"],
            products=Products.from_arrays(arrays, "products"),
            junk_customers=arrays["junk_customers"],
            open_orders=OpenOrders.from_arrays(arrays, "open_orders"),
            payments=Payments.from_arrays(arrays, "payments"),
            corrections=Corrections.from_arrays(arrays, "corrections"),
        )
