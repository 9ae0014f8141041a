from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import ConfigError
from pipelines.project import find_project_root, load_project

ROOT = Path(__file__).resolve().parents[2]


def test_the_repository_project_loads() -> None:
    project = load_project(ROOT)
    assert set(project.sources) == {"crm", "shop", "billing"}
    assert {"dim_customer", "dim_product", "fct_orders", "fct_payments"} <= set(project.models)
    assert project.models["dim_customer"].layer == "conformed"
    assert project.target.type == "duckdb"


def test_relative_urls_resolve_against_the_project(make_project, monkeypatch) -> None:
    root = make_project()
    project = load_project(root)
    monkeypatch.delenv("SSOT_TEST_APP_URL", raising=False)
    assert project.source_url(project.sources["app"]) == f"sqlite:///{root}/data/app.sqlite"
    monkeypatch.setenv("SSOT_TEST_APP_URL", "postgresql://u:p@h/db")
    assert project.source_url(project.sources["app"]) == "postgresql://u:p@h/db"


def test_bad_column_type_names_file_and_key(make_project) -> None:
    root = make_project()
    (root / "sources" / "app.yml").write_text(
        (root / "sources" / "app.yml").read_text().replace("type: integer", "type: int128")
    )
    with pytest.raises(ConfigError) as info:
        load_project(root)
    message = str(info.value)
    assert "app.yml" in message
    assert "tables.0.columns.0.type" in message
    assert "int128" in message


def test_primary_key_must_be_declared(make_project) -> None:
    root = make_project()
    path = root / "sources" / "app.yml"
    path.write_text(path.read_text().replace("primary_key: [id]", "primary_key: [user_id]"))
    with pytest.raises(ConfigError, match="'user_id' is used as primary_key"):
        load_project(root)


def test_model_outside_a_layer_folder_is_rejected(make_project) -> None:
    root = make_project({"models/misc/a.sql": "select 1"})
    with pytest.raises(ConfigError, match="layer folders"):
        load_project(root)


def test_yml_for_a_missing_model_is_rejected(make_project) -> None:
    root = make_project({"models/staging/s.yml": "models:\n  - name: ghost\n"})
    with pytest.raises(ConfigError, match="ghost"):
        load_project(root)


def test_dbt_test_spellings_are_normalized(make_project) -> None:
    root = make_project(
        {
            "models/staging/a.sql": "select 1 as id",
            "models/staging/a.yml": """
                models:
                  - name: a
                    columns:
                      - name: id
                        data_tests:
                          - unique
                          - accepted_values:
                              arguments: {values: [1, 2]}
                              config: {severity: warn}
                          - relationships: {to: "ref('b')", field: id}
            """,
        }
    )
    tests = load_project(root).models["a"].properties.columns[0].tests
    assert [(t.name, t.column, t.severity) for t in tests] == [
        ("unique", "id", "error"),
        ("accepted_values", "id", "warn"),
        ("relationships", "id", "error"),
    ]
    assert tests[1].values == [1, 2]
    assert tests[2].check_name == "relationships__id__ref_b"


def test_a_typo_in_a_models_yml_is_an_error_not_a_silently_dropped_test(make_project) -> None:
    root = make_project(
        {
            "models/staging/a.sql": "select 1 as id",
            "models/staging/a.yml": "models:\n  - name: a\n    colums:\n      - name: id\n        tests: [unique]\n",
        }
    )
    with pytest.raises(ConfigError, match=r"(?s)a\.yml.*models\.0\.colums"):
        load_project(root)


def test_unknown_target_is_a_config_error(make_project, monkeypatch) -> None:
    project = load_project(make_project())
    monkeypatch.setenv("SSOT_TARGET", "prod")
    with pytest.raises(ConfigError, match="target 'prod'"):
        _ = project.target


def test_find_project_root_walks_up(make_project, monkeypatch) -> None:
    root = make_project({"models/staging/a.sql": "select 1"})
    monkeypatch.delenv("SSOT_PROJECT_DIR", raising=False)
    assert find_project_root(root / "models" / "staging") == root.resolve()
