"""What an InfluxDB 1.x data directory holds: databases, retention policies, time ranges.

Read from the files (TSM indexes), influxd need not run. See docs/exporter.md.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headlined.influx import meta
from headlined.influx.chunkplan import Extent

TSM_MAGIC = 0x16D116D1
_FOOTER = struct.Struct(">Q")
_ENTRY = struct.Struct(">qqqI")  # min time, max time, block offset, block size


class InfluxFilesError(Exception):
    """A data directory or TSM file that cannot be read; the message says which and why."""


class DataDirError(InfluxFilesError):
    """``data_dir`` or ``wal_dir`` cannot be exported from (yet); ``kind`` says how.

    ``missing`` (no such directory: InfluxDB not installed yet, or a wrong path),
    ``unreadable`` (permissions), ``not_influx`` (something else lives there), ``empty``
    (no database yet), ``no_database`` (a database named in ``influx.databases`` is absent).
    The daemon waits for every kind to go away; ``headlined export`` exits non-zero.
    """

    KINDS = frozenset(("missing", "unreadable", "not_influx", "empty", "no_database"))

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class TsmFile:
    """One TSM file: its time range from the index, or why the index could not be read."""

    path: str
    first_ns: int | None
    last_ns: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """One database/retention policy found on disk."""

    database: str
    retention_policy: str
    tsm: tuple[TsmFile, ...]
    wal_files: tuple[str, ...]
    wal_bytes: int


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the data and WAL directories hold, and each shard's time range from meta.db.

    ``shards`` maps ``(database, rp, shard id)`` to the shard group's ``[start, end)``;
    ``meta_error`` says why it is empty when meta.db could not be read.
    """

    found: tuple[Found, ...]
    shards: dict[tuple[str, str, int], tuple[int, int]]
    meta_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, for the reply of ``headlined-inspect``."""
        return {
            "found": [
                {
                    "database": f.database,
                    "retention_policy": f.retention_policy,
                    "tsm": [[t.path, t.first_ns, t.last_ns, t.error] for t in f.tsm],
                    "wal_files": list(f.wal_files),
                    "wal_bytes": f.wal_bytes,
                }
                for f in self.found
            ],
            "shards": [
                [db, rp, shard, lo, hi] for (db, rp, shard), (lo, hi) in self.shards.items()
            ],
            "meta_error": self.meta_error,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Discovery:
        """The inverse of :meth:`to_json`; KeyError/TypeError/ValueError on a bad document."""
        found = tuple(
            Found(
                str(f["database"]),
                str(f["retention_policy"]),
                tuple(
                    TsmFile(str(path), _opt_int(lo), _opt_int(hi), None if e is None else str(e))
                    for path, lo, hi, e in f["tsm"]
                ),
                tuple(str(w) for w in f["wal_files"]),
                int(f["wal_bytes"]),
            )
            for f in document["found"]
        )
        shards = {
            (str(db), str(rp), int(shard)): (int(lo), int(hi))
            for db, rp, shard, lo, hi in document["shards"]
        }
        meta_error = document.get("meta_error")
        return cls(found, shards, None if meta_error is None else str(meta_error))


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _dirs(path: Path) -> list[Path]:
    # "_series" and similar folders beside the retention policies are InfluxDB's indexes.
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{path}: cannot read: {exc.strerror}") from None


def _files(path: Path, prefix: str, suffix: str) -> list[Path]:
    # iterdir, not glob: glob says nothing of a folder it may not read.
    try:
        return sorted(
            p for p in path.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)
        )
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{path}: cannot read: {exc.strerror}") from None


def check_data_dir(data_dir: Path, setting: str = "influx.data_dir") -> list[str]:
    """The database names in ``data_dir``, or DataDirError saying what is there instead."""
    if not data_dir.exists():
        raise DataDirError(
            "missing",
            f"{data_dir}: no such directory ({setting}): is InfluxDB installed, "
            "and is this its [data] dir?",
        )
    if not data_dir.is_dir():
        raise DataDirError("not_influx", f"{data_dir}: not a directory ({setting})")
    try:
        entries = sorted(data_dir.iterdir())
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{data_dir}: cannot read: {exc.strerror}") from None
    names = {p.name for p in entries if p.is_dir()}
    if "data" in names and names & {"meta", "wal"}:
        raise DataDirError(
            "not_influx",
            f"{data_dir}: this is InfluxDB's root directory (it holds "
            f"{', '.join(sorted(names & {'data', 'meta', 'wal'}))}/), not its data directory: "
            f"set influx.data_dir: {data_dir / 'data'} and influx.wal_dir: {data_dir / 'wal'}",
        )
    databases = sorted(n for n in names if not n.startswith("."))
    if databases:
        return databases
    files = [p.name for p in entries if not p.is_dir()]
    if files:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise DataDirError(
            "not_influx",
            f"{data_dir}: not an InfluxDB data directory ({setting}): it holds files "
            f"({shown}) and no database folders (InfluxDB keeps DATABASE/RP/SHARD/*.tsm)",
        )
    raise DataDirError("empty", f"{data_dir}: empty: no InfluxDB database here yet ({setting})")


def discover(
    data_dir: Path, wal_dir: Path, databases: list[str], meta_dir: Path | None = None
) -> Discovery:
    """Databases (all but ``_internal`` unless listed), their RPs, TSM files and WAL segments.

    A TSM file whose index cannot be read is listed with its error, never fatal: the chunks
    it covers fail by name and every other one is exported. Directories that cannot be
    used raise DataDirError.
    """
    present = set(check_data_dir(data_dir))
    if not wal_dir.is_dir():
        raise DataDirError(
            "missing",
            f"{wal_dir}: no such directory (influx.wal_dir): InfluxDB's [data] wal-dir, "
            "usually beside data_dir",
        )
    if databases:
        missing = sorted(set(databases) - present)
        if missing:
            raise DataDirError(
                "no_database",
                f"{data_dir}: no database {', '.join(missing)} here (influx.databases); "
                f"found: {', '.join(sorted(present)) or 'none'}",
            )
        chosen = sorted(databases)
    else:
        chosen = sorted(present - {"_internal"})
    found = [
        _found(database, rp_dir, wal_dir / database / rp_dir.name)
        for database in chosen
        for rp_dir in _dirs(data_dir / database)
    ]
    shards: dict[tuple[str, str, int], tuple[int, int]] = {}
    meta_error = None
    if meta_dir is not None:
        try:
            shards = meta.shard_ranges(meta.read_meta(meta_dir))
        except meta.InfluxMetaError as exc:
            meta_error = str(exc)
    return Discovery(tuple(found), shards, meta_error)


def _found(database: str, rp_dir: Path, wal_rp: Path) -> Found:
    tsm = []
    for shard in _dirs(rp_dir):
        for path in _files(shard, "", ".tsm"):
            try:
                found_range = tsm_time_range(path)
            except DataDirError:
                raise
            except InfluxFilesError as exc:
                tsm.append(TsmFile(str(path), None, None, str(exc)))
                continue
            lo, hi = found_range if found_range is not None else (None, None)
            tsm.append(TsmFile(str(path), lo, hi))
    wal: list[Path] = []
    try:
        has_wal = wal_rp.is_dir()  # PermissionError past a 0700 folder, as InfluxDB's wal/ is
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{wal_rp}: cannot read: {exc.strerror}") from None
    if has_wal:
        for shard in _dirs(wal_rp):
            wal.extend(_files(shard, "_", ".wal"))
    return Found(
        database,
        rp_dir.name,
        tuple(tsm),
        tuple(str(p) for p in wal),
        sum(p.stat().st_size for p in wal),
    )


@dataclass(frozen=True, slots=True)
class Block:
    """One index entry of a TSM file: a block of one key's values."""

    key: bytes  # SERIES#!~#FIELD
    first_ns: int
    last_ns: int
    offset: int
    size: int  # with its 4-byte CRC32


def _read_index(path: Path) -> bytes:
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
            return f.read(footer_at - index_at)
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{path}: cannot read: {exc.strerror}") from None
    except OSError as exc:
        raise InfluxFilesError(f"{path}: cannot read: {exc.strerror or exc}") from None


def blocks(path: Path) -> Iterator[Block]:
    """Every block the index of a TSM file lists, in index order (by key, then time)."""
    index = _read_index(path)
    pos = 0
    size = len(index)
    try:
        while pos < size:
            (key_len,) = struct.unpack_from(">H", index, pos)
            key = index[pos + 2 : pos + 2 + key_len]
            pos += 2 + key_len + 1  # key, then the block type byte
            (count,) = struct.unpack_from(">H", index, pos)
            pos += 2
            for _ in range(count):
                first, last, offset, block_size = _ENTRY.unpack_from(index, pos)
                pos += _ENTRY.size
                yield Block(key, first, last, offset, block_size)
    except struct.error:
        raise InfluxFilesError(f"{path}: truncated index at byte {pos}") from None


def tsm_time_range(path: Path) -> tuple[int, int] | None:
    """(min, max) time in ns over every block of a TSM file; None for a file with no blocks."""
    low: int | None = None
    high: int | None = None
    for block in blocks(path):
        low = block.first_ns if low is None else min(low, block.first_ns)
        high = block.last_ns if high is None else max(high, block.last_ns)
    return None if low is None or high is None else (low, high)


def bad_checksums(path: Path, start_ns: int, end_ns: int) -> list[Block]:
    """The blocks holding time in ``[start_ns, end_ns]`` whose CRC32 does not match.

    influx_inspect 1.6 never checks them (its reader has a TODO there): a flipped bit in a
    float block decodes into a wrong number without a word. Each block starts with the CRC32
    (IEEE, big-endian) of the rest, as tsm1's writer puts it.
    """
    wanted = [b for b in blocks(path) if b.first_ns <= end_ns and start_ns <= b.last_ns]
    wanted.sort(key=lambda b: b.offset)  # one pass forward through the file
    bad = []
    try:
        with path.open("rb") as f:
            for block in wanted:
                f.seek(block.offset)
                data = f.read(block.size)
                if len(data) < 4 or zlib.crc32(data[4:]) != int.from_bytes(data[:4], "big"):
                    bad.append(block)
    except OSError as exc:
        raise InfluxFilesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return bad


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A TSM file whose index could not be read, and the time it covers (None: unknown)."""

    path: str
    error: str
    first_ns: int | None
    last_ns: int | None

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """Whether ``[start_ns, end_ns)`` may hold data of this file."""
        if self.first_ns is None or self.last_ns is None:
            return True  # nothing says where its data lies: every chunk of its RP may need it
        return self.first_ns < end_ns and start_ns <= self.last_ns


def shard_of(path: str) -> int | None:
    """The shard id of ``.../<rp>/<shard id>/<file>``, or None."""
    name = Path(path).parent.name
    return int(name) if name.isdigit() else None


def unreadable(discovery: Discovery) -> dict[tuple[str, str], list[Unreadable]]:
    """The unreadable TSM files of each database/RP, with their shard's time range.

    The range comes from meta.db (the shard group's ``[start, end)``), else from the other
    files of the same shard; failing both it is unknown.
    """
    out: dict[tuple[str, str], list[Unreadable]] = {}
    for item in discovery.found:
        for bad in (t for t in item.tsm if t.error is not None):
            shard = shard_of(bad.path)
            found_range = discovery.shards.get((item.database, item.retention_policy, shard or -1))
            lo: int | None
            hi: int | None
            if found_range is not None:
                lo, hi = found_range[0], found_range[1] - 1
            else:
                siblings = [
                    t
                    for t in item.tsm
                    if t.error is None
                    and t.first_ns is not None
                    and Path(t.path).parent == Path(bad.path).parent
                ]
                firsts = [t.first_ns for t in siblings if t.first_ns is not None]
                lasts = [t.last_ns for t in siblings if t.last_ns is not None]
                lo, hi = (min(firsts), max(lasts)) if firsts and lasts else (None, None)
            out.setdefault((item.database, item.retention_policy), []).append(
                Unreadable(bad.path, bad.error or "", lo, hi)
            )
    return out


def extents(
    discovery: Discovery, wal_ranges: dict[tuple[str, str], tuple[int, int]]
) -> list[Extent]:
    """The time range of each database/retention policy's data, TSM and WAL together.

    An unreadable file's range counts too, so that the chunks it covers are planned (and fail
    naming it) instead of being silently left out.
    """
    broken = unreadable(discovery)
    out = []
    for item in discovery.found:
        key = (item.database, item.retention_policy)
        ranges = [
            (t.first_ns, t.last_ns)
            for t in item.tsm
            if t.first_ns is not None and t.last_ns is not None
        ]
        ranges += [
            (b.first_ns, b.last_ns)
            for b in broken.get(key, [])
            if b.first_ns is not None and b.last_ns is not None
        ]
        wal = wal_ranges.get(key)
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
