"""The poll journal: frames (one poll as a line of JSON) appended to numbered segment files.

Framing is pure (:func:`encode`); :class:`Journal` is the file I/O. See docs/journal.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from headlined.poll.tables import Poll

SUFFIX = ".jsonl"
_BLOCK = 64 * 1024  # how far back repair() reads at a time


def encode(poll: Poll, number: int) -> bytes:
    """One poll as a frame: a line of JSON ending in a newline. ``number`` orders frames."""
    s = poll.summary
    gap = poll.gap
    frame = {
        "n": number,
        "source": s.source,
        "started_at": s.started_at,
        "duration_ms": s.duration_ms,
        "http_status": s.http_status,
        "fetched": s.fetched,
        "overlap": s.overlap,
        "next_interval_s": s.next_interval_s,
        "error": s.error,
        "attempts": s.attempts,
        "seen_at": poll.seen_at,
        "gap": None
        if gap is None
        else {
            "last_seen_key": gap.last_seen_key,
            "first_new_key": gap.first_new_key,
            "est_missing": gap.est_missing,
        },
        "state": poll.state,
        "new": [{"k": r.key, "t": r.time, "p": r.payload} for r in poll.new],
    }
    try:
        # orjson writes NaN and infinities (only the stdlib parser lets them in) as null.
        return orjson.dumps(frame, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits, or a lone surrogate ("\ud800" in the body): valid for
        # Python's json, not for orjson, and DuckDB stores no unpaired surrogate at all.
        text = json.dumps(_storable(frame), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8", "replace") + b"\n"


def _storable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class Segment:
    """A closed segment file, waiting to be applied."""

    number: int
    path: Path
    polls: int
    """The frames (polls) it holds."""


def directory_in(state_dir: Path) -> Path:
    """The journal's directory under the daemon's state directory."""
    return state_dir / "journal"


def segment_path(directory: Path, number: int) -> Path:
    """Where segment ``number`` lives (names sort in number order)."""
    return directory / f"{number:016d}{SUFFIX}"


def existing(directory: Path) -> list[tuple[int, Path]]:
    """Segment files on disk, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        (int(p.stem), p)
        for p in directory.iterdir()
        if p.suffix == SUFFIX and p.stem.isdigit() and p.is_file()
    ]
    return sorted(found)


def repair(path: Path) -> int:
    """Cut a frame that a crash left half-written off the end of ``path``; bytes removed.

    Such a frame was never committed: the poll that wrote it had not been told so.
    """
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end, keep = size, 0
        while end > 0:
            start = max(0, end - _BLOCK)
            f.seek(start)
            cut = f.read(end - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        if keep == size:
            return 0
        f.truncate(keep)
        os.fsync(f.fileno())
        return size - keep


class Journal:
    """Appends frames to numbered segment files.

    ``append`` and ``rotate`` run on the event loop: a frame is a small write into the page
    cache, safe from then on against a crash of this process. Making it safe against a power
    cut (``fdatasync``) can take a disk's time, so that is a job, handed to a thread by the
    caller: ``sync_job`` and the job ``rotate`` returns. Run them on one thread, in order.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._next = 1
        self._fd: int | None = None
        self._number = 0
        self._polls = 0
        self._size = 0
        self._new_name = False  # the open segment's name is not yet durable

    @property
    def open_polls(self) -> int:
        """Frames in the segment being written."""
        return self._polls if self._fd is not None else 0

    @property
    def open_bytes(self) -> int:
        """Bytes in the segment being written."""
        return self._size if self._fd is not None else 0

    def start_after(self, number: int) -> None:
        """New segments are numbered above ``number`` and above every file on disk."""
        self.directory.mkdir(parents=True, exist_ok=True)
        on_disk = existing(self.directory)
        self._next = max([number, *(n for n, _ in on_disk)]) + 1

    def append(self, frame: bytes) -> None:
        """Write one frame (one ``write``: O_APPEND, so a frame is never interleaved)."""
        fd = self._fd if self._fd is not None else self._open()
        view = memoryview(frame)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # A full disk, say: take back what part of the frame went in, so the frames
            # that follow once there is room are not glued to half of this one.
            os.ftruncate(fd, self._size)
            raise
        self._size += len(frame)
        self._polls += 1

    def sync_job(self) -> Callable[[], None]:
        """A blocking job that makes every frame appended so far durable."""
        fd, new_name = self._fd, self._new_name
        self._new_name = False
        directory = self.directory
        return lambda: _sync(fd, directory if new_name else None)

    def rotate(self) -> tuple[Segment, Callable[[], None]] | None:
        """Stop writing to the current segment: it, and a blocking job that syncs and closes it.

        None if nothing was written since the last rotation.
        """
        fd = self._fd
        if fd is None:
            return None
        sync = self.sync_job()
        self._fd = None
        segment = Segment(self._number, segment_path(self.directory, self._number), self._polls)

        def sync_and_close() -> None:
            try:
                sync()
            finally:
                os.close(fd)

        return segment, sync_and_close

    def _open(self) -> int:
        self._number, self._next = self._next, self._next + 1
        path = segment_path(self.directory, self._number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._fd, self._polls, self._size, self._new_name = fd, 0, 0, True
        return fd


def _sync(fd: int | None, directory: Path | None) -> None:
    if fd is not None:
        os.fdatasync(fd)
    if directory is not None:
        # A new segment's name must survive a power cut too, not only its bytes.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
