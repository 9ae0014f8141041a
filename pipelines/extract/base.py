"""What every connector yields, and how a connector is chosen from a URL.

A connector reads one source table and yields :class:`Extracted` units: an Arrow record batch
of rows as the source gave them (bounded in size), plus the records it could not even parse
(broken CSV lines, invalid JSON, undecodable bytes) as :class:`Reject`s. Typing and validating
the rows is the contract's job (`pipelines.quality.contracts`), not the connector's: connectors
stay dumb and fast, and nothing they read is dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.quality.contracts import Reject
from pipelines.urls import redact_url

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from pipelines.config import SourceTableSpec

DEFAULT_BATCH_ROWS = 50_000

__all__ = ["DEFAULT_BATCH_ROWS", "Connector", "Extracted", "redact_url"]


@dataclass(frozen=True)
class Extracted:
    """One bounded unit read from a source: typed-as-received rows and unparseable records."""

    batch: pa.RecordBatch | None
    rejects: tuple[Reject, ...] = field(default_factory=tuple)

    @property
    def rows_read(self) -> int:
        return (self.batch.num_rows if self.batch is not None else 0) + len(self.rejects)


class Connector(ABC):
    """Reads tables of one operational system. Instances hold no open resources between calls."""

    #: URL schemes this connector serves.
    schemes: tuple[str, ...] = ()

    def __init__(self, url: str, *, source: str, root: Path) -> None:
        self.url = url
        self.source = source
        self.root = root

    @abstractmethod
    def read(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        """Stream the table's current rows in batches of at most ``batch_rows``."""
