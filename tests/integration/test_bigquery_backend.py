"""The BigQuery backend with the real google-cloud-bigquery client against the local emulator
the tests start on loopback: objects, Arrow landing, write-audit-publish through a candidate,
and the quality checks (yml tests, GX suites) running there as SQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pyarrow as pa
import pytest
from sqlglot import exp

from pipelines.config import TestSpec
from pipelines.modelling import ModelGraph
from pipelines.modelling.publish import write_audit_publish
from pipelines.project import load_project
from pipelines.quality.builtin_tests import count_of, failing_rows
from pipelines.quality.checks import run_check
from pipelines.quality.expectations import load_suite, run_suite
from pipelines.warehouse import Relation
from pipelines.warehouse.bigquery import BigQueryWarehouse
from pipelines.warehouse.duckdb import DuckDBWarehouse

pytestmark = pytest.mark.integration

T = Relation("marts", "t")


@pytest.fixture
def bq(bigquery_endpoint):
    """A session on a project of its own (so tests never see each other's datasets)."""
    warehouse = BigQueryWarehouse(f"p-{uuid.uuid4().hex[:10]}", api_endpoint=bigquery_endpoint)
    yield warehouse
    warehouse.close()


def test_objects_and_statements(bq) -> None:
    assert not bq.exists(T)
    bq.replace_with_select(T, exp.select("1 AS id", "'a' AS name"))
    assert bq.exists(T) and not bq.is_view(T)
    assert bq.columns(T) == [("id", "INT64"), ("name", "STRING")]
    inserted = bq.insert_select(
        T, ["id", "name"], exp.select("2", "'b'").union(exp.select("3", "'c'"))
    )
    assert inserted == 2 and bq.row_count(T) == 3
    view = Relation("marts", "v")
    bq.replace_with_select(view, exp.select("*").from_(T.to_table()), kind="VIEW")
    assert bq.is_view(view) and bq.row_count(view) == 3
    bq.add_column(T, "score", "NUMERIC(18, 2)")
    name, kind = bq.columns(T)[-1]
    assert name == "score" and kind.startswith("NUMERIC")  # the emulator drops the (18, 2)
    bq.drop(view, kind="VIEW")
    assert not bq.exists(view)


def test_columns_and_drops_run_no_query_job(bq, monkeypatch) -> None:
    # a run asks for columns and drops scratch tables dozens of times: through the tables
    # API, not a query job each
    bq.replace_with_select(T, exp.select("1 AS id", "'a' AS name"))
    view = Relation("marts", "v")
    bq.replace_with_select(view, exp.select("*").from_(T.to_table()), kind="VIEW")

    def no_job(sql: object) -> None:
        raise AssertionError(f"a query job: {sql}")

    monkeypatch.setattr(bq, "_run", no_job)
    assert bq.columns(T) == [("id", "INT64"), ("name", "STRING")]
    assert bq.columns(view) == [("id", "INT64"), ("name", "STRING")]
    assert bq.columns(Relation("marts", "missing")) == []
    bq.drop(view)  # a view, whichever kind is named
    bq.drop(T)
    bq.drop(Relation("nowhere", "missing"))  # neither the table nor its dataset: nothing
    assert not bq.exists(view) and not bq.exists(T)


def test_bookkeeping_rows_are_replaced_in_one_job(bq, monkeypatch) -> None:
    from datetime import UTC, datetime

    schema = pa.schema(
        [
            ("model", pa.string()),
            ("fingerprint", pa.string()),
            ("built_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    state_table = Relation("ssot_meta", "state")
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for model, fingerprint in (("a", "x"), ("b", "y")):
        row = {"model": model, "fingerprint": fingerprint, "built_at": at}
        bq.replace_rows(state_table, schema, "model", [row])
    jobs: list[str] = []
    real = bq._run

    def counted(sql: exp.Expression | str) -> object:
        jobs.append(bq.render(sql))  # the job's text, as BigQuery gets it
        return real(sql)

    monkeypatch.setattr(bq, "_run", counted)
    later = datetime(2026, 2, 1, tzinfo=UTC)
    # a's row replaced (its fingerprint now NULL), c's added: one MERGE
    bq.replace_rows(
        state_table,
        schema,
        "model",
        [
            {"model": "a", "fingerprint": None, "built_at": later},
            {"model": "c", "fingerprint": "z", "built_at": later},
        ],
    )
    assert len(jobs) == 1 and jobs[0].startswith("MERGE")

    def state() -> list[tuple]:
        rows = bq.query("select model, fingerprint, built_at from ssot_meta.state order by model")
        return [(r["model"], r["fingerprint"], r["built_at"]) for r in rows.to_pylist()]

    assert state() == [("a", None, later), ("b", "y", at), ("c", "z", later)]
    # one row with a NULL, as a run writes a relation's version: the NULL is cast to the
    # column's type (on BigQuery a bare NULL in the MERGE's source is an INT64)
    jobs.clear()
    bq.replace_rows(
        state_table, schema, "model", [{"model": "b", "fingerprint": None, "built_at": later}]
    )
    assert len(jobs) == 1 and "CAST(NULL AS STRING)" in jobs[0]
    assert state()[1] == ("b", None, later)
    # a key given twice goes the base's way: a DELETE, then an INSERT keeping both
    jobs.clear()
    twice = [{"model": "d", "fingerprint": f, "built_at": later} for f in ("1", "2")]
    bq.replace_rows(state_table, schema, "model", twice)
    assert [j.split()[0] for j in jobs] == ["DELETE", "INSERT"]
    # a column the table has beyond the rows' schema: the base's way too (it is left NULL)
    bq.add_column(state_table, "extra", "STRING")
    bq.execute("update ssot_meta.state set extra = 'old' where true")
    jobs.clear()
    bq.replace_rows(
        state_table, schema, "model", [{"model": "c", "fingerprint": "w", "built_at": at}]
    )
    assert [j.split()[0] for j in jobs] == ["DELETE", "INSERT"]
    extra = bq.query("select extra from ssot_meta.state where model = 'c'").to_pylist()
    assert extra == [{"extra": None}]


def test_arrow_landing(bq) -> None:
    first = pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", "b"]})
    assert bq.append_arrow(T, first) == 2
    wider = pa.table({"id": pa.array([3], pa.int64()), "name": ["c"], "extra": [1.5]})
    assert bq.append_arrow(T, wider, add_columns=True) == 1
    assert bq.query("select count(*) as n, sum(extra) as e from marts.t").to_pylist() == [
        {"n": 3, "e": 1.5}
    ]
    batches = [
        pa.record_batch({"id": pa.array([i], pa.int64()), "name": [str(i)]}) for i in range(5)
    ]
    with bq.arrow_source(batches[0].schema, iter(batches)) as source:
        assert bq.insert_select(T, ["id", "name"], exp.select("id", "name").from_(source)) == 5
    assert bq.row_count(T) == 8
    assert bq.replace_from_arrow(Relation("marts", "r"), first.schema, first.to_batches()) == 2
    scratch = bq.query(
        "select count(*) as n from ssot_meta.INFORMATION_SCHEMA.TABLES where table_name like '_arrow_%'"
    )
    assert scratch.to_pylist() == [{"n": 0}]  # the scratch table of arrow_source is dropped


def test_row_hash_tells_changed_rows_apart(bq) -> None:
    bq.replace_with_select(
        T,
        exp.select("*").from_(
            "unnest([struct(1 as id, 'a' as v), struct(2 as id, 'a' as v), struct(1 as id, 'a' as v)])"
        ),
    )
    hashed = exp.select("id", exp.alias_(bq.row_hash([exp.column("id"), exp.column("v")]), "h"))
    rows = bq.query(hashed.from_(T.to_table()).order_by("id")).to_pylist()
    assert rows[0]["h"] == rows[1]["h"] != rows[2]["h"]


def test_builtin_tests_run_on_bigquery(bq) -> None:
    bq.append_arrow(T, pa.table({"id": pa.array([1, 1, 2, None], pa.int64())}))
    table = T.to_table()
    unique = TestSpec(name="unique", column="id")
    not_null = TestSpec(name="not_null", column="id")
    assert bq.scalar(count_of(failing_rows(unique, table, lambda _: table))) == 1
    assert bq.scalar(count_of(failing_rows(not_null, table, lambda _: table))) == 1


SUITE = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "v", "mostly": 0.8}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "v", "min_value": 1, "max_value": 5},
    },
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "^[a-z]+$"}},
    {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "v"}},
    {
        "type": "expect_column_mean_to_be_between",
        "kwargs": {"column": "v", "min_value": 2, "max_value": 3},
    },
    {
        "type": "expect_column_median_to_be_between",
        "kwargs": {"column": "v", "min_value": 2, "max_value": 2},
    },
    {"type": "expect_table_row_count_to_equal", "kwargs": {"value": 5}},
    {
        "type": "expect_column_distinct_values_to_be_in_set",
        "kwargs": {"column": "s", "value_set": ["a", "b"]},
    },
    {"type": "expect_table_columns_to_match_ordered_list", "kwargs": {"column_list": ["v", "s"]}},
]
ROWS = pa.table({"v": pa.array([1, 2, 2, 9, None], pa.int64()), "s": ["a", "b", "B", "a", None]})


def test_a_gx_suite_gives_the_same_verdicts_on_bigquery_and_duckdb(bq, tmp_path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"name": "t", "expectations": SUITE}))
    suite = load_suite(path)
    bq.append_arrow(T, ROWS)
    with DuckDBWarehouse(":memory:") as duck:
        duck.append_arrow(T, ROWS)
        expected = [(o.name, o.passed, o.failing_rows) for o in run_suite(duck, suite, T)]
    ours = [(o.name, o.passed, o.failing_rows) for o in run_suite(bq, suite, T)]
    assert ours == expected
    # mean 3.5 is outside [2, 3]; 9 is out of range; "B" fails the regex; 2 repeats; "B" not in set
    assert [passed for _, passed, _ in ours] == [
        True,
        False,
        False,
        False,
        False,
        True,
        True,
        False,
        True,
    ]


def graph_for(make_project, sql: str) -> ModelGraph:
    return ModelGraph(load_project(make_project({"models/marts/m.sql": sql})))


def build(bq, graph, *, incremental=False):
    def audit(relation: Relation, written: Relation | None = None):
        failing = exp.select("*").from_(relation.to_table()).where("amount < 0")
        return [
            run_check(bq, failing, name="no_negative", severity="error", description="", what="t")
        ]

    return write_audit_publish(
        bq,
        graph.nodes["m"],
        graph.query("m", incremental=incremental),
        incremental=incremental,
        audit=audit,
        on_publish=lambda rows, staged: None,
    )


M = Relation("marts", "m")


def amounts(bq, relation: Relation = M) -> list:
    return bq.query(f"select amount from {relation} order by 1").column(0).to_pylist()


def test_write_audit_publish_through_a_candidate(bq, make_project) -> None:
    built = build(bq, graph_for(make_project, "select 1 as amount union all select 2"))
    assert built.published and amounts(bq) == [1, 2]
    built = build(bq, graph_for(make_project, "select 7 as amount union all select -1"))
    assert not built.published and built.candidate == Relation("ssot_meta", "candidate__marts__m")
    assert amounts(bq) == [1, 2]  # the previous version is still served
    assert amounts(bq, built.candidate) == [-1, 7]


INCREMENTAL = (
    "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }} "
    "select * from (values (1, 10), (2, 20), (3, AMOUNT)) as t(id, amount) "
    "{% if is_incremental() %} where id >= 2 {% endif %}"
)


def test_an_incremental_merge_on_bigquery(bq, make_project) -> None:
    assert build(bq, graph_for(make_project, INCREMENTAL.replace("AMOUNT", "30"))).published
    built = build(
        bq, graph_for(make_project, INCREMENTAL.replace("AMOUNT", "33")), incremental=True
    )
    assert built.published and built.staged == 2 and amounts(bq) == [10, 20, 33]


FLAGGED = (
    "{{ config(materialized='incremental', unique_key='id', deleted_flag='gone') }} "
    "{% if is_incremental() %} select * from (values (2, 22, false), (3, null, true)) "
    "{% else %} select * from (values (1, 10, false), (2, 20, false), (3, 30, false)) "
    "{% endif %} as t(id, amount, gone)"
)


def test_an_increment_deletes_and_keeps_a_change_feed_on_bigquery(bq, make_project) -> None:
    graph = graph_for(make_project, FLAGGED)
    reader = graph.nodes["m"]
    # as if another model read changes('m'): its builds keep a feed
    graph.nodes["m"] = replace(reader, change_feed=True)
    assert build(bq, graph).published and amounts(bq) == [10, 20, 30]
    built = build(bq, graph, incremental=True)
    assert built.published and built.staged == 2 and amounts(bq) == [10, 22]
    assert [name for name, _ in bq.columns(M)] == ["id", "amount"]
    feed = bq.query(
        "select _ssot_change, id, amount from ssot_meta.changes__marts__m "
        "order by _ssot_changed_at, _ssot_change desc, id"
    ).to_pylist()
    assert [tuple(row.values()) for row in feed] == [
        ("reset", None, None),
        ("before", 2, 20),
        ("before", 3, 30),
        ("after", 2, 22),
    ]


SNAPSHOT = (
    "{{ config(materialized='snapshot', unique_key='id') }} "
    "select * from (values (1, 10), (2, AMOUNT)) as t(id, amount)"
)


def test_a_snapshot_keeps_history_on_bigquery(bq, make_project) -> None:
    assert build(bq, graph_for(make_project, SNAPSHOT.replace("AMOUNT", "20"))).published
    built = build(bq, graph_for(make_project, SNAPSHOT.replace("AMOUNT", "25")))
    assert built.published and built.staged == 2
    history = bq.query("select id, amount, is_current from marts.m order by id, amount")
    assert history.to_pylist() == [
        {"id": 1, "amount": 10, "is_current": True},
        {"id": 2, "amount": 20, "is_current": False},
        {"id": 2, "amount": 25, "is_current": True},
    ]


PARTIAL_SNAPSHOT = (
    "{{ config(materialized='snapshot', unique_key='id', deleted_flag='gone') }} "
    "{% if is_incremental() %} select * from (values (2, 25, false), (3, null, true)) "
    "{% else %} select * from (values (1, 10, false), (2, 20, false), (3, 30, false)) "
    "{% endif %} as t(id, amount, gone)"
)


def test_a_snapshot_increment_closes_what_it_changes_on_bigquery(bq, make_project) -> None:
    # the changed and deleted keys' current versions are closed by an UPDATE ... FROM the
    # staged increment; a key the increment lacks is left alone
    graph = graph_for(make_project, PARTIAL_SNAPSHOT)
    assert build(bq, graph).published
    built = build(bq, graph, incremental=True)
    assert built.published
    history = bq.query("select id, amount, is_current from marts.m order by id, amount")
    assert history.to_pylist() == [
        {"id": 1, "amount": 10, "is_current": True},
        {"id": 2, "amount": 20, "is_current": False},
        {"id": 2, "amount": 25, "is_current": True},
        {"id": 3, "amount": 30, "is_current": False},
    ]


def test_published_tables_carry_description_and_labels(bq) -> None:
    bq.replace_with_select(T, exp.select("1 AS id"))
    bq.annotate(
        T, "Orders.\nBuilt from: staging.x.", {"owner": "data-platform_example_com", "tag_pii": ""}
    )
    table = bq._client.get_table(f"{bq.project}.marts.t")
    assert table.description == "Orders.\nBuilt from: staging.x."
    assert table.labels == {"owner": "data-platform_example_com", "tag_pii": ""}


def test_the_cost_guard_caps_every_query_job(bigquery_endpoint) -> None:
    guarded = BigQueryWarehouse(
        f"p-{uuid.uuid4().hex[:10]}",
        api_endpoint=bigquery_endpoint,
        maximum_bytes_billed=10_000_000,
    )
    try:
        job = guarded._run("select 1 as x")
        assert job.maximum_bytes_billed == 10_000_000  # as the service recorded the job
        assert (
            guarded.estimate_bytes("select 1 as x") == 0
        )  # a dry run: nothing ran, nothing billed
    finally:
        guarded.close()


def test_the_audit_s_run_list_reads_on_bigquery(bq) -> None:
    from pipelines.meta import AuditEntry, recent_runs, record_audit

    def load(asset: str, quarantined: int, detail: str) -> AuditEntry:
        return AuditEntry(
            run_id="r1",
            asset=asset,
            kind="load",
            rows_in=10,
            rows_out=3,
            rows_quarantined=quarantined,
            duration_s=0.5,
            outcome="success",
            detail=detail,
        )

    record_audit(bq, load("raw/crm/contacts", 5, "unchanged 2; already quarantined 3"))
    record_audit(bq, load("raw/shop/orders", 4, "unchanged 3"))
    (run,) = recent_runs(bq).to_pylist()
    assert (run["rows_landed"], run["rows_quarantined"], run["errors"]) == (6, 6, 0)
