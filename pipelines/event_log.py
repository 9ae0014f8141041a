"""Dagster's SQLite event log for the project's instance, without its per-write overhead.

Dagster's `SqliteEventLogStorage` creates a SQLAlchemy engine for every write and commits each
event with a flush to disk. A run of the demo stored about 260 events (a materialization and
its planned event per asset, an evaluation and an output per check, step events; about 180 since a
check result is yielded as its evaluation alone), so this cost about 2.9 s of a 20 s
incremental run at scale 100: 0.9 s flushing, 0.3 s creating engines.

This subclass keeps one engine per database file, and its connection open between writes:
opening a connection per write and closing it, as a `NullPool` does, cost 1.3 s of a 15 s run
(closing the last connection of a file in WAL mode checkpoints the WAL each time). A connection
is used by one write or read at a time (the parent's lock orders them in this process; a
nested use would get a connection of its own, closed when given back). Each connection has
`synchronous = NORMAL`. The files are in WAL mode, where that setting keeps the database
consistent after a crash; what a power loss can cost is the last events written (a run's
history may then lack its last events while the run storage, still synced each time, says it
finished), never the warehouse, which is a separate file published by its own fsync'd rename.

It also remembers what the schema has. For each asset or check event it stores or reads, Dagster
asks whether a table, a column of the asset-key table or a finished data migration exists: a
new engine and connection for each table probe (118 in a run of the demo), a query for each of
the others. A schema only gains these (migrations add them; nothing in a run drops one), so a
yes is kept until the storage is wiped; a no is asked again. With the engines kept, this took
storing and reading a demo run's events at scale 100 from 1.8-1.9 s to 1.4-1.5 s, and the
asset records read for its checks from 0.31-0.45 s to 0.22-0.28 s, on a machine where a loop
of 10 M additions takes 1.48 s.

And it makes a run's file without loading Dagster's migration scripts. Each run has a new file,
which Dagster's own code creates and stamps with the schema's latest revision, loading all of
its ~90 migration scripts twice to find that revision (and once more for every file it opens,
to learn that it is stamped already). Here a run's new file is a copy of an empty one that
Dagster's own code made once per schema (`.empty-run-<version>-<digest of the migration
scripts' names>.db` beside the run files), and a file already stamped is opened as it is. The
copies are flushed to disk before they are renamed or linked into place, and a run's copy is
linked only where no file is yet (the UI may have made one); another schema's empty file is
removed, and whatever fails (no room, no hard links) leaves the run's file to Dagster's own.
On the same machine, creating a run with its 82 planned events went from 0.60-0.86 s to
0.18-0.22 s.

Everything else (the schema, the places of the files, the UI reading them) is Dagster's own; a
hidden file is never taken for a run's (Dagster lists runs by `*.db`). `dagster.yaml` of a
project instance names this class, with the directory Dagster's own would use (see
`runner.py`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

from pipelines.atomic import fsync_directory

if TYPE_CHECKING:
    from dagster._serdes import ConfigurableClassData
    from sqlalchemy.engine import Connection, Engine


_log = logging.getLogger(__name__)

#: errors of a hard link where the file system has none
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})

#: engines kept at most (the index's and the most recently used runs')
KEPT_ENGINES = 8
#: connections a file's engine opens beyond its kept one while that one is in use (closed on
#: return); the parent's lock makes that rare
KEPT_OVERFLOW = 8


class ProjectEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` (same ``base_dir`` config), one engine per file."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        self._engines_lock = threading.Lock()
        #: (kind, name) of the tables, asset-key columns and finished migrations seen to exist
        self._present: set[tuple[str, str]] = set()
        #: the empty run file found whole and stamped by this process
        self._empty_checked: Path | None = None
        #: whether runs' files are made as copies (not where hard links fail)
        self._copying = True
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> ProjectEventLogStorage:
        return cls(str(config_value["base_dir"]), inst_data)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                import sqlalchemy
                from sqlalchemy.pool import QueuePool

                engine = sqlalchemy.create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=QueuePool,
                    pool_size=1,  # kept open between writes
                    max_overflow=KEPT_OVERFLOW,
                    # handed from thread to thread by the pool, never used by two at once
                    connect_args={
                        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                        "check_same_thread": False,
                    },
                )
                sqlalchemy.event.listen(engine, "connect", _no_flush_per_commit)
            self._engines[shard] = engine  # the most recently used last
            # a long-lived process (the UI) reads many runs: keep the index and a few runs
            while len(self._engines) > KEPT_ENGINES:
                oldest = next(name for name in self._engines if name != INDEX_SHARD_NAME)
                self._engines.pop(oldest).dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # as the parent's, with the engine kept: the lock orders writers in this process
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                if shard != INDEX_SHARD_NAME:
                    self._new_run_file(shard)
                self._initdb(engine)
                self._initialized_dbs.add(shard)
                # a connection opened before the file was in WAL mode kept the default
                # synchronous: the next one, opened now, gets NORMAL
                engine.dispose()
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        # Dagster's own creates the tables and stamps the schema's revision in a file that has
        # no revision yet, and leaves any other file as it is; to find that out it loads every
        # migration script of its schema (about 90 modules, each time). A stamped file is left
        # as it is without that.
        if not _stamped(engine):
            super()._initdb(engine, for_index_shard)

    def _new_run_file(self, shard: str) -> None:
        """A run's new file, as a copy of an empty one Dagster made (tables created and stamped
        by its own code, once per schema): the copy is already stamped, so no migration script
        is loaded for it. A file that exists is left as it is, and so is one another process
        (the UI, say) creates meanwhile: the copy is linked into place only where no file is.
        On any failure the file is left for Dagster's own code to make."""
        path = Path(self.path_for_shard(shard))
        if path.exists() or not self._copying:
            return
        empty = self._empty_run_file(path.parent)
        if empty is None:
            return
        staged = _staged_name(path)
        try:
            _durable_copy(empty, staged)
            with contextlib.suppress(FileExistsError):  # made meanwhile: that one stays
                os.link(staged, path)
                fsync_directory(path.parent)
        except OSError as exc:  # Dagster's own makes the file
            self._empty_checked = None  # gone (deleted by hand, say): made again next time
            if isinstance(exc, PermissionError) or exc.errno in _NO_LINKS:
                self._copying = False  # no hard links here: not tried again by this process
        finally:
            staged.unlink(missing_ok=True)

    def _empty_run_file(self, folder: Path) -> Path | None:
        """The empty run file of the installed Dagster's schema in ``folder``: tables created
        and stamped by Dagster's own code, made once per schema (named by Dagster's version and
        its migration scripts, so an install that gained a migration makes another). None
        when it cannot be made here."""
        from dagster.version import __version__

        empty = folder / f".empty-run-{__version__}-{_schema_mark()}.db"
        if (self._empty_checked == empty and empty.is_file()) or _stamped_file(empty):
            self._empty_checked = empty
            return empty
        staged = _staged_name(empty)
        try:
            engine = _engine_for(staged)
            try:
                SqliteEventLogStorage._initdb(self, engine)
            finally:
                engine.dispose()  # the last connection gone, the WAL is merged into the file
            if not _stamped_file(staged):
                return None
            _flush_to_disk(staged)
            staged.replace(empty)
            fsync_directory(folder)
        except Exception:  # any failure: Dagster's own code makes each run's file
            _log.debug("no empty run file made in %s", folder, exc_info=True)
            return None
        finally:
            for leftover in (staged, Path(f"{staged}-wal"), Path(f"{staged}-shm")):
                leftover.unlink(missing_ok=True)
        self._empty_checked = empty
        for other in folder.glob(".empty-run-*.db"):  # another schema's (an earlier Dagster)
            if other != empty:
                with contextlib.suppress(OSError):
                    other.unlink()
        return empty

    def _present_or(self, kind: str, name: str, probe: Callable[[str], bool]) -> bool:
        if (kind, name) in self._present:
            return True
        found = probe(name)
        if found:
            self._present.add((kind, name))
        return found

    def has_table(self, table_name: str) -> bool:
        return self._present_or("table", table_name, super().has_table)

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._present_or("asset key column", column_name, super().has_asset_key_col)

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        # the same probe on a connection already open (each asset event stored asks it)
        probe = super()._has_asset_key_col_on_connection
        return self._present_or("asset key column", column_name, lambda name: probe(conn, name))

    def has_secondary_index(self, name: str) -> bool:
        return self._present_or("migration", name, super().has_secondary_index)

    def _dispose_engines(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        # the run files go: no kept connection may hold the deleted ones open
        self._dispose_engines()
        self._empty_checked = None
        try:
            super().wipe()
        finally:
            self._present.clear()  # every answer is asked again

    def dispose(self) -> None:
        super().dispose()  # stops the watcher first: no write comes after
        self._dispose_engines()


def _staged_name(path: Path) -> Path:
    """A hidden name beside ``path``, this process's and thread's alone (Dagster lists runs by
    `*.db`, which no hidden name matches)."""
    unique = f"{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}"
    return path.with_name(f".{path.name}.{unique}")


def _durable_copy(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` and flushed to disk (a rename or link of it must never
    survive a power loss without its content)."""
    import shutil

    shutil.copyfile(source, target)
    _flush_to_disk(target)


def _flush_to_disk(path: Path) -> None:
    with path.open("rb+") as written:
        os.fsync(written.fileno())


@functools.lru_cache(maxsize=1)
def _schema_mark() -> str:
    """A short digest of the names of Dagster's migration scripts (its schema's revisions) and
    of SQLAlchemy's version (which writes the tables' DDL)."""
    import hashlib

    import dagster._core.storage as storage
    import sqlalchemy

    try:
        folder = Path(storage.__file__).parent / "alembic" / "versions"
        names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".py"))
    except OSError:
        names = []
    names.append(f"sqlalchemy {sqlalchemy.__version__}")
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def _engine_for(path: Path) -> Engine:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(f"sqlite:///{path}", poolclass=NullPool)


def _stamped(engine: Engine) -> bool:
    """Whether the file has a schema revision (Dagster's own stamp): its tables exist."""
    import sqlalchemy

    try:
        with engine.connect() as conn:
            row = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).first()
    except sqlalchemy.exc.DatabaseError:  # no such table (a new file), or not a database
        return False
    return row is not None and bool(row[0])


def _stamped_file(path: Path) -> bool:
    """Whether ``path`` is a whole stamped file on its own (no write-ahead log beside it), read
    without writing anything beside it."""
    import sqlite3

    if Path(f"{path}-wal").exists() or not path.is_file():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        ) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and bool(row[0])


def _no_flush_per_commit(connection: Any, _record: Any) -> None:
    """Each new SQLite connection to a file in WAL mode (all of Dagster's are, once created):
    commits do not wait for the disk. A file not in WAL mode yet keeps the default."""
    cursor = connection.cursor()
    try:
        (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
