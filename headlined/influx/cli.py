"""``headlined export``: run the InfluxDB export now, in the foreground, with a progress bar.

With no daemon running it does the work itself, on the same checkpoints the daemon uses.
While the daemon runs (it holds the DuckDB file), it hands the work to the daemon through
the control socket and follows its progress instead of fighting it for the file.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from headlined import control, logs
from headlined.config import InfluxConfig, Loaded
from headlined.influx.reader import InfluxReader

if TYPE_CHECKING:
    from tqdm import tqdm

    from headlined.influx.exporter import Exporter
    from headlined.influx.spawn import Early

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
REFRESH_S = 0.5
MAX_LISTED = 10  # skipped series listed per damaged chunk


def _bar(total: int) -> tqdm[Any]:
    from tqdm import tqdm  # noqa: PLC0415  imported once the helper is discovering (see run)

    # A thread lock: tqdm's default also makes a multiprocessing one (a semaphore, and its
    # imports: ~7 ms of a run), which bars of one process never need.
    tqdm.set_lock(threading.RLock())
    return tqdm(
        total=total,
        unit="chunk",
        dynamic_ncols=True,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} chunks [{elapsed}<{remaining}] {postfix}",
    )


def _above_bar(line: str, stream: TextIO) -> None:
    """A log line printed above the progress bar, which is drawn again below it."""
    from tqdm import tqdm  # noqa: PLC0415  imported once the helper is discovering (see run)

    tqdm.write(line, file=stream)


def _describe(rows: int, lines: int, rate: float | None) -> str:
    speed = f"{rate:,.0f} rows/s" if rate else "- rows/s"
    return f"{rows:,} rows, {lines:,} lines, {speed}"


def run(loaded: Loaded, database: str | None, early: Early | None = None) -> int:
    """Entry point of ``headlined export``; ``early``: a helper started before the config was
    read (see spawn.Early), used if the config wants it so."""
    cfg = loaded.config
    logs.configure(cfg.log_level)  # the config's level and format, secrets redacted
    if cfg.influx is None:
        print(f"{loaded.path}: no influx: section: nothing to export", file=sys.stderr)
        return EXIT_USAGE
    if database is not None and cfg.influx.databases and database not in cfg.influx.databases:
        print(f"{loaded.path}: influx.databases does not list {database!r}", file=sys.stderr)
        return EXIT_USAGE
    sock = control.socket_path(cfg.state_dir)
    if control.daemon_listening(sock):
        return _follow_daemon(sock, database)
    # In the foreground the helper is not niced (see Exporter). It starts (a Python of its
    # own, or the early one) and discovers InfluxDB's files while this process imports DuckDB,
    # the converter and tqdm and opens its state file: on a sparse database discovery takes
    # about as long.
    reader = InfluxReader(cfg.influx, polite=False, early=early)
    reader.begin_discovery()
    return asyncio.run(_run_here(cfg.database_path, cfg.influx, database, reader))


async def _run_here(
    database_path: Path, influx: InfluxConfig, database: str | None, reader: InfluxReader
) -> int:
    # Imported only once the helper is discovering (see run): DuckDB, the converter. The state
    # file opens on the store's thread while the converter imports (~30 ms of each).
    from headlined.store import Store, StoreError  # noqa: PLC0415  as said

    store = Store(database_path)
    opening = asyncio.ensure_future(store.open())
    await asyncio.sleep(0)  # the open starts
    from headlined.influx.datadir import DataDirError, InfluxFilesError  # noqa: PLC0415  as said
    from headlined.influx.exporter import EXPECTED, Exporter  # noqa: PLC0415  as said
    from headlined.influx.tables import load_chunks  # noqa: PLC0415  as said

    # What the imports and the config made lives until the end: a full collection in a chunk's
    # tail walked all of it (14 ms) to find nothing.
    gc.freeze()
    # In the foreground: as fast as it goes.
    exporter = Exporter(influx, store, overlap=True, reader=reader)
    try:
        await opening
    except StoreError as exc:
        print(f"headlined export: {exc}", file=sys.stderr)
        await exporter.close()
        return EXIT_FAILURE
    try:
        await exporter.plan()
        planned = await store.call(load_chunks)
        total = len([c for c, _, _ in planned if database in (None, c.database)])
        if total == 0:
            where = f" for {database}" if database else ""
            print(
                f"headlined export: nothing to export{where}: {exporter.nothing_to_export()}",
                file=sys.stderr,
            )
            return EXIT_OK
        with _bar(total) as bar, logs.lines_through(_above_bar):
            watcher = asyncio.create_task(_watch(exporter, bar))
            try:
                complete = await exporter.run(database)
            finally:
                watcher.cancel()
            _refresh(exporter, bar)
    except DataDirError as exc:
        print(f"headlined export: {exc}", file=sys.stderr)
        if exc.kind == "unreadable" and exporter.reader.mode == "local":
            print(
                "InfluxDB keeps each database in a folder only its own user may read: run "
                "this as root, or enable headlined-inspect.socket (README, Install)",
                file=sys.stderr,
            )
        return EXIT_FAILURE
    except (*EXPECTED, InfluxFilesError) as exc:
        print(f"headlined export: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await exporter.close()
        await store.close()
    return _report(exporter.failures, exporter.damaged, exporter.progress.rows, complete)


def _refresh(exporter: Exporter, bar: tqdm[Any]) -> None:
    p = exporter.progress
    if not p.total:
        return  # not planned yet
    bar.total = p.total
    bar.n = p.done + p.failed + p.damaged
    bar.set_postfix_str(
        _describe(p.rows, p.lines + p.lines_in_chunk, p.rows_per_s()), refresh=False
    )
    bar.refresh()


async def _watch(exporter: Exporter, bar: tqdm[Any]) -> None:
    while True:
        _refresh(exporter, bar)
        await asyncio.sleep(REFRESH_S)


def _report(
    failures: dict[str, str], damaged: dict[str, list[str]], rows: int, complete: bool
) -> int:
    if complete:
        print(f"export complete: {rows:,} rows", file=sys.stderr)
        return EXIT_OK
    print(
        f"export incomplete: {rows:,} rows; {len(failures)} chunk(s) failed, "
        f"{len(damaged)} damaged",
        file=sys.stderr,
    )
    for name, error in sorted(failures.items()):
        print(f"  failed   {name}: {error}", file=sys.stderr)
    for name, skipped in sorted(damaged.items()):
        print(f"  damaged  {name}: influx_inspect skipped {len(skipped)}:", file=sys.stderr)
        for line in skipped[:MAX_LISTED]:
            print(f"             {line}", file=sys.stderr)
        if len(skipped) > MAX_LISTED:
            print(f"             … {len(skipped) - MAX_LISTED} more", file=sys.stderr)
    print(
        "a damaged chunk's other data is published. Fix the cause (restore a damaged file "
        "from a backup) and run `headlined export` again: done chunks are kept",
        file=sys.stderr,
    )
    return EXIT_FAILURE


def _follow_daemon(
    sock: Path, database: str | None, sleep: Callable[[float], None] = time.sleep
) -> int:
    try:
        reply = control.request(sock, {"cmd": "export", "database": database})
    except control.ControlError as exc:
        print(f"headlined export: the running daemon refused: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    how = "started in" if reply.get("started") else "already running in"
    print(
        f"headlined export: the daemon holds the state file; export {how} the daemon "
        "(pid from `headlined status`), following its progress. Ctrl-C stops following, "
        "not the export.",
        file=sys.stderr,
    )
    with _bar(0) as bar:
        while True:
            status = control.request(sock, {"cmd": "status"})
            figures = status.get("export", {})
            chosen = {db: f for db, f in figures.items() if database in (None, db)}
            total = sum(sum(f["chunks"].values()) for f in chosen.values())
            finished = sum(
                sum(f["chunks"].get(state, 0) for state in ("done", "failed", "damaged"))
                for f in chosen.values()
            )
            rows = sum(f["rows"] for f in chosen.values())
            rate = next((f.get("rows_per_s") for f in chosen.values()), None)
            bar.total = total
            bar.n = finished
            bar.set_postfix_str(_describe(rows, 0, rate), refresh=False)
            bar.refresh()
            if status.get("export_waiting"):
                bar.close()
                print(
                    f"headlined export: the daemon cannot read InfluxDB's files: "
                    f"{status['export_waiting']} (it keeps looking; see journalctl -u headlined)",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            # The daemon marks the export running before it answers the request: once it
            # stops, this run is over, whether it had chunks or none.
            if not status.get("export_running"):
                break
            sleep(REFRESH_S)
    failures = status.get("export_failures", {})
    damaged = status.get("export_damaged", {})
    if total == 0:
        print(
            "headlined export: nothing to export: the daemon found no data (see its "
            "export_planned and export_range_excludes_data events)",
            file=sys.stderr,
        )
        return EXIT_OK
    return _report(failures, damaged, rows, not failures and not damaged)
