"""The first pass: the source (plain, gzip or a FIFO, read once and in order) split by
headlined.influx.convert._lines into the DuckDB table `lines`, whose row ``rowid`` is physical line
``rowid + 1``; with a pivot budget, the splitter also pivots one-field lines (see pivot.py)."""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from headlined.influx.convert import _lines
from headlined.influx.convert.groups import SeriesId, series_of_key
from headlined.lineprotocol import MAX_NANO_TIME, MIN_NANO_TIME

CHUNK = 1 << 22  # bytes read at a time
# Lines split before they go into DuckDB, which bounds memory (by text too: lines of 1 MiB
# strings would otherwise make a batch of hundreds of GiB).
ROWS_PER_INSERT = 1 << 19
BYTES_PER_INSERT = 1 << 26
GROWING_WAIT = 0.005  # seconds between looks at the end of a file still being written
BATCH = 5000  # rows fetched from DuckDB, or buffered for it, at a time
KEYS_WAIT = 0.02  # seconds between looks at the series keys the splitter has found

# Kinds of `lines` rows (_lines.c says what each holds).
BULK, SKIP, SLOW, TAKEN = _lines.BULK, _lines.SKIP, _lines.SLOW, _lines.TAKEN
NOT_UTF8, OVERLONG = _lines.NOT_UTF8, _lines.OVERLONG
MAX_LINE = _lines.MAX_LINE  # bytes of one physical line; longer ones are rejected
# The columns that line_text() rebuilds a row's text from.
LINE_COLUMNS = "kid, fk, v, ts, raw"

# A pivoted measurement: its name as written, its key numbers, its (field key, type code)
# columns, and its points (kid, ts as TIMESTAMPTZ_NS, then a column per field and type).
PivotTable = tuple[str, list[int], list[tuple[str, int]], _lines.Batch]


@dataclass
class Split:
    """What the first pass learnt besides the rows of `lines`."""

    keys: list[str]  # the series keys of bulk lines, by number (a row's kid)
    final_newline: bool  # whether the source ends with a newline (or is empty)
    unique: bool  # whether no one-field bulk line can override another
    pivot_failure: str | None = None  # why the pivot gave up, if it was tried and did
    pivot_lines: int = 0
    pivot_first_line: int = 0  # the physical line (from 1) of the first point, or 0
    pivot_tables: list[PivotTable] = field(default_factory=list)
    # With a pivot: series_of_key of each key, by number (parsed while the source is read).
    series: list[SeriesId | None] = field(default_factory=list)

    def take_pivot_tables(self) -> list[PivotTable]:
        """The pivoted tables, handed over once (so each is freed once written)."""
        tables, self.pivot_tables = self.pivot_tables, []
        return tables


def line_text(keys: list[str], row: Sequence[Any]) -> str:
    """The physical line of a `lines` row given as its LINE_COLUMNS (not of NOT_UTF8 or
    OVERLONG rows)."""
    # A bulk row (also one taken out since) is rebuilt from its parts, which is exact because
    # its time is canonical; an empty line has no text at all.
    kid, fk, v, ts, raw = row
    if raw is None and kid is not None:
        fields = v if fk is None else f"{fk}={v}"
        return f"{keys[kid]} {fields} {ts}"
    return raw or ""


def read_lines(
    con: duckdb.DuckDBPyConnection,
    source: Path,
    *,
    mult: int,
    pivot_budget: int,
    growing: Callable[[], bool] | None,
    progress: Callable[[int], None] | None,
) -> Split:
    """Every physical line of ``source`` into the new table `lines`; with a ``pivot_budget``
    (bytes; 0: none) the splitter also pivots what it can."""
    # A thread reads and splits (without the GIL) while this one inserts the batch before into
    # DuckDB; the queue holds two batches at most, which bounds memory. With a pivot (few
    # batches), this one also parses the series keys as they are found, which would otherwise
    # wait for the end of the source (2,000 keys: 30 ms).
    con.execute(
        "CREATE TABLE lines (kind UTINYINT, kid INTEGER, fk VARCHAR, v VARCHAR, ts BIGINT, "
        "raw VARCHAR, ty UTINYINT, bad BOOLEAN)"
    )
    low = -(-MIN_NANO_TIME // mult)  # ceil: the scaled time must stay in range
    splitter = _lines.Splitter(low, MAX_NANO_TIME // mult, pivot_budget, mult)
    batches: queue.Queue[_lines.Batch | None] = queue.Queue(maxsize=2)
    stop = threading.Event()
    failure: list[BaseException] = []
    keys = _Keys(parsing=pivot_budget > 0)

    def split() -> None:
        try:
            with _open_source(source) as stream:
                for data in _pieces(stream, growing):
                    if stop.is_set():
                        break
                    splitter.feed(data)
                    if splitter.pivot_failure is not None:
                        break
                    if splitter.rows >= ROWS_PER_INSERT or splitter.size >= BYTES_PER_INSERT:
                        batches.put(splitter.take())
                    keys.send(splitter)
                    if progress is not None:
                        progress(splitter.lines)
            splitter.finish()
            batches.put(splitter.take())
        except BaseException as exc:  # noqa: BLE001 - raised again by the inserting thread
            failure.append(exc)
        finally:
            batches.put(None)

    splitting = threading.Thread(target=split, name="convert-split", daemon=True)
    splitting.start()
    try:
        _insert(con, batches, stop, keys)
    finally:
        splitting.join()
    if failure:
        raise failure[0]
    keys.finish(splitter)
    found = Split(keys.keys, splitter.final_newline, splitter.unique, series=keys.series)
    if pivot_budget:
        found.pivot_failure = splitter.pivot_failure
        if found.pivot_failure is None:
            found.pivot_first_line = splitter.pivot_first_line
            found.pivot_lines = splitter.pivot_lines
            found.pivot_tables = splitter.pivot_tables()
    return found


def _insert(
    con: duckdb.DuckDBPyConnection,
    batches: queue.Queue[_lines.Batch | None],
    stop: threading.Event,
    keys: _Keys,
) -> None:
    """Insert the splitter's batches into `lines` until it ends (None), parsing ``keys`` while
    there is none; on a failure, stop the splitter."""
    ended = False
    try:
        while not ended:
            try:
                batch = batches.get(timeout=KEYS_WAIT if keys.parsing else None)
            except queue.Empty:
                keys.parse()
                continue
            ended = batch is None
            if batch is not None and len(batch):
                con.execute("INSERT INTO lines SELECT * FROM batch")
    finally:
        stop.set()
        while not ended:  # this thread failed: unblock a splitter waiting to put
            ended = batches.get() is None


class _Keys:
    """The splitter's series keys, and with ``parsing`` their series_of_key, parsed by the
    inserting thread as the splitting thread finds them (see read_lines)."""

    def __init__(self, *, parsing: bool) -> None:
        self.keys: list[str] = []
        self.series: list[SeriesId | None] = []
        self.parsing = parsing
        self._fresh: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self._sent = 0  # the splitting thread's

    def send(self, splitter: _lines.Splitter) -> None:
        """In the splitting thread, between feeds: pass on the keys found since the last."""
        if self.parsing and (found := splitter.keys(self._sent)):
            self._sent += len(found)
            self._fresh.put(found)

    def parse(self) -> None:
        """In the inserting thread: parse the keys passed on so far."""
        while not self._fresh.empty():
            self._add(self._fresh.get())

    def finish(self, splitter: _lines.Splitter) -> None:
        """Once the splitting thread has ended: the rest of the keys."""
        self.parse()
        self._add(splitter.keys(len(self.keys)))

    def _add(self, found: list[str]) -> None:
        self.keys += found
        if self.parsing:
            self.series += [series_of_key(key) for key in found]


def _pieces(
    stream: io.RawIOBase | io.BufferedIOBase, growing: Callable[[], bool] | None
) -> Iterator[memoryview]:
    """The stream's bytes in pieces; while ``growing()`` holds, its end is waited out.

    Each piece is a view of one buffer, read into in place: valid until the next is asked for
    (the splitter copies what it keeps), so no read allocates or copies a piece of its own.
    """
    buffer = memoryview(bytearray(CHUNK))
    while True:
        # Asked before the read: when the writer had finished by then, an empty read is the
        # true end; asked after, the writer's last bytes could land between the two.
        more_to_come = growing is not None and growing()
        count = stream.readinto(buffer)
        if count:
            yield buffer[:count]
        elif not more_to_come:
            return
        else:
            time.sleep(GROWING_WAIT)


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns `head`, then the rest of `stream`."""

    def __init__(self, head: bytes, stream: io.FileIO) -> None:
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
        return self._stream.readinto(view)

    def close(self) -> None:
        self._stream.close()
        super().close()


@contextlib.contextmanager
def _open_source(path: Path) -> Iterator[io.RawIOBase | io.BufferedIOBase]:
    """Open a plain or gzip file (recognised by its magic bytes, so a FIFO works too)."""
    with path.open("rb", buffering=0) as raw:
        head = b""
        while len(head) < 2:  # a FIFO may deliver fewer bytes than asked for
            more = raw.read(2 - len(head))
            if not more:
                break
            head += more
        prefixed = _Prefixed(head, raw)
        if head == b"\x1f\x8b":
            stream = io.BufferedReader(prefixed, buffer_size=CHUNK)
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield unzipped
        else:
            # Unbuffered: each read lands straight in the splitter's buffer (a pipe gives what
            # it holds, a file up to the buffer's size), with no copy through a buffer between.
            yield prefixed
