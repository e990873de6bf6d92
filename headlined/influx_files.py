"""What an InfluxDB 1.x data directory holds: databases, retention policies, time ranges.

Read straight from the files (influxd need not run): ``<data_dir>/<db>/<rp>/<shard>/*.tsm``.
A TSM file ends with the offset of its index; each index entry lists, per block, the block's
min and max time, so the data's time range comes from the index alone, a small part of the
file. WAL segments (``<wal_dir>/<db>/<rp>/<shard>/_*.wal``) hold the newest writes,
snappy-compressed; their range is read by ``influx_inspect`` itself (see
:mod:`headlined.influx_export`) and passed in here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from headlined.chunkplan import Extent

TSM_MAGIC = 0x16D116D1
_FOOTER = struct.Struct(">Q")
_ENTRY = struct.Struct(">qqqI")  # min time, max time, block offset, block size


class InfluxFilesError(Exception):
    """A data directory or TSM file that cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Found:
    """One database/retention policy found on disk."""

    database: str
    retention_policy: str
    tsm_files: list[Path]
    wal_bytes: int


def _dirs(path: Path) -> list[Path]:
    # "_series" and similar folders beside the retention policies are InfluxDB's indexes.
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def discover(data_dir: Path, wal_dir: Path, databases: list[str]) -> list[Found]:
    """Databases (all but ``_internal`` unless listed) and their retention policies."""
    if not data_dir.is_dir():
        raise InfluxFilesError(f"{data_dir}: not a directory (influx.data_dir)")
    try:
        present = {p.name for p in _dirs(data_dir)}
    except PermissionError as exc:
        raise InfluxFilesError(f"{data_dir}: cannot read: {exc.strerror}") from None
    if databases:
        missing = sorted(set(databases) - present)
        if missing:
            raise InfluxFilesError(f"{data_dir}: no database {', '.join(missing)} here")
        chosen = sorted(databases)
    else:
        chosen = sorted(present - {"_internal"})
    found = []
    for database in chosen:
        for rp_dir in _dirs(data_dir / database):
            tsm = sorted(rp_dir.glob("*/*.tsm"))
            wal_rp = wal_dir / database / rp_dir.name
            wal = sum(p.stat().st_size for p in wal_rp.glob("*/_*.wal")) if wal_rp.is_dir() else 0
            found.append(Found(database, rp_dir.name, tsm, wal))
    return found


def tsm_time_range(path: Path) -> tuple[int, int] | None:
    """(min, max) time in ns over every block of a TSM file; None for a file with no blocks."""
    try:
        with path.open("rb") as f:
            header = f.read(5)
            if len(header) < 5 or struct.unpack(">I", header[:4])[0] != TSM_MAGIC:
                raise InfluxFilesError(f"{path}: not a TSM file (bad magic)")
            f.seek(-_FOOTER.size, 2)
            footer_at = f.tell()
            (index_at,) = _FOOTER.unpack(f.read(_FOOTER.size))
            if not 5 <= index_at <= footer_at:
                raise InfluxFilesError(f"{path}: corrupt index offset {index_at}")
            f.seek(index_at)
            index = f.read(footer_at - index_at)
    except OSError as exc:
        raise InfluxFilesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _index_range(path, index)


def _index_range(path: Path, index: bytes) -> tuple[int, int] | None:
    low: int | None = None
    high: int | None = None
    pos = 0
    size = len(index)
    try:
        while pos < size:
            (key_len,) = struct.unpack_from(">H", index, pos)
            pos += 2 + key_len + 1  # key, then the block type byte
            (count,) = struct.unpack_from(">H", index, pos)
            pos += 2
            for _ in range(count):
                first, last, _offset, _size = _ENTRY.unpack_from(index, pos)
                pos += _ENTRY.size
                low = first if low is None else min(low, first)
                high = last if high is None else max(high, last)
    except struct.error:
        raise InfluxFilesError(f"{path}: truncated index at byte {pos}") from None
    return None if low is None or high is None else (low, high)


def extents(found: list[Found], wal_ranges: dict[tuple[str, str], tuple[int, int]]) -> list[Extent]:
    """The time range of each database/retention policy's data, TSM and WAL together."""
    out = []
    for item in found:
        ranges = [r for r in (tsm_time_range(p) for p in item.tsm_files) if r is not None]
        wal = wal_ranges.get((item.database, item.retention_policy))
        if wal is not None:
            ranges.append(wal)
        if ranges:
            out.append(
                Extent(
                    item.database,
                    item.retention_policy,
                    min(r[0] for r in ranges),
                    max(r[1] for r in ranges),
                )
            )
    return out
