"""File sources: a glob of CSV, JSON-lines or Parquet files under a folder (gzip allowed).

CSV and JSON lines take a fast path (Arrow's parsers on a chunk of lines) and fall back to
line-by-line parsing only for a chunk that fails, so one broken line costs one chunk's reparse
and is turned into a :class:`Reject` with its file and line number instead of failing the run.
Every CSV value arrives as text: typing is the contract's job.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from pipelines.errors import TerminalSourceError
from pipelines.extract.base import DEFAULT_BATCH_ROWS, Connector, Extracted, Pull
from pipelines.quality.contracts import Reject

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.config import SourceTableSpec

# Python's csv module refuses a field over 128 KiB ("field larger than field limit"), which
# would reject a valid line with a long text field whenever its chunk is read line by line
# (Arrow, the fast path, has no such limit). The limit is a C long.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb")


def _line_chunks(handle: IO[bytes], size: int, start: int) -> Iterator[list[tuple[int, bytes]]]:
    """Chunks of at most ``size`` (1-based line number, line) pairs, line endings stripped and
    blank lines left out.

    ``start`` is the number of the next line ``handle`` yields (2 after a CSV header).
    """
    chunk: list[tuple[int, bytes]] = []
    for number, raw in enumerate(handle, start=start):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        chunk.append((number, line))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _as_text_batch(names: list[str], rows: list[list[str | None]]) -> pa.RecordBatch:
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pa.RecordBatch.from_arrays(
        [pa.array(list(col), pa.string()) for col in columns], names=names
    )


@dataclass
class _Judged:
    """Lines read one by one: what the accepted ones hold, a Reject for each of the others."""

    rows: list[Any] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rejected: set[int] = field(default_factory=set)  # their line numbers

    def reject(self, number: int, reject: Reject) -> None:
        self.rejected.add(number)
        self.rejects.append(reject)


def _one_batch(table: pa.Table, lines: int) -> pa.RecordBatch | None:
    """The table as one batch, or None unless it holds one row per line."""
    if table.num_rows != lines:
        return None
    return table.combine_chunks().to_batches()[0]


def _read_chunk(
    numbered: list[tuple[int, bytes]],
    parse: Callable[[list[bytes]], pa.RecordBatch | None],
    slow: Callable[[list[tuple[int, bytes]]], _Judged],
    rows_batch: Callable[[list[Any]], pa.RecordBatch],
) -> Extracted:
    """A chunk of (line number, line) pairs as one batch and the Rejects of its broken lines,
    in line order. Arrow reads the chunk; when it refuses it (a broken line), each line is
    judged alone (``slow``) and Arrow reads the lines not rejected, so a chunk with a broken
    line is typed as one without. Only the rejected lines' locations are spelled out: naming
    every line's file and number cost 0.45 s for a day's 13,566 invoices.
    """
    whole = parse([line for _, line in numbered])
    if whole is not None:
        return Extracted(whole)
    judged = slow(numbered)
    kept = [line for number, line in numbered if number not in judged.rejected]
    batch = parse(kept) if kept else None
    if kept and batch is None:
        # Arrow refuses even the accepted lines (a JSON field holding numbers on some lines
        # and text on others, say): the batch as Python read them
        batch = rows_batch(judged.rows)
    if (batch.num_rows if batch is not None else 0) != len(kept):
        raise TerminalSourceError(
            f"lines {numbered[0][0]}-{numbered[-1][0]}: {len(kept)} lines were accepted but "
            f"{0 if batch is None else batch.num_rows} rows read; report this as a bug"
        )
    return Extracted(batch, tuple(judged.rejects))


def _records_batch(records: list[dict[str, Any]]) -> pa.RecordBatch:
    """JSON objects as a batch with a column for every key any of them has: typed as Python
    typed them, or all text when they disagree (a number here, text there)."""
    import pyarrow as pa

    names = list(dict.fromkeys(key for record in records for key in record))
    try:
        return pa.RecordBatch.from_pydict({n: [r.get(n) for r in records] for n in names})
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
        return _as_text_batch(names, [[_text(r.get(n)) for n in names] for r in records])


def _text(value: Any) -> str | None:
    """A JSON value as text: objects and arrays as JSON, lone surrogates replaced."""
    if value is None:
        return None
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, (dict, list))
        else str(value)
    )
    return text.encode("utf-8", errors="replace").decode("utf-8")


class FileConnector(Connector):
    schemes = ("file",)

    @property
    def folder(self) -> Path:
        return Path(self.url.removeprefix("file://"))

    def files(self, table: SourceTableSpec) -> list[Path]:
        if not table.path:
            raise TerminalSourceError(
                f"sources/{self.source}.yml: table {table.name!r} needs `path` (a glob under "
                f"{self.folder}) because the source is a folder of files"
            )
        files = sorted(p for p in self.folder.glob(table.path) if p.is_file())
        if not files:
            raise TerminalSourceError(
                f"source {self.source!r}, table {table.name!r}: no file matches {table.path!r} "
                f"under {self.folder}. For the demo run `ssot demo init`; otherwise check `path` "
                "in the yml or the source's URL env var."
            )
        return files

    def _location(self, path: Path, line: int) -> str:
        return f"{self.relative(path)}:{line}"

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.folder).as_posix()
        except ValueError:
            return path.as_posix()

    def read(
        self,
        table: SourceTableSpec,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pull: Pull | None = None,
    ) -> Iterator[Extracted]:
        """Read every matching file not landed before (or changed since), oldest name first."""
        fmt = table.format or _format_from_glob(table.path or "")
        known = pull.known_files if pull is not None else {}
        for path in self.files(table):
            name = self.relative(path)
            mark = fingerprint(path)
            if known.get(name) == mark:
                continue
            if fmt == "csv":
                units = self._read_csv(path, batch_rows)
            elif fmt == "jsonl":
                units = self._read_jsonl(path, batch_rows)
            else:
                units = self._read_parquet(path, batch_rows)
            last: Extracted | None = None
            for unit in units:
                if last is not None:
                    yield last
                last = unit
            done = ((name, mark),)
            yield replace(last, files=done) if last is not None else Extracted(None, files=done)

    # -- CSV ----------------------------------------------------------------------------------
    def _read_csv(self, path: Path, batch_rows: int) -> Iterator[Extracted]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        with _open(path) as handle:
            header_raw = handle.readline().rstrip(b"\r\n")
            try:
                names = next(csv.reader([header_raw.decode("utf-8-sig")]))
            except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
                raise TerminalSourceError(
                    f"{path}: cannot read the CSV header line ({exc}); the file is not a CSV export"
                ) from None
            types = dict.fromkeys(names, pa.string())

            def parse(lines: list[bytes]) -> pa.RecordBatch | None:
                try:
                    table = pcsv.read_csv(
                        io.BytesIO(header_raw + b"\n" + b"\n".join(lines)),
                        read_options=pcsv.ReadOptions(use_threads=False),
                        parse_options=pcsv.ParseOptions(newlines_in_values=False),
                        # Only an empty field is NULL ('NA', 'null' stay text), quoted or not:
                        # the line-by-line path cannot tell quoted from unquoted emptiness.
                        convert_options=pcsv.ConvertOptions(
                            column_types=types,
                            null_values=[""],
                            strings_can_be_null=True,
                            quoted_strings_can_be_null=True,
                        ),
                    )
                except (pa.ArrowInvalid, UnicodeDecodeError):
                    return None
                return _one_batch(table, len(lines))

            def slow(numbered: list[tuple[int, bytes]]) -> _Judged:
                return self._csv_slow(path, names, numbered)

            for numbered in _line_chunks(handle, batch_rows, start=2):
                yield _read_chunk(numbered, parse, slow, lambda rows: _as_text_batch(names, rows))

    def _csv_slow(self, path: Path, names: list[str], numbered: list[tuple[int, bytes]]) -> _Judged:
        """The lines (with their numbers) read one by one by Python's csv module: the rows of
        those it accepts and a Reject for each of the others."""
        judged = _Judged()
        for number, raw in numbered:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                judged.reject(
                    number,
                    Reject(
                        self._location(path, number),
                        raw.decode("utf-8", errors="replace"),
                        f"invalid_utf8: {exc.reason} at byte {exc.start}",
                    ),
                )
                continue
            try:
                fields = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                judged.reject(
                    number, Reject(self._location(path, number), text, f"broken_csv_line: {exc}")
                )
                continue
            if len(fields) != len(names):
                judged.reject(
                    number,
                    Reject(
                        self._location(path, number),
                        text,
                        f"broken_csv_line: expected {len(names)} fields, saw {len(fields)}",
                    ),
                )
                continue
            judged.rows.append([value if value != "" else None for value in fields])
        return judged

    # -- JSON lines ---------------------------------------------------------------------------
    def _read_jsonl(self, path: Path, batch_rows: int) -> Iterator[Extracted]:
        import pyarrow as pa
        import pyarrow.json as pjson

        def parse(lines: list[bytes]) -> pa.RecordBatch | None:
            # Arrow is given objects only: it takes a `null` line for a row of nulls, and one
            # as the first line crashed the process (pyarrow 26); the others are judged alone
            if not all(line.lstrip()[:1] == b"{" for line in lines):
                return None
            try:
                table = pjson.read_json(io.BytesIO(b"\n".join(lines)))
                # Arrow's JSON reader lets bytes that are not UTF-8 through inside strings;
                # the warehouse would refuse the whole load, so the line is judged alone
                table.validate(full=True)
            except (pa.ArrowInvalid, UnicodeDecodeError):
                return None
            return _one_batch(table, len(lines))

        def slow(numbered: list[tuple[int, bytes]]) -> _Judged:
            return self._jsonl_slow(path, numbered)

        with _open(path) as handle:
            for numbered in _line_chunks(handle, batch_rows, start=1):
                yield _read_chunk(numbered, parse, slow, _records_batch)

    def _jsonl_slow(self, path: Path, numbered: list[tuple[int, bytes]]) -> _Judged:
        """The lines (with their numbers) read one by one by Python's json module: the records
        of those holding one JSON object and a Reject for each of the others."""
        judged = _Judged()
        for number, raw in numbered:
            try:
                value = json.loads(raw)
            except UnicodeDecodeError as exc:
                why = f"invalid_utf8: {exc.reason} at byte {exc.start}"
            except json.JSONDecodeError as exc:
                why = f"invalid_json: {exc}"
            else:
                if isinstance(value, dict):
                    judged.rows.append(value)
                    continue
                why = "invalid_json: a line must hold one JSON object"
            text = raw.decode("utf-8", errors="replace")
            judged.reject(number, Reject(self._location(path, number), text, why))
        return judged

    # -- Parquet ------------------------------------------------------------------------------
    def _read_parquet(self, path: Path, batch_rows: int) -> Iterator[Extracted]:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows):
                yield Extracted(batch)


def fingerprint(path: Path) -> str:
    """Size and modification time: a file whose fingerprint is unchanged is not read again."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _format_from_glob(pattern: str) -> str:
    name = pattern.removesuffix(".gz")
    for ext, fmt in (
        (".csv", "csv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".parquet", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise TerminalSourceError(
        f"cannot tell the file format of {pattern!r}; set `format:` in the table's yml"
    )
