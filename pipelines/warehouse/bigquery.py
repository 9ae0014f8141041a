"""BigQuery backend: the production warehouse, through google-cloud-bigquery.

The only module (with the DuckDB backend) allowed to import an engine client; it imports
``google.cloud.bigquery`` lazily so that loading the Dagster definitions stays fast.

* Schemas are datasets of the target's project (created on first use, in its location).
* Statements run as query jobs, each with the target's ``maximum_bytes_billed`` (a job that
  would bill more fails instead of costing money).
* Results come back as Arrow through the REST API (no BigQuery Storage API needed).
* Arrow batches land through Parquet load jobs: written to a temporary file batch by batch (memory
  stays bounded), loaded into a scratch table, read by the statement, dropped.
* There is no transactional DDL: :attr:`supports_transactions` is False, so write-audit-publish
  audits a candidate table and publishes it with ``CREATE OR REPLACE TABLE ... COPY`` (atomic).
"""

from __future__ import annotations

import itertools
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

from pipelines.errors import TerminalWarehouseError, TransientWarehouseError, WarehouseError
from pipelines.warehouse.base import Relation, Warehouse, _literal, merge_statement

if TYPE_CHECKING:
    import pyarrow as pa

SCRATCH_DATASET = "ssot_meta"
_TRANSIENT_REASONS = ("backendError", "internalError", "rateLimitExceeded", "jobRateLimitExceeded")


def _map_error(exc: Exception, sql: str) -> WarehouseError:
    """One place where the client's exceptions become transient or terminal project errors."""
    message = str(getattr(exc, "message", None) or exc)
    reasons = {e.get("reason") for e in getattr(exc, "errors", None) or [] if isinstance(e, dict)}
    snippet = " ".join(sql.split())[:300]
    cls = (
        TransientWarehouseError
        if reasons & set(_TRANSIENT_REASONS)
        or type(exc).__name__ in ("ServiceUnavailable", "ConnectionError")
        else TerminalWarehouseError
    )
    return cls(f"BigQuery: {message.strip()}\n  while running: {snippet}")


#: legacy type names of the tables API -> the standard SQL names INFORMATION_SCHEMA reports
_STANDARD_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


def _field_name(name: str) -> str:
    """A struct field's name as a type reads it: backquoted unless it is a plain identifier."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f"`{name}`"


def _column_type(field: Any) -> str:
    """A schema field's type as INFORMATION_SCHEMA.COLUMNS writes it: ``INT64``,
    ``NUMERIC(18, 2)``, ``STRING(10)``, ``ARRAY<STRUCT<a INT64, b STRING>>``."""
    kind = str(field.field_type).upper()
    kind = _STANDARD_TYPES.get(kind, kind)
    if kind == "STRUCT":
        kind = (
            "STRUCT<"
            + ", ".join(f"{_field_name(f.name)} {_column_type(f)}" for f in field.fields)
            + ">"
        )
    elif kind == "RANGE" and getattr(field, "range_element_type", None) is not None:
        kind = f"RANGE<{field.range_element_type.element_type}>"
    elif getattr(field, "precision", None) is not None:
        scale = f", {field.scale}" if getattr(field, "scale", None) is not None else ""
        kind = f"{kind}({field.precision}{scale})"
    elif getattr(field, "max_length", None) is not None:
        kind = f"{kind}({field.max_length})"
    return f"ARRAY<{kind}>" if str(field.mode or "").upper() == "REPEATED" else kind


class BigQueryWarehouse(Warehouse):
    """A session on a BigQuery project (or an emulator of it)."""

    dialect: ClassVar[str] = "bigquery"
    supports_transactions: ClassVar[bool] = False
    row_hash_type: ClassVar[str] = "INT64"

    def __init__(
        self,
        project: str,
        *,
        location: str | None = None,
        maximum_bytes_billed: int | None = None,
        api_endpoint: str | None = None,
        client: Any = None,
    ) -> None:
        from google.cloud import bigquery

        self._bq = bigquery
        self.project = project
        self._location = location  # the BigQuery region of new datasets and jobs
        self.maximum_bytes_billed = maximum_bytes_billed
        if client is None:
            if api_endpoint:  # an emulator: no Google credentials involved
                from google.api_core.client_options import ClientOptions
                from google.auth.credentials import AnonymousCredentials

                client = bigquery.Client(
                    project=project,
                    location=location,
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options=ClientOptions(api_endpoint=api_endpoint),
                )
            else:  # the standard mechanisms: GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata
                client = bigquery.Client(project=project, location=location)
        self._client = client
        self._endpoint = api_endpoint
        self._counter = itertools.count()
        self._datasets: set[str] = set()

    @property
    def location(self) -> str:
        return self.project if not self._endpoint else f"{self.project} at {self._endpoint}"

    def close(self) -> None:
        self._client.close()

    @classmethod
    def prepare(cls, expression: Any) -> Any:
        """BigQuery's REGEXP_REPLACE replaces every match and takes no flags: a replace-all
        (`'g'`) loses its flag; a replace-first (DuckDB's and PostgreSQL's default) cannot be
        written and is an error naming the call."""
        from sqlglot.errors import UnsupportedError

        calls = list(expression.find_all(exp.RegexpReplace))
        if not calls:
            return expression
        expression = expression.copy()
        for call in expression.find_all(exp.RegexpReplace):
            modifiers = call.args.get("modifiers")
            flags = modifiers.name if isinstance(modifiers, exp.Literal) else None
            if flags == "g":
                call.set("modifiers", None)
                call.set("single_replace", None)
            elif modifiers is not None:
                raise UnsupportedError(
                    f"{call.sql('duckdb')}: BigQuery's REGEXP_REPLACE takes no flags ({flags!r}); "
                    "use an inline flag in the pattern, e.g. '(?i)...'"
                )
            elif call.args.get("single_replace"):
                raise UnsupportedError(
                    f"{call.sql('duckdb')} replaces only the first match, BigQuery's "
                    "REGEXP_REPLACE replaces every match; add the 'g' flag if every match is meant"
                )
        return expression

    # -- SQL ----------------------------------------------------------------------------------
    def _job_config(self, **kwargs: Any) -> Any:
        config = self._bq.QueryJobConfig(**kwargs)
        if self.maximum_bytes_billed is not None:
            config.maximum_bytes_billed = self.maximum_bytes_billed
        return config

    def _run(self, sql: exp.Expression | str) -> Any:
        text = self.render(sql)
        try:
            job = self._client.query(text, job_config=self._job_config(), location=self._location)
            job.result()
        except Exception as exc:
            if isinstance(exc, WarehouseError):
                raise
            raise _map_error(exc, text) from exc
        return job

    def execute(self, sql: exp.Expression | str) -> None:
        self._run(sql)

    def query(self, sql: exp.Expression | str) -> pa.Table:
        job = self._run(sql)
        try:
            return job.result().to_arrow(create_bqstorage_client=False)
        except Exception as exc:
            raise _map_error(exc, self.render(sql)) from exc

    def estimate_bytes(self, sql: exp.Expression | exp.Query | str) -> int | None:
        """The bytes a statement would process (BigQuery's dry-run estimate); nothing runs."""
        text = self.render(sql)
        try:
            job = self._client.query(
                text,
                job_config=self._job_config(dry_run=True, use_query_cache=False),
                location=self._location,
            )
        except Exception as exc:
            raise _map_error(exc, text) from exc
        return int(job.total_bytes_processed or 0)

    # -- objects ------------------------------------------------------------------------------
    def _table_id(self, relation: Relation) -> str:
        return f"{self.project}.{relation.schema}.{relation.name}"

    def ensure_schema(self, schema: str) -> None:
        if schema in self._datasets:
            return
        dataset = self._bq.Dataset(f"{self.project}.{schema}")
        if self._location:
            dataset.location = self._location
        try:
            self._client.create_dataset(dataset, exists_ok=True)
        except Exception as exc:
            raise _map_error(exc, f"create dataset {schema}") from exc
        self._datasets.add(schema)

    def _get(self, relation: Relation) -> Any:
        from google.api_core.exceptions import NotFound

        try:
            return self._client.get_table(self._table_id(relation))
        except NotFound:
            return None
        except Exception as exc:
            raise _map_error(exc, f"get table {relation}") from exc

    def exists(self, relation: Relation) -> bool:
        return self._get(relation) is not None

    def drop(self, relation: Relation, *, kind: str = "TABLE") -> None:
        # through the tables API (a table or a view, whichever it is: ``kind`` only names it in
        # an error), not a DDL query job: a run drops dozens of scratch tables, and each job
        # costs BigQuery's job latency
        try:
            self._client.delete_table(self._table_id(relation), not_found_ok=True)
        except Exception as exc:
            raise _map_error(exc, f"drop {kind.lower()} {relation}") from exc

    def is_view(self, relation: Relation) -> bool:
        table = self._get(relation)
        return table is not None and table.table_type == "VIEW"

    def columns(self, relation: Relation) -> list[tuple[str, str]]:
        # from the table's metadata (one API call), not INFORMATION_SCHEMA.COLUMNS: a query job
        # per call, which a run makes several times per model
        table = self._get(relation)  # None also when its dataset does not exist
        if table is None:
            return []
        return [(field.name, _column_type(field)) for field in table.schema]

    def annotate(self, relation: Relation, description: str, labels: Mapping[str, str]) -> None:
        table = self._get(relation)
        if table is None:
            return
        table.description = description
        table.labels = {**{k: None for k in table.labels or {}}, **dict(labels)}
        try:
            self._client.update_table(table, ["description", "labels"])
        except Exception as exc:
            raise _map_error(exc, f"update table {relation}") from exc

    def execute_dml(self, statement: exp.Expression) -> int:
        return int(self._run(statement).num_dml_affected_rows or 0)

    def insert_select(self, relation: Relation, columns: Sequence[str], select: exp.Query) -> int:
        job = self._run(self._insert(relation, columns, select))
        return int(job.num_dml_affected_rows or 0)

    def replace_rows(
        self, relation: Relation, schema: pa.Schema, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        # one MERGE job, not a DELETE and an INSERT (two DML jobs, each with BigQuery's job
        # latency: a run writes a model's state and its relation's version for every model).
        # Each value is cast to its column's type: a bare NULL in the MERGE's source would be
        # an INT64 (the bookkeeping tables hold text and timestamps, which a cast reads from a
        # literal). A table to create, a column it lacks or one it has beyond ``schema`` (the
        # base's delete leaves that one NULL, an update would keep it), or a key given twice:
        # as the base does
        types = dict(self.columns(relation)) if rows else {}
        keys = [str(row[key]) for row in rows]
        names = list(schema.names)
        if not types or key not in names or set(names) != set(types) or len(set(keys)) != len(keys):
            super().replace_rows(relation, schema, key, rows)
            return
        selects = [
            exp.select(
                *[
                    exp.alias_(
                        exp.cast(
                            _literal(row.get(n)),
                            exp.DataType.build(types[n], dialect="bigquery"),
                        ),
                        n,
                        quoted=True,
                    )
                    for n in names
                ]
            )
            for row in rows
        ]
        source: exp.Query = selects[0]
        for select in selects[1:]:
            source = exp.union(source, select, distinct=False)
        self._run(merge_statement(relation, source, [key], names))

    def row_hash(self, columns: Sequence[exp.Expression]) -> exp.Expression:
        # A fingerprint of the row's values as JSON; each value is named so the JSON has keys.
        fields = [exp.alias_(c, f"c{i}") for i, c in enumerate(columns)]
        json = exp.Anonymous(this="TO_JSON_STRING", expressions=[exp.Struct(expressions=fields)])
        return exp.Anonymous(this="FARM_FINGERPRINT", expressions=[json])

    def median(self, value: exp.Expression) -> exp.Expression:
        # BigQuery has no aggregate median: the middle of 2 quantiles, exact for small inputs
        # and approximate (BigQuery's quantile sketch) for large ones.
        return exp.Bracket(
            this=exp.func("APPROX_QUANTILES", value, exp.Literal.number(2)),
            expressions=[exp.func("OFFSET", exp.Literal.number(1))],
        )

    def copy_table(self, source: Relation, target: Relation) -> None:
        self.ensure_schema(target.schema)
        self.execute(
            f"CREATE OR REPLACE TABLE {target.to_table().sql('bigquery')} "
            f"COPY {source.to_table().sql('bigquery')}"
        )

    def publish_table(self, candidate: Relation, target: Relation) -> None:
        if self.is_view(target):
            self.drop(target, kind="VIEW")
        self.copy_table(candidate, target)  # one atomic replace
        self.drop(candidate)

    # -- Arrow landing ------------------------------------------------------------------------
    def _load(self, relation: Relation, path: str, *, disposition: str, add_columns: bool) -> int:
        self.ensure_schema(relation.schema)
        bq = self._bq
        config = bq.LoadJobConfig(
            source_format=bq.SourceFormat.PARQUET,
            write_disposition=disposition,
        )
        if add_columns:
            config.schema_update_options = [bq.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        try:
            with Path(path).open("rb") as handle:
                job = self._client.load_table_from_file(
                    handle, self._table_id(relation), job_config=config, location=self._location
                )
            job.result()
        except Exception as exc:
            raise _map_error(exc, f"load into {relation}") from exc
        return int(job.output_rows or 0)

    def _write_parquet(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: str
    ) -> int:
        import pyarrow.parquet as pq

        written = 0
        with pq.ParquetWriter(path, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                written += batch.num_rows
        return written

    def _scratch(self) -> Relation:
        return Relation(SCRATCH_DATASET, f"_arrow_{uuid.uuid4().hex[:12]}_{next(self._counter)}")

    @contextmanager
    def arrow_source(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[exp.Table]:
        scratch = self._scratch()
        with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
            self._write_parquet(schema, batches, handle.name)  # a source error surfaces as itself
            self._load(scratch, handle.name, disposition="WRITE_TRUNCATE", add_columns=False)
        try:
            yield scratch.to_table()
        finally:
            self.drop(scratch)

    def replace_from_arrow(
        self, relation: Relation, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> int:
        with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
            written = self._write_parquet(schema, batches, handle.name)
            self._load(relation, handle.name, disposition="WRITE_TRUNCATE", add_columns=False)
        return written

    def append_arrow(
        self, relation: Relation, table: pa.Table, *, add_columns: bool = False
    ) -> int:
        if self.exists(relation) and not add_columns:
            present = {name for name, _ in self.columns(relation)}
            extra = [name for name in table.column_names if name not in present]
            if extra:
                raise TerminalWarehouseError(
                    f"BigQuery: {relation} has no column(s) {', '.join(extra)} to append into"
                )
        with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
            self._write_parquet(table.schema, table.to_batches(), handle.name)
            self._load(relation, handle.name, disposition="WRITE_APPEND", add_columns=add_columns)
        return int(table.num_rows)
