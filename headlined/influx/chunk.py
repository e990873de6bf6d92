"""One chunk: exported by influx_inspect (through :mod:`headlined.influx.reader`), converted
while it arrives, judged by what influx_inspect said on stderr, then published.

The line protocol arrives in a temporary file under ``<output_dir>/.work/`` (so temporary disk
is bounded by one chunk, never the database), and the converter follows that file as it
grows, so the export and the conversion overlap; the conversion ends at the file's end once
the export has ended. The converter writes into a staging folder; only when influx_inspect
exited 0, its stderr named nothing this chunk cannot do without, and the conversion finished,
are the files renamed into ``<output_dir>/<db>/<rp>/<measurement>/`` (rejected lines into
``<output_dir>/_rejected/<db>/<rp>/<chunk>.txt``), so a failed or killed chunk never leaves
partial Parquet where queries look.

What influx_inspect skipped decides the chunk's fate: a TSM file it could not open at all
that covers the chunk fails it (nothing is published, the file is named, no retry helps); a
key or block it could not read, or a WAL segment cut short, makes it ``damaged``: the rest is
published and what was skipped is recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
    exported = work / "export.lp"
    exported.touch()  # so that the converter can open it before the first bytes arrive
    finished = threading.Event()  # set once the export has ended: the file is whole

    def ended(_: object) -> None:
        finished.set()
        if on_exported is not None:
            on_exported()

    exporting = asyncio.create_task(reader.export(chunk, exported))
    exporting.add_done_callback(ended)
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
            schema=schema,
        )
        await asyncio.gather(*removals)
        said, damage = _judge(await exporting, chunk, discovery, broken)
    except BaseException:
        exporting.cancel()
        finished.set()  # a converter still reading stops at the end of the file
        await asyncio.gather(exporting, *removals, return_exceptions=True)
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
    for staged in sorted(staging.rglob("*.parquet")):
        final = output_dir / staged.relative_to(staging)
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
