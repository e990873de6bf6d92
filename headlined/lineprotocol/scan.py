"""Where a logical line ends, exactly as InfluxDB's ``scanLine`` decides, and input bytes decoded
with the position of any invalid UTF-8."""

from __future__ import annotations

import re

from headlined.lineprotocol.point import LineProtocolError

_SCAN_KEY_RE = re.compile(r"[\\ \n]")
_SCAN_FIELDS_RE = re.compile(r'[\\" =,\n]')
_SCAN_QUOTED_RE = re.compile(r'[\\"]')


def scan_line(text: str, pos: int) -> int:
    """Return the index of the newline ending the logical line at pos (or len(text)).

    Mirrors InfluxDB's scanLine: a backslash skips the next character (a newline too, which
    joins two lines), and after the first space a quote toggles quoting when more '=' than ','
    were seen outside quotes; a quoted newline does not end the line.
    """
    n = len(text)
    quoted = False
    equals = 0
    commas = 0
    search = _SCAN_KEY_RE.search  # until the first space only these matter
    while True:
        match = search(text, pos)
        if match is None:
            return n
        i = match.start()
        char = text[i]
        pos = i + 1
        if char == "\\":
            pos += 1
            if pos >= n:
                return n
        elif char == "\n":
            if not quoted:
                return i
        elif char == " ":
            search = _SCAN_QUOTED_RE.search if quoted else _SCAN_FIELDS_RE.search
        elif char == '"':
            if equals > commas:
                quoted = not quoted
                search = _SCAN_QUOTED_RE.search if quoted else _SCAN_FIELDS_RE.search
        elif char == "=":
            equals += 1
        else:  # ","
            commas += 1


def decode(data: bytes) -> str:
    """The UTF-8 text of ``data``; LineProtocolError where it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        raise LineProtocolError(
            "invalid UTF-8", data.count(b"\n", 0, exc.start) + 1, column
        ) from None
