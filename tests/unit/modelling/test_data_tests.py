"""Singular data tests (`data_tests/*.sql`): attached to the model built last among their refs,
run as Dagster asset checks after it; `error` blocks downstream, `warn` reports."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.assets.models import build_models_asset
from pipelines.assets.resources import WarehouseResource
from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project
from pipelines.warehouse import Relation, open_warehouse

MODELS = {
    "models/staging/a.sql": "select 1 as id, 10 as amount union all select 2, -5",
    "models/staging/b.sql": "select 1 as id",
    "models/conformed/c.sql": "select * from {{ ref('a') }}",
    "models/marts/d.sql": "select * from {{ ref('c') }}",
}
NEGATIVE = "select * from {{ ref('a') }} where amount < 0"
CROSS = "select b.id from {{ ref('b') }} as b left join {{ ref('c') }} as c using (id) where c.id is null"


def graph_with(make_project, tests: dict[str, str]) -> ModelGraph:
    files = {**MODELS, **{f"data_tests/{name}.sql": sql for name, sql in tests.items()}}
    return ModelGraph(load_project(make_project(files)))


def test_a_data_test_joins_the_model_built_last_among_its_refs(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": NEGATIVE, "b_in_c": CROSS})
    assert [t.name for t in graph.nodes["a"].data_tests] == ["no_negative"]
    assert [t.name for t in graph.nodes["c"].data_tests] == ["b_in_c"]
    # the test reads b, so c's check runs only once b is built
    assert "b" in graph.nodes["c"].upstream
    assert graph.order.index("b") < graph.order.index("c")


def test_data_tests_reading_what_a_build_wrote_each_keep_their_name(make_project) -> None:
    written = "select * from {% if is_incremental() %}{{ written('a') }}{% else %}{{ ref('a') }}{% endif %}"
    graph = graph_with(
        make_project,
        {"first": written + " where amount < 0", "second": written + " where id is null"},
    )
    assert sorted(graph.data_tests) == ["first", "second"]
    assert [t.name for t in graph.nodes["a"].data_tests] == ["first", "second"]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("select 1", "ref\\(\\) at least one model"),
        ("select * from {{ ref('nope') }}", "ref\\('nope'\\) names no model or seed"),
        (
            "{{ config(severity='fatal') }} select * from {{ ref('a') }}",
            "severity 'fatal'; use 'error'",
        ),
    ],
)
def test_bad_data_tests_name_their_file(make_project, sql, message) -> None:
    with pytest.raises(ModelError, match=rf"data_tests/t\.sql: .*{message}"):
        graph_with(make_project, {"t": sql})


def run(project_root, names: list[str]) -> dg.ExecuteInProcessResult:
    graph = ModelGraph(load_project(project_root))
    assets = [build_models_asset(graph, names)]
    resource = WarehouseResource(project_dir=str(project_root))
    return dg.materialize(assets, resources={"warehouse": resource}, raise_on_error=False)


def test_a_failing_error_data_test_blocks_downstream(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": NEGATIVE})
    result = run(graph.project.root, ["a", "c", "d"])
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations["data_test__no_negative"]
    assert not failed.passed
    assert failed.metadata["failing_rows"].value == 1
    assert failed.metadata["failing_sample"].value == [{"id": 2, "amount": -5}]
    # a's build is refused (not published, kept as a candidate); c and d never ran
    assert result.get_asset_materialization_events() == []
    failure = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "staging/a: blocking check(s) failed: data_test__no_negative" in failure
    assert "ssot_meta.candidate__staging__a" in failure
    project = load_project(graph.project.root)
    with open_warehouse(project, read_only=True) as warehouse:
        assert not warehouse.exists(Relation("staging", "a"))
        assert warehouse.query("select id from ssot_meta.candidate__staging__a order by id")[
            "id"
        ].to_pylist() == [1, 2]


def test_a_failing_warn_data_test_only_reports(make_project) -> None:
    graph = graph_with(make_project, {"no_negative": "{{ config(severity='warn') }} " + NEGATIVE})
    result = run(graph.project.root, ["a", "c", "d"])
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"staging/a", "conformed/c", "marts/d"}


# -- generic tests: `{% test name(model, column_name, ...) %}` used from a model's yml ---------

GENERIC = """
{% test at_least(model, column_name, minimum=0) %}
select * from {{ model }} where {{ column_name }} < {{ minimum }}
{% endtest %}
"""
YML = """
models:
  - name: a
    columns:
      - name: amount
        tests:
          - at_least                                   # minimum 0: id 2 (-5) fails
          - at_least: {minimum: -10, config: {severity: warn}}   # passes
          - at_least: {minimum: 5, config: {where: "id = 2", severity: warn}}  # id 2 fails
"""


def test_generic_tests_run_with_their_arguments_and_where(make_project) -> None:
    root = make_project(
        {**MODELS, "data_tests/generic/at_least.sql": GENERIC, "models/staging/a.yml": YML}
    )
    result = run(root, ["a", "c"])
    outcomes = {
        e.check_name: (e.passed, e.severity.value, e.metadata["failing_rows"].value)
        for e in result.get_asset_check_evaluations()
    }
    graph = ModelGraph(load_project(root))
    plain, lenient, scoped = (t.check_name for t in graph.nodes["a"].tests)
    assert plain == "at_least__amount" and len({plain, lenient, scoped}) == 3
    assert outcomes == {
        plain: (False, "ERROR", 1),
        lenient: (True, "WARN", 0),
        scoped: (False, "WARN", 1),
    }
    # the blocking failure refuses a (not published) and so stops downstream
    assert result.get_asset_materialization_events() == []


def test_the_same_test_twice_is_an_error(make_project) -> None:
    twice = "models:\n  - name: a\n    columns:\n      - {name: id, tests: [unique, unique]}\n"
    with pytest.raises(
        ModelError, match=r"a\.yml: model 'a' has the same test twice \(unique__id\)"
    ):
        ModelGraph(load_project(make_project({**MODELS, "models/staging/a.yml": twice})))


def test_an_unknown_test_name_names_the_yml_and_where_to_define_it(make_project) -> None:
    files = {**MODELS, "models/staging/a.yml": YML.replace("at_least", "at_most")}
    with pytest.raises(ModelError, match=r"a\.yml: model 'a' uses test 'at_most'.*define"):
        ModelGraph(load_project(make_project(files)))


def test_generic_tests_may_live_in_macros(make_project) -> None:
    root = make_project({**MODELS, "macros/tests.sql": GENERIC, "models/staging/a.yml": YML})
    graph = ModelGraph(load_project(root))
    (first, *_) = graph.nodes["a"].tests
    sql = graph.generic_test_query(graph.nodes["a"], first, graph.nodes["a"].relation.to_table())
    assert sql.sql(dialect="duckdb") == 'SELECT * FROM "staging"."a" WHERE "amount" < 0'
    assert not graph.data_tests  # the generic file is not a singular test


def test_the_demo_s_key_collision_test_catches_two_emails_under_one_customer_key(
    make_project,
) -> None:
    # the demo's data test against a stand-in int_customer_records: key 1 holds two people
    # (as two persons whose keys collided would be), key 2 one person with two records
    from pathlib import Path

    demo_test = Path(__file__).resolve().parents[3] / "data_tests/one_email_per_customer_key.sql"
    records = (
        "select * from (values (1, 'a@x.com'), (1, 'b@x.com'), (2, 'c@x.com'), (2, 'c@x.com'), "
        "(2, null), (3, null)) as t(customer_key, email)"
    )
    root = make_project(
        {
            "models/conformed/int_customer_records.sql": records,
            "data_tests/one_email_per_customer_key.sql": demo_test.read_text(),
        }
    )
    result = run(root, ["int_customer_records"])
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "data_test__one_email_per_customer_key"
    assert not evaluation.passed and evaluation.metadata["failing_rows"].value == 1
    assert evaluation.metadata["failing_sample"].value == [{"customer_key": 1, "emails": 2}]
