"""Original rows as JSON, whatever Python types Arrow hands back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from pipelines.quality.jsonvalues import dumps


def test_values_json_cannot_write_itself() -> None:
    text = dumps(
        {
            "amount": Decimal("12.50"),
            "at": datetime(2026, 1, 3, 9, 15, tzinfo=UTC),
            "day": date(2026, 1, 3),
            "gap": timedelta(hours=1),
            "raw": b"caf\xc3\xa9\xff",
            "pairs": [("k", 1)],
            "name": "Zoë",
        }
    )
    assert json.loads(text) == {
        "amount": "12.50",
        "at": "2026-01-03T09:15:00+00:00",
        "day": "2026-01-03",
        "gap": "1:00:00",
        "raw": "café\ufffd",
        "pairs": [["k", 1]],
        "name": "Zoë",
    }
    assert "Zoë" in text


def test_non_finite_floats_and_odd_keys_still_give_valid_json() -> None:
    text = dumps({"x": float("nan"), "y": [float("inf")], "z": {Decimal(1): 2}})
    assert json.loads(text) == {"x": "nan", "y": ["inf"], "z": {"1": 2}}
    assert "NaN" not in text
