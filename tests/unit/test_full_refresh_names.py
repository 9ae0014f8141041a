"""`ssot run --full-refresh NAME ...` resolves names to source tables and incremental models."""

from __future__ import annotations

import pytest

from pipelines.cli import _full_refresh_keys
from pipelines.errors import ConfigError
from pipelines.project import load_project

SOURCE = """
name: app
owner: team@example.com
connection: {url_env: SSOT_TEST_APP_URL, default: 'sqlite:///data/app.sqlite'}
tables:
  - name: users
    primary_key: [id]
    columns: [{name: id, type: integer}]
  - name: orders
    primary_key: [id]
    columns: [{name: id, type: integer}]
"""


@pytest.fixture
def project(make_project):
    return load_project(
        make_project(
            {
                "sources/app.yml": SOURCE,
                "models/staging/inc.sql": "{{ config(materialized='incremental') }} "
                "select id from {{ source('app', 'users') }}",
                "models/staging/tbl.sql": "select id from {{ source('app', 'orders') }}",
            }
        )
    )


def names(keys) -> list[str]:
    return sorted(key.to_user_string() for key in keys)


def test_no_flag_refreshes_nothing(project) -> None:
    assert _full_refresh_keys(project, None) == []


def test_the_bare_flag_refreshes_every_table_and_incremental_model(project) -> None:
    assert names(_full_refresh_keys(project, [])) == [
        "raw/app/orders",
        "raw/app/users",
        "staging/inc",
    ]


def test_a_model_name_refreshes_only_that_model(project) -> None:
    assert names(_full_refresh_keys(project, ["inc"])) == ["staging/inc"]


def test_tables_and_models_mix(project) -> None:
    assert names(_full_refresh_keys(project, ["app.users", "inc"])) == [
        "raw/app/users",
        "staging/inc",
    ]


def test_a_model_that_is_not_incremental_is_an_error(project) -> None:
    with pytest.raises(ConfigError, match="materialized as table"):
        _full_refresh_keys(project, ["tbl"])


def test_an_unknown_name_lists_what_is_known(project) -> None:
    with pytest.raises(ConfigError, match=r"--full-refresh nope: no such source or table"):
        _full_refresh_keys(project, ["nope"])


def test_a_snapshot_is_never_rebuilt_from_scratch(make_project) -> None:
    project = load_project(
        make_project(
            {
                "sources/app.yml": SOURCE,
                "models/staging/snap.sql": "{{ config(materialized='snapshot', unique_key='id') }} "
                "select id from {{ source('app', 'users') }}",
            }
        )
    )
    with pytest.raises(ConfigError, match="keeps history that a rebuild would lose"):
        _full_refresh_keys(project, ["snap"])
