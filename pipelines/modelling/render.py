"""Jinja rendering of dbt-style models: `ref`, `source`, `config`, `this`, `is_incremental`,
`changes`, `var` and the project's macros (`macros/*.sql`).

A model is rendered twice. At parse time the Jinja functions only *record* what the model
asks for (its refs, sources and config), which gives the dependency graph without touching a
warehouse. At compile time they return real relation names for a target. The SQL the user
writes is in the model's dialect (DuckDB by default) and is transpiled by sqlglot afterwards.

`changes('model')` and `changes('source', 'table')` (not in dbt) are what changed upstream
since the model's last build: a source's rows landed since then, or the change feed of an
incremental or snapshot model (the rows it replaced or deleted, `_ssot_change = 'before'`,
and the rows it wrote, `'after'`). An incremental model reads them to recompute only the keys
they touch. A model that uses `is_incremental()` is rendered both ways at parse time, so the
refs, sources and changes of either branch are its dependencies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from sqlglot import exp

from pipelines.errors import ModelError
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pipelines.project import ModelFile

#: the schema `changes('model')` stands for while a model is parsed
CHANGES_PLACEHOLDER = "__changes__"
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
        "check_cols",
        "deleted_flag",
        "dialect",
        "meta",
    }
)
MATERIALIZATIONS = frozenset({"table", "view", "incremental", "snapshot"})


@dataclass
class ParsedModel:
    """What a model asks for, learnt by rendering it with recording Jinja functions."""

    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    #: models whose change feed it reads (`changes('model')`); each is also one of its refs
    changes: list[str] = field(default_factory=list)
    #: source tables whose landed rows it reads (`changes('source', 'table')`)
    source_changes: list[tuple[str, str]] = field(default_factory=list)
    #: whether it asks `is_incremental()` (a snapshot that does is built from its increment)
    asks_incremental: bool = False
    #: its increment as rendered at parse time, `changes('m')` reading `__changes__.m`
    #: (what tells which columns of each change feed it reads)
    increment_sql: str | None = None
    #: models whose rows just written it reads (`written('model')`, data tests only)
    written: list[str] = field(default_factory=list)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
    )


_ENV = _environment()


@functools.lru_cache(maxsize=1024)
def _template(source: str) -> jinja2.Template:
    """``source`` compiled, once per process: a model is rendered several times (each branch of
    `is_incremental()`, its queries), and compiling is most of a render's cost. A template
    holds no state of a render."""
    return _ENV.from_string(source)


class Macros:
    """The project's `macros/*.sql`, compiled once; bound to each model's context when rendered.

    A macro sees what the model sees (`ref`, `source`, `this`, `var`, ...) and every other
    macro, whichever file defines it.
    """

    def __init__(self, files: Mapping[Path, str] | None = None) -> None:
        self._templates: list[tuple[Path, jinja2.Template]] = []
        for path, text in (files or {}).items():
            try:
                self._templates.append((path, _template(_generic_tests_as_macros(text))))
            except jinja2.TemplateSyntaxError as exc:
                raise ModelError(
                    f"{path}:{exc.lineno}: Jinja syntax error: {exc.message}"
                ) from None
        self.names: dict[str, Path] = {}
        for path, template in self._templates:
            for name in self._exported(template.make_module()):
                if name in self.names:
                    raise ModelError(
                        f"{path}: macro {name!r} is also defined in {self.names[name]}"
                    )
                self.names[name] = path

    @staticmethod
    def _exported(module: Any) -> list[str]:
        return [name for name in vars(module) if not name.startswith("_")]

    def bind(self, context: dict[str, Any]) -> dict[str, Any]:
        """The macros, as callables that see ``context`` and each other."""
        if not self._templates:
            return {}
        # Modules are built twice: the second time every macro's globals hold all the macros.
        macros: dict[str, Any] = {}
        for _ in range(2):
            scope = {**context, **macros}
            macros = {}
            for _, template in self._templates:
                module = template.make_module(vars=scope)
                macros.update({name: getattr(module, name) for name in self._exported(module)})
        return macros


NO_MACROS = Macros()

_TEST_BLOCK = re.compile(r"\{%(-?)\s*test\s+([A-Za-z_]\w*)\s*\(")
_END_TEST = re.compile(r"\{%(-?)\s*endtest\s*(-?)%\}")


def _generic_tests_as_macros(text: str) -> str:
    """dbt's `{% test name(model, column_name) %}...{% endtest %}` is a macro `test_name`.

    Lines are kept as they are, so Jinja's line numbers still point into the file."""
    return _END_TEST.sub(r"{%\1 endmacro \2%}", _TEST_BLOCK.sub(r"{%\1 macro test_\2(", text))


def quoted_relation(relation: Relation, dialect: str) -> str:
    """A relation name as SQL text in ``dialect``, quoted so no name is ever misread."""
    return relation.to_table().sql(dialect=dialect)


def _render(model: ModelFile, context: dict[str, Any], macros: Macros) -> str:
    try:
        template = _template(model.sql)
        clashes = sorted(set(macros.names) & set(context))
        if clashes:
            name = clashes[0]
            raise ModelError(
                f"{macros.names[name]}: macro {name!r} shadows the built-in {name}(); rename it"
            )
        return template.render(**context, **macros.bind(context))
    except ModelError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise ModelError(f"{model.path}:{exc.lineno}: Jinja syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ModelError(
            f"{model.path}: {exc.message}; available: ref(), source(), config(), this, "
            "is_incremental(), var() and the macros in macros/"
        ) from None
    except Exception as exc:
        raise ModelError(f"{model.path}: rendering failed: {exc}") from None


def parse_model(model: ModelFile, macros: Macros = NO_MACROS) -> ParsedModel:
    """Render with recording functions to learn the model's refs, sources and config (both
    branches of `is_incremental()`, when the model asks it)."""
    parsed = ParsedModel()

    def ref(name: str, *rest: str) -> str:
        if rest:
            raise ModelError(
                f"{model.path}: ref({name!r}, ...) with a package name is not supported"
            )
        if name not in parsed.refs:
            parsed.refs.append(name)
        return quoted_relation(Relation("__ref__", name), "duckdb")

    def source(source_name: str, table_name: str) -> str:
        if (source_name, table_name) not in parsed.sources:
            parsed.sources.append((source_name, table_name))
        return quoted_relation(Relation("__source__", f"{source_name}__{table_name}"), "duckdb")

    def changes(name: str, table_name: str | None = None) -> str:
        if table_name is not None:
            if (name, table_name) not in parsed.source_changes:
                parsed.source_changes.append((name, table_name))
            return source(name, table_name)
        if name not in parsed.changes:
            parsed.changes.append(name)
        ref(name)
        return quoted_relation(Relation(CHANGES_PLACEHOLDER, name), "duckdb")

    def written(name: str) -> str:
        if name not in parsed.written:
            parsed.written.append(name)
        return ref(name)

    def config(**kwargs: Any) -> str:
        parsed.config.update(kwargs)
        return ""

    for incremental in (False, True):
        asked: list[bool] = []

        def is_incremental(flag: bool = incremental, asked: list[bool] = asked) -> bool:
            asked.append(True)
            return flag

        context = _context(model, ref, source, config, Relation("__this__", model.name), {})
        context.update(is_incremental=is_incremental, changes=changes, written=written)
        sql = _render(model, context, macros)
        if parsed.changes and incremental:
            parsed.increment_sql = sql
        if not asked:
            break
        parsed.asks_incremental = True
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
        "changes": lambda *_: _no_changes(model),
        "written": lambda *_: _no_written(model),
        "var": var,
    }


def _no_changes(model: ModelFile) -> str:
    raise ModelError(
        f"{model.path}: changes() is only known in an incremental build; call it inside "
        "{% if is_incremental() %} ... {% endif %}"
    )


def _no_written(model: ModelFile) -> str:
    raise ModelError(
        f"{model.path}: written() is only known when a data test checks an incremental "
        "build; call it inside {% if is_incremental() %} ... {% endif %}"
    )


def render_model(
    model: ModelFile,
    *,
    relation_of_model: Callable[[str], Relation],
    relation_of_source: Callable[[str, str], Relation],
    this: Relation,
    variables: dict[str, Any] | None = None,
    dialect: str = "duckdb",
    incremental: bool = False,
    macros: Macros = NO_MACROS,
    extra: dict[str, Any] | None = None,
    changes: Callable[..., exp.Query] | None = None,
) -> str:
    """Render with real relation names, in the model's own (authoring) dialect.

    ``incremental``: what ``is_incremental()`` returns (true when an incremental model's table
    exists and no full refresh was asked for). ``changes``: the query `changes(...)` stands for
    (given with ``incremental``).
    """

    def ref(name: str, *rest: str) -> str:
        return quoted_relation(relation_of_model(name), dialect)

    def source(source_name: str, table_name: str) -> str:
        return quoted_relation(relation_of_source(source_name, table_name), dialect)

    context = _context(model, ref, source, lambda **_: "", this, variables or {}, incremental)
    if changes is not None:
        feed = changes

        def changed(name: str, table_name: str | None = None) -> str:
            return feed(name, table_name).subquery().sql(dialect=dialect)

        context["changes"] = changed
    return _render(model, {**context, **(extra or {})}, macros).strip()


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
