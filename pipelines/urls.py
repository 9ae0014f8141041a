"""Connection URLs: the one place that parses them and keeps passwords out of every output."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

#: Query parameters that carry credentials (`?password=`, `?sslpassword=`, `?api_key=`, ...).
SENSITIVE_PARAM = re.compile(r"token|key|secret|passw|pwd|auth|sig|credential", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with its password and credential-like query values masked (``***``).

    Safe for logs, metadata and error messages. A URL that does not even parse is reduced to
    its scheme, since any part of it could be the secret.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = _netloc(parts.username, parts.hostname, parts.port, "***")
        query = "&".join(_redact_pair(p) for p in parts.query.split("&")) if parts.query else ""
        if netloc == parts.netloc and query == parts.query:
            return url  # nothing secret (and `sqlite:///x` keeps its three slashes)
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return f"{url.split('://', 1)[0]}://***" if "://" in url else "***"


def strip_password(url: str) -> str:
    """The URL with no password at all, for URLs that are stored (the password stays in env vars).

    Credential-like query values are masked as in :func:`redact_url`.
    """
    url = redact_url(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(
        parts._replace(netloc=_netloc(parts.username, parts.hostname, parts.port, None))
    )


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from a driver) with the URL's secrets masked wherever they appear."""
    secrets: set[str] = set()
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets |= {parts.password, unquote(parts.password)}
        for piece in parts.query.split("&") if parts.query else []:
            name, equals, value = piece.partition("=")
            if equals and value and SENSITIVE_PARAM.search(unquote(name)):
                secrets |= {value, unquote(value)}
    except ValueError:
        return "*** (an error whose text may hold the connection URL was hidden)"
    text = text.replace(url, redact_url(url))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def with_query_param(url: str, name: str, value: str) -> str:
    """The URL with one more query parameter (URL-encoded)."""
    from urllib.parse import quote, urlencode

    parts = urlsplit(url)
    extra = urlencode({name: value}, quote_via=quote)  # %20, not '+': libpq reads URIs literally
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _redact_pair(piece: str) -> str:
    name, equals, _ = piece.partition("=")
    if equals and SENSITIVE_PARAM.search(unquote(name.replace("+", " "))):
        return f"{name}=***"
    return piece


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
