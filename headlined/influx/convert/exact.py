"""The exact path: the lines the bulk split left (or gave back), parsed in line order by
headlined.lineprotocol.parse into the table `slow_items`; a line that fails is rejected."""

from __future__ import annotations

import json
import re
from collections.abc import Generator

import duckdb

from headlined.influx.convert.groups import SeriesId
from headlined.influx.convert.read import (
    BATCH,
    BULK,
    LINE_COLUMNS,
    MAX_LINE,
    NOT_UTF8,
    OVERLONG,
    SLOW,
    TAKEN,
    Split,
    line_text,
)
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.segments import header
from headlined.influx.convert.values import value_text
from headlined.lineprotocol import LineProtocolError, parse, scan_line

FIELD_SLOTS = 16384  # order key = rowid * slots + field index; lines this short fit

_SKIPPED_FILE = re.compile(r"skipped missing file: (.*?[0-9]+-[0-9]+\.tsm)", re.DOTALL)
# What a line that is not UTF-8 or is overlong reads as inside a logical line: nothing the
# line scanner heeds, so the logical line ends where it would with the line's own text.
_UNREADABLE = "\ufffd"


class ExactPath:
    """Parses the awkward lines with the exact parser, in line order."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        split: Split,
        precision: str,
        now: int,
        rejects: Rejects,
    ) -> None:
        self._con = con
        self._split = split
        self._precision = precision
        self._now = now  # the time of a point without one
        self._rejects = rejects
        self._canon: dict[SeriesId, str] = {}
        self._rows: list[tuple[int, int, str, str, str, int]] = []
        self.lines = 0  # data lines seen here
        self.headers: dict[int, tuple[str, str]] = {}  # rowid -> header, of lines seen here
        self.series: dict[str, SeriesId] = {}  # canonical text -> series
        con.execute(
            "CREATE TABLE slow_items (o BIGINT, n BIGINT, canon VARCHAR, fk VARCHAR, "
            "v VARCHAR, t BIGINT)"
        )

    def walk(self) -> None:
        """Parse, in order, the lines that the bulk classification left to the exact parser."""
        cursor = self._con.cursor()
        cursor.execute(
            f"SELECT rowid, kind, raw FROM lines WHERE kind IN ({SLOW}, {NOT_UTF8}, {OVERLONG}) "
            "ORDER BY rowid"
        )
        taken_until = -1
        taken: list[tuple[int, int]] = []
        while batch := cursor.fetchmany(BATCH):
            for rowid, kind, raw in batch:
                if rowid <= taken_until:
                    continue  # part of a logical line that began earlier
                last = self._line(rowid, kind, raw)
                if last > rowid:
                    taken.append((rowid + 1, last))
                    taken_until = last
        cursor.close()
        for first, last in taken:
            self._con.execute(
                f"UPDATE lines SET kind = {TAKEN} WHERE rowid BETWEEN ? AND ?", [first, last]
            )
        self.flush()

    def reparse_bulk(self, where: str, *, mitems: bool) -> None:
        """Hand bulk rows matching `where` to the exact parser (each is one whole line);
        ``mitems``: whether the table of their fields (see collect.py) exists."""
        cursor = self._con.cursor()
        cursor.execute(
            f"SELECT rowid, {LINE_COLUMNS} FROM lines WHERE kind = {BULK} AND ({where}) "
            "ORDER BY rowid"
        )
        while batch := cursor.fetchmany(BATCH):
            for rowid, *row in batch:
                # A whole line: it cannot take the next ones.
                self._line(rowid, BULK, line_text(self._split.keys, row))
        cursor.close()
        self.flush()
        # The same condition again, rather than a list of rows that could be most of them.
        self._con.execute(f"UPDATE lines SET kind = {TAKEN} WHERE kind = {BULK} AND ({where})")
        if mitems:
            self._con.execute(
                f"DELETE FROM mitems WHERE n IN (SELECT rowid FROM lines WHERE kind = {TAKEN})"
            )

    def flush(self) -> None:
        """Move buffered exact-path points and rejects into their DuckDB tables."""
        if self._rows:
            self._con.execute(
                "INSERT INTO slow_items SELECT unnest($1), unnest($2), unnest($3), unnest($4), "
                "unnest($5), unnest($6)",
                [list(column) for column in zip(*self._rows, strict=True)],
            )
            self._rows.clear()
        self._rejects.flush()

    def _reject(self, rowid: int, reason: str, text: str) -> None:
        self.lines += 1
        self._rejects.add(rowid, reason, text)

    def _line(self, rowid: int, kind: int, raw: str) -> int:
        """Handle the logical line starting at physical row `rowid`; return its last rowid."""
        if kind == NOT_UTF8:
            self._reject(rowid, "invalid UTF-8", _unhex(raw))
            return rowid
        if kind == OVERLONG:
            length, _, head = raw.partition(":")
            text = _unhex(head) + "..."
            self._reject(rowid, f"line of {length} bytes, longer than {MAX_LINE}", text)
            return rowid
        text = raw
        while match := _SKIPPED_FILE.match(text):
            # influx_inspect 1.6 prints this without a newline when a TSM file vanished during
            # the export: what follows the .tsm path is the next line of the export.
            self._reject(rowid, "influx_inspect message, not line protocol", match.group())
            text = text[match.end() :]
        if not text:
            return rowid
        last = rowid
        readable = True
        if '"' in text or text.endswith("\\"):
            text, last, readable = self._logical_line(text, rowid)
        self._parse(text, rowid, readable)
        return last

    def _logical_line(self, text: str, rowid: int) -> tuple[str, int, bool]:
        """Join the following physical lines as parse() does; return the text, the last rowid
        and whether every line joined was readable."""
        last = rowid
        readable = True
        following = self._physical_lines(rowid + 1)
        for nxt, nxt_readable in following:
            # Whether a newline ends the line depends on the scanner's state there, so scan
            # the text with the next line appended, as parse() scans the whole input.
            joined = text + "\n" + nxt
            if scan_line(joined, 0) == len(text):
                break
            text, last = joined, last + 1
            readable = readable and nxt_readable
        else:
            # Still open at the end of the input: parse() takes the input's last newline too.
            if self._split.final_newline and scan_line(text + "\n", 0) > len(text):
                text += "\n"
        following.close()
        return text, last, readable

    def _physical_lines(self, first: int) -> Generator[tuple[str, bool], None, None]:
        """(text, readable) of the physical lines from rowid `first` on, fetched a few at a
        time."""
        cursor = self._con.cursor()
        try:
            start = first
            while True:
                rows = cursor.execute(
                    f"SELECT kind, {LINE_COLUMNS} FROM lines WHERE rowid BETWEEN ? AND ? "
                    "ORDER BY rowid",
                    [start, start + 63],
                ).fetchall()
                for kind, *row in rows:
                    if kind in (NOT_UTF8, OVERLONG):
                        yield _UNREADABLE, False
                    else:
                        yield line_text(self._split.keys, row), True
                if len(rows) < 64:
                    return
                start += 64
        finally:
            cursor.close()

    def _parse(self, text: str, rowid: int, readable: bool) -> None:
        """Parse one logical line (first physical row `rowid`) with the exact parser."""
        found = header(text)
        if found is not None:
            self.headers[rowid] = found
            return
        stripped = text.lstrip(" \t\x00")
        if not stripped or stripped.startswith("#") or text.startswith("CREATE DATABASE "):
            return
        if not readable:
            self._reject(rowid, "invalid UTF-8 or an overlong line inside a quoted string", text)
            return
        try:
            # parse(), not parse_line(): they differ on a line whose quote is still open at a
            # final newline, and the converter agrees with parse() on the whole input.
            points = parse(text, self._precision, self._now)
        except LineProtocolError as exc:
            self._reject(rowid + exc.line - 1, f"{exc.reason} (column {exc.column})", text)
            return
        if not points:  # a comment or blank line after all
            return
        self.lines += 1
        point = points[0]
        sid: SeriesId = (point.measurement, tuple(sorted(point.tags.items())))
        canon = self._canon.get(sid)
        if canon is None:
            canon = self._canon[sid] = json.dumps(sid, ensure_ascii=False)
            self.series[canon] = sid
        for index, (key, value) in enumerate(point.fields.items()):
            self._rows.append(
                (
                    rowid * FIELD_SLOTS + index,
                    rowid,
                    canon,
                    key,
                    value_text(value, point.field_types[key]),
                    point.time,
                )
            )
        if len(self._rows) >= BATCH:
            self.flush()


def _unhex(digits: str) -> str:
    """The text of a hex-encoded line that may not be UTF-8, bad bytes shown as ``\\xNN``."""
    return bytes.fromhex(digits).decode("utf-8", "backslashreplace")
