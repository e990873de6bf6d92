"""The polling side of the daemon: the pollers, the journal writer, the Parquet copy.

A service of the daemon (start, reconfigure, shutdown). See docs/poller.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from headlined import config, logs
from headlined.control import Handler
from headlined.poll import fetch, journal
from headlined.poll.compact import Compactor
from headlined.poll.parquet import flush_messages
from headlined.poll.poller import SourcePoller
from headlined.poll.rejects import RejectSampler
from headlined.poll.tables import restore, save_states
from headlined.poll.writer import PollWriter
from headlined.store import Store
from headlined.supervisor import Heartbeat, Supervisor

log = logs.get("pollservice")

FLUSH_DEADLINE_S = 600.0
# Merging closed days after a flush stops starting new partitions after this long (one
# partition, a day of a busy feed, takes seconds); the rest waits for the next flush.
COMPACT_BUDGET_S = 10.0


class PollService:
    """Runs every configured source and keeps Parquet copies of what they capture."""

    def __init__(self, loaded: config.Loaded, store: Store) -> None:
        self._config = loaded.config
        self._store = store
        self._writer = PollWriter(store, journal.directory_in(loaded.config.state_dir))
        self._rejects = RejectSampler(loaded.config.state_dir / "rejected")
        self._client = fetch.client()
        self._supervisor: Supervisor | None = None
        self.pollers: dict[str, SourcePoller] = {}
        self._flush_lock = asyncio.Lock()
        self._compactor: Compactor | None = None
        self._last_flush: float | None = None
        self._flush_error: str | None = None  # the failing flush's error, said once
        self._days_merged = 0  # by compactors of earlier parquet_dirs (a reload moved it)
        self._merge_failures = 0

    async def start(self, supervisor: Supervisor) -> None:
        """Restore every source from the database and start polling."""
        self._supervisor = supervisor
        await self._writer.start()
        for source in self._config.sources:
            await self._add(source)
        supervisor.add("parquet-flush", self._flush_loop, deadline=FLUSH_DEADLINE_S)

    @property
    def _sup(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("PollService used before start()")
        return self._supervisor

    async def _add(self, source: config.SourceConfig) -> None:
        poller = SourcePoller(source, self._client, self._writer, self._rejects)
        restored = await self._store.call(
            lambda conn: restore(conn, source.name, poller.keys_remembered)
        )
        poller.restore(restored)
        self.pollers[source.name] = poller
        self._sup.add(
            f"poll:{source.name}", poller.run, deadline=source.max_interval + source.timeout + 60
        )
        log.info(
            "source_started",
            source=source.name,
            url=source.url,
            restored_records=restored.records,
            interval_s=poller.state.interval,
        )

    async def reconfigure(self, loaded: config.Loaded) -> None:
        """Start new sources, stop removed ones, restart changed ones (state is restored)."""
        old = {s.name: s for s in self._config.sources}
        new = {s.name: s for s in loaded.config.sources}
        for name, source in old.items():
            if new.get(name) != source:
                await self._sup.remove(f"poll:{name}")
                del self.pollers[name]
                log.info(
                    "source_stopped",
                    source=name,
                    reason="removed" if name not in new else "changed",
                )
        self._config = loaded.config
        # What the stopped pollers committed must be in DuckDB before the new ones restore
        # their keys and counts from it (else a gap count would go down, a key be forgotten).
        await self._writer.sync()
        for name, source in new.items():
            if old.get(name) != source:
                await self._add(source)

    async def sync(self) -> None:
        """Bring DuckDB up to date with every committed poll (before reading it)."""
        await self._writer.sync()

    async def flush(self, compact: bool = False) -> int:
        """Copy new messages to Parquet now; with ``compact``, then merge closed days."""
        await self._writer.sync()
        async with self._flush_lock:
            parquet_dir = self._config.parquet_path
            rows = await self._store.call(lambda conn: flush_messages(conn, parquet_dir))
            if rows:
                log.info("parquet_flushed", rows=rows, dir=str(parquet_dir / "messages"))
            if compact:
                # Still under the lock, right after a whole flush: none pending, none running.
                await self._compact(parquet_dir / "messages")
        return rows

    async def _compact(self, root: Path) -> None:
        if self._compactor is None or self._compactor.root != root:
            if self._compactor is not None:
                self._days_merged += self._compactor.days_merged
                self._merge_failures += self._compactor.failures
            self._compactor = Compactor(root)
        compactor = self._compactor
        stopping = threading.Event()
        done = asyncio.ensure_future(
            asyncio.to_thread(compactor.run, COMPACT_BUDGET_S, stopping.is_set)
        )
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # The thread stops before its next swap; the flush lock is held until it has,
            # so that no flush writes into a folder being swapped away.
            stopping.set()
            await asyncio.wait({done})
            raise

    async def _flush_loop(self, heartbeat: Heartbeat) -> None:
        while True:
            heartbeat.beat(within=self._config.flush_interval + FLUSH_DEADLINE_S)
            await asyncio.sleep(self._config.flush_interval)
            heartbeat.beat(within=FLUSH_DEADLINE_S)
            try:
                await self.flush(compact=True)
            except (OSError, duckdb.Error) as exc:
                # The records are safe in DuckDB and the copy resumes where it stopped: say
                # why once (a folder made unwritable, a full disk), not a traceback a minute.
                if str(exc) != self._flush_error:
                    self._flush_error = str(exc)
                    log.error(
                        "parquet_flush_failed",
                        dir=str(self._config.parquet_path),
                        error=self._flush_error,
                        action="make parquet_dir writable by the service user (or free "
                        "space); the copy resumes by itself, nothing is lost",
                    )
                continue
            self._last_flush = time.time()
            if self._flush_error is not None:
                log.info("parquet_flush_resumed", dir=str(self._config.parquet_path))
                self._flush_error = None

    async def shutdown(self) -> None:
        """Commit every fetched poll, save schedules, copy to Parquet, close the client."""
        await self._writer.close()
        now = datetime.now(UTC)
        states = {name: (p.state.to_json(), now) for name, p in self.pollers.items()}
        if states:
            await self._store.call(lambda conn: save_states(conn, states))
        await self.flush()
        await self._client.aclose()

    def handlers(self) -> dict[str, Handler]:
        """No control commands of its own."""
        return {}

    def status(self) -> str:
        """``7 sources, 12345 records, 0 gaps, 1 failing``."""
        if not self.pollers:
            return ""
        counters = [p.counters for p in self.pollers.values()]
        failing = sum(1 for p in self.pollers.values() if p.state.errors)
        text = (
            f"{len(counters)} sources, {sum(c.records for c in counters)} records, "
            f"{sum(c.gaps for c in counters)} gaps"
        )
        return text + (f", {failing} failing" if failing else "")

    def snapshot(self) -> dict[str, object]:
        """Per-source figures for ``headlined status``."""
        now = time.time()
        out: dict[str, dict[str, object]] = {}
        # A copy: a scrape reads this on another thread while a reload changes the dict.
        for name, poller in list(self.pollers.items()):
            c, s = poller.counters, poller.state
            out[name] = {
                "url": poller.source.url,
                "last_poll": c.last_poll,
                "seconds_since_poll": None if c.last_poll is None else round(now - c.last_poll, 1),
                "interval_s": s.interval,
                "rate_per_s": s.rate,
                "window": poller.limits.window,  # as gap detection uses it (may be learnt)
                "records": c.records,
                "new_records": c.new_records,
                "last_success": s.last_success,
                "gaps": c.gaps,
                "polls": c.polls,
                "errors": c.errors,
                "errors_by_kind": [
                    {"kind": kind, "http_status": status, "polls": n}
                    # Copied in one step: the metrics thread reads this while the loop counts.
                    for (kind, status), n in list(c.errors_by.items())
                ],
                "failing": s.errors > 0,
                "last_error": c.last_error,
                "poll_duration_s": c.durations.snapshot(),
            }
        return {"sources": out, "journal": self._writer.snapshot(), "parquet": self._parquet()}

    def _parquet(self) -> dict[str, object]:
        compactor = self._compactor
        return {
            "dir": str(self._config.parquet_path / "messages"),
            "last_flush": self._last_flush,
            "flush_error": self._flush_error,
            "days_merged": self._days_merged + (compactor.days_merged if compactor else 0),
            "merge_failures": self._merge_failures + (compactor.failures if compactor else 0),
            "merge_unsupported": bool(compactor and compactor.unsupported),
        }
