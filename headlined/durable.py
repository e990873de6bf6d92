"""Making a file or a rename survive a power cut: the one way every file is published.

A file is written in full under a temporary name beside its final one, then published: its
data flushed to disk, renamed over the final name (atomic on one file system: a reader sees
the old file or the new one, never half of it), and the directory's entry flushed too.
"""

from __future__ import annotations

import os
import pwd
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


def unwritable(directory: Path, setting: str) -> str | None:
    """Why this process could not create and write files in ``directory``, or None.

    For the common slips (a folder made by root, a parent the service user may not write):
    one line naming the path, the owner and mode it has, and the fix.
    """
    user = _user_name()
    if directory.exists():
        if not directory.is_dir():
            return f"{directory}: not a directory ({setting})"
        if os.access(directory, os.W_OK | os.X_OK):
            return None
        return (
            f"{directory}: not writable by user {user} ({setting}; {_owner_mode(directory)}): "
            f"chown -R {user}: {directory}, or choose another {setting}"
        )
    parent = directory.parent
    while not parent.exists():
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return None
    return (
        f"{directory}: does not exist, and user {user} may not create it in {parent} "
        f"({setting}; {_owner_mode(parent)}): install -d -o {user} {directory}, "
        f"or choose another {setting}"
    )


def _owner_mode(path: Path) -> str:
    info = path.stat()
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    return f"owner {owner}, mode {info.st_mode & 0o7777:04o}"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
