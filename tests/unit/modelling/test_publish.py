"""Write-audit-publish, both strategies on real DuckDB: in one transaction (DuckDB's own) and
through a candidate relation (what backends without transactional DDL, such as BigQuery, use;
run here by DuckDB with its transactions not used)."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import pytest
from sqlglot import exp

from pipelines.modelling import ModelGraph
from pipelines.modelling.publish import write_audit_publish
from pipelines.project import load_project
from pipelines.quality.checks import run_check
from pipelines.warehouse import Relation
from pipelines.warehouse.duckdb import DuckDBWarehouse


class CandidateDuckDB(DuckDBWarehouse):
    """DuckDB declared without transactional DDL: the engine-neutral candidate strategy runs."""

    supports_transactions: ClassVar[bool] = False


STRATEGIES = {"transaction": DuckDBWarehouse, "candidate": CandidateDuckDB}
CANDIDATE = Relation("ssot_meta", "candidate__marts__m")
MODEL = Relation("marts", "m")


def graph_for(make_project, sql: str, config: str = "") -> ModelGraph:
    return ModelGraph(load_project(make_project({"models/marts/m.sql": config + sql})))


def no_negative(warehouse):
    def audit(relation: Relation, written: Relation | None = None):
        failing = exp.select("*").from_(relation.to_table()).where("amount < 0")
        return [
            run_check(
                warehouse, failing, name="no_negative", severity="error", description="", what="t"
            )
        ]

    return audit


def build(warehouse, graph, *, incremental=False):
    node = graph.nodes["m"]
    published: list[int] = []
    built = write_audit_publish(
        warehouse,
        node,
        graph.query("m", incremental=incremental),
        incremental=incremental,
        audit=no_negative(warehouse),
        on_publish=lambda rows, staged: published.append(rows),
    )
    return built, published


def amounts(warehouse, relation: Relation = MODEL) -> list:
    return warehouse.query(f"select amount from {relation} order by 1").column(0).to_pylist()


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("materialized", ["table", "view"])
def test_a_passing_build_is_published_and_a_failing_one_kept_aside(
    make_project, tmp_path, strategy, materialized
) -> None:
    config = f"{{{{ config(materialized='{materialized}') }}}} "
    with STRATEGIES[strategy](tmp_path / "w.duckdb") as wh:
        good = graph_for(make_project, "select 1 as amount union all select 2", config)
        built, published = build(wh, good)
        assert built.published and built.candidate is None and published == [2]
        assert amounts(wh) == [1, 2]
        assert not wh.exists(CANDIDATE)

        bad = graph_for(make_project, "select 5 as amount union all select -3", config)
        built, published = build(wh, bad)
        assert not built.published and published == []
        assert built.candidate == CANDIDATE
        assert amounts(wh) == [1, 2]  # readers keep the previous version
        assert amounts(wh, CANDIDATE) == [-3, 5]  # the refused one is kept
        assert wh.is_view(Relation("marts", "m")) is (materialized == "view")


INCREMENTAL = (
    "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }} "
    "select * from (values (1, 10), (2, 20), (3, AMOUNT)) as t(id, amount) "
    "{% if is_incremental() %} where id >= 2 {% endif %}"
)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_increment_is_applied_only_when_it_passes(make_project, tmp_path, strategy) -> None:
    with STRATEGIES[strategy](tmp_path / "w.duckdb") as wh:
        assert build(wh, graph_for(make_project, INCREMENTAL.replace("AMOUNT", "30")))[0].published
        built, _ = build(
            wh, graph_for(make_project, INCREMENTAL.replace("AMOUNT", "33")), incremental=True
        )
        assert built.published and built.staged == 2
        assert amounts(wh) == [10, 20, 33]
        built, _ = build(
            wh, graph_for(make_project, INCREMENTAL.replace("AMOUNT", "-1")), incremental=True
        )
        assert not built.published
        assert amounts(wh) == [10, 20, 33]


FLAGGED = (
    "{{ config(materialized='incremental', unique_key='id', deleted_flag='gone') }} "
    "select * from (values ROWS) as t(id, amount, gone)"
)


def feed_rows(wh) -> list[tuple]:
    return [
        tuple(r.values())
        for r in wh.query(
            "select _ssot_change, id, amount from ssot_meta.changes__marts__m "
            "order by _ssot_changed_at, _ssot_change desc, id"
        ).to_pylist()
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_refused_build_leaves_the_change_feed_as_it_was(make_project, tmp_path, strategy) -> None:
    def graph(rows: str) -> ModelGraph:
        made = graph_for(make_project, FLAGGED.replace("ROWS", rows))
        made.nodes["m"] = replace(made.nodes["m"], change_feed=True)  # as if a model read it
        return made

    with STRATEGIES[strategy](tmp_path / "w.duckdb") as wh:
        assert build(wh, graph("(1, 10, false)"))[0].published
        assert build(wh, graph("(2, 20, false)"), incremental=True)[0].published
        # refused (a negative amount): neither its deletion of 2 nor its row 3 reach the feed
        refused, _ = build(wh, graph("(2, null, true), (3, -1, false)"), incremental=True)
        assert not refused.published
        assert feed_rows(wh) == [("reset", None, None), ("after", 2, 20)]
        refused, _ = build(wh, graph("(1, -1, false)"))  # a refused whole build: no reset either
        assert not refused.published
        assert feed_rows(wh) == [("reset", None, None), ("after", 2, 20)]
        assert build(wh, graph("(2, 22, false)"), incremental=True)[0].published
        assert feed_rows(wh) == [
            ("reset", None, None),
            ("after", 2, 20),
            ("before", 2, 20),
            ("after", 2, 22),
        ]
        assert amounts(wh) == [10, 22]


def test_a_feed_left_half_published_starts_again(make_project, tmp_path) -> None:
    def graph(rows: str) -> ModelGraph:
        made = graph_for(make_project, FLAGGED.replace("ROWS", rows))
        made.nodes["m"] = replace(made.nodes["m"], change_feed=True)
        return made

    with CandidateDuckDB(tmp_path / "w.duckdb") as wh:
        assert build(wh, graph("(1, 10, false)"))[0].published
        # a build that stopped after publishing its table, before its feed rows
        wh.execute("create table ssot_meta.candidate__ssot_meta__changes__marts__m as select 1")
        assert build(wh, graph("(2, 20, false)"), incremental=True)[0].published
        rows = feed_rows(wh)
        assert rows[0][0] == "reset" and rows[1:] == [("after", 2, 20)]
        assert len([r for r in rows if r[0] == "reset"]) == 1
        assert not wh.exists(Relation("ssot_meta", "candidate__ssot_meta__changes__marts__m"))


SNAPSHOT = (
    "{{ config(materialized='snapshot', unique_key='id') }} "
    "select * from (values (1, 10), (2, AMOUNT)) as t(id, amount)"
)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_snapshot_keeps_its_history_through_either_strategy(
    make_project, tmp_path, strategy
) -> None:
    with STRATEGIES[strategy](tmp_path / "w.duckdb") as wh:
        assert build(wh, graph_for(make_project, SNAPSHOT.replace("AMOUNT", "20")))[0].published
        built, _ = build(wh, graph_for(make_project, SNAPSHOT.replace("AMOUNT", "25")))
        assert built.published and built.staged == 2  # one version closed, one opened
        history = wh.query("select id, amount, is_current from marts.m order by id, amount")
        assert history.to_pylist() == [
            {"id": 1, "amount": 10, "is_current": True},
            {"id": 2, "amount": 20, "is_current": False},
            {"id": 2, "amount": 25, "is_current": True},
        ]
        assert not build(wh, graph_for(make_project, SNAPSHOT.replace("AMOUNT", "-5")))[0].published
        assert wh.row_count(Relation("marts", "m")) == 3


def test_published_models_carry_description_owners_tags_and_lineage(make_project, tmp_path) -> None:
    from pipelines.modelling.publish import table_annotations

    yml = (
        "models:\n  - name: m\n    description: The orders.\n"
        "    meta: {owner: Data-Platform@example.com}\n    config: {tags: [pii, Finance]}\n"
    )
    root = make_project({"models/marts/m.sql": "select 1 as amount", "models/marts/m.yml": yml})
    node = ModelGraph(load_project(root)).nodes["m"]
    description, labels = table_annotations(node, ["staging.a", "raw.app__users"])
    assert description.startswith("The orders.\nBuilt from: staging.a, raw.app__users.")
    assert labels == {
        "ssot_layer": "marts",
        "ssot_model": "m",
        "owner": "data-platform_example_com",
        "tag_pii": "",
        "tag_finance": "",
    }
    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        wh.replace_with_select(MODEL, exp.select("1 AS amount"))
        wh.annotate(MODEL, description, labels)
        comment = wh.scalar("select comment from duckdb_tables() where table_name = 'm'")
        assert comment.startswith("The orders.") and "owner=data-platform_example_com" in comment


def test_a_view_turned_incremental_is_built_whole(make_project) -> None:
    """An incremental model whose relation is still a view (its materialization changed) is
    built from its whole query, not from an increment."""
    import dagster as dg

    from pipelines.assets.models import build_models_asset
    from pipelines.assets.resources import WarehouseResource
    from pipelines.warehouse import open_warehouse

    sql = "select * from (values (1), (2), (3)) as t(id)"
    root = make_project({"models/marts/m.sql": "{{ config(materialized='view') }} " + sql})

    def materialize() -> None:
        graph = ModelGraph(load_project(root))
        resource = WarehouseResource(project_dir=str(root))
        assert dg.materialize(
            [build_models_asset(graph)], resources={"warehouse": resource}
        ).success

    materialize()
    (root / "models/marts/m.sql").write_text(
        "{{ config(materialized='incremental', unique_key='id') }} "
        + sql
        + " {% if is_incremental() %} where id > 2 {% endif %}"
    )
    materialize()
    with open_warehouse(load_project(root), read_only=True) as wh:
        assert not wh.is_view(MODEL)
        assert wh.query("select id from marts.m order by id").column(0).to_pylist() == [1, 2, 3]


def test_a_table_built_whole_is_audited_beside_the_published_one_and_renamed_over_it(
    make_project, tmp_path
) -> None:
    """On DuckDB a table built whole is committed beside the published table and audited
    there: its results name the model's table (or the kept candidate), the published table is
    untouched until the rename, and nothing is left beside it whatever happens."""
    building = Relation("marts", "_ssot_building__m")
    with DuckDBWarehouse(tmp_path / "w.duckdb") as wh:
        seen: list[bool] = []

        def audit(relation: Relation, written: Relation | None = None):
            # audited beside the published table, which is not replaced yet
            seen.append(relation == building and wh.exists(MODEL) is (len(seen) > 0))
            return no_negative(wh)(relation, written)

        good = graph_for(make_project, "select 1 as amount union all select 2")
        node = good.nodes["m"]
        for _ in range(2):
            built = write_audit_publish(
                wh,
                node,
                good.query("m"),
                incremental=False,
                audit=audit,
                on_publish=lambda rows, staged: None,
            )
            assert built.published and built.audited == "marts.m"
            assert (
                '"marts"."m"' in built.outcomes[0].query
                and "building" not in built.outcomes[0].query
            )
        assert seen == [True, True] and amounts(wh) == [1, 2] and not wh.exists(building)

        # refused: kept as the candidate, which its result names; the table is as it was
        bad = graph_for(make_project, "select 5 as amount union all select -3")
        built, published = build(wh, bad)
        assert not built.published and built.candidate == CANDIDATE and not published
        assert '"ssot_meta"."candidate__marts__m"' in built.outcomes[0].query
        assert amounts(wh) == [1, 2] and amounts(wh, CANDIDATE) == [-3, 5]
        assert not wh.exists(building)

        # the bookkeeping fails: the rename is rolled back with it
        def refuse(rows: int, staged: int | None) -> None:
            raise RuntimeError("bookkeeping failed")

        other = graph_for(make_project, "select 7 as amount")
        with pytest.raises(RuntimeError, match="bookkeeping failed"):
            write_audit_publish(
                wh,
                other.nodes["m"],
                other.query("m"),
                incremental=False,
                audit=no_negative(wh),
                on_publish=refuse,
            )
        assert amounts(wh) == [1, 2] and not wh.exists(building)

        # a build that fails leaves nothing beside the table either
        broken = graph_for(make_project, "select error('no') as amount")
        with pytest.raises(Exception, match="no"):
            build(wh, broken)
        assert amounts(wh) == [1, 2] and not wh.exists(building)


def test_a_model_checked_against_itself_reads_the_version_being_audited(make_project) -> None:
    """A relationships test from a model to itself (a parent id among its own ids) reads the
    build being audited on both sides: a first build passes, and a build orphaning a row is
    refused, though the published table still holds the parent."""
    from pipelines.assets import build_definitions

    model = "select id, parent_id from {{ ref('emp') }}"
    yml = """
        models:
          - name: m
            columns:
              - name: parent_id
                tests:
                  - relationships: {to: ref('m'), field: id}
        """
    root = make_project(
        {
            "seeds/emp.csv": "id,parent_id\n1,\n2,1\n",
            "models/marts/m.sql": model,
            "models/marts/m.yml": yml,
        },
        source=False,
    )
    job = build_definitions(load_project(root)).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(raise_on_error=False).success
    (root / "seeds/emp.csv").write_text("id,parent_id\n2,1\n")
    assert not job.execute_in_process(raise_on_error=False).success
    with DuckDBWarehouse(root / "warehouse" / "t.duckdb", read_only=True) as wh:
        assert wh.query("select id from marts.m order by id").column(0).to_pylist() == [1, 2]
