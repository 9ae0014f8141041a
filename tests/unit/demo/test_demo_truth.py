"""The ground truth agrees with the sources, and the documented matching rule recovers it."""

from __future__ import annotations

import json

import pytest
from demo_support import check_truth, norm_email, norm_phone, query, read_csv, truth_clusters


@pytest.fixture(scope="module")
def world(make_world):
    return make_world(seed=11, scale=0.1)


def test_truth_is_consistent_with_the_sources(world) -> None:
    check_truth(world)


def test_people_have_unique_identifiers_and_some_are_in_both_systems(world) -> None:
    clusters = truth_clusters(world)
    both = [c for c in clusters if {s for s, _ in c} == {"crm", "shop"}]
    assert len(both) > 0.2 * len(clusters)
    email_owner: dict[str, int] = {}
    phone_owner: dict[str, int] = {}
    records = {}
    for cid, email, phone in query(
        world / "crm.sqlite", "select contact_id, email, phone from contacts"
    ):
        records[("crm", cid)] = (email, phone)
    for cid, email, phone in query(
        world / "shop.sqlite", "select customer_id, email, phone from customers"
    ):
        records[("shop", str(cid))] = (email, phone)
    for person, cluster in enumerate(clusters):
        for key in cluster:
            email, phone = records[key]
            if norm_email(email):
                assert email_owner.setdefault(norm_email(email), person) == person
            if norm_phone(phone):
                assert phone_owner.setdefault(norm_phone(phone), person) == person


def test_summary_counts_match(world) -> None:
    summary = json.loads((world / "truth" / "summary.json").read_text())
    tables = summary["tables"]
    for system, table in [("crm", "accounts"), ("crm", "contacts")]:
        (count,) = query(world / f"{system}.sqlite", f"select count(*) from {table}")[0]
        assert tables[f"{system}.{table}"]["rows"] == count
    for table in ["customers", "products", "orders", "order_lines"]:
        (count,) = query(world / "shop.sqlite", f"select count(*) from {table}")[0]
        assert tables[f"shop.{table}"]["rows"] == count
    bad = read_csv(world / "truth" / "bad_records.csv")
    assert summary["truth"]["bad_records"] == len(bad)
    assert sum(t.get("junk", 0) for t in tables.values()) == len(bad)
    assert summary["people"]["real"] == len(truth_clusters(world))
    assert summary["day"] == 0 and summary["as_of"] == "2026-01-01T00:00:00Z"
