"""The mess the demo exists for is really there."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, date, datetime

import pytest
from demo_support import (
    invoice_lines,
    norm_email,
    norm_sku,
    parse_invoice_line,
    payment_lines,
    query,
    read_csv,
)


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(seed=21, scale=0.1)


def shape(phone: str) -> str:
    return re.sub(r"\d", "9", phone)


def test_emails_differ_in_case_and_whitespace_only(world) -> None:
    emails = [e for (e,) in query(world / "crm.sqlite", "select email from contacts") if e]
    emails += [e for (e,) in query(world / "shop.sqlite", "select email from customers") if e]
    assert any(e != e.strip() for e in emails), "surrounding whitespace"
    assert any(e.strip() != e.strip().lower() for e in emails), "mixed case"
    missing = query(world / "crm.sqlite", "select count(*) from contacts where email is null")
    assert missing[0][0] > 0, "some records lack an e-mail"


def test_phones_come_in_several_formats(world) -> None:
    phones = [p for (p,) in query(world / "crm.sqlite", "select phone from contacts") if p]
    phones += [p for (p,) in query(world / "shop.sqlite", "select phone from customers") if p]
    shapes = Counter(shape(p) for p in phones)
    assert len(shapes) >= 8, shapes
    assert {"+9 (999) 999-9999", "999.999.9999", "99999999999"} <= set(shapes)
    assert any(p.startswith("+44") for p in phones) and any(p.startswith("+49") for p in phones)


def test_crm_timestamps_carry_varying_offsets(world) -> None:
    stamps = [c for (c,) in query(world / "crm.sqlite", "select created_at from contacts")]
    suffixes = Counter(re.sub(r"^.*?(Z|[+-]\d\d:\d\d)$", r"\1", s) for s in stamps)
    assert {"Z", "+02:00", "-05:00"} <= set(suffixes), suffixes
    for s in stamps:
        datetime.fromisoformat(s.replace("Z", "+00:00"))
    countries = {c for (c,) in query(world / "crm.sqlite", "select country from contacts")}
    assert {"DE", "de", " DE"} & countries and len(countries) > 4


def test_soft_deletes_and_updates(world) -> None:
    crm = world / "crm.sqlite"
    (deleted,) = query(crm, "select count(*) from contacts where deleted_at is not null")[0]
    assert deleted > 0
    rows = query(crm, "select created_at, updated_at from contacts")
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    assert all(parse(u) >= parse(c) for c, u in rows)
    assert any(parse(u) > parse(c) for c, u in rows)
    shop = query(world / "shop.sqlite", "select created_at, updated_at from customers")
    assert all(u >= c for c, u in shop) and any(u > c for c, u in shop)
    ids = [i for (i,) in query(world / "shop.sqlite", "select customer_id from customers")]
    assert max(ids) > len(ids), "hard-deleted customers leave gaps"


def test_shop_statuses_currencies_and_skus_are_untidy(world) -> None:
    shop = world / "shop.sqlite"
    statuses = Counter(s for (s,) in query(shop, "select status from orders"))
    assert {"placed", "paid", "shipped", "cancelled", "refunded"} <= set(statuses)
    assert any(s != s.strip().lower() for s in statuses)
    currencies = {c for (c,) in query(shop, "select currency from orders")}
    assert any(
        c.strip().upper() in {"USD", "EUR", "GBP"} and c != c.strip().upper() for c in currencies
    )
    assert currencies & {"XXX", "US$", "EURO", "$"}
    key_of = {r["product_id"]: r["product_key"] for r in read_csv(world / "truth" / "products.csv")}
    skus = dict(query(shop, "select product_id, sku from products"))
    by_key: dict[str, set[str]] = {}
    for pid, key in key_of.items():
        by_key.setdefault(key, set()).add(skus[int(pid)])
    duplicates = [s for s in by_key.values() if len(s) > 1]
    assert duplicates and all(len({norm_sku(x) for x in s}) == 1 for s in duplicates)
    (timestamp,) = query(shop, "select ordered_at from orders limit 1")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", timestamp)


def test_billing_files_are_broken_in_the_documented_ways(world) -> None:
    lines = invoice_lines(world)
    broken = [line for _, _, line in lines if parse_invoice_line(line) is None]
    assert any(line.count('"') % 2 for line in broken), "an unterminated quote"
    assert any(line.count(",") != 6 and '"' not in line for line in broken), "wrong field count"
    # an unterminated quote is always the last line of its file
    by_file: dict[str, list[str]] = {}
    for rel, _, line in lines:
        by_file.setdefault(rel, []).append(line)
    for content in by_file.values():
        assert all(line.count('"') % 2 == 0 for line in content[:-1])
    ids = Counter(parse_invoice_line(line)[0] for _, _, line in lines if parse_invoice_line(line))
    assert any(n > 1 for n in ids.values()), "corrections re-export an invoice"
    assert len(list((world / "billing" / "invoices").glob("invoices_*.csv"))) == 365

    late = invalid = 0
    for rel, _, line in payment_lines(world):
        try:
            row = json.loads(line)
        except ValueError:
            invalid += 1
            continue
        file_day = date.fromisoformat(rel[-16:-6])
        paid_day = datetime.fromtimestamp(row["paid_at"] / 1000, tz=UTC).date()
        assert paid_day <= file_day
        late += paid_day < file_day
    assert invalid > 0 and late > 0


def test_missing_email_records_still_have_phones(world) -> None:
    for db, table in [("crm.sqlite", "contacts"), ("shop.sqlite", "customers")]:
        rows = query(world / db, f"select email, phone from {table}")
        assert all(norm_email(e) or (p and p.strip()) for e, p in rows)
