"""The ``influx_inspect export`` adapter: one chunk, exported to a file while it is converted.

influx_inspect writes the chunk's line protocol to a temporary file under
``<output_dir>/.work/`` (so temporary disk is bounded by one chunk, never the database), and
the converter follows that file as it grows, so the export and the conversion overlap; the
conversion ends at the file's end once influx_inspect has exited. (A named pipe would overlap
them too, but a small export can finish and close the pipe before the reader opened it,
losing its data; and the converter's fast path needs a file it can read again.)
The converter writes into a staging folder; only when influx_inspect exited 0 and the
conversion finished are the files renamed into ``<output_dir>/<db>/<rp>/<measurement>/``
(rejected lines into ``<output_dir>/_rejected/<db>/<rp>/<chunk>.txt``), so a failed or killed
chunk never leaves partial Parquet where queries look.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from headlined import convert, durable, logs
from headlined.chunkplan import Chunk
from headlined.config import InfluxConfig

log = logs.get("influx_export")

STDERR_KEEP = 4000  # the tail of influx_inspect's messages kept for the error column
_TIMESTAMP = re.compile(rb" (-?\d+)\s*$")


class ExportError(Exception):
    """A chunk could not be exported; the message says why, for ``export_chunks.error``."""


@dataclass(frozen=True, slots=True)
class Inspect:
    """A usable influx_inspect binary and what its ``export`` supports."""

    path: str
    lponly: bool


def find_inspect(name: str) -> Inspect:
    """Resolve the binary and detect ``-lponly`` (influx_inspect ≥ 1.8.3) from ``export -h``."""
    path = shutil.which(name)
    if path is None:
        raise ExportError(f"influx_inspect not found: {name!r} (influx.inspect) is not on PATH")
    try:
        probe = subprocess.run(
            [path, "export", "-h"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{path} export -h failed: {exc}") from None
    usage = probe.stdout + probe.stderr
    if "-datadir" not in usage:
        raise ExportError(f"{path} does not look like influx_inspect: {usage[:200]!r}")
    return Inspect(path, "-lponly" in usage)


def _low_priority() -> list[str]:
    """nice/ionice prefixes: an export must never starve the pollers or influxd."""
    prefix = []
    if shutil.which("nice"):
        prefix += ["nice", "-n", "10"]
    if shutil.which("ionice"):
        prefix += ["ionice", "-c", "2", "-n", "7"]
    return prefix


def export_argv(inspect: Inspect, cfg: InfluxConfig, chunk: Chunk, out: Path) -> list[str]:
    """The command line of one chunk's export."""
    start, end = chunk.inspect_range()
    argv = [
        *_low_priority(),
        inspect.path,
        "export",
        "-datadir",
        str(cfg.data_dir),
        "-waldir",
        str(cfg.wal_dir),
        "-database",
        chunk.database,
        "-retention",
        chunk.retention_policy,
        "-start",
        start,
        "-end",
        end,
        "-out",
        str(out),
    ]
    if inspect.lponly:
        argv.append("-lponly")
    return argv


async def run_chunk(
    inspect: Inspect,
    cfg: InfluxConfig,
    chunk: Chunk,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
    *,
    on_exported: Callable[[], None] | None = None,
) -> convert.ConvertResult:
    """Export and convert one chunk; its files are in place when this returns.

    ``threads`` bounds DuckDB's threads (the daemon uses one, leaving a core to the pollers).
    ``on_exported`` is called once influx_inspect has exited (whether it succeeded or not).
    """
    work = (
        cfg.output_dir / ".work" / f"{convert.path_segment(chunk.database)}-"
        f"{convert.path_segment(chunk.retention_policy)}-{chunk.stem}"
    )
    shutil.rmtree(work, ignore_errors=True)
    staging = work / "out"
    staging.mkdir(parents=True)
    exported = work / "export.lp"
    exported.touch()  # so that the converter can open it before influx_inspect writes to it
    finished = threading.Event()  # set once influx_inspect has exited: the file is whole
    try:
        proc = await asyncio.create_subprocess_exec(
            *export_argv(inspect, cfg, chunk, exported),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ExportError(f"cannot start {inspect.path}: {exc}") from None

    async def exit_code() -> int:
        try:
            return await proc.wait()
        finally:
            finished.set()
            if on_exported is not None:
                on_exported()

    exited = asyncio.create_task(exit_code())
    stderr_tail = asyncio.create_task(_stderr_tail(proc))
    loop = asyncio.get_running_loop()
    removals: list[asyncio.Task[None]] = []

    def remove_export() -> None:
        # Freeing a large file takes a while (0.1 s per 117 MB here): done on another thread
        # while DuckDB writes the Parquet.
        loop.call_soon_threadsafe(
            lambda: removals.append(asyncio.create_task(asyncio.to_thread(exported.unlink)))
        )

    try:
        # The converter reads the file while influx_inspect writes it: the two overlap.
        result = await asyncio.to_thread(
            convert.convert,
            exported,
            staging,
            layout="database",
            file_stem=chunk.stem,
            default_database=chunk.database,
            default_rp=chunk.retention_policy,
            rejected_dir=work / "rejected",
            work_dir=work / "duckdb",
            threads=threads,
            progress=progress,
            growing=lambda: not finished.is_set(),
            source_done=remove_export,
        )
        await asyncio.gather(*removals)
        stderr = await stderr_tail
        _check_exit(await exited, stderr)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        finished.set()  # a converter still reading stops at the end of the file
        await asyncio.gather(*removals, return_exceptions=True)
        shutil.rmtree(work, ignore_errors=True)
        raise
    if "error" in stderr.lower() and "skipped missing file" not in stderr:
        log.warning(
            "influx_inspect_warned",
            chunk=chunk.stem,
            database=chunk.database,
            message=stderr.strip()[-500:],
        )
    files = await asyncio.to_thread(_publish, staging, cfg.output_dir)
    await asyncio.to_thread(
        _publish_rejects, work / "rejected", rejected_dir(cfg, chunk), chunk.stem
    )
    shutil.rmtree(work, ignore_errors=True)
    return dataclasses.replace(result, files=files)


def rejected_dir(cfg: InfluxConfig, chunk: Chunk) -> Path:
    """Where the lines of a chunk that could not be converted are kept."""
    return (
        cfg.output_dir
        / "_rejected"
        / convert.path_segment(chunk.database)
        / convert.path_segment(chunk.retention_policy)
    )


def describe_exit(code: int) -> str:
    """``exited 1``, or ``was killed by SIGKILL`` for a negative (signal) return code."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


def _check_exit(code: int, stderr: str) -> None:
    if code != 0:
        raise ExportError(
            f"influx_inspect {describe_exit(code)}: {stderr.strip() or '(no message)'}"
        )


async def _stderr_tail(proc: asyncio.subprocess.Process) -> str:
    stream = proc.stderr
    tail = b""
    while stream is not None and (chunk := await stream.read(65536)):
        tail = (tail + chunk)[-STDERR_KEEP:]
    return tail.decode("utf-8", "replace")


def _publish_rejects(staged_dir: Path, final_dir: Path, stem: str) -> None:
    """Move the chunk's rejected lines into place, or remove those of an earlier attempt."""
    staged, final = staged_dir / f"{stem}.txt", final_dir / f"{stem}.txt"
    if staged.exists():
        final_dir.mkdir(parents=True, exist_ok=True)
        staged.replace(final)
    elif final.exists():
        final.unlink()
    else:
        return
    durable.fsync(final_dir)


def _publish(staging: Path, output_dir: Path) -> list[Path]:
    """Rename every staged file to its final place (same file system: atomic)."""
    published = []
    for staged in sorted(staging.rglob("*.parquet")):
        final = output_dir / staged.relative_to(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(final)
        durable.fsync(final.parent)
        published.append(final)
    return published


async def wal_range(
    inspect: Inspect, cfg: InfluxConfig, database: str, rp: str
) -> tuple[int, int] | None:
    """The time range of a retention policy's WAL data, read by influx_inspect itself.

    Pointing ``-datadir`` at an empty folder makes it export the WAL alone, which is small
    (influxd turns it into TSM past 25 MiB by default).
    """
    work = cfg.output_dir / ".work" / "wal-probe"
    shutil.rmtree(work, ignore_errors=True)
    empty = work / "empty"
    empty.mkdir(parents=True)
    out = work / "wal.lp"
    argv = [
        inspect.path,
        "export",
        "-datadir",
        str(empty),
        "-waldir",
        str(cfg.wal_dir),
        "-database",
        database,
        "-retention",
        rp,
        "-out",
        str(out),
    ]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip()[-500:] or "(no message)"
            raise ExportError(
                f"reading the WAL of {database}/{rp}: influx_inspect "
                f"{describe_exit(proc.returncode or 0)}: {message}"
            )
        return await asyncio.to_thread(_timestamp_range, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timestamp_range(path: Path) -> tuple[int, int] | None:
    low: int | None = None
    high: int | None = None
    with path.open("rb") as f:
        for line in f:
            if line.startswith((b"#", b"CREATE ")):
                continue
            match = _TIMESTAMP.search(line)
            if match:
                ts = int(match.group(1))
                low = ts if low is None else min(low, ts)
                high = ts if high is None else max(high, ts)
    return None if low is None or high is None else (low, high)
