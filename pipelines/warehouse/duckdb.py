"""DuckDB backend: the embedded default warehouse, one file on this machine.

The only module (with the BigQuery backend) allowed to import an engine driver; it imports
``duckdb`` lazily so that loading the Dagster definitions stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import glob
import itertools
import math
import os
import re
import shutil
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlglot import exp

from pipelines.atomic import fsync_directory, write_text_atomically
from pipelines.errors import (
    TerminalWarehouseError,
    TransientWarehouseError,
    WarehouseError,
    WarehouseMemoryError,
)
from pipelines.warehouse.base import NativeScan, NativeTable, Relation, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

_TRANSIENT_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


def _quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quoted(relation: Relation) -> str:
    """``"schema"."name"``, for statements written as text."""
    return f"{_quoted_name(relation.schema)}.{_quoted_name(relation.name)}"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_value(value: Any) -> str:
    """A bookkeeping value as a DuckDB literal (written directly: DuckDB plans a statement with
    literals faster than it binds parameters, and these run several times per model)."""
    from datetime import date, datetime
    from decimal import Decimal

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'::DOUBLE"  # inf, nan
    if isinstance(value, datetime):
        return f"{_text(value.isoformat())}::TIMESTAMPTZ"
    if isinstance(value, date):
        return f"{_text(value.isoformat())}::DATE"
    if isinstance(value, str | Decimal):
        return _text(str(value))
    raise TypeError(f"no SQL literal for a {type(value).__name__} bookkeeping value: {value!r}")


def _map_error(exc: Exception, sql: str) -> WarehouseError:
    """One place where DuckDB's exceptions become transient or terminal project errors."""
    import duckdb

    message = str(exc)
    snippet = " ".join(sql.split())[:300]
    cls: type[WarehouseError] = (
        TransientWarehouseError
        if any(marker in message.lower() for marker in _TRANSIENT_MARKERS)
        else TerminalWarehouseError
    )
    if isinstance(exc, duckdb.OutOfMemoryException) or message.startswith("Out of Memory"):
        cls = WarehouseMemoryError
    return cls(f"DuckDB: {message.strip()}\n  while running: {snippet}")


#: the open writing session of each database file in this process. DuckDB would let a second
#: connection of the same process write the same file; this backend refuses it, so that what a
#: session remembers of the file (schemas and relations known to exist) cannot go stale.
_WRITERS: weakref.WeakValueDictionary[str, DuckDBWarehouse] = weakref.WeakValueDictionary()


def _claim_writer(path: Path, session: DuckDBWarehouse) -> str:
    key = str(path.resolve())
    if _WRITERS.get(key) is not None:
        raise TerminalWarehouseError(
            f"DuckDB: {path} is already open for writing in this process; close that session "
            "first (one writing session per file)"
        )
    _WRITERS[key] = session
    return key


#: the stretch of file compared at a time when a spare copy is brought up to date
_SYNC_CHUNK = 4 << 20
#: threads comparing stretches at once (memory bandwidth, not cores, bounds it)
_SYNC_THREADS = 2

#: the stretch of a build file asked for at a time by :func:`read_ahead`: the kernel reads
#: little more than its own read-ahead window per request, so a request for the whole file at
#: once brought in an eighth of it
_READ_AHEAD_CHUNK = 4 << 20
#: the largest share of the memory the kernel says is available that a build file may take
#: and still be read ahead (a bigger one would push out what the run itself needs)
READ_AHEAD_SHARE = 0.5


def _available_memory() -> int | None:
    """Bytes the kernel says are available for new work without swapping (Linux), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


#: path -> (the thread reading it ahead, the event that stops it): a session opening that file
#: stops and waits for it first (see :func:`read_ahead`)
_READING_AHEAD: dict[str, tuple[threading.Thread, threading.Event]] = {}
_READING_AHEAD_LOCK = threading.Lock()


def read_ahead(path: Path) -> threading.Thread | None:
    """Have the kernel read the build file ``path`` into the page cache, in the background;
    the thread asking for it, or None when it is not asked (no such file, no way to ask, the
    file would take more than ``READ_AHEAD_SHARE`` of the available memory, or a session of
    this process writes it).

    The thread has the file open while it asks. DuckDB keeps others out of a file with a POSIX
    record lock, which a process loses when it closes *any* descriptor of that file; so a
    session opening ``path`` first stops the thread and waits for it (it stops within one
    request), and no file a session of this process writes is read ahead. Call it before
    opening the file.

    A run reads much of its build file (the tables its models merge into and read), and its
    publish hashes all of it. A day later the file has left the page cache; read on demand,
    its pages came in one small read at a time while the run waited: 0.8-1.6 s of a 15 s
    incremental run at scale 100 (1.9 GB, about 1 GB/s from disk here). Asked for at the
    start of the command, the reads overlap the imports and the project's checks (the
    kernel reads at about the pace the requests are made, so a 1.9 GB file is asked for
    within a second, before the run opens it). It is a hint: a failure is ignored, and only
    a session opening the file waits, for the request in progress.
    """
    advise = getattr(os, "posix_fadvise", None)
    available = _available_memory()
    try:
        size = path.stat().st_size
        key = str(path.resolve())
    except OSError:
        return None
    if advise is None or available is None or not 0 < size <= READ_AHEAD_SHARE * available:
        return None
    stop = threading.Event()

    def ask() -> None:
        with contextlib.suppress(OSError):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                for offset in range(0, size, _READ_AHEAD_CHUNK):
                    if stop.is_set():
                        break
                    advise(descriptor, offset, _READ_AHEAD_CHUNK, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(descriptor)

    with _READING_AHEAD_LOCK:
        if key in _WRITERS or key in _READING_AHEAD:  # open for writing here, or being read
            return None
        thread = threading.Thread(target=ask, name="ssot-read-ahead", daemon=True)
        _READING_AHEAD[key] = (thread, stop)
        thread.start()
    return thread


def _stop_reading_ahead(path: str) -> None:
    """Stop reading ``path`` ahead and wait until that thread's descriptor is closed (before a
    session opens it and takes DuckDB's lock, which closing a descriptor would release)."""
    if path == ":memory:":
        return
    with contextlib.suppress(OSError):
        path = str(Path(path).resolve())
    with _READING_AHEAD_LOCK:
        reading = _READING_AHEAD.pop(path, None)
    if reading is not None:
        thread, stop = reading
        stop.set()
        thread.join()


#: A table is compacted (rewritten without its deleted rows) at the end of a run once at least
#: this share of its stored rows are deleted ones, as PostgreSQL's autovacuum waits for a share
#: of dead tuples. DuckDB's own vacuum runs at every checkpoint and rewrites every row group
#: holding a deleted row that it can merge: for the few percent of rows an incremental run
#: replaces (delete + insert) all over a table, that rewrote the whole table each day, 1.1 s of
#: a 1.8 s checkpoint at scale 100, the same again when left to every other day. Per table,
#: a mart replacing a tenth of its rows a day is rewritten every other day and a fact table
#: replacing 1 % every three weeks or so; readers skip the deleted rows meanwhile.
COMPACT_DEAD_SHARE = 0.2
COMPACT_MIN_ROWS = 122_880  # one row group: a smaller table costs little to read either way


#: whether a file already holds a stretch of the build file: (index, offset, address of the
#: stretch in memory, length, its digest) -> bool
_Unchanged = Callable[[int, int, int, int, bytes], bool]


def _write_stretches(build: Path, out: int, size: int, unchanged: _Unchanged | None) -> list[bytes]:
    """Hash each stretch of ``build`` (its first ``size`` bytes) and write it into the file
    open as ``out`` unless ``unchanged`` says that file holds it already (None: write every
    one); the digests of all the stretches, in order."""
    import ctypes
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import xxhash

    stretches = -(-size // _SYNC_CHUNK)
    digests = [b""] * stretches
    if size == 0:
        return digests
    with (
        build.open("rb") as source,
        mmap.mmap(source.fileno(), size, access=mmap.ACCESS_READ) as new,
    ):
        with contextlib.suppress(AttributeError, OSError):  # a hint only
            new.madvise(mmap.MADV_SEQUENTIAL)
        wanted = np.frombuffer(new, dtype=np.uint8)
        try:
            at_new = wanted.ctypes.data

            def sync(first: int) -> None:
                # every _SYNC_THREADS-th stretch from the first-th; hashing, memcmp and pwrite
                # release the GIL; xxh3 hashes about 10 GB/s. The stretch is hashed through its
                # address: a view of the map kept by an error's traceback would keep the map
                # from closing (BufferError instead of the error)
                for index in range(first, stretches, _SYNC_THREADS):
                    start = index * _SYNC_CHUNK
                    end = min(start + _SYNC_CHUNK, size)
                    stretch = (ctypes.c_char * (end - start)).from_address(at_new + start)
                    digests[index] = xxhash.xxh3_128_digest(stretch)
                    if unchanged is None or not unchanged(
                        index, start, at_new + start, end - start, digests[index]
                    ):
                        _pwrite_all(out, new[start:end], start)

            # two threads: 0.07 s against 0.13 s for 1.9 GB in the page cache
            with ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="ssot-spare") as pool:
                for done in [pool.submit(sync, i) for i in range(_SYNC_THREADS)]:
                    done.result()
        finally:
            del wanted  # the map closes only once no array views it
    return digests


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset``: a write may stop short (a full disk, a file size
    limit) without an error, and a digest record must never cover bytes that are not there."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, f"no byte written at offset {offset}")
        view, offset = view[written:], offset + written


def _copy_with_digests(build: Path, copy: Path) -> tuple[list[bytes], os.stat_result]:
    """Write ``copy`` as a durable copy of ``build``; the digests of its stretches, with its
    status once flushed (what a digest record of it needs)."""
    size = build.stat().st_size
    with copy.open("wb") as out:
        digests = _write_stretches(build, out.fileno(), size, None)
        # a record may describe only what a power loss cannot take back
        os.fdatasync(out.fileno())
        status = os.fstat(out.fileno())
    if status.st_size != size:
        raise OSError(errno.EIO, f"{copy} holds {status.st_size} bytes of {size}")
    return digests, status


def _remove_stale_copies(target: Path) -> None:
    """Remove the partial copies a publish that died left beside ``target`` (named with its
    process id); those of another process still running are left alone. One named with this
    process's id is a leftover too: the publishes of a file in one process take turns, and
    an earlier process may have had the same id (ids repeat in containers)."""
    for prefix in (f".{target.name}.publishing-", f".{target.name}.spare-"):
        for leftover in target.parent.glob(f"{glob.escape(prefix)}*"):
            pid = leftover.name.removeprefix(prefix)
            if re.fullmatch(r"[0-9]{1,9}", pid) is None:
                continue  # not a name a publish gives
            if int(pid) != os.getpid():
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    pass  # gone: its copy is a leftover
                except (OSError, OverflowError):
                    continue  # it runs, as another user, or cannot be a process
                else:
                    continue  # it runs
            leftover.unlink(missing_ok=True)


def _refresh_spare(
    build: Path,
    spare: Path,
    known: Sequence[bytes] | None = None,
    identity: tuple[int, int, int, int] | None = None,
) -> tuple[list[bytes], os.stat_result] | None:
    """Make ``spare`` (the file readers saw before the last publish) equal to ``build`` by
    rewriting only the stretches that differ; the digests of its stretches once it does. None
    when there is no spare or a process still has it open (a DuckDB reader's lock, or any
    descriptor of it), and it was left alone.

    An incremental run changes a small part of the file: comparing the two and writing the
    difference took 0.4 s for 2 GB, where a full copy took 3.4 s for 2.7 GB. ``known``, the
    digests of the spare's stretches as the publish that wrote them recorded them, spares
    reading the spare at all: each stretch of the build file is hashed and rewritten where its
    digest differs. The spare is then seldom in the page cache (it was last touched a day
    before), and reading it cost 1.2 s of the 2.6-3.3 s the comparison took on such a day
    (1.9 GB). They are used only if the spare, once locked, still has the ``identity`` (inode,
    size, modification and change times) they were recorded for. Nobody opens the spare by
    its name, so once it is ours no reader can appear. Returns the digests with the spare's
    status once flushed, taken under the lock.
    """
    import mmap

    import numpy as np

    try:
        import fcntl

        ofd_setlk = fcntl.F_OFD_SETLK
    except (ImportError, AttributeError):
        return None  # no open-file-description locks (only Linux has them): always copy
    if not spare.exists() or _open_elsewhere(spare):
        return None
    size = build.stat().st_size
    with spare.open("r+b") as out:
        # An open-file-description lock conflicts with DuckDB's record locks even when the
        # reader is in this very process (a process never conflicts with its own record locks).
        try:
            fcntl.fcntl(out.fileno(), ofd_setlk, _whole_file_lock(fcntl.F_WRLCK))
        except OSError:
            return None  # a reader of the previous version: leave it, copy instead
        try:
            if known is not None and _identity(os.fstat(out.fileno())) != identity:
                known = None  # written since its digests were recorded: compare the bytes
            os.ftruncate(out.fileno(), size)
            if known is not None:
                recorded = known

                def same_digest(
                    index: int, start: int, at: int, length: int, digest: bytes
                ) -> bool:
                    return index < len(recorded) and recorded[index] == digest

                digests = _write_stretches(build, out.fileno(), size, same_digest)
            elif size == 0:
                digests = []
            else:
                # compared by libc's memcmp, read ahead in order: half the time of comparing
                # numpy views (0.37 s against 0.78 s for 2 GB in the page cache)
                with mmap.mmap(out.fileno(), size, access=mmap.ACCESS_READ) as old:
                    with contextlib.suppress(AttributeError, OSError):  # a hint only
                        old.madvise(mmap.MADV_SEQUENTIAL)
                    held = np.frombuffer(old, dtype=np.uint8)
                    try:
                        at_old = held.ctypes.data

                        def same_bytes(
                            index: int, start: int, at: int, length: int, digest: bytes
                        ) -> bool:
                            return not _memcmp(at, at_old + start, length)

                        digests = _write_stretches(build, out.fileno(), size, same_bytes)
                    finally:
                        del held  # the map closes only once no array views it
            # a rename does not order earlier writes to an existing file: flush them first, so
            # a power loss cannot leave a published file mixing two versions
            os.fdatasync(out.fileno())
            return digests, os.fstat(out.fileno())
        finally:
            fcntl.fcntl(out.fileno(), ofd_setlk, _whole_file_lock(fcntl.F_UNLCK))


#: what the digests of a copy's stretches are, so digests made otherwise are never compared
_DIGESTS_KIND = "xxh3_128"


def _digests_path(target: Path) -> Path:
    """Where the digests of the published file's and the spare's stretches are kept."""
    return target.with_name(f".{target.name}.digests")


def _read_digests(store: Path) -> dict[str, Any]:
    """inode -> {size, mtime_ns, ctime_ns, digests} as the last publish recorded them ({} when
    there is no record, or one made with another stretch size or hash)."""
    import json

    try:
        data = json.loads(store.read_text())
        if data.get("kind") != _DIGESTS_KIND or data.get("stretch") != _SYNC_CHUNK:
            return {}
        files = data["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What a digest record names its file by: inode, size, modification and change times (a
    write changes both times, and no tool sets the change time back)."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _digests_of(
    recorded: Mapping[str, Any], path: Path
) -> tuple[list[bytes], tuple[int, int, int, int]] | None:
    """The recorded digests of ``path`` as it is now, with its identity: None unless a record
    names the file's inode, size, modification and change times."""
    try:
        identity = _identity(path.stat())
        entry = recorded[str(identity[0])]
        if (entry["size"], entry["mtime_ns"], entry["ctime_ns"]) != identity[1:]:
            return None
        return [bytes.fromhex(digest) for digest in entry["digests"]], identity
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _digest_entry(
    path: Path, digests: Sequence[bytes], content: tuple[int, int, int]
) -> tuple[str, dict[str, Any]]:
    """The record of ``path``'s digests, made only while it still holds the content they were
    taken from: the same inode, size and modification time (``content``) as then. A rename
    or a link since changes only its change time, which the record takes as it is now."""
    stat = path.stat()
    if _identity(stat)[:3] != content:
        raise OSError(f"{path} was written since its digests were taken")
    return str(stat.st_ino), {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "digests": [digest.hex() for digest in digests],
    }


def _write_digests(store: Path, files: Mapping[str, Any]) -> None:
    """Record the digests (atomically; losing them only means the next publish compares the
    files byte by byte)."""
    import json

    record = {"kind": _DIGESTS_KIND, "stretch": _SYNC_CHUNK, "files": dict(files)}
    write_text_atomically(store, json.dumps(record), durable=True)


def _memcmp(a: int, b: int, size: int) -> int:
    """libc's memcmp of ``size`` bytes at two addresses (0: equal)."""
    return int(_libc_memcmp()(a, b, size))


@functools.cache
def _libc_memcmp() -> Any:
    import ctypes

    memcmp = ctypes.CDLL(None).memcmp
    memcmp.restype = ctypes.c_int
    memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


def _whole_file_lock(kind: int) -> bytes:
    """A ``struct flock`` (l_type, l_whence, l_start, l_len, l_pid) over the whole file; an
    open-file-description lock needs l_pid 0."""
    return struct.pack("hhqqi", kind, os.SEEK_SET, 0, 0, 0)


def _open_elsewhere(path: Path) -> bool:
    """Whether any process has ``path`` open (Linux: /proc; True when it cannot tell).

    The lock alone is not enough: a process's record locks go away when it closes any of its
    descriptors of the file, while its DuckDB connection may still be reading it.
    """
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return True
    target = path.stat()
    for fd_dir in proc.glob("[0-9]*/fd"):
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue  # gone, or not ours to read
        for entry in entries:
            try:
                found = entry.stat()
            except OSError:
                continue
            if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                return True
    return False


class DuckDBWarehouse(Warehouse):
    """A read-write session on a DuckDB database file (or ``:memory:``).

    ``compress_text``: text columns may be FSST-compressed, as DuckDB does by default; a
    project's DuckDB target passes its own `compress_text`, off unless it says so."""

    dialect: ClassVar[str] = "duckdb"
    supports_transactions: ClassVar[bool] = True
    row_hash_type: ClassVar[str] = "UBIGINT"
    # One row group: a landing batch of 122,880 rows fills one, and landed 5 M rows from
    # PostgreSQL about 17 % faster and with a third less memory than 50,000-row batches.
    landing_batch_rows: ClassVar[int] = 122_880
    row_id_column: ClassVar[str | None] = "rowid"
    #: the session a builder session was opened from (see :meth:`builders`)
    _parent: DuckDBWarehouse | None = None

    def __init__(
        self,
        path: Path | str,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        read_only: bool = False,
        publish_to: Path | str | None = None,
        builders: int = 1,
        compress_text: bool = True,
    ) -> None:
        import duckdb

        self._path = str(path)
        self._builders = max(1, builders)
        self._publish_to = Path(publish_to) if publish_to is not None else None
        self._writing: str | None = None
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            if (
                self._publish_to is not None
                and not Path(self._path).exists()
                and self._publish_to.exists()
            ):
                # No build file yet beside a published one (a warehouse from before the split,
                # or a lost build file): carry on from what readers see, nothing is rebuilt.
                shutil.copyfile(self._publish_to, self._path)
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._memory_limit = memory_limit
        if self._path != ":memory:" and not read_only:
            self._writing = _claim_writer(Path(self._path), self)
        try:
            _stop_reading_ahead(self._path)  # its descriptor's close would drop DuckDB's lock
            self._con = duckdb.connect(self._path, read_only=read_only, config=config)
        except BaseException as exc:
            self._release_writer()
            if isinstance(exc, duckdb.Error):
                raise _map_error(exc, f"open {self._path}") from exc
            raise
        self._start_session()
        # A load appends in many small commits; with DuckDB's default 16 MB threshold every few
        # of them would checkpoint (rewrite) the file, which made landing about twice as slow.
        # Data not yet checkpointed stays in memory, so the threshold also bounds a load's memory.
        self._con.execute("SET checkpoint_threshold = '256MB'")
        if not read_only:
            # compacting is for the publish to decide, per table (see COMPACT_DEAD_SHARE)
            self._con.execute("SET max_vacuum_tasks = 0")
            if not compress_text:
                # what checkpoints write from now on (the target's `compress_text`): neither
                # FSST nor the dictionary of FSST strings newer storage versions have
                self._con.execute("SET disabled_compression_methods = 'fsst,dict_fsst'")
        self._counter = itertools.count()
        #: the sessions of :meth:`builders` open on this one's database
        self._siblings: list[DuckDBWarehouse] = []
        #: the database's memory bound (memory_for_increments), shared with the siblings:
        #: the bound in MB while it holds, and how many whole builds have it lifted now
        self._memory_lock = threading.Lock()
        self._memory_bound: int | None = None
        self._whole_builds = 0

    def _start_session(self) -> None:
        """The state of a new connection: its settings and what it knows."""
        # Every timestamp the project handles is UTC; casts between TIMESTAMPTZ and TIMESTAMP
        # must not depend on the machine's zone.
        self._con.execute("SET TimeZone = 'UTC'")
        self._in_transaction = False
        #: schemas known to exist (committed) in this session
        self._schemas: set[str] = set()
        #: relations known to exist: committed, and seen inside the open transaction (kept on
        #: commit, forgotten on rollback). Only existence is remembered, never absence; a
        #: DROP TABLE or VIEW forgets what it names, any other DROP or ALTER everything
        #: (:meth:`_forget`). This process is the file's only writer, and a builder session
        #: (see :meth:`builders`) drops only what its own model owns.
        self._known: set[Relation] = set()
        self._known_pending: set[Relation] = set()

    @property
    def location(self) -> str:
        return self._path

    @contextmanager
    def builders(self) -> Iterator[list[Warehouse]]:
        # More connections to the same database: each has its own transactions, and DuckDB
        # runs their statements at once (a model's serial parts, its commit, its small
        # statements, overlap the other's scans). Their tables differ; the bookkeeping rows
        # they replace differ too (one model's each), which DuckDB's row-level conflict
        # check allows.
        extra: list[DuckDBWarehouse] = []
        try:
            with self.exclusive:
                for _ in range(self._builders - 1):
                    extra.append(self._sibling())
            yield [self, *extra]
        finally:
            _close_all(extra)

    def _sibling(self) -> DuckDBWarehouse:
        """Another session on this one's database (closed with it, never published)."""
        sibling = object.__new__(type(self))
        sibling._path = self._path
        sibling._publish_to = None
        sibling._writing = None
        sibling._builders = 1
        sibling._memory_limit = self._memory_limit
        sibling._counter = self._counter  # registered Arrow names stay unique
        sibling._siblings = []
        sibling._con = self._con.cursor()
        try:
            sibling._start_session()
        except BaseException:
            sibling._con.close()
            raise
        self._siblings.append(sibling)
        sibling._parent = self
        return sibling

    def close(self) -> None:
        with self.exclusive:
            try:
                try:
                    self._close_siblings()  # each finishes what it is running first
                finally:
                    self._con.close()
            finally:
                self._release_writer()
                parent = self._parent
                if parent is not None and self in parent._siblings:
                    parent._siblings.remove(self)

    def _close_siblings(self) -> None:
        """Close every builder session, each once its build is done."""
        _close_all(list(self._siblings))

    def _release_writer(self) -> None:
        if self._writing is not None and _WRITERS.get(self._writing) is self:
            del _WRITERS[self._writing]
        self._writing = None

    def publish(self) -> str | None:
        """Make everything committed visible to readers, then close the session.

        DuckDB lets one process write a file and nobody else open it meanwhile, so readers
        never open the file a run writes: they open the published copy (``publish_to``). The
        build file is checkpointed and closed, copied beside the published file and renamed
        over it in one step; a reader that has the old copy open keeps reading it, the next
        one opens the new copy, and nobody sees a half-written file.
        """
        with self.exclusive:  # a models worker still building finishes its model first
            if self._publish_to is None or self._path == ":memory:":
                self.close()
                return None
            import duckdb

            try:
                self._close_siblings()  # a builder still building finishes its model first
                self._abandon_transaction()  # one left open by an error cannot block it
                self._compacted: list[Relation] = []
                self._compact_failure: str | None = None
                try:
                    self.compact(self._compacted)
                except (duckdb.Error, WarehouseError) as exc:
                    # compacting only saves space and reading time: the run's work is
                    # published all the same (the failed table's rewrite was rolled back)
                    self._compact_failure = str(exc)
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise _map_error(exc, "CHECKPOINT") from exc
            finally:
                self.close()
        target = self._publish_to
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.publishing-{os.getpid()}")
        spare = target.with_name(f".{target.name}.spare")
        retiring = target.with_name(f".{target.name}.retiring")
        staged_spare = target.with_name(f".{target.name}.spare-{os.getpid()}")
        store = _digests_path(target)
        recorded = _read_digests(store)
        spare_record = _digests_of(recorded, spare)
        with contextlib.suppress(OSError):
            _remove_stale_copies(target)
        try:
            # No fsync of the copy: it is derived (the build file is the truth, and the next run
            # publishes again), and the fsync tripled the cost (2.6 GB: 3.1 s -> 8.7 s here).
            # The rename is atomic for readers either way.
            retiring.unlink(missing_ok=True)
            if store.exists():
                # the spare is about to change: the record goes first, for good (a power loss
                # while it is rewritten must not leave a record that no longer describes it)
                store.unlink(missing_ok=True)
                fsync_directory(target.parent)
            existed = target.exists()
            target_record = _digests_of(recorded, target) if existed else None
            refreshed = _refresh_spare(
                Path(self._path),
                spare,
                *(spare_record if spare_record is not None else (None, None)),
            )
            fresh = spare if refreshed is not None else partial
            if fresh is partial:
                shutil.copyfile(self._path, partial)
            linked = False
            if existed:
                with contextlib.suppress(OSError):  # no hard links here: no spare next time
                    os.link(target, retiring)
                    linked = True
            fresh.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TerminalWarehouseError(
                f"cannot publish {self._path} to {target}: {exc}; the build file is intact, "
                "the next run publishes again"
            ) from exc
        # Published. The spare for the next publish is a convenience: failing to keep one
        # (no room for a copy, say) only means the next publish copies the whole file.
        copied: tuple[list[bytes], os.stat_result] | None = None
        try:
            if linked:
                retiring.replace(spare)  # what readers saw until now: the next spare
            elif not existed:
                # the first publish prepares the spare, with its digests, so the next publish
                # need not read it; written beside it and renamed over it: a reader may still
                # hold the file of that name (a published copy someone removed since)
                copied = _copy_with_digests(Path(self._path), staged_spare)
                staged_spare.replace(spare)
        except OSError:
            copied = None
            for leftover in (retiring, spare):
                leftover.unlink(missing_ok=True)
        finally:
            with contextlib.suppress(OSError):  # renamed into place unless the copy failed
                staged_spare.unlink(missing_ok=True)
        # the digests of both copies, for the next publish (which rewrites the spare): of the
        # one just brought up to date, and of the one readers saw until now
        files: dict[str, Any] = {}
        held: list[tuple[Path, list[bytes], tuple[int, int, int]]] = []
        if refreshed is not None:
            held.append((target, refreshed[0], _identity(refreshed[1])[:3]))
        if linked and target_record is not None:
            held.append((spare, target_record[0], target_record[1][:3]))
        if copied is not None:
            held.append((spare, copied[0], _identity(copied[1])[:3]))
        for path, digests, content in held:
            with contextlib.suppress(OSError):  # not recorded: compared byte by byte then
                files.update([_digest_entry(path, digests, content)])
        if files:
            with contextlib.suppress(OSError):
                _write_digests(store, files)
        fsync_directory(target.parent)
        return str(target)

    def dead_rows(self) -> dict[Relation, tuple[int, int]]:
        """relation -> (rows stored, deleted rows among them), for each table of at least
        ``COMPACT_MIN_ROWS`` stored rows without constraints or indexes (DuckDB keeps deleted
        rows until a table is rewritten; a rewrite by CREATE TABLE AS would drop those)."""
        stored = self._con.execute(
            "SELECT t.schema_name, t.table_name, t.estimated_size FROM duckdb_tables() AS t "
            "WHERE t.database_name = current_database() AND NOT t.temporary "
            f"AND t.estimated_size >= {COMPACT_MIN_ROWS} "
            "AND t.table_oid NOT IN (SELECT table_oid FROM duckdb_constraints()) "
            "AND t.table_oid NOT IN (SELECT table_oid FROM duckdb_indexes())"
        ).fetchall()
        if not stored:
            return {}
        relations = [Relation(schema, name) for schema, name, _ in stored]
        # live counts come from each row group's delete information: no column is read
        live = self._con.execute(
            "SELECT " + ", ".join(f"(SELECT count(*) FROM {_quoted(r)})" for r in relations)
        ).fetchone()
        assert live is not None
        return {
            relation: (int(total), int(total) - int(count))
            for relation, (_, _, total), count in zip(relations, stored, live, strict=True)
        }

    def compact(self, done: list[Relation]) -> None:
        """Rewrite each table holding at least ``COMPACT_DEAD_SHARE`` deleted rows without
        them (rows in the same order, the table's comment kept), one commit per table; each
        table rewritten is added to ``done`` (the ones before a failure too)."""
        due = [
            relation
            for relation, (total, dead) in self.dead_rows().items()
            if dead >= COMPACT_DEAD_SHARE * total
        ]
        for relation in due:
            (comment,) = self._con.execute(
                "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
                f"AND schema_name = {_text(relation.schema)} AND table_name = {_text(relation.name)}"
            ).fetchone() or (None,)
            with self.transaction():
                self.execute(
                    f"CREATE OR REPLACE TABLE {_quoted(relation)} AS SELECT * FROM {_quoted(relation)}"
                )
                if comment:
                    self.execute(f"COMMENT ON TABLE {_quoted(relation)} IS {_text(comment)}")
            done.append(relation)

    # -- SQL ----------------------------------------------------------------------------------
    def execute(self, sql: exp.Expression | str) -> None:
        import duckdb

        text = self.render(sql)
        if text.lstrip()[:5].upper() in ("DROP ", "ALTER"):
            self._forget(sql)
        try:
            self._con.execute(text)
        except duckdb.Error as exc:
            raise _map_error(exc, text) from exc

    def _forget(self, statement: exp.Expression | str) -> None:
        """Forget the relations a DROP or ALTER may remove: those a DROP TABLE or VIEW names
        (a run drops its scratch tables dozens of times, and forgetting every relation then
        asked DESCRIBE again about the bookkeeping tables: about 100 times a demo day), else
        every one (a DROP SCHEMA, a rename)."""
        dropped = (
            statement.args.get("tables")
            if isinstance(statement, exp.Drop)
            and str(statement.args.get("kind") or "").upper() in ("TABLE", "VIEW")
            else None
        )
        names = {Relation(t.db, t.name).folded for t in dropped or ()}
        if not names or any(not schema for schema, _ in names):
            self._known.clear()
            self._known_pending.clear()
            return
        for known in (self._known, self._known_pending):
            known -= {r for r in known if r.folded in names}

    def query(self, sql: exp.Expression | str) -> pa.Table:
        import duckdb

        text = self.render(sql)
        try:
            return self._con.execute(text).to_arrow_table()
        except duckdb.Error as exc:
            raise _map_error(exc, text) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._in_transaction:  # nested: the outer transaction decides
            yield
            return
        self.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            self._known_pending.clear()
            self._abandon_transaction()
            raise
        self._in_transaction = False
        try:
            self.execute("COMMIT")
            self._known |= self._known_pending
        except BaseException:
            self._abandon_transaction()  # a failed COMMIT can leave it open (and aborted)
            raise
        finally:
            self._known_pending.clear()

    def _abandon_transaction(self) -> None:
        """Roll back whatever transaction is still open (none: nothing happens)."""
        import duckdb

        with contextlib.suppress(duckdb.Error):
            self._con.execute("ROLLBACK")

    # -- objects ------------------------------------------------------------------------------
    def ensure_schema(self, schema: str) -> None:
        if schema in self._schemas:
            return
        self.execute(
            exp.Create(this=exp.to_identifier(schema, quoted=True), kind="SCHEMA", exists=True)
        )
        if not self._in_transaction:  # a rollback would undo it
            self._schemas.add(schema)

    def _info_schema_filter(self, relation: Relation) -> exp.Condition:
        return exp.and_(
            exp.column("table_schema").eq(exp.Literal.string(relation.schema)),
            exp.column("table_name").eq(exp.Literal.string(relation.name)),
        )

    def _run(self, text: str) -> list[tuple[Any, ...]]:
        """A statement of the backend's own bookkeeping, written as text (no sqlglot round
        trip: these run several times per model)."""
        import duckdb

        try:
            return self._con.execute(text).fetchall()
        except duckdb.Error as exc:
            raise _map_error(exc, text) from exc

    def _describe(self, relation: Relation) -> list[tuple[str, str]] | None:
        """(name, type) of the relation's columns by DESCRIBE (a catalog lookup, about ten times
        faster than information_schema); None when it does not bind (missing, or a view whose
        tables are gone). A catalog error does not abort the open transaction."""
        import duckdb

        try:
            rows = self._con.execute(f"DESCRIBE {_quoted(relation)}").fetchall()
        except (duckdb.CatalogException, duckdb.BinderException):
            return None
        except duckdb.Error as exc:
            raise _map_error(exc, f"DESCRIBE {relation}") from exc
        return [(str(row[0]), str(row[1])) for row in rows]

    def exists(self, relation: Relation) -> bool:
        if relation in self._known or relation in self._known_pending:
            return True
        # DESCRIBE fails only for a missing relation or a view whose tables are gone
        found = self._describe(relation) is not None or self.is_view(relation)
        if found:
            (self._known_pending if self._in_transaction else self._known).add(relation)
        return found

    def is_view(self, relation: Relation) -> bool:
        # duckdb_views() holds only views: much smaller (and faster) than information_schema
        rows = self._run(
            "SELECT count(*) FROM duckdb_views() "
            f"WHERE schema_name = {_text(relation.schema)} AND view_name = {_text(relation.name)}"
        )
        return bool(rows[0][0])

    def columns(self, relation: Relation) -> list[tuple[str, str]]:
        described = self._describe(relation)
        if described is not None:
            return described
        query = (
            exp.select("column_name", "data_type")
            .from_(exp.table_("columns", db="information_schema"))
            .where(self._info_schema_filter(relation))
            .order_by("ordinal_position")
        )
        rows = self.query(query).to_pylist()
        return [(row["column_name"], row["data_type"]) for row in rows]

    def annotate(self, relation: Relation, description: str, labels: Mapping[str, str]) -> None:
        # DuckDB keeps a comment per table or view (duckdb_tables().comment); labels go into it
        text = description + (
            "\n" + ", ".join(f"{k}={v}" if v else k for k, v in sorted(labels.items()))
            if labels
            else ""
        )
        kind = "VIEW" if self.is_view(relation) else "TABLE"
        self._run(f"COMMENT ON {kind} {_quoted(relation)} IS {_text(text)}")

    def insert_rows(
        self, relation: Relation, schema: pa.Schema, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        if not self.exists(relation):
            if _column_types(schema) is None:
                super().insert_rows(relation, schema, rows)  # DuckDB reads the types itself
                return
            self.replace_from_arrow(relation, schema, ())  # DDL: the table with its types
        names = ", ".join(_quoted_name(name) for name in schema.names)
        values = ", ".join(
            "(" + ", ".join(_sql_value(row.get(name)) for name in schema.names) + ")"
            for row in rows
        )
        self._run(f"INSERT INTO {_quoted(relation)} ({names}) VALUES {values}")

    def replace_rows(
        self, relation: Relation, schema: pa.Schema, key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if rows and self.exists(relation):
            keys = ", ".join(_sql_value(row[key]) for row in rows)
            self._run(f"DELETE FROM {_quoted(relation)} WHERE {_quoted_name(key)} IN ({keys})")
        self.insert_rows(relation, schema, rows)

    def release_cache(self) -> None:
        # DuckDB keeps the pages a load wrote in its buffer pool (up to memory_limit, 80 % of
        # RAM by default), so a load of millions of rows would hold them all. Lowering the
        # limit for a moment evicts them (they are on disk); the limit then goes back.
        self._limit_memory(32)  # nothing evictable enough: it keeps going
        self._restore_memory_limit()

    @contextmanager
    def memory_for_increments(self) -> Iterator[None]:
        # DuckDB keeps every block it reads in its buffer pool, up to memory_limit (80 % of RAM
        # by default). Increments read a few rows of each big table, spread over most of its
        # blocks, once: on a scale-100 demo day the pool grew by about 1.1 GB, every page of
        # it fresh memory the kernel zeroes on first touch (on this project's virtual
        # machines, where the host backs freed memory again, 5-20 us a page). A bounded pool
        # evicts what was read and uses its memory again.
        root = self._parent or self
        threads = int(self._run("SELECT current_setting('threads')")[0][0])
        ceiling = _megabytes(str(self._run("SELECT current_setting('memory_limit')")[0][0]))
        bound = max(INCREMENT_MEMORY_MIN_MB, INCREMENT_MEMORY_PER_THREAD_MB * threads)
        if bound >= ceiling:  # the session's own limit is smaller: nothing to bound
            yield
            return
        with root._memory_lock:
            root._memory_bound = bound
            if not root._whole_builds:
                self._limit_memory(bound)
        try:
            yield
        finally:
            with root._memory_lock:
                root._memory_bound = None
                if not root._whole_builds:
                    with contextlib.suppress(WarehouseError):
                        self._restore_memory_limit()

    @contextmanager
    def memory_for_whole_build(self) -> Iterator[None]:
        root = self._parent or self
        with root._memory_lock:
            if not root._whole_builds and root._memory_bound is not None:
                self._restore_memory_limit()  # counted only once lifted
            root._whole_builds += 1
        try:
            yield
        finally:
            with root._memory_lock:
                root._whole_builds -= 1
                if not root._whole_builds and root._memory_bound is not None:
                    self._limit_memory(root._memory_bound)

    def memory_bounded(self) -> bool:
        root = self._parent or self
        with root._memory_lock:
            return root._memory_bound is not None and not root._whole_builds

    def _limit_memory(self, megabytes: int) -> None:
        """Lower the buffer pool to ``megabytes``; when DuckDB cannot (other work holds more
        than that now), the work goes on with the limit it had: the bound saves time, it is
        not needed for anything to be right."""
        import duckdb

        with contextlib.suppress(duckdb.Error):
            self._con.execute(f"SET memory_limit = '{megabytes}MB'")

    def _restore_memory_limit(self) -> None:
        """Back to the session's configured memory limit (DuckDB's default when none)."""
        if self._memory_limit:
            self._run(f"SET memory_limit = {_text(self._memory_limit)}")
        else:
            self._run("RESET memory_limit")

    # -- reading operational databases directly ------------------------------------------------
    def reads_natively(self, kind: str) -> bool:
        return scanner_available(kind)

    @contextmanager
    def native_table(self, source: NativeTable) -> Iterator[NativeScan]:
        # The scanner reads the source with parallel connections straight into this file's
        # row groups. Two settings hold only while it is attached: insertion order is not kept
        # (raw's rows have no order; keeping it serializes the writers) and the buffer pool is
        # capped, so that what a load wrote is evicted as it goes (it is on disk) and memory
        # stays flat however big the table. DuckDB names the source's URL (password included)
        # in its connection errors: every error raised while attached is scrubbed of it.
        import duckdb

        from pipelines.urls import scrub

        if self._in_transaction:
            raise TerminalWarehouseError("a source is attached outside a transaction")
        alias = f"_ssot_source_{next(self._counter)}"
        ordered = self._run("SELECT current_setting('preserve_insertion_order')")[0][0]
        ceiling = _megabytes(str(self._run("SELECT current_setting('memory_limit')")[0][0]))
        try:
            try:
                _attach_source(self._con, source.kind, source.url, alias)
                table = exp.table_(exp.to_identifier(source.identifier, quoted=True), db=alias)
                columns = [
                    (str(row[0]), str(row[1]))
                    for row in self._run(f"DESCRIBE SELECT * FROM {self.render(table)}")
                ]
                row_bytes = self._row_bytes(table, columns)
                cap = self._native_memory(row_bytes, ceiling)
                self._run("SET preserve_insertion_order = false")
                self._run(f"SET memory_limit = '{cap}MB'")
                yield NativeScan(table, columns, row_bytes)
            except WarehouseError as exc:
                raise type(exc)(scrub(str(exc), source.url)) from None
        finally:
            with contextlib.suppress(duckdb.Error):
                self._con.execute(f"SET preserve_insertion_order = {str(bool(ordered)).lower()}")
            with contextlib.suppress(WarehouseError):
                self._restore_memory_limit()
            with contextlib.suppress(duckdb.Error):
                self._con.execute(f"DETACH {alias}")

    def _row_bytes(self, table: exp.Table, columns: list[tuple[str, str]]) -> int:
        return _row_bytes(self._run, self.render(table), columns)

    @staticmethod
    def _native_memory(row_bytes: int, ceiling: int) -> int:
        """The buffer pool (MB) a native load gets: NATIVE_LOAD_MEMORY_MB, more for wide rows
        (each writer thread fills whole row groups, which for rows of kilobytes do not fit in
        it), never more than the session's own limit (``ceiling``, MB)."""
        wanted = max(NATIVE_LOAD_MEMORY_MB, math.ceil(row_bytes / 1024) * NATIVE_MEMORY_PER_KB_MB)
        return max(1, min(wanted, ceiling))

    def widens_losslessly(self, source_type: str, target_type: str) -> bool:
        source_type, target_type = source_type.upper(), target_type.upper()
        if source_type == target_type:
            return source_type in _EXACT_TYPES or _decimal(source_type) is not None
        if target_type in _WIDER_THAN:
            return source_type in _WIDER_THAN[target_type]
        low, high = _decimal(source_type), _decimal(target_type)
        # same scale, at least as many digits before the point
        return (
            low is not None
            and high is not None
            and low[1] == high[1]
            and low[0] - low[1] <= high[0] - high[1]
        )

    def query_batches(self, sql: exp.Expression | str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        import duckdb
        import pyarrow as pa

        text = self.render(sql)
        try:
            reader = self._con.execute(text).to_arrow_reader(batch_rows)
            yield from reader
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            # an error after the first batch surfaces through Arrow's reader, not as duckdb.Error
            raise _map_error(exc, text) from exc

    def row_count(self, relation: Relation) -> int:
        return int(self._run(f"SELECT count(*) FROM {_quoted(relation)}")[0][0])

    def execute_dml(self, statement: exp.Expression) -> int:
        # DuckDB answers UPDATE/DELETE/MERGE with one row holding the number of rows touched.
        result = self.query(statement)
        return int(result.column(0)[0].as_py()) if result.num_rows and result.num_columns else 0

    def insert_select(self, relation: Relation, columns: Sequence[str], select: exp.Query) -> int:
        # DuckDB answers an INSERT with one row holding the number of rows it inserted.
        return int(self.scalar(self._insert(relation, columns, select)) or 0)

    def row_hash(self, columns: Sequence[exp.Expression]) -> exp.Expression:
        # DuckDB's hash() combines any number of values of any type, NULLs included.
        return exp.Anonymous(this="hash", expressions=list(columns))

    # -- Arrow landing ------------------------------------------------------------------------
    def _arrow_view_name(self) -> str:
        return f"__ssot_arrow_{next(self._counter)}"

    @contextmanager
    def arrow_source(
        self, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[exp.Table]:
        import pyarrow as pa

        failure: list[BaseException] = []

        def watched() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as exc:  # re-raised below as itself, not as a DuckDB error
                failure.append(exc)
                raise

        view = self._arrow_view_name()
        self._con.register(view, pa.RecordBatchReader.from_batches(schema, watched()))
        try:
            yield exp.table_(exp.to_identifier(view, quoted=True))
        except WarehouseError:
            if failure:  # the batches' producer failed (a source error): that is the error
                raise failure[0] from None
            raise
        finally:
            self._con.unregister(view)

    def replace_from_arrow(
        self, relation: Relation, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> int:
        written = 0

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal written
            for batch in batches:
                written += batch.num_rows
                yield batch

        self.ensure_schema(relation.schema)
        columns = (
            _column_types(schema) if isinstance(batches, tuple | list) and not batches else None
        )
        if columns is not None:
            # No rows: plain DDL. Scanning Arrow would do too, but DuckDB's first Arrow scan in
            # a process imports pyarrow.dataset and pandas (about 0.25 s).
            self._run(f"CREATE OR REPLACE TABLE {_quoted(relation)} ({columns})")
            return 0
        with self.arrow_source(schema, counted()) as source:
            self.execute(
                exp.Create(
                    this=relation.to_table(),
                    kind="TABLE",
                    replace=True,
                    expression=exp.select("*").from_(source),
                )
            )
        return written

    def append_arrow(
        self, relation: Relation, table: pa.Table, *, add_columns: bool = False
    ) -> int:
        view = self._arrow_view_name()
        self.ensure_schema(relation.schema)
        self._con.register(view, table)
        try:
            source = exp.select("*").from_(exp.to_identifier(view, quoted=True))
            if self.exists(relation):
                if add_columns:
                    present = {name for name, _ in self.columns(relation)}
                    incoming = self.query(exp.Describe(this=source))
                    for name, kind in zip(
                        incoming.column("column_name").to_pylist(),
                        incoming.column("column_type").to_pylist(),
                        strict=True,
                    ):
                        if name not in present:
                            self.add_column(relation, name, kind)
                names = [exp.to_identifier(name, quoted=True) for name in table.column_names]
                self.execute(
                    exp.Insert(
                        this=exp.Schema(this=relation.to_table(), expressions=names),
                        expression=source,
                    )
                )
            else:
                self.execute(exp.Create(this=relation.to_table(), kind="TABLE", expression=source))
        finally:
            self._con.unregister(view)
        return int(table.num_rows)


def _close_all(sessions: Iterable[DuckDBWarehouse]) -> None:
    """Close every one of ``sessions``; the first error, if any, once all are closed."""
    first: BaseException | None = None
    for session in sessions:
        try:
            session.close()
        except BaseException as exc:
            first = first or exc
    if first is not None:
        raise first


def _column_types(schema: pa.Schema) -> str | None:
    """``name TYPE, ...`` of the table DuckDB makes of ``schema``'s Arrow types (None when a
    type is not one this knows; DuckDB then reads the schema itself)."""
    import pyarrow as pa

    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
    }
    parts = []
    for field in schema:
        t = field.type
        if t in simple:
            name = simple[t]
        elif pa.types.is_timestamp(t) and t.unit == "us":
            name = "TIMESTAMP WITH TIME ZONE" if t.tz is not None else "TIMESTAMP"
        elif pa.types.is_decimal128(t):
            name = f"DECIMAL({t.precision},{t.scale})"
        else:
            return None
        parts.append(f"{exp.to_identifier(field.name, quoted=True).sql('duckdb')} {name}")
    return ", ".join(parts)


#: the most bytes (about) of one Arrow batch read by a SourceScanner
ARROW_BATCH_BYTES = 64 << 20
#: DuckDB's buffer pool while a source is attached for a native load (see native_table), in
#: MB: NATIVE_MEMORY_PER_KB_MB per started KB of row (the widest rows of a sample), at least
#: NATIVE_LOAD_MEMORY_MB (so rows up to 2 KB get 128 MB). Measured: 10 KB rows fail at 128 MB
#: and land at 256 MB, faster at 512 MB; 1 KB rows land at 128 MB.
NATIVE_LOAD_MEMORY_MB = 128
NATIVE_MEMORY_PER_KB_MB = 64
NATIVE_WIDTH_SAMPLE_ROWS = 2048
#: DuckDB's buffer pool while a models step builds increments (see memory_for_increments), in
#: MB: INCREMENT_MEMORY_PER_THREAD_MB per DuckDB thread, at least INCREMENT_MEMORY_MIN_MB,
#: never more than the session's own limit. A scale-100 demo day builds within 700 MB and
#: 400 MB alike on 2 threads.
INCREMENT_MEMORY_PER_THREAD_MB = 256
INCREMENT_MEMORY_MIN_MB = 768


def _row_bytes(
    run: Callable[[str], list[tuple[Any, ...]]], rows_sql: str, columns: list[tuple[str, str]]
) -> int:
    """Bytes of a wide row of ``rows_sql`` (a table or a parenthesized query): the 99th
    percentile over its first rows (a LIMIT read, a few milliseconds), text and blobs at their
    length, other values at 16."""
    size = {"VARCHAR": "strlen", "BLOB": "octet_length"}  # bytes, both
    texts = [(name, size[type_]) for name, type_ in columns if type_ in size]
    width = 16 * (len(columns) - len(texts))
    if texts:
        lengths = " + ".join(f"coalesce({fn}({_quoted_name(n)}), 0)" for n, fn in texts)
        inner = ", ".join(_quoted_name(n) for n, _ in texts)
        sample = run(
            f"SELECT quantile_cont({lengths}, 0.99) FROM (SELECT {inner} FROM {rows_sql} "
            f"LIMIT {NATIVE_WIDTH_SAMPLE_ROWS})"
        )
        width += int(sample[0][0] or 0)
    return width


def _megabytes(setting: str) -> int:
    """DuckDB's memory_limit setting ('18.8 GiB', '122.0 MiB', '16383.9 PiB' when unlimited)
    in MB (10^6 bytes, the unit of ``SET memory_limit = '...MB'``); a text it does not read
    counts as no limit."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGTPE]?)(i?)B\s*", setting, flags=re.IGNORECASE)
    if match is None:
        return _NO_LIMIT_MB
    base = 1024 if match[3] else 1000
    power = "KMGTPE".find(match[2].upper()) + 1 if match[2] else 0
    return min(_NO_LIMIT_MB, int(float(match[1]) * base**power / 10**6))


_NO_LIMIT_MB = 2**40


#: types a native load takes as they are (their values are what the source contract keeps)
_EXACT_TYPES = frozenset(
    {"BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "DATE", "TIMESTAMP WITH TIME ZONE"}
)
#: target type: the narrower source types whose every value it holds exactly
_WIDER_THAN = {
    "BIGINT": frozenset({"TINYINT", "SMALLINT", "INTEGER"}),
    "DOUBLE": frozenset({"FLOAT"}),
}


def _decimal(type_: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"DECIMAL\((\d+),\s*(\d+)\)", type_)
    return (int(match[1]), int(match[2])) if match else None


# ---------------------------------------------------------------------------------------------
# DuckDB as a reader of operational databases.
#
# DuckDB's postgres/mysql/sqlite scanner extensions read a source table in parallel straight
# into Arrow, several times faster than a DB-API cursor. Extraction stays engine-neutral at its
# interface (Arrow batches that go through the contract and on to any warehouse); only the
# reading borrows DuckDB, so the import stays in this module. The extensions come from their
# PyPI wheels (nothing is downloaded at run time).

_SCANNERS = {
    # kind: (wheel package, file name inside the wheel, name DuckDB loads it by)
    "postgres": ("duckdb_extension_postgres", "postgres", "postgres_scanner"),
    "mysql": ("duckdb_extension_mysql", "mysql", "mysql_scanner"),
    "sqlite": ("duckdb_extension_sqlite", "sqlite", "sqlite_scanner"),
}
_installed: dict[str, Path] = {}
_installed_lock = threading.Lock()


def _extension_file(kind: str) -> Path | None:
    """The scanner extension shipped in its wheel for this DuckDB version, if installed."""
    import importlib.util

    import duckdb

    package, stem, _ = _SCANNERS[kind]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{stem}.duckdb_extension"
    return path if path.is_file() else None


def scanner_available(kind: str) -> bool:
    return kind in _SCANNERS and _extension_file(kind) is not None


def _scanner_extension(kind: str) -> Path:
    """The scanner extension's file, under the name DuckDB loads it by (copied once per process
    to a private folder: the wheel's file is named after the extension's short name)."""
    import tempfile

    source_file = _extension_file(kind)
    if source_file is None:
        raise TerminalWarehouseError(f"the DuckDB {kind} scanner extension is not installed")
    _, _, name = _SCANNERS[kind]
    # Loads run side by side: a second one must not load the copy the first is still writing
    # (DuckDB then refused it as "not a DuckDB extension"), so the copy is made under a lock
    # and handed out only once it is whole.
    with _installed_lock:
        if kind not in _installed:
            folder = Path(tempfile.mkdtemp(prefix="ssot-duckdb-ext-"))
            try:
                shutil.copyfile(source_file, folder / f"{name}.duckdb_extension")
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            if not _installed:
                atexit.register(remove_scanner_copies)
            _installed[kind] = folder
        return _installed[kind] / f"{name}.duckdb_extension"


def remove_scanner_copies() -> None:
    """Remove the copies of the scanner extensions this process made (at its exit: each is
    about 40 MB, and every run reading a server's tables natively left one in the temporary
    folder). A connection that loaded one keeps it loaded; a later load copies it again."""
    with _installed_lock:
        while _installed:
            _, folder = _installed.popitem()
            shutil.rmtree(folder, ignore_errors=True)


def _attach_source(con: Any, kind: str, url: str, alias: str) -> None:
    """Load the ``kind`` scanner into the DuckDB connection ``con`` and attach the database at
    ``url`` read-only as ``alias``. The URL holds credentials: the error names no statement."""
    import duckdb

    load = f"LOAD {_text(str(_scanner_extension(kind)))}"
    try:
        con.execute(load)
    except duckdb.Error as exc:
        raise _map_error(exc, load) from None
    try:
        con.execute(f"ATTACH {_text(url)} AS {alias} (TYPE {kind}, READ_ONLY)")
    except duckdb.Error as exc:
        raise _map_error(exc, f"ATTACH <{kind} source>") from None


class SourceScanner:
    """One DuckDB in-memory session attached read-only to an operational database."""

    def __init__(self, kind: str, url: str, *, threads: int | None = None) -> None:
        import duckdb

        extension = _scanner_extension(kind)
        config: dict[str, Any] = {"extension_directory": str(extension.parent / "installed")}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(":memory:", config=config)
        self._con.execute("SET TimeZone = 'UTC'")
        try:
            _attach_source(self._con, kind, url, "src")
        except WarehouseError:
            self._con.close()
            raise
        self.kind = kind

    def close(self) -> None:
        self._con.close()

    def table_batches(self, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every row of ``table``, scanned in parallel."""
        query = exp.select("*").from_(exp.table_(exp.to_identifier(table, quoted=True), db="src"))
        yield from self._stream(query.sql(dialect="duckdb"), batch_rows, bounded=True)

    def query_batches(self, source_sql: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The rows of a query written in the source's own dialect (run by the source)."""
        function = f"{self.kind}_query"
        sql = f"SELECT * FROM {function}('src', {exp.Literal.string(source_sql).sql(dialect='duckdb')})"
        yield from self._stream(sql, batch_rows)

    def _stream(
        self, sql: str, batch_rows: int, *, bounded: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """``bounded``: batches of at most about ARROW_BATCH_BYTES, from the width of the first
        rows (rows of kilobytes would make batches of a gigabyte at the row count a warehouse
        asks for). Only for a whole table, whose first rows come at once; a source query (an
        incremental pull) could scan much of its table before its first rows."""
        import duckdb
        import pyarrow as pa

        def run(text: str) -> list[tuple[Any, ...]]:
            return self._con.execute(text).fetchall()

        try:
            rows = batch_rows
            if bounded:
                columns = [(str(r[0]), str(r[1])) for r in run(f"DESCRIBE {sql}")]
                width = _row_bytes(run, f"({sql})", columns)
                rows = max(1024, min(batch_rows, ARROW_BATCH_BYTES // max(1, width)))
            reader = self._con.execute(sql).to_arrow_reader(rows)
            yield from reader
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            # an error after the first batch surfaces through Arrow's reader, not as duckdb.Error
            raise _map_error(exc, sql) from None
