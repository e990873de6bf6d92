"""``headlined run``: the event loop, signals, systemd notifications and the watchdog.

The daemon itself does little: it opens storage, starts the services the config asks for
(pollers, Parquet flusher, exporter, lake), feeds systemd's watchdog only while every component is
healthy, re-reads the config on SIGHUP and shuts down in order on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from headlined import config, durable, logs, query
from headlined.control import ControlError, ControlServer, Handler, socket_path
from headlined.influx.service import ExportService
from headlined.lake.service import LakeService
from headlined.notify import Notifier
from headlined.poll import journal
from headlined.poll.service import PollService
from headlined.store import Store, StoreError
from headlined.supervisor import Supervisor

if TYPE_CHECKING:
    from headlined.metrics import MetricsServer

log = logs.get("daemon")

STOP_BUDGET_S = 20.0  # the unit's TimeoutStopSec is 60 s: stay well inside it
STATUS_EVERY_S = 5.0
STORE_JOB_DEADLINE_S = 120.0
QUERY_TIMEOUT_S = 300.0
METRICS_RETRY_S = 30.0
# A reply of at most this much JSON: a large query must not leave the daemon large.
QUERY_REPLY_BYTES = 16 * 2**20
# A journal this large, left at start, gets systemd's start timeout extended: by the unit's
# 90 s plus its size at a speed a slow disk and CPU still reach (a fast one applies 30 MB/s).
JOURNAL_BACKLOG_BYTES = 16 << 20
JOURNAL_APPLY_BYTES_PER_S = 2 << 20
START_SLACK_S = 90.0


class Service(Protocol):
    """A part of the daemon built from the config: the pollers, the flusher, the exporter."""

    async def start(self, supervisor: Supervisor) -> None:
        """Register components with the supervisor."""

    async def reconfigure(self, loaded: config.Loaded) -> None:
        """Adopt a new, valid config (SIGHUP)."""

    async def shutdown(self) -> None:
        """Finish what was fetched (flush, checkpoint) before the store closes."""

    async def sync(self) -> None:
        """Put everything committed into DuckDB, so that a query sees it."""

    def status(self) -> str:
        """A short fragment for systemd's one-line STATUS."""

    def snapshot(self) -> dict[str, object]:
        """Figures for ``headlined status`` (merged into one document)."""

    def handlers(self) -> dict[str, Handler]:
        """Control socket commands this service answers."""


ServiceFactory = Callable[[config.Loaded, Store], Sequence[Service]]


def default_services(loaded: config.Loaded, store: Store) -> Sequence[Service]:
    """The services the configuration asks for."""
    return [PollService(loaded, store), ExportService(loaded, store), LakeService(loaded, store)]


class Daemon:
    """One run of ``headlined run``."""

    def __init__(
        self,
        loaded: config.Loaded,
        notifier: Notifier | None = None,
        services: ServiceFactory = default_services,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loaded = loaded
        self.notifier = notifier if notifier is not None else Notifier()
        self.supervisor = Supervisor(clock=clock)
        self._make_services = services
        self._services: Sequence[Service] = ()
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._unhealthy_reported: list[str] = []
        self._started_at = time.time()
        self._metrics_task: asyncio.Task[None] | None = None
        self.metrics_problem: str | None = None  # why /metrics is not served, for status
        self._store: Store

    def _directories_usable(self) -> bool:
        """Whether every directory can be written; else one error line per problem."""
        reported: list[Path] = []
        for directory, setting in self._directories():
            if any(directory.is_relative_to(bad) for bad in reported):
                continue  # inside one already reported: the same fix covers it
            if (problem := durable.unwritable(directory, setting)) is not None:
                log.error("directory_unusable", problem=problem)
                reported.append(directory)
        return not reported

    def _directories(self) -> list[tuple[Path, str]]:
        """The directories this daemon writes, with the setting that names each."""
        cfg = self.loaded.config
        out = [(cfg.state_dir, "state_dir"), (cfg.parquet_path, "parquet_dir")]
        if cfg.influx is not None:
            out.append((cfg.influx.output_dir, "influx.output_dir"))
        if cfg.lake is not None and cfg.lake.warehouse and "://" not in cfg.lake.warehouse:
            out.append((Path(cfg.lake.warehouse), "lake.warehouse"))
        return out

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        store = Store(
            self.loaded.config.database_path,
            heartbeat=self.supervisor.heartbeat("store", STORE_JOB_DEADLINE_S),
            job_deadline=STORE_JOB_DEADLINE_S,
        )
        if not self._directories_usable():
            return 1
        try:
            await store.open()
        except StoreError as exc:
            log.error("store_unavailable", error=str(exc))
            return 1
        self._store = store
        control = ControlServer(socket_path(self.loaded.config.state_dir))
        control.handlers.update(status=self._status_request, query=self._query_request)
        try:
            await control.start()
        except OSError as exc:
            log.error(
                "control_socket_unavailable",
                path=str(control.path),
                error=str(exc),
                action="status/query/export will not reach this daemon",
            )
        metrics = self._start_metrics()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        self._extend_start_for_journal()
        try:
            self._services = self._make_services(self.loaded, store)
            for service in self._services:
                control.handlers.update(service.handlers())
            for service in self._services:
                await service.start(self.supervisor)
            # What start-up built (modules, config, clients) lives as long as the process:
            # out of the collector's way, a full collection no longer walks all of it (0.1 ms
            # of CPU per poll, measured).
            gc.freeze()
            self.notifier.ready(self.status_line())
            log.info(
                "started",
                config=str(self.loaded.path),
                sources=len(self.loaded.config.sources),
                watchdog_s=self.notifier.watchdog_interval,
            )
            await self._main_loop()
        finally:
            # Handlers stay installed through shutdown: a second SIGINT/SIGTERM (timeout(1)
            # signals the whole process group) must not interrupt the final flush.
            await control.close()
            await self._stop_metrics(metrics)
            await self._shutdown(store)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0

    def _extend_start_for_journal(self) -> None:
        """A journal a long DuckDB outage left is applied before READY: ask for the time.

        Without this, systemd's TimeoutStartSec would kill every start half-way through it.
        """
        size = 0
        waiting = journal.existing(journal.directory_in(self.loaded.config.state_dir))
        for _, path in waiting:
            with contextlib.suppress(OSError):
                size += path.stat().st_size
        if size < JOURNAL_BACKLOG_BYTES:
            return
        seconds = START_SLACK_S + size / JOURNAL_APPLY_BYTES_PER_S
        self.notifier.extend_timeout(seconds)
        log.info(
            "journal_backlog",
            segments=len(waiting),
            mib=round(size / 2**20),
            start_timeout_extended_s=round(seconds),
        )

    async def _status_request(self, _request: dict[str, Any]) -> dict[str, Any]:
        return self.status_document()

    def status_document(self) -> dict[str, Any]:
        """Everything ``headlined status`` and the metrics show (read from any thread)."""
        document: dict[str, Any] = {
            "daemon": {
                "pid": os.getpid(),
                "config": str(self.loaded.path),
                "started_at": self._started_at,
                "uptime_s": round(time.time() - self._started_at, 1),
                "unhealthy": self.supervisor.unhealthy(),
                "component_errors": self.supervisor.errors(),
                "status": self.status_line(self.supervisor.unhealthy()),
                "metrics_problem": self.metrics_problem,
            }
        }
        for service in self._services:
            document.update(service.snapshot())
        return document

    async def _query_request(self, request: dict[str, Any]) -> dict[str, Any]:
        sql = str(request.get("sql", ""))
        limit = int(request.get("limit", 100_000))
        influx = self.loaded.config.influx
        influx_dir = influx.output_dir if influx else None
        for service in self._services:
            await service.sync()
        try:
            result = await self._store.read(
                lambda cur: query.run(cur, sql, influx_dir, limit, QUERY_REPLY_BYTES),
                limit_s=QUERY_TIMEOUT_S,
            )
        except query.QueryError as exc:
            raise ControlError(str(exc)) from None
        except TimeoutError:
            raise ControlError(f"query took longer than {QUERY_TIMEOUT_S:g}s") from None
        return asdict(result)

    def _start_metrics(self) -> MetricsServer | None:
        settings = self.loaded.config.metrics
        if settings is None:
            return None
        # Imported only when configured: prometheus_client is RSS a daemon without it saves.
        from headlined.metrics import MetricsServer  # noqa: PLC0415

        server = MetricsServer(settings.listen, self.status_document)
        self._metrics_task = asyncio.create_task(self._serve_metrics(server, settings.listen))
        return server

    async def _stop_metrics(self, server: MetricsServer | None) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            await asyncio.gather(self._metrics_task, return_exceptions=True)
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def _serve_metrics(self, server: MetricsServer, listen: str) -> None:
        """Bind the endpoint; while its address is taken, say so once and try again."""
        while True:
            try:
                await asyncio.to_thread(server.start)
            except OSError as exc:
                problem = f"{listen}: {exc.strerror or exc}; retrying every {METRICS_RETRY_S:g} s"
                if self.metrics_problem is None:
                    log.error(
                        "metrics_unavailable",
                        problem=problem,
                        action="free the port or change metrics.listen, then reload",
                    )
                self.metrics_problem = problem
                await asyncio.sleep(METRICS_RETRY_S)
                continue
            self.metrics_problem = None
            log.info("metrics_listening", url=f"http://{listen}/metrics")
            return

    def request_stop(self) -> None:
        """Ask the daemon to shut down (what SIGTERM does)."""
        self._stop.set()

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.info("stop_already_requested", signal=sig.name)
            return
        log.info("stop_requested", signal=sig.name)
        self._stop.set()

    async def _main_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        feed_watchdog = interval is not None and self.loaded.config.watchdog
        tick = min(interval, STATUS_EVERY_S) if feed_watchdog and interval else STATUS_EVERY_S
        last_status = 0.0
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                await self._reconfigure()
            unhealthy = self.supervisor.unhealthy()
            self._report_health(unhealthy)
            if feed_watchdog and not unhealthy:
                self.notifier.watchdog()
            now = time.monotonic()
            if now - last_status >= STATUS_EVERY_S:
                self.notifier.status(self.status_line(unhealthy))
                last_status = now
            stop = asyncio.ensure_future(self._stop.wait())
            reload = asyncio.ensure_future(self._reload.wait())
            await asyncio.wait({stop, reload}, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stop, reload):
                waiter.cancel()

    def _report_health(self, unhealthy: list[str]) -> None:
        if unhealthy == self._unhealthy_reported:
            return
        if unhealthy:
            log.error(
                "components_unhealthy",
                components=unhealthy,
                action="watchdog pings paused; systemd restarts us if this persists",
            )
        else:
            log.info("components_healthy")
        self._unhealthy_reported = unhealthy

    def status_line(self, unhealthy: Sequence[str] = ()) -> str:
        """The one line ``systemctl status headlined`` shows."""
        parts = [s for s in (service.status() for service in self._services) if s]
        if not parts:
            parts = ["idle: no sources or export configured"]
        if unhealthy:
            parts.append("STALLED: " + ", ".join(unhealthy))
        return "; ".join(parts)

    async def _reconfigure(self) -> None:
        self.notifier.reloading()
        try:
            new = config.load(self.loaded.path)
        except config.ConfigError as exc:
            for problem in exc.problems:
                log.error("reload_rejected", problem=str(problem))
            log.error("reload_failed", action="kept the running configuration")
        else:
            for key in ("state_dir", "metrics"):
                if getattr(new.config, key) != getattr(self.loaded.config, key):
                    log.warning(
                        "reload_partial", key=key, problem="takes effect only after a restart"
                    )
            logs.configure(new.config.log_level)
            logs.REDACTOR.set_secrets(new.secrets)
            for service in self._services:
                await service.reconfigure(new)
            self.loaded = new
            log.info("reloaded", sources=len(new.config.sources))
        self.notifier.ready(self.status_line())

    async def _shutdown(self, store: Store) -> None:
        self.notifier.stopping()
        stuck = await self.supervisor.stop(grace=STOP_BUDGET_S / 2)
        if stuck:
            log.error("components_did_not_stop", components=stuck)
        for service in self._services:
            try:
                await asyncio.wait_for(service.shutdown(), timeout=STOP_BUDGET_S / 4)
            except Exception as exc:  # one failed flush must not skip the others
                log.error(
                    "shutdown_step_failed",
                    service=type(service).__name__,
                    error=repr(exc),
                    exc_info=exc,
                )
        try:
            await store.close()
        except Exception as exc:  # still say we stopped; DuckDB replays its WAL
            log.error("store_close_failed", error=repr(exc), exc_info=exc)
        log.info("stopped")
        self.notifier.close()


def run(path: Path) -> int:
    """Load the config and run the daemon; returns the exit code (2 for a bad config)."""
    try:
        loaded = config.load(path)
    except config.ConfigError as exc:
        logs.configure("info")
        for problem in exc.problems:
            log.error("config_invalid", problem=str(problem))
        return 2
    logs.configure(loaded.config.log_level)
    logs.REDACTOR.set_secrets(loaded.secrets)
    warning = loaded.exposure_warning()
    if warning:
        log.warning("config_exposes_secrets", problem=warning)
    warning = loaded.metrics_warning()
    if warning:
        log.warning("metrics_not_on_loopback", problem=warning)
    try:
        return asyncio.run(Daemon(loaded).run())
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were installed (while opening storage).
        log.warning("interrupted_during_startup")
        return 130
