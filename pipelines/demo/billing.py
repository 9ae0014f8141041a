"""Billing exports: daily invoice CSVs and payment JSON-lines files under ``out_dir/billing/``.

Billing is a separate system that only exports files. One invoice per valid, non-cancelled order,
issued on the order's day and exported that night. The files carry the classic flat-file mess:
re-exports that correct an earlier row (latest ``exported_at`` wins), payments that arrive in a
later day's file than their ``paid_at`` ("late rows"), broken CSV lines (wrong field count, an
unterminated quote - always the last line of its file so it cannot swallow good rows) and JSON
lines that do not parse.

Everything is *planned* when an invoice is issued (its payments, its correction) and written when
the file day of each event comes, so ``init_demo`` and ``advance_demo`` share one code path; events
planned past the current day wait in the world store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo.clock import DAY, date_label, day_of, day_start, iso_z
from pipelines.demo.frame import ArrayRecord
from pipelines.demo.people import JUNK_IDENTITY_BASE, canonical_email
from pipelines.demo.rates import (
    CORRECTION_RATE,
    JUNK_RATE,
    LATE_PAYMENT_RATE,
    PARTIAL_ONLY_RATE,
    SPLIT_PAYMENT_RATE,
    UNPAID_RATE,
)
from pipelines.demo.shop import CURRENCIES, JUNK_CURRENCIES, BilledOrders
from pipelines.demo.text import S, cat, money, num, take, where
from pipelines.demo.truth import BadRows, bad_rows

Arr = npt.NDArray[Any]

INVOICE_DIR = "billing/invoices"
PAYMENT_DIR = "billing/payments"
INVOICE_HEADER = "invoice_id,order_id,customer_email,amount,currency,issued_at,exported_at\n"
METHODS = ("card", "transfer", "paypal")
CURRENCY_TEXT = (*CURRENCIES, *JUNK_CURRENCIES)
"""Currency codes 0-2 are real, 3+ are junk."""

# invoice defects
OK, NEGATIVE, UNKNOWN_CURRENCY, WRONG_FIELDS, OPEN_QUOTE = range(5)
# payment defects
INVALID_JSON, NULL_INVOICE = 1, 2


@dataclass
class Invoices(ArrayRecord):
    """Issued invoice rows (real and junk) with the amount of their first export."""

    invoice_num: Arr
    order_id: Arr
    email: Arr
    amount_cents: Arr
    export_cents: Arr
    currency: Arr
    issued_at: Arr
    defect: Arr


@dataclass
class Corrections(ArrayRecord):
    """Re-exports of an invoice, due in the file of ``file_day``."""

    invoice_num: Arr
    order_id: Arr
    email: Arr
    amount_cents: Arr
    currency: Arr
    issued_at: Arr
    file_day: Arr


@dataclass
class Payments(ArrayRecord):
    """Payments, due in the file of ``file_day`` (late rows: ``file_day`` after the paid day)."""

    invoice_num: Arr
    amount_cents: Arr
    currency: Arr
    paid_ms: Arr
    method: Arr
    file_day: Arr
    defect: Arr


def _exp(rng: np.random.Generator, mean: float, n: int) -> Arr:
    return np.floor(rng.exponential(mean, n)).astype(np.int64)


def issue_invoices(
    rng: np.random.Generator,
    billed: BilledOrders,
    *,
    window: tuple[int, int],
    first_invoice_num: int,
    first_junk_identity: int,
    min_junk: int,
) -> tuple[Invoices, Corrections, Payments, int]:
    """Invoices for ``billed`` orders plus junk invoices, and their planned corrections/payments.

    Returns the invoices, corrections, payments and the number of junk identities consumed.
    """
    start, end = window
    n = len(billed)
    day_end = day_start(0) + (day_of(billed.ordered_at) + 1) * DAY
    issued = billed.ordered_at + np.floor(rng.random(n) * (day_end - billed.ordered_at)).astype(
        np.int64
    )

    # Junk invoices: negative amounts, unknown currencies, lines that do not parse.
    n_junk = max(min_junk, int(rng.binomial(n, JUNK_RATE)))
    defect = rng.integers(NEGATIVE, OPEN_QUOTE + 1, n_junk).astype(np.int8)
    defect[: min(n_junk, 4)] = [NEGATIVE, UNKNOWN_CURRENCY, WRONG_FIELDS, OPEN_QUOTE][
        : min(n_junk, 4)
    ]
    identity = JUNK_IDENTITY_BASE + first_junk_identity + np.arange(n_junk, dtype=np.int64)
    size = n_junk
    junk_email = canonical_email(
        rng.integers(0, 100, size),
        rng.integers(0, 100, size),
        rng.integers(0, 5, size),
        np.zeros(size, np.int8),
        identity,
    )
    junk_amount = rng.integers(100, 50_000, n_junk)
    junk_amount[defect == NEGATIVE] *= -1
    junk_currency = rng.integers(0, len(CURRENCIES), n_junk)
    junk_currency[defect == UNKNOWN_CURRENCY] = len(CURRENCIES) + rng.integers(
        0, len(JUNK_CURRENCIES), int((defect == UNKNOWN_CURRENCY).sum())
    )
    junk_issued = rng.integers(start, end, n_junk)

    all_issued = np.concatenate([issued, junk_issued])
    order = np.argsort(all_issued, kind="stable")
    rank = np.empty(n + n_junk, dtype=np.int64)
    rank[order] = np.arange(n + n_junk)
    nums = first_invoice_num + rank
    amount = np.concatenate([billed.total_cents, junk_amount])

    # ~1% of real invoices are corrected in a later file; most first exports had a wrong amount.
    corrected = np.flatnonzero(rng.random(n) < CORRECTION_RATE)
    export = amount.copy()
    wrong = corrected[rng.random(len(corrected)) < 0.8]
    delta = np.maximum(1, np.rint(amount[wrong] * rng.uniform(0.02, 0.2, len(wrong))))
    export[wrong] = amount[wrong] + np.where(rng.random(len(wrong)) < 0.5, -1, 1) * delta
    export[wrong] = np.where(export[wrong] <= 0, amount[wrong] + delta, export[wrong])

    invoices = Invoices(
        invoice_num=nums,
        order_id=np.concatenate([billed.order_id, np.full(n_junk, -1, np.int64)]),
        email=np.concatenate([np.asarray(billed.email, S), junk_email]),
        amount_cents=amount,
        export_cents=export,
        currency=np.concatenate([billed.currency, junk_currency]).astype(np.int8),
        issued_at=all_issued,
        defect=np.concatenate([np.zeros(n, np.int8), defect]),
    ).take(order)

    corrections = Corrections(
        invoice_num=nums[corrected],
        order_id=billed.order_id[corrected],
        email=np.asarray(billed.email, S)[corrected],
        amount_cents=billed.total_cents[corrected],
        currency=billed.currency[corrected],
        issued_at=issued[corrected],
        file_day=day_of(issued[corrected]) + rng.integers(1, 8, len(corrected)),
    )
    payments = _plan_payments(rng, nums[:n], billed.total_cents, billed.currency, issued)
    return invoices, corrections, payments, n_junk


def _plan_payments(
    rng: np.random.Generator, nums: Arr, amount: Arr, currency: Arr, issued: Arr
) -> Payments:
    """Most invoices paid once, some in two parts, some only partly, some never."""
    n = len(nums)
    u = rng.random(n)
    unpaid = u < UNPAID_RATE
    partial_only = (u >= UNPAID_RATE) & (u < UNPAID_RATE + PARTIAL_ONLY_RATE)
    split = (u >= UNPAID_RATE + PARTIAL_ONLY_RATE) & (
        u < UNPAID_RATE + PARTIAL_ONLY_RATE + SPLIT_PAYMENT_RATE
    )
    two_parts = (partial_only | split) & (amount >= 2)
    first_share = np.rint(amount * rng.uniform(0.2, 0.8, n)).astype(np.int64)
    first_amount = np.where(two_parts, np.clip(first_share, 1, np.maximum(amount - 1, 1)), amount)
    first_time = issued + 60 + _exp(rng, 1.5 * DAY, n)
    second_time = first_time + DAY + _exp(rng, 5 * DAY, n)

    pays_first = ~unpaid
    pays_second = split & two_parts
    inv = np.concatenate([nums[pays_first], nums[pays_second]])
    cents = np.concatenate([first_amount[pays_first], (amount - first_amount)[pays_second]])
    seconds = np.concatenate([first_time[pays_first], second_time[pays_second]])
    cur = np.concatenate([currency[pays_first], currency[pays_second]])
    m = len(inv)
    paid_ms = seconds * 1000 + rng.integers(0, 1000, m)
    late = rng.random(m) < LATE_PAYMENT_RATE
    file_day = day_of(seconds) + np.where(late, rng.integers(1, 6, m), 0)
    method = rng.choice(len(METHODS), size=m, p=[0.6, 0.25, 0.15]).astype(np.int8)
    return Payments(
        inv, cents, cur.astype(np.int8), paid_ms, method, file_day, np.zeros(m, np.int8)
    )


def junk_payments(rng: np.random.Generator, days: Arr, n_junk: int) -> Payments:
    """Junk payment rows spread over ``days``: unparsable lines and null invoice ids."""
    day = days[rng.integers(0, len(days), n_junk)]
    defect = np.where(rng.random(n_junk) < 0.5, INVALID_JSON, NULL_INVOICE).astype(np.int8)
    defect[: min(n_junk, 2)] = [INVALID_JSON, NULL_INVOICE][: min(n_junk, 2)]
    seconds = day_start(0) + day * DAY + rng.integers(0, DAY, n_junk)
    return Payments(
        invoice_num=np.zeros(n_junk, np.int64),
        amount_cents=rng.integers(100, 20_000, n_junk),
        currency=rng.integers(0, len(CURRENCIES), n_junk).astype(np.int8),
        paid_ms=seconds * 1000 + rng.integers(0, 1000, n_junk),
        method=rng.integers(0, len(METHODS), n_junk).astype(np.int8),
        file_day=day,
        defect=defect,
    )


FILE_CHUNK_ROWS = 200_000
"""Export lines are rendered for at most this many rows at a time (bounded memory at scale 100)."""


def _day_groups(file_day: Arr, days: Arr) -> list[list[tuple[int, int, int]]]:
    """(day, start, stop) row ranges of sorted ``file_day`` for each day, grouped into chunks."""
    starts = np.searchsorted(file_day, days, side="left")
    stops = np.searchsorted(file_day, days, side="right")
    groups: list[list[tuple[int, int, int]]] = [[]]
    rows = 0
    for d, a, b in zip(days.tolist(), starts.tolist(), stops.tolist(), strict=True):
        if rows and rows + (b - a) > FILE_CHUNK_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append((d, a, b))
        rows += b - a
    return groups


def _line_numbers(file_day: Arr, first: int) -> Arr:
    """1-based line number of each row of sorted ``file_day`` within its file (``first`` = 1st)."""
    n = len(file_day)
    if n == 0:
        return np.zeros(0, np.int64)
    new_file = np.r_[True, file_day[1:] != file_day[:-1]]
    file_start = np.maximum.accumulate(np.where(new_file, np.arange(n), 0))
    return np.arange(n) - file_start + first


def write_invoice_files(
    out_dir: Path, days: Arr, invoices: Invoices, corrections: Corrections
) -> tuple[list[BadRows], int]:
    """One CSV per day in ``days``: that day's invoices, then due corrections; returns junk rows.

    ``invoices`` must all be issued on one of ``days``; ``corrections`` all due on one of them.
    """
    file_day = np.concatenate([day_of(invoices.issued_at), corrections.file_day])
    kind = np.concatenate(
        [np.where(invoices.defect == OPEN_QUOTE, 2, 0), np.ones(len(corrections), np.int64)]
    )
    nums = np.concatenate([invoices.invoice_num, corrections.invoice_num])
    defect = np.concatenate([invoices.defect, np.zeros(len(corrections), np.int8)])
    # At most one unterminated quote per file, and it is the file's last line (kind 2 sorts
    # last): extra ones in the same file become wrong-field-count lines.
    quoted = np.flatnonzero(kind == 2)
    _, first_in_day = np.unique(file_day[quoted], return_index=True)
    demote = np.setdiff1d(quoted, quoted[first_in_day])
    kind[demote] = 0
    defect[demote] = WRONG_FIELDS

    order = np.lexsort((nums, kind, file_day))
    file_day, defect, nums = file_day[order], defect[order], nums[order]
    order_id = np.concatenate([invoices.order_id, corrections.order_id])[order]
    email = np.concatenate([invoices.email, corrections.email])[order]
    amount = np.concatenate([invoices.export_cents, corrections.amount_cents])[order]
    currency = np.concatenate([invoices.currency, corrections.currency])[order]
    issued = np.concatenate([invoices.issued_at, corrections.issued_at])[order]
    del order, kind

    folder = out_dir / INVOICE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for group in _day_groups(file_day, days):
        a, b = group[0][1], group[-1][2]
        line = _invoice_lines(
            nums[a:b],
            order_id[a:b],
            email[a:b],
            amount[a:b],
            currency[a:b],
            issued[a:b],
            file_day[a:b],
            defect[a:b],
        )
        for day, start, stop in group:
            text = "".join(line[start - a : stop - a].tolist())
            path = folder / f"invoices_{date_label(day)}.csv"
            path.write_text(INVOICE_HEADER + text, "utf-8", newline="")

    line_no = _line_numbers(file_day, 2)  # line 1 is the header
    broken = np.flatnonzero((defect == WRONG_FIELDS) | (defect == OPEN_QUOTE))
    broken_keys = cat(
        "billing/invoices/invoices_",
        _date_labels(file_day[broken]),
        ".csv:",
        num(line_no[broken]),
    )
    neg = np.flatnonzero(defect == NEGATIVE)
    unknown = np.flatnonzero(defect == UNKNOWN_CURRENCY)
    bad = [
        bad_rows("billing", "invoices", _invoice_id(nums[neg]), "negative_amount"),
        bad_rows("billing", "invoices", _invoice_id(nums[unknown]), "unknown_currency"),
        bad_rows("billing", "invoices", broken_keys, "broken_csv_line"),
    ]
    return bad, len(nums)


def _invoice_id(nums: Arr) -> Arr:
    return cat("INV-", num(nums, 7))


def _invoice_lines(
    nums: Arr,
    order_id: Arr,
    email: Arr,
    amount: Arr,
    currency: Arr,
    issued: Arr,
    file_day: Arr,
    defect: Arr,
) -> Arr:
    """CSV lines (with newline) of invoice rows, broken ones broken as their defect says."""
    inv_id = _invoice_id(nums)
    order_text = where(order_id < 0, "", num(np.maximum(order_id, 0)))
    head = cat(inv_id, ",", order_text, ",")
    amount_text = money(amount)
    tail = cat(
        ",",
        take(CURRENCY_TEXT, currency),
        ",",
        iso_z(issued),
        ",",
        iso_z(day_start(0) + file_day * DAY + DAY - 1),
    )
    line = cat(head, email, ",", amount_text, tail, "\n")
    wrong = np.flatnonzero(defect == WRONG_FIELDS)
    if len(wrong):
        short = cat(head[wrong], email[wrong], ",", amount_text[wrong], "\n")
        extra = cat(head[wrong], email[wrong], ",", amount_text[wrong], tail[wrong], ",MANUAL\n")
        line[wrong] = where(nums[wrong] % 2 == 0, short, extra)
    quote = np.flatnonzero(defect == OPEN_QUOTE)
    if len(quote):
        line[quote] = cat(
            head[quote], '"', email[quote], ",", amount_text[quote], tail[quote], "\n"
        )
    return line


def _date_labels(days: Arr) -> Arr:
    """'YYYY-MM-DD' of simulated day numbers, vectorised."""
    epoch_days = np.asarray(days, np.int64) + day_start(0) // DAY
    return np.datetime_as_string(epoch_days.astype("datetime64[D]")).astype(S)


def write_payment_files(
    out_dir: Path, days: Arr, payments: Payments, first_payment_num: int
) -> tuple[list[BadRows], int]:
    """One JSON-lines file per day in ``days``; payment ids are assigned in file order.

    Returns the junk rows and the number of payment ids consumed.
    """
    order = np.lexsort((payments.invoice_num, payments.paid_ms, payments.file_day))
    p = payments.take(order)
    nums = first_payment_num + np.arange(len(p), dtype=np.int64)
    folder = out_dir / PAYMENT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for group in _day_groups(p.file_day, days):
        a, b = group[0][1], group[-1][2]
        line = _payment_lines(nums[a:b], p.take(slice(a, b)))
        for day, start, stop in group:
            text = "".join(line[start - a : stop - a].tolist())
            path = folder / f"payments_{date_label(day)}.jsonl"
            path.write_text(text, "utf-8", newline="")

    line_no = _line_numbers(p.file_day, 1)
    bad_lines = np.flatnonzero(p.defect == INVALID_JSON)
    keys = cat(
        "billing/payments/payments_",
        _date_labels(p.file_day[bad_lines]),
        ".jsonl:",
        num(line_no[bad_lines]),
    )
    null_inv = np.flatnonzero(p.defect == NULL_INVOICE)
    bad = [
        bad_rows("billing", "payments", keys, "invalid_json"),
        bad_rows("billing", "payments", cat("PAY-", num(nums[null_inv], 7)), "null_invoice_id"),
    ]
    return bad, len(p)


def _payment_lines(nums: Arr, p: Payments) -> Arr:
    """JSON lines (with newline) of payment rows; junk rows broken as their defect says."""
    head = cat('{"payment_id": "PAY-', num(nums, 7), '", "invoice_id": ')
    inv = cat('"INV-', num(p.invoice_num, 7), '"')
    inv[p.defect == NULL_INVOICE] = "null"
    amount = money(p.amount_cents)
    line = cat(
        head,
        inv,
        ', "amount": ',
        amount,
        ', "currency": "',
        take(CURRENCIES, p.currency),
        '", "paid_at": ',
        num(p.paid_ms),
        ', "method": "',
        take(METHODS, p.method),
        '"}\n',
    )
    invalid = np.flatnonzero(p.defect == INVALID_JSON)
    if len(invalid):
        line[invalid] = cat(
            head[invalid], inv[invalid], ', "amount": ', amount[invalid], ', "curr\n'
        )
    return line
