"""The export inside the daemon: a supervised component that resumes the plan at start, and
the control socket's ``export`` command (how ``headlined export`` hands work to the daemon).

The exporter runs at low CPU and IO priority on its own DuckDB instance and threads; the
pollers keep their own writer thread, so polling keeps its deadlines while it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headlined import config, logs
from headlined.control import ControlError, Handler
from headlined.store import Store
from headlined.supervisor import Heartbeat, Supervisor

if TYPE_CHECKING:
    from headlined.exporter import Exporter

log = logs.get("exportservice")

COMPONENT = "export"


class ExportService:
    """Runs the configured InfluxDB export once per start, and again on request."""

    def __init__(self, loaded: config.Loaded, store: Store) -> None:
        self._store = store
        self._cfg = loaded.config.influx
        self.exporter = _exporter(self._cfg, store)
        self._supervisor: Supervisor | None = None
        self._database: str | None = None
        self._active = False

    async def start(self, supervisor: Supervisor) -> None:
        """Resume (or begin) the export in the background."""
        self._supervisor = supervisor
        if self.exporter is not None:
            supervisor.add(COMPONENT, self._run, deadline=600)

    async def _run(self, heartbeat: Heartbeat) -> None:
        if self.exporter is None:
            return
        self._active = True
        try:
            await self.exporter.plan()
            heartbeat.beat()
            complete = await self.exporter.run(self._database, heartbeat)
        finally:
            self._active = False
        if complete:
            log.info("export_complete", rows=self.exporter.progress.rows)
        else:
            log.error(
                "export_incomplete",
                failed=sorted(self.exporter.failures),
                action="fix the cause, then `headlined export` or restart to retry",
            )

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
        p = self.exporter.progress
        if not p.total:
            return "export planning" if p.running else ""
        failed = f", {p.failed} failed" if p.failed else ""
        return f"export {p.done}/{p.total} chunks{failed}"

    def snapshot(self) -> dict[str, object]:
        """The ``export`` part of ``headlined status``."""
        if self.exporter is None:
            return {}
        return {
            "export": self.exporter.progress.snapshot(),
            "export_running": self._active,
            "export_current": self.exporter.progress.current,
            "export_failures": self.exporter.failures,
        }


def _exporter(cfg: config.InfluxConfig | None, store: Store) -> Exporter | None:
    if cfg is None:
        return None
    # Imported only when configured: the converter costs a daemon without one ~7 MB of RSS.
    from headlined.exporter import Exporter  # noqa: PLC0415

    return Exporter(cfg, store, threads=1)
