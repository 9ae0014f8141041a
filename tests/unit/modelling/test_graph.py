from __future__ import annotations

import pytest

from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.project import load_project


def graph_of(make_project, files: dict[str, str]) -> ModelGraph:
    return ModelGraph(load_project(make_project(files)))


def test_dependencies_and_order(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "models/staging/stg_users.sql": "select id, lower(email) as email from {{ source('app', 'users') }}",
            "models/conformed/dim_user.sql": "{{ config(materialized='view') }}\nselect * from {{ ref('stg_users') }}",
        },
    )
    assert graph.order == ["stg_users", "dim_user"]
    assert graph.nodes["dim_user"].materialized == "view"
    assert graph.nodes["stg_users"].parsed.sources == [("app", "users")]
    assert graph.compile("dim_user", "duckdb").endswith('FROM "staging"."stg_users"')
    assert '"raw"."app__users"' in graph.compile("stg_users", "duckdb")


def test_missing_ref_names_the_file(make_project) -> None:
    with pytest.raises(ModelError, match=r"b\.sql: ref\('nope'\) names no model"):
        graph_of(make_project, {"models/staging/b.sql": "select * from {{ ref('nope') }}"})


def test_undeclared_source_is_an_error(make_project) -> None:
    with pytest.raises(ModelError, match=r"add table 'orders' to sources/app\.yml"):
        graph_of(
            make_project, {"models/staging/b.sql": "select * from {{ source('app', 'orders') }}"}
        )


def test_cycle_is_reported_with_its_path(make_project) -> None:
    with pytest.raises(ModelError, match=r"cycle: a -> b -> a"):
        graph_of(
            make_project,
            {
                "models/staging/a.sql": "select * from {{ ref('b') }}",
                "models/staging/b.sql": "select * from {{ ref('a') }}",
            },
        )


def test_jinja_syntax_error_has_file_and_line(make_project) -> None:
    with pytest.raises(ModelError, match=r"c\.sql:2: Jinja syntax error"):
        graph_of(make_project, {"models/staging/c.sql": "select 1\n{% if %}\n"})


def test_unparseable_sql_names_the_file(make_project) -> None:
    graph = graph_of(make_project, {"models/staging/d.sql": "select from where ("})
    with pytest.raises(ModelError, match=r"d\.sql.*does not parse"):
        graph.query("d")


def test_a_model_must_be_a_single_select(make_project) -> None:
    graph = graph_of(make_project, {"models/staging/e.sql": "select 1; select 2"})
    with pytest.raises(ModelError, match="exactly one SELECT"):
        graph.query("e")


def test_unknown_materialization_is_rejected(make_project) -> None:
    with pytest.raises(ModelError, match="materialized='ephemeral'"):
        graph_of(
            make_project,
            {"models/staging/f.sql": "{{ config(materialized='ephemeral') }} select 1"},
        )


def test_jinja_control_flow_and_var_default(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "models/staging/g.sql": """
                select
                {% for c in ['a', 'b'] %}{{ loop.index }} as {{ c }}{{ ',' if not loop.last }}{% endfor %}
                {# a comment #}
                , {{ var('limit', 10) }} as lim
            """,
        },
    )
    assert graph.compile("g", "duckdb").replace("\n", " ").split() == [
        "SELECT",
        "1",
        "AS",
        "a,",
        "2",
        "AS",
        "b,",
        "10",
        "AS",
        "lim",
    ]


def test_unknown_materialization_in_yml_is_rejected_naming_the_yml(make_project) -> None:
    with pytest.raises(ModelError, match=r"s\.yml: model 'f' has materialized='snapshotz'"):
        graph_of(
            make_project,
            {
                "models/staging/f.sql": "select 1 as id",
                "models/staging/s.yml": "models:\n  - name: f\n    config: {materialized: snapshotz}\n",
            },
        )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "incremental_strategy='merge'",
            r"f\.sql: incremental model 'f' uses 'merge', which needs a unique_key",
        ),
        (
            "incremental_strategy='upsert'",
            r"f\.sql: incremental model 'f' has incremental_strategy='upsert'",
        ),
        ("unique_key='id', on_schema_change='sync'", r"has on_schema_change='sync'"),
    ],
)
def test_incremental_config_errors_name_the_file(make_project, config, message) -> None:
    with pytest.raises(ModelError, match=message):
        graph_of(
            make_project,
            {
                "models/staging/f.sql": f"{{{{ config(materialized='incremental', {config}) }}}} select 1 as id"
            },
        )


def test_is_incremental_renders_the_increment_only_when_asked(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "models/staging/e.sql": """
                {{ config(materialized='incremental', unique_key='id') }}
                select 1 as id, 2 as v
                {% if is_incremental() %} where v > (select max(v) from {{ this }}) {% endif %}
            """,
        },
    )
    node = graph.nodes["e"]
    assert (node.incremental_strategy, node.unique_key) == ("merge", ("id",))
    assert "WHERE" not in graph.query("e").sql()
    assert 'FROM "staging"."e"' in graph.query("e", incremental=True).sql(dialect="duckdb")


FOLDER_DEFAULTS = """
[tool.ssot]
name = "t"
[tool.ssot.targets.local]
type = "duckdb"
[tool.ssot.models.staging]
materialized = "view"
tags = ["staging"]
[tool.ssot.models."staging/crm"]
tags = ["crm"]
"""


def test_folder_defaults_apply_deepest_folder_first_then_yml_then_config(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "pyproject.toml": FOLDER_DEFAULTS,
            "models/staging/a.sql": "select 1 as id",
            "models/staging/crm/b.sql": "select 1 as id",
            "models/staging/crm/c.sql": "{{ config(materialized='table') }} select 1 as id",
            "models/staging/crm/crm.yml": "models:\n  - name: b\n    config: {tags: [yml]}\n",
            "models/conformed/d.sql": "select 1 as id",
        },
    )
    nodes = graph.nodes
    assert (nodes["a"].materialized, nodes["a"].tags) == ("view", ["staging"])
    assert (nodes["b"].materialized, nodes["b"].tags) == ("view", ["yml"])
    assert (nodes["c"].materialized, nodes["c"].tags) == ("table", ["crm"])
    assert (nodes["d"].materialized, nodes["d"].tags) == ("table", [])


def test_a_bad_folder_default_names_pyproject(make_project) -> None:
    with pytest.raises(
        ModelError, match=r"pyproject\.toml: model 'a' has materialized='ephemeral'"
    ):
        graph_of(
            make_project,
            {
                "pyproject.toml": FOLDER_DEFAULTS.replace('"view"', '"ephemeral"'),
                "models/staging/a.sql": "select 1 as id",
                "models/staging/crm/b.sql": "select 1 as id",
            },
        )


def test_folder_defaults_for_a_folder_that_does_not_exist_are_an_error(make_project) -> None:
    from pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[tool\.ssot\.models\] names 'staging/crm'"):
        graph_of(
            make_project, {"pyproject.toml": FOLDER_DEFAULTS, "models/staging/a.sql": "select 1"}
        )


def test_project_macros_see_the_model_context_and_each_other(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "macros/money.sql": "{% macro cents(col) %}cast({{ col }} * 100 as bigint){% endmacro %}",
            # calls a macro of another file, and ref() of the model that calls it
            "macros/amounts.sql": (
                "{% macro amount_cents(model) %}"
                "select {{ cents('amount') }} as cents from {{ ref(model) }}"
                "{% endmacro %}"
            ),
            "models/staging/prices.sql": "select 1.5 as amount",
            "models/conformed/in_cents.sql": "{{ amount_cents('prices') }}",
        },
    )
    assert graph.nodes["in_cents"].upstream == ["prices"]
    compiled = graph.compile("in_cents", "duckdb").replace("\n", " ")
    assert 'CAST(amount * 100 AS BIGINT) AS cents FROM "staging"."prices"' in compiled


def test_a_macro_syntax_error_names_the_macro_file_and_line(make_project) -> None:
    with pytest.raises(ModelError, match=r"macros/bad\.sql:2: Jinja syntax error"):
        graph_of(
            make_project,
            {
                "macros/bad.sql": "{% macro ok() %}1{% endmacro %}\n{% macro broken( %}",
                "models/staging/a.sql": "select 1 as id",
            },
        )


def test_a_macro_defined_twice_is_an_error(make_project) -> None:
    with pytest.raises(ModelError, match=r"macro 'm' is also defined in .*a\.sql"):
        graph_of(
            make_project,
            {
                "macros/a.sql": "{% macro m() %}1{% endmacro %}",
                "macros/b.sql": "{% macro m() %}2{% endmacro %}",
                "models/staging/x.sql": "select {{ m() }} as id",
            },
        )


def test_a_macro_may_not_shadow_a_builtin(make_project) -> None:
    with pytest.raises(ModelError, match=r"macro 'ref' shadows the built-in ref\(\)"):
        graph_of(
            make_project,
            {
                "macros/a.sql": "{% macro ref(x) %}1{% endmacro %}",
                "models/staging/x.sql": "select 1 as id",
            },
        )


def test_a_snapshot_needs_a_unique_key(make_project) -> None:
    with pytest.raises(ModelError, match=r"s\.sql: snapshot model 's' needs a unique_key"):
        graph_of(
            make_project,
            {"models/staging/s.sql": "{{ config(materialized='snapshot') }} select 1 as id"},
        )


def test_a_query_is_rendered_once_and_each_caller_gets_its_own_copy(
    make_project, monkeypatch
) -> None:
    import pipelines.modelling.graph as graph_module
    from pipelines.modelling.graph import SINCE_PLACEHOLDER

    graph = graph_of(
        make_project,
        {
            "models/staging/a.sql": "select 1 as id",
            "models/marts/b.sql": "{{ config(materialized='incremental', unique_key='id') }}\n"
            "select id from {{ ref('a') }}"
            "{% if is_incremental() %} where id > (select max(id) from {{ this }}){% endif %}",
        },
    )
    rendered: list[str] = []
    real = graph_module.render_model

    def counting(model, **kwargs):
        rendered.append(model.name)
        return real(model, **kwargs)

    monkeypatch.setattr(graph_module, "render_model", counting)
    graph.query("b")
    graph.query("b")
    graph.query("b", incremental=True, since=SINCE_PLACEHOLDER)
    graph.query("b", incremental=True, since=SINCE_PLACEHOLDER)
    assert rendered == ["b", "b"]  # the whole query once, the increment once
    from datetime import UTC, datetime

    graph.query("b", incremental=True, since=datetime(2026, 1, 1, tzinfo=UTC))
    graph.query("b", incremental=True, since=datetime(2026, 1, 2, tzinfo=UTC))
    assert rendered == ["b", "b", "b", "b"]  # a build's own increment is rendered for it
    copy = graph.query("b")
    copy.set("expressions", [])
    assert graph.query("b").expressions  # the kept parse is untouched


def test_each_template_text_is_compiled_once(make_project, monkeypatch) -> None:
    """A model is rendered several times (both branches of is_incremental(), its queries):
    its Jinja text is compiled once per process, and a model rendering another text gets its
    own template."""
    from pipelines.modelling import render

    compiled: list[str] = []
    original = render._ENV.from_string

    def counted(source: str) -> object:
        compiled.append(source)
        return original(source)

    render._template.cache_clear()
    monkeypatch.setattr(render._ENV, "from_string", counted)
    incremental = (
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select id from {{ source('app', 'users') }}\n"
        "{% if is_incremental() %}where id > 0{% endif %}"
    )
    files = {"models/staging/a.sql": incremental, "models/staging/b.sql": "select 2 as id"}
    graph = graph_of(make_project, files)
    graph.query("a")
    again = graph_of(make_project, files)  # another load of the same project
    assert again.query("a").sql() == graph.query("a").sql()
    assert sorted(compiled) == sorted({incremental, "select 2 as id"})
    render._template.cache_clear()
