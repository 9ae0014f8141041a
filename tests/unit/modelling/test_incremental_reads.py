"""Models that read what changed upstream (`changes()`), delete through `deleted_flag`, and
when a run builds them whole instead of from their increment."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from pipelines.assets import build_definitions
from pipelines.errors import ModelError
from pipelines.modelling import ModelGraph
from pipelines.modelling.state import make_plan
from pipelines.project import load_project
from pipelines.quality.checks import WRITTEN_CHECKED as WRITTEN
from pipelines.warehouse.duckdb import DuckDBWarehouse

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def seed_diff(seed: str, column: str) -> str:
    """An incremental model of a seed's ``id`` and ``column``: each build compares the seed
    with its table, so it sees updates, new rows and deletions."""
    return f"""
{{{{ config(materialized='incremental', unique_key='id', deleted_flag='gone') }}}}
{{% if is_incremental() %}}
select coalesce(p.id, t.id) as id, p.{column}, p.id is null as gone
from {{{{ ref('{seed}') }}}} as p
full join {{{{ this }}}} as t on t.id = p.id
where p.id is null or t.id is null or p.{column} is distinct from t.{column}
{{% else %}}
select id, {column}, false as gone from {{{{ ref('{seed}') }}}}
{{% endif %}}
"""


# A staging model over a seed; the mart recomputes only the ids in stg's change feed.
STG = seed_diff("people", "name")
MART = """
{{ config(materialized='incremental', unique_key='id', deleted_flag='gone') }}
{% if is_incremental() %}
with touched as (select distinct id from {{ changes('stg') }})
select t.id, upper(s.name) as name, s.id is null as gone
from touched as t
left join {{ ref('stg') }} as s on s.id = t.id
{% else %}
select id, upper(name) as name, false as gone from {{ ref('stg') }}
{% endif %}
"""
FILES = {
    "seeds/people.csv": "id,name\n1,ada\n2,bob\n3,cy\n",
    "models/staging/stg.sql": STG,
    "models/marts/m.sql": MART,
}


def graph_of(make_project, files: dict[str, str]) -> ModelGraph:
    return ModelGraph(load_project(make_project(files, source=False)))


def run(root, **config: list[str]) -> dict[str, str]:
    """Materialize everything in process; model -> the detail of its build."""
    defs = build_definitions(load_project(root))
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(run_config={"ops": {"models": {"config": config}}})
    assert result.success
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select asset, detail from ssot_meta.audit where kind = 'build' and run_id = ?",
            [result.run_id],
        ).fetchall()
        return {asset.split("/")[-1]: detail for asset, detail in rows}


def mart(root) -> list[tuple]:
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        return con.execute("select * from marts.m order by id").fetchall()


def test_a_reader_applies_its_upstreams_changes_deletions_included(make_project) -> None:
    root = make_project(FILES, source=False)
    first = run(root)
    assert first["m"] == "never built"
    assert mart(root) == [(1, "ADA"), (2, "BOB"), (3, "CY")]

    # bob renamed, cy gone, dee new
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,rob\n4,dee\n")
    second = run(root)
    assert "increment of 3 rows" in second["stg"], second
    assert "increment of 3 rows" in second["m"], second  # ids 2, 3 and 4 only
    assert mart(root) == [(1, "ADA"), (2, "ROB"), (4, "DEE")]

    # stg rebuilt whole: its feed starts again, so its reader cannot apply an increment
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,rob\n4,dee\n5,eve\n")
    third = run(root, full_refresh=["stg"])
    assert "built whole: full refresh asked for" in third["stg"]
    assert "built whole: the change feed of stg starts after this model's last build" in third["m"]
    assert mart(root) == [(1, "ADA"), (2, "ROB"), (4, "DEE"), (5, "EVE")]

    # a change to a model's SQL builds it whole
    (root / "models/marts/m.sql").write_text(MART.replace("upper(", "lower("))
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,rob\n5,eve\n")
    fourth = run(root)
    assert "built whole: its SQL changed" in fourth["m"]
    assert mart(root) == [(1, "ada"), (2, "rob"), (5, "eve")]


LABELLED = """
{{ config(materialized='incremental', unique_key='id', deleted_flag='gone') }}
{% if is_incremental() %}
with touched as (select distinct id from {{ changes('stg') }})
select t.id, l.label || s.name as name, s.id is null as gone
from touched as t
left join {{ ref('stg') }} as s on s.id = t.id
left join {{ ref('labels') }} as l on true
{% else %}
select s.id, l.label || s.name as name, false as gone
from {{ ref('stg') }} as s
left join {{ ref('labels') }} as l on true
{% endif %}
"""


def test_a_reader_is_built_whole_when_what_it_reads_otherwise_changed(make_project) -> None:
    files = {**FILES, "models/marts/m.sql": LABELLED, "seeds/labels.csv": "label\nx-\n"}
    root = make_project(files, source=False)
    run(root)
    assert mart(root) == [(1, "x-ada"), (2, "x-bob"), (3, "x-cy")]
    # the seed is read with ref(), not changes(): an increment cannot tell which rows it changes
    (root / "seeds/labels.csv").write_text("label\ny-\n")
    details = run(root)
    assert "built whole: seeds.labels changed and is not read through changes()" in details["m"]
    assert mart(root) == [(1, "y-ada"), (2, "y-bob"), (3, "y-cy")]


def test_a_change_to_the_increment_alone_builds_the_model_whole(make_project) -> None:
    root = make_project(FILES, source=False)
    run(root)
    # the whole query is unchanged; the increment's is not: plan and run both see it
    assert MART.count("upper(s.name)") == 1  # in the increment only
    (root / "models/marts/m.sql").write_text(MART.replace("upper(s.name)", "upper(trim(s.name))"))
    project = load_project(root)
    with DuckDBWarehouse(project.resolve_path(project.target.path), read_only=True) as wh:
        planned = make_plan(ModelGraph(project), wh).models["m"]
    assert (planned.change, planned.rebuild) == ("modified", True)
    assert planned.reasons == ["change to the SQL of its increment (built whole)"]
    assert "built whole: its SQL changed" in run(root)["m"]
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo\n3,cy\n")
    assert "increment of 1 rows" in run(root)["m"]
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bob\n3,cy\n")
    assert "increment of 1 rows" in run(root)["m"]


CHILD = """
{{ config(materialized='incremental', unique_key='order_id') }}
select order_id, person_id from {{ ref('orders') }}
{% if is_incremental() %}where order_id not in (select order_id from {{ this }}){% endif %}
"""
CHILD_YML = """
models:
  - name: c
    columns:
      - name: person_id
        tests:
          - relationships: {to: ref('stg'), field: id}
"""


def child_checks(root, run_id: str, asset: str = "marts/c") -> list[tuple]:
    """(name, passed, failing rows, observed) of ``asset``'s checks in that run."""
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        return con.execute(
            "select check_name, passed, failing_rows, observed from ssot_meta.check_results "
            "where asset = ? and run_id = ? order by check_name",
            [asset, run_id],
        ).fetchall()


def test_an_increment_s_relationships_check_sees_parents_that_went_away(make_project) -> None:
    files = {
        **FILES,
        "seeds/orders.csv": "order_id,person_id\n10,1\n11,3\n",
        "models/marts/c.sql": CHILD,
        "models/marts/c.yml": CHILD_YML,
    }
    root = make_project(files, source=False)
    run(root)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    # a new order of a known person: only the written row and nothing gone is checked
    (root / "seeds/orders.csv").write_text("order_id,person_id\n10,1\n11,3\n12,2\n")
    result = job.execute_in_process(raise_on_error=False)
    assert result.success
    ((name, passed, failing, observed),) = child_checks(root, result.run_id)
    assert (passed, failing) == (True, 0) and "rows this build could have broken" in observed
    # person 3 is deleted upstream; order 11 (not written again) loses its parent
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bob\n")
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success  # the blocking check refused c
    ((name, passed, failing, observed),) = child_checks(root, result.run_id)
    assert name.startswith("relationships__person_id") and (passed, failing) == (False, 1)
    assert "rows this build could have broken" in observed


# a data test with an incremental branch, and a suite with a per-row rule, a `mostly` rule
# and an aggregate: names have at most 4 letters, and only letters
SHORT_NAMES = """
select id, name from
{% if is_incremental() %}{{ written('m') }}{% else %}{{ ref('m') }}{% endif %}
where length(name) > 4
"""
SUITE = """{"name": "m", "expectations": [
  {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "name", "regex": "^[A-Z]+$"},
   "severity": "critical"},
  {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "name", "mostly": 0.5},
   "severity": "critical"},
  {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1},
   "severity": "critical"}
]}"""


def mart_checks(root, run_id: str) -> dict[str, tuple]:
    """The mart's checks in that run: the check's kind (a data test, or the expectation's
    type) -> (passed, failing rows, what it looked at when not the whole table)."""
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select check_name, passed, failing_rows, observed ->> 'checked' "
            "from ssot_meta.check_results where asset = 'marts/m' and run_id = ?",
            [run_id],
        ).fetchall()
    return {name.removeprefix("gx__").split("__")[0]: tuple(rest) for name, *rest in rows}


def test_data_tests_and_per_row_expectations_check_an_increment_s_written_rows(
    make_project,
) -> None:
    files = {**FILES, "data_tests/short_names.sql": SHORT_NAMES, "expectations/m.json": SUITE}
    root = make_project(files, source=False)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    first = mart_checks(root, job.execute_in_process().run_id)
    regex, mostly, count = (
        "column_values_to_match_regex",
        "column_values_to_not_be_null",
        "table_row_count_to_be_between",
    )
    assert first == {k: (True, 0, None) for k in ("data_test", regex, mostly, count)}

    # a rename: the data test and the regex read the written row alone; `mostly` and the
    # row count read the whole table
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo\n3,cy\n")
    second = mart_checks(root, job.execute_in_process().run_id)
    assert second == first | {"data_test": (True, 0, WRITTEN), regex: (True, 0, WRITTEN)}

    # a written row breaking both rules is caught on the increment, and the build refused
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo-bob\n3,cy\n")
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    third = mart_checks(root, result.run_id)
    assert third == second | {"data_test": (False, 1, WRITTEN), regex: (False, 1, WRITTEN)}
    assert mart(root) == [(1, "ADA"), (2, "BO"), (3, "CY")]  # the old version still served

    # a data test whose query changed runs whole (here over the same refused increment)
    (root / "data_tests/short_names.sql").write_text(SHORT_NAMES.replace("> 4", "> 5"))
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    fourth = mart_checks(root, job.execute_in_process(raise_on_error=False).run_id)
    assert fourth == third | {"data_test": (False, 1, None)}

    # published again (the test passes whole), then an edit to the incremental branch alone:
    # the next increment's audit runs that test whole too
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo\n3,cy\n")
    assert mart_checks(root, job.execute_in_process().run_id)["data_test"] == (True, 0, None)
    (root / "data_tests/short_names.sql").write_text(
        SHORT_NAMES.replace("> 4", "> 5").replace(
            "{{ written('m') }}", "(select * from {{ written('m') }})"
        )
    )
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bob\n3,cy\n")
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    sixth = mart_checks(root, job.execute_in_process().run_id)
    assert sixth["data_test"] == (True, 0, None)
    assert sixth[regex] == (True, 0, WRITTEN)


PARTIAL = """
{{ config(materialized='incremental', unique_key='id') }}
{% if is_incremental() %}
select s.id, upper(s.name) as name
from (select distinct id from {{ changes('stg') }}) as t
join {{ ref('stg') }} as s on s.id = t.id
{% else %}
select id, upper(name) as name, 'x' as code from {{ ref('stg') }}
{% endif %}
"""
PARTIAL_YML = """
models:
  - name: p
    columns:
      - name: id
        tests:
          - relationships: {to: ref('stg'), field: id}
"""
CODE_SUITE = """{"name": "p", "expectations": [
  {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "code"}},
  {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "name"}}
]}"""


def test_checks_of_an_increment_that_writes_some_columns_only(make_project) -> None:
    files = {
        **FILES,
        "models/marts/p.sql": PARTIAL,
        "models/marts/p.yml": PARTIAL_YML,
        "expectations/p.json": CODE_SUITE,
    }
    root = make_project(files, source=False)
    run(root)
    (root / "seeds/people.csv").write_text("id,name\n1,ann\n2,bob\n3,cy\n")
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process()
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        checks = con.execute(
            "select check_name, passed, observed ->> 'checked' from ssot_meta.check_results "
            "where asset = 'marts/p' and run_id = ? order by check_name",
            [result.run_id],
        ).fetchall()
    # `code` is not in the increment: its expectation reads the table; `name` and the
    # relationships test read what the increment wrote
    assert [
        (name.split("__")[1], passed, checked is not None) for name, passed, checked in checks
    ] == [
        ("column_values_to_not_be_null", True, False),
        ("column_values_to_not_be_null", True, True),
        ("id", True, True),
    ]


def test_the_feed_keeps_only_what_a_reader_has_not_read(make_project) -> None:
    root = make_project(FILES, source=False)
    run(root)
    for name in ("ann", "ben"):
        (root / "seeds/people.csv").write_text(f"id,name\n1,{name}\n2,bob\n3,cy\n")
        run(root)
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        kinds = con.execute(
            "select _ssot_change, id from ssot_meta.changes__staging__stg order by all"
        ).fetchall()
        columns = [r[0] for r in con.execute("describe ssot_meta.changes__staging__stg").fetchall()]
    # the ann change, read by m in the run that wrote it, was pruned when stg built again
    assert kinds == [("after", 1), ("before", 1), ("reset", None)]
    # m reads only the ids from stg's feed: the names are not kept
    assert columns == ["id", "_ssot_change", "_ssot_changed_at"]


def test_a_reader_reading_a_column_its_feed_did_not_keep_starts_the_feed_again(
    make_project,
) -> None:
    # m also reads the feed of a second staging model, so it builds from an increment in a
    # run where stg itself has nothing new
    files = {
        **FILES,
        "seeds/pets.csv": "id,name\n1,rex\n",
        "models/staging/stg2.sql": STG.replace("ref('people')", "ref('pets')"),
    }
    with_pets = MART.replace(
        "select distinct id from {{ changes('stg') }}",
        "select distinct id from {{ changes('stg') }} "
        "union select id from {{ changes('stg2') }} where false",
    )
    files["models/marts/m.sql"] = with_pets
    root = make_project(files, source=False)
    run(root)
    # m now takes the names from stg's feed (the 'after' rows), which kept only the ids
    reads_names = with_pets.replace(
        "select distinct id from {{ changes('stg') }}",
        "select id from {{ changes('stg') }} group by id",
    ).replace(
        "upper(s.name)",
        "upper(coalesce((select max(name) filter (where _ssot_change = 'after') "
        "from {{ changes('stg') }} as f where f.id = t.id), s.name))",
    )
    (root / "models/marts/m.sql").write_text(reads_names)
    details = run(root)  # nothing new in stg: its feed starts again, with the names, at once
    assert "built whole" in details["m"]
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        feed = con.execute("select * from ssot_meta.changes__staging__stg").fetchall()
        columns = [r[0] for r in con.execute("describe ssot_meta.changes__staging__stg").fetchall()]
    assert columns == ["id", "name", "_ssot_change", "_ssot_changed_at"]
    assert [row[:3] for row in feed] == [(None, None, "reset")]
    # only stg2 changes: m builds from its increment, reading stg's (empty) feed with names
    (root / "seeds/pets.csv").write_text("id,name\n1,rex\n2,tom\n")
    details = run(root)
    assert "built whole" not in details["m"]
    # then stg changes: m reads the new name from the feed
    (root / "seeds/people.csv").write_text("id,name\n1,ann\n2,bob\n3,cy\n")
    details = run(root)
    assert details["m"].endswith("increment of 1 rows")
    assert mart(root) == [(1, "ANN"), (2, "BOB"), (3, "CY")]


def test_the_whole_query_leaves_flagged_rows_and_the_flag_out(make_project) -> None:
    graph = graph_of(make_project, FILES)
    whole = graph.compile("stg", "duckdb")
    assert 'WHERE\n  NOT COALESCE("gone", FALSE)' in whole
    assert whole.startswith('SELECT\n  "id",\n  "name"\nFROM')
    increment = graph.compile("m", "duckdb", incremental=True, since=SINCE)
    assert '"ssot_meta"."changes__staging__stg"' in increment
    assert "\"_ssot_change\" <> 'reset'" in increment
    assert "CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)" in increment
    # parsing renders both branches: m reads stg's feed, so stg keeps one
    assert graph.nodes["m"].parsed.changes == ["stg"]
    assert graph.nodes["stg"].change_feed and not graph.nodes["m"].change_feed


def test_a_source_s_changes_are_its_rows_landed_since_the_last_build(make_project) -> None:
    sql = (
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select id, email from "
        "{% if is_incremental() %}{{ changes('app', 'users') }}"
        "{% else %}{{ source('app', 'users') }}{% endif %}"
    )
    graph = ModelGraph(load_project(make_project({"models/staging/u.sql": sql})))
    assert graph.nodes["u"].parsed.sources == [("app", "users")]
    increment = graph.compile("u", "duckdb", incremental=True, since=SINCE)
    assert 'FROM "raw"."app__users"' in increment
    assert "\"_ssot_loaded_at\" > CAST('2026-01-01T00:00:00+00:00' AS TIMESTAMPTZ)" in increment


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "models/staging/a.sql": "select 1 as id",
                "models/marts/b.sql": "{{ config(materialized='incremental', unique_key='id') }}\n"
                "{% if is_incremental() %}select id from {{ changes('a') }}"
                "{% else %}select id from {{ ref('a') }}{% endif %}",
            },
            r"b\.sql: changes\('a'\) reads the change feed of an incremental or snapshot model "
            r"with a unique_key; a is materialized as 'table'",
        ),
        (
            {
                "models/marts/b.sql": "{{ config(materialized='snapshot', unique_key='id') }}\n"
                "select 1 as id {% if is_incremental() %}where false{% endif %}"
            },
            r"b\.sql: snapshot model 'b' asks is_incremental\(\), so .* set config deleted_flag",
        ),
        (
            {"models/marts/b.sql": "select 1 as id from {{ changes('nope') }}"},
            r"b\.sql: changes\('nope'\) names no model",
        ),
        (
            {
                "models/marts/b.sql": "{{ config(materialized='incremental', "
                "deleted_flag='gone') }}\nselect 1 as id, false as gone"
            },
            r"b\.sql: incremental model 'b' has a deleted_flag, which needs incremental_strategy",
        ),
        (
            {
                "models/marts/b.sql": "select 1 as id {% if is_incremental() %}, {{ written('b') }}"
                "{% endif %}"
            },
            r"b\.sql: written\(\) is for data tests",
        ),
        (
            {
                "models/staging/a.sql": "select 1 as id",
                "models/marts/b.sql": "select id from {{ ref('a') }}",
                "data_tests/t.sql": "select * from {{ ref('b') }} {% if is_incremental() %}"
                "join {{ written('a') }} using (id){% endif %}",
            },
            r"t\.sql: written\('a'\): a data test runs with the build of the model it refs "
            r"last, 'b', .* use written\('b'\)",
        ),
    ],
)
def test_bad_change_reads_and_flags_name_the_file(make_project, files, message) -> None:
    with pytest.raises(ModelError, match=message):
        graph_of(make_project, files)


def test_a_flag_the_model_does_not_select_and_changes_outside_an_increment(make_project) -> None:
    graph = graph_of(
        make_project,
        {
            "models/staging/a.sql": "{{ config(materialized='incremental', unique_key='id', "
            "deleted_flag='gone') }}\nselect 1 as id",
            "models/marts/b.sql": "select id from {{ changes('a') }}",
        },
    )
    with pytest.raises(ModelError, match=r"a\.sql: deleted_flag 'gone' is not a column"):
        graph.query("a")
    with pytest.raises(ModelError, match=r"b\.sql: changes\(\) is only known in an incremental"):
        graph.query("b")


def test_an_increment_audit_follows_a_whole_build_beside_the_table(make_project) -> None:
    """A whole build is audited beside the published table; the next increment still checks
    its written rows alone, also with a data test whose incremental branch reads the model
    itself (its branch is named by the query it runs on the model's own table)."""
    joined = SHORT_NAMES.replace(
        "{{ written('m') }}",
        "(select w.* from {{ written('m') }} as w join {{ ref('m') }} as t using (id))",
    )
    root = make_project({**FILES, "data_tests/short_names.sql": joined}, source=False)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    assert mart_checks(root, job.execute_in_process().run_id)["data_test"] == (True, 0, None)
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo\n3,cy\n")
    second = mart_checks(root, job.execute_in_process().run_id)
    assert second["data_test"] == (True, 0, WRITTEN)


# a snapshot of stg that rebuilds only the ids in stg's feed (a partial snapshot)
SNAP = """
{{ config(materialized='snapshot', unique_key='id', deleted_flag='gone') }}
{% if is_incremental() %}
with touched as (select distinct id from {{ changes('stg') }})
select t.id, s.name, s.id is null as gone
from touched as t left join {{ ref('stg') }} as s on s.id = t.id
{% else %}
select id, name, false as gone from {{ ref('stg') }}
{% endif %}
"""
SNAP_YML = """
models:
  - name: h
    columns:
      - name: id
        tests:
          - unique: {config: {where: is_current}}
      - name: name
        tests:
          - unique: {config: {where: "is_current and name <> ''"}}
          - unique: {config: {where: "is_current and valid_from <= now()"}}
"""


def snapshot_checks(root, run_id: str) -> dict[str, tuple]:
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select check_name, passed, failing_rows, observed, query from "
            "ssot_meta.check_results where asset = 'marts/h' and run_id = ?",
            [run_id],
        ).fetchall()
    return {name: tuple(rest) for name, *rest in rows}


def test_a_snapshot_s_unique_tests_with_a_row_s_own_where_check_its_written_versions(
    make_project,
) -> None:
    files = {**FILES, "models/marts/h.sql": SNAP, "models/marts/h.yml": SNAP_YML}
    root = make_project(files, source=False)
    run(root)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    # bob renamed: the snapshot closes his version and opens another
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,rob\n3,cy\n")
    result = job.execute_in_process(raise_on_error=False)
    assert result.success
    checks = snapshot_checks(root, result.run_id)
    (by_id,) = (c for n, c in checks.items() if n.startswith("unique__id"))
    (by_name,) = (c for n, c in checks.items() if n.startswith("unique__name") and "''" in c[3])
    (by_clock,) = (c for n, c in checks.items() if "now()" in c[3].lower())
    for passed, failing, observed, _query in (by_id, by_name):
        assert (passed, failing) == (True, 0)
        assert "rows this build could have broken" in observed
    # a `where` that reads the clock may admit rows no build wrote: the whole table is checked
    assert by_clock[:2] == (True, 0)
    assert "rows this build could have broken" not in (by_clock[2] or "")
    # rob becomes ada: two current versions share a name, one of them written by this build
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,ada\n3,cy\n")
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success  # the blocking check refused h
    checks = snapshot_checks(root, result.run_id)
    ((passed, failing, observed, _query),) = (
        c for n, c in checks.items() if n.startswith("unique__name") and "''" in c[3]
    )
    assert (passed, failing) == (False, 1) and "rows this build could have broken" in observed
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        current = con.execute(
            "select id, name from marts.h where is_current order by id"
        ).fetchall()
    assert current == [(1, "ada"), (2, "rob"), (3, "cy")]  # refused: rolled back


EVERY_COLUMN = """
{{ config(materialized='incremental', unique_key='id', on_schema_change='ignore') }}
select id, upper(name) as name, 1 as source_rank from {{ ref('stg') }}
{% if is_incremental() %}where id in (select id from {{ changes('stg') }}){% endif %}
"""
SOME_COLUMNS = """
{{ config(materialized='incremental', unique_key='id', on_schema_change='ignore') }}
{% if is_incremental() %}
select id, upper(name) as name from {{ ref('stg') }}
where id in (select id from {{ changes('stg') }})
{% else %}
select id, upper(name) as name, 1 as source_rank from {{ ref('stg') }}
{% endif %}
"""
APPENDING = """
{{ config(materialized='incremental') }}
select id, name from {{ ref('stg') }}
{% if is_incremental() %}where id not in (select id from {{ this }}){% endif %}
"""
# a delete + insert whose increment holds its key as DOUBLE: the table stores it as INTEGER
RETYPED = """
{{ config(materialized='incremental', unique_key='id', incremental_strategy='delete+insert',
          on_schema_change='ignore') }}
{% if is_incremental() %}
select cast(id as double) as id, name from {{ ref('stg') }}
where id in (select id from {{ changes('stg') }})
{% else %}
select id, name from {{ ref('stg') }}
{% endif %}
"""
UNIQUE_YML = """
models:
{% for name in ['stg', 'whole', 'partial', 'appended', 'retyped'] %}
  - name: {{ name }}
    columns:
      - name: id
        tests: [unique]
      - name: name
        tests: [unique]
{% endfor %}
"""


def test_a_unique_key_test_reads_only_the_written_rows_where_the_build_replaced_their_keys(
    make_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jinja2

    import pipelines.modelling.audit as audit

    files = {
        **FILES,
        "models/marts/whole.sql": EVERY_COLUMN,
        "models/marts/partial.sql": SOME_COLUMNS,
        "models/marts/appended.sql": APPENDING,
        "models/marts/retyped.sql": RETYPED,
        "models/marts/tests.yml": jinja2.Template(UNIQUE_YML).render(),
    }
    root = make_project(files, source=False)
    run(root)
    calls: dict[tuple[str, str], bool] = {}
    real = audit.increment_failing_rows

    def spy(test, relation, written, *args, **kwargs):
        calls[(relation.name, test.column)] = kwargs.get("keys_replaced", False)
        return real(test, relation, written, *args, **kwargs)

    monkeypatch.setattr(audit, "increment_failing_rows", spy)
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,rob\n3,cy\n4,dee\n")
    run(root)
    # a merge writing every column is a delete + insert: the table's rows with a written id
    # are the written rows; one writing some columns updates rows in place, and an append
    # deletes nothing; a test on another column than the key looks in the table. Written keys
    # that are not the values stored (the insert casts them) are not checked on the increment
    assert calls == {
        ("stg", "id"): True,
        ("stg", "name"): False,
        ("whole", "id"): True,
        ("whole", "name"): False,
        ("partial", "id"): False,
        ("partial", "name"): False,
        ("appended", "id"): False,
        ("appended", "name"): False,
        ("retyped", "name"): False,
    }


RETYPED_SUITE = """{"name": "retyped", "expectations": [
  {"type": "expect_column_values_to_be_between", "kwargs": {"column": "id", "min_value": 0}},
  {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "name", "regex": "^[a-z]+$"}}
]}"""


def test_per_row_expectations_read_the_written_rows_only_where_they_hold_the_stored_types(
    make_project,
) -> None:
    # the increment holds `id` as DOUBLE, which the insert stores as INTEGER: what it wrote
    # there is not what the table holds, so that expectation reads the table
    files = {
        **FILES,
        "models/marts/retyped.sql": RETYPED,
        "expectations/retyped.json": RETYPED_SUITE,
    }
    root = make_project(files, source=False)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    job.execute_in_process()
    (root / "seeds/people.csv").write_text("id,name\n1,ada\n2,bo\n3,cy\n")
    run_id = job.execute_in_process().run_id
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        checked = dict(
            con.execute(
                "select check_name, observed ->> 'checked' from ssot_meta.check_results "
                "where asset = 'marts/retyped' and run_id = ?",
                [run_id],
            ).fetchall()
        )
    by_kind = {name.removeprefix("gx__").split("__")[0]: seen for name, seen in checked.items()}
    assert by_kind == {
        "column_values_to_be_between": None,
        "column_values_to_match_regex": WRITTEN,
    }


def built(make_project, files: dict[str, str]) -> tuple:
    """A project of ``files`` built once (successfully), and the job that builds it."""
    root = make_project(files, source=False)
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process().success
    return root, job


# a model whose relationships test points at itself: a manager among the employees (such a
# check reads the whole table, the version being audited on both sides, also after an
# incremental build: the model keeps no change feed of its own to say whose parent went)
EMPLOYEES = seed_diff("staff", "manager_id")
EMPLOYEES_YML = """
models:
  - name: emp
    columns:
      - name: manager_id
        tests:
          - relationships: {to: ref('emp'), field: id}
"""


def test_a_relationships_check_of_a_model_against_itself_sees_parents_its_build_removed(
    make_project,
) -> None:
    root, job = built(
        make_project,
        {
            "seeds/staff.csv": "id,manager_id\n1,\n2,1\n3,1\n",
            "models/marts/emp.sql": EMPLOYEES,
            "models/marts/emp.yml": EMPLOYEES_YML,
        },
    )

    def checks(run_id: str) -> list[tuple]:
        """(passed, failing rows) of each check of emp in that run."""
        return [row[1:3] for row in child_checks(root, run_id, "marts/emp")]

    def employees() -> list[tuple]:
        with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
            return con.execute("select id, manager_id from marts.emp order by id").fetchall()

    # a new employee under a known manager: the increment passes
    (root / "seeds/staff.csv").write_text("id,manager_id\n1,\n2,1\n3,1\n4,2\n")
    result = job.execute_in_process(raise_on_error=False)
    assert result.success
    assert checks(result.run_id) == [(True, 0)]
    # manager 1 leaves, and 3 (not written again) loses its manager: the check of the
    # increment sees the row its own build orphaned, and the build is refused
    (root / "seeds/staff.csv").write_text("id,manager_id\n2,\n3,1\n4,2\n")
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    assert checks(result.run_id) == [(False, 1)]
    assert employees() == [(1, None), (2, 1), (3, 1), (4, 2)]  # the last good version served
    # 3 moves under 2 as well: the increment passes and is published
    (root / "seeds/staff.csv").write_text("id,manager_id\n2,\n3,2\n4,2\n")
    result = job.execute_in_process(raise_on_error=False)
    assert result.success, checks(result.run_id)
    assert checks(result.run_id) == [(True, 0)]
    assert employees() == [(2, None), (3, 2), (4, 2)]


# an increment whose column comes out as DOUBLE while the table stores DECIMAL(18, 2): the
# insert casts (rounds) it, and a data test must judge what the table holds
SHARES = """
{{ config(materialized='incremental', unique_key='id') }}
{% if is_incremental() %}
select id, amount / 3.0 as share from {{ ref('amounts') }}
where id not in (select id from {{ this }})
{% else %}
select id, cast(amount / 3.0 as decimal(18, 2)) as share from {{ ref('amounts') }}
{% endif %}
"""
WHOLE_CENTS = """
select id, share from
{% if is_incremental() %}{{ written('shares') }}{% else %}{{ ref('shares') }}{% endif %}
where share * 100 <> round(share * 100)
"""


def test_a_data_test_judges_the_stored_values_when_an_increment_holds_other_types(
    make_project,
) -> None:
    root, job = built(
        make_project,
        {
            "seeds/amounts.csv": "id,amount\n1,3\n",
            "models/marts/shares.sql": SHARES,
            "data_tests/whole_cents.sql": WHOLE_CENTS,
        },
    )
    (root / "seeds/amounts.csv").write_text("id,amount\n1,3\n2,1\n")
    result = job.execute_in_process(raise_on_error=False)
    # 1/3 is stored as 0.33: whole cents, though the increment held 0.333...
    assert result.success
    ((name, passed, failing, observed),) = child_checks(root, result.run_id, "marts/shares")
    assert name.startswith("data_test") and (passed, failing) == (True, 0)
    assert "rows this build wrote" not in (observed or "")  # the whole table was read
    with duckdb.connect(str(root / "warehouse" / "t.duckdb"), read_only=True) as con:
        stored = con.execute("select id, share::varchar from marts.shares order by id").fetchall()
    assert stored == [(1, "1.00"), (2, "0.33")]
