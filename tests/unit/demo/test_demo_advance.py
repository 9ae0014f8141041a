"""advance_demo: daily inserts, updates, deletes, files, one schema change, truth kept in step."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from demo_support import check_truth, payment_lines, query, truth_clusters

from pipelines.demo import DemoError, advance_demo, load_state


def columns(db, table):
    return [r[1] for r in query(db, f"pragma table_info({table})")]


def count(db, table, where="1=1"):
    return query(db, f"select count(*) from {table} where {where}")[0][0]


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(seed=31, scale=0.1)


def test_advance_day_by_day(world) -> None:
    crm, shop = world / "crm.sqlite", world / "shop.sqlite"
    before = {
        "contacts": count(crm, "contacts"),
        "orders": count(shop, "orders"),
        "lines": count(shop, "order_lines"),
        "deleted": count(crm, "contacts", "deleted_at is not null"),
        "truth": truth_clusters(world),
    }
    customers_before = {r[0] for r in query(shop, "select customer_id from customers")}

    state = advance_demo(world, days=2)
    assert state.day == 2 and load_state(world).day == 2
    assert "job_title" not in columns(crm, "contacts")
    check_truth(world)
    assert count(crm, "contacts") > before["contacts"]
    assert count(shop, "orders") > before["orders"]
    assert count(shop, "order_lines") > before["lines"]
    assert (world / "billing" / "invoices" / "invoices_2026-01-02.csv").is_file()
    assert (world / "billing" / "payments" / "payments_2026-01-02.jsonl").is_file()
    assert not (world / "billing" / "invoices" / "invoices_2026-01-03.csv").exists()
    updated = query(shop, "select count(*) from orders where updated_at >= '2026-01-01'")[0][0]
    assert updated > count(shop, "orders") - before["orders"], "existing orders moved on"

    state = advance_demo(world, days=1)  # the clock reaches day 3: the schema change
    assert state.day == 3 and state.job_title_added
    assert columns(crm, "contacts")[-1] == "job_title"
    with_title = count(crm, "contacts", "job_title is not null")
    assert with_title > 0
    assert with_title == count(
        crm, "contacts", "job_title is not null and updated_at >= '2026-01-02T12'"
    )
    advance_demo(world, days=3)
    assert columns(crm, "contacts").count("job_title") == 1
    assert count(crm, "contacts", "job_title is not null") > with_title
    check_truth(world)

    after = truth_clusters(world)
    assert after != before["truth"]
    assert count(crm, "contacts", "deleted_at is not null") > before["deleted"]
    customers_after = {r[0] for r in query(shop, "select customer_id from customers")}
    assert customers_before - customers_after, "some customers were hard-deleted"
    gone = {("shop", str(c)) for c in customers_before - customers_after}
    assert not gone & {r for cluster in after for r in cluster}

    summary = json.loads((world / "truth" / "summary.json").read_text())
    assert summary["day"] == 6 and summary["as_of"] == "2026-01-07T00:00:00Z"
    assert summary["tables"]["crm.contacts"]["rows"] == count(crm, "contacts")
    assert summary["tables"]["shop.customers"]["rows"] == count(shop, "customers")
    assert summary["tables"]["shop.orders"]["status_updates"] > 0


def test_late_payments_arrive_in_later_days_files(world) -> None:
    if load_state(world).day < 3:
        advance_demo(world, days=3 - load_state(world).day)
    late = 0
    for rel, _, line in payment_lines(world):
        if not rel.endswith(("2026-01-01.jsonl", "2026-01-02.jsonl", "2026-01-03.jsonl")):
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        paid = datetime.fromtimestamp(row["paid_at"] / 1000, tz=UTC).date()
        late += paid < date.fromisoformat(rel[-16:-6])
    assert late > 0


def test_advance_needs_an_initialised_world(tmp_path) -> None:
    with pytest.raises(DemoError, match="run init_demo"):
        advance_demo(tmp_path)
    with pytest.raises(DemoError, match="days"):
        advance_demo(tmp_path, days=0)
