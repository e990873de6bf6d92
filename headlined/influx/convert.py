"""Bulk converter: InfluxDB 1.x line protocol (plain, .gz or a FIFO) to typed Parquet.

It agrees line for line with :mod:`headlined.lineprotocol` (the exact parser) but gets its
speed from bulk work: one sequential read, split in C (:mod:`headlined.influx._lines`), puts every
line into a DuckDB table, and DuckDB's casts and GROUP BYs merge and write them.  Only
awkward lines go through ``lineprotocol.parse`` in Python.

How a line travels
------------------
1. **Read** (the source is read exactly once, sequentially, so a FIFO works).  A thread reads
   it (gzip undone) and feeds the bytes to ``headlined.influx._lines.Splitter`` (C, without
   the GIL), which cuts them into physical lines, so table row ``rowid`` is physical line
   ``rowid + 1``; this thread inserts its batches into the ``lines`` table meanwhile.  Lines
   are kept as UTF-8 text with ``\x02`` tokens (``\x02e`` = ``\x02``, ``\x02r`` = CR, ``\x02d`` =
   ``\x01``, ``\x02b`` = a leading BOM), which DuckDB's CSV reader once mangled and the later
   passes still expect; a line that is not UTF-8 or longer than 1 MiB becomes a marker that is
   rejected.
2. **Split** (C, per line).  A line ``<series key> <fields> <time>`` is *bulk* when its time
   is a canonical integer in range and its field part is plain fields without quotes or
   backslashes (``a=1``, ``a=1,b=2i``) or one string field ``k="..."`` (influx_inspect writes
   one field per line).  It is split at its last two spaces (a string line: at its first space
   not preceded by a backslash and at its last space).  Blank lines, ``#`` comments and
   ``CREATE DATABASE`` lines are skipped; ``# CONTEXT-DATABASE:`` and
   ``# CONTEXT-RETENTION-POLICY:`` set the database and retention policy of the lines after
   them.  Everything else goes to the exact path.  A bulk line's series key is stored as its
   number (``kid``, in order of first appearance); the Splitter keeps the distinct keys' text.
2a. **Pivot** (C, the fast path, tried first for a regular file).  When every data line is a
   one-field bulk line with a good value (an influx_inspect export nearly always is), the
   splitter puts each value straight into its point's cell: a table per measurement, one row
   per (series key, time), a column per (field key, type); no `lines` rows, no merge (a
   later line for a point's field replaces its value, whatever the types).  The first line
   it cannot take that way (one for the exact path, a multi-field or control character
   line, a bad value, a ``# CONTEXT-`` header after the data,
   more than ``_PIVOT_BUDGET`` bytes of points) ends it; so do, after the read, a series key
   that step 5 would send to the exact path, two keys of one series, and a measurement name
   that cannot be a directory.  The file is then converted again from the start, the
   general way, so the output is always the same.
3. **Exact path** (Python, in line order).  A line with an open quote or a trailing backslash
   takes the following physical lines exactly as ``parse`` joins them (lines taken that way
   leave the bulk); lines that fail are rejected.  influx_inspect 1.6 prints ``skipped missing
   file: PATH`` without a newline when a TSM file vanished mid-export: that message is split off
   after the ``NNN-NNN.tsm`` ending PATH and rejected, and the text glued after it is a line.
4. **Validate and collect** (C for one-field lines, SQL for the fields of others).  Values are
   typed by shape (``"..."`` string, ``t/T/true/True/TRUE/f/F/false/False/FALSE`` boolean,
   ``...i`` integer, ``...u`` unsigned, else float) and checked with the parser's patterns and
   ranges; a line with a bad value goes to the exact path, which rejects it.  Then one GROUP BY
   (SQL) gives the distinct series keys and the fields and types per measurement.
5. **Series** (Python, once per *distinct* series key, not per line).  Each key is parsed with
   the exact parser; a key that it might read differently from the bulk split (odd escapes,
   leading whitespace or ``#``, length limits) sends its lines to the exact path.
6. **Merge and write** (SQL, per database, retention policy and measurement).  Lines (and
   exact-path points) are merged into points keyed by (series, time) with
   ``arg_max(value, line order)`` per field: a later line wins, as the WAL does after TSM data.
   Rows are sorted by tags, then time, and written with ZSTD.

Columns and the type-conflict rule
----------------------------------
``time`` (TIMESTAMP_NS, UTC), one VARCHAR column per tag key (sorted), one column per field
key (sorted): float DOUBLE, integer BIGINT, unsigned UBIGINT, string VARCHAR, boolean BOOLEAN.

*Type conflicts are kept, never coerced*: when a field has more than one type among the lines
of one input (and the same database, retention policy and measurement; InfluxDB allows it
across shards), each of its types gets its own column ``<field>__<type>`` (``temp__float``,
``temp__integer``; in the order float, integer, unsigned, string, boolean) and there is no plain
``<field>`` column.  A point's value sits in the column of its type, NULL in the others.  When
the same point's field comes with two types, the later line wins and only its type's column is
set.  Nothing is ever converted, so every value keeps its exact value and type.

Column names are unique, also ignoring case (DuckDB matches names case-insensitively): a tag
key that is also a field key (or is ``time``) gets ``<key>_tag``; a field column that would be
``time`` gets ``time_field``; any clash left gets ``_2``, ``_3``... in column order.

Files
-----
layout ``measurement``: ``<out_dir>/<measurement>/<file_stem>.parquet``; when one input holds
a measurement under several databases or retention policies, they are not merged but written
as ``<file_stem>-0.parquet``, ``-1``... in (database, retention policy) order.
layout ``database``: ``<out_dir>/<database>/<rp>/<measurement>/<file_stem>.parquet``.
Directory names go through :func:`path_segment`.  Each file is written under a hidden
temporary name, fsynced, renamed, and its directory fsynced; files of the same stem that the
run did not write are removed, so a redone chunk replaces its files and never adds copies.

Rejected lines go to ``<rejected_dir>/<file_stem>.txt`` as ``FILE:LINE: reason: <line>``,
sorted by line (LINE is where the error is; a CR or newline inside a rejected line is written
as ``\\r`` or ``\\n``).  The lines of a measurement whose name cannot be a directory name (longer
than 255 bytes encoded) are rejected too.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import duckdb

from headlined import logs, sql
from headlined.influx import _lines
from headlined.lineprotocol import (
    MAX_NANO_TIME,
    MIN_NANO_TIME,
    PRECISION_NS,
    LineProtocolError,
    _scan_line,
    parse,
    parse_line,
)

__all__ = ["ConvertError", "ConvertResult", "convert", "path_segment"]

log = logs.get("convert")

TYPES = ("float", "integer", "unsigned", "string", "boolean")
_TYPE_CODE = {name: code for code, name in enumerate(TYPES)}

_CHUNK = 1 << 22  # bytes read at a time
# Lines split before they go into DuckDB, which bounds memory (by text too: lines of 1 MiB
# strings would otherwise make a batch of hundreds of GiB).
_ROWS_PER_INSERT = 1 << 19
_BYTES_PER_INSERT = 1 << 26
_MAX_LINE = _lines.MAX_LINE  # bytes of one physical line; longer ones are rejected
# Memory the pivot (step 2a) may take for its points before the general way takes over.
_PIVOT_BUDGET = 256 << 20
_GROWING_WAIT = 0.005  # seconds between looks at the end of a file still being written
_MAX_KEY_BYTES = 65535  # measurement, tags and a field key, as the parser counts them
_FIELD_SLOTS = 16384  # order key = rowid * slots + field index; lines this short fit
_MAX_SEGMENT_BYTES = 255
_LOGGED_REJECTS = 100
_BATCH = 5000

# Kinds of rows in the `lines` table: split by SQL; skipped (blank, comment, header); for the
# exact parser; taken out (part of a line that began earlier, or handed to the exact parser).
_BULK, _SKIP, _SLOW, _TAKEN = 0, 1, 2, 3

_BOOLS = ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE")
_TRUE = ("t", "T", "true", "True", "TRUE")

_SKIPPED_FILE = re.compile(r"skipped missing file: (.*?[0-9]+-[0-9]+\.tsm)", re.DOTALL)
_HEADER_DB = "# CONTEXT-DATABASE:"
_HEADER_RP = "# CONTEXT-RETENTION-POLICY:"
_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_PAIRED_KEY = re.compile(r"(?:[^\\ ]|\\.)*", re.DOTALL)
_TOKEN = re.compile("\x02(.)", re.DOTALL)
_TOKENS = {"e": "\x02", "r": "\r", "d": "\x01", "b": "\ufeff"}
_MARK_BAD_UTF8 = "\x02U"
_MARK_LONG = "\x02L"
_STEM_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
# `=` too: DuckDB reads a directory named `k=v` as a Hive partition and adds a column.
_PATH_UNSAFE = re.compile(r"[%/=\\\x00-\x1f\x7f]")


class ConvertError(ValueError):
    """The conversion cannot be done as asked (bad arguments, or input it cannot place)."""


class _NoPivotError(Exception):
    """The pivot cannot decide this input: convert it again, the general way."""


@dataclass(frozen=True)
class ConvertResult:
    """What one conversion read and wrote."""

    lines: int  # data lines seen (not comments/headers/blank)
    points: int  # rows written (after merging field-per-line into points)
    rejected: int
    files: list[Path]  # final Parquet files written
    measurements: dict[tuple[str | None, str | None, str], int]  # (db, rp, measurement) -> rows
    pivoted: bool = False  # whether the fast path (step 2a) wrote it


def path_segment(name: str) -> str:
    """Encode ``name`` as one safe directory name; ``urllib.parse.unquote`` gives it back.

    ``%``, ``/``, ``\\``, ``=`` (DuckDB would take ``k=v`` for a Hive partition), control
    characters and a leading ``.`` (so also ``.`` and ``..``) are percent-encoded as UTF-8;
    everything else (spaces, commas, Thai, emoji) is kept.
    Raises ValueError for an empty name, or one longer than 255 bytes once encoded.
    """
    if not name:
        raise ValueError("an empty name cannot be a directory name")
    encoded = _PATH_UNSAFE.sub(lambda m: urllib.parse.quote(m.group(), safe=""), name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
        raise ValueError(
            f"name {name[:40]!r}... is longer than {_MAX_SEGMENT_BYTES} bytes as a directory name"
        )
    return encoded


# --------------------------------------------------------------------------
# Public entry point


def convert(
    source: Path,
    out_dir: Path,
    *,
    precision: str = "ns",
    layout: Literal["measurement", "database"] = "measurement",
    file_stem: str = "part-00000",
    default_database: str | None = None,
    default_rp: str | None = None,
    rejected_dir: Path | None = None,
    work_dir: Path | None = None,
    memory_limit: str = "512MB",
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    pivot: bool = True,
    growing: Callable[[], bool] | None = None,
    source_done: Callable[[], None] | None = None,
) -> ConvertResult:
    """Convert line protocol at ``source`` (file, ``.gz`` or FIFO; read once) to Parquet.

    See the module docstring for the layout, the columns and the type-conflict rule.
    ``progress`` is called from the splitting thread with the number of physical lines read
    so far (from 0 again if the pivot gives up).  ``pivot``: try the fast path first (a
    regular file only, which is then read twice if the pivot gives up); the output is the
    same either way.  ``growing``: while it returns True, a plain (not gzip) ``source`` is
    still being written, so reaching its end means waiting for more; the conversion ends at
    the first end reached after it returned False.  ``source_done`` is called (from this
    thread) once the source will not be read again, so that it can be removed meanwhile.

    Raises ConvertError for a bad ``precision``, ``layout`` or ``file_stem``, or when layout
    "database" meets data with no database or retention policy (no header and no default);
    OSError when the source cannot be read.
    """
    if precision not in PRECISION_NS:
        raise ConvertError(f"precision must be one of {', '.join(PRECISION_NS)}, not {precision!r}")
    if layout not in ("measurement", "database"):
        raise ConvertError(f"layout must be 'measurement' or 'database', not {layout!r}")
    if not _is_plain_name(file_stem):
        raise ConvertError(
            f"file_stem {file_stem!r} must be a plain file name of at most 200 bytes"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_dir)) if work_dir is None else work_dir
    work.mkdir(parents=True, exist_ok=True)
    # The pivot needs a second read when it gives up: only a regular file can be read again.
    pivot = pivot and source.is_file()
    try:
        while True:
            job = _Job(
                source=source,
                out_dir=out_dir,
                precision=precision,
                layout=layout,
                file_stem=file_stem,
                default_database=default_database,
                default_rp=default_rp,
                rejected_dir=rejected_dir if rejected_dir is not None else out_dir / "_rejected",
                work=work,
                memory_limit=memory_limit,
                threads=threads,
                progress=progress,
                pivot=pivot,
                growing=growing,
                source_done=source_done,
            )
            try:
                return job.run()
            except _NoPivotError as why:
                log.debug("convert_general_way", file=str(source), reason=str(why))
                pivot = False
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# Reading the source


def _pieces(stream: IO[bytes], growing: Callable[[], bool] | None) -> Iterator[bytes]:
    """The stream's bytes in pieces; while ``growing()`` holds, its end is waited out."""
    while True:
        # Asked before the read: when the writer had finished by then, an empty read is the
        # true end; asked after, the writer's last bytes could land between the two.
        more_to_come = growing is not None and growing()
        data = stream.read(_CHUNK)
        if data:
            yield data
        elif not more_to_come:
            return
        else:
            time.sleep(_GROWING_WAIT)


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns `head`, then the rest of `stream`."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[IO[bytes]]:
    """Open a plain or gzip file (recognised by its magic bytes, so a FIFO works too)."""
    with path.open("rb", buffering=0) as raw:
        head = b""
        while len(head) < 2:  # a FIFO may deliver fewer bytes than asked for
            more = raw.read(2 - len(head))
            if not more:
                break
            head += more
        stream = io.BufferedReader(_Prefixed(head, raw), buffer_size=_CHUNK)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield cast("IO[bytes]", unzipped)
        else:
            yield stream


def _decode(text: str) -> str:
    """Undo the reader's \\x02 tokens."""
    if "\x02" not in text:
        return text
    return _TOKEN.sub(lambda m: _TOKENS.get(m.group(1), m.group()), text)


# --------------------------------------------------------------------------
# SQL helpers


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql.literal(v) for v in values) + ")"


_TYPE_SQL = (
    "CASE WHEN starts_with(v, '\"') THEN 3 "
    f"WHEN v IN {_in_list(_BOOLS)} THEN 4 "
    "WHEN suffix(v, 'i') THEN 1 WHEN suffix(v, 'u') THEN 2 ELSE 0 END"
)
_NUMBER_BODY = "substr(v, 1, strlen(v) - 1)"
# Whether a value of each type is one the parser accepts.  Floats: DuckDB's cast reads what the
# parser's pattern does plus a leading "+", "_" digit separators, surrounding whitespace and
# inf/nan; excluding those leaves exactly the parser's finite floats (checked by fuzzing; the
# cast is cheaper than the pattern).  Integers: the pattern, and a cast only when long enough
# to overflow.
_BAD_SQL = (
    "CASE ty "
    "WHEN 0 THEN NOT coalesce(isfinite(TRY_CAST(v AS DOUBLE)) AND ascii(v) > 43 "
    "AND NOT contains(v, '_') AND NOT contains(v, chr(9)) AND NOT contains(v, chr(11)) "
    "AND NOT contains(v, chr(12)), false) "
    "WHEN 1 THEN NOT coalesce(regexp_full_match(v, '-?[0-9]+i') AND (strlen(v) < 20 "
    f"OR TRY_CAST({_NUMBER_BODY} AS BIGINT) IS NOT NULL), false) "
    "WHEN 2 THEN NOT coalesce(regexp_full_match(v, '[0-9]+u') AND (strlen(v) < 21 "
    f"OR TRY_CAST({_NUMBER_BODY} AS UBIGINT) IS NOT NULL), false) "
    "ELSE false END"
)


def _decode_sql(expr: str) -> str:
    """SQL undoing the reader's \\x02 tokens in `expr` (the others first, then \\x02 itself)."""
    return (
        f"replace(replace(replace({expr}, chr(2) || 'r', chr(13)), chr(2) || 'd', chr(1)), "
        "chr(2) || 'e', chr(2))"
    )


def _string_value_sql(v: str) -> str:
    """SQL for the value of string token `v` (``"..."``): tokens decoded, escapes undone."""
    inner = f"substr({v}, 2, length({v}) - 2)"
    decoded = f"(CASE WHEN contains({inner}, chr(2)) THEN {_decode_sql(inner)} ELSE {inner} END)"
    # Only \\" and \\\\ are escapes in a string; the reader's tokens hold no backslash.
    return (
        f"(CASE WHEN contains({inner}, '\\') THEN "
        f"regexp_replace({decoded}, '\\\\([\"\\\\])', '\\1', 'g') ELSE {decoded} END)"
    )


def _value_sql(kind: str, v: str) -> str:
    """SQL turning raw value text `v` (validated to be of type `kind`) into its typed value."""
    body = f"substr({v}, 1, strlen({v}) - 1)"
    if kind == "float":
        return f"CAST({v} AS DOUBLE)"
    if kind == "integer":
        return f"CAST({body} AS BIGINT)"
    if kind == "unsigned":
        return f"CAST({body} AS UBIGINT)"
    if kind == "boolean":
        return f"{v} IN {_in_list(_TRUE)}"
    return _string_value_sql(v)


# What the text of a `lines` row is rebuilt from (see _Job._text).
_LINE_COLUMNS = "kid, fk, v, ts, raw"


def _value_text(value: float | str | bool, kind: str) -> str:
    """A parsed value back in the raw text form that the SQL value expressions read."""
    if kind == "string":
        text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\x02", "\x02e")
        return f'"{text}"'
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "integer":
        return f"{value}i"
    if kind == "unsigned":
        return f"{value}u"
    return repr(float(value))  # the shortest text that reads back as the same double


# --------------------------------------------------------------------------
# The conversion


SeriesId = tuple[str, tuple[tuple[str, str], ...]]
GroupId = tuple[str | None, str | None, str]


@dataclass
class _Group:
    """One output table: a measurement under one database and retention policy."""

    database: str | None
    rp: str | None
    measurement: str
    fields: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    kids: set[int] = field(default_factory=set)  # series keys of bulk lines, by number
    canons: set[str] = field(default_factory=set)  # series of exact-path points
    segments: set[int] = field(default_factory=set)
    tag_keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Segment:
    """Lines from rowid `start` on, up to the next segment, share a database and policy."""

    start: int
    database: str | None
    rp: str | None


class _Job:
    """One conversion: the DuckDB connection and what the passes learn along the way."""

    def __init__(
        self,
        *,
        source: Path,
        out_dir: Path,
        precision: str,
        layout: str,
        file_stem: str,
        default_database: str | None,
        default_rp: str | None,
        rejected_dir: Path,
        work: Path,
        memory_limit: str,
        threads: int | None,
        progress: Callable[[int], None] | None,
        pivot: bool,
        growing: Callable[[], bool] | None,
        source_done: Callable[[], None] | None,
    ) -> None:
        self.source = source
        self.growing = growing
        self.source_done = source_done
        self.pivot = pivot
        self.pivot_tables: list[tuple[str, list[int], list[tuple[str, int]], _lines.Batch]] = []
        self.pivot_first_line = 0
        self.out_dir = out_dir
        self.precision = precision
        self.layout = layout
        self.file_stem = file_stem
        self.default_database = default_database
        self.default_rp = default_rp
        self.rejected_dir = rejected_dir
        self.work = work
        self.progress = progress
        self.mult = PRECISION_NS[precision]
        now = time.time_ns()
        self.now = now - now % self.mult  # parse() truncates the default time the same way
        config: dict[str, Any] = {
            "memory_limit": memory_limit,
            "temp_directory": str(work / "spill"),
            "preserve_insertion_order": True,  # rowid must follow the line order
        }
        if threads is not None:
            config["threads"] = threads
        self.con = duckdb.connect(":memory:", config=config)
        self.lines = 0
        self.rejected = 0
        self.final_newline = True
        self.has_mitems = False
        self.headers: dict[int, tuple[str, str]] = {}  # rowid -> ("database" | "rp", name)
        self.segments: list[_Segment] = []
        self.keys: list[str] = []  # series keys of bulk lines (encoded), by kid
        self.unique = False  # whether no one-field bulk line can override another
        self.bulk_series: dict[int, SeriesId] = {}  # kid -> series
        self.slow_series: dict[str, SeriesId] = {}  # canonical text -> series
        self._canon: dict[SeriesId, str] = {}
        self._slow_rows: list[tuple[int, int, str, str, str, int]] = []
        self._reject_rows: list[tuple[int, str, str]] = []

    # ---------------------------------------------------------------- driver

    def run(self) -> ConvertResult:
        """Run every pass; always closes the connection."""
        try:
            self._read()
            if self.pivot:
                return self._write_pivot()
            self._read_done()
            # From here on the order of rows no longer matters: every query orders explicitly.
            self.con.execute("SET preserve_insertion_order = false")
            self.con.execute(
                "CREATE TABLE slow_items (o BIGINT, n BIGINT, canon VARCHAR, fk VARCHAR, "
                "v VARCHAR, t BIGINT)"
            )
            self.con.execute("CREATE TABLE rejects (line BIGINT, reason VARCHAR, text VARCHAR)")
            self._walk_slow_lines()
            self._split_multi_field_lines()
            self._find_segments()
            groups = self._collect()
            return self._write_all(groups, self._write_group)
        finally:
            self.con.close()

    # ---------------------------------------------------------------- pass 1: read

    def _read(self) -> None:
        """Pass 1: every physical line into the `lines` table, split by headlined.influx._lines.

        A thread reads and splits (without the GIL) while this one inserts the batch before
        into DuckDB; the queue holds two batches at most, which bounds memory.
        """
        self.con.execute(
            "CREATE TABLE lines (kind UTINYINT, kid INTEGER, fk VARCHAR, v VARCHAR, ts BIGINT, "
            "raw VARCHAR, ty UTINYINT, bad BOOLEAN)"
        )
        low = -(-MIN_NANO_TIME // self.mult)  # ceil: the scaled time must stay in range
        budget = _PIVOT_BUDGET if self.pivot else 0
        splitter = _lines.Splitter(low, MAX_NANO_TIME // self.mult, budget)
        batches: queue.Queue[_lines.Batch | None] = queue.Queue(maxsize=2)
        stop = threading.Event()
        failure: list[BaseException] = []

        def split() -> None:
            try:
                with _open_source(self.source) as stream:
                    for data in _pieces(stream, self.growing):
                        if stop.is_set():
                            break
                        splitter.feed(data)
                        if splitter.pivot_failure is not None:
                            break
                        if splitter.rows >= _ROWS_PER_INSERT or splitter.size >= _BYTES_PER_INSERT:
                            batches.put(splitter.take())
                        if self.progress is not None:
                            self.progress(splitter.lines)
                splitter.finish()
                batches.put(splitter.take())
            except BaseException as exc:  # noqa: BLE001 - raised again by the inserting thread
                failure.append(exc)
            finally:
                batches.put(None)

        splitting = threading.Thread(target=split, name="convert-split", daemon=True)
        splitting.start()
        batch = None
        try:
            while (batch := batches.get()) is not None:
                if len(batch):
                    self.con.execute("INSERT INTO lines SELECT * FROM batch")
        finally:
            stop.set()
            while batch is not None:  # the insert failed: unblock a splitter waiting to put
                batch = batches.get()
            splitting.join()
        if failure:
            raise failure[0]
        if self.pivot:
            self._take_pivot(splitter)
        self.final_newline = splitter.final_newline
        self.keys = splitter.keys(0)
        self.unique = splitter.unique

    def _read_done(self) -> None:
        if self.source_done is not None:
            self.source_done()

    # ---------------------------------------------------------------- the pivot

    def _take_pivot(self, splitter: _lines.Splitter) -> None:
        if splitter.pivot_failure is not None:
            raise _NoPivotError(splitter.pivot_failure)
        self.pivot_first_line = splitter.pivot_first_line
        self.lines = splitter.pivot_lines
        self.pivot_tables = splitter.pivot_tables()

    def _write_pivot(self) -> ConvertResult:
        """Write the points that the splitter pivoted (step 2a); _NoPivotError when it cannot.

        Every check comes before the first file is written, so the general way that takes
        over starts from the same place.
        """
        self._find_segments()
        # Headers after the first point fail the pivot, so one segment holds all the points.
        first = self.pivot_first_line - 1  # its rowid; -1 when there are no points
        segment = max(i for i, seg in enumerate(self.segments) if seg.start <= max(first, 0))
        groups, tables = self._pivot_groups(segment)
        self._check_layout(groups)
        if len(self._targets(groups)) < len(groups):
            raise _NoPivotError("a measurement name that cannot be a directory")
        self._read_done()
        return self._write_all(
            groups,
            # Popped: each table's points are freed once written.
            lambda group, target: self._write_table(
                group, target, *tables.pop((group.database, group.rp, group.measurement))
            ),
        )

    def _pivot_groups(
        self, segment: int
    ) -> tuple[dict[GroupId, _Group], dict[GroupId, tuple[list[tuple[str, int]], _lines.Batch]]]:
        """The output group and the pivoted table of each measurement; _NoPivotError when a
        series key is odd or a measurement or series was written in more than one way."""
        where = self.segments[segment]
        parsed = {kid: _parse_key(key) for kid, key in enumerate(self.keys)}
        groups: dict[GroupId, _Group] = {}
        tables: dict[GroupId, tuple[list[tuple[str, int]], _lines.Batch]] = {}
        pivoted, self.pivot_tables = self.pivot_tables, []
        for _, kids, fields, batch in pivoted:
            series = {parsed[kid] for kid in kids}
            longest_field = max((fk for fk, _ in fields), key=lambda fk: len(fk.encode()))
            if None in series or not all(
                _key_fits(len(_decode(self.keys[kid]).encode()), longest_field) for kid in kids
            ):
                raise _NoPivotError("a series key for the exact parser")
            names = {sid[0] for sid in series if sid is not None}
            ident = (where.database, where.rp, names.pop())
            if names or len(series) != len(kids) or ident in groups:
                raise _NoPivotError("a measurement or series written in more than one way")
            group = groups[ident] = _Group(*ident, kids=set(kids), segments={segment})
            for fk, ty in fields:
                group.fields[fk].add(TYPES[ty])
            tables[ident] = (fields, batch)
        self.bulk_series = {kid: sid for kid, sid in parsed.items() if sid is not None}
        return groups, tables

    def _write_table(
        self, group: _Group, target: Path, fields: list[tuple[str, int]], batch: _lines.Batch
    ) -> int:
        """One measurement's pivoted points to Parquet, as _write_group writes merged ones."""
        field_columns, tag_columns = _column_names(group.tag_keys, group.fields)
        cell = {(fk, TYPES[ty]): f"p.c{index}" for index, (fk, ty) in enumerate(fields)}
        columns = [f'make_timestamp_ns(p.ts * {self.mult}) AS "time"']
        columns += [f"g.t{index} AS {sql.ident(name)}" for index, name in enumerate(tag_columns)]
        columns += [
            f"{cell[key, kind]} AS {sql.ident(name)}" for name, key, kind, _ in field_columns
        ]
        # `batch` (read by DuckDB by its name in this frame) is copied into a table first:
        # DuckDB scans one Arrow array in one thread, and the join and sort then ran about
        # 0.1 s slower per 400K points than from a table.
        self.con.execute("CREATE OR REPLACE TABLE points AS SELECT * FROM batch")
        del batch  # its memory goes before the sort needs more
        return self._copy(
            f"SELECT {', '.join(columns)} FROM points p JOIN group_keys k ON p.kid = k.kid "
            "JOIN group_tags g ON k.sid = g.sid ORDER BY k.sid, p.ts",
            target,
        )

    # ---------------------------------------------------------------- exact path

    def _walk_slow_lines(self) -> None:
        """Parse, in order, the lines that the bulk classification left to the exact parser."""
        cursor = self.con.cursor()
        cursor.execute(f"SELECT rowid, raw FROM lines WHERE kind = {_SLOW} ORDER BY rowid")
        taken_until = -1
        taken: list[tuple[int, int]] = []
        while batch := cursor.fetchmany(_BATCH):
            for rowid, raw in batch:
                if rowid <= taken_until:
                    continue  # part of a logical line that began earlier
                last = self._exact_line(rowid, raw)
                if last > rowid:
                    taken.append((rowid + 1, last))
                    taken_until = last
        cursor.close()
        for first, last in taken:
            self.con.execute(
                f"UPDATE lines SET kind = {_TAKEN} WHERE rowid BETWEEN ? AND ?", [first, last]
            )
        self._flush()

    def _exact_line(self, rowid: int, raw: str) -> int:
        """Handle the logical line starting at physical row `rowid`; return its last rowid."""
        if raw.startswith(_MARK_BAD_UTF8):
            text = bytes.fromhex(raw[len(_MARK_BAD_UTF8) :]).decode("utf-8", "backslashreplace")
            self.lines += 1
            self._reject(rowid, "invalid UTF-8", text)
            return rowid
        if raw.startswith(_MARK_LONG):
            length, _, head = raw[len(_MARK_LONG) :].partition(":")
            text = bytes.fromhex(head).decode("utf-8", "backslashreplace") + "..."
            self.lines += 1
            self._reject(rowid, f"line of {length} bytes, longer than {_MAX_LINE}", text)
            return rowid
        text = _decode(raw)
        while match := _SKIPPED_FILE.match(text):
            # influx_inspect 1.6 prints this without a newline when a TSM file vanished during
            # the export: what follows the .tsm path is the next line of the export.
            self.lines += 1
            self._reject(rowid, "influx_inspect message, not line protocol", match.group())
            text = text[match.end() :]
        if not text:
            return rowid
        last = rowid
        if '"' in text or text.endswith("\\"):
            text, last = self._logical_line(text, rowid)
        self._exact_text(text, rowid)
        return last

    def _logical_line(self, text: str, rowid: int) -> tuple[str, int]:
        """Join the following physical lines as parse() does; return the text and last rowid."""
        last = rowid
        following = self._physical_lines(rowid + 1)
        for nxt in following:
            # Whether a newline ends the line depends on the scanner's state there, so scan
            # the text with the next line appended, as parse() scans the whole input.
            joined = text + "\n" + nxt
            if _scan_line(joined, 0) == len(text):
                break
            text, last = joined, last + 1
        else:
            # Still open at the end of the input: parse() takes the input's last newline too.
            if self.final_newline and _scan_line(text + "\n", 0) > len(text):
                text += "\n"
        following.close()
        return text, last

    def _physical_lines(self, first: int) -> Generator[str, None, None]:
        """Physical lines from rowid `first` on, decoded, fetched a few at a time."""
        cursor = self.con.cursor()
        try:
            start = first
            while True:
                rows = cursor.execute(
                    f"SELECT {_LINE_COLUMNS} FROM lines WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                    [start, start + 63],
                ).fetchall()
                for row in rows:
                    yield _decode(self._text(*row))
                if len(rows) < 64:
                    return
                start += 64
        finally:
            cursor.close()

    def _exact_text(self, text: str, rowid: int) -> None:
        """Parse one logical line (first physical row `rowid`) with the exact parser."""
        header = _header(text)
        if header is not None:
            self.headers[rowid] = header
            return
        stripped = text.lstrip(" \t\x00")
        if not stripped or stripped.startswith("#") or text.startswith("CREATE DATABASE "):
            return
        self.lines += 1
        if _MARK_BAD_UTF8 in text or _MARK_LONG in text:
            self._reject(rowid, "invalid UTF-8 or an overlong line inside a quoted string", text)
            return
        try:
            # parse(), not parse_line(): they differ on a line whose quote is still open at a
            # final newline, and the converter agrees with parse() on the whole input.
            points = parse(text, self.precision, self.now)
        except LineProtocolError as exc:
            self._reject(rowid + exc.line - 1, f"{exc.reason} (column {exc.column})", text)
            return
        if not points:  # a comment or blank line after all
            self.lines -= 1
            return
        point = points[0]
        sid: SeriesId = (point.measurement, tuple(sorted(point.tags.items())))
        canon = self._canon.get(sid)
        if canon is None:
            canon = self._canon[sid] = json.dumps(sid, ensure_ascii=False)
            self.slow_series[canon] = sid
        for index, (key, value) in enumerate(point.fields.items()):
            self._slow_rows.append(
                (
                    rowid * _FIELD_SLOTS + index,
                    rowid,
                    canon,
                    key,
                    _value_text(value, point.field_types[key]),
                    point.time,
                )
            )
        if len(self._slow_rows) >= _BATCH:
            self._flush()

    def _reject(self, rowid: int, reason: str, text: str) -> None:
        self.rejected += 1
        if self.rejected <= _LOGGED_REJECTS:
            log.warning("line rejected", file=str(self.source), line=rowid + 1, reason=reason)
        self._reject_rows.append((rowid + 1, reason, _shown(text)))
        if len(self._reject_rows) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        """Move buffered exact-path points and rejects into their DuckDB tables."""
        if self._slow_rows:
            self.con.execute(
                "INSERT INTO slow_items SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
                "unnest($5), unnest($6)",
                [list(column) for column in zip(*self._slow_rows, strict=True)],
            )
            self._slow_rows.clear()
        if self._reject_rows:
            self.con.execute(
                "INSERT INTO rejects SELECT unnest($1), unnest($2), unnest($3)",
                [list(column) for column in zip(*self._reject_rows, strict=True)],
            )
            self._reject_rows.clear()

    def _text(
        self, kid: int | None, fk: str | None, v: str | None, ts: int | None, raw: str | None
    ) -> str:
        """The physical line of a `lines` row, still encoded.

        A bulk row (also one taken out since) is rebuilt from its parts, which is exact
        because its time is canonical; an empty line has no text at all.
        """
        if raw is None and kid is not None:
            fields = v if fk is None else f"{fk}={v}"
            return f"{self.keys[kid]} {fields} {ts}"
        return raw or ""

    def _reparse_bulk(self, where: str) -> None:
        """Hand bulk rows matching `where` to the exact parser (each is one whole line)."""
        cursor = self.con.cursor()
        cursor.execute(
            f"SELECT rowid, {_LINE_COLUMNS} FROM lines WHERE kind = {_BULK} AND ({where}) "
            "ORDER BY rowid"
        )
        while batch := cursor.fetchmany(_BATCH):
            for rowid, *row in batch:
                # A whole line: it cannot take the next ones.
                self._exact_line(rowid, self._text(*row))
        cursor.close()
        self._flush()
        # The same condition again, rather than a list of rows that could be most of them.
        self.con.execute(f"UPDATE lines SET kind = {_TAKEN} WHERE kind = {_BULK} AND ({where})")
        if self.has_mitems:
            self.con.execute(
                f"DELETE FROM mitems WHERE n IN (SELECT rowid FROM lines WHERE kind = {_TAKEN})"
            )

    # ---------------------------------------------------------------- multi-field lines

    def _split_multi_field_lines(self) -> None:
        """Unnest plain multi-field lines into `mitems`; odd ones go to the exact parser."""
        row = self.con.execute(
            f"SELECT count(*) FROM lines WHERE kind = {_BULK} AND fk IS NULL"
        ).fetchone()
        if not row or not row[0]:
            return
        self.con.execute(f"""
            CREATE TABLE mitems AS
            SELECT n, kid, ts, idx, eq, substr(item, 1, eq - 1) AS fk, substr(item, eq + 1) AS v
            FROM (SELECT n, kid, ts, idx, item, strpos(item, '=') AS eq FROM (
                SELECT n, kid, ts, unnest(items) AS item, unnest(range(1, len(items) + 1)) AS idx
                FROM (SELECT rowid AS n, kid, ts, string_split(v, ',') AS items
                      FROM lines WHERE kind = {_BULK} AND fk IS NULL)))
        """)
        self.has_mitems = True
        # An empty field or key, or a key given twice in one line (parse() keeps only the
        # last, so the first one's type must not count), is left to the exact parser.
        self._reparse_bulk(
            "rowid IN (SELECT n FROM mitems WHERE eq <= 1 OR v = '' "
            "UNION SELECT n FROM mitems GROUP BY n, fk HAVING count(*) > 1)"
        )

    # ---------------------------------------------------------------- headers, segments

    def _find_segments(self) -> None:
        rows = self.con.execute(
            f"SELECT rowid, raw FROM lines WHERE kind = {_SKIP} AND starts_with(raw, '# CONTEXT-')"
        ).fetchall()
        for rowid, raw in rows:
            header = _header(_decode(raw))
            if header is not None:
                self.headers[rowid] = header
        segments = [_Segment(0, self.default_database, self.default_rp)]
        for rowid in sorted(self.headers):
            kind, name = self.headers[rowid]
            if kind == "database":
                segments.append(_Segment(rowid, name, self.default_rp))
            else:
                segments.append(_Segment(rowid, segments[-1].database, name))
        self.segments = segments

    def _segment_sql(self, column: str) -> str:
        """SQL for the segment index of rowid `column`."""
        if len(self.segments) == 1:
            return "0"
        cases = " ".join(
            f"WHEN {column} < {segment.start} THEN {index}"
            for index, segment in enumerate(self.segments[1:])
        )
        return f"CASE {cases} ELSE {len(self.segments) - 1} END"

    # ---------------------------------------------------------------- pass 2: what is there

    def _collect(self) -> dict[GroupId, _Group]:
        """Validate values, parse distinct series keys, and gather fields per output group."""
        # The splitter typed and checked one-field lines; the fields of others are done here.
        items = (
            f"SELECT rowid AS n, kid, fk, ty, bad FROM lines WHERE kind = {_BULK} "
            "AND fk IS NOT NULL"
        )
        if self.has_mitems:
            items += (
                f" UNION ALL SELECT n, kid, fk, ty, {_BAD_SQL} AS bad "
                f"FROM (SELECT n, kid, fk, v, {_TYPE_SQL} AS ty FROM mitems)"
            )
        scan = f"SELECT {self._segment_sql('n')} AS seg, n, kid, fk, ty, bad FROM ({items})"
        rows = self.con.execute(
            f"SELECT seg, kid, fk, ty, count(*) FILTER (WHERE NOT bad), "
            f"count(*) FILTER (WHERE bad) FROM ({scan}) GROUP BY ALL"
        ).fetchall()
        if any(row[5] for row in rows):
            # Bad numbers, overflows, infinities: the exact parser gives the reason.
            self._reparse_bulk(f"rowid IN (SELECT n FROM ({scan}) WHERE bad)")
        parsed = {kid: _parse_key(self.keys[kid]) for kid in {row[1] for row in rows if row[4]}}
        key_bytes = {kid: len(_decode(self.keys[kid]).encode()) for kid in parsed}
        for _, kid, fk, _, good, _ in rows:
            if good and not _key_fits(key_bytes[kid], fk):
                parsed[kid] = None
        odd = [kid for kid, sid in parsed.items() if sid is None]
        if odd:
            self.con.execute("CREATE OR REPLACE TABLE odd_kids AS SELECT unnest($1) AS kid", [odd])
            self._reparse_bulk("kid IN (SELECT kid FROM odd_kids)")
        self.bulk_series = {kid: sid for kid, sid in parsed.items() if sid is not None}
        slow_rows = self.con.execute(
            f"SELECT {self._segment_sql('n')} AS seg, canon, fk, {_TYPE_SQL} AS ty "
            "FROM slow_items GROUP BY ALL"
        ).fetchall()
        groups: dict[GroupId, _Group] = {}

        def group(segment: int, measurement: str) -> _Group:
            where = self.segments[segment]
            ident = (where.database, where.rp, measurement)
            found = groups.get(ident)
            if found is None:
                found = groups[ident] = _Group(where.database, where.rp, measurement)
            found.segments.add(segment)
            return found

        for segment, kid, fk, ty, good, _ in rows:
            sid = self.bulk_series.get(kid)
            if good and sid is not None:
                target = group(segment, sid[0])
                target.kids.add(kid)
                target.fields[fk].add(TYPES[ty])
        for segment, canon, fk, ty in slow_rows:
            target = group(segment, self.slow_series[canon][0])
            target.canons.add(canon)
            target.fields[fk].add(TYPES[ty])
        self._check_layout(groups)
        row = self.con.execute(f"SELECT count(*) FROM lines WHERE kind = {_BULK}").fetchone()
        self.lines += int(row[0]) if row else 0
        return groups

    def _check_layout(self, groups: Iterable[GroupId]) -> None:
        if self.layout == "database":
            for database, rp, measurement in groups:
                if database is None or rp is None:
                    raise ConvertError(
                        f"{self.source}: lines of measurement {measurement!r} come before any "
                        f"'{_HEADER_DB}'/'{_HEADER_RP}' header and no default_database/"
                        "default_rp was given"
                    )

    # ---------------------------------------------------------------- pass 3: write

    def _write_all(
        self, groups: dict[GroupId, _Group], write: Callable[[_Group, Path], int]
    ) -> ConvertResult:
        """Write each group with ``write``, remove stale files, write the rejects."""
        sid_of = _series_ids(set(self.bulk_series.values()) | set(self.slow_series.values()))
        targets = self._targets(groups)
        files: list[Path] = []
        written: dict[Path, set[str]] = defaultdict(set)
        measurements: dict[GroupId, int] = {}
        for ident in sorted(groups, key=_group_order):
            group = groups[ident]
            self._group_tables(group, sid_of)
            target = targets.get(ident)
            if target is None:
                self._reject_group(group)
                continue
            measurements[ident] = write(group, target)
            files.append(target)
            written[target.parent].add(target.name)
        for directory, names in written.items():
            _remove_stale(directory, self.file_stem, names)
        self._flush()
        self._write_rejects()
        result = ConvertResult(
            self.lines, sum(measurements.values()), self.rejected, files, measurements, self.pivot
        )
        log.info(
            "converted",
            file=str(self.source),
            lines=result.lines,
            points=result.points,
            rejected=result.rejected,
            files=len(files),
            pivoted=result.pivoted,
        )
        return result

    def _targets(self, groups: dict[GroupId, _Group]) -> dict[GroupId, Path]:
        """The final file of each group; groups whose names cannot be directories are left out."""
        targets: dict[GroupId, Path] = {}
        if self.layout == "database":
            for ident in groups:
                with contextlib.suppress(ValueError):
                    parts = [path_segment(str(name)) for name in ident]
                    targets[ident] = self.out_dir.joinpath(*parts, f"{self.file_stem}.parquet")
            return targets
        by_measurement: dict[str, list[GroupId]] = defaultdict(list)
        for ident in groups:
            by_measurement[ident[2]].append(ident)
        for measurement, idents in by_measurement.items():
            try:
                directory = self.out_dir / path_segment(measurement)
            except ValueError:
                continue
            idents.sort(key=_group_order)
            for index, ident in enumerate(idents):
                name = self.file_stem if len(idents) == 1 else f"{self.file_stem}-{index}"
                targets[ident] = directory / f"{name}.parquet"
        return targets

    def _group_tables(self, group: _Group, sid_of: dict[SeriesId, int]) -> None:
        """Temp tables of the group's series: kids to series ids, series ids to tag values."""
        kids = sorted(group.kids)
        canons = sorted(group.canons)
        self.con.execute(
            "CREATE OR REPLACE TABLE group_keys AS "
            "SELECT unnest($1)::INTEGER AS kid, unnest($2)::INTEGER AS sid",
            [kids, [sid_of[self.bulk_series[kid]] for kid in kids]],
        )
        self.con.execute(
            "CREATE OR REPLACE TABLE group_canons AS "
            "SELECT unnest($1) AS canon, unnest($2)::INTEGER AS sid",
            [canons, [sid_of[self.slow_series[canon]] for canon in canons]],
        )
        series = sorted(self._group_series(group), key=sid_of.__getitem__)
        tag_keys = sorted({tag for sid in series for tag, _ in sid[1]})
        columns = [[dict(sid[1]).get(tag) for sid in series] for tag in tag_keys]
        select = "".join(f"unnest(${i + 2}) AS t{i}, " for i in range(len(tag_keys)))
        self.con.execute(
            f"CREATE OR REPLACE TABLE group_tags AS SELECT {select}unnest($1)::INTEGER AS sid",
            [[sid_of[sid] for sid in series], *columns],
        )
        group.tag_keys = tag_keys

    def _group_series(self, group: _Group) -> set[SeriesId]:
        return {self.bulk_series[kid] for kid in group.kids} | {
            self.slow_series[canon] for canon in group.canons
        }

    def _sources_sql(self, group: _Group, with_type: bool) -> str:
        """Every (order, series id, time, field key, raw value) of one group."""
        ranges = []
        for index in sorted(group.segments):
            start = self.segments[index].start
            if index + 1 < len(self.segments):
                ranges.append(f"n BETWEEN {start} AND {self.segments[index + 1].start - 1}")
            else:
                ranges.append(f"n >= {start}")
        parts: list[str] = []
        if group.kids:
            # Keys are numbered as they first appear and an export comes sorted by key: the
            # range lets DuckDB skip the row groups of other measurements.
            parts.append(
                f"SELECT l.rowid * {_FIELD_SLOTS} AS o, l.rowid AS n, g.sid, "
                f"l.ts * {self.mult} AS t, l.fk, l.v FROM lines l JOIN group_keys g "
                f"ON l.kid = g.kid WHERE l.kind = {_BULK} AND l.fk IS NOT NULL "
                f"AND l.kid BETWEEN {min(group.kids)} AND {max(group.kids)}"
            )
            if self.has_mitems:
                parts.append(
                    f"SELECT m.n * {_FIELD_SLOTS} + m.idx AS o, m.n, g.sid, "
                    f"m.ts * {self.mult} AS t, m.fk, m.v FROM mitems m JOIN group_keys g "
                    "ON m.kid = g.kid"
                )
        if group.canons:
            parts.append(
                "SELECT s.o, s.n, g.sid, s.t, s.fk, s.v FROM slow_items s JOIN group_canons g "
                "ON s.canon = g.canon"
            )
        union = " UNION ALL ".join(f"({part})" for part in parts)
        type_column = f", {_TYPE_SQL} AS ty" if with_type else ""
        return f"SELECT o, sid, t, fk, v{type_column} FROM ({union}) WHERE {' OR '.join(ranges)}"

    def _write_group(self, group: _Group, target: Path) -> int:
        field_columns, tag_columns = _column_names(group.tag_keys, group.fields)
        with_type = any(len(kinds) > 1 for kinds in group.fields.values())
        # Raw value text is aggregated and converted afterwards: one conversion per output
        # value instead of one per line and type.  When no line can override another (the
        # splitter saw each series key's field times only increase, no two keys are one series
        # (tags in another order), and no exact-path or multi-field values join them), a
        # field's only value needs no ordering.
        one_key_each = len(self._group_series(group)) == len(group.kids)
        only = self.unique and one_key_each and not group.canons and not self.has_mitems
        latest = "any_value(v)" if only else "arg_max(v, o)"
        aggregates = []
        values = []
        for name, key, kind, conflicting in field_columns:
            lit, column = sql.literal(key), sql.ident(name)
            if conflicting:
                code = _TYPE_CODE[kind]
                aggregates.append(
                    f"CASE WHEN arg_max(ty, o) FILTER (WHERE fk = {lit}) = {code} THEN "
                    f"arg_max(v, o) FILTER (WHERE fk = {lit} AND ty = {code}) END AS {column}"
                )
            else:
                aggregates.append(f"{latest} FILTER (WHERE fk = {lit}) AS {column}")
            values.append(f"{_value_sql(kind, f'p.{column}')} AS {column}")
        columns = ['make_timestamp_ns(p.t) AS "time"']
        columns += [f"g.t{index} AS {sql.ident(name)}" for index, name in enumerate(tag_columns)]
        columns += values
        return self._copy(
            f"""SELECT {", ".join(columns)}
                FROM (SELECT sid, t, {", ".join(aggregates)}
                      FROM ({self._sources_sql(group, with_type)}) GROUP BY sid, t) p
                JOIN group_tags g ON p.sid = g.sid
                ORDER BY p.sid, p.t""",
            target,
        )

    def _copy(self, select: str, target: Path) -> int:
        """The rows of ``select`` into the Parquet file ``target``.

        Written under a hidden name, fsynced, renamed, the directory fsynced; returns the rows.
        """
        tmp = target.parent / f".{target.name}.tmp"
        target.parent.mkdir(parents=True, exist_ok=True)
        row = self.con.execute(
            f"COPY ({select}) TO {sql.literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        _fsync(tmp)
        tmp.replace(target)
        _fsync(target.parent)
        return int(row[0]) if row else 0

    def _reject_group(self, group: _Group) -> None:
        """Reject every line of a group whose names cannot become directory names."""
        what = (
            "database, retention policy or measurement"
            if self.layout == "database"
            else ("measurement")
        )
        reason = f"{what} name longer than {_MAX_SEGMENT_BYTES} bytes as a directory name"
        cursor = self.con.cursor()
        cursor.execute(
            f"SELECT rowid, {_LINE_COLUMNS} FROM lines WHERE rowid IN "
            f"(SELECT o // {_FIELD_SLOTS} FROM ({self._sources_sql(group, False)})) ORDER BY rowid"
        )
        while batch := cursor.fetchmany(_BATCH):
            for rowid, *row in batch:
                # (Of a multi-line one: its first line.)
                self._reject(rowid, reason, _decode(self._text(*row)))
        cursor.close()

    def _write_rejects(self) -> None:
        target = self.rejected_dir / f"{self.file_stem}.txt"
        if not self.rejected:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            return
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.rejected_dir / f".{target.name}.tmp"
        cursor = self.con.cursor()
        cursor.execute("SELECT line, reason, text FROM rejects ORDER BY line, reason")
        with tmp.open("w", encoding="utf-8", errors="surrogateescape", newline="\n") as out:
            while batch := cursor.fetchmany(_BATCH):
                out.writelines(
                    f"{self.source}:{line}: {reason}: {text}\n" for line, reason, text in batch
                )
            out.flush()
            os.fsync(out.fileno())
        cursor.close()
        tmp.replace(target)
        _fsync(self.rejected_dir)
        log.warning(
            "rejected lines kept aside",
            file=str(self.source),
            rejected=self.rejected,
            path=str(target),
        )


# --------------------------------------------------------------------------
# Small pieces


def _is_plain_name(name: str) -> bool:
    # One visible path component (path_segment()'s output is one); room is left for
    # "-<n>.parquet" and the hidden temporary name.
    return (
        0 < len(name.encode("utf-8", "surrogatepass")) <= 200
        and not name.startswith(".")
        and not _STEM_UNSAFE.search(name)
    )


def _header(text: str) -> tuple[str, str] | None:
    if "\n" in text:
        return None
    if text.startswith(_HEADER_DB):
        return "database", text[len(_HEADER_DB) :]
    if text.startswith(_HEADER_RP):
        return "rp", text[len(_HEADER_RP) :]
    return None


def _parse_key(encoded: str) -> SeriesId | None:
    """Measurement and tags of a bulk series key, or None if the bulk split may be wrong."""
    key = _decode(encoded)
    if not key or key[0] in " \t\x00#" or key.endswith("\\"):
        return None
    # The bulk split took the first space not preceded by a backslash as the key's end; the
    # line scanner reads backslashes in pairs.  Both must agree that the key has no space.
    if _UNESCAPED_SPACE.search(key) or not _PAIRED_KEY.fullmatch(key):
        return None
    try:
        point = parse_line(key + " f=1 0")
    except LineProtocolError:
        return None
    return point.measurement, tuple(sorted(point.tags.items()))


def _key_fits(key_bytes: int, field_key: str) -> bool:
    """Whether the parser takes a series key of this many bytes with this field key: it limits
    measurement, tags and a field key to 65535 bytes together."""
    return key_bytes + 4 + len(field_key.encode()) <= _MAX_KEY_BYTES


def _series_ids(series: set[SeriesId]) -> dict[SeriesId, int]:
    """Number the series so that, within a measurement, ids follow the tag values.

    Tags compare in sorted-key order over all tag keys of the measurement, a missing tag
    last, so ORDER BY id sorts a measurement's rows by its tag columns.
    """
    keys: dict[str, set[str]] = defaultdict(set)
    for measurement, tags in series:
        keys[measurement].update(tag for tag, _ in tags)
    ordered = {name: sorted(tags) for name, tags in keys.items()}

    def order(sid: SeriesId) -> tuple[str, tuple[tuple[int, str], ...]]:
        values = dict(sid[1])
        return sid[0], tuple(
            (0, values[tag]) if tag in values else (1, "") for tag in ordered[sid[0]]
        )

    return {sid: index for index, sid in enumerate(sorted(series, key=order))}


def _shown(text: str) -> str:
    """A rejected line on one line of the rejected file."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _group_order(ident: tuple[str | None, str | None, str]) -> tuple[Any, ...]:
    database, rp, measurement = ident
    return (database is not None, database or "", rp is not None, rp or "", measurement)


def _column_names(
    tag_keys: Sequence[str], fields: dict[str, set[str]]
) -> tuple[list[tuple[str, str, str, bool]], list[str]]:
    """Field columns (name, key, type, of a conflicting field) and tag column names."""
    taken = {"time"}

    def claim(name: str) -> str:
        base, number = name, 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name.casefold())
        return name

    field_columns: list[tuple[str, str, str, bool]] = []
    for key in sorted(fields):
        kinds = [kind for kind in TYPES if kind in fields[key]]
        multi = len(kinds) > 1
        for kind in kinds:
            name = f"{key}__{kind}" if multi else key
            if name.casefold() == "time":
                name += "_field"
            field_columns.append((claim(name), key, kind, multi))
    folded_fields = {key.casefold() for key in fields} | {"time"}
    tag_columns = [
        claim(f"{tag}_tag" if tag.casefold() in folded_fields else tag) for tag in tag_keys
    ]
    return field_columns, tag_columns


def _remove_stale(directory: Path, stem: str, keep: set[str]) -> None:
    """Delete files of this stem that this run did not write (a redo must replace, not add)."""
    pattern = re.compile(re.escape(stem) + r"(?:-[0-9]+)?\.parquet")
    removed = False
    for path in directory.iterdir():
        if pattern.fullmatch(path.name) and path.name not in keep:
            path.unlink()
            removed = True
    if removed:
        _fsync(directory)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
