"""What an InfluxDB 1.x data directory holds: databases, retention policies, and per TSM file
its time range, size, tombstone, estimated points per hour and field types; the WAL segments.

Read from the files (TSM indexes), influxd need not run; what the WAL holds comes from
influx_inspect's reading of it (:class:`WalScanner`). See docs/exporter.md.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headlined.influx import meta
from headlined.influx.chunkplan import HOUR_NS, Extent
from headlined.influx.schema import MeasurementTypes
from headlined.lineprotocol.exact import parse_series_key
from headlined.lineprotocol.grammar import (
    BOOLEANS,
    INTEGER_SUFFIX,
    MAX_NANO_TIME,
    MIN_NANO_TIME,
    STRING_QUOTE,
    UNSIGNED_SUFFIX,
)
from headlined.lineprotocol.parser import parse_line
from headlined.lineprotocol.point import LineProtocolError
from headlined.lineprotocol.scan import scan_line

TSM_MAGIC = 0x16D116D1
_FOOTER = struct.Struct(">Q")
_ENTRY = struct.Struct(">qqqI")  # min time, max time, block offset, block size
# tsm1's MaxPointsPerBlock (1.6): what a block counts for before a sample of the file's
# blocks says how full they are.
BLOCK_POINTS = 1000
# Blocks of a file whose points are counted (from their timestamp headers) to scale that
# bound: sparse data (a week of hourly readings) fills a block to a sixth.
SAMPLED_BLOCKS = 64
# How many values one simple8b word holds, by its selector (its top 4 bits).
_SIMPLE8B = (240, 120, 60, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1)
# The same by a word's first byte, for bytes.translate.
_SELECTOR_POINTS = bytes(_SIMPLE8B[byte >> 4] for byte in range(256))
# The kinds of tsm1's block type byte (BlockFloat64 = 0 ... BlockUnsigned = 4).
BLOCK_TYPES = ("float", "integer", "boolean", "string", "unsigned")
FIELD_SEPARATOR = b"#!~#"  # between the series key and the field in a TSM index key
# A block's points lie in one shard group: a block spanning more hours than ~120 years has a
# corrupt index entry (spreading it would take memory without bound).
MAX_BLOCK_HOURS = 1 << 20
_SERIES_CACHE_SIZE = 100_000
# Times a shard is listed again when one of its files vanished while being read (a
# compaction replaced it) before that file is reported unreadable.
_LISTINGS = 3


class InfluxFilesError(Exception):
    """A data directory or TSM file that cannot be read; the message says which and why."""


class _VanishedError(InfluxFilesError):
    """A TSM file deleted while it was read: a compaction replaced it, or retention dropped it."""


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
    """One TSM file: what its index says, or why the index could not be read.

    ``size`` and ``mtime_ns`` are the file's (from os.stat, also for an unreadable file when
    stat works; 0 when not), ``tombstone`` the (size, mtime_ns) of the ``.tombstone`` file
    beside it (DELETE and DROP SERIES write there; None: no tombstone). ``volume`` maps each
    hour (:func:`hour_of`) to an estimate of the points the file holds in it (each block
    spread as :func:`spread` spreads it, scaled by how full a sample of its blocks is),
    ``types`` each measurement to its tag keys and field kinds. ``edges`` maps an hour to the
    estimated points of the blocks that begin in it and of those that end in it (scaled
    alike): what a chunk boundary there makes influx_inspect decode twice (see
    chunkplan.Straddle); None when not known (a reply of an older helper). All count what
    the index lists, tombstoned data included.
    """

    path: str
    first_ns: int | None
    last_ns: int | None
    error: str | None = None
    size: int = 0
    mtime_ns: int = 0
    tombstone: tuple[int, int] | None = None
    volume: dict[int, int] = field(default_factory=dict)
    types: dict[str, MeasurementTypes] = field(default_factory=dict)
    edges: dict[int, tuple[int, int]] | None = None


@dataclass(frozen=True, slots=True)
class WalSegment:
    """One WAL segment file (``_NNNNN.wal``) as os.stat saw it."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Found:
    """One database/retention policy found on disk: its TSM files and WAL segments.

    Given ``wal``, ``wal_files`` and ``wal_bytes`` are its paths and total size.
    """

    database: str
    retention_policy: str
    tsm: tuple[TsmFile, ...]
    wal_files: tuple[str, ...] = ()
    wal_bytes: int = 0
    wal: tuple[WalSegment, ...] = ()

    def __post_init__(self) -> None:
        if self.wal:
            object.__setattr__(self, "wal_files", tuple(w.path for w in self.wal))
            object.__setattr__(self, "wal_bytes", sum(w.size for w in self.wal))


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
        """A JSON-ready form, for the reply of ``headlined-inspect``.

        Each TSM file is a list ``[path, first, last, error, size, mtime, tombstone, volume,
        types, edges]``: volume flat ``[hour, points, hours since the previous one, points,
        ...]`` (hours mostly follow each other), edges alike ``[hour, begin, end, ...]`` or
        null (a reader takes a row without it as null), types an index into ``types``, where
        each distinct set of a file's types is once: shards mostly repeat their measurements,
        and with hundreds of measurements a copy per file would outgrow a reply frame.
        """
        types: list[dict[str, Any]] = []
        numbered: dict[str, int] = {}  # the JSON text of a file's types -> its index in types

        def number(of: Mapping[str, MeasurementTypes]) -> int:
            document = _types_to_json(of)
            text = json.dumps(document)
            if text not in numbered:
                numbered[text] = len(types)
                types.append(document)
            return numbered[text]

        return {
            "found": [
                {
                    "database": f.database,
                    "retention_policy": f.retention_policy,
                    "tsm": [
                        [
                            t.path,
                            t.first_ns,
                            t.last_ns,
                            t.error,
                            t.size,
                            t.mtime_ns,
                            None if t.tombstone is None else list(t.tombstone),
                            _volume_to_json(t.volume),
                            number(t.types),
                            None if t.edges is None else _edges_to_json(t.edges),
                        ]
                        for t in f.tsm
                    ],
                    "wal": [[w.path, w.size, w.mtime_ns] for w in f.wal],
                    **_legacy_wal(f),
                }
                for f in self.found
            ],
            "shards": [
                [db, rp, shard, lo, hi] for (db, rp, shard), (lo, hi) in self.shards.items()
            ],
            "meta_error": self.meta_error,
            "types": types,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Discovery:
        """The inverse of :meth:`to_json`; KeyError/TypeError/ValueError on a bad document."""
        found = tuple(
            Found(
                str(f["database"]),
                str(f["retention_policy"]),
                tuple(_tsm_from_json(row, document["types"]) for row in f["tsm"]),
                tuple(str(path) for path in f.get("wal_files", ())),
                int(f.get("wal_bytes", 0)),
                tuple(
                    WalSegment(str(path), int(size), int(mtime_ns))
                    for path, size, mtime_ns in f["wal"]
                ),
            )
            for f in document["found"]
        )
        shards = {
            (str(db), str(rp), int(shard)): (int(lo), int(hi))
            for db, rp, shard, lo, hi in document["shards"]
        }
        meta_error = document.get("meta_error")
        return cls(found, shards, None if meta_error is None else str(meta_error))


@dataclass(frozen=True, slots=True)
class WalScan:
    """What influx_inspect read from a retention policy's WAL (see :class:`WalScanner`).

    ``hours`` maps each hour (:func:`hour_of`) holding WAL points to (how many lines
    influx_inspect printed for it, their digest: 32 hex digits, the sum of each line's 16-byte
    blake2b modulo 2**128). A sum, so that the same lines give the same digest in any order:
    influx_inspect prints a WAL entry's keys in Go's random map order, so two reads of an
    unchanged WAL differ in order, never in lines. ``types``: each measurement's tag keys and
    field kinds, as the lines say.
    """

    first_ns: int
    last_ns: int
    hours: dict[int, tuple[int, str]]
    types: dict[str, MeasurementTypes]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form, for the reply of ``headlined-inspect``."""
        return {
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "hours": [
                [hour, lines, digest] for hour, (lines, digest) in sorted(self.hours.items())
            ],
            "types": _types_to_json(self.types),
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> WalScan:
        """The inverse of :meth:`to_json`; KeyError/TypeError/ValueError on a bad document."""
        return cls(
            int(document["first_ns"]),
            int(document["last_ns"]),
            {int(hour): (int(lines), str(digest)) for hour, lines, digest in document["hours"]},
            _types_from_json(document["types"]),
        )


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _legacy_wal(found: Found) -> dict[str, Any]:
    # WAL files named without their segments (as before segments were listed) are carried as
    # they are; with segments, the two follow from them.
    if found.wal or not (found.wal_files or found.wal_bytes):
        return {}
    return {"wal_files": list(found.wal_files), "wal_bytes": found.wal_bytes}


def _tsm_from_json(row: list[Any], types: list[Any]) -> TsmFile:
    # Rows of helpers from before edges have nine items.
    path, lo, hi, error, size, mtime_ns, tombstone, volume, numbered = row[:9]
    edges = row[9] if len(row) > 9 else None
    if not 0 <= int(numbered) < len(types):
        raise ValueError(f"{path}: types #{numbered} of {len(types)}")
    return TsmFile(
        str(path),
        _opt_int(lo),
        _opt_int(hi),
        None if error is None else str(error),
        int(size),
        int(mtime_ns),
        None if tombstone is None else (int(tombstone[0]), int(tombstone[1])),
        _volume_from_json(volume),
        # Parsed for each file: files never share (mutable) MeasurementTypes.
        _types_from_json(types[int(numbered)]),
        None if edges is None else _edges_from_json(edges),
    )


def _volume_to_json(volume: Mapping[int, int]) -> list[int]:
    out: list[int] = []
    previous = 0
    for hour in sorted(volume):
        out += [hour - previous, volume[hour]]
        previous = hour
    return out


def _edges_to_json(edges: Mapping[int, tuple[int, int]]) -> list[int]:
    out: list[int] = []
    previous = 0
    for hour in sorted(edges):
        out += [hour - previous, *edges[hour]]
        previous = hour
    return out


def _edges_from_json(flat: list[Any]) -> dict[int, tuple[int, int]]:
    if len(flat) % 3:
        raise ValueError(f"edges: length {len(flat)} is not a multiple of 3")
    edges = {}
    hour = 0
    for at in range(0, len(flat), 3):
        hour += int(flat[at])
        edges[hour] = (int(flat[at + 1]), int(flat[at + 2]))
    return edges


def _volume_from_json(flat: list[Any]) -> dict[int, int]:
    if len(flat) % 2:
        raise ValueError(f"volume: odd length {len(flat)}")
    volume = {}
    hour = 0
    for at in range(0, len(flat), 2):
        hour += int(flat[at])
        volume[hour] = int(flat[at + 1])
    return volume


def _types_to_json(types: Mapping[str, MeasurementTypes]) -> dict[str, Any]:
    return {name: t.to_json() for name, t in sorted(types.items())}


def _types_from_json(document: Mapping[str, Any]) -> dict[str, MeasurementTypes]:
    if not isinstance(document, Mapping):
        raise TypeError(f"types: not an object: {document!r}")
    return {str(name): MeasurementTypes.from_json(t) for name, t in document.items()}


def _dirs(path: Path) -> list[Path]:
    # "_series" and similar folders beside the retention policies are InfluxDB's indexes.
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{path}: cannot read: {exc.strerror}") from None
    except FileNotFoundError:
        return []  # dropped (a retention policy or shard) while we looked: it holds nothing


def _files(path: Path, prefix: str, suffix: str) -> list[Path]:
    # iterdir, not glob: glob says nothing of a folder it may not read.
    try:
        return sorted(
            p for p in path.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)
        )
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{path}: cannot read: {exc.strerror}") from None
    except FileNotFoundError:
        return []  # a shard dropped by retention while we looked holds nothing any more


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
    series: _SeriesCache = {}
    found = [
        _found(database, rp_dir, wal_dir / database / rp_dir.name, series)
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


# Series key -> (measurement, tag keys), None for a key that no line can begin with. One cache
# serves a whole discovery: the same series recur in every shard.
_SeriesCache = dict[bytes, tuple[str, frozenset[str]] | None]


def _found(database: str, rp_dir: Path, wal_rp: Path, series: _SeriesCache) -> Found:
    # The WAL first: a snapshot writes its TSM file before it deletes the WAL segments it
    # covered, so each point is in at least one of the two listings.
    wal: list[WalSegment] = []
    try:
        has_wal = wal_rp.is_dir()  # PermissionError past a 0700 folder, as InfluxDB's wal/ is
    except PermissionError as exc:
        raise DataDirError("unreadable", f"{wal_rp}: cannot read: {exc.strerror}") from None
    if has_wal:
        for shard in _dirs(wal_rp):
            for path in _files(shard, "_", ".wal"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted by a snapshot since the listing: its points are in TSM
                wal.append(WalSegment(str(path), stat.st_size, stat.st_mtime_ns))
    tsm = [tsm for shard in _dirs(rp_dir) for tsm in _shard_files(shard, series)]
    return Found(database, rp_dir.name, tuple(tsm), wal=tuple(wal))


def _shard_files(shard: Path, series: _SeriesCache) -> list[TsmFile]:
    """The TSM files of one shard, listed again when one vanished while it was read."""
    for _ in range(_LISTINGS - 1):
        try:
            return [read_tsm(path, series) for path in _files(shard, "", ".tsm")]
        except _VanishedError:
            continue  # a compaction replaced it: the file it wrote is in a new listing
    return [_read_or_vanished(path, series) for path in _files(shard, "", ".tsm")]


def _read_or_vanished(path: Path, series: _SeriesCache) -> TsmFile:
    # Still vanishing after the last listing: its successor may not be listed, so the file is
    # reported (the chunks it covers fail, and are tried again by the next run).
    try:
        return read_tsm(path, series)
    except _VanishedError as exc:
        return TsmFile(str(path), None, None, str(exc))


def read_tsm(path: Path, series: _SeriesCache | None = None) -> TsmFile:
    """One TSM file as discovery lists it: stat, tombstone, and what its index says.

    An index that cannot be read gives a TsmFile with its ``error`` (and the size and mtime
    when stat worked); DataDirError when the file may not be read at all.
    """
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise _VanishedError(f"{path}: cannot read: {exc.strerror}") from None
    except OSError as exc:
        return TsmFile(str(path), None, None, f"{path}: cannot stat: {exc.strerror or exc}")
    tombstone = None
    try:
        tombstone = _tombstone(path)
        first, last, volume, edges, types = _summarize(
            path, _read_index(path), {} if series is None else series
        )
    except (_VanishedError, DataDirError):
        raise
    except InfluxFilesError as exc:
        return TsmFile(str(path), None, None, str(exc), stat.st_size, stat.st_mtime_ns, tombstone)
    return TsmFile(
        str(path),
        first,
        last,
        None,
        stat.st_size,
        stat.st_mtime_ns,
        tombstone,
        volume,
        types,
        edges,
    )


def _tombstone(path: Path) -> tuple[int, int] | None:
    # InfluxDB 1.6 names it after the TSM file: 000000001-000000001.tombstone beside
    # 000000001-000000001.tsm, rewritten by each DELETE or DROP SERIES touching the file.
    try:
        stat = path.with_suffix(".tombstone").stat()
    except FileNotFoundError:
        return None  # nothing was ever deleted from this file
    except OSError as exc:
        raise InfluxFilesError(f"{path}: cannot stat its tombstone: {exc.strerror}") from None
    return stat.st_size, stat.st_mtime_ns


def hour_of(ns: int) -> int:
    """The hour index of a time: whole hours since the epoch, rounded down (before 1970 too)."""
    return ns // HOUR_NS


def spread(volume: dict[int, int], first_ns: int, last_ns: int, points: int = BLOCK_POINTS) -> None:
    """Add ``points`` lying in ``[first_ns, last_ns]`` to ``volume`` (hour -> points).

    Evenly over the hours the range touches, rounded up per hour, so that each of them counts
    at least 1. ValueError when the range ends before it starts or spans MAX_BLOCK_HOURS or
    more.
    """
    first = first_ns // HOUR_NS
    last = last_ns // HOUR_NS
    if not 0 <= last - first < MAX_BLOCK_HOURS:
        raise ValueError(f"a block from {first_ns} to {last_ns} ns cannot be spread over hours")
    each = -(-points // (last - first + 1))
    for hour in range(first, last + 1):
        volume[hour] = volume.get(hour, 0) + each


def _summarize(
    path: Path, index: bytes, series: _SeriesCache
) -> tuple[
    int | None, int | None, dict[int, int], dict[int, tuple[int, int]], dict[str, MeasurementTypes]
]:
    """Time range, volume, block edges and types of one TSM index, in one pass."""
    # How many keys have each layout of block times: the fields of a series, and often all
    # series, share one, so ranges and volume are worked out once per layout.
    layouts: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    keyed: list[tuple[int, int]] = []  # (first entry, entries) of each key, for sampling
    types: dict[str, MeasurementTypes] = {}
    fields: dict[str, set[str]] | None = None
    current: bytes | None = None
    flat = _FLAT
    for key, code, at, count in _index_keys(path, index):
        if count <= _FLAT_MAX:  # _times, inlined: this loop runs once per key of the index
            if not count:
                continue  # a key without blocks holds nothing
            keyed.append((at, count))
            entries = (flat.get(count) or _flat(count)).unpack_from(index, at)
            layout = (entries[0::4], entries[1::4])
        else:
            keyed.append((at, count))
            layout = _times(index, at, count)
        layouts[layout] = layouts.get(layout, 0) + 1
        sep = key.find(FIELD_SEPARATOR)
        # A key without a field, or of a block type tsm1 does not know, has no type to give:
        # influx_inspect cannot export its values as a field either.
        if sep < 0 or code >= len(BLOCK_TYPES):
            continue
        series_key = key[:sep]
        if series_key != current:  # keys are sorted: a series' fields follow each other
            current = series_key
            fields = _series_fields(series_key, series, types)
        if fields is None:
            continue
        try:
            name = key[sep + len(FIELD_SEPARATOR) :].decode()
        except UnicodeDecodeError:
            continue  # as for a series key that is not UTF-8 (see _parse_series)
        kinds = fields.get(name)
        if kinds is None:
            fields[name] = {BLOCK_TYPES[code]}
        else:
            kinds.add(BLOCK_TYPES[code])
    if not layouts:
        return None, None, {}, {}, types
    low = min(min(firsts) for firsts, _ in layouts)
    high = max(max(lasts) for _, lasts in layouts)
    volume = _volume(path, layouts)
    edges = _edges(layouts)
    fill = _fill(path, index, keyed)
    if fill != 1.0:
        volume = {hour: max(1, round(points * fill)) for hour, points in volume.items()}
        edges = {h: (round(b * fill), round(e * fill)) for h, (b, e) in edges.items()}
    return low, high, volume, edges, types


def _fill(path: Path, index: bytes, keyed: list[tuple[int, int]]) -> float:
    """How many points the blocks of a file hold on average, as a share of BLOCK_POINTS,
    from a sample of SAMPLED_BLOCKS blocks spread evenly over the index; 1.0 when it cannot
    be told."""
    total = sum(count for _, count in keyed)
    if not total:
        return 1.0
    wanted = sorted({i * total // SAMPLED_BLOCKS for i in range(min(SAMPLED_BLOCKS, total))})
    offsets: list[tuple[int, int]] = []
    seen = 0
    it = iter(wanted)
    target = next(it, None)
    for at, count in keyed:
        while target is not None and target < seen + count:
            _, _, offset, size = _ENTRY.unpack_from(index, at + (target - seen) * _ENTRY.size)
            offsets.append((offset, size))
            target = next(it, None)
        seen += count
    counted = []
    try:
        # Mapped: a sampled block is read where it lies, with no seek and read calls.
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for offset, size in sorted(offsets):
                # Only the timestamps: their count is the block's points.
                points = _block_points(data, offset, offset + size)
                if points is not None:
                    counted.append(points)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return 1.0  # the bound stays: planning errs towards smaller chunks
    if not counted:
        return 1.0
    # Above 1 too: later InfluxDB 1.x compacts cold shards into blocks of up to 100,000.
    return max(sum(counted) / len(counted) / BLOCK_POINTS, 1 / BLOCK_POINTS)


def block_points(block: bytes) -> int | None:
    """The number of points of a TSM block, from its timestamp header; None if unreadable.

    A block is its CRC32 (4 bytes), its type (1), the uvarint length of its timestamps, then
    the timestamps, encoded by tsm1 one of three ways (the top 4 bits of their first byte):
    0 raw (8 bytes each), 1 the first raw then simple8b words of deltas, 2 run-length (the
    first, the delta and the count, as uvarints after the first).
    """
    return _block_points(block, 0, len(block))


def _block_points(data: bytes | mmap.mmap, start: int, end: int) -> int | None:
    """:func:`block_points` of the block ``data[start:end]``, read in place (no copy of it)."""
    end = min(end, len(data))
    at = start + 5
    length: int | None = data[at] if at < end else None
    if length is not None and length < 0x80:  # one byte, as for all but long blocks
        at += 1
    else:
        length, at = _uvarint(data, at, end)
    if length is None or length < 1 or at >= end:
        return None
    stop = min(at + length, end)
    whole = stop - at == length
    encoding = data[at] >> 4
    points: int | None = None
    if encoding == 0 and whole:
        points = (length - 1) // 8
    elif encoding == 1 and whole:
        # The selector of each whole 8-byte word after the first time, counted in C.
        points = 1 + sum(data[at + 9 : stop - 7 : 8].translate(_SELECTOR_POINTS))
    elif encoding == 2:
        _, after = _uvarint(data, at + 9, stop)
        points, _ = _uvarint(data, after, stop)
    return points


def _uvarint(data: bytes | mmap.mmap, at: int, end: int | None = None) -> tuple[int | None, int]:
    """A Go uvarint at ``at`` (before ``end``, or the data's end): (value, where the next byte
    is), or (None, at) if cut short."""
    value = shift = 0
    for pos in range(at, min(len(data) if end is None else end, at + 10)):
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + 1
        shift += 7
    return None, at


def _volume(
    path: Path, layouts: dict[tuple[tuple[int, ...], tuple[int, ...]], int]
) -> dict[int, int]:
    """Points per hour of the blocks of ``layouts`` (block times -> how many keys have them),
    each block spread as :func:`spread` spreads it."""
    # Changes at hour boundaries (+points where a block starts, -points after its last hour),
    # summed up at the end: two updates per block instead of one per hour it touches.
    steps: dict[int, int] = {}
    for (firsts, lasts), keys in layouts.items():
        for first, last in zip(firsts, lasts, strict=True):
            start = first // HOUR_NS
            hours = last // HOUR_NS - start + 1
            if not 0 < hours <= MAX_BLOCK_HOURS:
                raise InfluxFilesError(f"{path}: corrupt index: a block spans {first}..{last} ns")
            each = -(-BLOCK_POINTS // hours) * keys
            steps[start] = steps.get(start, 0) + each
            steps[start + hours] = steps.get(start + hours, 0) - each
    volume: dict[int, int] = {}
    points = 0
    previous = 0
    for hour in sorted(steps):
        if points:
            for between in range(previous, hour):
                volume[between] = points
        points += steps[hour]
        previous = hour
    return volume


def _edges(
    layouts: dict[tuple[tuple[int, ...], tuple[int, ...]], int],
) -> dict[int, tuple[int, int]]:
    """Hour -> (points of the blocks beginning in it, points of those ending in it), each
    block counted as BLOCK_POINTS (scaled by the file's fill afterwards, as its volume)."""
    begins: Counter[int] = Counter()
    ends: Counter[int] = Counter()
    for (firsts, lasts), keys in layouts.items():
        for first, last in zip(firsts, lasts, strict=True):
            begins[first // HOUR_NS] += BLOCK_POINTS * keys
            ends[last // HOUR_NS] += BLOCK_POINTS * keys
    return {hour: (begins[hour], ends[hour]) for hour in sorted(begins.keys() | ends.keys())}


def _series_fields(
    key: bytes, cache: _SeriesCache, types: dict[str, MeasurementTypes]
) -> dict[str, set[str]] | None:
    """The fields of the measurement of series ``key`` in ``types`` (its tags added)."""
    parsed = _series(key, cache)
    if parsed is None:
        return None
    measurement, tags = parsed
    found = types.get(measurement)
    if found is None:
        found = types[measurement] = MeasurementTypes()
    found.tags |= tags
    return found.fields


def _series(key: bytes, cache: _SeriesCache) -> tuple[str, frozenset[str]] | None:
    """Measurement and tag keys of series ``key``, parsed once for all files."""
    if key in cache:
        return cache[key]
    parsed = _parse_series(key)
    if len(cache) >= _SERIES_CACHE_SIZE:
        cache.clear()
    cache[key] = parsed
    return parsed


def _parse_series(key: bytes) -> tuple[str, frozenset[str]] | None:
    # A series key that no line can begin with gives no types: the converter refuses its
    # lines (and says so), so they never reach a measurement's schema.
    try:
        measurement, tags = parse_series_key(key.decode())
    except (UnicodeDecodeError, LineProtocolError):
        return None
    return measurement, frozenset(tags)


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
    except FileNotFoundError as exc:
        raise _VanishedError(f"{path}: cannot read: {exc.strerror}") from None
    except OSError as exc:
        raise InfluxFilesError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _index_keys(path: Path, index: bytes) -> Iterator[tuple[bytes, int, int, int]]:
    """(key, block type, offset of its first entry, entry count) for each key of an index.

    Each key is a 2-byte length, the key, a type byte and a 2-byte count of entries.
    """
    pos = 0
    size = len(index)
    while pos < size:
        type_at = pos + 2 + int.from_bytes(index[pos : pos + 2], "big")
        at = type_at + 3
        end = at + _ENTRY.size * int.from_bytes(index[type_at + 1 : at], "big")
        if at > size or end > size:
            raise InfluxFilesError(f"{path}: truncated index at byte {pos}")
        yield index[pos + 2 : type_at], index[type_at], at, (end - at) // _ENTRY.size
        pos = end


# One struct per entry count up to this many: unpacking a key's entries at once is ~1.7x
# faster than one entry at a time.
_FLAT_MAX = 256
_FLAT: dict[int, struct.Struct] = {}


def _times(index: bytes, at: int, count: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The first and the last times of ``count`` index entries from ``at``."""
    if count <= _FLAT_MAX:
        flat = _flat(count).unpack_from(index, at)
        return flat[0::4], flat[1::4]
    firsts: list[int] = []
    lasts: list[int] = []
    for start in range(at, at + count * _ENTRY.size, _FLAT_MAX * _ENTRY.size):
        flat = _flat(min(_FLAT_MAX, count - len(firsts))).unpack_from(index, start)
        firsts += flat[0::4]
        lasts += flat[1::4]
    return tuple(firsts), tuple(lasts)


def _flat(count: int) -> struct.Struct:
    found = _FLAT.get(count)
    if found is None:
        found = _FLAT[count] = struct.Struct(">" + "qqqI" * count)
    return found


def blocks(path: Path) -> Iterator[Block]:
    """Every block the index of a TSM file lists, in index order (by key, then time)."""
    index = _read_index(path)
    for key, _, at, count in _index_keys(path, index):
        for first, last, offset, size in _ENTRY.iter_unpack(index[at : at + count * _ENTRY.size]):
            yield Block(key, first, last, offset, size)


def tsm_time_range(path: Path) -> tuple[int, int] | None:
    """(min, max) time in ns over every block of a TSM file; None for a file with no blocks."""
    index = _read_index(path)
    low: int | None = None
    high: int | None = None
    for _, _, at, count in _index_keys(path, index):
        if not count:
            continue
        firsts, lasts = _times(index, at, count)
        lo = min(firsts)
        hi = max(lasts)
        low = lo if low is None else min(low, lo)
        high = hi if high is None else max(high, hi)
    return None if low is None or high is None else (low, high)


def bad_checksums(path: Path, start_ns: int, end_ns: int) -> list[Block]:
    """The blocks holding time in ``[start_ns, end_ns]`` whose CRC32 does not match.

    influx_inspect 1.6 never checks them (its reader has a TODO there): a flipped bit in a
    float block decodes into a wrong number without a word. Each block starts with the CRC32
    (IEEE, big-endian) of the rest, as tsm1's writer puts it.
    """
    index = _read_index(path)
    # (offset, size, first, last, key) of each block in range: plain tuples, as a file holds
    # thousands of blocks and a Block is made only for one that fails.
    wanted = [
        (offset, size, first, last, key)
        for key, _, at, count in _index_keys(path, index)
        for first, last, offset, size in _ENTRY.iter_unpack(index[at : at + count * _ENTRY.size])
        if first <= end_ns and start_ns <= last
    ]
    if not wanted:
        return []
    wanted.sort()  # by offset: one pass forward through the file
    bad = []
    try:
        # Mapped, and checked through a memoryview: no read call nor copy per block.
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            view = memoryview(data)
            try:
                for offset, size, first, last, key in wanted:
                    end = offset + size
                    if (
                        size < 4
                        or end > len(data)
                        or zlib.crc32(view[offset + 4 : end])
                        != int.from_bytes(view[offset : offset + 4], "big")
                    ):
                        bad.append(Block(key, first, last, offset, size))
            finally:
                view.release()
    except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
        raise InfluxFilesError(f"{path}: cannot read: {exc}") from None
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


# The kind of a field value by its last byte, as grammar types values: a string ends with its
# quote, an integer and an unsigned with their suffix, a boolean with the last letter of one
# of BOOLEANS (which no number ends with); anything else is a float.
_KIND_BY_LAST_BYTE = {
    ord(STRING_QUOTE): "string",
    ord(INTEGER_SUFFIX): "integer",
    ord(UNSIGNED_SUFFIX): "unsigned",
    **{ord(word[-1]): "boolean" for word in BOOLEANS},
}
_QUOTE = STRING_QUOTE.encode()
_NOT_POINTS = (b"#", b"CREATE ")  # influx_inspect's comments and DDL among its lines
_DIGEST_MODULUS = 1 << 128


class WalScanner:
    """Reads influx_inspect's export of a WAL as it streams, into a :class:`WalScan`.

    influx_inspect prints one field per line, ``KEY FIELD=VALUE TIME`` (KEY the series key
    and FIELD escaped as in line protocol); a string value may hold newlines. Feed it the
    output in pieces of any size, then call :meth:`finish`. Lines without a timestamp
    (comments, DDL) are not points and are skipped.
    """

    def __init__(self) -> None:
        self._rest = b""
        self._first = MAX_NANO_TIME
        self._last = MIN_NANO_TIME
        self._lines: dict[int, int] = {}  # hour -> lines
        # hour -> sum of the lines' hashes: a sum, so that the order of lines is no matter.
        self._sums: dict[int, int] = {}
        # (KEY FIELD, the value's last byte) of the lines, parsed once each by finish().
        self._prefixes: set[tuple[bytes, int]] = set()
        self._types: dict[str, MeasurementTypes] = {}  # of the lines parsed whole

    def feed(self, data: bytes) -> None:
        """Read the whole lines of what was left over and ``data``; keep the rest for later."""
        data = self._rest + data
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        physical = data[:cut].split(b"\n")
        physical.pop()  # the empty piece after the last newline
        if (
            b'"' in data
            or b"\\\n" in data
            or data.startswith(_NOT_POINTS)
            or b"\n#" in data
            or b"\nCREATE " in data
            or b"\n\n" in data
        ):
            physical = self._sift(physical)
        self._plain(physical)

    def finish(self) -> WalScan | None:
        """What the lines fed say; None when none of them held a point."""
        if self._rest:
            self.feed(b"\n")
            if self._rest:  # a quote never closed: what is left counts as one line
                self._whole(self._rest[:-1])
            self._rest = b""
        if not self._lines:
            return None
        types = {
            name: MeasurementTypes(set(t.tags), {f: set(k) for f, k in t.fields.items()})
            for name, t in self._types.items()
        }
        series: _SeriesCache = {}
        for prefix, last_byte in self._prefixes:
            found = _parse_prefix(prefix, series)
            if found is not None:
                _add_type(types, *found, _KIND_BY_LAST_BYTE.get(last_byte, "float"))
        hours = {
            hour: (lines, format(self._sums[hour] % _DIGEST_MODULUS, "032x"))
            for hour, lines in self._lines.items()
        }
        return WalScan(self._first, self._last, hours, types)

    def _sift(self, physical: list[bytes]) -> list[bytes]:
        """Read the lines that need care one by one; return the plain ones.

        What follows a line that goes on past this data is put back before the rest.
        """
        plain = []
        at = 0
        while at < len(physical):
            line = physical[at]
            if b'"' in line or line.endswith(b"\\"):
                used = _logical_lines(physical, at)
                if not used:
                    self._rest = b"\n".join(physical[at:]) + b"\n" + self._rest
                    break
                self._whole(b"\n".join(physical[at : at + used]))
                at += used
            else:
                if line and not line.startswith(_NOT_POINTS):
                    plain.append(line)
                at += 1
        return plain

    def _plain(self, lines: list[bytes]) -> None:
        """Lines without quotes, comments or DDL, a list at a time (several times faster)."""
        if not lines:
            return
        spaces = [line.rfind(b" ") for line in lines]
        try:
            # (int() also takes "+1" or "1_0", which influx_inspect never prints.)
            stamps = [int(line[space + 1 :]) for line, space in zip(lines, spaces, strict=True)]
        except ValueError:
            stamps = []
        if len(stamps) < len(lines) or -1 in spaces:
            for line in lines:  # one has no timestamp: each on its own
                self._whole(line)
            return
        self._first = min(self._first, *stamps)
        self._last = max(self._last, *stamps)
        hours = [stamp // HOUR_NS for stamp in stamps]
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes  # _hash, inlined: once per line
        digests = [from_bytes(blake2b(line, digest_size=16).digest(), "big") for line in lines]
        if min(hours) == max(hours):  # the common case: a piece of the output within one hour
            self._add(hours[0], len(lines), sum(digests))
        else:
            sums: dict[int, int] = {}
            for hour, digest in zip(hours, digests, strict=True):
                sums[hour] = sums.get(hour, 0) + digest
            for hour, lines_in in Counter(hours).items():
                self._add(hour, lines_in, sums[hour])
        # Not strings: a value holds no "=", so the last one before it ends the field key.
        self._prefixes.update(
            (line[:equals], line[space - 1])
            for line, space in zip(lines, spaces, strict=True)
            if (equals := line.rfind(b"=", 0, space)) > 0
        )

    def _add(self, hour: int, lines: int, digests: int) -> None:
        self._lines[hour] = self._lines.get(hour, 0) + lines
        self._sums[hour] = self._sums.get(hour, 0) + digests

    def _whole(self, line: bytes) -> None:
        """One line that may hold a string, or may be no point at all."""
        if line.startswith(_NOT_POINTS):
            return
        space = line.rfind(b" ")
        stamp = line[space + 1 :]
        if space < 0 or not (stamp[1:] if stamp.startswith(b"-") else stamp).isdigit():
            return  # no timestamp: not a point
        time = int(stamp)
        self._first = min(self._first, time)
        self._last = max(self._last, time)
        self._add(time // HOUR_NS, 1, _hash(line))
        if line[space - 1 : space] != _QUOTE:
            equals = line.rfind(b"=", 0, space)  # not a string: as in _plain
            # (A quote opened and never closed makes no value, and no type.)
            if equals > 0 and line[equals + 1 : equals + 2] != _QUOTE:
                self._prefixes.add((line[:equals], line[space - 1]))
            return
        # A string may hold "=": without escapes the key ends at the first space and the field
        # key at the next "=", else the line is parsed whole.
        equals = line.find(b"=", line.find(b" ") + 1)
        if equals > 0 and b"\\" not in line[:equals]:
            self._prefixes.add((line[:equals], line[space - 1]))
            return
        try:
            point = parse_line(line, default_time=0)
        except LineProtocolError:
            return  # the converter refuses it too: it reaches no schema
        for name, kind in point.field_types.items():
            _add_type(self._types, point.measurement, point.tags, name, kind)


def _hash(line: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(line, digest_size=16).digest(), "big")


def _logical_lines(physical: list[bytes], at: int) -> int:
    """How many of ``physical`` from ``at`` make one line as InfluxDB reads lines (a newline in
    a quoted string or after a backslash does not end it); 0 when they are not all there."""
    count = 1
    while True:
        text = b"\n".join(physical[at : at + count]).decode("utf-8", "surrogateescape") + "\n"
        end = scan_line(text, 0)
        if end < len(text):
            return text.count("\n", 0, end) + 1
        if at + count >= len(physical):
            return 0
        count = min(2 * count, len(physical) - at)


def _parse_prefix(prefix: bytes, series: _SeriesCache) -> tuple[str, Iterable[str], str] | None:
    """Measurement, tag keys and field key of a line's ``KEY FIELD``, unescaped as the parser
    does; None when no line can begin with it (the converter refuses such lines too)."""
    space = prefix.find(b" ")
    if space > 0 and b"\\" not in prefix:  # the key ends at the first space, FIELD is plain
        parsed = _series(prefix[:space], series)
        try:
            field_key = prefix[space + 1 :].decode()
        except UnicodeDecodeError:
            return None
        return None if parsed is None or not field_key else (*parsed, field_key)
    try:
        point = parse_line(prefix + b"=0", default_time=0)
    except LineProtocolError:
        return None
    return point.measurement, point.tags, next(iter(point.fields))


def _add_type(
    types: dict[str, MeasurementTypes], measurement: str, tags: Iterable[str], name: str, kind: str
) -> None:
    found = types.get(measurement)
    if found is None:
        found = types[measurement] = MeasurementTypes()
    found.tags.update(tags)
    found.fields.setdefault(name, set()).add(kind)
