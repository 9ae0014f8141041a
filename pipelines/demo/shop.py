"""The web shop: ``products``, ``customers``, ``orders`` and ``order_lines``.

A different kind of mess than the CRM: naive UTC timestamps, hard deletes (customer ids become
gaps, their orders stay), duplicate product listings whose SKUs differ only in formatting, and
status/currency values typed by hand now and then.

Timestamp columns (kind ``datetime``) travel as epoch seconds and are rendered by the writer one
insert batch at a time, which keeps millions of orders from sitting in memory as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo import vocab
from pipelines.demo.frame import ArrayRecord, Frame
from pipelines.demo.people import canonical_email, render_email, render_names, render_phone
from pipelines.demo.rates import (
    CANCEL_RATE,
    DUPLICATE_LISTING_RATE,
    EXTRA_LINES_MEAN,
    JUNK_RATE,
    MESSY_TEXT_RATE,
    REFUND_RATE,
)
from pipelines.demo.text import S, cat, num, strs, take, where
from pipelines.demo.truth import BadRows, bad_rows
from pipelines.demo.writers import Column, TableSpec

Arr = npt.NDArray[Any]

PRODUCTS = TableSpec(
    "products",
    (
        Column("product_id", "int"),
        Column("sku", "text"),
        Column("name", "text"),
        Column("category", "text"),
        Column("list_price", "money"),
        Column("currency", "text"),
        Column("updated_at", "datetime"),
    ),
    primary_key="product_id",
    cursor="updated_at",
)
CUSTOMERS = TableSpec(
    "customers",
    (
        Column("customer_id", "int"),
        Column("email", "text"),
        Column("first_name", "text"),
        Column("last_name", "text"),
        Column("phone", "text"),
        Column("created_at", "datetime"),
        Column("updated_at", "datetime"),
    ),
    primary_key="customer_id",
    cursor="updated_at",
)
ORDERS = TableSpec(
    "orders",
    (
        Column("order_id", "int"),
        Column("customer_id", "int"),
        Column("ordered_at", "datetime"),
        Column("status", "text"),
        Column("currency", "text"),
        Column("updated_at", "datetime"),
    ),
    primary_key="order_id",
    cursor="updated_at",
)
ORDER_LINES = TableSpec(
    "order_lines",
    (
        Column("order_line_id", "int"),
        Column("order_id", "int"),
        Column("product_id", "int"),
        Column("quantity", "int"),
        Column("unit_price", "money"),
    ),
    primary_key="order_line_id",
)

STATUSES = ("placed", "paid", "shipped", "cancelled", "refunded")
PLACED, PAID, SHIPPED, CANCELLED, REFUNDED = range(5)
CURRENCIES = ("USD", "EUR", "GBP")
FX_FROM_USD = np.array([1.0, 0.92, 0.79])
JUNK_CURRENCIES = ("XXX", "US$", "EURO", "$")
NEVER = np.int64(2**62)
"""Milestone time of a milestone that never happens."""

HOUR = 3_600
DAY = 86_400


def messy(rng: np.random.Generator, codes: Arr, canonical: tuple[str, ...]) -> Arr:
    """Canonical values, ~5% of them re-cased or padded ('Shipped', ' paid', 'Eur', ' usd')."""
    table: list[str] = []
    for value in canonical:
        table.extend(
            [value, value.capitalize(), " " + value.lower(), value.swapcase(), value + " "]
        )
    n = len(codes)
    variant = np.where(rng.random(n) < MESSY_TEXT_RATE, rng.integers(1, 5, n), 0)
    return take(table, np.asarray(codes, np.int64) * 5 + variant)


# --- products -------------------------------------------------------------------------------


@dataclass
class Products(ArrayRecord):
    """Listings as the generator needs them later: price, real product key, popularity."""

    product_id: Arr
    price_cents: Arr
    key: Arr
    """Real product behind the listing (0 for junk listings)."""
    popularity: Arr


_LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _sku_parts(key: Arr) -> tuple[Arr, Arr]:
    """Letters and digits of a product's canonical SKU; injective in the key."""
    code = (np.asarray(key, np.int64) * 7919 + 13) % 6_760_000
    letters = code // 10_000
    return cat(take(_LETTERS, letters // 26), take(_LETTERS, letters % 26)), num(code % 10_000, 4)


def make_products(
    rng: np.random.Generator, first_id: int, n: int, start: int, end: int
) -> tuple[Frame, Products, BadRows]:
    """Listings: real products, ~2% duplicate listings with reformatted SKUs, a few junk ones."""
    n_junk = max(1, int(rng.binomial(n, JUNK_RATE)))
    n_dup = max(1, round(n * DUPLICATE_LISTING_RATE))
    n_real = n - n_junk - n_dup
    real_keys = np.arange(1, n_real + 1, dtype=np.int64)
    dup_keys = np.sort(rng.choice(real_keys, size=n_dup, replace=False))
    junk_sku_keys = np.arange(n_real + 1, n_real + 1 + n_junk, dtype=np.int64)
    sku_key = np.concatenate([real_keys, dup_keys, junk_sku_keys])
    key = np.concatenate([real_keys, dup_keys, np.zeros(n_junk, np.int64)])
    kind = np.concatenate([np.zeros(n_real), np.ones(n_dup), np.full(n_junk, 2)]).astype(np.int8)

    letters, digits = _sku_parts(sku_key)
    canonical = cat(letters, "-", digits)
    dup_variant = rng.integers(0, 5, n)
    variants = [
        cat(np.strings.lower(letters), "-", digits),
        cat(letters, digits),
        cat(" ", np.strings.lower(letters), digits, " "),
        cat(letters, " ", digits),
        cat(np.strings.capitalize(letters), "-", digits, " "),
    ]
    sku = canonical.copy()
    for v, text in enumerate(variants):
        mask = (kind == 1) & (dup_variant == v)
        sku[mask] = text[mask]

    # Per real product attributes, shared by its duplicate listings.
    name_of = cat(
        take(vocab.PRODUCT_ADJECTIVES, rng.integers(0, len(vocab.PRODUCT_ADJECTIVES), n_real + 1)),
        " ",
        take(vocab.PRODUCT_NOUNS, rng.integers(0, len(vocab.PRODUCT_NOUNS), n_real + 1)),
    )
    category_of = rng.integers(0, len(vocab.CATEGORIES), n_real + 1)
    price_of = np.maximum(99, np.rint(np.exp(rng.normal(3.3, 0.8, n_real + 1)) * 100)).astype(
        np.int64
    )
    name = name_of[key]
    name[kind == 1] = cat(name[kind == 1], " (listing 2)")
    price = price_of[key]
    repriced = (kind == 1) & (rng.random(n) < 0.3)
    price[repriced] = np.rint(price[repriced] * rng.uniform(0.9, 1.1, int(repriced.sum())))
    price[kind == 2] = -rng.integers(1, 5_000, n_junk)  # junk: a negative list price
    popularity = np.where(kind == 2, 0.0, rng.lognormal(0.0, 1.0, n))

    perm = rng.permutation(n)  # listings appear in random id order
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    updated = rng.integers(start, end, n)
    frame = Frame(
        {
            "product_id": ids,
            "sku": sku[perm],
            "name": name[perm],
            "category": take(vocab.CATEGORIES, category_of[key][perm]),
            "list_price": price[perm],
            "currency": strs(["USD"] * n),
            "updated_at": np.asarray(updated, np.int64),
        }
    )
    store = Products(ids, price[perm], key[perm], popularity[perm])
    bad = bad_rows("shop", "products", num(ids[kind[perm] == 2]), "negative_amount")
    return frame, store, bad


# --- customers ------------------------------------------------------------------------------

_MALFORMED = 4


def customers_frame(
    rng: np.random.Generator,
    *,
    customer_id: Arr,
    first: Arr,
    last: Arr,
    domain: Arr,
    local_fmt: Arr,
    identity: Arr,
    family: Arr,
    has_email: Arr,
    has_phone: Arr,
    created: Arr,
    updated: Arr,
    malformed: Arr,
) -> Frame:
    """Render customer rows; ``malformed`` rows (junk) get a broken e-mail address."""
    first_name, last_name = render_names(rng, first, last, "shop")
    canonical = canonical_email(first, last, domain, local_fmt, identity)
    email = render_email(rng, canonical, "shop")
    bad = np.flatnonzero(malformed)
    if len(bad):
        broken_kind = rng.integers(0, _MALFORMED, len(bad))
        raw = canonical[bad]
        at_local = np.strings.partition(raw, np.array("@", dtype=S))
        broken = [
            np.strings.replace(raw, "@", "@@"),
            np.strings.replace(raw, "@", "."),
            cat(at_local[0], "@"),
            cat(take(vocab.FIRST_NAMES, first[bad]), " ", at_local[0], "@", at_local[2]),
        ]
        values = broken[0].copy()
        for k in range(1, _MALFORMED):
            values[broken_kind == k] = broken[k][broken_kind == k]
        email[bad] = values
    phone = render_phone(rng, identity, family)
    email[~has_email] = ""
    phone[~has_phone] = ""
    return Frame(
        {
            "customer_id": np.asarray(customer_id, np.int64),
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "phone": phone,
            "created_at": np.asarray(created, np.int64),
            "updated_at": np.asarray(updated, np.int64),
        },
        {"email": ~has_email, "phone": ~has_phone},
    )


def customer_update_frame(
    rng: np.random.Generator,
    *,
    customer_id: Arr,
    first: Arr,
    last: Arr,
    identity: Arr,
    family: Arr,
    has_phone: Arr,
    updated: Arr,
) -> Frame:
    """An edit of existing customers: names re-typed, phone re-formatted."""
    first_name, last_name = render_names(rng, first, last, "shop")
    phone = render_phone(rng, identity, family)
    phone[~has_phone] = ""
    return Frame(
        {
            "customer_id": np.asarray(customer_id, np.int64),
            "first_name": first_name,
            "last_name": last_name,
            "phone": phone,
            "updated_at": np.asarray(updated, np.int64),
        },
        {"phone": ~has_phone},
    )


# --- orders ---------------------------------------------------------------------------------


@dataclass
class Buyers(ArrayRecord):
    """Customers who may order in a window: their active span, appetite, currency, e-mail."""

    customer_id: Arr
    start: Arr
    end: Arr
    weight: Arr
    currency: Arr
    email: Arr


@dataclass
class OpenOrders(ArrayRecord):
    """Orders with a status change still ahead (``NEVER`` = that change does not happen)."""

    order_id: Arr
    paid_at: Arr
    shipped_at: Arr
    cancelled_at: Arr
    refunded_at: Arr

    def milestones(self) -> Arr:
        """(n, 4) times of the paid, shipped, cancelled and refunded milestones."""
        return np.stack([self.paid_at, self.shipped_at, self.cancelled_at, self.refunded_at], 1)


_MILESTONE_STATUS = np.array([PAID, SHIPPED, CANCELLED, REFUNDED], dtype=np.int8)


@dataclass
class BilledOrders(ArrayRecord):
    """Valid, non-cancelled orders: what billing invoices."""

    order_id: Arr
    ordered_at: Arr
    total_cents: Arr
    currency: Arr
    email: Arr


@dataclass
class OrderBatch:
    """Everything one round of order creation produced."""

    orders: Frame
    lines: Frame
    open: OpenOrders
    billed: BilledOrders
    bad: list[BadRows]


def _exp(rng: np.random.Generator, mean: float, n: int) -> Arr:
    return np.floor(rng.exponential(mean, n)).astype(np.int64)


def make_orders(
    rng: np.random.Generator,
    *,
    buyers: Buyers,
    n: int,
    junk_customers: Arr,
    products: Products,
    window: tuple[int, int],
    first_order_id: int,
    first_line_id: int,
    min_junk: int,
) -> OrderBatch:
    """Orders of ``buyers`` in ``window`` with lines, their status as of the window's end.

    Each order gets its whole future at birth (paid, shipped, maybe refunded; or cancelled), so
    later days only have to look up which milestones fall on them.
    """
    start, end = window
    span = np.maximum(buyers.end - buyers.start, 1)
    p = buyers.weight * span
    # Inverse-CDF sampling with sorted uniforms: the same distribution as ``rng.choice(p=...)``
    # but cache-friendly (5M draws over 600k buyers is 6x faster). The picks come out sorted by
    # buyer, which does not matter: orders are re-sorted by time below.
    cdf = np.cumsum(p)
    pick = np.searchsorted(cdf / cdf[-1], np.sort(rng.random(n)), side="right")
    pick = np.minimum(pick, len(buyers) - 1)
    ordered = buyers.start[pick] + np.floor(rng.random(n) * span[pick]).astype(np.int64)
    currency = np.where(
        rng.random(n) < 0.9, buyers.currency[pick], rng.integers(0, len(CURRENCIES), n)
    ).astype(np.int8)
    cancelled = rng.random(n) < CANCEL_RATE
    cancelled_at = np.where(cancelled, ordered + 60 + _exp(rng, 2 * HOUR, n), NEVER)
    paid_at = np.where(cancelled, NEVER, ordered + 60 + _exp(rng, 3 * HOUR, n))
    shipped_at = np.where(cancelled, NEVER, paid_at + 6 * HOUR + _exp(rng, 30 * HOUR, n))
    refunded = ~cancelled & (rng.random(n) < REFUND_RATE)
    refunded_at = np.where(refunded, shipped_at + DAY + _exp(rng, 6 * DAY, n), NEVER)
    milestones = np.stack([paid_at, shipped_at, cancelled_at, refunded_at], 1)
    status, status_time = status_at(milestones, ordered, end)

    n_junk = max(min_junk, int(rng.binomial(n, JUNK_RATE))) if len(junk_customers) else 0
    junk_time = rng.integers(start, end, n_junk)
    junk_customer = junk_customers[rng.integers(0, max(len(junk_customers), 1), n_junk)]

    # Ids ascend with ordered_at; junk orders are interleaved like any other order.
    all_time = np.concatenate([ordered, junk_time])
    order = np.argsort(all_time, kind="stable")
    rank = np.empty(n + n_junk, dtype=np.int64)
    rank[order] = np.arange(n + n_junk)
    ids = first_order_id + rank
    is_junk = np.arange(n + n_junk) >= n

    status_text = messy(rng, np.concatenate([status, np.zeros(n_junk, np.int8)]), STATUSES)
    currency_text = messy(rng, np.concatenate([currency, np.zeros(n_junk, np.int8)]), CURRENCIES)
    currency_text[is_junk] = take(JUNK_CURRENCIES, rng.integers(0, len(JUNK_CURRENCIES), n_junk))
    orders = Frame(
        {
            "order_id": ids[order],
            "customer_id": np.concatenate([buyers.customer_id[pick], junk_customer])[order],
            "ordered_at": np.asarray(all_time[order], np.int64),
            "status": status_text[order],
            "currency": currency_text[order],
            "updated_at": np.asarray(np.concatenate([status_time, junk_time])[order], np.int64),
        }
    )

    lines, totals, bad_lines = _lines(
        rng, ids[:n], currency, products, first_line_id, min_junk=min_junk
    )
    is_open = ((milestones >= end) & (milestones < NEVER)).any(axis=1)
    open_orders = OpenOrders(
        ids[:n][is_open],
        paid_at[is_open],
        shipped_at[is_open],
        cancelled_at[is_open],
        refunded_at[is_open],
    )
    keep = np.flatnonzero(~cancelled)
    keep = keep[np.argsort(ids[keep], kind="stable")]
    billed = BilledOrders(
        ids[keep], ordered[keep], totals[keep], currency[keep], buyers.email[pick][keep]
    )
    junk_ids = np.sort(ids[n:])
    bad = [bad_rows("shop", "orders", num(junk_ids), "unknown_currency"), bad_lines]
    return OrderBatch(orders, lines, open_orders, billed, bad)


def status_at(milestones: Arr, ordered: Arr, end: int) -> tuple[Arr, Arr]:
    """Status code and the time it was reached, as of ``end`` (exclusive)."""
    reached = np.where(milestones < end, milestones, -1)
    latest = reached.argmax(axis=1)
    latest_time = reached.max(axis=1)
    has = latest_time >= 0
    status = np.where(has, _MILESTONE_STATUS[latest], PLACED).astype(np.int8)
    return status, np.where(has, latest_time, ordered)


def progress_orders(
    rng: np.random.Generator, open_orders: OpenOrders, window: tuple[int, int]
) -> tuple[Frame, OpenOrders]:
    """Status updates whose milestone falls in ``window``; returns them and what stays open."""
    start, end = window
    milestones = open_orders.milestones()
    reached = np.where(milestones < end, milestones, -1)
    changed = np.flatnonzero(reached.max(axis=1) >= start)
    status, when = status_at(milestones[changed], np.zeros(len(changed), np.int64), end)
    updates = Frame(
        {
            "order_id": open_orders.order_id[changed],
            "status": messy(rng, status, STATUSES),
            "updated_at": np.asarray(when, np.int64),
        }
    )
    still = ((milestones >= end) & (milestones < NEVER)).any(axis=1)
    return updates, open_orders.take(np.flatnonzero(still))


def _lines(
    rng: np.random.Generator,
    order_ids: Arr,
    currency: Arr,
    products: Products,
    first_line_id: int,
    *,
    min_junk: int,
) -> tuple[Frame, Arr, BadRows]:
    """Lines of orders (1 + Poisson(1) each) plus a few junk lines on valid orders.

    Lines are generated order by order in ascending order id, so line ids ascend with order ids
    without sorting ten million rows; a junk line is appended as the last line of its order.
    """
    n = len(order_ids)
    by_id = np.argsort(order_ids, kind="stable")
    count = 1 + rng.poisson(EXTRA_LINES_MEAN, n)
    owner = np.repeat(by_id, count[by_id])  # index into order_ids, ascending order id
    m = len(owner)
    pop = products.popularity / products.popularity.sum()
    listing = rng.choice(len(products), size=m, p=pop)
    quantity = np.minimum(rng.geometric(0.6, m), 9).astype(np.int64)
    discount = np.where(rng.random(m) < 0.15, rng.uniform(0.8, 0.95, m), 1.0)
    unit = products.price_cents[listing] * FX_FROM_USD[currency[owner]] * discount
    unit_cents = np.maximum(1, np.rint(unit)).astype(np.int64)
    totals = np.rint(np.bincount(owner, weights=quantity * unit_cents, minlength=n)).astype(
        np.int64
    )

    n_junk = max(min_junk, int(rng.binomial(m, JUNK_RATE))) if n else 0
    j_owner = np.sort(rng.integers(0, max(n, 1), n_junk))  # position in ascending-id order
    j_listing = rng.choice(len(products), size=n_junk, p=pop)
    j_negative = rng.random(n_junk) < 0.5
    if n_junk >= 2:
        j_negative[:2] = [True, False]
    j_price = np.maximum(products.price_cents[j_listing], 1)
    j_quantity = np.where(j_negative, 1, -rng.integers(0, 2, n_junk))
    j_unit = np.where(j_negative, -j_price, j_price)

    # Each junk line goes right after the last line of its order.
    group_end = np.cumsum(count[by_id])
    at = group_end[j_owner]
    line_order = np.insert(order_ids[owner], at, order_ids[by_id[j_owner]])
    is_junk = np.insert(np.zeros(m, bool), at, True)
    line_ids = np.arange(first_line_id, first_line_id + m + n_junk, dtype=np.int64)
    frame = Frame(
        {
            "order_line_id": line_ids,
            "order_id": line_order,
            "product_id": np.insert(
                products.product_id[listing], at, products.product_id[j_listing]
            ),
            "quantity": np.insert(quantity, at, j_quantity),
            "unit_price": np.insert(unit_cents, at, j_unit),
        }
    )
    defect = where(j_negative, "negative_amount", "non_positive_quantity")
    bad = bad_rows("shop", "order_lines", num(line_ids[is_junk]), defect)
    return frame, totals, bad
