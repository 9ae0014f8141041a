"""Typed models of every file a user writes: `sources/*.yml`, `models/**.yml`, `[tool.ssot]`.

Everything the engine knows about the project passes through these pydantic models, so a typo
in a YAML file fails at load time with the file, the key and the fix instead of deep inside a
run. `pipelines.project` reads the files; this module only says what a valid file is.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.errors import ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Logical column types a source contract may declare. `decimal(p,s)` is also accepted.
SIMPLE_TYPES = ("integer", "bigint", "float", "string", "boolean", "date", "timestamp")
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")

PiiClass = Literal["none", "name", "email", "phone", "address", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits, underscores; "
            "not starting with a digit)"
        )
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta:
    """'2d', '6h', '30m', '45s', '1w' -> timedelta."""
    match = _DURATION.match(value.lower())
    if not match:
        raise ValueError(
            f"{value!r} is not a duration; write a number and a unit: 45s, 30m, 6h, 2d, 1w"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def decimal_params(type_name: str) -> tuple[int, int] | None:
    """Precision and scale of a `decimal(p,s)` type name, or None for other types."""
    match = _DECIMAL.match(type_name.strip().lower())
    return (int(match.group(1)), int(match.group(2))) if match else None


# ---------------------------------------------------------------------------------------------
# sources/<system>.yml


class ColumnSpec(_Strict):
    """One column of a source table: its logical type and the contract its values must meet."""

    name: str
    type: str = Field(
        description="integer, bigint, float, string, boolean, date, timestamp or decimal(p,s)"
    )
    nullable: bool = True
    description: str = ""
    pii: PiiClass = "none"
    accepted_values: list[str] | None = Field(
        default=None, description="Allowed values, compared after trimming and upper-casing."
    )
    pattern: str | None = Field(
        default=None, description="Regular expression a non-null value must match."
    )
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    timezone: str = Field(
        default="UTC",
        description="Zone of naive timestamps in the source; offsets in the value win.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_identifier(value, "column name")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        normalized = value.strip().lower()
        if normalized not in SIMPLE_TYPES and not _DECIMAL.match(normalized):
            raise ValueError(
                f"unknown column type {value!r}; use one of {', '.join(SIMPLE_TYPES)} or decimal(p,s)"
            )
        return normalized

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"pattern {value!r} is not a valid regular expression: {exc}"
                ) from exc
        return value


class HttpPagination(_Strict):
    """How an HTTP JSON API splits a collection into pages."""

    kind: Literal["none", "page", "offset", "cursor", "next_url", "link_header"] = "none"
    page_param: str = Field(
        default="page", description="kind=page: query parameter of the page number (1-based)."
    )
    offset_param: str = Field(
        default="offset", description="kind=offset: query parameter of the offset."
    )
    size_param: str | None = Field(
        default="limit", description="Query parameter of the page size; None to omit."
    )
    page_size: int = Field(default=100, gt=0)
    cursor_param: str = Field(
        default="cursor", description="kind=cursor: query parameter that takes the cursor."
    )
    cursor_path: str | None = Field(
        default=None, description="kind=cursor: dotted path of the next cursor in the body."
    )
    next_url_path: str | None = Field(
        default=None, description="kind=next_url: dotted path of the next page's URL."
    )
    max_pages: int | None = Field(
        default=None, gt=0, description="Stop after this many pages (a safety net)."
    )


class HttpOptions(_Strict):
    """An HTTP JSON API endpoint that lists one table's records."""

    endpoint: str = Field(description="Path appended to the connection URL, e.g. /v1/customers.")
    records_path: str | None = Field(
        default=None,
        description="Dotted path to the list of records in the body; None: the body is the list.",
    )
    params: dict[str, str] = Field(default_factory=dict, description="Fixed query parameters.")
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Header name -> environment variable holding its value (tokens never live in yml).",
    )
    pagination: HttpPagination = Field(default_factory=HttpPagination)
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=4, ge=0)


class FreshnessSpec(_Strict):
    """How old a source table's newest row may be (its latest cursor value, or its latest load
    when it has no timestamp cursor) before its freshness check warns or fails."""

    warn_after_hours: float | None = Field(default=None, gt=0)
    error_after_hours: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FreshnessSpec:
        if self.warn_after_hours is None and self.error_after_hours is None:
            raise ValueError("freshness needs warn_after_hours, error_after_hours or both")
        if (
            self.warn_after_hours is not None
            and self.error_after_hours is not None
            and self.warn_after_hours > self.error_after_hours
        ):
            raise ValueError(
                f"warn_after_hours ({self.warn_after_hours}) is after error_after_hours "
                f"({self.error_after_hours}); warn first"
            )
        return self


class SourceTableSpec(_Strict):
    """One table (or file set) of an operational system."""

    name: str
    description: str = ""
    identifier: str | None = Field(
        default=None, description="Table name in the source system, when it differs from `name`."
    )
    path: str | None = Field(
        default=None, description="File sources: glob relative to the connection root."
    )
    format: Literal["csv", "jsonl", "parquet"] | None = None
    http: HttpOptions | None = Field(
        default=None, description="HTTP sources: the endpoint and its paging."
    )
    primary_key: list[str]
    cursor: str | None = Field(
        default=None,
        description="Column whose value grows when a row changes; pulls after the first one read "
        "only rows at or after the stored cursor minus `lookback`.",
    )
    lookback: str = Field(
        default="0s",
        description="How far before the stored cursor an incremental pull starts, for late rows: "
        "e.g. '2d', '6h', '30m'. Rows already landed unchanged are never landed twice.",
    )
    delete_detection: Literal["none", "key_diff"] = Field(
        default="none",
        description="key_diff: compare the source's keys with the warehouse's on every pull and "
        "land a tombstone for each key that disappeared (for sources that hard-delete rows).",
    )
    freshness: FreshnessSpec | None = Field(
        default=None, description="This table's freshness SLA; default: the source's."
    )
    schema_policy: Literal["evolve", "freeze"] = Field(
        default="evolve",
        description="evolve: a new source column is added to raw and reported; a removed column "
        "lands as NULL. freeze: any column change is an error.",
    )
    columns: list[ColumnSpec]

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def lookback_delta(self) -> timedelta:
        return parse_duration(self.lookback)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_identifier(value, "table name")

    @model_validator(mode="after")
    def _keys_are_columns(self) -> SourceTableSpec:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns declared twice: {', '.join(duplicates)}")
        for key in [*self.primary_key, *([self.cursor] if self.cursor else [])]:
            if key not in names:
                raise ValueError(
                    f"{key!r} is used as primary_key/cursor but is not among the declared columns "
                    f"({', '.join(names)}); declare it under `columns`"
                )
        if not self.primary_key:
            raise ValueError("primary_key must name at least one column")
        return self

    @property
    def source_identifier(self) -> str:
        return self.identifier or self.name

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


class ConnectionSpec(_Strict):
    """Where a system lives: an env var that may hold the URL, and the embedded default."""

    url_env: str = Field(
        description="Environment variable that overrides the URL (secrets live there)."
    )
    default: str = Field(
        description="URL used when the env var is unset; relative paths are project-relative."
    )

    @field_validator("url_env")
    @classmethod
    def _env(cls, value: str) -> str:
        return _check_identifier(value, "url_env")


class SourceSpec(_Strict):
    """One operational system: `sources/<name>.yml`."""

    name: str
    description: str = ""
    owner: str
    connection: ConnectionSpec
    tables: list[SourceTableSpec]
    freshness: FreshnessSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_identifier(value, "source name")

    @model_validator(mode="after")
    def _unique_tables(self) -> SourceSpec:
        names = [t.name for t in self.tables]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tables declared twice: {', '.join(duplicates)}")
        return self

    def table(self, name: str) -> SourceTableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# models/**.yml (dbt-style properties)


BUILTIN_TESTS = frozenset({"unique", "not_null", "accepted_values", "relationships"})


class TestSpec(_Strict):
    """One data test attached to a model or column, normalized from dbt's several spellings."""

    __test__ = False  # not a pytest class

    #: one of BUILTIN_TESTS, or a generic test `{% test <name>(model, column_name, ...) %}`
    #: defined in macros/ or data_tests/generic/
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    column: str | None = None
    severity: Literal["error", "warn"] = "error"
    values: list[Any] | None = None
    to: str | None = None
    field: str | None = None
    #: `config: {where: ...}`: test only the rows matching this SQL condition (as in dbt)
    where: str | None = None
    #: a generic test's own arguments (`- positive_values: {allow_zero: true}`)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_TESTS

    @property
    def check_name(self) -> str:
        """Stable, readable name used as the Dagster asset check name."""
        parts: list[str] = [self.name]
        if self.column:
            parts.append(self.column)
        if self.name == "relationships" and self.to:
            parts.append(re.sub(r"\W+", "_", self.to).strip("_"))
        if self.arguments or self.where:
            # the same test with other arguments is another check; the suffix stays stable
            signature = json.dumps([self.arguments, self.where], sort_keys=True, default=str)
            parts.append(hashlib.sha1(signature.encode()).hexdigest()[:6])
        return "__".join(parts)


# Unknown keys are errors, so a typo (`tets:`) never silently drops checks. Keys dbt knows but
# this engine does not use yet are accepted and ignored (listed per level), so dbt yml ports as is.


class ModelColumnSpec(_Strict):
    name: str
    description: str = ""
    data_type: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    tests: list[TestSpec] = Field(default_factory=list)
    # accepted for dbt compatibility, not used yet
    quote: bool | None = None
    constraints: list[Any] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    policy_tags: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    docs: dict[str, Any] = Field(default_factory=dict)


class ModelPropertiesSpec(_Strict):
    """The yml block of one model: descriptions, contract, tests, owners, tags."""

    name: str
    description: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    columns: list[ModelColumnSpec] = Field(default_factory=list)
    tests: list[TestSpec] = Field(default_factory=list)
    # accepted for dbt compatibility, not used yet
    docs: dict[str, Any] = Field(default_factory=dict)
    access: str | None = None
    group: str | None = None
    constraints: list[Any] = Field(default_factory=list)
    latest_version: Any = None
    versions: list[Any] = Field(default_factory=list)
    deprecation_date: Any = None


class SeedColumnSpec(_Strict):
    name: str
    description: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class SeedConfigSpec(_Strict):
    #: column -> SQL type (the warehouse's dialect); other columns keep the type read from the CSV
    column_types: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class SeedSpec(_Strict):
    """The yml block of one seed (`seeds/<name>.csv`), as in dbt's `seeds:`."""

    name: str
    description: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    config: SeedConfigSpec = Field(default_factory=SeedConfigSpec)
    columns: list[SeedColumnSpec] = Field(default_factory=list)
    docs: dict[str, Any] = Field(default_factory=dict)


class SeedsFileSpec(BaseModel):
    seeds: list[SeedSpec] = Field(default_factory=list)


def parse_seeds_file(path: Path | str, raw: Any) -> SeedsFileSpec:
    """Validate one seeds yml document (`seeds:` list)."""
    if raw is None:
        return SeedsFileSpec()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with a `seeds:` list, got {type(raw).__name__}"
        )
    try:
        return SeedsFileSpec.model_validate({"seeds": raw.get("seeds", []) or []})
    except ValidationError as exc:
        raise describe_validation_error(path, exc) from exc


class ModelsFileSpec(BaseModel):
    # other top-level dbt keys (sources, seeds, macros, exposures, ...) belong to other features
    model_config = ConfigDict(extra="allow", frozen=True)

    version: int | None = 2
    models: list[ModelPropertiesSpec] = Field(default_factory=list)


def normalize_test(raw: Any, column: str | None) -> dict[str, Any]:
    """Turn a dbt test entry (`unique`, `{accepted_values: {values: [...]}}`, ...) into TestSpec fields."""
    if isinstance(raw, str):
        return {"name": raw, "column": column}
    if isinstance(raw, dict) and len(raw) == 1:
        ((name, args),) = raw.items()
        args = dict(args or {})
        config = dict(args.pop("config", {}) or {})
        nested = args.pop("arguments", None)
        if isinstance(nested, dict):
            args.update(nested)
        if "severity" in args:
            config["severity"] = args.pop("severity")
        out: dict[str, Any] = {"name": name, "column": args.pop("column_name", column)}
        if name in BUILTIN_TESTS:
            out.update(args)  # unknown keys stay errors: a typo never drops a check
        else:
            out["arguments"] = args
        if "severity" in config:
            out["severity"] = str(config["severity"]).lower()
        if config.get("where"):
            out["where"] = str(config["where"])
        return out
    raise ValueError(
        f"cannot read test entry {raw!r}: write `- unique` or `- accepted_values: {{values: [...]}}`"
    )


def _normalize_model_tests(raw_model: dict[str, Any]) -> dict[str, Any]:
    model = dict(raw_model)
    tests = list(model.pop("data_tests", []) or []) + list(model.get("tests", []) or [])
    model["tests"] = [normalize_test(t, None) for t in tests]
    columns = []
    for raw_col in model.get("columns", []) or []:
        col = dict(raw_col)
        col_tests = list(col.pop("data_tests", []) or []) + list(col.get("tests", []) or [])
        col["tests"] = [normalize_test(t, col.get("name")) for t in col_tests]
        columns.append(col)
    model["columns"] = columns
    return model


# ---------------------------------------------------------------------------------------------
# [tool.ssot] targets


class DuckDBTarget(_Strict):
    """The embedded default: one DuckDB file on this machine."""

    type: Literal["duckdb"]
    path: str = Field(
        default="warehouse/ssot.duckdb",
        description="The published database file analysts read, project-relative.",
    )
    build_path: str | None = Field(
        default=None,
        description="The file runs write (candidates, raw, state); default: `<path stem>.build"
        ".duckdb` beside `path`. Each run ends by publishing it to `path` atomically.",
    )
    threads: int | None = Field(
        default=None, description="DuckDB worker threads; default: all cores."
    )
    memory_limit: str | None = Field(default=None, description="e.g. '4GB'; default: DuckDB's own.")
    builders: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Loads and models a run runs at the same time, each on its own "
        "connection, a model once what it reads is landed and built (1: one after another).",
    )
    compress_text: bool = Field(
        default=False,
        description="Compress text columns with FSST (DuckDB's own default): a smaller file "
        "(about a third smaller for the demo), but every scan of such a column decompresses it "
        "and every checkpoint compresses what changed. Off: text is stored as dictionaries "
        "where values repeat, else plain (see docs/performance.md). A change applies to what "
        "is written from then on; a full refresh rewrites every table.",
    )

    def build_file(self) -> str:
        """The project-relative file a run writes (see ``build_path``)."""
        if self.build_path:
            return self.build_path
        path = PurePosixPath(self.path)
        return str(path.with_name(f"{path.stem}.build{path.suffix or '.duckdb'}"))


class BigQueryTarget(_Strict):
    """A BigQuery project: one dataset per layer. Credentials come from the standard Google
    mechanisms (GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server), never from here."""

    type: Literal["bigquery"]
    project: str = Field(description="The Google Cloud project holding the datasets.")
    location: str | None = Field(
        default=None, description="Region of new datasets and jobs, e.g. 'EU'."
    )
    maximum_bytes_billed: int | None = Field(
        default=None, gt=0, description="Cost guard: a query job that would bill more fails."
    )
    api_endpoint: str | None = Field(
        default=None,
        description="An emulator's URL (e.g. http://127.0.0.1:9050): anonymous credentials, "
        "for tests. SSOT_BIGQUERY_API_ENDPOINT overrides it.",
    )


TargetSpec = Annotated[DuckDBTarget | BigQueryTarget, Field(discriminator="type")]
_DEFAULT_TARGETS: dict[str, DuckDBTarget | BigQueryTarget] = {"local": DuckDBTarget(type="duckdb")}


class ProjectSettings(_Strict):
    """`[tool.ssot]` in pyproject.toml."""

    name: str = "ssot"
    default_target: str = "local"
    demo_dir: str = "demo_data"
    #: what "now" is for freshness checks: the machine's clock, or the demo world's simulated
    #: clock (the demo's data is dated in its own time, not today's)
    clock: Literal["wall", "demo"] = "wall"
    targets: dict[str, TargetSpec] = Field(default_factory=lambda: dict(_DEFAULT_TARGETS))
    #: folder-level model defaults, like dbt_project.yml's `models:`: a folder under models/
    #: (`staging`, `staging/crm`) -> config keys; the deepest folder wins, then the yml, then
    #: the model's own config()
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_exists(self) -> ProjectSettings:
        if self.default_target not in self.targets:
            raise ValueError(
                f"default_target {self.default_target!r} is not defined under [tool.ssot.targets]; "
                f"defined: {', '.join(sorted(self.targets)) or 'none'}"
            )
        return self


# ---------------------------------------------------------------------------------------------


def describe_validation_error(
    path: Path | str, error: ValidationError, prefix: str = ""
) -> ConfigError:
    """A ConfigError that names the file and every offending key with pydantic's reason."""
    lines = []
    for item in error.errors():
        loc = ".".join(
            str(part) for part in item["loc"] if not str(part).startswith("function-after")
        )
        where = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        lines.append(f"  - {where}: {item['msg']}")
    return ConfigError(f"{path}: invalid configuration\n" + "\n".join(lines))


def parse_models_file(path: Path | str, raw: Any) -> ModelsFileSpec:
    """Validate one models yml document (dbt `version: 2` layout)."""
    if raw is None:
        return ModelsFileSpec()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with a `models:` list, got {type(raw).__name__}"
        )
    try:
        models = [_normalize_model_tests(m) for m in raw.get("models", []) or []]
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return ModelsFileSpec.model_validate({**raw, "models": models})
    except ValidationError as exc:
        raise describe_validation_error(path, exc) from exc
