"""Connection URLs: the one place that parses them and keeps passwords out of every output."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with its password masked (``***``): safe for logs, metadata and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(
        parts._replace(netloc=_netloc(parts.username, parts.hostname, parts.port, "***"))
    )


def strip_password(url: str) -> str:
    """The URL with no password at all, for URLs that are stored (the password stays in env vars)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(
        parts._replace(netloc=_netloc(parts.username, parts.hostname, parts.port, None))
    )


def _netloc(user: str | None, host: str | None, port: int | None, password: str | None) -> str:
    host = host or ""
    if ":" in host:
        host = f"[{host}]"
    credentials = ""
    if user:
        credentials = f"{user}:{password}@" if password is not None else f"{user}@"
    return f"{credentials}{host}" + (f":{port}" if port is not None else "")


def mysql_connect_args(url: str) -> dict[str, Any]:
    """pymysql.connect() keyword arguments for ``mysql://user:pass@host:port/db``."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "charset": "utf8mb4",
    }
