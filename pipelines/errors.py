"""One error root for the project, with the split callers need to decide what to do next.

A caller catching :class:`SsotError` catches every failure this project raises on purpose.
Warehouse and source errors are either *transient* (retrying may succeed: a dropped
connection, a lock held by another writer) or *terminal* (retrying cannot help: bad SQL,
a missing table, a violated contract).
"""

from __future__ import annotations


class SsotError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(SsotError):
    """A project file (source, model, target) is wrong; the message names the file, key and fix."""


class ModelError(SsotError):
    """A model cannot be rendered, parsed or placed in the graph (missing ref, cycle, bad SQL)."""


class WarehouseError(SsotError):
    """The warehouse refused or failed an operation."""


class TransientWarehouseError(WarehouseError):
    """A warehouse failure that may succeed when retried (lock held, connection dropped)."""


class TerminalWarehouseError(WarehouseError):
    """A warehouse failure that retrying cannot fix (bad SQL, missing object, type mismatch)."""


class WarehouseMemoryError(TerminalWarehouseError):
    """The engine ran out of the memory it was given for an operation."""


class SourceError(SsotError):
    """An operational system could not be read."""


class TransientSourceError(SourceError):
    """A source failure that may succeed when retried (server unreachable, timeout)."""


class TerminalSourceError(SourceError):
    """A source failure that retrying cannot fix (missing table, missing file, bad credentials)."""


class CheckFailedError(SsotError):
    """A blocking data check failed; the message names the asset and the failed checks."""


class ModelsNotPublishedError(SsotError):
    """Some models of a run were refused by a blocking check or failed to build; the message
    lists each one with its reason (the others were published)."""


class LoadCancelledError(SsotError):
    """The run was cancelled while a load was reading: the load stopped at its next batch and
    kept nothing (its transaction rolled back)."""
