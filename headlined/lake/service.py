"""The lake inside the daemon: a supervised component that publishes at start and then every
``lake.interval``, backing off while the catalog or the storage is out.

Publishing runs on a thread of its own (pyiceberg, SQLAlchemy and the lake copies are
blocking), never on the event loop and never on the DuckDB writer, so polling and the local
files go on whatever the lake does. Each cycle reconciles from the tables themselves, so an
outage, a crash or a stop in the middle of one loses nothing: the next cycle finishes it.
The last cycle's outcome is kept in ``<state_dir>/lake/status.json`` for ``headlined status``
when the daemon is not running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headlined import config, durable, logs
from headlined.control import Handler
from headlined.lake import missing_dependency
from headlined.lake import status as lakestatus
from headlined.store import Store
from headlined.supervisor import Heartbeat, Supervisor, restart_delay

if TYPE_CHECKING:
    from headlined.lake.publisher import CycleResult, Publisher

log = logs.get("lake")

COMPONENT = "lake"
# A cycle reports progress after every file it publishes; one file (a chunk's lake copy, an
# upload) taking longer than this means it hangs.
FILE_DEADLINE_S = 900.0
BACKOFF_CAP_S = 900.0  # an outage is retried at least this often
STOP_WAIT_S = 10.0  # at stop, how long a cycle in progress may finish its commit


@dataclass
class LakeState:
    """What ``headlined status`` shows of the lake."""

    site: str | None = None
    catalog: str | None = None  # the URL without its password
    warehouse: str | None = None
    last_attempt: float | None = None
    last_success: float | None = None
    waiting: int | None = None
    added: int = 0  # since the daemon started
    removed: int = 0
    snapshots: dict[str, int] = field(default_factory=dict)
    table_errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # why the last cycle failed as a whole
    next_attempt: float | None = None

    def document(self) -> dict[str, Any]:
        """The JSON form (also written to status.json)."""
        return {
            "site": self.site,
            "catalog": self.catalog,
            "warehouse": self.warehouse,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "waiting": self.waiting,
            "added": self.added,
            "removed": self.removed,
            "snapshots": dict(self.snapshots),
            "table_errors": dict(self.table_errors),
            "error": self.error,
            "next_attempt": self.next_attempt,
        }


PublisherFactory = Callable[[config.Config], "Publisher"]


def _publisher(cfg: config.Config) -> Publisher:
    # Imported only when configured: pyiceberg and pyarrow cost a daemon ~60 MB of RSS.
    from headlined.lake.publisher import Publisher, settings_from_config  # noqa: PLC0415

    return Publisher(settings_from_config(cfg))


def redacted(url: str) -> str:
    """The catalog URL without its password, for status."""
    from headlined.lake.catalog import redacted as hide  # noqa: PLC0415  see _publisher

    return hide(url)


class LakeService:
    """Publishes every local Parquet file to the Iceberg tables of ``lake:``."""

    def __init__(
        self,
        loaded: config.Loaded,
        store: Store,
        factory: PublisherFactory = _publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        del store  # the lake reads the published files, never the state file
        self._cfg = loaded.config
        self._factory = factory
        self._clock = clock
        self._supervisor: Supervisor | None = None
        # One thread: cycles never overlap, and a stop can wait for the one in progress.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lake")
        self._running: asyncio.Future[Any] | None = None
        # Set at stop and reload: a cycle in progress ends after its current commit.
        self._stopping = threading.Event()
        self.state = LakeState()
        self._said: dict[str, str] = {}  # the table errors already logged

    async def start(self, supervisor: Supervisor) -> None:
        """Start publishing in the background when the config has a lake: section."""
        self._supervisor = supervisor
        if self._cfg.lake is not None:
            supervisor.add(COMPONENT, self._run, deadline=FILE_DEADLINE_S)

    async def _run(self, heartbeat: Heartbeat) -> None:
        lake = self._cfg.lake
        if lake is None:
            return
        if (missing := missing_dependency()) is not None:
            self.state.error = missing
            log.error("lake_unavailable", problem=missing)
            return
        from headlined.lake.catalog import LakeError  # noqa: PLC0415  see _publisher

        self._stopping.clear()  # a restart after a crash publishes again
        loop = asyncio.get_running_loop()

        def progress() -> None:  # called on the lake thread after each file
            loop.call_soon_threadsafe(heartbeat.beat)

        stopping = self._stopping.is_set

        publisher = await self._in_thread(lambda: self._factory(self._cfg))
        self.state.site = publisher.settings.site
        self.state.catalog = redacted(publisher.settings.catalog_url)
        self.state.warehouse = publisher.settings.warehouse
        failures = 0
        said: str | None = None
        try:
            while True:
                heartbeat.beat()
                self.state.last_attempt = self._clock()
                try:
                    result = await self._in_thread(lambda: publisher.cycle(stopping, progress))
                except Exception as exc:  # an outage or a refusal (or a bug): back off, go on
                    failures += 1
                    delay = restart_delay(failures, base=min(lake.interval, 5.0), cap=BACKOFF_CAP_S)
                    problem = str(exc) or type(exc).__name__
                    self.state.error = problem
                    if problem != said:  # once per distinct problem, not every retry
                        said = problem
                        log.error(
                            "lake_publish_failed",
                            error=problem,
                            retry_in_s=round(delay, 1),
                            action="local files are kept and published when it works again",
                            # An outage explains itself; anything else is a bug to report.
                            exc_info=None if isinstance(exc, LakeError) else exc,
                        )
                else:
                    failures = 0
                    if said is not None:
                        log.info("lake_publish_recovered")
                        said = None
                    self._record(result)
                    delay = lake.interval
                self.state.next_attempt = self._clock() + delay
                await self._in_thread(self._save_state)
                heartbeat.beat(within=delay + FILE_DEADLINE_S)
                await asyncio.sleep(delay)
        finally:
            # Cancelled (a stop, a reload): a cycle still running ends after its current
            # copy, so that closing, queued behind it, does not wait for a whole batch.
            self._stopping.set()
            await self._in_thread(publisher.close)

    def _record(self, result: CycleResult) -> None:
        state = self.state
        state.last_success = self._clock()
        state.error = None
        state.waiting = result.waiting
        state.added += result.added
        state.removed += result.removed
        state.snapshots = dict(result.snapshots)
        state.table_errors = dict(result.errors)
        if result.added or result.removed:
            log.info(
                "lake_published",
                added=result.added,
                removed=result.removed,
                waiting=result.waiting,
            )
        for table, error in result.errors.items():
            if self._said.get(table) != error:  # once per table and problem, not each cycle
                log.error("lake_table_failed", table=table, error=error)
        self._said = dict(result.errors)

    def _save_state(self) -> None:
        path = lakestatus.path(self._cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        durable.write_atomic(path, json.dumps(self.state.document()).encode())

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        running = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        self._running = running
        try:
            # shield: a cancelled component must not orphan its thread's work silently; the
            # stop waits for it (shutdown) instead.
            return await asyncio.shield(running)
        finally:
            self._running = None

    async def reconfigure(self, loaded: config.Loaded) -> None:
        """A changed lake: section restarts publishing with the new settings."""
        if loaded.config.lake == self._cfg.lake or self._supervisor is None:
            self._cfg = loaded.config
            return
        self._stopping.set()
        await self._supervisor.remove(COMPONENT)
        await self._wait_for_thread()
        self._stopping.clear()
        self._cfg = loaded.config
        self.state = LakeState()
        if self._cfg.lake is not None:
            self._supervisor.add(COMPONENT, self._run, deadline=FILE_DEADLINE_S)

    async def _wait_for_thread(self) -> None:
        running = self._running
        if running is None:
            return
        done, _ = await asyncio.wait([running], timeout=STOP_WAIT_S)
        if not done:
            log.warning(
                "lake_cycle_still_running",
                waited_s=STOP_WAIT_S,
                note="it is left to finish; the next start reconciles whatever it did",
            )

    async def shutdown(self) -> None:
        """Let a cycle in progress finish its commit (bounded); the next start catches up."""
        self._stopping.set()
        await self._wait_for_thread()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def sync(self) -> None:
        """Nothing of the lake is in DuckDB."""

    def handlers(self) -> dict[str, Handler]:
        """No control commands."""
        return {}

    def status(self) -> str:
        """``lake ok``, ``lake 12 waiting`` or ``lake failing``."""
        if self._cfg.lake is None:
            return ""
        if self.state.error is not None:
            return "lake failing (see headlined status)"
        if self.state.waiting:
            return f"lake {self.state.waiting} waiting"
        return "lake ok" if self.state.last_success is not None else "lake starting"

    def snapshot(self) -> dict[str, object]:
        """The ``lake`` part of ``headlined status``."""
        if self._cfg.lake is None:
            return {}
        return {"lake": self.state.document()}
