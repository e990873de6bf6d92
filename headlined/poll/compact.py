"""Merging a closed day's flushes of one source into one Parquet file.

The flush writes a file per source and minute (``parquet.py``): about 10,000 files a day
with seven feeds, millions a year, which every reader of the tree (DuckDB's glob, the lake's
cycle) lists and opens. Once a day is closed (``CLOSED_AFTER_DAYS`` old in UTC: late
records of the day before still come in), its folder's flushes are merged into one
``part-<first id>-<last id>.parquet`` holding the same rows in id order; a late record's
flush into a closed day is merged with it on the next day's pass.

Readers see the day's flushes or the merged file, never both: the merged file is built in a
work folder outside the tree (``<parquet_dir>/.compact/``: DuckDB's and polars' ``**`` globs
also walk hidden folders), with hard links to any file it does not merge, made durable, and
swapped with the day's folder in one ``renameat2(RENAME_EXCHANGE)``, so the day's folder
always exists with one content or the other; the old folder, now in the work folder, is then
deleted. A reader that listed the day's files just before the swap finds them gone when it
opens them: DuckDB then fails ("Cannot open file"), or, having checked each listed file
before reading, leaves that day out of a wider glob (README: once per source and day, at its
merge; the lake's snapshots and the DuckDB state have no such moment). The work folder is
always safe to delete: before a swap it holds an unfinished copy, after it the merged
flushes; it is emptied at the first pass after a start. File systems without
RENAME_EXCHANGE (NFS, some FUSE) are left unmerged, said once.

Runs only between flushes (the caller holds the flush lock and has just finished a flush, so
no flush is pending or being redone) on a DuckDB connection of its own.
"""

from __future__ import annotations

import ctypes
import datetime
import errno
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from headlined import durable, logs, sql
from headlined.poll.parquet import flush_range

log = logs.get("compact")

CLOSED_AFTER_DAYS = 2  # a date=D folder is merged once today (UTC) is at least D + 2
WORK_DIR = ".compact"  # in parquet_dir, beside messages/
# Leftovers of flushes by earlier versions, which staged them inside messages/.
_OLD_FLUSH_STAGING = ".tmp-"
_DATE_DIR = re.compile(r"date=(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})")

# The merged file's row groups: about 4 MiB of uncompressed data each (row_group_rows).
ROW_GROUP_BYTES = 4 << 20
MIN_GROUP_ROWS, MAX_GROUP_ROWS = 1_024, 122_880
# The merging DuckDB's ceiling: a merge that needs more fails (the day stays unmerged, said)
# rather than growing the daemon.
MEMORY_LIMIT = "256MB"

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


class CompactError(Exception):
    """A partition could not be merged; its files are as they were."""


class UnsupportedError(CompactError):
    """The file system cannot swap two folders atomically (no RENAME_EXCHANGE)."""


@dataclass(frozen=True)
class Merge:
    """What merging one partition folder takes: its flushes, in id order, into ``name``;
    ``kept``, the files it leaves as they are (not named like a flush)."""

    flushes: tuple[str, ...]
    kept: tuple[str, ...]
    name: str


@dataclass(frozen=True)
class Merged:
    """One partition merged: how many files became one, and the rows they hold."""

    folder: Path
    files: int
    rows: int
    bytes_before: int
    bytes_after: int


def closed(date: datetime.date, today: datetime.date) -> bool:
    """Whether the partition of ``date`` is closed on ``today``: late records of a day
    keep arriving for a while after midnight, so a day is merged from its second day on."""
    return (today - date).days >= CLOSED_AFTER_DAYS


def plan_merge(names: list[str]) -> Merge | None:
    """The merge of a partition folder holding the visible .parquet files ``names``, or
    None when there is nothing to merge (fewer than two flushes)."""
    spans: list[tuple[int, int, str]] = []
    kept: list[str] = []
    for name in names:
        span = flush_range(name)
        if span is None:
            kept.append(name)
        else:
            spans.append((*span, name))
    if len(spans) < 2:
        return None
    spans.sort()
    first, last = spans[0][0], max(end for _, end, _ in spans)
    name = f"part-{first:012d}-{last:012d}.parquet"
    if name in kept:
        return None  # a foreign file already has the merged name: leave the folder alone
    return Merge(tuple(n for _, _, n in spans), tuple(sorted(kept)), name)


def partition_date(folder: Path) -> datetime.date | None:
    """The date of a ``date=<YYYY-MM-DD>`` folder, None for any other name."""
    match = _DATE_DIR.fullmatch(folder.name)
    if match is None:
        return None
    try:
        return datetime.date.fromisoformat(match["date"])
    except ValueError:
        return None


def closed_partitions(root: Path, today: datetime.date) -> Iterator[Path]:
    """The closed ``source=*/date=*`` folders under ``root`` (``<parquet_dir>/messages``)
    with something to merge, oldest day first within each source."""
    for source_dir in _subdirs(root, "source="):
        for date_dir in _subdirs(source_dir, "date="):
            date = partition_date(date_dir)
            if date is not None and closed(date, today) and _mergeable(date_dir):
                yield date_dir


def remove_leftovers(root: Path) -> list[Path]:
    """Delete what interrupted merges (and flushes of earlier versions) left around the
    messages tree ``root``; return what was deleted. Only between flushes."""
    removed = [root.parent / WORK_DIR] if (root.parent / WORK_DIR).exists() else []
    removed += [e for e in _entries(root) if e.name.startswith(_OLD_FLUSH_STAGING)]
    for leftover in removed:
        shutil.rmtree(leftover)
    for folder in {leftover.parent for leftover in removed}:
        durable.fsync(folder)
    return removed


def merge_partition(
    conn: duckdb.DuckDBPyConnection,
    folder: Path,
    staging: Path,
    stop: Callable[[], bool] = lambda: False,
) -> Merged | None:
    """Merge the flushes of partition ``folder`` into one file, built in the folder
    ``staging`` (on the same file system, outside the tree; made afresh), which then takes
    the old folder and is deleted (see the module's doc); None if there was nothing to merge
    or ``stop`` said so before the swap."""
    merge = plan_merge([path.name for path in _parquet_files(folder)])
    if merge is None:
        return None
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        before, rows = _copy(conn, folder, merge, staging / merge.name)
        for name in merge.kept:
            os.link(folder / name, staging / name)
        durable.fsync(staging)
        if stop():
            shutil.rmtree(staging)
            return None
        exchange(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    durable.fsync(folder.parent)
    durable.fsync(staging.parent)
    # The old folder now has the work folder's name: gone with it are the merged flushes.
    shutil.rmtree(staging)
    after = (folder / merge.name).stat().st_size
    return Merged(folder, len(merge.flushes), rows, before, after)


def _copy(
    conn: duckdb.DuckDBPyConnection, folder: Path, merge: Merge, out: Path
) -> tuple[int, int]:
    """Write the flushes' rows, in id order, into ``out`` (published durably); return the
    flushes' bytes and the rows written, checked against the flushes' footers."""
    paths = [folder / name for name in merge.flushes]
    files = ", ".join(sql.literal(str(path)) for path in paths)
    try:
        # DuckDB matches the files' columns by name, but takes the first file's as the
        # columns: another set (an older flush lacking a column, a newer one with one more)
        # needs union_by_name, which costs ~21 MiB more on a busy day (bench/RESULTS.md).
        schemas = conn.execute(
            "SELECT count(DISTINCT names) FROM (SELECT list(name ORDER BY name) AS names "
            f"FROM parquet_schema([{files}]) GROUP BY file_name)"
        ).fetchone()
        by_name = ", union_by_name = true" if schemas is None or schemas[0] != 1 else ""
        # Read in the order given (one thread, insertion order kept): each flush is in id
        # order and the flushes are sorted by id, so no sort (no memory for a busy day).
        source = f"read_parquet([{files}], hive_partitioning = false{by_name})"
        footers = conn.execute(
            "SELECT sum(row_group_num_rows) FILTER (WHERE column_id = 0)::BIGINT, "
            f"sum(total_uncompressed_size)::BIGINT FROM parquet_metadata([{files}])"
        ).fetchone()
        want, size = (int(x or 0) for x in footers) if footers else (0, 0)
        written = durable.temporary(out)
        copied = conn.execute(
            # payload as plain text: flushes of older versions wrote Parquet's JSON type.
            f"COPY (SELECT * REPLACE (payload::VARCHAR AS payload) FROM {source}) TO "
            f"{sql.literal(str(written))} "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group_rows(want, size)})"
        ).fetchone()
    except duckdb.Error as why:
        raise CompactError(f"{folder}: cannot merge its flushes: {why}") from why
    got = int(copied[0]) if copied else 0
    if got != want:
        raise CompactError(f"{folder}: merged {got} rows, its flushes hold {want}; left as is")
    durable.publish(written, out)
    return sum(path.stat().st_size for path in paths), got


def row_group_rows(rows: int, uncompressed_bytes: int) -> int:
    """Rows per row group of a merged file whose flushes hold ``rows`` rows in
    ``uncompressed_bytes``: about ROW_GROUP_BYTES of data each, since the writer holds a whole
    row group in memory (DuckDB's default of 122,880 rows of a busy feed's payloads took
    over 100 MB more RSS: bench/RESULTS.md)."""
    per_row = max(1, uncompressed_bytes // max(1, rows))
    return max(MIN_GROUP_ROWS, min(MAX_GROUP_ROWS, ROW_GROUP_BYTES // per_row))


def exchange(a: Path, b: Path) -> None:
    """Swap folders ``a`` and ``b`` atomically (``renameat2`` with ``RENAME_EXCHANGE``);
    UnsupportedError where the file system or C library cannot."""
    try:
        renameat2 = _libc().renameat2
    except AttributeError:
        raise UnsupportedError("the C library has no renameat2") from None
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise UnsupportedError(
                f"{b.parent}: the file system cannot swap two folders atomically "
                f"(renameat2 RENAME_EXCHANGE: {os.strerror(code)})"
            )
        raise OSError(code, os.strerror(code), str(a), None, str(b))


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC  # noqa: PLW0603  loaded once, on first use (never where no merge runs)
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _entries(directory: Path) -> list[Path]:
    try:
        return sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _subdirs(directory: Path, prefix: str) -> Iterator[Path]:
    for entry in _entries(directory):
        if entry.name.startswith(prefix) and entry.is_dir():
            yield entry


def _parquet_files(folder: Path) -> list[Path]:
    return [
        entry
        for entry in _entries(folder)
        if not entry.name.startswith(".") and entry.name.endswith(".parquet") and entry.is_file()
    ]


def _mergeable(folder: Path) -> bool:
    return plan_merge([path.name for path in _parquet_files(folder)]) is not None


class Compactor:
    """Merges the closed partitions of one messages tree a few at a time.

    The tree is searched once a UTC day (and at the first call): every closed partition with
    two or more flushes is queued, which also takes in late flushes into older days. Each
    ``run`` merges queued partitions until ``budget_s`` is spent.
    """

    def __init__(self, root: Path, clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.root = root
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._work = root.parent / WORK_DIR
        self._started = False
        self._searched: datetime.date | None = None
        self._queue: list[Path] = []
        self.unsupported = False
        self.days_merged = 0  # since this compactor started (the daemon's figures)
        self.failures = 0

    def run(self, budget_s: float, stop: Callable[[], bool] = lambda: False) -> list[Merged]:
        """Merge queued closed partitions for about ``budget_s`` seconds (at least one);
        return what was merged. Blocking: run it on a thread, between flushes."""
        if self.unsupported:
            return []
        today = self._clock().date()
        if self._searched != today:
            try:
                if not self._started:
                    for leftover in remove_leftovers(self.root):
                        log.info("compaction_leftover_removed", folder=str(leftover))
                    self._started = True
                self._queue = list(closed_partitions(self.root, today))
            except OSError as why:
                self.failures += 1
                log.error("compaction_failed", folder=str(self.root), error=str(why))
                return []
            self._searched = today
        merged: list[Merged] = []
        if not self._queue:
            return merged
        deadline = time.monotonic() + budget_s
        conn = duckdb.connect(config={"threads": 1, "memory_limit": MEMORY_LIMIT})
        try:
            while self._queue and not stop():
                folder = self._queue.pop(0)
                staging = self._work / folder.parent.name / folder.name
                try:
                    done = merge_partition(conn, folder, staging, stop)
                except UnsupportedError as why:
                    self.unsupported = True
                    log.warning(
                        "compaction_unsupported",
                        error=str(why),
                        action="each flush stays a file of its own: put parquet_dir on a "
                        "local file system (ext4, xfs, btrfs) to have closed days merged",
                    )
                    break
                except (CompactError, OSError) as why:
                    # This partition stays as it was; the next day's search tries it again.
                    self.failures += 1
                    log.error("compaction_failed", folder=str(folder), error=str(why))
                    continue
                if done is not None:
                    self.days_merged += 1
                    merged.append(done)
                    log.info(
                        "messages_compacted",
                        folder=str(folder),
                        files=done.files,
                        rows=done.rows,
                        bytes_before=done.bytes_before,
                        bytes_after=done.bytes_after,
                    )
                if time.monotonic() >= deadline:
                    break
        finally:
            conn.close()
        return merged
