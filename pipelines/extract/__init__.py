"""Connectors to operational systems, chosen by the URL scheme in `sources/*.yml`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.errors import ConfigError
from pipelines.extract.base import DEFAULT_BATCH_ROWS, Connector, Extracted, Pull, redact_url
from pipelines.extract.files import FileConnector
from pipelines.extract.http import HttpConnector
from pipelines.extract.sql import MySqlConnector, PostgresConnector, SqliteConnector

if TYPE_CHECKING:
    from pathlib import Path

_CONNECTORS: tuple[type[Connector], ...] = (
    SqliteConnector,
    PostgresConnector,
    MySqlConnector,
    FileConnector,
    HttpConnector,
)


def connector_for(url: str, *, source: str, root: Path) -> Connector:
    """The connector serving ``url``'s scheme; ConfigError names the source when none does."""
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    for cls in _CONNECTORS:
        if scheme in cls.schemes:
            return cls(url, source=source, root=root)
    known = sorted(s for cls in _CONNECTORS for s in cls.schemes)
    raise ConfigError(
        f"sources/{source}.yml: URL {redact_url(url)!r} has scheme {scheme!r}; supported: {', '.join(known)}"
    )


__all__ = ["DEFAULT_BATCH_ROWS", "Connector", "Extracted", "Pull", "connector_for", "redact_url"]
