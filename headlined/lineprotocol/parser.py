"""parse() and parse_line(): line-protocol text in, Points out, as InfluxDB 1.x reads it."""

from __future__ import annotations

import time

from headlined.lineprotocol.exact import parse_exact
from headlined.lineprotocol.fast import KeyCache, plain_point
from headlined.lineprotocol.grammar import KEY_CHECK_CHARS, PRECISION_NS, WHITESPACE
from headlined.lineprotocol.point import Point, error_at
from headlined.lineprotocol.scan import decode, scan_line


def _multiplier(precision: str) -> int:
    try:
        return PRECISION_NS[precision]
    except KeyError:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISION_NS)}, not {precision!r}"
        ) from None


def _default_time(default_time: int | None, mult: int) -> int:
    now = time.time_ns() if default_time is None else default_time
    return now - now % mult  # InfluxDB truncates the default time to the precision


def parse(text: str | bytes, precision: str = "ns", default_time: int | None = None) -> list[Point]:
    """Parse a whole line-protocol text; raise LineProtocolError on the first bad line.

    ``precision`` (``ns``, ``us``, ``ms``, ``s``) scales the timestamps;
    points without one get ``default_time`` (ns; default: now), truncated to
    the precision.  Blank lines and ``#`` comments (after whitespace) are skipped.
    """
    mult = _multiplier(precision)
    if not isinstance(text, str):
        text = decode(bytes(text))
    default = _default_time(default_time, mult)
    points: list[Point] = []
    append = points.append
    cache: KeyCache = {}
    physical = text.split("\n")
    tricky = '"' in text or "\\" in text
    count = len(physical)
    index = 0
    offset = 0
    while index < count:
        line = physical[index]
        lineno = index + 1
        if tricky and ('"' in line or line.endswith("\\")):
            # Quotes or a backslash before the newline: find where the line
            # really ends, exactly as InfluxDB does.
            line = text[offset : scan_line(text, offset)]
            index += line.count("\n") + 1
        else:
            index += 1
        offset += len(line) + 1
        if not line:
            continue
        start = 0
        if line[0] in WHITESPACE:
            start = len(line) - len(line.lstrip(WHITESPACE))
            if start == len(line):
                continue
        if line[start] == "#":
            continue
        point = None
        if start == 0 and len(line) <= KEY_CHECK_CHARS:
            point = plain_point(line, cache, mult, default)
        if point is None:
            point = parse_exact(line, start, lineno, mult, default)
        append(point)
    return points


def parse_line(line: str | bytes, precision: str = "ns", default_time: int | None = None) -> Point:
    """Parse exactly one point (one logical line; one trailing newline is allowed)."""
    mult = _multiplier(precision)
    if not isinstance(line, str):
        line = decode(bytes(line))
    default = _default_time(default_time, mult)
    if line.endswith("\n"):
        line = line[:-1]
    end = scan_line(line, 0)
    if end < len(line):
        raise error_at(line, end, 1, "unexpected end of line: more than one line given")
    start = len(line) - len(line.lstrip(WHITESPACE))
    if start == len(line) or line[start] == "#":
        raise error_at(line, start, 1, "no point: the line is blank or a comment")
    point = None
    if start == 0 and len(line) <= KEY_CHECK_CHARS:
        point = plain_point(line, {}, mult, default)
    return point or parse_exact(line, start, 1, mult, default)
