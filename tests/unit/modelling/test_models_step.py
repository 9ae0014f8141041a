"""The models' multi-asset step: what it tells Dagster and what it does when metadata fails."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from pipelines.assets.models import _longest_chains_first, _waits, build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import TerminalWarehouseError, WarehouseMemoryError
from pipelines.meta import AuditEntry, record_audit
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.warehouse import Relation, open_warehouse

MODELS = {
    "models/staging/a.sql": "select 1 as id, 10 as amount union all select 2, 5",
    "models/marts/b.sql": "select id, amount * 2 as doubled from {{ ref('a') }}",
}


def with_memory(root, *, threads: int = 2, memory_limit: str = "4GB"):
    """The project's DuckDB target with a set thread count and memory limit, so that the
    bound of increments (which both size) is the same on every machine."""
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'type = "duckdb"',
            f'type = "duckdb"\nthreads = {threads}\nmemory_limit = "{memory_limit}"',
            1,
        )
    )
    return root


def run(root, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    graph = ModelGraph(load_project(root))
    return dg.materialize(
        [build_models_asset(graph)],
        resources={"warehouse": WarehouseResource(project_dir=str(root))},
        instance=instance,
        raise_on_error=False,
    )


def test_each_model_is_one_materialization_with_its_metadata_and_no_step_output(
    make_project,
) -> None:
    root = make_project(MODELS)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert result.success
        events = {
            e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        types = [e.event_type_value for e in result.all_events]
    assert set(events) == {"staging/a", "marts/b"}
    assert events["marts/b"]["dagster/row_count"].value == 2
    lineage = events["marts/b"]["dagster/column_lineage"].value
    assert [d.column_name for d in lineage.deps_by_column["doubled"]] == ["amount"]
    assert "STEP_OUTPUT" not in types  # the rows are in the warehouse: nothing is handed on


def test_a_check_result_is_one_evaluation_tied_to_the_materialization_of_its_run(
    make_project,
) -> None:
    root = make_project(
        {
            **MODELS,
            "models/marts/schema.yml": """
version: 2
models:
  - name: b
    columns:
      - name: id
        tests: [unique, {accepted_values: {values: [1], config: {severity: warn}}}]
""",
        }
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert result.success
        types = [e.event_type_value for e in result.all_events]
        (materialization,) = instance.fetch_materializations(
            dg.AssetKey(["marts", "b"]), limit=1
        ).records
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        notes = [e.user_message for e in instance.all_logs(result.run_id)]
    assert set(evaluations) == {"unique__id", "accepted_values__id"}
    # nor a note from Dagster that the checks' outputs were not yielded: they were evaluated
    assert not [n for n in notes if "expected outputs" in n]
    unique, accepted = evaluations["unique__id"], evaluations["accepted_values__id"]
    assert unique.passed and unique.blocking and unique.severity == dg.AssetCheckSeverity.ERROR
    assert not accepted.passed and not accepted.blocking
    assert accepted.severity == dg.AssetCheckSeverity.WARN
    assert accepted.metadata["failing_rows"].value == 1
    for evaluation in evaluations.values():
        target = evaluation.target_materialization_data
        assert target is not None and target.run_id == result.run_id
        assert target.storage_id == materialization.storage_id
    # a check's result is its evaluation alone: no step output for it (nor for a model)
    assert types.count("ASSET_CHECK_EVALUATION") == 2 and "STEP_OUTPUT" not in types


def test_metadata_that_cannot_be_written_is_a_warning_not_a_failure(
    make_project, monkeypatch
) -> None:
    root = make_project(MODELS)

    def refuse(self, relation, description, labels) -> None:
        raise TerminalWarehouseError("comments are switched off here")

    monkeypatch.setattr("pipelines.warehouse.duckdb.DuckDBWarehouse.annotate", refuse)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert result.success
        warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.level >= 30 and "description and labels not set" in e.user_message
        ]
    assert len(warnings) == 2 and "comments are switched off here" in warnings[0]
    with open_warehouse(load_project(root), read_only=True) as warehouse:
        assert warehouse.row_count(Relation("marts", "b")) == 2  # published all the same


def test_a_model_failing_in_the_worker_stops_its_dependents_and_fails_the_step(
    make_project,
) -> None:
    root = make_project(
        {
            **MODELS,
            "models/staging/broken.sql": "select id, error('bad row ' || id) as x from {{ ref('a') }}",
            "models/marts/after_broken.sql": "select * from {{ ref('broken') }}",
        }
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        assert not result.success
        materialized = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        observations = {
            e.asset_key.to_user_string(): e.event_specific_data.asset_observation.metadata
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        }
        errors = [e.user_message for e in instance.all_logs(result.run_id) if e.level >= 40]
    assert materialized == {"staging/a", "marts/b"}  # the others went on
    assert "bad row" in observations["staging/broken"]["error"].value
    assert "upstream model broken failed" in observations["marts/after_broken"]["not_run"].value
    assert any("staging/broken" in m and "bad row" in m for m in errors)
    failure = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "1 asset(s) not published" in failure and "staging/broken" in failure


def test_models_that_do_not_wait_for_each_other_are_built_at_the_same_time(
    make_project, monkeypatch
) -> None:
    # slow and other read nothing of each other: with two builders, each is built on its
    # own session while the other is; b waits for a, and last waits for both
    root = make_project(
        {
            **MODELS,
            "models/staging/other.sql": "select 3 as id",
            "models/marts/last.sql": "select id from {{ ref('b') }} "
            "union all select id from {{ ref('other') }}",
        }
    )
    import pipelines.assets.models as step

    real = step._build_model
    overlap = threading.Barrier(2, timeout=20)
    spans: dict[str, tuple[float, float, int]] = {}

    def spying(run_id, session, graph, node, **kwargs):
        started = time.monotonic()
        if node.name in ("a", "other"):
            overlap.wait()  # both are in progress at once, or this times out
        yield from real(run_id, session, graph, node, **kwargs)
        spans[node.name] = (started, time.monotonic(), id(session))

    monkeypatch.setattr(step, "_build_model", spying)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
    assert result.success
    assert spans["a"][2] != spans["other"][2]  # two sessions
    assert spans["b"][0] >= spans["a"][1]  # a dependent starts once what it reads is built
    assert spans["last"][0] >= max(spans["b"][1], spans["other"][1])
    with open_warehouse(load_project(root), read_only=True) as warehouse:
        assert warehouse.row_count(Relation("marts", "last")) == 3


def test_one_builder_builds_one_model_at_a_time_in_graph_order(make_project, monkeypatch) -> None:
    root = make_project({**MODELS, "models/staging/other.sql": "select 3 as id"})
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    assert 'type = "duckdb"' in text
    pyproject.write_text(text.replace('type = "duckdb"', 'type = "duckdb"\nbuilders = 1', 1))
    import pipelines.assets.models as step

    real = step._build_model
    order: list[tuple[str, int]] = []

    def spying(run_id, session, graph, node, **kwargs):
        order.append((node.name, id(session)))
        yield from real(run_id, session, graph, node, **kwargs)

    monkeypatch.setattr(step, "_build_model", spying)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run(root, instance).success
    assert [name for name, _ in order] == ["a", "b", "other"]
    assert len({session for _, session in order}) == 1


def test_a_model_named_by_hand_in_a_test_is_built_before_the_test_runs(make_project) -> None:
    # b's test reads staging.aa by name (no ref): aa is built first all the same
    root = make_project(
        {
            "models/staging/aa.sql": "select 1 as id union all select 2",
            "models/staging/a.sql": "select 1 as id",
            "models/marts/b.sql": "select id from {{ ref('a') }}",
            "models/marts/schema.yml": """
version: 2
models:
  - name: b
    columns:
      - name: id
        tests:
          - unique: {config: {where: "id in (select id from staging.aa)"}}
""",
        }
    )
    graph = ModelGraph(load_project(root))
    waits = _waits(graph, [graph.nodes[name] for name in graph.order])
    assert waits["b"] == {"a", "aa"} and waits["aa"] == set()


def test_a_model_named_by_hand_later_in_graph_order_waits_for_its_reader(make_project) -> None:
    # built one after another, z (named by a's SQL) was rebuilt after a read it: still so
    root = make_project(
        {
            "models/staging/a.sql": "select count(*) as n from marts.z",
            "models/marts/z.sql": "select 1 as id",
        }
    )
    graph = ModelGraph(load_project(root))
    assert graph.order.index("a") < graph.order.index("z")
    waits = _waits(graph, [graph.nodes[name] for name in graph.order])
    assert waits == {"a": set(), "z": {"a"}}


def test_a_model_failing_stops_what_waits_for_it_whatever_the_order_of_the_waits(
    make_project,
) -> None:
    # f fails; x refs f, so it is not run; y reads x by hand (no ref) and z refs y: both are
    # built all the same (y reads x as it was), and the step reports f alone
    root = make_project(
        {
            "models/staging/f.sql": "select 1 as id",
            "models/staging/x.sql": "select * from {{ ref('f') }}",
            "models/staging/w.sql": "select 1 as id",
            "models/staging/y.sql": "select count(*) as n from {{ ref('w') }}, staging.x",
            "models/staging/z.sql": "select * from {{ ref('y') }}",
        }
    )
    with dg.DagsterInstance.ephemeral() as instance:
        assert run(root, instance).success
    (root / "models/staging/f.sql").write_text("select error('bad') as id")
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not result.success
    assert materialized == {"staging/w", "staging/y", "staging/z"}
    failure = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "1 asset(s) not published" in failure and "staging/f" in failure


def test_a_model_whose_sql_does_not_parse_fails_alone(make_project) -> None:
    root = make_project(
        {
            **MODELS,
            "models/staging/other.sql": "select 3 as id",
            "models/marts/c.sql": "select id from {{ ref('other') }}",
            "models/marts/schema.yml": """
version: 2
models:
  - name: c
    columns:
      - name: id
        tests:
          - unique: {config: {where: "id = 'unterminated"}}
""",
        }
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not result.success
    assert {"staging/a", "marts/b", "staging/other"} <= materialized
    assert "marts/c" in str(result.get_step_failure_events()[0].step_failure_data.error)


def test_dagster_s_note_of_outputs_not_yielded_is_dropped_only_for_evaluated_checks() -> None:
    import logging
    from types import SimpleNamespace

    from pipelines.assets.models import _EvaluatedChecks

    a, b = dg.AssetKey(["marts", "a"]), dg.AssetKey(["marts", "b"])
    specs = {
        "a_unique": dg.AssetCheckSpec("unique__id", asset=a),
        "b_unique": dg.AssetCheckSpec("unique__id", asset=b),
    }
    checks = _EvaluatedChecks(
        SimpleNamespace(assets_def=SimpleNamespace(check_specs_by_output_name=specs))
    )

    def kept(message: str) -> bool:
        return bool(checks.filter(logging.LogRecord("x", logging.INFO, "", 0, message, None, None)))

    note = "op 'models' did not yield or return expected outputs {names}."
    checks.add(dg.AssetCheckResult(asset_key=a, check_name="unique__id", passed=True))
    assert not kept(note.format(names="{'a_unique'}"))
    assert kept(note.format(names="{'a_unique', 'b_unique'}"))  # b's check never evaluated
    assert kept("published the warehouse for readers")
    checks.add(dg.AssetCheckResult(asset_key=b, check_name="unique__id", passed=False))
    assert not kept(note.format(names="{'a_unique', 'b_unique'}"))


def test_a_model_out_of_memory_beside_another_is_built_again_alone(
    make_project, monkeypatch
) -> None:
    root = make_project({**MODELS, "models/staging/other.sql": "select 3 as id"})
    import pipelines.assets.models as step

    real = step._build_model
    both = threading.Barrier(2, timeout=20)
    attempts: list[tuple[str, int]] = []
    running = [0]
    lock = threading.Lock()

    def tight(run_id, session, graph, node, **kwargs):
        with lock:
            running[0] += 1
            attempts.append((node.name, running[0]))
        try:
            if len(attempts) <= 2:  # a and other start together; other runs out of memory
                both.wait()
                if node.name == "other":
                    raise WarehouseMemoryError("DuckDB: Out of Memory Error: could not allocate")
            yield from real(run_id, session, graph, node, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(step, "_build_model", tight)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert result.success
    assert [name for name, _ in attempts].count("other") == 2
    assert ("other", 1) in attempts[2:]  # the second time, nothing else was building
    assert any("out of memory" in m and "runs again alone" in m for m in warnings)


def test_an_increment_out_of_memory_within_the_bound_is_built_again_with_the_whole_memory(
    make_project, monkeypatch
) -> None:
    root = with_memory(make_project(MODELS))  # a -> b: b builds alone
    import pipelines.assets.models as step

    real = step._build_model
    attempts: list[tuple[str, bool]] = []

    def tight(run_id, session, graph, node, **kwargs):
        attempts.append((node.name, session.memory_bounded()))
        if node.name == "b" and len(attempts) == 2:
            raise WarehouseMemoryError("DuckDB: Out of Memory Error: could not allocate")
        yield from real(run_id, session, graph, node, **kwargs)

    monkeypatch.setattr(step, "_build_model", tight)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert result.success
    # bounded as each starts; the retry runs with the bound lifted
    assert attempts == [("a", True), ("b", True), ("b", False)]
    assert any("in a step whose memory is bounded for increments" in m for m in warnings)


def test_the_bound_holds_while_the_models_step_runs_and_ends_with_it(
    make_project, monkeypatch
) -> None:
    root = with_memory(make_project(MODELS))
    import pipelines.assets.models as step
    from pipelines.warehouse.duckdb import INCREMENT_MEMORY_MIN_MB, DuckDBWarehouse, _megabytes

    setting = "select current_setting('memory_limit')"
    during: list[str] = []
    at_publish: list[str] = []
    real_build, real_publish = step._build_model, DuckDBWarehouse.publish

    def watched(run_id, session, graph, node, **kwargs):
        during.append(str(session.scalar(setting)))
        yield from real_build(run_id, session, graph, node, **kwargs)

    def publish(self):
        at_publish.append(str(self.scalar(setting)))
        return real_publish(self)

    monkeypatch.setattr(step, "_build_model", watched)
    monkeypatch.setattr(DuckDBWarehouse, "publish", publish)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run(root, instance).success
    assert [_megabytes(v) for v in during] == [pytest.approx(INCREMENT_MEMORY_MIN_MB, rel=0.01)] * 2
    assert at_publish and _megabytes(at_publish[0]) == pytest.approx(4000, rel=0.01)  # 4GB


def test_whole_builds_run_with_the_whole_memory(make_project, monkeypatch) -> None:
    root = with_memory(make_project(MODELS))
    import pipelines.assets.models as step

    real = step.write_audit_publish
    bounded: list[bool] = []

    def watched(session, node, *args, **kwargs):
        bounded.append(session.memory_bounded())
        return real(session, node, *args, **kwargs)

    monkeypatch.setattr(step, "write_audit_publish", watched)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run(root, instance).success
    assert bounded == [False, False]  # first builds: whole


def test_the_longest_chain_of_builds_starts_first(make_project) -> None:
    root = make_project(
        {
            **MODELS,  # a -> b
            "models/staging/other.sql": "select 3 as id",
        }
    )
    graph = ModelGraph(load_project(root))
    nodes = [graph.nodes[name] for name in graph.order]
    with open_warehouse(load_project(root)) as warehouse:
        waits = _waits(graph, nodes)
        # no build on record: each counts the same, so a (two builds to go) goes first
        assert _longest_chains_first(warehouse, nodes, waits)[0].name == "a"
        record_audit(
            warehouse,
            *[
                AuditEntry("r", asset, "build", 0, 1, 0, seconds, "success")
                for asset, seconds in (("staging/a", 0.1), ("marts/b", 0.1), ("staging/other", 5.0))
            ],
        )
        assert [n.name for n in _longest_chains_first(warehouse, nodes, waits)] == [
            "other",
            "a",
            "b",
        ]


def test_a_cancelled_run_lets_the_builds_in_progress_finish_and_starts_no_other(
    make_project, monkeypatch
) -> None:
    # a and slow build side by side; the run is cancelled while a builds: slow finishes, and
    # b (which waits for a) does not start
    root = make_project({**MODELS, "models/staging/slow.sql": "select 3 as id"})
    import pipelines.assets.models as step

    real = step._build_model
    stopping = threading.Event()
    started: list[str] = []
    ended: list[str] = []

    def spying(run_id, session, graph, node, **kwargs):
        started.append(node.name)
        if node.name == "slow":
            time.sleep(0.5)
        yield from real(run_id, session, graph, node, **kwargs)
        if node.name == "a":
            stopping.set()  # the run is cancelled now
        ended.append(node.name)

    monkeypatch.setattr(step, "_build_model", spying)
    project = load_project(root)
    graph = ModelGraph(project)
    nodes = [graph.nodes[name] for name in graph.order]
    failures: list[str] = []
    with open_warehouse(project) as warehouse:
        events = list(
            step._build_models(warehouse, graph, nodes, step.ModelConfig(), "r", failures, stopping)
        )
    assert sorted(started) == sorted(ended) == ["a", "slow"]
    built = {e.asset_key.to_user_string() for e in events if isinstance(e, dg.AssetMaterialization)}
    assert built == {"staging/a", "staging/slow"} and failures == []


def test_a_build_out_of_memory_after_its_publish_is_retried_from_what_it_committed(
    make_project, monkeypatch
) -> None:
    # other publishes, then runs out of memory beside a: built again alone, it starts from
    # the state its publish committed (up to date), not from the run's start (never built)
    root = make_project({**MODELS, "models/staging/other.sql": "select 3 as id"})
    import pipelines.assets.models as step

    real = step._build_model
    both = threading.Barrier(2, timeout=20)
    attempts: list[str] = []

    def late_failure(run_id, session, graph, node, **kwargs):
        attempts.append(node.name)
        if len(attempts) <= 2:
            both.wait()  # a and other build side by side
        yield from real(run_id, session, graph, node, **kwargs)
        if node.name == "other" and attempts.count("other") == 1:
            raise WarehouseMemoryError("DuckDB: Out of Memory Error: could not allocate")

    monkeypatch.setattr(step, "_build_model", late_failure)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
    assert result.success and attempts.count("other") == 2
    (other,) = [
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "staging/other"
    ]
    assert other["rebuilt"].value is False


def test_a_build_out_of_memory_with_nothing_beside_it_and_no_bound_is_not_retried(
    make_project, monkeypatch
) -> None:
    root = make_project({**MODELS, "models/staging/other.sql": "select 3 as id"})
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('type = "duckdb"', 'type = "duckdb"\nbuilders = 1', 1)
    )
    import pipelines.assets.models as step
    from pipelines.warehouse.base import Warehouse
    from pipelines.warehouse.duckdb import DuckDBWarehouse

    # a backend that bounds nothing: a retry would meet the same memory
    monkeypatch.setattr(DuckDBWarehouse, "memory_for_increments", Warehouse.memory_for_increments)

    real = step._build_model
    attempts: list[str] = []

    def tight(run_id, session, graph, node, **kwargs):
        attempts.append(node.name)
        if node.name == "other":
            raise WarehouseMemoryError("DuckDB: Out of Memory Error: could not allocate")
        yield from real(run_id, session, graph, node, **kwargs)

    monkeypatch.setattr(step, "_build_model", tight)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run(root, instance)
    assert not result.success and attempts.count("other") == 1
