"""Commits polls to the journal at once, and applies the journal to DuckDB in bulk.

:class:`PollWriter`: ``submit`` (the commit), ``sync`` (apply now), recovery at start. See
docs/journal.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from headlined import logs
from headlined.poll import journal
from headlined.poll.journal import Journal, Segment
from headlined.poll.tables import Poll, apply_segment, journal_applied
from headlined.store import Store

log = logs.get("pollwriter")

T = TypeVar("T")

SYNC_EVERY_S = 1.0  # a power cut loses at most this much of the journal (a gap then shows it)
APPLY_EVERY_S = 60.0  # a segment waits at most this long before DuckDB gets it
APPLY_RECORDS = 20_000  # ... or until it holds this many records
APPLY_BYTES = 32 << 20  # ... or this many bytes
APPLY_ATTEMPTS = 3  # a segment DuckDB cannot read this often is set aside for a person


class PollWriter:
    """The journal and its application to DuckDB, for every source."""

    def __init__(
        self,
        store: Store,
        directory: Path,
        *,
        apply_every: float = APPLY_EVERY_S,
        sync_every: float = SYNC_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._journal = Journal(directory)
        self._apply_every = apply_every
        self._sync_every = sync_every
        self._clock = clock
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._queue: list[Segment] = []  # closed segments, oldest first
        self._failures: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._closed = False
        self._number = 0
        self._first_at: float | None = None  # when the open segment got its first frame
        self._records = 0
        self._unsynced_at: float | None = None  # the oldest frame not yet fdatasync-ed
        self._syncing = False
        self._last_applied: float | None = None  # wall-clock time
        self._set_aside = 0

    @property
    def directory(self) -> Path:
        """Where the segment files are."""
        return self._journal.directory

    def snapshot(self) -> dict[str, object]:
        """What ``headlined status`` shows of the journal."""
        return {
            "waiting_polls": self._journal.open_polls + sum(s.polls for s in self._queue),
            "last_applied": self._last_applied,
            "set_aside": self._set_aside,
            "failed_dir": str(self.directory / "failed"),
        }

    async def start(self) -> None:
        """Apply what a previous run left in the journal, then start the apply loop."""
        applied = await self._store.call(journal_applied)
        left = await self._in_thread(lambda: _leftovers(self._journal, applied))
        self._queue.extend(left)
        if left:
            log.info("journal_recovering", segments=len(left), dir=str(self.directory))
        await self.sync()
        self._started = True
        self._task = asyncio.create_task(self._loop(), name="pollwriter")

    def submit(self, poll: Poll) -> int:
        """Commit a poll; return how many new records it brought."""
        if self._closing or not self._started:
            raise RuntimeError("poll writer is not running")
        self._number += 1
        self._journal.append(journal.encode(poll, self._number))
        now = self._clock()
        if self._first_at is None:
            self._first_at = now
        if self._unsynced_at is None:
            self._unsynced_at = now
        self._records += len(poll.new)
        if self._apply_due(now) or self._sync_due(now):
            self._wake.set()
        return len(poll.new)

    async def sync(self) -> None:
        """Apply every committed poll to DuckDB now (after close: nothing left to do)."""
        if self._closed:
            return
        async with self._lock:
            rotated = self._journal.rotate()
            self._first_at, self._records = None, 0
            self._unsynced_at = None
            if rotated is not None:
                segment, close = rotated
                try:
                    await self._in_thread(close)
                except OSError as exc:
                    # Still in the page cache: DuckDB can read it, and then it is safe.
                    log.error("journal_sync_failed", error=repr(exc), segment=str(segment.path))
                self._queue.append(segment)
            while self._queue:
                if not await self._apply(self._queue[0]):
                    return
                self._queue.pop(0)

    async def close(self) -> None:
        """Apply everything committed (what was fetched is never dropped), then stop."""
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
        try:
            await self.sync()
        finally:
            self._closed = True  # what close() could not apply waits for the next start
            self._thread.shutdown(wait=True)

    def _apply_due(self, now: float) -> bool:
        if self._first_at is None:
            return False
        return (
            now - self._first_at >= self._apply_every
            or self._records >= APPLY_RECORDS
            or self._journal.open_bytes >= APPLY_BYTES
        )

    def _sync_due(self, now: float) -> bool:
        return (
            self._unsynced_at is not None
            and not self._syncing
            and now - self._unsynced_at >= self._sync_every
        )

    def _next_due(self) -> float | None:
        times = []
        if self._first_at is not None:
            times.append(self._first_at + self._apply_every)
        if self._unsynced_at is not None:
            times.append(self._unsynced_at + self._sync_every)
        return min(times) - self._clock() if times else None

    async def _loop(self) -> None:
        while not self._closing:
            wait = self._next_due()
            try:
                async with asyncio.timeout(None if wait is None else max(0.0, wait)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            now = self._clock()
            try:
                if self._apply_due(now):
                    await self.sync()
                elif self._sync_due(now):
                    await self._fdatasync()
            except Exception as exc:
                # Deleting or setting aside a segment failed (its file system, surely): what
                # is queued stays queued for the next sync (the Parquet copy's, at the
                # latest), and polling goes on regardless.
                log.error("journal_step_failed", error=repr(exc), exc_info=exc)

    async def _fdatasync(self) -> None:
        self._unsynced_at = None
        self._syncing = True
        try:
            await self._in_thread(self._journal.sync_job())
        except OSError as exc:
            # The frames are still in the page cache and are applied to DuckDB as usual.
            log.error("journal_sync_failed", error=repr(exc), dir=str(self.directory))
        finally:
            self._syncing = False

    async def _apply(self, segment: Segment) -> bool:
        """Apply one segment; False when it must wait (DuckDB refused it, to be retried)."""
        try:
            polls = await self._store.call(
                lambda conn: apply_segment(conn, segment.path, segment.number)
            )
        except FileNotFoundError as exc:
            log.error("journal_segment_missing", segment=str(segment.path), error=repr(exc))
            return True  # someone removed it: nothing left to apply, and nothing to wait for
        except Exception as exc:
            tries = self._failures.get(segment.number, 0) + 1
            self._failures[segment.number] = tries
            # Only a segment DuckDB cannot read is set aside. A full disk, a lock or a bug of
            # ours would refuse every segment alike: those wait, and are retried.
            unreadable = isinstance(exc, duckdb.InvalidInputException | duckdb.ConversionException)
            if tries < APPLY_ATTEMPTS or not unreadable:
                log.error(
                    "journal_apply_failed",
                    segment=str(segment.path),
                    attempt=tries,
                    error=repr(exc),
                    action="kept in the journal and retried; nothing is lost",
                    exc_info=exc,
                )
                return False
            aside = await self._in_thread(lambda: _set_aside(segment.path))
            log.error(
                "journal_segment_set_aside",
                segment=str(aside),
                error=repr(exc),
                action="its polls are not in DuckDB; the file holds them as JSON lines",
                exc_info=exc,
            )
            del self._failures[segment.number]
            self._set_aside += 1
            return True
        self._failures.pop(segment.number, None)
        self._last_applied = time.time()
        log.debug("journal_applied", segment=segment.number, polls=polls)
        try:
            await self._in_thread(lambda: segment.path.unlink(missing_ok=True))
        except OSError as exc:
            # Applied all the same: DuckDB records that, and the next start deletes it.
            log.warning("journal_unlink_failed", segment=str(segment.path), error=repr(exc))
        return True

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)


def _leftovers(journal_: Journal, applied: int) -> list[Segment]:
    """Segments a previous run committed but did not apply; those it did are deleted."""
    journal_.start_after(applied)
    out = []
    for number, path in journal.existing(journal_.directory):
        if number <= applied:
            path.unlink()  # applied, but the run stopped before deleting it
            continue
        cut = journal.repair(path)
        if cut:
            log.warning("journal_torn_frame_dropped", segment=str(path), bytes=cut)
        polls = path.read_bytes().count(b"\n")
        if not polls:
            path.unlink()
            continue
        out.append(Segment(number, path, polls))
    return out


def _set_aside(path: Path) -> Path:
    target = path.parent / "failed" / path.name
    target.parent.mkdir(exist_ok=True)
    path.rename(target)
    return target
