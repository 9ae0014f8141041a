"""Ground-truth files under ``out_dir/truth/``.

* ``people.csv`` - ``person_id,system,table,record_id`` for every live, non-junk person record;
* ``products.csv`` - ``product_key,product_id`` (duplicate listings share a key);
* ``bad_records.csv`` - ``system,table,record_key,defect`` for every junk row ever written;
* ``summary.json`` - counts per table and per kind of person.

They are what a warehouse built on the demo sources should be able to reproduce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo.text import S, cat, num, strs, where

Arr = npt.NDArray[Any]

TRUTH_DIR = "truth"
BAD_HEADER = "system,table,record_key,defect\n"


@dataclass
class BadRows:
    """Junk rows of one table: their record keys and defect codes."""

    system: str
    table: str
    keys: Arr
    defects: Arr


def bad_rows(system: str, table: str, keys: Arr, defects: Arr | str) -> BadRows:
    """A :class:`BadRows` with ``defects`` broadcast when a single code is given."""
    keys = np.asarray(keys, dtype=S)
    codes = strs([defects] * len(keys)) if isinstance(defects, str) else np.asarray(defects, S)
    return BadRows(system, table, keys, codes)


def contact_id(numbers: Arr) -> Arr:
    """CRM contact ids: 'C' + 7 digits."""
    return cat("C", num(numbers, 7))


def write_people(out_dir: Path, system: Arr, record_num: Arr, person_id: Arr, live: Arr) -> int:
    """Rewrite ``people.csv`` from the live records; returns the number of rows."""
    keep = np.flatnonzero(live)
    sys_, rec, pid = system[keep], record_num[keep], person_id[keep]
    order = np.lexsort((rec, sys_, pid))
    sys_, rec, pid = sys_[order], rec[order], pid[order]
    is_crm = sys_ == 0
    record_id = where(is_crm, contact_id(np.where(is_crm, rec, 0)), num(rec))
    lines = cat(
        num(pid), ",", where(is_crm, "crm,contacts", "shop,customers"), ",", record_id, "\n"
    )
    path = out_dir / TRUTH_DIR / "people.csv"
    path.write_text("person_id,system,table,record_id\n" + "".join(lines.tolist()), "utf-8")
    return len(keep)


def write_products(out_dir: Path, product_key: Arr, product_id: Arr) -> None:
    """``products.csv``: the real product behind each (non-junk) listing."""
    order = np.lexsort((product_id, product_key))
    lines = cat(num(product_key[order]), ",", num(product_id[order]), "\n")
    path = out_dir / TRUTH_DIR / "products.csv"
    path.write_text("product_key,product_id\n" + "".join(lines.tolist()), "utf-8")


def append_bad_records(out_dir: Path, rows: list[BadRows], *, fresh: bool) -> int:
    """Append junk rows to ``bad_records.csv`` (creating it when ``fresh``); returns the count."""
    path = out_dir / TRUTH_DIR / "bad_records.csv"
    text: list[str] = []
    count = 0
    for r in rows:
        if len(r.keys) == 0:
            continue
        prefix = f"{r.system},{r.table},"
        text.extend(cat(prefix, r.keys, ",", r.defects, "\n").tolist())
        count += len(r.keys)
    with path.open("w" if fresh else "a", encoding="utf-8", newline="") as fh:
        if fresh:
            fh.write(BAD_HEADER)
        fh.write("".join(text))
    return count


def read_summary(out_dir: Path) -> dict[str, Any]:
    """The current ``summary.json`` (empty dict when there is none yet)."""
    path = out_dir / TRUTH_DIR / "summary.json"
    if not path.is_file():
        return {}
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` with sorted keys (byte-identical for identical worlds)."""
    path = out_dir / TRUTH_DIR / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", "utf-8")
