"""Exact, pure parser for the InfluxDB 1.x line protocol.

The rules are those of InfluxDB 1.x's own parser (``models/points.go``, ``pkg/escape``), not just
the prose reference, because the two differ and the stored data is what the Go code produced.
Bytes must be UTF-8; a carriage return is an ordinary character (so CRLF ends make lines
invalid, as in InfluxDB).  Storage-level rules (``time``/``_field`` keys, field type conflicts)
are not the parser's.  ``grammar`` holds the value grammar and limits that others build on.
"""

from __future__ import annotations

from headlined.lineprotocol.exact import parse_series_key
from headlined.lineprotocol.grammar import MAX_NANO_TIME, MIN_NANO_TIME, PRECISION_NS, FieldValue
from headlined.lineprotocol.parser import parse, parse_line
from headlined.lineprotocol.point import LineProtocolError, Point
from headlined.lineprotocol.scan import scan_line

__all__ = [
    "MAX_NANO_TIME",
    "MIN_NANO_TIME",
    "PRECISION_NS",
    "FieldValue",
    "LineProtocolError",
    "Point",
    "parse",
    "parse_line",
    "parse_series_key",
    "scan_line",
]
