"""The model graph: every model parsed, its dependencies resolved and ordered, compiled per dialect.

Building the graph is cheap (Jinja rendering with recording functions, no SQL parsing) so the
Dagster definitions load fast; compiling to a target dialect parses and transpiles with sqlglot
and happens when a model is built or `ssot compile` asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp
from sqlglot.errors import SqlglotError

from pipelines.errors import ConfigError, ModelError
from pipelines.modelling.lineage import columns_read
from pipelines.modelling.materialize import (
    INCREMENTAL_STRATEGIES,
    SCHEMA_CHANGE_POLICIES,
    BuildSpec,
    change_feed_relation,
    feed_rows,
    is_flagged,
    timestamp_literal,
)
from pipelines.modelling.render import (
    CHANGES_PLACEHOLDER,
    MATERIALIZATIONS,
    Macros,
    ParsedModel,
    parse_model,
    parse_select,
    quoted_relation,
    render_model,
)
from pipelines.project import RAW_SCHEMA, SEEDS_SCHEMA, ModelFile
from pipelines.quality.expectations import Suite, load_suite
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    from pathlib import Path

    from pipelines.config import TestSpec
    from pipelines.project import Project


def seed_relation(name: str) -> Relation:
    """Where a seed is loaded: `seeds.<name>`."""
    return Relation(SEEDS_SCHEMA, name)


def source_relation(source: str, table: str) -> Relation:
    """Where a source table lands: `raw.<source>__<table>`."""
    return Relation(RAW_SCHEMA, f"{source}__{table}")


@dataclass(frozen=True)
class ModelNode:
    """One model with everything the engine needs to build and describe it."""

    model: ModelFile
    parsed: ParsedModel
    #: the project's seed names: a ref() to one is a seed, not a model
    seed_names: frozenset[str] = frozenset()
    #: the singular data tests attached to this model (they run after it is built)
    data_tests: tuple[DataTest, ...] = ()
    #: the model's Great Expectations suite (`expectations/<model>.json`), if any
    suite: Suite | None = None
    #: another model reads its `changes()`: its builds keep a change feed
    change_feed: bool = False
    #: the columns its feed keeps, those its readers may read (None: all of them)
    feed_columns: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def layer(self) -> str:
        return self.model.layer

    @property
    def config(self) -> dict[str, Any]:
        return {**self.model.folder_config, **self.model.properties.config, **self.parsed.config}

    @property
    def relation(self) -> Relation:
        return Relation(
            str(self.config.get("schema", self.layer)), str(self.config.get("alias", self.name))
        )

    @property
    def materialized(self) -> str:
        return str(self.config.get("materialized", "table"))

    @property
    def unique_key(self) -> tuple[str, ...]:
        key = self.config.get("unique_key") or ()
        return (str(key),) if isinstance(key, str) else tuple(str(k) for k in key)

    @property
    def incremental_strategy(self) -> str:
        default = "merge" if self.unique_key else "append"
        return str(self.config.get("incremental_strategy", default))

    @property
    def build_spec(self) -> BuildSpec:
        return BuildSpec(
            relation=self.relation,
            materialized=self.materialized,
            path=self.model.path,
            unique_key=self.unique_key,
            strategy=self.incremental_strategy,
            on_schema_change=str(self.config.get("on_schema_change", "ignore")),
            check_cols=self.check_cols,
            deleted_flag=self.deleted_flag,
            change_feed=change_feed_relation(self.relation) if self.change_feed else None,
            feed_columns=self.feed_columns,
        )

    @property
    def deleted_flag(self) -> str | None:
        """The output column that marks a row of an increment as a deletion of its key."""
        flag = self.config.get("deleted_flag")
        return str(flag) if flag else None

    @property
    def builds_increments(self) -> bool:
        """Whether a build may apply an increment instead of the whole query: an incremental
        model, or a snapshot that asks `is_incremental()`."""
        return self.materialized == "incremental" or (
            self.materialized == "snapshot" and self.parsed.asks_incremental
        )

    @property
    def check_cols(self) -> tuple[str, ...] | None:
        cols = self.config.get("check_cols", "all")
        if cols == "all":
            return None
        return (str(cols),) if isinstance(cols, str) else tuple(str(c) for c in cols)

    def config_path(self, key: str | None = None) -> Path:
        """The file that sets ``key`` (any config when None): the model's config() call, its
        yml, or the folder defaults in pyproject.toml."""
        model = self.model
        if (key is None and self.parsed.config) or key in self.parsed.config:
            return model.path
        if model.properties_path is not None and (key is None or key in model.properties.config):
            return model.properties_path
        if model.settings_path is not None and key in model.folder_config:
            return model.settings_path
        return model.path

    @property
    def dialect(self) -> str:
        return str(self.config.get("dialect", "duckdb"))

    @property
    def description(self) -> str:
        return self.model.properties.description

    @property
    def owners(self) -> list[str]:
        meta = {**self.model.properties.meta, **dict(self.config.get("meta", {}) or {})}
        owner = meta.get("owner")
        if owner is None:
            return []
        return [str(o) for o in owner] if isinstance(owner, list) else [str(owner)]

    @property
    def tags(self) -> list[str]:
        tags = self.config.get("tags", [])
        return [tags] if isinstance(tags, str) else [str(t) for t in tags]

    @property
    def upstream(self) -> list[str]:
        """Models this one needs built first: its refs and the targets of its relationships tests."""
        test_refs = [
            referenced_model(t.to) for t in self.tests if t.name == "relationships" and t.to
        ]
        test_refs += [ref for test in self.data_tests for ref in test.parsed.refs]
        return sorted({*self.parsed.refs, *test_refs} - {self.name} - self.seed_names)

    @property
    def seeds(self) -> list[str]:
        """The seeds this model reads."""
        return sorted(set(self.parsed.refs) & self.seed_names)

    @property
    def tests(self) -> list[TestSpec]:
        props = self.model.properties
        return [*props.tests, *(t for col in props.columns for t in col.tests)]


@dataclass(frozen=True)
class DataTest:
    """A singular data test (`data_tests/<name>.sql`): a SELECT of the rows breaking a rule.

    It runs as an asset check of the model it refs that is built last; ``config(severity=
    'warn')`` makes it report instead of block.
    """

    file: ModelFile
    parsed: ParsedModel

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def check_name(self) -> str:
        return f"data_test__{self.name}"

    @property
    def severity(self) -> str:
        return str(self.parsed.config.get("severity", "error")).lower()


#: the `since` an increment's SQL is rendered with where only its text matters (to compare it
#: between builds, to see what it reads)
SINCE_PLACEHOLDER = datetime(2000, 1, 1, tzinfo=UTC)


class ModelGraph:
    """All models of a project, validated as a DAG over each other and the declared sources."""

    #: the graph built last, with its project (``ModelGraph.of``)
    _last: ClassVar[tuple[Project, ModelGraph] | None] = None

    @classmethod
    def of(cls, project: Project) -> ModelGraph:
        """The graph of ``project``: the one built last if it was built for this very Project
        object (a graph is not changed once built), else a new one. `ssot run` validates the
        project and then builds its definitions from the same object."""
        last = cls._last
        if last is not None and last[0] is project:
            return last[1]
        graph = cls(project)
        cls._last = (project, graph)
        return graph

    def __init__(self, project: Project) -> None:
        self.project = project
        self.macros = Macros(project.macro_files)
        seeds = frozenset(project.seeds)
        self.nodes: dict[str, ModelNode] = {
            name: ModelNode(model, parse_model(model, self.macros), seeds)
            for name, model in project.models.items()
        }
        self._validate_references()
        self.order: list[str] = self._topological_order()
        self.data_tests = self._attach_data_tests()
        if self.data_tests:
            self.order = self._topological_order()
        self._attach_suites()
        self._attach_change_feeds()
        #: parsed queries that depend on the project alone (a whole query, an increment
        #: rendered with SINCE_PLACEHOLDER, a data test as written): a run validates, orders
        #: and builds from the same parse; each caller gets its own copy
        self._parsed: dict[tuple[str, ...], exp.Query] = {}

    def _attach_change_feeds(self) -> None:
        """A model whose `changes()` another model reads keeps a change feed."""
        for node in list(self.nodes.values()):
            for name in node.parsed.changes:
                feed = self.nodes[name]
                if feed.materialized not in ("incremental", "snapshot") or not feed.unique_key:
                    raise ModelError(
                        f"{node.model.path}: changes({name!r}) reads the change feed of an "
                        f"incremental or snapshot model with a unique_key; {name} is "
                        f"materialized as {feed.materialized!r}"
                        + ("" if feed.unique_key else " without a unique_key")
                    )
                self.nodes[name] = replace(self.nodes[name], change_feed=True)
        # each reader's increment parsed once, whatever number of feeds it reads
        reads = {n: _change_columns(node) for n, node in self.nodes.items() if node.parsed.changes}
        for name, node in self.nodes.items():
            if node.change_feed:
                self.nodes[name] = replace(node, feed_columns=self._feed_columns(name, reads))

    def _feed_columns(
        self, name: str, reads: Mapping[str, Mapping[str, frozenset[str] | None]]
    ) -> frozenset[str] | None:
        """What ``name``'s feed must keep: its key, the columns its readers' increments may
        read (``reads``: reader -> feed -> columns), and the parent column of each
        `relationships` test pointing at it (an increment's audit reads the values a parent's
        rows held before they changed)."""
        keep = {key.lower() for key in self.nodes[name].unique_key}
        for node in self.nodes.values():
            if name in node.parsed.changes:
                read = reads[node.name].get(name)
                if read is None:
                    return None
                keep |= read
            keep |= {
                t.field.lower()
                for t in node.tests
                if t.name == "relationships" and t.field and referenced_model(t.to or "") == name
            }
        return frozenset(keep)

    def _attach_suites(self) -> None:
        """`expectations/<model>.json` belongs to the model of that name."""
        for name, path in self.project.expectation_files.items():
            if name not in self.nodes:
                raise ModelError(
                    f"{path}: an expectation suite for model {name!r}, but no model has that "
                    "name; name the file after its model (`expectations/<model>.json`)"
                )
            try:
                suite = load_suite(path)
            except ConfigError as exc:
                raise ModelError(str(exc)) from None
            clash = {t.check_name for t in self.nodes[name].tests} & {
                e.check_name for e in suite.expectations
            }
            if clash:
                raise ModelError(
                    f"{path}: check name(s) {', '.join(sorted(clash))} clash with yml tests"
                )
            self.nodes[name] = replace(self.nodes[name], suite=suite)

    def _attach_data_tests(self) -> dict[str, DataTest]:
        """Each singular test joins the model it refs that comes last in the build order."""
        position = {name: i for i, name in enumerate(self.order)}
        attached: dict[str, list[DataTest]] = {}
        tests: dict[str, DataTest] = {}
        for name, file in self.project.data_tests.items():
            test = DataTest(file, parse_model(file, self.macros))
            if test.severity not in ("error", "warn"):
                raise ModelError(
                    f"{file.path}: severity {test.severity!r}; use 'error' (blocks) or 'warn'"
                )
            for ref in test.parsed.refs:
                if ref not in self.nodes and ref not in self.project.seeds:
                    raise ModelError(f"{file.path}: ref({ref!r}) names no model or seed")
            models = [ref for ref in test.parsed.refs if ref in self.nodes]
            if not models:
                raise ModelError(
                    f"{file.path}: a data test runs after the models it checks; ref() at least "
                    "one model"
                )
            owner = max(models, key=position.__getitem__)
            for read in test.parsed.written:
                if read != owner:
                    raise ModelError(
                        f"{file.path}: written({read!r}): a data test runs with the build of "
                        f"the model it refs last, {owner!r}, and can read only what that build "
                        f"wrote; use written({owner!r})"
                    )
            attached.setdefault(owner, []).append(test)
            tests[name] = test
        for owner, owned in attached.items():
            self.nodes[owner] = replace(self.nodes[owner], data_tests=tuple(owned))
        return tests

    def generic_test_query(
        self, node: ModelNode, test: TestSpec, model: exp.Expression
    ) -> exp.Query:
        """A generic test's SELECT of failing rows: its macro called on ``model`` (the model's
        relation, or the rows its `where` keeps) with the column and the test's arguments."""
        call = f"test_{test.name}"
        arguments = {"model": model.sql(dialect="duckdb"), **test.arguments}
        if test.column is not None:
            arguments["column_name"] = exp.to_identifier(test.column, quoted=True).sql("duckdb")
        probe = ModelFile(
            name=f"{node.name}__{test.check_name}",
            layer="",
            path=node.model.properties_path or node.model.path,
            sql="{{ " + call + "(**__test_arguments) }}",
            properties=node.model.properties,
            properties_path=None,
        )
        sql = render_model(
            probe,
            relation_of_model=self.relation_of,
            relation_of_source=source_relation,
            this=node.relation,
            variables={},
            macros=self.macros,
            extra={"__test_arguments": arguments},
        )
        return parse_select(sql, dialect="duckdb", path=probe.path)

    def data_test_query(
        self,
        test: DataTest,
        instead: Mapping[str, Relation] | None = None,
        written: Relation | None = None,
    ) -> exp.Query:
        """The test's SELECT of failing rows, with real relation names; ``instead`` reads
        other relations for some models (a candidate audited before it is published).

        ``written``: the rows the build of the test's model wrote; the test is then rendered
        with ``is_incremental()`` true and ``written('model')`` reading them."""
        as_written = not instead and written is None
        parsed = self._parsed.get(("data_test", test.name)) if as_written else None
        if parsed is not None:
            return parsed.copy()
        swapped = dict(instead or {})
        extra = None
        if written is not None:
            rows = quoted_relation(written, "duckdb")
            extra = {"written": lambda _name: rows}
        sql = render_model(
            test.file,
            relation_of_model=lambda ref: swapped.get(ref) or self.relation_of(ref),
            relation_of_source=source_relation,
            this=Relation("__this__", test.name),
            macros=self.macros,
            incremental=written is not None,
            extra=extra,
        )
        parsed = parse_select(sql, dialect="duckdb", path=test.file.path)
        if not as_written:
            return parsed
        self._parsed[("data_test", test.name)] = parsed
        return parsed.copy()

    def _validate_references(self) -> None:
        declared = {(s.name, t.name) for s, t in self.project.source_tables()}
        for node in self.nodes.values():
            if node.materialized not in MATERIALIZATIONS:
                where = node.config_path("materialized")
                raise ModelError(
                    f"{where}: model {node.name!r} has materialized={node.materialized!r}, which is "
                    f"not supported yet; use one of {', '.join(sorted(MATERIALIZATIONS))}"
                )
            if node.materialized == "incremental":
                self._validate_incremental(node)
            if node.materialized == "snapshot" and not node.unique_key:
                raise ModelError(
                    f"{node.config_path()}: snapshot model {node.name!r} needs a unique_key "
                    "(the entity whose versions it keeps)"
                )
            if node.materialized == "snapshot" and node.builds_increments and not node.deleted_flag:
                raise ModelError(
                    f"{node.model.path}: snapshot model {node.name!r} asks is_incremental(), so "
                    "its increment holds only the keys a change touches and cannot close a "
                    "deleted one by leaving it out: set config deleted_flag (a column true for "
                    "a key to close)"
                )
            if node.parsed.written:
                raise ModelError(
                    f"{node.model.path}: written() is for data tests (the rows a build being "
                    "audited wrote); a model reads what an upstream changed with changes('model')"
                )
            for name in node.parsed.changes:
                if name not in self.nodes:
                    raise ModelError(
                        f"{node.model.path}: changes({name!r}) names no model; for a source "
                        "table write changes('<source>', '<table>')"
                    )
            for ref in node.parsed.refs:
                if ref not in self.nodes and ref not in self.project.seeds:
                    raise ModelError(
                        f"{node.model.path}: ref({ref!r}) names no model or seed; models are "
                        f"models/<layer>/<name>.sql, seeds seeds/<name>.csv (known: "
                        f"{', '.join(sorted([*self.nodes, *self.project.seeds]))})"
                    )
            for source, table in node.parsed.sources:
                if (source, table) not in declared:
                    raise ModelError(
                        f"{node.model.path}: source({source!r}, {table!r}) is not declared; add "
                        f"table {table!r} to sources/{source}.yml"
                    )
            names = [test.check_name for test in node.tests]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ModelError(
                    f"{node.model.properties_path or node.model.path}: model {node.name!r} has "
                    f"the same test twice ({', '.join(repeated)}); remove one, or give them "
                    "different arguments"
                )
            for test in node.tests:
                if not test.is_builtin and f"test_{test.name}" not in self.macros.names:
                    where = node.model.properties_path or node.model.path
                    raise ModelError(
                        f"{where}: model {node.name!r} uses test {test.name!r}, which is neither "
                        "a built-in test (unique, not_null, accepted_values, relationships) nor "
                        f"a generic test: define `{{% test {test.name}(model, column_name) %}}` "
                        "in macros/ or data_tests/generic/"
                    )
                if test.name == "relationships" and test.to:
                    target = referenced_model(test.to)
                    if target not in self.nodes:
                        where = node.model.properties_path or node.model.path
                        raise ModelError(
                            f"{where}: relationships test on {node.name}.{test.column} points to "
                            f"{test.to!r}, which is no model"
                        )

    @staticmethod
    def _validate_incremental(node: ModelNode) -> None:
        spec = node.build_spec
        where = f"{node.config_path()}: incremental model {node.name!r}"
        if spec.strategy not in INCREMENTAL_STRATEGIES:
            raise ModelError(
                f"{where} has incremental_strategy={spec.strategy!r}; use one of "
                f"{', '.join(sorted(INCREMENTAL_STRATEGIES))}"
            )
        if spec.strategy != "append" and not spec.unique_key:
            raise ModelError(f"{where} uses {spec.strategy!r}, which needs a unique_key")
        if spec.on_schema_change not in SCHEMA_CHANGE_POLICIES:
            raise ModelError(
                f"{where} has on_schema_change={spec.on_schema_change!r}; use one of "
                f"{', '.join(sorted(SCHEMA_CHANGE_POLICIES))}"
            )
        if spec.deleted_flag and spec.strategy == "append":
            raise ModelError(
                f"{where} has a deleted_flag, which needs incremental_strategy 'merge' or "
                "'delete+insert' (a deletion removes the rows of its unique_key)"
            )

    def _topological_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = [*path[path.index(name) :], name]
                raise ModelError(
                    f"{self.nodes[name].model.path}: models form a cycle: {' -> '.join(cycle)}"
                )
            state[name] = 1
            for dep in self.nodes[name].upstream:
                visit(dep, [*path, name])
            state[name] = 2
            order.append(name)

        for name in sorted(self.nodes):
            visit(name, [])
        return order

    # -- compile ------------------------------------------------------------------------------
    def relation_of(self, ref: str) -> Relation:
        """Where a ref()'d model or seed lives."""
        if ref in self.nodes:
            return self.nodes[ref].relation
        return seed_relation(ref)

    def rendered_sql(
        self, name: str, *, incremental: bool = False, since: datetime | None = None
    ) -> str:
        node = self.nodes[name]
        return render_model(
            node.model,
            relation_of_model=self.relation_of,
            relation_of_source=source_relation,
            this=node.relation,
            dialect=node.dialect,
            incremental=incremental,
            macros=self.macros,
            changes=(lambda *args: self.changes(node, since, *args)) if incremental else None,
        )

    def changes(
        self, node: ModelNode, since: datetime | None, name: str, table: str | None = None
    ) -> exp.Query:
        """What `changes(name[, table])` reads in ``node``'s incremental build: the rows of a
        source table landed after ``since``, or the change feed a model wrote after ``since``."""
        if table is None:
            if name not in node.parsed.changes:  # parse time saw every call; this is a guard
                raise ModelError(f"{node.model.path}: changes({name!r}) was not seen at parse")
            return feed_rows(change_feed_relation(self.nodes[name].relation), since)
        query = exp.select(exp.Star()).from_(source_relation(name, table).to_table())
        if since is None:
            return query
        landed_at = exp.column("_ssot_loaded_at", quoted=True)
        return query.where(exp.GT(this=landed_at, expression=timestamp_literal(since)))

    def query(
        self, name: str, *, incremental: bool = False, since: datetime | None = None
    ) -> exp.Query:
        """The model's SELECT parsed from its authoring dialect; render it in any dialect.

        ``incremental``: render with ``is_incremental()`` true (the table exists, no full
        refresh); ``since``: the model's last build, from which `changes()` reads. A model
        with a ``deleted_flag`` keeps the flag in its increment (the build applies it); its
        whole query leaves the flagged rows and the flag out.
        """
        one_build = incremental and since != SINCE_PLACEHOLDER  # reads from that build's time
        key = ("model", name, "increment" if incremental else "whole")
        parsed = None if one_build else self._parsed.get(key)
        if parsed is None:
            node = self.nodes[name]
            sql = self.rendered_sql(name, incremental=incremental, since=since)
            parsed = parse_select(sql, dialect=node.dialect, path=node.model.path)
            if node.deleted_flag and not incremental:
                parsed = without_deleted(parsed, node.deleted_flag, node.model.path)
            if one_build:
                return parsed
            self._parsed[key] = parsed
        return parsed.copy()

    def compile(
        self, name: str, dialect: str, *, incremental: bool = False, since: datetime | None = None
    ) -> str:
        """The model's SELECT in ``dialect``, transpiled by sqlglot and pretty-printed, with the
        target engine's own rules where it has a backend (what it cannot express is an error
        naming the model, never silently dropped). ``incremental``: the increment's query, with
        `changes()` reading what changed after ``since``."""
        from pipelines.errors import WarehouseError
        from pipelines.warehouse import backend_for

        query = self.query(name, incremental=incremental, since=since)
        backend = backend_for(dialect)
        if backend is None:
            return query.sql(dialect=dialect, pretty=True)
        try:
            return backend.sql_for(query, pretty=True)
        except WarehouseError as exc:
            raise ModelError(f"{self.nodes[name].model.path}: {exc}") from None

    def feed_readers(self, name: str) -> list[str]:
        """The models that read ``name``'s change feed: through `changes()`, or (incremental
        models) to check a relationships test against it."""
        return [
            other.name
            for other in self.nodes.values()
            if name in other.parsed.changes
            or (
                other.materialized == "incremental"
                and any(
                    t.name == "relationships" and t.to and referenced_model(t.to) == name
                    for t in other.tests
                )
            )
        ]

    @cached_property
    def downstream(self) -> dict[str, list[str]]:
        children: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for ref in node.upstream:
                children[ref].append(node.name)
        return children


def _change_columns(node: ModelNode) -> dict[str, frozenset[str] | None]:
    """For each change feed ``node``'s increment reads, the columns (lower case) it may read;
    None where it may read any (also when the increment does not parse: compiling the model
    reports that)."""
    sql = node.parsed.increment_sql
    read: dict[str, frozenset[str] | None] = {}
    if sql is not None:
        with contextlib.suppress(ModelError, SqlglotError):
            query = parse_select(sql, dialect=node.dialect, path=node.model.path)
            read = columns_read(query, CHANGES_PLACEHOLDER)
    return {name: read.get(name) for name in node.parsed.changes}


def referenced_model(to: str) -> str:
    """`ref('x')`, `ref("x")` or `x` -> `x` (the target of a relationships test)."""
    text = to.strip()
    if text.startswith("ref(") and text.endswith(")"):
        text = text[4:-1].strip().strip("'\"")
    return text


def without_deleted(query: exp.Query, flag: str, path: Path | str) -> exp.Query:
    """``query``'s rows whose ``flag`` is not true, without the flag column."""
    names = [projection.alias_or_name for projection in query.selects]
    star = any(projection.is_star for projection in query.selects)
    if flag not in names and not star:
        raise ModelError(
            f"{path}: deleted_flag {flag!r} is not a column of the model's output "
            f"({', '.join(names)}); select it (true for a row that deletes its key)"
        )
    projection: list[exp.Expression] = (
        [exp.Star(except_=[exp.column(flag, quoted=True)])]
        if star
        else [exp.column(n, quoted=True) for n in names if n != flag]
    )
    live = exp.not_(is_flagged(flag))
    return exp.select(*projection).from_(query.subquery("_model")).where(live)
