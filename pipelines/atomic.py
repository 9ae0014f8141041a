"""Files replaced whole: a reader (or a crash) sees the old content or the new, never half."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to a file beside ``path`` and rename it over ``path``.

    ``durable``: flush the new content to disk before the rename, for a file whose loss after
    a power cut matters more than the fsync's few milliseconds. A failed write leaves
    ``path`` as it was and no staged file behind.
    """
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with staged.open("w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        staged.replace(path)
    finally:
        staged.unlink(missing_ok=True)


def fsync_directory(folder: Path) -> None:
    """Make the renames, links and removals in ``folder`` durable."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
