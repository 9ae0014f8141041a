"""``init_demo`` and ``advance_demo``: orchestration of the simulated company.

``init_demo`` creates 365 days of history in one vectorised pass per table; ``advance_demo`` then
moves the clock one whole day at a time, applying the same kinds of events at daily rates. Every
random draw comes from a stream derived from ``(seed, purpose, day)``, so the same seed and scale
always give the same bytes, whichever database backend receives the tables.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipelines.demo import crm, rates, shop
from pipelines.demo.billing import (
    Corrections,
    Payments,
    issue_invoices,
    junk_payments,
    write_invoice_files,
    write_payment_files,
)
from pipelines.demo.clock import HISTORY_DAYS, day_of, day_start, iso_z
from pipelines.demo.people import (
    CURRENCY_OF_COUNTRY,
    JUNK_IDENTITY_BASE,
    PHONE_FAMILY_OF_COUNTRY,
    Persons,
    canonical_email,
    new_persons,
    record_presence,
)
from pipelines.demo.randomness import stream
from pipelines.demo.state import DemoError, DemoState, load_state, people_for_scale
from pipelines.demo.text import cat, num, where
from pipelines.demo.truth import (
    TRUTH_DIR,
    BadRows,
    append_bad_records,
    bad_rows,
    read_summary,
    write_people,
    write_products,
    write_summary,
)
from pipelines.demo.world import CRM, SHOP, WORLD_DIR, Records, World
from pipelines.demo.writers import TableSpec, Writer, check_url, open_writer
from pipelines.urls import strip_password

Arr = npt.NDArray[Any]
Progress = Callable[[str], None]

CRM_SQLITE = "crm.sqlite"
SHOP_SQLITE = "shop.sqlite"
_OWNED = (CRM_SQLITE, SHOP_SQLITE, "billing", TRUTH_DIR, WORLD_DIR, "state.json")


@dataclass
class _Run:
    """One init/advance call: where to write, the state being advanced, counters, progress."""

    out_dir: Path
    state: DemoState
    progress: Progress | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    bad: list[BadRows] = field(default_factory=list)

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def count(self, table: str, key: str, n: int) -> None:
        entry = self.counts.setdefault(table, {})
        entry[key] = entry.get(key, 0) + int(n)

    def rng(self, purpose: str, day: int) -> np.random.Generator:
        return stream(self.state.seed, purpose, day)

    def add_bad(self, rows: list[BadRows]) -> None:
        for r in rows:
            self.bad.append(r)
            self.count(f"{r.system}.{r.table}", "junk", len(r.keys))


# --------------------------------------------------------------------------------------------
# public API


def init_demo(
    out_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 42,
    crm_url: str | None = None,
    shop_url: str | None = None,
    progress: Progress | None = None,
) -> DemoState:
    """Create a fresh world at day 0 (2026-01-01T00:00:00Z) with 365 days of history.

    Replaces whatever an earlier init left in ``out_dir`` (only the files the demo owns) and
    drops/recreates the tables in the given databases, which must already exist.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DemoError(f"seed must be a non-negative integer, got {seed!r}")
    people = people_for_scale(scale)
    for url in (crm_url, shop_url):
        if url is not None:
            check_url(url)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out_dir / TRUTH_DIR).mkdir()
    state = DemoState(
        seed=seed,
        scale=float(scale),
        crm_url=strip_password(crm_url) if crm_url else None,
        shop_url=strip_password(shop_url) if shop_url else None,
    )
    run = _Run(out_dir, state, progress)
    window = (day_start(-HISTORY_DAYS), day_start(0))
    day = -HISTORY_DAYS  # stream "day" of everything created by init

    persons = new_persons(run.rng("persons", day), 1, people)
    state.next_person_id = people + 1
    run.say(f"people: {people:,} real persons")

    crm_writer = open_writer(out_dir, CRM_SQLITE, crm_url)
    try:
        accounts, contact_records = _init_crm(run, crm_writer, persons, window)
        crm_writer.commit()
    finally:
        crm_writer.close()

    shop_writer = open_writer(out_dir, SHOP_SQLITE, shop_url)
    try:
        products, customer_records, junk_customers, open_orders, billed = _init_shop(
            run, shop_writer, persons, window
        )
        shop_writer.commit()
    finally:
        shop_writer.close()

    payments, corrections = _bill(
        run, billed, window, np.arange(-HISTORY_DAYS, 0), min_junk=4, pending=None
    )
    world = World(
        persons=persons,
        records=Records.concat([contact_records, customer_records]),
        accounts=accounts,
        products=products,
        junk_customers=junk_customers,
        open_orders=open_orders,
        payments=payments,
        corrections=corrections,
    )
    real = products.key > 0
    write_products(out_dir, products.key[real], products.product_id[real])
    _finish(run, world, fresh=True)
    return state


def advance_demo(out_dir: Path, *, days: int = 1, progress: Progress | None = None) -> DemoState:
    """Move the world forward by ``days`` whole days, writing each day's changes and files."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise DemoError(f"days must be a positive integer, got {days!r}")
    out_dir = Path(out_dir)
    state = load_state(out_dir)
    world = World.load(out_dir)
    summary = read_summary(out_dir)
    tables: dict[str, dict[str, int]] = summary.get("tables", {})
    for _ in range(days):
        run = _Run(out_dir, state, progress, counts=tables)
        _advance_one_day(run, world)
        _finish(run, world, fresh=False)
        tables = run.counts
    return state


# --------------------------------------------------------------------------------------------
# init


def _init_crm(
    run: _Run, writer: Writer, persons: Persons, window: tuple[int, int]
) -> tuple[Arr, Records]:
    """Accounts and contacts of the history window (persons flagged ``in_crm``)."""
    state = run.state
    start, end = window
    day = -HISTORY_DAYS
    n_accounts = max(5, round(rates.ACCOUNTS_PER_SCALE * state.scale))
    frame, real_accounts, bad = crm.make_accounts(
        run.rng("crm.accounts", day), state.next_account_id, n_accounts, start, end
    )
    state.next_account_id += n_accounts
    writer.recreate(crm.ACCOUNTS)
    writer.insert(crm.ACCOUNTS, frame)
    writer.finish(crm.ACCOUNTS)
    run.count("crm.accounts", "rows", n_accounts)
    run.add_bad([bad])
    run.say(f"crm.accounts: {n_accounts:,} rows")

    rng = run.rng("crm.contacts", day)
    members = np.flatnonzero(persons.in_crm)
    created = rng.integers(start, end, len(members))
    twin = rng.random(len(members)) < rates.CRM_DUPLICATE_RATE
    twin_created = created[twin] + np.floor(rng.random(int(twin.sum())) * (end - created[twin]))
    who = np.concatenate([members, members[twin]])
    created = np.concatenate([created, twin_created.astype(np.int64)])
    deleted = np.where(
        rng.random(len(who)) < rates.INIT_SOFT_DELETE_RATE,
        created + np.floor(rng.random(len(who)) * (end - created)).astype(np.int64),
        -1,
    )
    writer.recreate(crm.CONTACTS)
    records = _write_contacts(
        run, writer, rng, persons, who, created, deleted, window, real_accounts, crm.CONTACTS
    )
    writer.finish(crm.CONTACTS)
    return real_accounts, records


def _write_contacts(
    run: _Run,
    writer: Writer,
    rng: np.random.Generator,
    persons: Persons,
    who: Arr,
    created: Arr,
    deleted: Arr,
    window: tuple[int, int],
    accounts: Arr,
    spec: TableSpec,
) -> Records:
    """Contacts of persons ``who`` (indexes into ``persons``) plus junk rows, in creation order."""
    state = run.state
    start, end = window
    n_real = len(who)
    n_junk = int(rng.binomial(n_real, rates.JUNK_RATE))
    if state.contact_rows == 0:
        n_junk = max(n_junk, 2)
    has_email, has_phone = record_presence(rng, persons.gap[who])
    updated = crm.later(rng, created, end, 0.5)
    updated = np.where(deleted >= 0, np.maximum(updated, deleted), updated)
    account = accounts[rng.integers(0, len(accounts), n_real)]
    account = np.where(rng.random(n_real) < rates.CONTACT_WITHOUT_ACCOUNT_RATE, -1, account)

    junk_identity = JUNK_IDENTITY_BASE + state.next_junk_identity + np.arange(n_junk)
    state.next_junk_identity += n_junk
    junk_created = rng.integers(start, end, n_junk)
    all_created = np.concatenate([created, junk_created])
    order = np.argsort(all_created, kind="stable")
    is_real = order < n_real
    nums = np.empty(n_real + n_junk, dtype=np.int64)
    nums[is_real] = state.next_contact_num + np.arange(int(is_real.sum()))
    nums[~is_real] = crm.junk_contact_nums(rng, n_junk)

    def both(real: Arr, junk: Arr) -> Arr:
        return np.concatenate([real, junk])[order]

    junk_country = np.where(rng.random(n_junk) < 0.8, 0, 3)  # US/CA: junk phones are NANP
    frame = crm.contacts_frame(
        rng,
        contact_num=nums,
        account_id=both(account, accounts[rng.integers(0, len(accounts), n_junk)]),
        first=both(persons.first[who], rng.integers(0, 100, n_junk)),
        last=both(persons.last[who], rng.integers(0, 100, n_junk)),
        domain=both(persons.domain[who], rng.integers(0, 5, n_junk)),
        local_fmt=both(persons.local_fmt[who], np.zeros(n_junk, np.int8)),
        country=both(persons.country[who], junk_country),
        identity=both(persons.person_id[who], junk_identity),
        has_email=both(has_email, np.ones(n_junk, bool)),
        has_phone=both(has_phone, np.ones(n_junk, bool)),
        created=all_created[order],
        updated=both(updated, junk_created),
        deleted=both(deleted, np.full(n_junk, -1)),
        job_title=state.job_title_added,
    )
    writer.insert(spec, frame)
    positions = state.contact_rows + np.flatnonzero(~is_real) + 1
    state.contact_rows += len(order)
    state.next_contact_num += n_real
    run.add_bad([bad_rows("crm", "contacts", cat("row:", num(positions)), "null_key")])
    run.count("crm.contacts", "rows", len(order))
    run.count("crm.contacts", "soft_deleted", int((deleted >= 0).sum()))
    run.say(f"crm.contacts: {run.counts['crm.contacts']['rows']:,} rows")

    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return Records(
        system=np.full(n_real, CRM, np.int8),
        record_num=nums[inverse[:n_real]],
        person_id=persons.person_id[who],
        live=deleted < 0,
        has_email=has_email,
        has_phone=has_phone,
        created_at=created,
        weight=np.zeros(n_real, np.float32),
    )


def _init_shop(
    run: _Run, writer: Writer, persons: Persons, window: tuple[int, int]
) -> tuple[shop.Products, Records, Arr, shop.OpenOrders, shop.BilledOrders]:
    """Products, customers and the history's orders; returns what billing and advance need."""
    state = run.state
    start, end = window
    day = -HISTORY_DAYS
    n_products = max(10, round(rates.PRODUCTS_PER_SCALE * state.scale))
    frame, products, bad = shop.make_products(
        run.rng("shop.products", day), state.next_product_id, n_products, start, end
    )
    state.next_product_id += n_products
    writer.recreate(shop.PRODUCTS)
    writer.insert(shop.PRODUCTS, frame)
    writer.finish(shop.PRODUCTS)
    run.count("shop.products", "rows", n_products)
    run.count("shop.products", "duplicate_listings", len(products) - len(np.unique(products.key)))
    run.add_bad([bad])
    run.say(f"shop.products: {n_products:,} rows")

    rng = run.rng("shop.customers", day)
    members = np.flatnonzero(persons.in_shop)
    created = rng.integers(start, end, len(members))
    twin = rng.random(len(members)) < rates.SHOP_DUPLICATE_RATE
    twin_created = created[twin] + np.floor(rng.random(int(twin.sum())) * (end - created[twin]))
    who = np.concatenate([members, members[twin]])
    created = np.concatenate([created, twin_created.astype(np.int64)])
    gone = rng.random(len(who)) < rates.INIT_HARD_DELETE_RATE
    deleted = np.where(gone, created + np.floor(rng.random(len(who)) * (end - created)), -1)
    writer.recreate(shop.CUSTOMERS)
    records, junk_ids = _write_customers(
        run, writer, rng, persons, who, created, deleted.astype(np.int64), window
    )
    writer.finish(shop.CUSTOMERS)

    buyers = _buyers(persons, records, np.where(deleted >= 0, deleted, end).astype(np.int64))
    batch = shop.make_orders(
        run.rng("shop.orders", day),
        buyers=buyers,
        n=round(rates.ORDERS_PER_PERSON * len(persons)),
        junk_customers=junk_ids,
        products=products,
        window=window,
        first_order_id=state.next_order_id,
        first_line_id=state.next_order_line_id,
        min_junk=2,
    )
    writer.recreate(shop.ORDERS)
    writer.recreate(shop.ORDER_LINES)
    _write_orders(run, writer, batch)
    writer.finish(shop.ORDERS)
    return products, records, junk_ids, batch.open, batch.billed


def _write_customers(
    run: _Run,
    writer: Writer,
    rng: np.random.Generator,
    persons: Persons,
    who: Arr,
    created: Arr,
    deleted: Arr,
    window: tuple[int, int],
) -> tuple[Records, Arr]:
    """Customers of persons ``who`` plus junk rows; rows deleted before ``window`` end are gaps."""
    state = run.state
    start, end = window
    n_real = len(who)
    n_junk = int(rng.binomial(n_real, rates.JUNK_RATE))
    if state.next_customer_id == 1:
        n_junk = max(n_junk, 1)
    has_email, has_phone = record_presence(rng, persons.gap[who])
    updated = crm.later(rng, created, end, 0.5)
    updated = np.where(deleted >= 0, np.minimum(updated, deleted), updated)
    weight = rng.lognormal(0.0, 1.0, n_real).astype(np.float32)

    junk_identity = JUNK_IDENTITY_BASE + state.next_junk_identity + np.arange(n_junk)
    state.next_junk_identity += n_junk
    junk_created = rng.integers(start, end, n_junk)
    all_created = np.concatenate([created, junk_created])
    order = np.argsort(all_created, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    ids = state.next_customer_id + rank
    state.next_customer_id += len(order)

    def both(real: Arr, junk: Arr) -> Arr:
        return np.concatenate([real, junk])[order]

    country = persons.country[who]
    frame = shop.customers_frame(
        rng,
        customer_id=ids[order],
        first=both(persons.first[who], rng.integers(0, 100, n_junk)),
        last=both(persons.last[who], rng.integers(0, 100, n_junk)),
        domain=both(persons.domain[who], rng.integers(0, 5, n_junk)),
        local_fmt=both(persons.local_fmt[who], np.zeros(n_junk, np.int8)),
        identity=both(persons.person_id[who], junk_identity),
        family=both(PHONE_FAMILY_OF_COUNTRY[country], np.zeros(n_junk, np.int8)),
        has_email=both(has_email, np.ones(n_junk, bool)),
        has_phone=both(has_phone, np.ones(n_junk, bool)),
        created=all_created[order],
        updated=both(updated, junk_created),
        malformed=both(np.zeros(n_real, bool), np.ones(n_junk, bool)),
    )
    keep = np.flatnonzero(both(deleted < 0, np.ones(n_junk, bool)))
    writer.insert(shop.CUSTOMERS, frame.take(keep))
    junk_ids = np.sort(ids[n_real:])
    run.add_bad([bad_rows("shop", "customers", num(junk_ids), "malformed_email")])
    run.count("shop.customers", "rows", len(keep))
    run.count("shop.customers", "hard_deleted", int((deleted >= 0).sum()))
    run.say(f"shop.customers: {run.counts['shop.customers']['rows']:,} rows")
    records = Records(
        system=np.full(n_real, SHOP, np.int8),
        record_num=ids[:n_real],
        person_id=persons.person_id[who],
        live=deleted < 0,
        has_email=has_email,
        has_phone=has_phone,
        created_at=created,
        weight=weight,
    )
    return records, junk_ids


def _buyers(persons: Persons, records: Records, end: Arr) -> shop.Buyers:
    """Shop records as potential buyers from their creation until ``end`` (per record)."""
    index = np.searchsorted(persons.person_id, records.person_id)
    p = persons.take(index)
    email = canonical_email(p.first, p.last, p.domain, p.local_fmt, p.person_id)
    return shop.Buyers(
        customer_id=records.record_num,
        start=records.created_at,
        end=end,
        weight=records.weight.astype(np.float64),
        currency=CURRENCY_OF_COUNTRY[p.country],
        email=where(records.has_email, email, ""),
    )


def _write_orders(run: _Run, writer: Writer, batch: shop.OrderBatch) -> None:
    """Insert an order batch and account for it in the counters and id sequences."""
    writer.insert(shop.ORDERS, batch.orders)
    run.count("shop.orders", "rows", len(batch.orders))
    run.say(f"shop.orders: {run.counts['shop.orders']['rows']:,} rows")
    writer.insert(shop.ORDER_LINES, batch.lines)
    run.count("shop.order_lines", "rows", len(batch.lines))
    run.say(f"shop.order_lines: {run.counts['shop.order_lines']['rows']:,} rows")
    run.add_bad(batch.bad)
    n = len(batch.orders)
    run.state.next_order_id += n
    run.state.next_order_line_id += len(batch.lines)


def _bill(
    run: _Run,
    billed: shop.BilledOrders,
    window: tuple[int, int],
    days: Arr,
    *,
    min_junk: int,
    pending: tuple[Payments, Corrections] | None,
) -> tuple[Payments, Corrections]:
    """Issue invoices for ``billed``, write the files of ``days``, return what stays pending."""
    state = run.state
    first_day = int(days[0])
    last_day = int(days[-1])
    rng = run.rng("billing.invoices", first_day)
    invoices, corrections, payments, junk_used = issue_invoices(
        rng,
        billed,
        window=window,
        first_invoice_num=state.next_invoice_num,
        first_junk_identity=state.next_junk_identity,
        min_junk=min_junk,
    )
    state.next_junk_identity += junk_used
    state.next_invoice_num += len(invoices)
    if pending is not None:
        payments = Payments.concat([pending[0], payments])
        corrections = Corrections.concat([pending[1], corrections])
    due_c = corrections.file_day <= last_day
    bad, lines = write_invoice_files(run.out_dir, days, invoices, corrections.take(due_c))
    run.add_bad(bad)
    run.count("billing.invoices", "rows", lines)
    run.count("billing.invoices", "corrections", int(due_c.sum()))
    run.count("billing.invoices", "files", len(days))
    run.say(f"billing.invoices: {run.counts['billing.invoices']['rows']:,} rows")

    due_p = payments.file_day <= last_day
    due = payments.take(due_p)
    n_junk = int(rng.binomial(len(due), rates.JUNK_RATE))
    junk = junk_payments(rng, days, max(n_junk, min(min_junk, 2)))
    late = int((due.file_day > day_of(due.paid_ms // 1000)).sum())
    bad, lines = write_payment_files(
        run.out_dir, days, Payments.concat([due, junk]), state.next_payment_num
    )
    state.next_payment_num += lines
    run.add_bad(bad)
    run.count("billing.payments", "rows", lines)
    run.count("billing.payments", "late", late)
    run.count("billing.payments", "files", len(days))
    run.say(f"billing.payments: {run.counts['billing.payments']['rows']:,} rows")
    return payments.take(~due_p), corrections.take(~due_c)


# --------------------------------------------------------------------------------------------
# advance


def _advance_one_day(run: _Run, world: World) -> None:
    """Simulate the UTC date of day ``state.day`` and move the clock to the next day."""
    state = run.state
    d = state.day
    window = (day_start(d), day_start(d + 1))
    start, end = window
    base = state.people
    rng = run.rng("advance.people", d)

    # New persons, and existing persons showing up in the system they were not in yet.
    n_new = int(rng.poisson(rates.DAILY_NEW_PEOPLE * base))
    fresh = new_persons(rng, state.next_person_id, n_new)
    state.next_person_id += n_new
    single = np.flatnonzero(world.persons.in_crm ^ world.persons.in_shop)
    n_cross = min(len(single), int(rng.poisson(rates.DAILY_CROSS_SIGNUPS * base)))
    cross = np.sort(rng.choice(single, size=n_cross, replace=False))
    cross_to_crm = cross[~world.persons.in_crm[cross]]
    cross_to_shop = cross[~world.persons.in_shop[cross]]
    old = len(world.persons)
    world.persons.in_crm[cross_to_crm] = True
    world.persons.in_shop[cross_to_shop] = True
    world.persons = Persons.concat([world.persons, fresh])
    new_crm = np.concatenate([cross_to_crm, old + np.flatnonzero(fresh.in_crm)])
    new_shop = np.concatenate([cross_to_shop, old + np.flatnonzero(fresh.in_shop)])
    run.say(f"day {d + 1}: {n_new} new people, {n_cross} cross sign-ups")

    crm_writer = open_writer(run.out_dir, CRM_SQLITE, state.crm_url)
    try:
        if not state.job_title_added and d + 1 >= rates.JOB_TITLE_DAY:
            crm_writer.add_column(crm.CONTACTS, crm.JOB_TITLE)
            state.job_title_added = True
            run.say("crm.contacts: schema change, added job_title")
        spec = crm.CONTACTS_WITH_JOB_TITLE if state.job_title_added else crm.CONTACTS
        records = _advance_contacts(run, crm_writer, world, new_crm, window, spec)
        crm_writer.commit()
    finally:
        crm_writer.close()

    shop_writer = open_writer(run.out_dir, SHOP_SQLITE, state.shop_url)
    try:
        customers = _advance_customers(run, shop_writer, world, new_shop, window)
        world.records = Records.concat([records, customers])
        ord_rng = run.rng("advance.orders", d)
        updates, still_open = shop.progress_orders(ord_rng, world.open_orders, window)
        shop_writer.update(shop.ORDERS, "order_id", updates)
        run.count("shop.orders", "status_updates", len(updates))
        shop_mask = (world.records.system == SHOP) & world.records.live
        live = world.records.take(np.flatnonzero(shop_mask))
        buyers = _buyers(world.persons, live, np.full(len(live), end, np.int64))
        buyers.start = np.maximum(buyers.start, start)
        rate = rates.ORDERS_PER_PERSON * base / HISTORY_DAYS
        batch = shop.make_orders(
            ord_rng,
            buyers=buyers,
            n=int(ord_rng.poisson(rate)) if len(buyers) else 0,
            junk_customers=world.junk_customers,
            products=world.products,
            window=window,
            first_order_id=state.next_order_id,
            first_line_id=state.next_order_line_id,
            min_junk=0,
        )
        _write_orders(run, shop_writer, batch)
        world.open_orders = shop.OpenOrders.concat([still_open, batch.open])
        shop_writer.commit()
    finally:
        shop_writer.close()

    world.payments, world.corrections = _bill(
        run,
        batch.billed,
        window,
        np.array([d]),
        min_junk=0,
        pending=(world.payments, world.corrections),
    )
    state.day = d + 1


def _advance_contacts(
    run: _Run, writer: Writer, world: World, new_crm: Arr, window: tuple[int, int], spec: TableSpec
) -> Records:
    """Edits, soft deletes and new contacts of one day; returns all CRM records."""
    state = run.state
    d = state.day
    start, end = window
    rng = run.rng("advance.contacts", d)
    records = world.records
    persons = world.persons

    # Updates and soft deletes of live contacts that existed before today.
    live = np.flatnonzero((records.system == CRM) & records.live)
    u = rng.random(len(live))
    to_update = live[u < rates.DAILY_UPDATE_RATE]
    to_delete = live[
        (u >= rates.DAILY_UPDATE_RATE)
        & (u < rates.DAILY_UPDATE_RATE + rates.DAILY_SOFT_DELETE_RATE)
    ]
    if len(to_update):
        p = persons.take(np.searchsorted(persons.person_id, records.person_id[to_update]))
        frame = crm.contact_update_frame(
            rng,
            contact_num=records.record_num[to_update],
            first=p.first,
            last=p.last,
            identity=p.person_id,
            country=p.country,
            has_phone=records.has_phone[to_update],
            updated=rng.integers(start, end, len(to_update)),
            job_title=state.job_title_added,
        )
        writer.update(spec, "contact_id", frame)
    if len(to_delete):
        frame = crm.soft_delete_frame(
            rng, records.record_num[to_delete], rng.integers(start, end, len(to_delete))
        )
        writer.update(spec, "contact_id", frame)
        records.live[to_delete] = False
    run.count("crm.contacts", "updates", len(to_update))
    run.count("crm.contacts", "soft_deleted", len(to_delete))

    # New contacts (new persons, cross sign-ups, a few duplicates) and junk.
    twin = new_crm[rng.random(len(new_crm)) < rates.CRM_DUPLICATE_RATE]
    who = np.concatenate([new_crm, twin])
    created = rng.integers(start, end, len(who))
    new_records = _write_contacts(
        run,
        writer,
        rng,
        persons,
        who,
        created,
        np.full(len(who), -1),
        window,
        world.accounts,
        spec,
    )
    return Records.concat([records.take(np.flatnonzero(records.system == CRM)), new_records])


def _advance_customers(
    run: _Run, writer: Writer, world: World, new_shop: Arr, window: tuple[int, int]
) -> Records:
    """Edits, hard deletes and new customers of one day; returns all shop records."""
    state = run.state
    d = state.day
    start, end = window
    rng = run.rng("advance.customers", d)
    all_records = world.records
    shop_idx = np.flatnonzero(all_records.system == SHOP)
    records = all_records.take(shop_idx)
    persons = world.persons

    live = np.flatnonzero(records.live)
    u = rng.random(len(live))
    to_update = live[u < rates.DAILY_UPDATE_RATE]
    to_delete = live[
        (u >= rates.DAILY_UPDATE_RATE)
        & (u < rates.DAILY_UPDATE_RATE + rates.DAILY_HARD_DELETE_RATE)
    ]
    if len(to_update):
        p = persons.take(np.searchsorted(persons.person_id, records.person_id[to_update]))
        frame = shop.customer_update_frame(
            rng,
            customer_id=records.record_num[to_update],
            first=p.first,
            last=p.last,
            identity=p.person_id,
            family=PHONE_FAMILY_OF_COUNTRY[p.country],
            has_phone=records.has_phone[to_update],
            updated=rng.integers(start, end, len(to_update)),
        )
        writer.update(shop.CUSTOMERS, "customer_id", frame)
    if len(to_delete):
        writer.delete(shop.CUSTOMERS, "customer_id", records.record_num[to_delete])
        records.live[to_delete] = False
    run.count("shop.customers", "updates", len(to_update))
    run.count("shop.customers", "hard_deleted", len(to_delete))
    run.count("shop.customers", "rows", -len(to_delete))

    twin = new_shop[rng.random(len(new_shop)) < rates.SHOP_DUPLICATE_RATE]
    who = np.concatenate([new_shop, twin])
    created = rng.integers(start, end, len(who))
    new_records, junk_ids = _write_customers(
        run, writer, rng, persons, who, created, np.full(len(who), -1, np.int64), window
    )
    world.junk_customers = np.concatenate([world.junk_customers, junk_ids])
    return Records.concat([records, new_records])


# --------------------------------------------------------------------------------------------
# truth


def _finish(run: _Run, world: World, *, fresh: bool) -> None:
    """Write truth files, summary, world store and state after an init or a simulated day."""
    out_dir = run.out_dir
    r = world.records
    people_rows = write_people(out_dir, r.system, r.record_num, r.person_id, r.live)
    new_bad = append_bad_records(out_dir, run.bad, fresh=fresh)
    run.bad = []
    previous = read_summary(out_dir) if not fresh else {}
    live = r.live
    crm_people = np.unique(r.person_id[live & (r.system == CRM)])
    shop_people = np.unique(r.person_id[live & (r.system == SHOP)])
    crm_counts = np.unique(r.person_id[live & (r.system == CRM)], return_counts=True)[1]
    shop_counts = np.unique(r.person_id[live & (r.system == SHOP)], return_counts=True)[1]
    summary: dict[str, Any] = {
        "seed": run.state.seed,
        "scale": run.state.scale,
        "day": run.state.day,
        "as_of": str(iso_z(np.array([day_start(run.state.day)]))[0]),
        "tables": run.counts,
        "people": {
            "created": len(world.persons),
            "real": len(np.union1d(crm_people, shop_people)),
            "in_crm": len(crm_people),
            "in_shop": len(shop_people),
            "in_both": len(np.intersect1d(crm_people, shop_people)),
            "duplicated_in_crm": int((crm_counts > 1).sum()),
            "duplicated_in_shop": int((shop_counts > 1).sum()),
        },
        "truth": {
            "people_rows": people_rows,
            "bad_records": int(previous.get("truth", {}).get("bad_records", 0)) + new_bad,
        },
        "pending": {
            "open_orders": len(world.open_orders),
            "planned_payments": len(world.payments),
            "planned_corrections": len(world.corrections),
        },
    }
    write_summary(out_dir, summary)
    world.save(out_dir)
    run.state.save(out_dir)
