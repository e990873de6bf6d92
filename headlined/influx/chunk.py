"""One chunk: exported by influx_inspect (through :mod:`headlined.influx.reader`), converted
while it arrives, judged by what influx_inspect said on stderr, then published.

The line protocol arrives in a pipe that the converter's pivot reads as it comes, so the
export and the conversion overlap and nothing of it reaches the disk. When the pivot gives
up (rare in an export), the chunk is exported again into a temporary file under
``<output_dir>/.work/`` (temporary disk bounded by one chunk, never the database), which the
converter follows as it grows and converts the general way. The converter writes into a
staging folder; only when influx_inspect exited 0, its stderr named nothing this chunk cannot
do without, and the conversion finished, are the files renamed into
``<output_dir>/<db>/<rp>/<measurement>/`` (rejected lines into
``<output_dir>/_rejected/<db>/<rp>/<chunk>.txt``), so a failed or killed chunk never leaves
partial Parquet where queries look.

What influx_inspect skipped decides the chunk's fate: a TSM file it could not open at all
that covers the chunk fails it (nothing is published, the file is named, no retry helps); a
key or block it could not read, or a WAL segment cut short, makes it ``damaged``: the rest is
published and what was skipped is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from headlined import durable, logs
from headlined.config import InfluxConfig
from headlined.influx import convert, report
from headlined.influx.chunkplan import Chunk, to_ns
from headlined.influx.datadir import Discovery, Unreadable, shard_of
from headlined.influx.reader import Exported, InfluxReader
from headlined.influx.schema import MeasurementSchema

log = logs.get("influx_export")

MAX_DAMAGE = 200  # skipped keys kept per chunk; the count says how many more there were
PIPE_SIZE = 1 << 20  # the export's pipe to the converter, as the helper's own (1 MiB)


class ExportError(Exception):
    """A chunk could not be exported; the message says why, for ``export_chunks.error``."""


class UnreadableFileError(ExportError):
    """A TSM file covering the chunk could not be read at all: retrying cannot help."""


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A published chunk: what the converter wrote, and what influx_inspect skipped."""

    converted: convert.ConvertResult
    damage: tuple[report.Skipped, ...]
    damage_total: int  # with the ones past MAX_DAMAGE
    wal_deletes: tuple[str, ...]


def assess(
    said: report.Report,
    chunk: Chunk,
    discovery: Discovery,
    broken: list[Unreadable],
) -> tuple[list[str], list[report.Skipped]]:
    """(why the chunk fails, what it lacks): pure, from influx_inspect's stderr.

    influx_inspect names an unreadable TSM file in every chunk of its retention policy (it
    opens a file before it knows the file's time range); only a file whose time covers this
    chunk fails it. A corrupt WAL segment damages the chunks its shard covers.
    """
    lo, hi = to_ns(chunk.start), to_ns(chunk.end)
    known = {b.path: b for b in broken}
    fatal: list[str] = []
    damage: list[report.Skipped] = []
    for item in said.skipped:
        if item.kind == "file":
            bad = known.get(item.file) or Unreadable(item.file, item.error, None, None)
            if bad.covers(lo, hi):
                fatal.append(f"{item.file}: unreadable TSM file ({item.error})")
        elif item.kind == "wal":
            shard = shard_of(item.file)
            span = discovery.shards.get((chunk.database, chunk.retention_policy, shard or -1))
            if span is None or (span[0] < hi and lo < span[1]):
                damage.append(item)
        else:
            damage.append(item)
    return fatal, damage


async def run_chunk(
    reader: InfluxReader,
    cfg: InfluxConfig,
    chunk: Chunk,
    discovery: Discovery,
    broken: list[Unreadable],
    *,
    schema: Mapping[str, MeasurementSchema],
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
    on_exported: Callable[[], None] | None = None,
) -> ChunkResult:
    """Export and convert one chunk; its files are in place when this returns, and files an
    earlier export of it wrote that this one did not are gone.

    ``broken`` lists the unreadable TSM files of the chunk's retention policy (from
    discovery); ``schema`` the columns of each measurement of its database. ``threads`` bounds
    DuckDB's threads (the daemon uses one, leaving a core to the pollers). ``on_exported``
    is called once influx_inspect has ended (either way).
    """
    work = (
        cfg.output_dir / ".work" / f"{convert.path_segment(chunk.database)}-"
        f"{convert.path_segment(chunk.retention_policy)}-{chunk.stem}"
    )
    shutil.rmtree(work, ignore_errors=True)
    staging = work / "out"
    staging.mkdir(parents=True)
    conversion = functools.partial(
        convert.convert,
        out_dir=staging,
        layout="database",
        file_stem=chunk.stem,
        default_database=chunk.database,
        default_rp=chunk.retention_policy,
        rejected_dir=work / "rejected",
        work_dir=work / "duckdb",
        threads=threads,
        progress=progress,
        schema=schema,
        suffix=convert.STAGED,
    )
    try:
        result, outcome = await _streamed(reader, chunk, work, conversion, on_exported)
        if result is None:
            # The pivot gave up: rare in an influx_inspect export (a multi-field line, a bad
            # value, more points than its memory). A failed export fails the chunk as ever;
            # a whole one is exported again into a file, converted the general way.
            _judge(outcome, chunk, discovery, broken)
            result, outcome = await _through_file(reader, chunk, work, conversion)
        said, damage = _judge(outcome, chunk, discovery, broken)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = await asyncio.to_thread(_publish, staging, cfg.output_dir, chunk)
    await asyncio.to_thread(
        _publish_rejects, work / "rejected", rejected_dir(cfg, chunk), chunk.stem
    )
    shutil.rmtree(work, ignore_errors=True)
    return ChunkResult(
        dataclasses.replace(result, files=files),
        tuple(damage[:MAX_DAMAGE]),
        len(damage),
        said.wal_deletes,
    )


Conversion = Callable[..., convert.ConvertResult]


async def _streamed(
    reader: InfluxReader,
    chunk: Chunk,
    work: Path,
    conversion: Conversion,
    on_exported: Callable[[], None] | None,
) -> tuple[convert.ConvertResult | None, Exported]:
    """Export into a pipe that the converter's pivot reads: no copy of the line protocol on
    disk. No result (nothing written) when the pivot cannot take it: the export is then read
    to its end and discarded, so that it ends as it would have."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # fewer wake-ups; the default 64 KiB works too
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    # The converter opens the pipe by this name (it resolves in this process), which its
    # messages then give, as they gave the file before.
    source = work / "export.lp"
    source.symlink_to(f"/proc/self/fd/{read_end}")
    closed = threading.Lock()
    open_ends = {read_end, write_end}

    def close(fd: int) -> None:
        with closed:
            if fd in open_ends:
                open_ends.discard(fd)
                os.close(fd)

    def ended(_: object) -> None:
        close(write_end)  # the converter reads to the end of what was exported
        if on_exported is not None:
            on_exported()

    exporting = asyncio.create_task(reader.export_into(chunk, write_end))
    exporting.add_done_callback(ended)
    try:
        result = await asyncio.to_thread(conversion, source, pivot_only=True)
    except convert.NoPivotError as why:
        log.info("export_chunk_through_file", chunk=chunk.label, reason=str(why))
        await asyncio.to_thread(_drain, read_end)
        return None, await exporting
    except BaseException:
        # The converter reads no more: with no reader left the export's writes fail at once
        # (EPIPE) instead of waiting on a full pipe for ever.
        close(read_end)
        exporting.cancel()
        await asyncio.gather(exporting, return_exceptions=True)
        raise
    finally:
        close(read_end)
    return result, await exporting


def _drain(fd: int) -> None:
    """Read ``fd`` to its end, discarding."""
    while os.read(fd, PIPE_SIZE):
        pass


async def _through_file(
    reader: InfluxReader, chunk: Chunk, work: Path, conversion: Conversion
) -> tuple[convert.ConvertResult, Exported]:
    """Export into ``export.lp``, which the converter follows as it grows (the general way:
    read twice if the pivot gives up)."""
    exported = work / "export.lp"
    exported.unlink(missing_ok=True)
    exported.touch()  # so that the converter can open it before the first bytes arrive
    finished = threading.Event()  # set once the export has ended: the file is whole
    exporting = asyncio.create_task(reader.export(chunk, exported))
    exporting.add_done_callback(lambda _: finished.set())
    loop = asyncio.get_running_loop()
    removals: list[asyncio.Task[None]] = []

    def remove_export() -> None:
        # Freeing a large file takes a while (0.1 s per 117 MB here): done on another thread
        # while DuckDB writes the Parquet.
        loop.call_soon_threadsafe(
            lambda: removals.append(asyncio.create_task(asyncio.to_thread(exported.unlink)))
        )

    try:
        # The converter reads the file while the export writes it: the two overlap.
        result = await asyncio.to_thread(
            conversion,
            exported,
            growing=lambda: not finished.is_set(),
            source_done=remove_export,
        )
        await asyncio.gather(*removals)
        return result, await exporting
    except BaseException:
        exporting.cancel()
        finished.set()  # a converter still reading stops at the end of the file
        await asyncio.gather(exporting, *removals, return_exceptions=True)
        raise


def _judge(
    outcome: Exported, chunk: Chunk, discovery: Discovery, broken: list[Unreadable]
) -> tuple[report.Report, list[report.Skipped]]:
    """The chunk's report and damage, or the ExportError that fails it."""
    if outcome.exit_code != 0:
        raise ExportError(
            f"influx_inspect {report.describe_exit(outcome.exit_code)}: "
            f"{outcome.stderr.strip()[-4000:] or '(no message)'}"
        )
    said = report.parse(outcome.stderr)
    fatal, damage = assess(said, chunk, discovery, broken)
    if fatal:
        raise UnreadableFileError(
            "; ".join(fatal) + ": the chunk's data in it cannot be exported; restore the "
            "file from a backup (influx_inspect verify checks TSM files), then export again"
        )
    return said, damage


def rejected_dir(cfg: InfluxConfig, chunk: Chunk) -> Path:
    """Where the lines of a chunk that could not be converted are kept."""
    return (
        cfg.output_dir
        / "_rejected"
        / convert.path_segment(chunk.database)
        / convert.path_segment(chunk.retention_policy)
    )


def _publish_rejects(staged_dir: Path, final_dir: Path, stem: str) -> None:
    """Move the chunk's rejected lines into place, or remove those of an earlier attempt."""
    staged, final = staged_dir / f"{stem}.txt", final_dir / f"{stem}.txt"
    if staged.exists():
        final_dir.mkdir(parents=True, exist_ok=True)
        durable.publish(staged, final)
    elif final.exists():
        final.unlink()
        durable.fsync(final_dir)


def _publish(staging: Path, output_dir: Path, chunk: Chunk) -> list[Path]:
    """Rename every staged file to its final place (same file system: atomic), then remove
    the chunk's files of measurements this export no longer has (deleted in InfluxDB).

    Each file is swapped whole, so a reader of one measurement sees the chunk's old rows or
    its new ones, never both or neither.
    """
    published = []
    for staged in sorted(staging.rglob(f"*{convert.STAGED}")):
        relative = staged.relative_to(staging)
        final = output_dir / relative.parent / convert.published_name(relative.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        durable.publish(staged, final)
        published.append(final)
    rp_dir = (
        output_dir
        / convert.path_segment(chunk.database)
        / convert.path_segment(chunk.retention_policy)
    )
    kept = set(published)
    for old in sorted(rp_dir.glob(f"*/{chunk.stem}*.parquet")):
        if old not in kept and _of_stem(old.name, chunk.stem):
            old.unlink()
            durable.fsync(old.parent)
    return published


def _of_stem(name: str, stem: str) -> bool:
    """Whether ``name`` is a file the converter writes for ``stem`` (``stem[-N].parquet``)."""
    rest = name.removeprefix(stem).removesuffix(".parquet")
    return rest == "" or (rest.startswith("-") and rest[1:].isdigit())
