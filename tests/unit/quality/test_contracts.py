"""Contract.apply: coercion + pandera checks, quarantine, reconciliation, drift, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from pipelines.config import ColumnSpec, SourceSpec, SourceTableSpec
from pipelines.errors import ConfigError, TerminalSourceError
from pipelines.quality import (
    QUARANTINE_SCHEMA,
    Contract,
    ContractResult,
    Reject,
    arrow_type,
    contract_schema,
    quarantine_rows,
)

ROOT = Path(__file__).resolve().parents[3]


def spec(*columns: dict[str, Any], primary_key: tuple[str, ...] = ("id",)) -> SourceTableSpec:
    return SourceTableSpec(
        name="things", primary_key=list(primary_key), columns=[ColumnSpec(**c) for c in columns]
    )


def apply(
    table: SourceTableSpec, data: dict[str, list[Any]], rejects: tuple[Reject, ...] = ()
) -> ContractResult:
    result = Contract("shop", table).apply(pa.record_batch(data), "batch-1", rejects)
    assert result.rows_in == result.rows_valid + result.rows_rejected
    assert result.rows_valid == result.valid.num_rows
    assert result.quarantine.num_rows == result.rows_rejected
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    return result


def checks(result: ContractResult) -> list[list[tuple[str | None, str]]]:
    """(column, check) pairs of every quarantined row, in quarantine order."""
    return [
        [(f["column"], f["check"]) for f in json.loads(row)]
        for row in result.quarantine.column("failed_checks").to_pylist()
    ]


def originals(result: ContractResult) -> list[dict[str, Any]]:
    return [json.loads(row) for row in result.quarantine.column("original_row").to_pylist()]


def invoices() -> SourceTableSpec:
    raw = yaml.safe_load((ROOT / "sources" / "billing.yml").read_text())
    return SourceSpec.model_validate(raw).table("invoices")


def invoice_batch(rows: int = 3, **overrides: list[Any]) -> dict[str, list[Any]]:
    data: dict[str, list[Any]] = {
        "invoice_id": [f"INV-{i}" for i in range(rows)],
        "order_id": [str(i) for i in range(rows)],
        "customer_email": ["a@example.com"] * rows,
        "amount": ["10.00"] * rows,
        "currency": ["EUR"] * rows,
        "issued_at": ["2026-01-03T09:15:00+02:00"] * rows,
        "exported_at": [1767225600000] * rows,
    }
    data.update(overrides)
    return data


# ---------------------------------------------------------------------------------------------
# Schema


def test_arrow_types() -> None:
    def t(type_: str) -> pa.DataType:
        return arrow_type(ColumnSpec(name="c", type=type_))

    assert t("integer") == pa.int64() and t("bigint") == pa.int64()
    assert t("float") == pa.float64()
    assert t("string") == pa.string()
    assert t("boolean") == pa.bool_()
    assert t("date") == pa.date32()
    assert t("timestamp") == pa.timestamp("us", tz="UTC")
    assert t("decimal(12, 2)") == pa.decimal128(12, 2)


def test_contract_schema_orders_and_flags_columns() -> None:
    schema = contract_schema(invoices())
    assert schema.names == [
        "invoice_id",
        "order_id",
        "customer_email",
        "amount",
        "currency",
        "issued_at",
        "exported_at",
    ]
    assert [f.nullable for f in schema] == [False, False, True, False, False, False, False]
    # a primary key is never nullable, whatever the yml says
    table = spec({"name": "id", "type": "integer"}, {"name": "x", "type": "string"})
    assert [f.nullable for f in contract_schema(table)] == [False, True]


# ---------------------------------------------------------------------------------------------
# The happy path and the shape of the result


def test_valid_rows_come_out_typed() -> None:
    result = apply(invoices(), invoice_batch(2, order_id=["1", " 2 "], amount=[12.5, 7.0]))
    assert result.rows_in == 2 and result.rows_rejected == 0
    assert result.valid.schema == contract_schema(invoices())
    row = result.valid.to_pylist()[1]
    assert row["order_id"] == 2
    assert row["amount"] == Decimal("7.00")
    assert row["issued_at"] == datetime(2026, 1, 3, 7, 15, tzinfo=UTC)
    assert row["exported_at"] == datetime(2026, 1, 1, tzinfo=UTC)


def test_offsets_survive_validation_importing_pandera() -> None:
    # Validating a batch imports pandera, which (unless it is already set) sets
    # PYARROW_IGNORE_TIMEZONE=1 for the whole process; pyarrow then stores an aware datetime's
    # wall clock as UTC. Later batches of the run, built from driver datetimes with offsets
    # (PostgreSQL timestamptz), must still land the right instant.
    contract = Contract(
        "shop", spec({"name": "id", "type": "integer"}, {"name": "at", "type": "timestamp"})
    )
    # (a batch with a bad row: only those reach pandera)
    first = contract.apply(
        pa.record_batch({"id": [1, None], "at": ["2026-01-03T09:15:00Z"] * 2}), "b1"
    )
    assert "pandera" in sys.modules
    assert first.valid.column("at").to_pylist() == [datetime(2026, 1, 3, 9, 15, tzinfo=UTC)]
    berlin = datetime(2026, 1, 3, 9, 15, tzinfo=timezone(timedelta(hours=2)))
    second = contract.apply(pa.record_batch({"id": [2], "at": pa.array([berlin])}), "b2")
    assert second.valid.column("at").to_pylist() == [datetime(2026, 1, 3, 7, 15, tzinfo=UTC)]


def test_duplicate_keys_in_one_batch_are_kept() -> None:
    result = apply(invoices(), invoice_batch(2, invoice_id=["INV-1", "INV-1"]))
    assert result.rows_valid == 2


def test_zero_rows() -> None:
    empty = {name: pa.array([], pa.string()) for name in invoice_batch()}
    result = Contract("billing", invoices()).apply(pa.record_batch(empty), "b0")
    assert (result.rows_in, result.rows_valid, result.rows_rejected) == (0, 0, 0)
    assert result.valid.schema == contract_schema(invoices())
    assert result.quarantine.num_rows == 0 and result.quarantine.schema == QUARANTINE_SCHEMA


def test_every_row_bad() -> None:
    n = 50
    result = apply(invoices(), invoice_batch(n, currency=["XXX"] * n, amount=["-1"] * n))
    assert (result.rows_in, result.rows_valid, result.rows_rejected) == (n, 0, n)
    assert result.valid.schema == contract_schema(invoices())
    assert checks(result) == [[("amount", "min"), ("currency", "accepted_values")]] * n


# ---------------------------------------------------------------------------------------------
# Checks


def test_not_nullable_column() -> None:
    result = apply(invoices(), invoice_batch(3, currency=["EUR", None, "USD"]))
    assert result.rows_valid == 2
    assert checks(result) == [[("currency", "not_null")]]


def test_nullable_column_accepts_nulls() -> None:
    assert apply(invoices(), invoice_batch(2, customer_email=[None, None])).rows_valid == 2


def test_accepted_values_ignore_case_and_spaces_but_keep_the_value() -> None:
    result = apply(invoices(), invoice_batch(4, currency=[" usd", "Eur ", "gbp", "XXX"]))
    assert result.valid.column("currency").to_pylist() == [" usd", "Eur ", "gbp"]
    failed = json.loads(result.quarantine.column("failed_checks")[0].as_py())
    assert failed == [
        {"column": "currency", "check": "accepted_values", "detail": "'XXX' not in [USD, EUR, GBP]"}
    ]


def test_pattern_must_match_the_whole_value_as_is() -> None:
    ids = ["INV-1", "INV-2x", " INV-3", "xINV-4"]
    result = apply(invoices(), invoice_batch(4, invoice_id=ids))
    assert result.valid.column("invoice_id").to_pylist() == ["INV-1"]
    assert checks(result) == [[("invoice_id", "pattern")]] * 3


def test_pattern_that_re2_cannot_compile_falls_back_to_python() -> None:
    table = spec({"name": "id", "type": "string", "pattern": r"(?!TEST)[A-Z]+"})
    result = apply(table, {"id": ["PROD", "TESTX", "abc"]})
    assert result.valid.column("id").to_pylist() == ["PROD"]
    assert checks(result) == [[("id", "pattern")]] * 2


def test_min_and_max() -> None:
    table = spec(
        {"name": "id", "type": "integer"}, {"name": "qty", "type": "integer", "min": 1, "max": 10}
    )
    result = apply(table, {"id": [1, 2, 3, 4], "qty": ["1", "10", "0", "11"]})
    assert result.valid.column("qty").to_pylist() == [1, 10]
    assert checks(result) == [[("qty", "min")], [("qty", "max")]]
    details = [
        json.loads(r)[0]["detail"] for r in result.quarantine.column("failed_checks").to_pylist()
    ]
    assert details == ["0 is less than min 1", "11 is greater than max 10"]


def test_min_on_decimals_is_exact() -> None:
    table = spec(
        {"name": "id", "type": "integer"}, {"name": "price", "type": "decimal(12,2)", "min": 0.1}
    )
    result = apply(table, {"id": [1, 2], "price": ["0.10", "0.09"]})
    assert result.valid.column("price").to_pylist() == [Decimal("0.10")]


def test_max_length() -> None:
    table = spec(
        {"name": "id", "type": "integer"}, {"name": "name", "type": "string", "max_length": 3}
    )
    result = apply(table, {"id": [1, 2, 3], "name": ["abc", "abcd", "äöü"]})
    assert result.valid.column("name").to_pylist() == ["abc", "äöü"]
    assert checks(result) == [[("name", "max_length")]]


def test_null_and_blank_keys() -> None:
    result = apply(invoices(), invoice_batch(4, invoice_id=["INV-1", None, "", "   "]))
    assert result.rows_valid == 1
    assert [c[0] for c in checks(result)] == [("invoice_id", "null_key")] * 3
    keys = result.quarantine.column("record_key").to_pylist()
    assert keys == ['{"invoice_id": null}', '{"invoice_id": ""}', '{"invoice_id": "   "}']


def test_keys_are_not_nullable_even_when_the_yml_says_so() -> None:
    table = spec(
        {"name": "id", "type": "integer", "nullable": True}, {"name": "x", "type": "string"}
    )
    result = apply(table, {"id": [1, None], "x": ["a", "b"]})
    assert checks(result) == [[("id", "null_key")]]


def test_composite_key_is_recorded_as_received() -> None:
    table = spec(
        {"name": "a", "type": "integer"},
        {"name": "b", "type": "string"},
        {"name": "v", "type": "integer", "min": 0},
        primary_key=("a", "b"),
    )
    result = apply(table, {"a": [" 7 "], "b": ["x"], "v": [-1]})
    assert json.loads(result.quarantine.column("record_key")[0].as_py()) == {"a": " 7 ", "b": "x"}


def test_a_row_is_rejected_with_all_its_reasons() -> None:
    result = apply(
        invoices(),
        invoice_batch(
            1,
            invoice_id=["bad"],
            order_id=["4.2"],
            amount=["12.345"],
            currency=["XXX"],
            issued_at=[None],
        ),
    )
    assert checks(result) == [
        [
            ("invoice_id", "pattern"),
            ("order_id", "type"),
            ("amount", "type"),
            ("currency", "accepted_values"),
            ("issued_at", "not_null"),
        ]
    ]


def test_a_value_that_fails_coercion_is_not_also_reported_as_null() -> None:
    result = apply(invoices(), invoice_batch(1, order_id=["abc"]))
    assert checks(result) == [[("order_id", "type")]]
    detail = json.loads(result.quarantine.column("failed_checks")[0].as_py())[0]["detail"]
    assert detail == "'abc' is not an integer"


def test_invalid_utf8_is_quarantined_not_crashed() -> None:
    emails = pa.array([b"a@example.com", b"b\xff@example.com", b"c@example.com"]).view(pa.string())
    data = invoice_batch(3)
    data["customer_email"] = emails  # type: ignore[assignment]
    result = apply(invoices(), data)
    assert result.rows_valid == 2
    assert checks(result) == [[("customer_email", "encoding")]]
    assert originals(result)[0]["customer_email"] == "b\ufffd@example.com"


# ---------------------------------------------------------------------------------------------
# Quarantine content


def test_original_row_keeps_the_values_as_received() -> None:
    result = apply(
        invoices(), invoice_batch(1, order_id=[" 7 "], amount=[2.675], currency=[" xxx "])
    )
    row = originals(result)[0]
    assert row["order_id"] == " 7 "
    assert row["amount"] == 2.675
    assert row["currency"] == " xxx "
    assert row["exported_at"] == 1767225600000
    quarantine = result.quarantine.to_pylist()[0]
    assert (quarantine["source"], quarantine["table"], quarantine["batch_id"]) == (
        "shop",
        "invoices",
        "batch-1",
    )
    assert quarantine["quarantined_at"].tzinfo is not None


def test_rejects_from_the_connector_are_counted_and_quarantined() -> None:
    rejects = (
        Reject(
            "invoices/invoices_2026-01-02.csv:17",
            "INV-9,1,x",
            "broken_csv_line: expected 7 fields, saw 5",
        ),
        Reject("payments/p.jsonl:3", "{not json", "not really parseable"),
    )
    result = apply(invoices(), invoice_batch(2, currency=["EUR", "XXX"]), rejects)
    assert (result.rows_in, result.rows_valid, result.rows_rejected) == (4, 1, 3)
    rows = result.quarantine.to_pylist()
    assert [r["record_key"] for r in rows][1:] == [None, None]
    assert json.loads(rows[1]["failed_checks"]) == [
        {"column": None, "check": "broken_csv_line", "detail": "expected 7 fields, saw 5"}
    ]
    assert json.loads(rows[2]["failed_checks"])[0]["check"] == "unparseable"
    assert json.loads(rows[1]["original_row"]) == {
        "location": "invoices/invoices_2026-01-02.csv:17",
        "record": "INV-9,1,x",
    }


def test_quarantine_rows_for_rejects_alone() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    table = quarantine_rows(
        "billing", "invoices", "b1", [Reject("f.csv:2", "x", "broken_csv_line: 1 field")], at=at
    )
    assert table.schema == QUARANTINE_SCHEMA
    assert table.to_pylist()[0]["quarantined_at"] == at
    assert quarantine_rows("billing", "invoices", "b1", []).num_rows == 0


# ---------------------------------------------------------------------------------------------
# Drift and errors


def test_extra_columns_pass_through_and_are_reported() -> None:
    data: dict[str, Any] = invoice_batch(2)
    data["note"] = ["a", "b"]
    data["score"] = [1, 2]
    data["tags"] = pa.array([["x"], []], pa.list_(pa.string()))
    result = apply(invoices(), data)
    assert result.extra_columns == ("note", "score", "tags")
    assert result.valid.schema.names[-3:] == ["note", "score", "tags"]
    assert result.valid.column("score").type == pa.int64()
    assert result.valid.column("tags").to_pylist() == ['["x"]', "[]"]


def test_missing_declared_column_is_terminal() -> None:
    data = invoice_batch(1)
    del data["currency"]
    with pytest.raises(TerminalSourceError) as info:
        Contract("billing", invoices()).apply(pa.record_batch(data), "b1")
    message = str(info.value)
    assert "'billing'" in message and "'invoices'" in message and "'currency'" in message
    assert "yml" in message


def test_misplaced_checks_and_bad_timezones_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min/max"):
        Contract("s", spec({"name": "id", "type": "string", "min": 1}))
    with pytest.raises(ConfigError, match="pattern"):
        Contract("s", spec({"name": "id", "type": "integer", "pattern": "x"}))
    with pytest.raises(ConfigError, match="Mars/Base"):
        Contract("s", spec({"name": "id", "type": "timestamp", "timezone": "Mars/Base"}))


@pytest.mark.parametrize(
    ("column", "bound"),
    [
        ({"name": "id", "type": "integer"}, {"max": 1e20}),  # beyond a 64-bit integer
        ({"name": "id", "type": "decimal(12,2)"}, {"min": float("inf")}),
        ({"name": "id", "type": "float"}, {"min": float("nan")}),
    ],
)
def test_a_bound_no_column_can_hold_is_refused_when_the_contract_is_built(column, bound) -> None:
    # the bound's Arrow scalar is made with the first batch; its value is judged before
    with pytest.raises(ConfigError, match=r"sources/s\.yml.*column 'id'.*cannot bound"):
        Contract("s", spec({**column, **bound}))
    # what a column can hold is fine, infinite floats too
    Contract("s", spec({"name": "id", "type": "float", "max": float("inf"), "min": -1e300}))


@pytest.mark.parametrize("bad_every", [1, 2, 7, 1000])
def test_rows_in_always_reconciles(bad_every: int) -> None:
    n = 200
    amounts = ["abc" if i % bad_every == 0 else "1.00" for i in range(n)]
    result = apply(invoices(), invoice_batch(n, amount=amounts), (Reject("f:1", "x", "broken"),))
    assert result.rows_rejected == len(range(0, n, bad_every)) + 1


def test_pandera_sees_only_the_rows_a_check_rejects_and_reports_the_same(monkeypatch) -> None:
    from pipelines.quality.validation import RowValidator

    table = spec(
        {"name": "id", "type": "string", "pattern": "[A-Z]-[0-9]+"},
        {"name": "n", "type": "integer", "nullable": False, "min": 0, "max": 9},
        {"name": "f", "type": "float", "nullable": False, "max": 1.5},
        {"name": "c", "type": "string", "accepted_values": ["EUR", "USD"]},
        {"name": "s", "type": "string", "max_length": 3},
        {"name": "free", "type": "string"},
    )
    rows = 5000
    columns = {
        "id": pa.array([f"A-{i}" for i in range(rows)]),
        "n": pa.array([i % 10 for i in range(rows)], pa.int64()),
        "f": pa.array([0.5] * rows),
        "c": pa.array(["eur "] * rows),
        "s": pa.array(["abc"] * rows),
        "free": pa.array([None] * rows, pa.string()),
    }
    clean = dict(columns)
    bad = {
        "id": {7: "a-7", 8: " ", 9: None},
        "n": {100: -1, 101: 10, 102: None},
        "f": {200: float("nan"), 201: 2.0, 202: None},
        "c": {300: "GBP", 301: None},
        "s": {400: "abcd", 4999: "toolong"},
    }
    for name, values in bad.items():
        data = columns[name].to_pylist()
        for row, value in values.items():
            data[row] = value
        columns[name] = pa.array(data, columns[name].type)
    validator = RowValidator("shop", table)
    found = validator.failures(columns)
    assert {f.row for f in found} == {7, 8, 9, 100, 101, 102, 200, 201, 202, 300, 400, 4999}
    # the same failures, worded the same, as when pandera judges every row
    monkeypatch.setattr(RowValidator, "_suspects", lambda self, data: None)
    assert sorted(validator.failures(columns), key=repr) == sorted(found, key=repr)
    # a column of another type than declared goes to pandera whole, whose dtype check fails
    monkeypatch.undo()
    wrong = {**clean, "n": clean["n"].cast(pa.int32())}
    with pytest.raises(RuntimeError, match="not tied to a row"):
        validator.failures(wrong)


def test_a_batch_without_bad_rows_never_imports_pandera() -> None:
    code = (
        "import sys, pyarrow as pa; from pipelines.config import ColumnSpec, SourceTableSpec; "
        "from pipelines.quality import Contract; "
        "t = SourceTableSpec(name='t', primary_key=['id'], columns=[ColumnSpec(name='id', "
        "type='integer'), ColumnSpec(name='c', type='string', accepted_values=['A'])]); "
        "r = Contract('s', t).apply(pa.record_batch({'id': ['1', '2', '3'], "
        "'c': ['a', 'A', None]}), 'b'); "
        "assert r.rows_valid == 3; sys.exit('pandera' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_importing_the_package_does_not_import_pandas() -> None:
    code = "import sys, pipelines.quality; sys.exit('pandas' in sys.modules or 'pandera' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_blank_text_in_a_typed_key_is_a_null_key() -> None:
    table = spec({"name": "id", "type": "integer"}, {"name": "x", "type": "string"})
    result = apply(table, {"id": ["1", "  ", "x"], "x": ["a", "b", "c"]})
    assert checks(result) == [[("id", "null_key")], [("id", "type")]]
    assert originals(result)[0]["id"] == "  "


def test_empty_csv_fields_are_missing_values() -> None:
    result = apply(invoices(), invoice_batch(2, order_id=["1", ""], customer_email=["", "x@y.z"]))
    assert checks(result) == [[("order_id", "not_null")]]
    assert result.valid.column("customer_email").to_pylist() == [""]


def test_a_declared_column_twice_in_the_batch_is_terminal() -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1]), pa.array([2])], schema=pa.schema([("id", pa.int64()), ("id", pa.int64())])
    )
    with pytest.raises(TerminalSourceError, match="more than once"):
        Contract("s", spec({"name": "id", "type": "integer"})).apply(batch, "b1")


def test_decimal_wider_than_decimal128_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="decimal"):
        Contract(
            "s", spec({"name": "id", "type": "integer"}, {"name": "d", "type": "decimal(40,2)"})
        )


def test_the_pandera_schema_is_built_once_from_the_yml() -> None:
    import pandera.pandas as pandera

    from pipelines.quality.validation import RowValidator

    validator = RowValidator("billing", invoices())
    schema = validator.schema
    assert isinstance(schema, pandera.DataFrameSchema)
    assert validator.schema is schema
    # customer_email has no checks, so pandera never sees it
    assert list(schema.columns) == [
        "invoice_id",
        "order_id",
        "amount",
        "currency",
        "issued_at",
        "exported_at",
    ]
    assert not schema.columns["invoice_id"].nullable
    assert [c.name for c in schema.columns["invoice_id"].checks] == ["null_key", "pattern"]


def test_view_large_and_dictionary_layouts() -> None:
    table = spec(
        {"name": "id", "type": "integer"},
        {"name": "ts", "type": "timestamp"},
        {"name": "s", "type": "string", "max_length": 3},
    )
    batch = pa.record_batch(
        {
            "id": pa.array(["1", "2", "3"], pa.large_string()),
            "ts": pa.array(
                ["2026-01-03 09:00:00", "2026-01-03T09:00:00Z", "bad"], pa.string_view()
            ),
            "s": pa.array(["a", "b", "long"]).dictionary_encode(),
            "note": pa.array(["x", "y", "z"], pa.string_view()),
        }
    )
    result = Contract("s", table).apply(batch, "b1")
    assert result.valid.column("id").to_pylist() == [1, 2]
    assert result.valid.column("note").to_pylist() == ["x", "y"]
    assert checks(result) == [[("ts", "type"), ("s", "max_length")]]
    assert originals(result) == [{"id": "3", "ts": "bad", "s": "long", "note": "z"}]


def test_building_a_contract_does_not_import_pandas() -> None:
    """Validating a project builds every contract; pyarrow imports pandas with its first array
    or scalar, so the check functions make their value sets and bounds on first use."""
    code = (
        "import sys; from pipelines.config import ColumnSpec, SourceTableSpec; "
        "from pipelines.quality import Contract; "
        "t = SourceTableSpec(name='t', primary_key=['id'], columns=[ColumnSpec(name='id', "
        "type='integer'), ColumnSpec(name='c', type='string', accepted_values=['A'], "
        "pattern='^[A-Z]$', max_length=1), ColumnSpec(name='n', type='decimal(12,2)', min=0, "
        "max=10), ColumnSpec(name='f', type='float', min=0.5)]); "
        "Contract('s', t); sys.exit('pandas' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
