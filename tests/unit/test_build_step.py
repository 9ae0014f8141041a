"""The build step lands the source tables and builds the models: loads side by side, a model
as soon as what it reads is in, and a failed load stops only the models that read it."""

from __future__ import annotations

import sqlite3
import threading

import dagster as dg
import pytest

import pipelines.assets.models as step
import pipelines.assets.raw as raw
import pipelines.landing as landing
from pipelines.assets.models import _longest_chains_first, _waits, build_models_asset
from pipelines.assets.raw import landings
from pipelines.assets.resources import WarehouseResource
from pipelines.meta import AuditEntry, record_audit
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.runner import run_config_for
from pipelines.warehouse import Relation, open_warehouse

SOURCE = """
name: app
owner: team@example.com
connection: {url_env: SSOT_TEST_APP_URL, default: 'sqlite:///data/app.sqlite'}
tables:
  - name: users
    primary_key: [id]
    cursor: id
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: email, type: string, nullable: false}
  - name: orders
    primary_key: [id]
    cursor: id
    columns:
      - {name: id, type: integer, nullable: false}
      - {name: user_id, type: integer, nullable: false}
"""

MODELS = {
    "sources/app.yml": SOURCE,
    "models/staging/stg_users.sql": "select id, email from {{ source('app', 'users') }}",
    "models/staging/stg_orders.sql": "select id, user_id from {{ source('app', 'orders') }}",
    "models/marts/user_orders.sql": (
        "select u.id, count(o.id) as orders from {{ ref('stg_users') }} as u "
        "left join {{ ref('stg_orders') }} as o on o.user_id = u.id group by u.id"
    ),
}


def write_app(root, *, orders: bool = True) -> None:
    (root / "data").mkdir(exist_ok=True)
    with sqlite3.connect(root / "data" / "app.sqlite") as con:
        con.execute("create table users (id integer, email text)")
        # the last row fails the contract (email is required): it is quarantined
        con.executemany(
            "insert into users values (?, ?)", [(1, "a@x.io"), (2, "b@x.io"), (3, None)]
        )
        if orders:
            con.execute("create table orders (id integer, user_id integer)")
            con.executemany("insert into orders values (?, ?)", [(10, 1), (11, 1), (12, None)])


def project_root(make_project, *, orders: bool = True):
    root = make_project(MODELS, source=False)
    write_app(root, orders=orders)
    return root


def materialize(root, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    project = load_project(root)
    asset = build_models_asset(ModelGraph(project), landings=landings(project))
    return dg.materialize(
        [asset],
        resources={"warehouse": WarehouseResource(project_dir=str(root))},
        instance=instance,
        raise_on_error=False,
    )


def test_loads_run_side_by_side_each_with_its_own_scratch_tables(make_project, monkeypatch):
    root = project_root(make_project)
    land = raw.land_table
    running: list[str] = []
    most = [0]
    lock = threading.Lock()
    both_in: threading.Barrier | None = None

    def land_counting(project, session, source, table, **kwargs):
        with lock:
            running.append(table.name)
            most[0] = max(most[0], len(running))
        try:
            if both_in is not None:
                both_in.wait()  # broken (an error) unless the other load is running too
            return land(project, session, source, table, **kwargs)
        finally:
            with lock:
                running.remove(table.name)

    quarantine = landing._append_new_quarantine
    both_quarantining: threading.Barrier | None = None

    def quarantine_together(*args, **kwargs):
        if both_quarantining is not None:
            both_quarantining.wait()  # both loads' transactions are open, each quarantining
        return quarantine(*args, **kwargs)

    monkeypatch.setattr(raw, "land_table", land_counting)
    monkeypatch.setattr(landing, "_append_new_quarantine", quarantine_together)
    with dg.DagsterInstance.ephemeral() as instance:
        first = materialize(root, instance)
        assert first.success
        # first loads move the warehouse's memory limit as they go: one at a time
        assert most[0] == 1
        with sqlite3.connect(root / "data" / "app.sqlite") as con:
            con.executemany("insert into users values (?, ?)", [(4, "d@x.io"), (5, None)])
            con.executemany("insert into orders values (?, ?)", [(13, 4), (14, None)])
        both_in = threading.Barrier(2, timeout=30)
        both_quarantining = threading.Barrier(2, timeout=30)
        result = materialize(root, instance)
    failures = [str(e.event_specific_data) for e in result.all_events if e.is_failure]
    assert result.success, failures
    assert most[0] == 2
    landed = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    # each load quarantined rows in the same run (a bad row is re-read while it is the
    # newest: the cursor stays at the last good one)
    assert landed["raw/app/users"]["rows_quarantined"].value >= 1
    assert landed["raw/app/orders"]["rows_quarantined"].value >= 1
    assert landed["raw/app/users"]["pull"].value == "incremental"
    assert set(landed) == {
        "raw/app/users",
        "raw/app/orders",
        "staging/stg_users",
        "staging/stg_orders",
        "marts/user_orders",
    }
    project = load_project(root)
    with open_warehouse(project) as warehouse:
        assert warehouse.row_count(Relation("ssot_meta", "quarantine")) == 4
        assert warehouse.row_count(Relation("marts", "user_orders")) == 3


def test_a_failed_load_stops_only_the_models_that_read_it(make_project) -> None:
    root = project_root(make_project, orders=False)  # no orders table in the source
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(root, instance)
    assert not result.success
    published = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert published == {"raw/app/users", "staging/stg_users"}
    observed = {
        e.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert "orders" in observed["raw/app/orders"]["error"]
    assert (
        observed["staging/stg_orders"]["not_run"] == "upstream source table raw/app/orders failed"
    )
    assert observed["marts/user_orders"]["not_run"] == "upstream model stg_orders not run"
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    message = str(error.cause.message if error.cause else error.message)
    assert "1 asset(s) not published" in message and "raw/app/orders" in message


def test_a_model_waits_for_the_tables_it_reads_and_the_longest_chain_lands_first(
    make_project,
) -> None:
    root = project_root(make_project)
    project = load_project(root)
    graph = ModelGraph(project)
    lands = landings(project)
    nodes = [graph.nodes[name] for name in graph.order]
    waits = _waits(graph, nodes, lands)
    assert waits["stg_users"] == {"raw/app/users"}
    assert waits["stg_orders"] == {"raw/app/orders"}
    assert waits["user_orders"] == {"stg_users", "stg_orders"}
    assert waits["raw/app/users"] == waits["raw/app/orders"] == set()

    def entry(asset: str, kind: str, seconds: float, detail: str = "") -> AuditEntry:
        return AuditEntry("r", asset, kind, 0, 0, 0, seconds, "success", detail)

    with open_warehouse(project) as warehouse:
        record_audit(
            warehouse,
            entry("staging/stg_users", "build", 5.0),
            entry("staging/stg_orders", "build", 1.0),
            # a first, full pull of orders took long; a day's pull of users took a little
            entry("raw/app/orders", "load", 60.0, "unchanged 0; deleted 0; full pull; streamed"),
            entry("raw/app/users", "load", 0.5, "unchanged 0; deleted 0; incremental; streamed"),
        )
        # recorded later: the latest load of orders is a short, incremental one
        record_audit(
            warehouse,
            entry("raw/app/orders", "load", 0.1, "unchanged 0; deleted 0; incremental; streamed"),
        )

        def order(full_pulls: set[str]) -> list[str]:
            return [
                i.name for i in _longest_chains_first(warehouse, nodes, waits, lands, full_pulls)
            ]

        # a day's pull of orders is not expected to take what its first one took: the chain
        # through the slower model goes first
        assert order(set())[:2] == ["raw/app/users", "stg_users"]
        assert order(set()).index("raw/app/users") < order(set()).index("raw/app/orders")
        # pulled whole again, orders takes what its last full pull took (not its day's load)
        assert order({"raw/app/orders"})[0] == "raw/app/orders"


def test_a_source_table_full_refresh_is_an_option_of_the_build_step() -> None:
    config = run_config_for([dg.AssetKey(["raw", "app", "users"]), dg.AssetKey(["staging", "a"])])
    assert config["ops"] == {"models": {"config": {"full_refresh": ["app.users", "a"]}}}


@pytest.mark.parametrize("refresh", [False, True])
def test_a_full_refresh_pulls_the_table_again(make_project, refresh: bool) -> None:
    root = project_root(make_project)
    project = load_project(root)
    asset = build_models_asset(ModelGraph(project), [], landings=landings(project))
    resources = {"warehouse": WarehouseResource(project_dir=str(root))}
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([asset], resources=resources, instance=instance).success
        config = {"ops": {"models": {"config": {"full_refresh": ["app.users"] if refresh else []}}}}
        again = dg.materialize([asset], resources=resources, instance=instance, run_config=config)
    pulls = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata["pull"].value
        for e in again.get_asset_materialization_events()
    }
    assert pulls == {
        "raw/app/users": "full" if refresh else "incremental",
        "raw/app/orders": "incremental",
    }


def test_a_model_starts_while_a_load_it_does_not_read_still_runs(make_project, monkeypatch):
    root = project_root(make_project)
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize(root, instance).success  # first loads: one at a time
        with sqlite3.connect(root / "data" / "app.sqlite") as con:
            con.execute("insert into users values (4, 'd@x.io')")
            con.execute("insert into orders values (13, 4)")
        users_built = threading.Event()
        land, build = raw.land_table, step._build_model

        def orders_after_stg_users(project, session, source, table, **kwargs):
            if table.name == "orders":
                # set only once stg_users has started: a step that waited for every load
                # before any model would never set it
                assert users_built.wait(30), "stg_users did not start while orders was landing"
            return land(project, session, source, table, **kwargs)

        def noting(run_id, session, graph, node, **kwargs):
            if node.name == "stg_users":
                users_built.set()
            yield from build(run_id, session, graph, node, **kwargs)

        monkeypatch.setattr(raw, "land_table", orders_after_stg_users)
        monkeypatch.setattr(step, "_build_model", noting)
        result = materialize(root, instance)
    assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_failure]


SEEDED = {
    **MODELS,
    "seeds/codes.csv": "code,label\n1,one\n",
    "models/staging/stg_codes.sql": "select code, label from {{ ref('codes') }}",
}


def test_a_failed_seed_stops_only_the_models_that_read_it(make_project) -> None:
    root = make_project(SEEDED, source=False)
    write_app(root)
    project = load_project(root)
    asset = build_models_asset(
        ModelGraph(project), landings=landings(project), seeds=list(project.seeds.values())
    )
    resources = {"warehouse": WarehouseResource(project_dir=str(root))}
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([asset], resources=resources, instance=instance).success
        (root / "seeds" / "codes.csv").write_text("code,label\n1,one,extra,fields\n\x00")
        result = dg.materialize(
            [asset], resources=resources, instance=instance, raise_on_error=False
        )
    assert not result.success
    published = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {
        "raw/app/users",
        "raw/app/orders",
        "staging/stg_users",
        "marts/user_orders",
    } <= published
    assert "seeds/codes" not in published and "staging/stg_codes" not in published
    observed = {
        e.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
    assert "error" in observed["seeds/codes"]
    assert observed["staging/stg_codes"]["not_run"] == "upstream seed seeds/codes failed"


def test_a_load_out_of_memory_beside_other_work_runs_again_alone(make_project, monkeypatch):
    from pipelines.errors import WarehouseMemoryError

    root = project_root(make_project)
    with dg.DagsterInstance.ephemeral() as instance:
        assert materialize(root, instance).success
        with sqlite3.connect(root / "data" / "app.sqlite") as con:
            con.execute("insert into orders values (13, 1)")
        land = raw.land_table
        tries: list[str] = []

        running: list[str] = []
        beside_retry: list[list[str]] = []
        lock = threading.Lock()

        def short_of_memory_once(project, session, source, table, **kwargs):
            with lock:
                tries.append(table.name)
                running.append(table.name)
                if table.name == "orders" and tries.count("orders") == 2:
                    beside_retry.append([n for n in running if n != "orders"])
            try:
                if table.name == "orders" and tries.count("orders") == 1:
                    both_in.wait()  # the users load is running beside it
                    raise WarehouseMemoryError("DuckDB: Out of Memory Error: could not allocate")
                if table.name == "users":
                    both_in.wait()
                return land(project, session, source, table, **kwargs)
            finally:
                with lock:
                    running.remove(table.name)

        both_in = threading.Barrier(2, timeout=30)

        monkeypatch.setattr(raw, "land_table", short_of_memory_once)
        result = materialize(root, instance)
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert result.success
    assert tries.count("orders") == 2
    assert beside_retry == [[]]  # the second time, nothing else was landing
    assert any("raw/app/orders: out of memory" in m and "runs again alone" in m for m in warnings)


def test_a_raw_table_named_by_hand_is_read_once_it_is_landed(make_project) -> None:
    root = make_project(
        {
            **MODELS,
            # another spelling of a landed table, and a raw table no load writes
            "models/staging/by_hand.sql": "select id from RAW.App__Users",
            "models/staging/elsewhere.sql": "select 1 as id from raw.made_by_hand",
        },
        source=False,
    )
    write_app(root)
    project = load_project(root)
    graph = ModelGraph(project)
    nodes = [graph.nodes[name] for name in graph.order]
    reads: dict[str, set[str]] = {}
    waits = _waits(graph, nodes, landings(project), reads=reads)
    assert waits["by_hand"] == reads["by_hand"] == {"raw/app/users"}
    # read once every load is done, but stopped by none of them failing
    assert waits["elsewhere"] == {"raw/app/users", "raw/app/orders"}
    assert reads["elsewhere"] == set()
    # a step landing only users: stg_orders reads what an earlier run landed
    users = [landing for landing in landings(project) if landing.table.name == "users"]
    assert _waits(graph, nodes, users)["stg_orders"] == set()


def test_a_failed_load_does_not_stop_a_model_reading_a_raw_table_made_by_hand(make_project):
    root = make_project(
        {**MODELS, "models/staging/elsewhere.sql": "select id from raw.made_by_hand"},
        source=False,
    )
    write_app(root, orders=False)  # the orders load fails
    project = load_project(root)
    with open_warehouse(project) as warehouse:
        warehouse.execute("create schema if not exists raw")
        warehouse.execute("create table raw.made_by_hand as select 1 as id")
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(root, instance)
    published = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "staging/elsewhere" in published and "raw/app/orders" not in published


def test_a_load_of_a_cancelled_run_stops_and_keeps_nothing(make_project) -> None:
    # the step's cancellation reaches the load it is running (the step sets the event when
    # Dagster closes it): a load started after it stops at its first batch
    from pipelines.assets.models import ModelConfig, _land_guarded

    root = project_root(make_project)
    project = load_project(root)
    graph = ModelGraph(project)
    users = next(item for item in landings(project) if item.table.name == "users")
    stopping = threading.Event()
    stopping.set()
    with open_warehouse(project) as session:
        built = _land_guarded("r1", session, graph, users, ModelConfig(), stop=stopping)
        assert not session.exists(Relation("raw", "app__users"))
    assert built.stopped == "failed"
    assert "LoadCancelledError" in built.failure and "the run was cancelled" in built.failure
