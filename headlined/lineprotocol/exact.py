"""The exact path: one logical line parsed section by section, with the position of any error.

Measurement, tag keys and tag values end at a comma or space (tag keys: or ``=``) that no
backslash *immediately* precedes.  Unescaping removes the backslash of ``\\,`` ``\\ `` ``\\=`` in
tag keys and values, and also of ``\\"`` in measurements and field keys (``escape.Unescape``); a
backslash before anything else is kept.  Where InfluxDB's own scanners disagree (text after a
string's closing quote, a field key ending in a backslash) the line is refused, not guessed.
"""

from __future__ import annotations

import operator
import re

from headlined.lineprotocol.grammar import (
    KEY_CHECK_CHARS,
    MAX_KEY_LENGTH,
    MAX_NANO_TIME,
    MIN_NANO_TIME,
    TIMESTAMP_RE,
    WHITESPACE,
    BadValueError,
    FieldValue,
    parse_int,
    parse_value,
    scale_time,
    series_key_fits,
)
from headlined.lineprotocol.point import LineProtocolError, Point, error_at, new_point
from headlined.lineprotocol.scan import scan_line

_SEP_MEASUREMENT_RE = re.compile(r"(?<!\\)[, ]")
_SEP_TAG_RE = re.compile(r"(?<!\\)[, =]")
_FIELD_KEY_RE = re.compile(r"(?:[^\\,= ]++|\\.)++", re.DOTALL)
_STRING_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
_VALUE_END_RE = re.compile(r"[, ]")

_UNESCAPE_KEY_RE = re.compile(r'\\([, ="])')  # measurement, field key
_UNESCAPE_TAG_RE = re.compile(r"\\([, =])")
_UNESCAPE_STRING_RE = re.compile(r'\\([\\"])')
_GROUP_1 = operator.itemgetter(1)


def _unescape_key(raw: str) -> str:
    return _UNESCAPE_KEY_RE.sub(_GROUP_1, raw) if "\\" in raw else raw


def _unescape_tag(raw: str) -> str:
    return _UNESCAPE_TAG_RE.sub(_GROUP_1, raw) if "\\" in raw else raw


def _skip_whitespace(line: str, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in WHITESPACE:
        pos += 1
    return pos


def parse_exact(line: str, pos: int, lineno: int, mult: int, default: int) -> Point:
    """Parse one logical line from ``pos`` (leading whitespace skipped), number ``lineno`` in
    the input; ``mult``: the precision in ns; ``default``: the time of a point without one.
    Raises LineProtocolError."""
    return _ExactParser(line, lineno).parse(pos, mult, default)


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Measurement and tags of a series key (a line's text before its fields) as parse() reads
    them; LineProtocolError when no line can begin with it that way."""
    # Refused: whitespace or "#" first, a newline, an unescaped space, bad tags, more than
    # MAX_KEY_LENGTH bytes.  Each field key must also fit with it: grammar.series_key_fits.
    if not key or key[0] in WHITESPACE or key[0] == "#" or scan_line(key, 0) < len(key):
        raise LineProtocolError("a series key is one line that starts with a measurement", 1, 1)
    measurement, tags, end = _ExactParser(key + " ", 1).key(0)
    if end != len(key):
        raise error_at(key, end, 1, "a series key ends before its first unescaped space")
    return measurement, tags


class _ExactParser:
    """Section-by-section parser for one logical line."""

    def __init__(self, line: str, lineno: int) -> None:
        self.line = line
        self.n = len(line)
        self.lineno = lineno
        self.key_bytes = 0  # escaped measurement+tags size, only when it could matter

    def fail(self, index: int, reason: str) -> LineProtocolError:
        return error_at(self.line, index, self.lineno, reason)

    def parse(self, pos: int, mult: int, default: int) -> Point:
        measurement, tags, pos = self.key(pos)
        fields, types, pos = self.fields(pos)
        return new_point(measurement, tags, fields, types, self.timestamp(pos, mult, default))

    def key(self, pos: int) -> tuple[str, dict[str, str], int]:
        """Measurement and tags; returns the index of the space that ends them."""
        line, n = self.line, self.n
        if line[pos] == ",":
            raise self.fail(pos, "missing measurement")
        found = _SEP_MEASUREMENT_RE.search(line, pos + 1)
        if found is None:
            raise self.fail(n, "expected a space and fields after the measurement")
        end = found.start()
        measurement = _unescape_key(line[pos:end])
        tags: dict[str, str] = {}
        while line[end] == ",":
            end = self.tag(end + 1, tags)
        if n > KEY_CHECK_CHARS:
            self.key_bytes = len(line[pos:end].encode("utf-8", "surrogatepass"))
            if self.key_bytes > MAX_KEY_LENGTH:
                raise self.fail(pos, f"measurement and tags exceed {MAX_KEY_LENGTH} bytes")
        return measurement, tags, end

    def tag(self, start: int, tags: dict[str, str]) -> int:
        """One key=value at start into tags; returns the index of the ',' or ' ' after it."""
        line, n = self.line, self.n
        if start >= n or line[start] in " ,=":
            raise self.fail(start, "missing tag key")
        found = _SEP_TAG_RE.search(line, start + 1)
        if found is None or found.group() != "=":
            where = n if found is None else found.start()
            key = _unescape_tag(line[start:where])
            raise self.fail(where, f"expected '=' after tag key \"{key}\"")
        key = _unescape_tag(line[start : found.start()])
        if key in tags:
            raise self.fail(start, f'duplicate tag key "{key}"')
        value_start = found.end()
        if value_start >= n or line[value_start] in ", ":
            raise self.fail(value_start, f'missing value for tag "{key}"')
        # The first character is not checked, so a value may start with "=" (a scanTagsValue
        # quirk); an unescaped "=" anywhere else is an error.
        found = _SEP_TAG_RE.search(line, value_start + 1)
        if found is None:
            raise self.fail(n, "expected a space and fields after the tags")
        if found.group() == "=":
            raise self.fail(found.start(), f"unescaped '=' in value of tag \"{key}\"")
        tags[key] = _unescape_tag(line[value_start : found.start()])
        return found.start()

    def fields(self, pos: int) -> tuple[dict[str, FieldValue], dict[str, str], int]:
        """The field set after the space at pos; returns the index just past it.

        A field key given twice keeps its last value.
        """
        pos = _skip_whitespace(self.line, pos + 1)
        if pos >= self.n:
            raise self.fail(pos, "missing fields")
        fields: dict[str, FieldValue] = {}
        types: dict[str, str] = {}
        while True:
            key, pos = self.field_key(pos)
            end = self.field_value(pos, key, fields, types)
            if end >= self.n or self.line[end] == " ":
                return fields, types, end
            pos = end + 1

    def field_key(self, pos: int) -> tuple[str, int]:
        """The field key at pos; returns it and the index of its value."""
        line = self.line
        found = _FIELD_KEY_RE.match(line, pos)
        if found is None:
            raise self.fail(pos, "missing field key")
        raw = found.group()
        key = _unescape_key(raw)
        end = found.end()
        if end >= self.n or line[end] != "=":
            raise self.fail(end, f"expected '=' after field key \"{key}\"")
        if raw.endswith("\\"):
            # InfluxDB's scanners disagree about where such a key ends.
            raise self.fail(end - 1, f'field key "{key}" ends with a backslash')
        if self.key_bytes and not series_key_fits(
            self.key_bytes, len(raw.encode("utf-8", "surrogatepass"))
        ):
            raise self.fail(pos, f'series key for field "{key}" exceeds {MAX_KEY_LENGTH} bytes')
        return key, end + 1

    def field_value(
        self, pos: int, key: str, fields: dict[str, FieldValue], types: dict[str, str]
    ) -> int:
        """Store the value at pos; returns the index just past it."""
        line, n = self.line, self.n
        if pos >= n or line[pos] in ", ":
            raise self.fail(pos, f'missing value for field "{key}"')
        if line[pos] == '"':
            # Only \" and \\ are escapes in a string; newlines are allowed.
            found = _STRING_RE.match(line, pos)
            if found is None:
                raise self.fail(pos, f'unterminated string value for field "{key}"')
            content = found.group(1)
            fields[key] = _UNESCAPE_STRING_RE.sub(_GROUP_1, content) if "\\" in content else content
            types[key] = "string"
            end = found.end()
            if end < n and line[end] not in ", ":
                raise self.fail(end, f"expected ',' or ' ' after string value of field \"{key}\"")
            return end
        found = _VALUE_END_RE.search(line, pos)
        end = n if found is None else found.start()
        try:
            fields[key], types[key] = parse_value(line[pos:end])
        except BadValueError as exc:
            raise self.fail(pos, f'{exc.reason} for field "{key}"') from None
        return end

    def timestamp(self, end: int, mult: int, default: int) -> int:
        """The optional timestamp after the fields (which end at `end`), in nanoseconds.

        Only spaces may follow it.
        """
        line, n = self.line, self.n
        pos = _skip_whitespace(line, end + 1)
        if pos >= n:
            return default
        end = line.find(" ", pos)
        if end < 0:
            end = n
        if TIMESTAMP_RE.fullmatch(line, pos, end) is None:
            raise self.fail(pos, f"invalid timestamp {line[pos:end]!r}")
        rest = n - len(line[end:].lstrip(" "))
        if rest < n:
            raise self.fail(rest, "unexpected text after the timestamp")
        stamp = scale_time(parse_int(line[pos:end]), mult)
        if stamp is None:
            raise self.fail(pos, f"timestamp out of range [{MIN_NANO_TIME}, {MAX_NANO_TIME}] ns")
        return stamp
