"""Making a file or a rename survive a power cut: the one way every file is published.

A file is written in full under a temporary name beside its final one, then published: its
data flushed to disk, renamed over the final name (atomic on one file system: a reader sees
the old file or the new one, never half of it), and the directory's entry flushed too.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (after a rename into it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary(final: Path) -> Path:
    """The hidden name beside ``final`` that a file is written under before it is published."""
    return final.with_name(f".{final.name}.tmp")


def publish(written: Path, final: Path) -> None:
    """Make the complete, closed file ``written`` appear as ``final``, durably and atomically."""
    fsync(written)
    written.replace(final)
    fsync(final.parent)


def write_atomic(final: Path, data: bytes) -> None:
    """Write ``data`` as ``final``: never visible half-written, durable once this returns."""
    tmp = temporary(final)
    tmp.write_bytes(data)
    publish(tmp, final)
