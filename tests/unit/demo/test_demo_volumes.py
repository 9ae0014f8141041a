"""Volumes follow the scale: people, contacts, customers, orders, lines, products, accounts."""

from __future__ import annotations

import json

import pytest
from demo_support import query

from pipelines.demo import DemoError, DemoState, init_demo, load_state
from pipelines.errors import SsotError


def counts(out):
    crm, shop = out / "crm.sqlite", out / "shop.sqlite"
    return {
        "accounts": query(crm, "select count(*) from accounts")[0][0],
        "contacts": query(crm, "select count(*) from contacts")[0][0],
        "customers": query(shop, "select count(*) from customers")[0][0],
        "products": query(shop, "select count(*) from products")[0][0],
        "orders": query(shop, "select count(*) from orders")[0][0],
        "order_lines": query(shop, "select count(*) from order_lines")[0][0],
    }


@pytest.mark.parametrize("scale", [0.05, 0.2])
def test_volumes_follow_the_scale(make_world, scale) -> None:
    out = make_world(scale=scale)
    people = round(10_000 * scale)
    n = counts(out)
    assert n["accounts"] == round(1_000 * scale)
    assert n["products"] == round(500 * scale)
    assert 0.66 * people < n["contacts"] < 0.76 * people
    assert 0.55 * people < n["customers"] < 0.64 * people
    assert 4.6 * people < n["orders"] < 5.4 * people
    assert 1.9 < n["order_lines"] / n["orders"] < 2.1
    summary = json.loads((out / "truth" / "summary.json").read_text())
    assert summary["people"]["created"] == people
    assert 0.25 * people < summary["people"]["in_both"] < 0.35 * people
    state = load_state(out)
    assert isinstance(state, DemoState)
    assert (state.seed, state.scale, state.day) == (3, scale, 0)
    assert state.next_order_id == n["orders"] + 1


def test_progress_lines_name_tables_and_rows(tmp_path) -> None:
    lines: list[str] = []
    init_demo(tmp_path, scale=0.05, seed=1, progress=lines.append)
    assert any(line.startswith("crm.contacts: ") and line.endswith(" rows") for line in lines)
    assert any(line.startswith("shop.order_lines: ") for line in lines)


def test_errors_are_demo_errors_with_a_clear_message(tmp_path) -> None:
    assert issubclass(DemoError, SsotError)
    with pytest.raises(DemoError, match=r"state\.json does not exist"):
        load_state(tmp_path / "nowhere")
    with pytest.raises(DemoError, match="scale"):
        init_demo(tmp_path, scale=0)
    with pytest.raises(DemoError, match="seed"):
        init_demo(tmp_path, scale=0.05, seed=-1)
    with pytest.raises(DemoError, match="unsupported database URL"):
        init_demo(tmp_path, scale=0.05, crm_url="oracle://x/y")
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(DemoError, match="not readable JSON"):
        load_state(tmp_path)
