"""What every connector yields, and how a connector is chosen from a URL.

A connector reads one source table and yields :class:`Extracted` units: an Arrow record batch
of rows as the source gave them (bounded in size), plus the records it could not even parse
(broken CSV lines, invalid JSON, undecodable bytes) as :class:`Reject`s. Typing and validating
the rows is the contract's job (`pipelines.quality.contracts`), not the connector's: connectors
stay dumb and fast, and nothing they read is dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from pipelines.quality.contracts import Reject
from pipelines.urls import redact_url

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from pipelines.config import SourceTableSpec
    from pipelines.warehouse.base import NativeTable

DEFAULT_BATCH_ROWS = 50_000

__all__ = ["DEFAULT_BATCH_ROWS", "Connector", "Extracted", "Pull", "redact_url"]

CursorValue = datetime | int | float | str


@dataclass(frozen=True)
class Pull:
    """What the warehouse already holds, so a connector reads only what may be new.

    ``cursor_floor``: read only rows whose cursor column is at or after it (None: every row).
    ``known_files``: file sources skip files whose fingerprint (size and modification time) is
    unchanged since they were landed.
    """

    cursor_floor: CursorValue | None = None
    known_files: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_full(self) -> bool:
        return self.cursor_floor is None and not self.known_files


@dataclass(frozen=True)
class Extracted:
    """One bounded unit read from a source: typed-as-received rows and unparseable records."""

    batch: pa.RecordBatch | None
    rejects: tuple[Reject, ...] = field(default_factory=tuple)
    #: files read to their end in this unit: (path relative to the source folder, fingerprint)
    files: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def rows_read(self) -> int:
        return (self.batch.num_rows if self.batch is not None else 0) + len(self.rejects)


class Connector(ABC):
    """Reads tables of one operational system. Instances hold no open resources between calls."""

    #: URL schemes this connector serves.
    schemes: tuple[str, ...] = ()
    #: True when every batch of one read has the same columns (a database query), so a load
    #: can stream straight into raw; files and APIs may change shape mid-read (a newer file
    #: with a new column) and land through a scratch table instead.
    stable_schema: ClassVar[bool] = False

    def __init__(self, url: str, *, source: str, root: Path) -> None:
        self.url = url
        self.source = source
        self.root = root

    @abstractmethod
    def read(
        self,
        table: SourceTableSpec,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        pull: Pull | None = None,
    ) -> Iterator[Extracted]:
        """Stream the table's rows (those ``pull`` says may be new) in batches of at most ``batch_rows``."""

    def keys_are_unique(self, table: SourceTableSpec) -> bool:
        """True when the source itself guarantees the table's primary key is unique (a primary
        key or unique constraint on those columns or a subset), so a read cannot repeat a key."""
        return False

    def native_table(self, table: SourceTableSpec, pull: Pull) -> NativeTable | None:
        """The table as a warehouse that reads this kind of database itself could scan it for
        ``pull`` (no Arrow in between), or None. Only a full pull of a database table has one;
        the warehouse decides whether it can use it (``Warehouse.reads_natively``)."""
        return None

    def read_keys(
        self, table: SourceTableSpec, *, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[Extracted]:
        """Stream every current primary key of the table (for hard-delete detection)."""
        from pipelines.errors import ConfigError

        raise ConfigError(
            f"sources/{self.source}.yml, table {table.name!r}: delete_detection: key_diff needs a "
            f"source that can list its keys (a database); {type(self).__name__} cannot"
        )
