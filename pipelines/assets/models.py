"""The models as Dagster assets: one asset per model (its own lineage, checks and history in the
UI), all built by one multi-asset step, each model once what it reads is built. The source
tables are assets of the same step (`pipelines.assets.raw`): a model starts once the tables it
reads are landed, while other loads go on.

One step for every model keeps Dagster's bookkeeping per model to its events (materialization,
check results) instead of a whole step each. A model is logged as an AssetMaterialization (no
step output: its rows are in the warehouse), and a worker thread builds the models, as many at
once as the warehouse has builders (`Warehouse.builders`), while the step's thread hands the
finished ones' events to Dagster (`pipelines.threads.work_ahead`). Any
subset of models and tables can still be materialized (the step is subsettable); a model whose
blocking check fails, or a table whose load fails, is not published and the models that depend
on it are not run, while the others go on.
"""

# No `from __future__ import annotations` here: Dagster reads the asset functions'
# annotations (context type, resources) at definition time and needs real classes.

import contextlib
import logging
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence, Set
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import dagster as dg
import sqlglot
from dagster import AssetExecutionContext
from sqlglot import exp

from pipelines.assets.checks import check_result
from pipelines.assets.keys import model_key, seed_key, source_key
from pipelines.assets.raw import (
    Landing,
    land_source,
    pulls_everything,
    source_check_specs,
    source_spec,
    writes_first_load,
)
from pipelines.assets.resources import WarehouseResource
from pipelines.assets.schema import table_schema_for_model, table_schema_from_warehouse
from pipelines.assets.seeds import load_seed_asset, seed_spec
from pipelines.errors import (
    CheckFailedError,
    ModelError,
    ModelsNotPublishedError,
    WarehouseError,
    WarehouseMemoryError,
)
from pipelines.landing import FULL_PULL
from pipelines.meta import (
    AUDIT,
    LOAD_STATE,
    QUARANTINE,
    AuditEntry,
    audit_schema,
    last_durations,
    load_state_schema,
    load_states,
    record_audit,
)
from pipelines.modelling import (
    ModelGraph,
    ModelNode,
    seed_relation,
    source_relation,
)
from pipelines.modelling.audit import (
    checks_detail,
    describe_data_test,
    describe_test,
    evaluate_tests,
)
from pipelines.modelling.graph import SINCE_PLACEHOLDER
from pipelines.modelling.lineage import LINEAGE_CACHE, cached_column_lineage
from pipelines.modelling.materialize import feed_reset_at, has_history, prune_feed, widen_feed
from pipelines.modelling.publish import table_annotations, write_audit_publish
from pipelines.modelling.state import (
    ModelState,
    build_reason,
    changed_since,
    check_reuse,
    increment_sql,
    read_states,
    read_versions,
    record_build,
    state_tables,
    upstream_relations,
)
from pipelines.project import META_SCHEMA, RAW_SCHEMA, SeedFile
from pipelines.quality.checks import (
    CHECK_RESULTS,
    CheckOutcome,
    check_results_schema,
    passing_checks,
    record_outcomes,
)
from pipelines.quality.contracts import QUARANTINE_SCHEMA
from pipelines.threads import work_ahead
from pipelines.urls import scrub
from pipelines.warehouse.base import Relation, Warehouse

#: the name of the multi-asset (its op and step) that loads the seeds, lands the source tables
#: and builds the models
MODELS_STEP = "models"
#: in a ModelConfig list: every model (and, in `full_refresh`, every source table)
ALL = "*"


class ModelConfig(dg.Config):
    """Run-time options of the step (set by `ssot run --full-refresh ... / --all`)."""

    #: incremental models rebuilt from their whole query instead of applying an increment,
    #: and source tables pulled again from scratch, ignoring their stored cursor and file
    #: state (model names, `<source>.<table>`, or "*")
    full_refresh: list[str] = []
    #: models built even when their SQL and everything they read are unchanged (names, or
    #: "*"), and seeds loaded even when their file is unchanged (`seeds/<name>`, named: "*"
    #: does not reload the seeds, which would rebuild their readers whole)
    rebuild: list[str] = []

    def says(self, option: list[str], name: str) -> bool:
        return ALL in option or name in option


def check_specs(node: ModelNode) -> list[dg.AssetCheckSpec]:
    key = model_key(node.layer, node.name)
    checks: list[tuple[str, str, str]] = [
        (t.check_name, t.severity, describe_test(t)) for t in node.tests
    ]
    checks += [(t.check_name, t.severity, describe_data_test(t)) for t in node.data_tests]
    if node.suite is not None:
        checks += [(e.check_name, e.severity, e.describe()) for e in node.suite.expectations]
    return [
        dg.AssetCheckSpec(
            name=name, asset=key, blocking=severity == "error", description=description
        )
        for name, severity, description in checks
    ]


def code_references(node: ModelNode) -> Any:
    """Links from the asset to its model SQL and yml (the UI opens them)."""
    files = [(node.model.path, "model SQL")]
    if node.model.properties_path:
        files.append((node.model.properties_path, "model yml"))
    with warnings.catch_warnings():  # a beta API of Dagster 1.13, used as documented
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.CodeReferencesMetadataValue(
            code_references=[
                dg.LocalFileCodeReference(file_path=str(path), label=label) for path, label in files
            ]
        )


def lineage_metadata(
    warehouse: Warehouse, graph: ModelGraph, node: ModelNode, query: Any
) -> dg.TableColumnLineage:
    """Where each column of the built model comes from, as Dagster shows it."""
    keys = {
        graph.nodes[ref].relation: model_key(graph.nodes[ref].layer, ref)
        for ref in node.parsed.refs
        if ref in graph.nodes
    }
    keys.update({source_relation(s, t): source_key(s, t) for s, t in node.parsed.sources})
    keys.update({seed_relation(name): seed_key(name) for name in node.seeds})
    upstream = {relation: [name for name, _ in warehouse.columns(relation)] for relation in keys}
    traced = cached_column_lineage(
        query,
        upstream,
        dialect=warehouse.dialect,
        path=node.model.path,
        cache=graph.project.root / LINEAGE_CACHE,
    )
    return dg.TableColumnLineage(
        deps_by_column={
            column: [
                dg.TableColumnDep(asset_key=keys[s.relation], column_name=s.column)
                for s in sources
                if s.relation in keys
            ]
            for column, sources in traced.items()
        }
    )


def _blocked(
    key: dg.AssetKey, outcomes: list[CheckOutcome], candidate: Relation | None
) -> CheckFailedError:
    failed = ", ".join(o.name for o in outcomes if o.blocks)
    kept = (
        f"; the refused build is kept for inspection in {candidate}"
        if candidate is not None
        else ""
    )
    return CheckFailedError(
        f"{key.to_user_string()}: blocking check(s) failed: {failed}. Not published: readers "
        f"keep the previous version{kept}. Downstream assets do not run. See the failing rows "
        "in the check results (ssot_meta.check_results)."
    )


def model_spec(graph: ModelGraph, node: ModelNode) -> dg.AssetSpec:
    # Relationships tests read their parent model, so it must be built first: a dependency too.
    deps = [model_key(graph.nodes[ref].layer, ref) for ref in node.upstream]
    deps += [source_key(source, table) for source, table in sorted(set(node.parsed.sources))]
    deps += [seed_key(name) for name in node.seeds]
    project = graph.project
    return dg.AssetSpec(
        key=model_key(node.layer, node.name),
        deps=deps,
        group_name=node.layer,
        description=node.description or f"Model {node.name}",
        owners=[o if "@" in o or o.startswith("team:") else f"team:{o}" for o in node.owners],
        kinds={"sql", project.target.type},
        tags={"ssot/layer": node.layer, **dict.fromkeys(node.tags, "")},
        metadata={
            "dagster/column_schema": table_schema_for_model(node),
            "model_file": dg.MetadataValue.path(str(node.model.path.relative_to(project.root))),
            "dagster/code_references": code_references(node),
            "materialized": node.materialized,
            "relation": str(node.relation),
        },
        skippable=True,
    )


def build_models_asset(
    graph: ModelGraph,
    names: list[str] | None = None,
    *,
    landings: Sequence[Landing] = (),
    seeds: Sequence[SeedFile] = (),
) -> dg.AssetsDefinition:
    """The multi-asset of the models (all of them, or those ``names``), in graph order, and
    of the source tables ``landings`` and the ``seeds`` (the project's definitions give it
    every one)."""
    order = [name for name in graph.order if names is None or name in names]
    nodes = [graph.nodes[name] for name in order]
    project = graph.project
    checks = [spec for landing in landings for spec in source_check_specs(landing)]
    checks += [spec for node in nodes for spec in check_specs(node)]
    blocking = {spec.key: spec.blocking for spec in checks}

    @dg.multi_asset(
        name=MODELS_STEP,
        specs=[seed_spec(project, seed) for seed in seeds]
        + [source_spec(project, landing) for landing in landings]
        + [model_spec(graph, node) for node in nodes],
        check_specs=checks,
        can_subset=True,
    )
    def _models(
        context: AssetExecutionContext, config: ModelConfig, warehouse: WarehouseResource
    ) -> Iterator[Any]:
        selected = context.selected_asset_keys
        todo = [node for node in nodes if model_key(node.layer, node.name) in selected]
        lands = [landing for landing in landings if landing.key in selected]
        seeding = [seed for seed in seeds if seed_key(seed.name) in selected]
        failures: list[str] = []
        stopping = threading.Event()
        builds = _build_models(
            warehouse.session,
            graph,
            todo,
            config,
            context.run.run_id,
            failures,
            stopping,
            landings=lands,
            seeds=seeding,
        )
        targets: dict[dg.AssetKey, Any] = {}
        # never removed: Dagster writes its note once this generator is done, and the log
        # object is this step's own
        evaluated = _EvaluatedChecks(context)
        context.log.addFilter(evaluated)
        # a cancelled run closes this generator: the worker finishes the models it is
        # building (commit or rollback) and starts no more
        with contextlib.closing(work_ahead(builds, name="ssot-models")) as items:
            try:
                for item in items:
                    if isinstance(item, _Log):
                        getattr(context.log, item.level)(item.message)
                    elif isinstance(item, dg.AssetCheckResult):
                        yield _evaluation(context, item, blocking, targets)
                        evaluated.add(item)
                    else:
                        if isinstance(item, dg.AssetMaterialization):
                            targets.pop(item.asset_key, None)
                        yield item
            finally:
                stopping.set()
        if failures:
            raise ModelsNotPublishedError(
                f"{len(failures)} asset(s) not published:\n" + "\n".join(failures)
            )

    return _models


def _evaluation(
    context: AssetExecutionContext,
    result: dg.AssetCheckResult,
    blocking: Mapping[dg.AssetCheckKey, bool],
    targets: dict[dg.AssetKey, Any],
) -> dg.AssetCheckEvaluation:
    """``result`` as the evaluation Dagster stores for it, tied to the asset's latest
    materialization (``targets``: those looked up in this step, by asset), as Dagster ties
    a check result. Yielded as such it is one event: a check result would also be a step
    output, an event of its own that nothing reads (a check's result is its evaluation), as
    the models' materializations are logged rather than returned."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    key = result.asset_key
    assert key is not None and result.check_name is not None  # check_result() names both
    if key not in targets:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1
        ).records
        targets[key] = (
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=records[0].storage_id,
                run_id=records[0].run_id,
                timestamp=records[0].timestamp,
            )
            if records
            else None
        )
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=targets[key],
        severity=result.severity,
        description=result.description,
        blocking=blocking[dg.AssetCheckKey(key, result.check_name)],
    )


class _EvaluatedChecks(logging.Filter):
    """The checks whose evaluations the step yielded; as a filter of the step's log, it drops
    Dagster's note that the step "did not yield or return expected outputs" when the outputs
    it names are those checks' (Dagster counts a check as done only when it gets a check
    result, an output of the step, not when it gets the evaluation such a result would have
    become). The note stays when it names anything else: a check of a model that was not
    run, say."""

    _NOTE = "did not yield or return expected outputs"

    def __init__(self, context: AssetExecutionContext) -> None:
        super().__init__()
        self._outputs = {
            spec.key: name for name, spec in context.assets_def.check_specs_by_output_name.items()
        }
        self.names: set[str] = set()

    def add(self, result: dg.AssetCheckResult) -> None:
        assert result.asset_key is not None and result.check_name is not None
        name = self._outputs.get(dg.AssetCheckKey(result.asset_key, result.check_name))
        if name is not None:
            self.names.add(name)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._NOTE not in message:
            return True
        named = set(re.findall(r"'([^']+)'", message.split(self._NOTE, 1)[1]))
        return not named or not named <= self.names


@dataclass(frozen=True)
class _Log:
    """A message for the run's log, passed from the thread that builds to the step's thread
    (only the step's thread talks to Dagster)."""

    level: str  # info | warning | error
    message: str


def _build_models(
    session: Warehouse,
    graph: ModelGraph,
    nodes: list[ModelNode],
    config: ModelConfig,
    run_id: str,
    failures: list[str],
    stopping: threading.Event | None = None,
    *,
    landings: Sequence[Landing] = (),
    seeds: Sequence[SeedFile] = (),
) -> Iterator[Any]:
    """Load ``seeds`` (first, one after another: small files), land ``landings`` and build
    ``nodes``, each model once everything it reads is loaded, landed and built, on as many
    sessions at once as the warehouse's builders (``Warehouse.builders``); the events and
    log messages of each, as it finishes. A model whose upstream model, or a source table or
    seed it reads, did not publish is not run; every asset not published is added to
    ``failures``. Once ``stopping`` is set, or this generator is closed, a model being built
    finishes (commit or rollback), a load stops at its next batch (rolled back), and nothing
    else starts.

    Ready loads and models go by the chain of work each starts, longest first (loads first on
    a tie), and a model starts as soon as its own tables are landed: the loads' Python work
    (reading, the contracts) overlaps the models' SQL, which runs outside the interpreter's
    lock."""
    stopped: dict[str, str] = {}  # model, source table or seed -> why it did not publish
    for fed in graph.nodes.values():  # before any reader reads a feed
        if fed.change_feed and widen_feed(session, fed.build_spec):
            yield _Log(
                "info",
                f"{fed.name}: its change feed started again, with the columns its readers "
                "now read; they build whole once",
            )
    seeded: set[str] = set()
    for seed in seeds:
        if stopping is not None and stopping.is_set():
            break
        name = seed_key(seed.name).to_user_string()
        seeded.add(name)
        try:
            notes, events = load_seed_asset(
                session, seed, run_id=run_id, reload=name in config.rebuild
            )
        except Exception as exc:
            failed = _failed([], seed_key(seed.name), f"{type(exc).__name__}: {exc}", exc)
            stopped[name] = str(failed.stopped)
            failures.append(failed.failure)
            yield from failed.events
            continue
        yield from (_Log("info", f"{name}: {note}") for note in notes)
        yield from events
    states = read_states(session)  # as the last builds left them; each model is built once
    reads: dict[str, set[str]] = {}  # model -> the loads of the tables it reads
    waits = _waits(graph, nodes, landings, reads=reads)
    states_before = load_states(session) if landings else {}
    full_pulls = {
        landing.name
        for landing in landings
        if pulls_everything(
            landing, states_before, full_refresh=config.says(config.full_refresh, landing.option)
        )
    }
    waiting: list[ModelNode | Landing] = _longest_chains_first(
        session, nodes, waits, landings, full_pulls
    )
    selected = {item.name for item in waiting}
    in_order: list[ModelNode | Landing] = [*landings, *nodes]
    rank = {item.name: i for i, item in enumerate(in_order)}
    landed = {landing.name for landing in landings}
    finished: set[str] = set()
    alone: set[str] = set()  # what runs with nothing beside it: models built again, whole loads
    overlapped: set[str] = set()  # models that were building while another was
    with (
        # a bounded buffer pool for increments; a whole build lifts it while it runs
        session.memory_for_increments(),
        session.builders() as idle,
        ThreadPoolExecutor(max_workers=len(idle), thread_name_prefix="ssot-model") as pool,
    ):
        # a whole load, or a first one (which moves the warehouse's memory limit as it goes),
        # runs with the bound lifted and, beside other work, with nothing beside it, as loads
        # ran before they ran side by side
        whole_loads = set(full_pulls)
        if len(idle) > 1 or session.memory_bounded():
            whole_loads |= {
                landing.name
                for landing in landings
                if landing.name not in full_pulls and writes_first_load(session, landing)
            }
        if len(idle) > 1:
            _shared_objects_ready(session, nodes, landings)
            alone |= whole_loads
        running: dict[Future[_Built], tuple[ModelNode | Landing, Warehouse]] = {}

        def ready(node: ModelNode | Landing) -> bool:
            return all(up in finished or up not in selected for up in waits[node.name])

        while waiting or running:
            if stopping is not None and stopping.is_set():
                waiting.clear()  # a cancelled run: models building finish, loads stop, nothing starts
            moved = True
            while moved:  # until a pass neither starts nor skips a model
                moved = False
                draining = any(n.name in alone and ready(n) for n in waiting)
                for node in list(waiting):
                    if not ready(node):
                        continue
                    # a model is not run when a model, a source table or a seed it reads did
                    # not publish
                    if isinstance(node, ModelNode) and (
                        held := [
                            up
                            for up in (
                                *node.upstream,
                                *sorted(reads[node.name]),
                                *(seed_key(name).to_user_string() for name in node.seeds),
                            )
                            if up in stopped
                        ]
                    ):
                        waiting.remove(node)
                        finished.add(node.name)
                        stopped[node.name] = "not run"
                        what = (
                            "source table"
                            if held[0] in landed
                            else "seed"
                            if held[0] in seeded
                            else "model"
                        )
                        why = f"upstream {what} {held[0]} {stopped[held[0]]}"
                        key = model_key(node.layer, node.name)
                        yield _Log("warning", f"{key.to_user_string()}: not run: {why}")
                        yield dg.AssetObservation(asset_key=key, metadata={"not_run": why})
                        moved = True
                        continue
                    if not idle or any(n.name in alone for n, _ in running.values()):
                        continue
                    if draining and (node.name not in alone or running):
                        continue
                    if stopping is not None and stopping.is_set():
                        waiting.clear()
                        break
                    waiting.remove(node)
                    if running:  # each may now lack memory the other holds
                        overlapped.update({node.name, *(n.name for n, _ in running.values())})
                    builder = idle.pop(0)
                    if isinstance(node, Landing):
                        build = pool.submit(
                            _land_guarded,
                            run_id,
                            builder,
                            graph,
                            node,
                            config,
                            whole_memory=node.name in whole_loads or node.name in alone,
                            stop=stopping,
                        )
                    else:
                        build = pool.submit(
                            _build_guarded,
                            run_id,
                            builder,
                            graph,
                            node,
                            config,
                            states,
                            whole_memory=node.name in alone,
                        )
                    running[build] = (node, builder)
                    moved = True
            if not running:
                if waiting:  # cannot happen: every wait points to a model earlier in order
                    raise AssertionError(f"models left unbuildable: {[n.name for n in waiting]}")
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for build in sorted(done, key=lambda b: rank[running[b][0].name]):
                node, builder = running.pop(build)
                idle.append(builder)
                built = build.result()
                if (
                    built.out_of_memory
                    and node.name not in alone
                    and (node.name in overlapped or built.bounded)
                ):
                    # it may fit with the memory to itself: built again, nothing beside it and
                    # no bound on it, from what it committed (a failure after its publish keeps
                    # the publish). `bounded` is as the build started: a whole build that ran
                    # out of memory alone gets one retry it did not need.
                    alone.add(node.name)
                    waiting.insert(0, node)
                    if isinstance(node, ModelNode):
                        states.update(read_states(builder, node.name))
                        key = model_key(node.layer, node.name)
                    else:  # landed again from its stored state (what it committed stays)
                        key = node.key
                    why = (
                        "while other work was running"
                        if node.name in overlapped
                        else "in a step whose memory is bounded for increments"
                    )
                    yield _Log(
                        "warning",
                        f"{key.to_user_string()}: out of memory {why}; it runs again alone, "
                        "with the whole memory",
                    )
                    continue
                finished.add(node.name)
                if built.stopped is not None:
                    stopped[node.name] = built.stopped
                    failures.append(built.failure)
                yield from built.events


def _shared_objects_ready(
    session: Warehouse, nodes: list[ModelNode], landings: Sequence[Landing] = ()
) -> None:
    """Create what builders running side by side would otherwise both create: the models'
    and raw's schemas and the bookkeeping tables every build or load writes a row into, with
    their current columns (two transactions creating or altering one catalog entry
    conflict)."""
    schemas = {node.relation.schema for node in nodes} | {META_SCHEMA}
    schemas |= {landing.relation.schema for landing in landings}
    tables = [(AUDIT, audit_schema()), (CHECK_RESULTS, check_results_schema()), *state_tables()]
    if landings:
        tables += [(LOAD_STATE, load_state_schema()), (QUARANTINE, QUARANTINE_SCHEMA)]
    with session.transaction():
        for schema in sorted(schemas):
            session.ensure_schema(schema)
        for relation, schema in tables:
            session.append_arrow(relation, schema.empty_table(), add_columns=True)


@dataclass(frozen=True)
class _Built:
    """What building one model gave: its events, and why it did not publish (if it did not)."""

    events: list[Any]
    stopped: str | None = None
    failure: str = ""
    #: it failed for want of memory (another build may have held it)
    out_of_memory: bool = False
    #: the session's memory was bounded for increments when the build started
    bounded: bool = False


def _build_guarded(
    run_id: str,
    session: Warehouse,
    graph: ModelGraph,
    node: ModelNode,
    config: ModelConfig,
    states: Mapping[str, ModelState],
    *,
    whole_memory: bool = False,
) -> _Built:
    """Build one model on ``session`` (a builder's thread); a refusal or an error is kept in
    what it returns, with the events before it. ``whole_memory``: lift the bound of
    increments while it builds (a retry after running out of memory)."""
    key = model_key(node.layer, node.name)
    events: list[Any] = []
    bounded = session.memory_bounded() and not whole_memory
    # its events are handed over once it is done
    with _holding(session, whole_memory=whole_memory):
        try:
            for event in _build_model(  # events before a refusal are kept
                run_id,
                session,
                graph,
                node,
                full_refresh=config.says(config.full_refresh, node.name),
                rebuild=config.says(config.rebuild, node.name),
                states=states,
            ):
                events.append(event)
        except CheckFailedError as exc:
            return _Built(events, "was refused by a blocking check", str(exc))
        except Exception as exc:
            return _failed(events, key, f"{type(exc).__name__}: {exc}", exc, bounded=bounded)
    return _Built(events)


def _land_guarded(
    run_id: str,
    session: Warehouse,
    graph: ModelGraph,
    landing: Landing,
    config: ModelConfig,
    *,
    whole_memory: bool = False,
    stop: threading.Event | None = None,
) -> _Built:
    """Land one source table on ``session`` (a builder's thread); a failure is kept in what
    it returns. ``whole_memory``: lift the bound of increments while it runs (a load that
    pulls the whole table, or writes raw as a first load; an incremental one lands within
    the bound). ``stop``: set when the run is cancelled: the load stops at its next batch
    and keeps nothing, rather than reading to its end."""
    started = time.perf_counter()
    full_refresh = config.says(config.full_refresh, landing.option)
    bounded = session.memory_bounded() and not whole_memory
    try:
        with _holding(session, whole_memory=whole_memory):
            warnings, events = land_source(
                graph.project,
                session,
                landing,
                run_id=run_id,
                full_refresh=full_refresh,
                stop=stop,
            )
    except Exception as exc:
        # the source's URL (a password, say) stays out of the run's history
        message = scrub(f"{type(exc).__name__}: {exc}", graph.project.source_url(landing.source))
        return _failed(
            [],
            landing.key,
            message,
            exc,
            bounded=bounded,
            duration_s=round(time.perf_counter() - started, 3),
        )
    return _Built([*(_Log("warning", w) for w in warnings), *events])


@contextlib.contextmanager
def _holding(session: Warehouse, *, whole_memory: bool) -> Iterator[None]:
    """A build or load holds its session while it runs (the end-of-run publish waits for
    it); ``whole_memory``: with the bound of increments lifted."""
    with (
        session.exclusive,
        session.memory_for_whole_build() if whole_memory else contextlib.nullcontext(),
    ):
        yield


def _failed(
    events: list[Any],
    key: dg.AssetKey,
    message: str,
    error: BaseException,
    *,
    bounded: bool = False,
    **metadata: Any,
) -> _Built:
    """What a build, load or seed that failed with ``error`` gives: ``events`` (those before
    the failure), then the error in the run's log and as an observation of the asset (with
    ``metadata``)."""
    name = key.to_user_string()
    return _Built(
        [
            *events,
            _Log("error", f"{name}: {message}"),
            dg.AssetObservation(asset_key=key, metadata={"error": message[:4000], **metadata}),
        ],
        "failed",
        f"{name}: {message}",
        out_of_memory=_out_of_memory(error),
        bounded=bounded,
    )


def _out_of_memory(error: BaseException | None) -> bool:
    """Whether ``error``, or an error it was raised from or during (its context is followed
    even when it was raised ``from None``), is the warehouse running out of memory."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, WarehouseMemoryError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _waits(
    graph: ModelGraph,
    nodes: list[ModelNode],
    landings: Sequence[Landing] = (),
    *,
    reads: dict[str, set[str]] | None = None,
) -> dict[str, set[str]]:
    """model -> the models built and the source tables landed before it: its upstream models
    (refs, relationships targets) and the tables of ``landings`` it reads (`source()`); and
    where one model's SQL (whole or increment), data tests or tests (a generic test's SQL, a
    `where` filter) name another model's table or a raw table by hand, the model earlier in
    graph order is built first (as when models were built one after another), the table
    landed first; a raw table that is no source table of the project, every load (waits
    order the work: a model is stopped only by the loads it reads, which ``reads`` is
    filled with, model -> loads). A model whose SQL cannot be read here waits for every
    model before it and every load (its build reports the error). A load waits for nothing.
    Every wait points to a load or a model earlier in graph order, so none goes round in a
    circle."""
    place = {name: i for i, name in enumerate(graph.order)}
    by_relation = {node.relation: node.name for node in nodes}
    loads = {landing.relation.folded: landing.name for landing in landings}
    sources = {source_relation(s.name, t.name).folded for s, t in graph.project.source_tables()}
    waits: dict[str, set[str]] = {landing.name: set() for landing in landings}
    reads = reads if reads is not None else {}
    for node in nodes:
        read = {source_relation(source, table).folded for source, table in node.parsed.sources}
        reads[node.name] = {loads[relation] for relation in read if relation in loads}
        waits[node.name] = set(node.upstream) | reads[node.name]
    for node in nodes:
        try:
            named = _named_relations(graph, node)
        except Exception:  # its own build tells what is wrong with it
            waits[node.name] |= {n.name for n in nodes if place[n.name] < place[node.name]}
            waits[node.name] |= set(loads.values())
            continue
        for relation in named:
            if relation.folded in loads:
                reads[node.name].add(loads[relation.folded])
                waits[node.name].add(loads[relation.folded])
            elif relation.schema.lower() == RAW_SCHEMA and relation.folded not in sources:
                # a raw table no load writes (made by hand, say): read once the loads are done
                waits[node.name] |= set(loads.values())
            other = by_relation.get(relation)
            if other is None or other == node.name:
                continue
            if place[other] < place[node.name]:
                waits[node.name].add(other)
            else:
                waits[other].add(node.name)
    return waits


def _named_relations(graph: ModelGraph, node: ModelNode) -> set[Relation]:
    """Every relation a model's queries and its tests' queries name (by ref or by hand)."""
    queries: list[exp.Expr] = [graph.query(node.name)]
    if node.builds_increments:
        queries.append(graph.query(node.name, incremental=True, since=SINCE_PLACEHOLDER))
    queries += [graph.data_test_query(test) for test in node.data_tests]
    for test in node.tests:
        if not test.is_builtin:
            queries.append(graph.generic_test_query(node, test, node.relation.to_table()))
        if test.where:
            queries.append(sqlglot.parse_one(f"SELECT 1 WHERE {test.where}", read="duckdb"))
    return {Relation(t.db, t.name) for q in queries for t in q.find_all(exp.Table) if t.db}


#: seconds a model with no build on record counts for when ordering the builds
_UNKNOWN_BUILD_S = 1.0


def _longest_chains_first(
    session: Warehouse,
    nodes: list[ModelNode],
    waits: Mapping[str, set[str]],
    landings: Sequence[Landing] = (),
    full_pulls: Set[str] = frozenset(),
) -> list[ModelNode | Landing]:
    """``landings`` and ``nodes`` (in graph order) by the time of the longest chain of work
    each starts, its own load or build and the builds of the models that wait for it (the
    latest builds' durations; a load pulling everything, those of ``full_pulls``, takes what
    the table's latest full pull took, an incremental one what its latest incremental load
    took), longest first; ties keep loads before models, and graph order. Builders taking
    the next ready item from this list start the chain that ends last first."""
    keys = {node.name: model_key(node.layer, node.name).to_user_string() for node in nodes}
    took = last_durations(session, "build", list(keys.values()))
    full = [landing.name for landing in landings if landing.name in full_pulls]
    increments = [landing.name for landing in landings if landing.name not in full_pulls]
    took.update(last_durations(session, "load", full, like=FULL_PULL))
    # a day's pull takes a fraction of a first one's: a table whose loads were all full
    # pulls counts as unknown, like the others, so the models' chains decide the order
    took.update(last_durations(session, "load", increments, unlike=FULL_PULL))
    keys.update({landing.name: landing.name for landing in landings})
    items: list[ModelNode | Landing] = [*landings, *nodes]
    readers: dict[str, list[str]] = {item.name: [] for item in items}
    for item in items:
        for up in waits[item.name]:
            if up in readers:
                readers[up].append(item.name)
    chain: dict[str, float] = {}
    for item in reversed(items):
        after = max((chain[r] for r in readers[item.name]), default=0.0)
        chain[item.name] = took.get(keys[item.name], _UNKNOWN_BUILD_S) + after
    place = {item.name: i for i, item in enumerate(items)}
    return sorted(items, key=lambda n: (-chain[n.name], place[n.name]))


def _build_model(
    run_id: str,
    session: Warehouse,
    graph: ModelGraph,
    node: ModelNode,
    *,
    full_refresh: bool,
    rebuild: bool,
    states: Mapping[str, ModelState] | None = None,
) -> Iterator[Any]:
    """Write, audit, publish one model: the build and its checks run in one transaction, which
    commits (publishes) only when no blocking check failed; a refusal raises CheckFailedError
    after its check results."""
    key = model_key(node.layer, node.name)
    asset_name = key.to_user_string()
    started = time.perf_counter()

    def entry(kind: str, rows: int, outcome: str, detail: str = "") -> AuditEntry:
        return AuditEntry(
            run_id=run_id,
            asset=asset_name,
            kind=kind,
            rows_in=0,
            rows_out=rows,
            rows_quarantined=0,
            duration_s=time.perf_counter() - started,
            outcome=outcome,
            detail=detail,
        )

    candidate: Relation | None = None
    try:
        states = states if states is not None else read_states(session, node.name)
        full_query = graph.query(node.name)
        sql = full_query.sql(dialect=session.dialect)
        increment = increment_sql(graph, node, session.dialect)
        reason, changes_data = build_reason(graph, node, session, sql, states, increment)
        if reason is None and (rebuild or full_refresh):
            reason, changes_data = "asked for (--all or --full-refresh)", True
        if reason is None:
            # SQL and inputs unchanged since the last build: keep the table. Its checks have
            # a result in every run: the latest one where the check and what it reads are
            # unchanged since, else a new one.
            reuse = check_reuse(session, graph, asset_name)
            outcomes = evaluate_tests(session, graph, node, reuse=reuse)
            record_outcomes(
                session,
                outcomes,
                run_id=run_id,
                asset=asset_name,
                audited=str(node.relation),
                published=True,
            )
            rows = session.row_count(node.relation)
            record_audit(
                session,
                entry(
                    "checks",
                    rows,
                    "failed" if any(o.blocks for o in outcomes) else "success",
                    checks_detail(outcomes),
                ),
            )
            if any(o.blocks for o in outcomes):
                yield from (check_result(o, key) for o in outcomes)
                failed = ", ".join(o.name for o in outcomes if o.blocks)
                raise CheckFailedError(
                    f"{asset_name}: blocking check(s) failed on the published table: {failed}. "
                    "It was not rebuilt (its SQL and inputs are unchanged since its last build), "
                    "so readers already see these rows; downstream assets do not run. Fix the "
                    "data or the check; the failing rows are in ssot_meta.check_results."
                )
            yield from _materialized(
                key,
                {
                    "dagster/row_count": rows,
                    "rebuilt": False,
                    "duration_s": round(time.perf_counter() - started, 3),
                    "reason": "SQL and inputs unchanged since the last build",
                },
                outcomes,
            )
            return
        state = states.get(node.name)
        whole = _whole_build(session, graph, node, state, sql, increment, full_refresh=full_refresh)
        incremental = whole is None
        if incremental:
            assert state is not None
            query = graph.query(node.name, incremental=True, since=state.built_at)
        else:
            query = full_query
        if node.change_feed:
            readers = [states.get(n) for n in graph.feed_readers(node.name)]
            if readers and all(r is not None for r in readers):
                prune_feed(session, node.build_spec, min(r.built_at for r in readers if r))

        def on_publish(rows: int, staged: int | None) -> None:
            if node.materialized == "snapshot":
                detail = f"{staged} versions opened or closed"
            else:
                detail = f"increment of {staged} rows" if staged is not None else ""
            if whole and node.builds_increments and whole != "first build":
                detail = "; ".join(d for d in (detail, f"built whole: {whole}") if d)
            record_build(session, node, sql, run_id, changed=changes_data, increment_sql=increment)
            record_audit(
                session,
                entry("build", rows, "success", "; ".join(d for d in (reason, detail) if d)),
                entry("checks", rows, "success", checks_detail(audited)),
                entry("publish", rows, "success", f"published {node.relation}"),
            )

        audited: list[CheckOutcome] = []
        # an increment's rows are audited alone by the checks that passed last time
        passing = passing_checks(session, asset_name) if incremental else {}

        def audit(relation: Relation, written: Relation | None) -> list[CheckOutcome]:
            audited[:] = evaluate_tests(
                session,
                graph,
                node,
                relation,
                written=written,
                passing=passing,
                since=state.built_at if state is not None else None,
            )
            return audited

        # a whole build gets the warehouse's whole memory (increments share a bounded pool)
        with contextlib.nullcontext() if incremental else session.memory_for_whole_build():
            built = write_audit_publish(
                session, node, query, incremental=incremental, audit=audit, on_publish=on_publish
            )
        rows, staged, built_s, outcomes = built.rows, built.staged, built.build_s, built.outcomes
        candidate = built.candidate
        if built.keep_error:
            yield _Log(
                "warning", f"{node.name}: the refused build cannot be kept: {built.keep_error}"
            )
        if not built.published:
            record_audit(
                session,
                entry("build", rows, "success", reason),
                entry("checks", rows, "failed", checks_detail(outcomes)),
                entry(
                    "publish",
                    0,
                    "blocked",
                    "not published; previous version kept"
                    + (f"; candidate in {candidate}" if candidate is not None else ""),
                ),
            )
        record_outcomes(
            session,
            outcomes,
            run_id=run_id,
            asset=asset_name,
            audited=built.audited,
            published=built.published,
        )
        if not built.published:
            yield from (check_result(o, key) for o in outcomes)
            raise _blocked(key, outcomes, candidate)
        # published: what follows is metadata only, so its failures are warnings
        upstream = [str(relation) for relation in upstream_relations(graph, node)]
        try:
            session.annotate(node.relation, *table_annotations(node, upstream))
        except WarehouseError as exc:
            yield _Log("warning", f"{asset_name}: description and labels not set: {exc}")
        try:
            # traced on the model's whole query: an increment's query names its feeds and
            # the time of the last build, so it would be traced afresh (and cached) every run
            lineage: Any = lineage_metadata(session, graph, node, full_query)
            schema: Any = table_schema_from_warehouse(session.columns(node.relation))
        except (ModelError, WarehouseError) as exc:
            yield _Log("warning", str(exc))
            lineage = schema = None
    except CheckFailedError:
        raise
    except Exception as exc:
        with contextlib.suppress(WarehouseError):  # the build's own error matters more
            record_audit(
                session, entry("build", 0, "failed", f"{type(exc).__name__}: {exc}"[:2000])
            )
        raise
    yield from _materialized(
        key,
        {
            "dagster/row_count": rows,
            **({"dagster/column_schema": schema} if schema is not None else {}),
            **({"dagster/column_lineage": lineage} if lineage is not None else {}),
            "build_s": round(built_s, 3),
            "rebuilt": True,
            "duration_s": round(time.perf_counter() - started, 3),
            "reason": reason,
            **({"increment_rows": staged} if staged is not None else {}),
            "compiled_sql": dg.MetadataValue.md(
                f"```sql\n{type(session).sql_for(query, pretty=True)}\n```"
            ),
        },
        outcomes,
    )


def _whole_build(
    session: Warehouse,
    graph: ModelGraph,
    node: ModelNode,
    state: ModelState | None,
    sql: str,
    increment: str,
    *,
    full_refresh: bool,
) -> str | None:
    """Why ``node`` is built from its whole query this time; None: from its increment.

    An increment applied to rows an older query built would mix the two, so a model whose
    SQL (whole or increment) or materialization changed is built whole. So is one that reads
    `changes()` but cannot tell what changed upstream: a change feed it reads started (again)
    after its last build, or something it reads otherwise (a seed, a plain ref) changed. A
    model that does not read `changes()` finds its increment itself, as in dbt."""
    if not node.builds_increments:
        return "not incremental"
    if full_refresh:
        return "full refresh asked for"
    if state is None or not session.exists(node.relation):
        return "first build"
    if session.is_view(node.relation) or state.materialized != node.materialized:
        return "its materialization changed"
    if state.sql != sql or state.increment_sql != increment:
        return "its SQL changed"
    if node.materialized == "snapshot" and not has_history(session, node.relation):
        return "no history yet"
    for name in node.parsed.changes:
        reset = feed_reset_at(session, graph.nodes[name].build_spec)
        if reset is None or reset >= state.built_at:
            return f"the change feed of {name} starts after this model's last build"
    if not node.parsed.changes and not node.parsed.source_changes:
        return None  # it finds what changed itself (dbt's way: a filter on {{ this }})
    unread = [graph.relation_of(ref) for ref in node.parsed.refs if ref not in node.parsed.changes]
    unread += [
        source_relation(source, table)
        for source, table in node.parsed.sources
        if (source, table) not in node.parsed.source_changes
    ]
    changed = changed_since(unread, read_versions(session, unread), state.built_at)
    if changed is not None:
        return f"{changed} changed and is not read through changes()"
    return None


def _materialized(
    key: dg.AssetKey, metadata: dict[str, Any], outcomes: list[CheckOutcome]
) -> Iterator[Any]:
    """A published model's events: its materialization, then its check results.

    Logged as an AssetMaterialization rather than returned as an output: the model's rows live
    in the warehouse, so an output would only add a step-output event and Dagster's input
    provenance lookups per model (about a third of Dagster's cost per model).
    """
    yield dg.AssetMaterialization(asset_key=key, metadata=metadata)
    yield from (check_result(o, key) for o in outcomes)
