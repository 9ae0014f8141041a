from __future__ import annotations

from pipelines.urls import mysql_connect_args, redact_url, strip_password


def test_redact_masks_only_the_password() -> None:
    assert redact_url("mysql://root:pw@h:3306/db") == "mysql://root:***@h:3306/db"
    assert (
        redact_url("postgresql://u:p%40ss@[::1]:5432/x?sslmode=require")
        == "postgresql://u:***@[::1]:5432/x?sslmode=require"
    )
    assert redact_url("sqlite:///x.sqlite") == "sqlite:///x.sqlite"


def test_strip_removes_the_password() -> None:
    assert strip_password("postgresql://app:s3cret@db:5432/crm") == "postgresql://app@db:5432/crm"
    assert "s3cret" not in strip_password("mysql://app:s3cret@db/shop")


def test_mysql_args_decode_the_url() -> None:
    args = mysql_connect_args("mysql://shop%20user:p%40ss@10.0.0.5:3307/shop")
    assert args == {
        "host": "10.0.0.5",
        "port": 3307,
        "user": "shop user",
        "password": "p@ss",
        "database": "shop",
        "charset": "utf8mb4",
    }
    assert mysql_connect_args("mysql://root@127.0.0.1/")["database"] is None


def test_credentials_in_query_parameters_are_masked() -> None:
    url = "postgresql://app@127.0.0.1:5432/crm?password=s3cret&sslmode=require&sslpassword=k3y"
    assert (
        redact_url(url)
        == "postgresql://app@127.0.0.1:5432/crm?password=***&sslmode=require&sslpassword=***"
    )
    assert "s3cret" not in strip_password(url)


def test_an_unparseable_url_is_reduced_to_its_scheme() -> None:
    assert redact_url("postgresql://app:s3cret@host:54x2/crm") == "postgresql://***"
