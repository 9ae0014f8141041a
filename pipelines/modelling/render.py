"""Jinja rendering of dbt-style models: `ref`, `source`, `config`, `this`, `is_incremental`.

A model is rendered twice. At parse time the Jinja functions only *record* what the model
asks for (its refs, sources and config), which gives the dependency graph without touching a
warehouse. At compile time they return real relation names for a target. The SQL the user
writes is in the model's dialect (DuckDB by default) and is transpiled by sqlglot afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
from sqlglot import exp

from pipelines.errors import ModelError
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pipelines.project import ModelFile

#: config() keys the engine understands; anything else is kept as user metadata.
KNOWN_CONFIG = frozenset(
    {
        "materialized",
        "schema",
        "alias",
        "tags",
        "unique_key",
        "incremental_strategy",
        "on_schema_change",
        "dialect",
        "meta",
    }
)
MATERIALIZATIONS = frozenset({"table", "view", "incremental"})


@dataclass
class ParsedModel:
    """What a model asks for, learnt by rendering it with recording Jinja functions."""

    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
    )


_ENV = _environment()


def quoted_relation(relation: Relation, dialect: str) -> str:
    """A relation name as SQL text in ``dialect``, quoted so no name is ever misread."""
    return relation.to_table().sql(dialect=dialect)


def _render(model: ModelFile, context: dict[str, Any]) -> str:
    try:
        template = _ENV.from_string(model.sql)
        return template.render(**context)
    except ModelError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise ModelError(f"{model.path}:{exc.lineno}: Jinja syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ModelError(
            f"{model.path}: {exc.message}; available: ref(), source(), config(), this, "
            "is_incremental(), var()"
        ) from None
    except Exception as exc:
        raise ModelError(f"{model.path}: rendering failed: {exc}") from None


def parse_model(model: ModelFile) -> ParsedModel:
    """Render with recording functions to learn the model's refs, sources and config."""
    parsed = ParsedModel()

    def ref(name: str, *rest: str) -> str:
        if rest:
            raise ModelError(
                f"{model.path}: ref({name!r}, ...) with a package name is not supported"
            )
        parsed.refs.append(name)
        return quoted_relation(Relation("__ref__", name), "duckdb")

    def source(source_name: str, table_name: str) -> str:
        parsed.sources.append((source_name, table_name))
        return quoted_relation(Relation("__source__", f"{source_name}__{table_name}"), "duckdb")

    def config(**kwargs: Any) -> str:
        parsed.config.update(kwargs)
        return ""

    _render(model, _context(model, ref, source, config, Relation("__this__", model.name), {}))
    return parsed


def _context(
    model: ModelFile,
    ref: Callable[..., str],
    source: Callable[[str, str], str],
    config: Callable[..., str],
    this: Relation,
    variables: dict[str, Any],
    incremental: bool = False,
) -> dict[str, Any]:
    def var(name: str, default: Any = None) -> Any:
        if name in variables:
            return variables[name]
        if default is None:
            raise ModelError(f"{model.path}: var({name!r}) is not set and has no default")
        return default

    return {
        "ref": ref,
        "source": source,
        "config": config,
        "this": quoted_relation(this, "duckdb"),
        "is_incremental": lambda: incremental,
        "var": var,
    }


def render_model(
    model: ModelFile,
    *,
    relation_of_model: Callable[[str], Relation],
    relation_of_source: Callable[[str, str], Relation],
    this: Relation,
    variables: dict[str, Any] | None = None,
    dialect: str = "duckdb",
    incremental: bool = False,
) -> str:
    """Render with real relation names, in the model's own (authoring) dialect.

    ``incremental``: what ``is_incremental()`` returns (true when an incremental model's table
    exists and no full refresh was asked for).
    """

    def ref(name: str, *rest: str) -> str:
        return quoted_relation(relation_of_model(name), dialect)

    def source(source_name: str, table_name: str) -> str:
        return quoted_relation(relation_of_source(source_name, table_name), dialect)

    context = _context(model, ref, source, lambda **_: "", this, variables or {}, incremental)
    return _render(model, context).strip()


def parse_select(sql: str, *, dialect: str, path: object) -> exp.Query:
    """Parse rendered model SQL; it must be exactly one query (a SELECT, WITH or set operation)."""
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        details = exc.errors[0] if exc.errors else {}
        line = details.get("line")
        where = f"{path}:{line}" if line else str(path)
        raise ModelError(
            f"{where}: SQL does not parse ({dialect}): {details.get('description', exc)}"
        ) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ModelError(
            f"{path}: a model must be exactly one SELECT query (found "
            f"{', '.join(type(s).__name__ for s in statements) or 'nothing'})"
        )
    return statements[0]
