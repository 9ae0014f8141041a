from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import SourceTableSpec
from pipelines.errors import ConfigError, TerminalSourceError
from pipelines.extract import connector_for


def table_spec(path: str, fmt: str | None = None) -> SourceTableSpec:
    return SourceTableSpec.model_validate(
        {
            "name": "t",
            "path": path,
            "format": fmt,
            "primary_key": ["id"],
            "columns": [{"name": "id", "type": "string"}, {"name": "v", "type": "string"}],
        }
    )


def read_all(folder: Path, spec: SourceTableSpec, batch_rows: int = 1000):
    connector = connector_for(f"file://{folder}", source="files", root=folder)
    units = list(connector.read(spec, batch_rows=batch_rows))
    rows = [row for u in units if u.batch is not None for row in u.batch.to_pylist()]
    rejects = [r for u in units for r in u.rejects]
    return rows, rejects


def test_csv_good_lines_fast_path_and_values_stay_text(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,v\n1,x\n2,\n3,"q,uoted"\n')
    rows, rejects = read_all(tmp_path, table_spec("*.csv"))
    assert rows == [{"id": "1", "v": "x"}, {"id": "2", "v": None}, {"id": "3", "v": "q,uoted"}]
    assert rejects == []


def test_csv_broken_lines_become_rejects_with_location(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(
        b'id,v\n1,x\n2,"unterminated\n3\n4,z\xff\xfe\n5,ok\n6,too,many\n'
    )
    rows, rejects = read_all(tmp_path, table_spec("*.csv"))
    assert [r["id"] for r in rows] == ["1", "5"]
    by_line = {r.location: r.reason.split(":")[0] for r in rejects}
    assert by_line == {
        "a.csv:3": "broken_csv_line",
        "a.csv:4": "broken_csv_line",
        "a.csv:5": "invalid_utf8",
        "a.csv:7": "broken_csv_line",
    }
    # nothing is lost: every data line is a row or a reject
    assert len(rows) + len(rejects) == 6


def test_csv_values_read_the_same_on_the_fast_and_the_line_by_line_path(tmp_path: Path) -> None:
    body = 'id,v\n1,NA\n2,""\n3,null\n4,\n'
    (tmp_path / "good.csv").write_text(body)
    (tmp_path / "bad.csv").write_text(body + "5,too,many\n")  # one broken line: slow path
    good, _ = read_all(tmp_path, table_spec("good.csv"))
    bad, rejects = read_all(tmp_path, table_spec("bad.csv"))
    assert (
        good
        == bad[:4]
        == [
            {"id": "1", "v": "NA"},
            {"id": "2", "v": None},
            {"id": "3", "v": "null"},
            {"id": "4", "v": None},
        ]
    )
    assert len(rejects) == 1


def test_csv_glob_over_many_files_and_gzip(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "2026-01-01.csv").write_text("id,v\n1,a\n")
    with gzip.open(tmp_path / "d" / "2026-01-02.csv.gz", "wt") as handle:
        handle.write("id,v\n2,b\n3,c\n")
    rows, _ = read_all(tmp_path, table_spec("d/*.csv*", "csv"))
    assert [r["id"] for r in rows] == ["1", "2", "3"]


def test_csv_batches_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,v\n" + "".join(f"{i},x\n" for i in range(25)))
    connector = connector_for(f"file://{tmp_path}", source="files", root=tmp_path)
    sizes = [
        u.batch.num_rows for u in connector.read(table_spec("*.csv"), batch_rows=10) if u.batch
    ]
    assert sizes == [10, 10, 5]


def test_jsonl_invalid_lines_are_rejected_not_lost(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "1", "v": "a"}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": "2", "v": None}),
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    rows, rejects = read_all(tmp_path, table_spec("*.jsonl"))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert sorted(r.location for r in rejects) == ["p.jsonl:2", "p.jsonl:3"]
    assert all(r.reason.startswith("invalid_json") for r in rejects)


def test_jsonl_a_broken_line_does_not_change_how_the_others_are_typed(tmp_path: Path) -> None:
    good = [json.dumps({"id": str(i), "v": f"2026-01-0{i} 10:00:00"}) for i in range(1, 4)]
    (tmp_path / "good.jsonl").write_text("\n".join(good) + "\n")
    (tmp_path / "bad.jsonl").write_text("\n".join([good[0], "{broken", *good[1:]]) + "\n")
    connector = connector_for(f"file://{tmp_path}", source="files", root=tmp_path)
    clean = [u for u in connector.read(table_spec("good.jsonl")) if u.batch is not None]
    mixed = [u for u in connector.read(table_spec("bad.jsonl")) if u.batch is not None]
    # Arrow reads the lines kept, as it reads a chunk without a broken line
    assert mixed[0].batch.schema == clean[0].batch.schema
    assert mixed[0].batch.to_pylist() == clean[0].batch.to_pylist()
    assert [r.location for u in mixed for r in u.rejects] == ["bad.jsonl:2"]


def test_jsonl_lines_arrow_reads_only_apart_are_all_kept(tmp_path: Path) -> None:
    # a number on one line, text on another: Arrow refuses them together, Python reads them
    lines = [json.dumps({"id": "1", "v": 1}), "[1]", json.dumps({"id": "2", "v": "a"})]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    rows, rejects = read_all(tmp_path, table_spec("*.jsonl"))
    assert rows == [{"id": "1", "v": "1"}, {"id": "2", "v": "a"}]
    assert [r.location for r in rejects] == ["p.jsonl:2"]


def test_reject_locations_count_the_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,v\n1,x\n\n\n2,too,many\n3,y\n")
    (tmp_path / "p.jsonl").write_text('{"id": "1"}\n\n{broken\n')
    rows, rejects = read_all(tmp_path, table_spec("a.csv"))
    assert [r["id"] for r in rows] == ["1", "3"]
    assert [r.location for r in rejects] == ["a.csv:5"]
    _, rejects = read_all(tmp_path, table_spec("p.jsonl"))
    assert [r.location for r in rejects] == ["p.jsonl:3"]


def test_jsonl_read_the_slow_way_keeps_every_key_of_every_line(tmp_path: Path) -> None:
    lines = ["{}", json.dumps({"id": "2", "v": 1}), json.dumps({"id": "3", "v": "a"}), "nope"]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    rows, rejects = read_all(tmp_path, table_spec("*.jsonl"))
    assert rows == [{"id": None, "v": None}, {"id": "2", "v": "1"}, {"id": "3", "v": "a"}]
    assert [r.location for r in rejects] == ["p.jsonl:4"]


def test_jsonl_lines_that_are_not_objects_are_rejected_wherever_they_are(tmp_path: Path) -> None:
    # Arrow reads a `null` line as a row of nulls (and crashed on one as the first line)
    (tmp_path / "p.jsonl").write_text('null\n{"id": "1"}\n  null\n{"id": "2"}\n')
    rows, rejects = read_all(tmp_path, table_spec("*.jsonl"))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert [r.location for r in rejects] == ["p.jsonl:1", "p.jsonl:3"]


def test_a_line_that_is_not_utf8_is_rejected_in_csv_and_json_lines(tmp_path: Path) -> None:
    """Arrow's JSON reader lets such bytes through inside a string, and the warehouse would
    then refuse the whole load: the line is rejected like a broken one, the others land."""
    (tmp_path / "p.jsonl").write_bytes(
        b'{"id": "1", "v": "ok"}\n{"id": "2", "v": "bad \xff\xfe"}\n{"id": "3", "v": "fine"}\n'
    )
    (tmp_path / "p.csv").write_bytes(b"id,v\n1,ok\n2,bad \xff\xfe\n3,fine\n")
    for name, line in (("p.jsonl", 2), ("p.csv", 3)):
        rows, rejects = read_all(tmp_path, table_spec(name))
        assert [r["id"] for r in rows] == ["1", "3"], name
        assert [(r.location, r.reason.split(":")[0]) for r in rejects] == [
            (f"{name}:{line}", "invalid_utf8")
        ]


def test_parquet_is_read_in_batches(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["1", "2", "3"], "v": ["a", "b", "c"]}), tmp_path / "x.parquet")
    rows, rejects = read_all(tmp_path, table_spec("*.parquet"), batch_rows=2)
    assert len(rows) == 3 and not rejects


def test_missing_files_are_a_clear_terminal_error(tmp_path: Path) -> None:
    with pytest.raises(
        TerminalSourceError, match=r"no file matches 'none/\*\.csv'.*ssot demo init"
    ):
        read_all(tmp_path, table_spec("none/*.csv"))


def test_unknown_scheme_names_the_source_and_hides_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        connector_for("oracle://scott:tiger@db/x", source="erp", root=tmp_path)
    assert "sources/erp.yml" in str(info.value)
    assert "tiger" not in str(info.value)


def test_a_long_field_is_kept_when_its_lines_are_read_one_by_one(tmp_path: Path) -> None:
    # a broken line sends its chunk through Python's csv module, whose default field limit
    # (128 KiB) would reject the valid line with a long text
    long = "x" * 300_000
    (tmp_path / "a.csv").write_text(f'id,v\n1,{long}\n2,"unterminated\n3,ok\n')
    rows, rejects = read_all(tmp_path, table_spec("*.csv"))
    assert [(r["id"], len(r["v"])) for r in rows] == [("1", 300_000), ("3", 2)]
    assert [(r.location, r.reason.split(":")[0]) for r in rejects] == [
        ("a.csv:3", "broken_csv_line")
    ]
