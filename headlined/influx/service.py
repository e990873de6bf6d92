"""The export inside the daemon: a supervised component that resumes the plan at start, and
the control socket's ``export`` command (how ``headlined export`` hands work to the daemon).

The exporter runs at low CPU and IO priority on its own DuckDB instance and threads; the
pollers keep their own writer thread, so polling keeps its deadlines while it runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from headlined import config, logs
from headlined.control import ControlError, Handler
from headlined.store import Store
from headlined.supervisor import Heartbeat, Supervisor

if TYPE_CHECKING:
    from headlined.influx.exporter import Exporter

log = logs.get("exportservice")

COMPONENT = "export"
WAIT_S = 10.0  # how often a daemon waiting for InfluxDB's directories looks again


class ExportService:
    """Runs the configured InfluxDB export at start, then every ``influx.follow`` (what
    changed in InfluxDB), and on request."""

    def __init__(self, loaded: config.Loaded, store: Store, wait_s: float = WAIT_S) -> None:
        self._store = store
        self._cfg = loaded.config.influx
        self.exporter = _exporter(self._cfg, store)
        self._supervisor: Supervisor | None = None
        self._database: str | None = None
        self._active = False
        self._wait_s = wait_s
        self.waiting: str | None = None  # why the export cannot start yet, for status

    async def start(self, supervisor: Supervisor) -> None:
        """Resume (or begin) the export in the background."""
        self._supervisor = supervisor
        if self.exporter is not None:
            supervisor.add(COMPONENT, self._run, deadline=600)

    async def _run(self, heartbeat: Heartbeat) -> None:
        """Export what is not exported yet; then, with ``influx.follow``, look again at that
        interval and export what InfluxDB changed."""
        exporter = self.exporter
        if exporter is None:
            return
        while True:
            self._active = True
            try:
                await self._plan_when_ready(exporter, heartbeat)
                heartbeat.beat()
                complete = await exporter.run(self._database, heartbeat)
            finally:
                self._active = False
                await exporter.close()
            self._database = None  # a request for one database is served once
            _log_outcome(exporter, complete)
            if self._cfg is None or self._cfg.follow is None:
                return
            heartbeat.beat(within=self._cfg.follow + 600)
            await asyncio.sleep(self._cfg.follow)

    async def _plan_when_ready(self, exporter: Exporter, heartbeat: Heartbeat) -> None:
        """Plan; while InfluxDB's directories cannot be used, say why once and look again."""
        from headlined.influx.datadir import DataDirError  # noqa: PLC0415  see _exporter
        from headlined.influx.exporter import EXPECTED  # noqa: PLC0415  see _exporter

        said: str | None = None
        while True:
            try:
                await exporter.plan()
            except (DataDirError, *EXPECTED) as exc:
                await exporter.close()
                problem = str(exc)
                self.waiting = problem
                if problem != said:
                    said = problem
                    log.error(
                        "export_waiting",
                        problem=problem,
                        action=_waiting_action(exc, exporter),
                        retry_every_s=self._wait_s,
                    )
                heartbeat.beat(within=self._wait_s + 60)
                await asyncio.sleep(self._wait_s)
                continue
            if said is not None:
                log.info("export_ready", data_dir=str(exporter.cfg.data_dir))
            self.waiting = None
            return

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Control command ``export``: start the export now unless it is running."""
        if self.exporter is None or self._supervisor is None:
            raise ControlError(
                "the running daemon's config has no influx: section "
                "(add it, then systemctl reload headlined)"
            )
        database = message.get("database")
        if self._active:
            return {"started": False, "reason": "an export is already running"}
        self._database = str(database) if database else None
        self._active = True  # before the task runs: a status request must see it running
        await self._supervisor.remove(COMPONENT)
        self._supervisor.add(COMPONENT, self._run, deadline=600)
        return {"started": True}

    async def reconfigure(self, loaded: config.Loaded) -> None:
        """A changed influx: section restarts the export with the new settings."""
        if loaded.config.influx == self._cfg or self._supervisor is None:
            return
        await self._supervisor.remove(COMPONENT)
        self._cfg = loaded.config.influx
        self.waiting = None
        self.exporter = _exporter(self._cfg, self._store)
        if self.exporter is not None:
            self._supervisor.add(COMPONENT, self._run, deadline=600)

    async def shutdown(self) -> None:
        """Nothing to flush: every finished chunk is already checkpointed."""

    async def sync(self) -> None:
        """Nothing waits: chunk checkpoints go straight to DuckDB."""

    def handlers(self) -> dict[str, Handler]:
        """The control socket's ``export`` command."""
        return {"export": self.request}

    def status(self) -> str:
        """``export 3/10 chunks`` while there is an export."""
        if self.exporter is None:
            return ""
        if self.waiting is not None:
            return "export waiting for InfluxDB's files (see headlined status)"
        p = self.exporter.progress
        if not p.total:
            return "export planning" if p.running else ""
        failed = f", {p.failed} failed" if p.failed else ""
        damaged = f", {p.damaged} damaged" if p.damaged else ""
        return f"export {p.done}/{p.total} chunks{failed}{damaged}"

    def snapshot(self) -> dict[str, object]:
        """The ``export`` part of ``headlined status``."""
        if self.exporter is None:
            return {}
        return {
            "export": self.exporter.progress.snapshot(),
            "export_running": self._active,
            "export_current": self.exporter.progress.current,
            "export_failures": self.exporter.failures,
            "export_damaged": self.exporter.damaged,
            "export_problems": [
                {"chunk": name, "state": "failed", "error": error, "skipped": 0}
                for name, error in sorted(self.exporter.failures.items())
            ]
            + [
                {
                    "chunk": name,
                    "state": "damaged",
                    "error": "influx_inspect skipped: " + "; ".join(skipped[:3]),
                    "skipped": len(skipped),
                }
                for name, skipped in sorted(self.exporter.damaged.items())
            ],
            "export_waiting": self.waiting,
            "export_field_conflicts": self.exporter.conflicts,
            "export_via": self.exporter.reader.mode,
        }


def _log_outcome(exporter: Exporter, complete: bool) -> None:
    """Say how a pass ended, when it exported something (a quiet follow says nothing)."""
    progress = exporter.progress
    if not progress.chunks_this_run:
        return
    if complete:
        log.info("export_complete", rows=progress.rows, chunks_this_run=progress.chunks_this_run)
    else:
        log.error(
            "export_incomplete",
            failed=sorted(exporter.failures),
            damaged=sorted(exporter.damaged),
            action="fix the cause, then `headlined export` or restart to retry",
        )


def _waiting_action(exc: Exception, exporter: Exporter) -> str:
    kind = getattr(exc, "kind", "")
    if kind == "unreadable" and exporter.reader.mode == "local":
        return (
            "InfluxDB keeps each database in a folder only its own user may read: "
            "systemctl enable --now headlined-inspect.socket (it reads them as user influxdb; "
            "README, Install); headlined looks again by itself"
        )
    if kind == "unreadable":
        return (
            "headlined-inspect reads as user influxdb: if InfluxDB runs as another user, set "
            "User=/Group= in a drop-in (systemctl edit headlined-inspect@.service)"
        )
    if kind == "missing":
        return "install and start InfluxDB, or fix influx.data_dir/wal_dir and reload"
    if kind in ("not_influx", "no_database", "empty"):
        return "fix influx.data_dir (or influx.databases) and systemctl reload headlined"
    return "headlined looks again by itself; see the problem for the cause"


def _exporter(cfg: config.InfluxConfig | None, store: Store) -> Exporter | None:
    if cfg is None:
        return None
    # Imported only when configured: the converter costs a daemon without one ~7 MB of RSS.
    from headlined.influx.exporter import Exporter  # noqa: PLC0415

    return Exporter(cfg, store, threads=1)
