"""Readers and consistency checks shared by the demo generator's unit tests.

The matching rule and the normalizations are implemented here independently of the generator:
they are the documented contract (docs/demo-data.md), so the tests check the data against the
documentation rather than against the generator's own helpers.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

CURRENCIES = {"USD", "EUR", "GBP"}
EMAIL_PATTERN = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$")
INVOICE_FIELDS = 7


def norm_email(raw: str | None) -> str | None:
    """Documented rule: trim, lower-case; empty means missing."""
    if raw is None:
        return None
    value = raw.strip().lower()
    return value or None


def norm_phone(raw: str | None) -> str | None:
    """Documented rule: keep digits; 10 digits means North America, prefix '1'."""
    if raw is None:
        return None
    digits = re.sub(r"\D", "", raw)
    if not digits:
        return None
    return "1" + digits if len(digits) == 10 else digits


def norm_sku(raw: str) -> str:
    """Documented rule: upper, strip, remove '-' and spaces."""
    return raw.strip().upper().replace("-", "").replace(" ", "")


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, params).fetchall()


def dump_database(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's columns and rows (in rowid order), for byte-for-byte comparisons."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for t in sorted(tables):
            cols = tuple(r[1] for r in con.execute(f"pragma table_info({t})"))
            out[t] = [cols, *con.execute(f"select * from {t} order by rowid")]
        return out


def flat_files(out: Path) -> dict[str, bytes]:
    """Every generated file except the databases and the generator's own store."""
    files: dict[str, bytes] = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not rel.endswith(".sqlite") and not rel.startswith(".generator"):
            files[rel] = path.read_bytes()
    return files


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def bad_keys(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    """{(system, table): {record_key: defect}} from truth/bad_records.csv."""
    keys: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for r in read_csv(out / "truth" / "bad_records.csv"):
        key = (r["system"], r["table"])
        assert r["record_key"] not in keys[key], f"duplicate bad record {r}"
        keys[key][r["record_key"]] = r["defect"]
    return keys


def truth_clusters(out: Path) -> set[frozenset[tuple[str, str]]]:
    people: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in read_csv(out / "truth" / "people.csv"):
        assert (r["system"], r["table"]) in {("crm", "contacts"), ("shop", "customers")}
        people[r["person_id"]].add((r["system"], r["record_id"]))
    return {frozenset(v) for v in people.values()}


def live_person_records(out: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(system, record_id, email, phone) of every live record that is not junk."""
    bad = bad_keys(out)
    rows: list[tuple[str, str, str | None, str | None]] = []
    for cid, email, phone in query(
        out / "crm.sqlite",
        "select contact_id, email, phone from contacts "
        "where deleted_at is null and contact_id is not null and contact_id <> ''",
    ):
        rows.append(("crm", cid, email, phone))
    junk_customers = bad[("shop", "customers")]
    for cid, email, phone in query(
        out / "shop.sqlite", "select customer_id, email, phone from customers"
    ):
        if str(cid) not in junk_customers:
            rows.append(("shop", str(cid), email, phone))
    return rows


def rule_clusters(
    records: list[tuple[str, str, str | None, str | None]],
) -> set[frozenset[tuple[str, str]]]:
    """The documented matching rule.

    Cluster by normalized e-mail; a record without an e-mail adopts the e-mail of a record with
    the same normalized phone; a record with neither such link is keyed by its phone.
    """
    email_of_phone: dict[str, str] = {}
    for _, _, email, phone in records:
        e, p = norm_email(email), norm_phone(phone)
        if e and p:
            assert email_of_phone.setdefault(p, e) == e, f"phone {p} has two e-mails"
    clusters: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for system, rid, email, phone in records:
        e, p = norm_email(email), norm_phone(phone)
        assert e or p, f"{system} {rid} has neither e-mail nor phone"
        key = e or email_of_phone.get(p or "") or f"phone:{p}"
        clusters[key].add((system, rid))
    return {frozenset(v) for v in clusters.values()}


def invoice_lines(out: Path) -> list[tuple[str, int, str]]:
    """(file relative to out, 1-based line number, raw line) of every invoice data line."""
    lines: list[tuple[str, int, str]] = []
    for path in sorted((out / "billing" / "invoices").glob("*.csv")):
        rel = path.relative_to(out).as_posix()
        text = path.read_text("utf-8").splitlines()
        assert text[0] == "invoice_id,order_id,customer_email,amount,currency,issued_at,exported_at"
        lines.extend((rel, i, line) for i, line in enumerate(text[1:], start=2))
    return lines


def parse_invoice_line(line: str) -> list[str] | None:
    """The fields of a well-formed line, None for a broken one (field count, open quote)."""
    if line.count('"') % 2:
        return None
    fields = next(csv.reader(io.StringIO(line)))
    return fields if len(fields) == INVOICE_FIELDS else None


def payment_lines(out: Path) -> list[tuple[str, int, str]]:
    lines: list[tuple[str, int, str]] = []
    for path in sorted((out / "billing" / "payments").glob("*.jsonl")):
        rel = path.relative_to(out).as_posix()
        lines.extend(
            (rel, i, line) for i, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        )
    return lines


def order_totals(out: Path, bad_lines: dict[str, str]) -> dict[int, Decimal]:
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for line_id, order_id, qty, price in query(
        out / "shop.sqlite",
        "select order_line_id, order_id, quantity, unit_price from order_lines",
    ):
        if str(line_id) not in bad_lines:
            totals[order_id] += qty * Decimal(str(price)).quantize(Decimal("0.01"))
    return totals


def check_truth(out: Path) -> None:
    """Every consistency property of the truth files against the sources."""
    bad = bad_keys(out)
    crm, shop = out / "crm.sqlite", out / "shop.sqlite"

    # people.csv lists exactly the live, non-junk person records ...
    records = live_person_records(out)
    truth = truth_clusters(out)
    truth_records = {r for cluster in truth for r in cluster}
    assert truth_records == {(s, rid) for s, rid, _, _ in records}
    # ... and the documented matching rule recovers its partition exactly.
    assert rule_clusters(records) == truth

    # bad_records.csv: each listed row exists and is broken as stated; nothing else is broken.
    accounts = dict(query(crm, "select account_id, name from accounts"))
    assert {k for k, name in accounts.items() if name is None} == {
        int(k) for k in bad[("crm", "accounts")]
    }
    rowids = {
        f"row:{rowid}": cid
        for rowid, cid in query(crm, "select rowid, contact_id from contacts")
        if cid is None or cid == ""
    }
    assert set(rowids) == set(bad[("crm", "contacts")])
    contact_ids = [r[0] for r in query(crm, "select contact_id from contacts")]
    real_ids = [c for c in contact_ids if c]
    assert len(real_ids) == len(set(real_ids)), "contact ids are unique"
    assert all(re.fullmatch(r"C\d{7}", c) for c in real_ids)

    customers = dict(query(shop, "select customer_id, email from customers"))
    malformed = {
        str(k) for k, e in customers.items() if e is not None and not EMAIL_PATTERN.match(e)
    }
    assert malformed == set(bad[("shop", "customers")])
    contact_emails = [r[0] for r in query(crm, "select email from contacts")]
    assert all(EMAIL_PATTERN.match(e) for e in contact_emails if e is not None)

    negative_products = {
        str(r[0]) for r in query(shop, "select product_id from products where list_price < 0")
    }
    assert negative_products == set(bad[("shop", "products")])
    odd_currency = {
        str(oid)
        for oid, cur in query(shop, "select order_id, currency from orders")
        if cur.strip().upper() not in CURRENCIES
    }
    assert odd_currency == set(bad[("shop", "orders")])
    statuses = {s.strip().lower() for (s,) in query(shop, "select status from orders")}
    assert statuses <= {"placed", "paid", "shipped", "cancelled", "refunded"}
    odd_lines = {
        str(r[0])
        for r in query(
            shop, "select order_line_id from order_lines where quantity <= 0 or unit_price < 0"
        )
    }
    assert odd_lines == set(bad[("shop", "order_lines")])

    # products.csv: duplicate listings share a key exactly when their normalized SKUs match.
    skus = dict(query(shop, "select product_id, sku from products"))
    key_of = {
        int(r["product_id"]): r["product_key"] for r in read_csv(out / "truth" / "products.csv")
    }
    assert set(key_of) == set(skus) - {int(k) for k in bad[("shop", "products")]}
    by_sku: dict[str, set[str]] = defaultdict(set)
    for pid, key in key_of.items():
        by_sku[norm_sku(skus[pid])].add(key)
    assert all(len(keys) == 1 for keys in by_sku.values())
    assert len(by_sku) == len(set(key_of.values()))

    # invoices: broken lines and junk rows are listed; the latest export of every other invoice
    # carries the order's total, and every valid non-cancelled order has exactly one invoice.
    bad_invoices = bad[("billing", "invoices")]
    latest: dict[str, tuple[str, list[str]]] = {}
    seen_broken: set[str] = set()
    seen_junk: set[str] = set()
    for rel, no, line in invoice_lines(out):
        fields = parse_invoice_line(line)
        if fields is None:
            assert bad_invoices.get(f"{rel}:{no}") == "broken_csv_line", (rel, no, line)
            seen_broken.add(f"{rel}:{no}")
            continue
        inv, _, _, amount, currency, _, exported = fields
        if Decimal(amount) < 0 or currency not in CURRENCIES:
            assert inv in bad_invoices, line
            seen_junk.add(inv)
            continue
        assert inv not in bad_invoices, line
        if inv not in latest or exported > latest[inv][0]:
            latest[inv] = (exported, fields)
    assert seen_broken | seen_junk == set(bad_invoices)
    totals = order_totals(out, bad[("shop", "order_lines")])
    summary = json.loads((out / "truth" / "summary.json").read_text("utf-8"))
    week_ago = (
        datetime.fromisoformat(summary["as_of"].replace("Z", "+00:00")) - timedelta(days=7)
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    invoiced: dict[int, str] = {}
    awaiting_correction = 0
    for inv, (_, fields) in latest.items():
        order_id = int(fields[1])
        assert order_id not in invoiced, f"order {order_id} invoiced twice"
        invoiced[order_id] = inv
        if Decimal(fields[3]) != totals[order_id]:
            # a wrong first export whose correction file is still to come (<= 7 days later)
            assert fields[5] >= week_ago, (inv, fields, totals[order_id])
            awaiting_correction += 1
    assert awaiting_correction <= summary["pending"]["planned_corrections"]
    billable = {
        oid
        for oid, status, cur in query(shop, "select order_id, status, currency from orders")
        if status.strip().lower() != "cancelled" and str(oid) not in bad[("shop", "orders")]
    }
    assert set(invoiced) == billable

    # payments: junk listed; the rest point at real invoices and never overpay them.
    bad_payments = bad[("billing", "payments")]
    paid: dict[str, Decimal] = defaultdict(Decimal)
    seen = set()
    for rel, no, line in payment_lines(out):
        try:
            row = json.loads(line)
        except ValueError:
            assert bad_payments.get(f"{rel}:{no}") == "invalid_json"
            seen.add(f"{rel}:{no}")
            continue
        assert set(row) == {"payment_id", "invoice_id", "amount", "currency", "paid_at", "method"}
        if row["invoice_id"] is None:
            assert bad_payments.get(row["payment_id"]) == "null_invoice_id"
            seen.add(row["payment_id"])
            continue
        assert isinstance(row["paid_at"], int) and row["method"] in {"card", "transfer", "paypal"}
        assert row["invoice_id"] in latest, row
        paid[row["invoice_id"]] += Decimal(str(row["amount"]))
    assert seen == set(bad_payments)
    for inv, amount in paid.items():  # payments follow the order total (corrected amount)
        assert amount <= totals[int(latest[inv][1][1])], inv
