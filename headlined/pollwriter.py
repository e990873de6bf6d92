"""Group commit of polls: several sources' polls share one DuckDB transaction.

Polls that arrive within ``linger`` seconds are committed together: still all-or-nothing per
poll (a transaction never holds part of a poll), with a handful of statements per batch
instead of per poll.
"""

from __future__ import annotations

import asyncio

from headlined import logs
from headlined.pollstore import Poll, commit_polls
from headlined.store import Store

log = logs.get("pollwriter")


class PollWriter:
    """Collects polls for ``linger`` seconds and commits them together on the store thread."""

    def __init__(self, store: Store, linger: float = 0.25) -> None:
        self._store = store
        self._linger = linger
        self._queue: asyncio.Queue[Poll | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the commit loop."""
        self._task = asyncio.create_task(self._loop(), name="pollwriter")

    async def submit(self, poll: Poll) -> int:
        """Queue a poll; return how many records it added once it is committed."""
        if self._closing:
            raise RuntimeError("poll writer is closed")
        self._queue.put_nowait(poll)
        # Shielded: a poller cancelled at shutdown must not cancel a commit in flight.
        return await asyncio.shield(poll.done)

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return  # close() was called and everything queued before it is committed
            if not self._closing:
                await asyncio.sleep(self._linger)
            batch = [first]
            closing = False
            while not self._queue.empty():
                poll = self._queue.get_nowait()
                if poll is None:
                    closing = True
                else:
                    batch.append(poll)
            await self._commit(batch)
            if closing:
                return

    async def _commit(self, batch: list[Poll]) -> None:
        try:
            counts = await self._store.call(lambda conn: commit_polls(conn, batch))
        except Exception as exc:
            log.error("commit_failed", polls=len(batch), error=repr(exc), exc_info=exc)
            for poll in batch:
                if not poll.done.done():
                    poll.done.set_exception(exc)
            return
        for poll, count in zip(batch, counts, strict=True):
            if not poll.done.done():
                poll.done.set_result(count)

    async def close(self) -> None:
        """Commit everything queued (what was fetched is never dropped), then stop."""
        self._closing = True
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
