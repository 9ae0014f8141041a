"""What the warehouse holds of each model, to rebuild only what changed (`ssot plan`).

After every successful build, `ssot_meta.model_state` keeps the model's compiled SQL, columns
and build time; `ssot_meta.data_versions` keeps, per relation (raw table, seed, model), when its
content last changed (a relation without a row has not changed since tracking began). A model
needs a rebuild when it is new, its SQL changed, an upstream model changed in a breaking way,
or an upstream relation changed since the model was built.

A SQL change is *non-breaking* when it only adds columns: every existing column keeps its
expression and the rest of the query (FROM, joins, WHERE, GROUP BY, CTEs) is the same. Its
downstream models then need no rebuild. Any other change is *breaking*.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from pipelines.modelling.graph import SINCE_PLACEHOLDER, seed_relation, source_relation
from pipelines.project import META_SCHEMA
from pipelines.quality.checks import CheckReuse, latest_results
from pipelines.warehouse.base import Relation

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.modelling.graph import ModelGraph, ModelNode
    from pipelines.warehouse.base import Warehouse

MODEL_STATE = Relation(META_SCHEMA, "model_state")
DATA_VERSIONS = Relation(META_SCHEMA, "data_versions")


@dataclass(frozen=True)
class ModelState:
    model: str
    materialized: str
    sql: str
    columns: list[tuple[str, str]]
    built_at: datetime
    #: the increment's SQL when it was built (a model built from increments), else ""
    increment_sql: str = ""


def _state_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("model", pa.string()),
            ("materialized", pa.string()),
            ("sql", pa.string()),
            ("columns", pa.string()),
            ("built_at", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
            ("increment_sql", pa.string()),
        ]
    )


def _versions_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("relation", pa.string()),
            ("fingerprint", pa.string()),
            ("changed_at", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
        ]
    )


def state_tables() -> list[tuple[Relation, pa.Schema]]:
    """The tables of the models' state (every build writes a row into each), with their
    schemas."""
    return [(MODEL_STATE, _state_schema()), (DATA_VERSIONS, _versions_schema())]


def record_build(
    warehouse: Warehouse,
    node: ModelNode,
    sql: str,
    run_id: str,
    *,
    changed: bool = True,
    at: datetime | None = None,
    increment_sql: str = "",
) -> None:
    """After a successful build (inside its transaction): the model's state and, when
    ``changed`` (anything but a non-breaking change), its new data version. ``increment_sql``:
    the SQL of the model's increment (a model built from increments), so that a change to it
    alone also builds the model whole."""
    at = at or datetime.now(UTC)
    if warehouse.exists(MODEL_STATE) and "increment_sql" not in dict(
        warehouse.columns(MODEL_STATE)
    ):
        warehouse.add_column(MODEL_STATE, "increment_sql", "VARCHAR")  # a state from before
    row = {
        "model": node.name,
        "materialized": node.materialized,
        "sql": sql,
        "columns": json.dumps(warehouse.columns(node.relation)),
        "built_at": at,
        "run_id": run_id,
        "increment_sql": increment_sql,
    }
    warehouse.replace_rows(MODEL_STATE, _state_schema(), "model", [row])
    if changed:
        record_change(warehouse, node.relation, run_id, at=at)


def record_change(
    warehouse: Warehouse,
    relation: Relation,
    run_id: str,
    *,
    fingerprint: str | None = None,
    at: datetime | None = None,
) -> None:
    """``relation``'s content changed (rows landed, a seed's file changed, a model rebuilt)."""
    row = {
        "relation": str(relation),
        "fingerprint": fingerprint,
        "changed_at": at or datetime.now(UTC),
        "run_id": run_id,
    }
    warehouse.replace_rows(DATA_VERSIONS, _versions_schema(), "relation", [row])


def read_states(warehouse: Warehouse, model: str | None = None) -> dict[str, ModelState]:
    """Every model's state (or only ``model``'s)."""
    if not warehouse.exists(MODEL_STATE):
        return {}
    query = exp.select(exp.Star()).from_(MODEL_STATE.to_table())
    if model is not None:
        query = query.where(exp.column("model", quoted=True).eq(exp.Literal.string(model)))
    return {
        row["model"]: ModelState(
            model=row["model"],
            materialized=row["materialized"],
            sql=row["sql"],
            columns=[(str(n), str(t)) for n, t in json.loads(row["columns"])],
            built_at=row["built_at"],
            increment_sql=row.get("increment_sql") or "",
        )
        for row in warehouse.query(query).to_pylist()
    }


def read_versions(
    warehouse: Warehouse, relations: list[Relation] | None = None
) -> dict[str, tuple[datetime, str | None]]:
    """relation -> (when its content last changed, its fingerprint), of all (or ``relations``)."""
    if not warehouse.exists(DATA_VERSIONS) or relations == []:
        return {}
    query = exp.select(exp.Star()).from_(DATA_VERSIONS.to_table())
    if relations is not None:
        names = [exp.Literal.string(str(r)) for r in relations]
        query = query.where(exp.column("relation", quoted=True).isin(*names))
    rows = warehouse.query(query).to_pylist()
    return {row["relation"]: (row["changed_at"], row["fingerprint"]) for row in rows}


def _splits_rows(select: exp.Select, added: exp.Expression) -> bool:
    """Whether the column ``added`` to ``select`` changes its rows, not only its columns: under
    DISTINCT (not DISTINCT ON), under GROUP BY ALL unless it is an aggregate or a constant, or
    when it unnests in the select list itself."""
    distinct = select.args.get("distinct")
    if distinct is not None and not distinct.args.get("on"):
        return True
    group = select.args.get("group")
    value = added.unalias()
    if (
        group is not None
        and group.args.get("all")
        and not isinstance(value, exp.Literal)
        and value.find(exp.AggFunc) is None
    ):
        return True
    return any(
        found.find_ancestor(exp.Select, exp.Lambda) is select
        for found in added.find_all(exp.Unnest, exp.Explode, exp.ExplodeOuter)
    )


def classify_change(old_sql: str, new_sql: str, dialect: str) -> str:
    """ "non-breaking" when the new query only adds columns to the old one, else "breaking"."""
    try:
        old, new = (
            sqlglot.parse_one(old_sql, read=dialect),
            sqlglot.parse_one(new_sql, read=dialect),
        )
    except ParseError:
        return "breaking"
    if not isinstance(old, exp.Select) or not isinstance(new, exp.Select):
        return "breaking"
    old_columns = {p.alias_or_name: p.sql(dialect) for p in old.expressions}
    new_columns = {p.alias_or_name: p.sql(dialect) for p in new.expressions}
    if "*" in old_columns or any(new_columns.get(n) != e for n, e in old_columns.items()):
        return "breaking"
    if any(_splits_rows(new, p) for p in new.expressions if p.alias_or_name not in old_columns):
        return "breaking"
    old_rest, new_rest = old.copy(), new.copy()
    old_rest.set("expressions", [exp.Star()])
    new_rest.set("expressions", [exp.Star()])
    return "non-breaking" if old_rest.sql(dialect) == new_rest.sql(dialect) else "breaking"


@dataclass
class ModelPlan:
    model: str
    change: str  # added | modified | unchanged
    kind: str = ""  # breaking | non-breaking (modified only)
    rebuild: bool = False
    #: its rebuild changes what downstream models read (anything but a non-breaking change)
    propagates: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class Plan:
    models: dict[str, ModelPlan]
    removed: list[str]

    @property
    def rebuilds(self) -> list[str]:
        return [name for name, p in self.models.items() if p.rebuild]


def upstream_relations(graph: ModelGraph, node: ModelNode) -> list[Relation]:
    """Every relation a model reads: models, raw tables, seeds."""
    relations = [graph.nodes[ref].relation for ref in node.upstream]
    relations += [source_relation(s, t) for s, t in sorted(set(node.parsed.sources))]
    relations += [seed_relation(name) for name in node.seeds]
    return relations


def view_inputs(graph: ModelGraph) -> Callable[[Relation], list[Relation]]:
    """relation -> the relations a view model reads (a view's rows change with theirs
    without the view being built again); [] for any other relation."""
    views = {node.relation: node for node in graph.nodes.values() if node.materialized == "view"}

    def inputs(relation: Relation) -> list[Relation]:
        node = views.get(relation)
        return upstream_relations(graph, node) if node is not None else []

    return inputs


def check_reuse(warehouse: Warehouse, graph: ModelGraph, asset: str) -> CheckReuse:
    """What the checks of ``asset``, a model not rebuilt this time, may keep of their latest
    results: those results, and when each relation last changed."""
    changed = {name: at for name, (at, _) in read_versions(warehouse).items()}
    # a build whose change was non-breaking (columns added) records no new data version, yet
    # a check may see the difference (a view of `*`, a DISTINCT over the new column)
    for name, state in read_states(warehouse).items():
        node = graph.nodes.get(name)
        if node is not None:
            relation = str(node.relation)
            changed[relation] = max(changed.get(relation, state.built_at), state.built_at)
    return CheckReuse(
        latest=latest_results(warehouse, asset), changed=changed, depends=view_inputs(graph)
    )


def increment_sql(graph: ModelGraph, node: ModelNode, dialect: str) -> str:
    """The SQL of ``node``'s increment as state keeps it ("" for a model never built from
    one): a change to it alone builds the model again, whole."""
    if not node.builds_increments:
        return ""
    query = graph.query(node.name, incremental=True, since=SINCE_PLACEHOLDER)
    return query.sql(dialect=dialect)


def changed_since(
    relations: list[Relation], versions: Mapping[str, tuple[datetime, str | None]], at: datetime
) -> Relation | None:
    """The first of ``relations`` whose content changed after ``at`` (``versions``: what
    :func:`read_versions` returned), or None."""
    for relation in relations:
        changed = versions.get(str(relation))
        if changed is not None and changed[0] > at:
            return relation
    return None


def make_plan(graph: ModelGraph, warehouse: Warehouse) -> Plan:
    """What `ssot run` would rebuild now, and why (code changes and data changed upstream)."""
    states = read_states(warehouse)
    versions = read_versions(warehouse)
    plans: dict[str, ModelPlan] = {}
    for name in graph.order:
        node = graph.nodes[name]
        sql = graph.query(name).sql(dialect=warehouse.dialect)
        state = states.get(name)
        plan = ModelPlan(name, "unchanged")
        if state is None or not warehouse.exists(node.relation):
            plan.change, plan.rebuild = "added", True
            plan.reasons.append("never built" if state is None else "its table is missing")
        elif state.sql != sql or state.materialized != node.materialized:
            plan.change, plan.rebuild = "modified", True
            plan.kind = (
                classify_change(state.sql, sql, warehouse.dialect)
                if state.materialized == node.materialized
                else "breaking"
            )
            plan.reasons.append(f"{plan.kind} change to its SQL or config")
        elif state.increment_sql != increment_sql(graph, node, warehouse.dialect):
            plan.change, plan.rebuild, plan.kind = "modified", True, "breaking"
            plan.reasons.append("change to the SQL of its increment (built whole)")
        plan.propagates = plan.rebuild and plan.kind != "non-breaking"
        rebuilt_parents = [parent for parent in node.upstream if plans[parent].propagates]
        if rebuilt_parents:
            if not plan.rebuild:
                plan.reasons.append(f"upstream {', '.join(rebuilt_parents)} rebuilt")
            plan.rebuild = plan.propagates = True
        if state is not None and not plan.propagates:
            changed = changed_since(upstream_relations(graph, node), versions, state.built_at)
            if changed is not None:
                plan.rebuild = plan.propagates = True
                plan.reasons.append(f"{changed} changed since the last build")
        plans[name] = plan
    removed = sorted(set(states) - set(graph.nodes))
    return Plan(plans, removed)


def build_reason(
    graph: ModelGraph,
    node: ModelNode,
    warehouse: Warehouse,
    sql: str,
    states: Mapping[str, ModelState] | None = None,
    increment: str = "",
) -> tuple[str | None, bool]:
    """Why ``node`` must be built now (None: it is up to date), and whether the build changes
    what downstream models read (False only for a non-breaking change and nothing else).
    ``states``: every model's state read beforehand (one query for a whole run), else read.
    ``increment``: the SQL of the model's increment (:func:`increment_sql`), whose change also
    calls for a build."""
    if states is None:
        states = read_states(warehouse, node.name)
    state = states.get(node.name)
    if state is None:
        return "never built", True
    if not warehouse.exists(node.relation):
        return "its table is missing", True
    upstream = upstream_relations(graph, node)
    changed = changed_since(upstream, read_versions(warehouse, upstream), state.built_at)
    if changed is not None:
        return f"{changed} changed since the last build", True
    if state.materialized != node.materialized:
        return "its materialization changed", True
    if state.sql != sql:
        kind = classify_change(state.sql, sql, warehouse.dialect)
        return f"{kind} change to its SQL", kind != "non-breaking"
    if node.builds_increments and state.increment_sql != increment:
        return "change to the SQL of its increment", True
    return None, False
