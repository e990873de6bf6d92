"""The InfluxDB export as resumable work: plan chunks, run them, checkpoint every one.

The plan lives in ``export_chunks`` (``pending`` → ``running`` → ``done``/``damaged``/``failed``).
A chunk is ``done`` only after its files were renamed into place, so a run killed anywhere
resumes with that chunk, whose redo replaces its own files (deterministic names).
``damaged``: published, but influx_inspect skipped data it could not read (``damage`` names
it); ``failed``: nothing published. Both are tried again by every run, so a restored file is
picked up. Used by the daemon (a supervised component) and by ``headlined export`` (in the
foreground), with the same checkpoints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import tenacity

from headlined import logs
from headlined.config import InfluxConfig
from headlined.influx import changes, datadir
from headlined.influx.chunk import (
    ChunkResult,
    ExportError,
    UnreadableFileError,
    rejected_dir,
    run_chunk,
)
from headlined.influx.chunkplan import NS, Budget, Chunk, Extent, outside, plan, rfc3339, to_ns
from headlined.influx.datadir import Discovery, Unreadable, WalScan
from headlined.influx.inventory import measurement_types, rp_data
from headlined.influx.reader import InfluxReader, ReaderError
from headlined.influx.schema import Conflict, MeasurementSchema
from headlined.influx.tables import (
    ChunkKey,
    Reconciled,
    key_of,
    load_chunks,
    save_plan,
    set_state,
)
from headlined.store import Store
from headlined.supervisor import Heartbeat

log = logs.get("exporter")

CHUNK_ATTEMPTS = 3
# Worth another attempt: a crashed or killed influx_inspect, a lost connection to the reader,
# a full disk, a DuckDB hiccup. Not an unreadable TSM file: it stays unreadable.
EXPECTED = (ExportError, ReaderError, OSError, duckdb.Error)
MAX_DAMAGE_SHOWN = 5  # skipped series named in a log event or a failure line
PROGRESS_LOG_S = 60.0
# Exported and current: done, or open (its time reaches past the export; exported again
# whenever InfluxDB's files for it change).
FINISHED = ("done", "open")
RETYPE_ROUNDS = 2


@dataclass(slots=True)
class Progress:
    """Figures for ``status``, STATUS= and the progress bar; shared with the converter thread."""

    total: int = 0
    done: int = 0
    failed: int = 0
    damaged: int = 0
    lines: int = 0
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    rows_this_run: int = 0
    chunks_this_run: int = 0
    # Lines read so far by each running chunk (two at most: one exported while the one before
    # writes its Parquet); only the event loop adds and removes keys.
    in_flight: dict[str, int] = field(default_factory=dict)
    by_database: dict[str, dict[str, int]] = field(default_factory=dict)
    running: bool = False

    @property
    def current(self) -> str | None:
        """The chunk started last of those running, or None."""
        return next(reversed(self.in_flight), None)

    @property
    def lines_in_chunk(self) -> int:
        """Lines read so far by the running chunks."""
        return sum(self.in_flight.values())

    def count(self, database: str, state: str, rows: int = 0) -> None:
        """Add one chunk of ``database`` in ``state`` to the per-database figures."""
        entry = self.by_database.setdefault(database, {})
        entry[state] = entry.get(state, 0) + 1
        entry["rows"] = entry.get("rows", 0) + rows

    def move(self, database: str, state: str, rows: int = 0) -> None:
        """A pending chunk of ``database`` reached ``state``."""
        self.by_database[database]["pending"] -= 1
        self.count(database, state, rows)

    def finished(self, database: str, state: str, lines: int, rows: int) -> None:
        """A chunk of ``database`` was published as ``done`` or ``damaged``."""
        if state == "damaged":
            self.damaged += 1
        else:
            self.done += 1
        self.chunks_this_run += 1
        self.move(database, state, rows)
        self.lines += lines
        self.rows += rows
        self.rows_this_run += rows

    def snapshot(self) -> dict[str, object]:
        """Per database: chunks by state, rows, speed and ETA (the ``export`` of status)."""
        out: dict[str, object] = {}
        for database, entry in self.by_database.items():
            chunks = {k: v for k, v in entry.items() if k != "rows" and v}
            out[database] = {
                "chunks": chunks,
                "rows": entry.get("rows", 0),
                "rows_per_s": self.rows_per_s(),
                "eta_s": self.eta_s(),
            }
        return out

    def rows_per_s(self) -> float | None:
        """Rows per second over this run."""
        elapsed = time.monotonic() - self.started
        return self.rows_this_run / elapsed if elapsed > 1 and self.rows_this_run else None

    def eta_s(self) -> float | None:
        """Seconds left, from this run's seconds per chunk."""
        left = self.total - self.done - self.failed - self.damaged
        if self.chunks_this_run == 0 or left <= 0:
            return None
        return (time.monotonic() - self.started) / self.chunks_this_run * left


class Exporter:
    """Plans and runs the export of ``cfg`` into ``cfg.output_dir``, checkpointing in ``store``."""

    def __init__(
        self,
        cfg: InfluxConfig,
        store: Store,
        *,
        threads: int | None = None,
        overlap: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        reader: InfluxReader | None = None,
    ) -> None:
        """``overlap``: start a chunk's influx_inspect as soon as the one before has exited,
        while that chunk still writes its Parquet (two chunks at most, one influx_inspect).
        ``reader``: one made (and maybe already discovering) before; else one of its own."""
        self.cfg = cfg
        self.store = store
        self._overlap = overlap
        self.progress = Progress()
        self.failures: dict[str, str] = {}
        self.damaged: dict[str, list[str]] = {}
        # In the foreground (overlap) the helper is not niced: at nice 10 its influx_inspect
        # lost the CPU to the converter it feeds.
        self.reader = InfluxReader(cfg, polite=not overlap) if reader is None else reader
        self.discovery: Discovery | None = None
        self.wal: dict[tuple[str, str], WalScan] = {}
        self.extents: list[Extent] = []
        # Of the last plan: each database's measurement schemas, each chunk's inputs.
        self.schemas: dict[str, dict[str, MeasurementSchema]] = {}
        self.signatures: dict[ChunkKey, str] = {}
        self._conflicts_said: set[tuple[str, Conflict]] = set()
        self.conflicts: list[dict[str, object]] = []  # fields whose type differs by shard
        self._widened = False
        self._planned_before = False
        self._sleep = sleep
        self._threads = threads

    async def close(self) -> None:
        """End the connection to InfluxDB's files (the reader exits)."""
        await self.reader.close()

    async def plan(self) -> list[Chunk]:
        """Discover the data, plan chunks for what is not planned yet, and send back to
        ``pending`` every chunk whose data changed in InfluxDB (checkpoints kept).

        Returns the new chunks. DataDirError when InfluxDB's directories cannot be used (yet).
        """
        discovery = await self.reader.discover()
        if self.reader.mode == "socket" and self.cfg.inspect != "influx_inspect":
            log.warning(
                "influx_inspect_setting_unused",
                inspect=self.cfg.inspect,
                action="headlined-inspect.socket runs the influx_inspect its unit names: set "
                "Environment=HEADLINED_INFLUX_INSPECT= in a drop-in for "
                "headlined-inspect@.service",
            )
        scans: dict[tuple[str, str], WalScan] = {}
        for item in discovery.found:
            if item.wal_bytes:
                async for attempt in self._retrying(f"{item.database}/{item.retention_policy}"):
                    with attempt:
                        scan = await self.reader.wal_scan(item.database, item.retention_policy)
                if scan is not None:
                    scans[(item.database, item.retention_policy)] = scan
        self.discovery = discovery
        self.wal = scans
        self.extents = datadir.extents(
            discovery, {key: (scan.first_ns, scan.last_ns) for key, scan in scans.items()}
        )
        broken = datadir.unreadable(discovery)
        self._log_unreadable(broken)
        if discovery.meta_error is not None and broken:
            log.warning("influx_meta_unreadable", error=discovery.meta_error)
        types = measurement_types(discovery, scans)
        self.schemas = {
            db: {m: MeasurementSchema.of(t) for m, t in seen.items()} for db, seen in types.items()
        }
        planned = await self.store.call(load_chunks)
        existing: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for chunk, _, _ in planned:
            existing.setdefault((chunk.database, chunk.retention_policy), []).append(
                (to_ns(chunk.start), to_ns(chunk.end))
            )
        now = datetime.now(UTC)
        new = plan(
            rp_data(discovery, scans, broken),
            existing,
            Budget(
                self.cfg.chunk_points,
                None if self.cfg.chunk is None else int(self.cfg.chunk * NS),
            ),
            now_ns=to_ns(now),
            start=self.cfg.start,
            end=self.cfg.end,
        )
        self._warn_outside()
        found = {(f.database, f.retention_policy): f for f in discovery.found}
        signatures: dict[ChunkKey, str] = {}
        kept: set[ChunkKey] = set()
        for chunk in [c for c, _, _ in planned] + new:
            where = (chunk.database, chunk.retention_policy)
            if where not in found:
                continue  # not exported now (dropped, or left out of influx.databases)
            sig = changes.signature(chunk, found[where], broken.get(where, []), scans.get(where))
            signatures[key_of(chunk)] = sig
            if sig == changes.NOTHING and not changes.still_held(chunk, discovery.shards):
                kept.add(key_of(chunk))
        self.signatures = signatures
        reconciled = await self.store.call(
            lambda conn: save_plan(conn, new, signatures, kept=kept, types=types, now=now)
        )
        self.conflicts = [conflict_json(db, c) for db, c in reconciled.conflicts]
        self._log_plan(new, reconciled)
        return new

    def _log_unreadable(self, broken: dict[tuple[str, str], list[Unreadable]]) -> None:
        for (database, rp), files in broken.items():
            for bad in files:
                log.error(
                    "tsm_file_unreadable",
                    database=database,
                    retention_policy=rp,
                    file=bad.path,
                    error=bad.error,
                    covers=None
                    if bad.first_ns is None or bad.last_ns is None
                    else f"{rfc3339(bad.first_ns)}..{rfc3339(bad.last_ns)}",
                    action="the chunks it covers fail; every other chunk is exported",
                )

    def _warn_outside(self) -> None:
        for extent in outside(self.extents, self.cfg.start, self.cfg.end):
            log.warning(
                "export_range_excludes_data",
                database=extent.database,
                retention_policy=extent.retention_policy,
                data_from=rfc3339(extent.first_ns),
                data_to=rfc3339(extent.last_ns),
                start=self.cfg.start.isoformat() if self.cfg.start else None,
                end=self.cfg.end.isoformat() if self.cfg.end else None,
                action="widen influx.start/influx.end, or remove them to export all data",
            )

    def _log_plan(self, new: list[Chunk], reconciled: Reconciled) -> None:
        for database, conflict in reconciled.conflicts:
            if (database, conflict) not in self._conflicts_said:
                self._conflicts_said.add((database, conflict))
                log.warning(
                    "export_field_type_conflict",
                    database=database,
                    measurement=conflict.measurement,
                    field=conflict.field,
                    types=list(conflict.kinds),
                    column=conflict.resolved,
                    may_round=conflict.may_round,
                    where="export_fields",
                )
        if reconciled.changed:
            log.info(
                "export_changed",
                chunks=len(reconciled.changed),
                first=[c.label for c in reconciled.changed[:MAX_DAMAGE_SHOWN]],
                action="exported again, replacing their files",
            )
        if reconciled.retyped:
            log.warning(
                "export_schema_changed",
                databases=sorted({c.database for c in reconciled.retyped}),
                chunks=len(reconciled.retyped),
                action="a field's type changed in InfluxDB: every chunk of the database is "
                "exported again so that all its files keep one schema",
            )
        # Said by the first plan, then only when there is news: a quiet follow stays quiet.
        if not self._planned_before or new or reconciled.changed or reconciled.retyped:
            self._planned_before = True
            log.info(
                "export_planned",
                databases=sorted({c.database for c in new}),
                chunks=len(new),
                changed=len(reconciled.changed),
                budget_points=self.cfg.chunk_points,
                via=self.reader.mode,
            )

    def nothing_to_export(self) -> str:
        """Why a plan has no chunk, in words: no data at all, or none within start/end."""
        found = self.discovery.found if self.discovery is not None else ()
        where = f"{self.cfg.data_dir} and {self.cfg.wal_dir}"
        if not found:
            return f"no retention policy with data in {where}"
        if not self.extents:
            names = sorted({f"{f.database}/{f.retention_policy}" for f in found})
            return f"{', '.join(names)} hold no points in {where}"
        return (
            "every database's data lies outside influx.start/influx.end "
            "(see the export_range_excludes_data warnings)"
        )

    async def run(self, database: str | None = None, heartbeat: Heartbeat | None = None) -> bool:
        """Run every chunk not ``done`` (of ``database`` if given); True if all are done."""
        if self.discovery is None:  # not planned yet in this process
            await self.plan()
        for _ in range(RETYPE_ROUNDS):
            complete = await self._run_planned(database, heartbeat)
            if not self._widened:
                return complete
            # Data written since the plan gave a field another type: plan again (every chunk
            # of its database goes back to pending) so that its files keep one schema.
            self._widened = False
            await self.plan()
        return await self._run_planned(database, heartbeat)

    async def _run_planned(self, database: str | None, heartbeat: Heartbeat | None) -> bool:
        everything = await self.store.call(load_chunks)
        chosen = [(c, s, n) for c, s, n in everything if database in (None, c.database)]
        todo = [c for c, state, _ in chosen if state not in FINISHED]
        self.progress = Progress(
            total=len(chosen),
            done=len(chosen) - len(todo),
            rows=sum(n for _, s, n in chosen if s == "done"),
            running=True,
        )
        for chunk, state, rows in chosen:
            self.progress.count(chunk.database, "done" if state in FINISHED else "pending", rows)
        self.failures = {}
        self.damaged = {}
        last_log = time.monotonic()
        running: set[asyncio.Task[None]] = set()
        try:
            for chunk in todo:
                while len(running) >= 2:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                if heartbeat is not None:
                    heartbeat.beat(within=600)
                exported = asyncio.Event()
                task = asyncio.create_task(self._run_one(chunk, heartbeat, exported.set))
                running.add(task)
                task.add_done_callback(running.discard)
                if self._overlap:
                    exporting = asyncio.create_task(exported.wait())
                    try:
                        await asyncio.wait({task, exporting}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        exporting.cancel()
                else:
                    await task
                if time.monotonic() - last_log > PROGRESS_LOG_S:
                    last_log = time.monotonic()
                    self._log_progress()
            # Every export has ended: the helper exits while the last chunk is written (a
            # retry of it would connect again).
            await self.reader.close()
            await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()  # stopped (the daemon's shutdown): no chunk is left running
            await asyncio.gather(*running, return_exceptions=True)
            await self.reader.close()
        if todo:
            self._log_progress()
        self.progress.running = False
        return not self.failures and not self.damaged

    def _log_progress(self) -> None:
        log.info(
            "export_progress",
            done=self.progress.done,
            total=self.progress.total,
            failed=self.progress.failed,
            damaged=self.progress.damaged,
            rows=self.progress.rows,
            rows_per_s=self.progress.rows_per_s(),
            eta_s=self.progress.eta_s(),
        )

    def _retrying(self, name: str) -> tenacity.AsyncRetrying:
        """The retry policy of one chunk, or of one WAL probe while planning."""
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(CHUNK_ATTEMPTS),
            wait=tenacity.wait_exponential_jitter(multiplier=2, max=60, jitter=1),
            retry=tenacity.retry_if_exception_type(EXPECTED)
            & tenacity.retry_if_not_exception_type(UnreadableFileError),
            sleep=self._sleep,
            before_sleep=lambda state: log.warning(
                "export_chunk_retry",
                chunk=name,
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
            reraise=True,
        )

    def _broken(self, chunk: Chunk) -> list[Unreadable]:
        if self.discovery is None:
            return []
        return datadir.unreadable(self.discovery).get((chunk.database, chunk.retention_policy), [])

    async def _run_one(
        self,
        chunk: Chunk,
        heartbeat: Heartbeat | None,
        exported: Callable[[], None],
    ) -> None:
        name = chunk.label
        self.progress.in_flight[name] = 0
        await self.store.call(lambda conn: set_state(conn, chunk, "running"))
        discovery = self.discovery or Discovery((), {})

        def seen(lines: int) -> None:
            self.progress.in_flight[name] = lines  # an existing key: the dict keeps its size
            if heartbeat is not None:
                heartbeat.beat(within=600)  # called from the converter's thread

        try:
            async for attempt in self._retrying(name):
                with attempt:
                    result = await run_chunk(
                        self.reader,
                        self.cfg,
                        chunk,
                        discovery,
                        self._broken(chunk),
                        schema=self.schemas.get(chunk.database, {}),
                        progress=seen,
                        threads=self._threads,
                        on_exported=exported,
                    )
        except Exception as exc:
            # Whatever went wrong (a converter bug included) fails this chunk, not the run.
            error = str(exc) if isinstance(exc, EXPECTED) else f"{type(exc).__name__}: {exc}"
            self.failures[name] = error
            self.progress.failed += 1
            self.progress.chunks_this_run += 1
            self.progress.move(chunk.database, "failed")
            await self.store.call(lambda conn: set_state(conn, chunk, "failed", error=error))
            log.error(
                "export_chunk_failed",
                chunk=name,
                error=error,
                action="other chunks continue; rerun to retry",
                exc_info=None if isinstance(exc, EXPECTED) else exc,
            )
            return
        finally:
            self.progress.in_flight.pop(name, None)
        await self._checkpoint(chunk, result)

    async def _checkpoint(self, chunk: Chunk, result: ChunkResult) -> None:
        converted = result.converted
        if result.damage_total:
            state = "damaged"
        else:
            state = "open" if chunk.end > datetime.now(UTC) else "done"
        if converted.widened:
            self._widened = True
            log.warning(
                "export_field_type_changed",
                chunk=chunk.label,
                fields={"/".join(str(p) for p in k): v for k, v in converted.widened.items()},
                action="written since the plan: the database is planned and exported again",
            )
        if converted.rounded:
            log.warning(
                "export_values_rounded",
                chunk=chunk.label,
                values={
                    f"{ident[2]}.{field}": count
                    for (ident, field), count in converted.rounded.items()
                },
                why="integers beyond 2**53 in a field whose other shards hold floats",
            )
        error = damage_summary(result)
        signature = self.signatures.get(key_of(chunk), changes.NOTHING)
        if result.damage_total:
            self.damaged[chunk.label] = [d.describe() for d in result.damage]
        await self.store.call(
            lambda conn: set_state(
                conn,
                chunk,
                state,
                lines=converted.lines,
                rows=converted.points,
                files=len(converted.files),
                error=error,
                damage=[d.to_json() for d in result.damage] if result.damage_total else None,
                signature=signature,
            )
        )
        self.progress.finished(chunk.database, state, converted.lines, converted.points)
        _log_chunk(chunk, result, error, rejected_dir(self.cfg, chunk) / f"{chunk.stem}.txt")


def conflict_json(database: str, conflict: Conflict) -> dict[str, object]:
    """A field whose type differs between shards, as ``status`` and ``export_fields`` show it."""
    return {
        "database": database,
        "measurement": conflict.measurement,
        "field": conflict.field,
        "kinds": list(conflict.kinds),
        "type": conflict.resolved,
        "may_round": conflict.may_round,
    }


def damage_summary(result: ChunkResult) -> str | None:
    """``export_chunks.error`` of a damaged chunk: the first few things skipped, and a count."""
    if not result.damage_total:
        return None
    shown = [d.describe() for d in result.damage[:MAX_DAMAGE_SHOWN]]
    more = result.damage_total - len(shown)
    summary = "influx_inspect skipped: " + "; ".join(shown)
    return summary + (f"; and {more} more (export_chunks.damage)" if more else "")


def _log_chunk(chunk: Chunk, result: ChunkResult, error: str | None, rejects: Path) -> None:
    converted = result.converted
    if result.damage_total:
        log.error(
            "export_chunk_damaged",
            chunk=chunk.label,
            skipped=result.damage_total,
            series=sorted({d.series or d.file for d in result.damage})[:MAX_DAMAGE_SHOWN],
            error=error,
            rows=converted.points,
            action="the rest of the chunk is published; restore the damaged file from a "
            "backup and run `headlined export` to redo it",
        )
    for rp in result.wal_deletes:
        log.warning(
            "export_wal_has_deletes",
            chunk=chunk.label,
            retention_policy=rp,
            action="influx_inspect replays the WAL without its deletes: deleted series may "
            "appear; export again once InfluxDB has written the WAL into TSM",
        )
    if converted.rejected:
        log.warning(
            "export_lines_rejected",
            chunk=chunk.label,
            rejected=converted.rejected,
            where=str(rejects),
        )
    log.debug(
        "export_chunk_done",
        chunk=chunk.label,
        lines=converted.lines,
        rows=converted.points,
        files=len(converted.files),
    )
