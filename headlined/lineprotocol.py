"""Exact, pure parser (and canonical encoder) for the InfluxDB 1.x line protocol.

The rules follow InfluxDB 1.x's own parser (``models/points.go`` and
``pkg/escape`` in influxdata/influxdb), not just the prose reference, because
the two differ in places and the stored data is what the Go code produced:

* Lines are split the way ``scanLine`` splits them: a backslash always skips
  the next character (so a backslash before a newline joins two lines), and a
  double quote in a field-value position opens or closes a string, inside
  which newlines do not end the line.
* Leading spaces, tabs and NUL bytes are skipped; a line whose first other
  character is ``#`` is a comment; blank lines are skipped.
* Measurement, tag keys and tag values end at a comma or space (tag keys: or
  equals sign) that is not *immediately preceded by a backslash*.  Unescaping
  removes the backslash of ``\\,``, ``\\ ``, ``\\=`` in tag keys and values,
  and of ``\\,``, ``\\ ``, ``\\=``, ``\\"`` in measurements and field keys
  (``escape.Unescape``, as ``Point.Name()`` and the field iterator use it).
  A backslash before any other character is kept literally.  A tag value may
  begin with an unescaped ``=`` (a ``scanTagsValue`` quirk); elsewhere an
  unescaped ``=`` in a tag value is an error.
* Field values: ``"..."`` strings (``\\"`` and ``\\\\`` unescaped, other
  backslashes literal, newlines allowed); ``-?[0-9]+i`` signed 64-bit
  integers; ``[0-9]+u`` unsigned 64-bit integers; floats matching
  ``-?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?`` that are finite
  (a bare number is a float; NaN and infinities are rejected); booleans
  ``t T true True TRUE f F false False FALSE``.
* The optional timestamp is a signed 64-bit integer in the given precision;
  scaled to nanoseconds it must lie in ``[-2**63 + 2, 2**63 - 2]``.  Only
  spaces may follow it.  A point without one gets ``default_time`` truncated
  to the precision, as InfluxDB truncates the server time.
* Duplicate tag keys are an error; a duplicate field key keeps the last value.
  Measurement plus tags may not exceed 65535 bytes (escaped), nor that plus 4
  plus a field key.  A carriage return is an ordinary character, so CRLF line
  ends make the line invalid, as in InfluxDB.

Where InfluxDB 1.x accepts input that its own scanners then disagree about,
this parser rejects it rather than guess: text after a string's closing quote
other than ``,``, space or end of line (InfluxDB stores a mangled string), and
a field key ending in a backslash.  ``u`` integers are accepted although stock
InfluxDB 1.x builds reject them (they need the ``uint`` build tag).  Bytes must
be UTF-8.  Storage-level rules (``time``/``_field`` keys, field type
conflicts) are not the parser's business.

Lines and columns in errors are 1-based and count characters (code points) of
the decoded text.
"""

from __future__ import annotations

import math
import operator
import re
import time
from dataclasses import dataclass
from typing import cast

__all__ = [
    "PRECISION_NS",
    "LineProtocolError",
    "Point",
    "format_line",
    "parse",
    "parse_line",
]

PRECISION_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
}

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# InfluxDB reserves the two lowest and the highest int64 nanosecond values.
MIN_NANO_TIME = INT64_MIN + 2
MAX_NANO_TIME = INT64_MAX - 1
MAX_KEY_LENGTH = 65535
# A line this short (in characters) cannot reach MAX_KEY_LENGTH bytes.
_KEY_CHECK_CHARS = (MAX_KEY_LENGTH - 4) // 4
# Bound on the per-parse() cache of already parsed measurement+tags sections.
_KEY_CACHE_SIZE = 100_000

FieldValue = float | int | str | bool


class LineProtocolError(ValueError):
    """Bad line protocol; ``line`` and ``column`` are 1-based."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Point:
    """One parsed point; ``time`` is nanoseconds since the Unix epoch."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    field_types: dict[str, str]
    time: int


# Building through the slot descriptors skips the frozen __init__'s per-field
# object.__setattr__ calls; the result is an ordinary Point.
_SET_MEASUREMENT = Point.__dict__["measurement"].__set__
_SET_TAGS = Point.__dict__["tags"].__set__
_SET_FIELDS = Point.__dict__["fields"].__set__
_SET_FIELD_TYPES = Point.__dict__["field_types"].__set__
_SET_TIME = Point.__dict__["time"].__set__
_new_object = object.__new__


def _new_point(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, FieldValue],
    field_types: dict[str, str],
    stamp: int,
) -> Point:
    point: Point = _new_object(Point)
    _SET_MEASUREMENT(point, measurement)
    _SET_TAGS(point, tags)
    _SET_FIELDS(point, fields)
    _SET_FIELD_TYPES(point, field_types)
    _SET_TIME(point, stamp)
    return point


# --------------------------------------------------------------------------
# Lexical pieces

_WS = " \t\x00"  # what InfluxDB's skipWhitespace skips

_FLOAT = r"-?(?:[0-9]++(?:\.[0-9]*+)?|\.[0-9]++)(?:[eE][+-]?[0-9]++)?"
_FLOAT_RE = re.compile(_FLOAT)
_INT_RE = re.compile(r"-?[0-9]+i")
_UINT_RE = re.compile(r"[0-9]+u")
_TIMESTAMP_RE = re.compile(r"-?[0-9]+")
_PLAIN_FIELD_KEY = r'[^\\,= "\t\x00][^\\,= "]*+'
_ALL_FLOATS_RE = re.compile(rf"{_PLAIN_FIELD_KEY}={_FLOAT}(?:,[^\\,= \"]++={_FLOAT})*+")

# A whole measurement+tags section with only the simple escapes (\, \space \=),
# no tag value starting with "=": the fast path's key parser.
_SIMPLE_KEY_RE = re.compile(
    r"((?:[^\\, ]++|\\[, ])++)((?:,(?:[^\\, =]++|\\[, =])++=(?:[^\\, =]++|\\[, =])++)*+)"
)
_SPLIT_COMMA_RE = re.compile(r"(?<!\\),")
_SPLIT_EQUALS_RE = re.compile(r"(?<!\\)=")

_SEP_MEASUREMENT_RE = re.compile(r"(?<!\\)[, ]")
_SEP_TAG_RE = re.compile(r"(?<!\\)[, =]")
_FIELD_KEY_RE = re.compile(r"(?:[^\\,= ]++|\\.)++", re.DOTALL)
_STRING_RE = re.compile(r'"((?:[^"\\]++|\\.)*+)"', re.DOTALL)
_VALUE_END_RE = re.compile(r"[, ]")
_SCAN_KEY_RE = re.compile(r"[\\ \n]")
_SCAN_FIELDS_RE = re.compile(r'[\\" =,\n]')
_SCAN_QUOTED_RE = re.compile(r'[\\"]')

_UNESCAPE_KEY_RE = re.compile(r'\\([, ="])')  # measurement, field key
_UNESCAPE_TAG_RE = re.compile(r"\\([, =])")
_UNESCAPE_STRING_RE = re.compile(r'\\([\\"])')
_GROUP_1 = operator.itemgetter(1)

_BOOLS: dict[str, bool] = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}


def _unescape_key(raw: str) -> str:
    return _UNESCAPE_KEY_RE.sub(_GROUP_1, raw) if "\\" in raw else raw


def _unescape_tag(raw: str) -> str:
    return _UNESCAPE_TAG_RE.sub(_GROUP_1, raw) if "\\" in raw else raw


def _parse_int(digits: str) -> int | None:
    """int(digits) for -?[0-9]+ (any leading zeros), or None when beyond 64 bits."""
    negative = digits.startswith("-")
    body = (digits[1:] if negative else digits).lstrip("0") or "0"
    if len(body) > 20:
        return None
    return -int(body) if negative else int(body)


class _BadValueError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse_value(token: str) -> tuple[FieldValue, str]:
    """Convert an unquoted field value the way InfluxDB 1.x types it."""
    boolean = _BOOLS.get(token)
    if boolean is not None:
        return boolean, "boolean"
    if token[0] not in "0123456789.-Nn":
        raise _BadValueError(f"invalid boolean {token!r}")
    if _FLOAT_RE.fullmatch(token):
        real = float(token)
        if math.isinf(real):
            raise _BadValueError(f"float {token!r} out of range")
        return real, "float"
    if _INT_RE.fullmatch(token):
        number = _parse_int(token[:-1])
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            raise _BadValueError(f"integer {token!r} out of the signed 64-bit range")
        return number, "integer"
    if _UINT_RE.fullmatch(token):
        number = _parse_int(token[:-1])
        if number is None or number > UINT64_MAX:
            raise _BadValueError(f"unsigned integer {token!r} out of the 64-bit range")
        return number, "unsigned"
    if token[0] in "Nn":
        raise _BadValueError("NaN is not supported")
    raise _BadValueError(f"invalid number {token!r}")


def _scale_time(stamp: int | None, mult: int) -> int | None:
    """Nanoseconds for a timestamp in the precision, or None when out of range."""
    if stamp is None or not INT64_MIN <= stamp <= INT64_MAX:
        return None
    stamp *= mult
    return stamp if MIN_NANO_TIME <= stamp <= MAX_NANO_TIME else None


# --------------------------------------------------------------------------
# Public API


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


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
        raise LineProtocolError(
            "invalid UTF-8", data.count(b"\n", 0, exc.start) + 1, column
        ) from None


_KeyCache = dict[str, tuple[str, dict[str, str]]]


def parse(text: str | bytes, precision: str = "ns", default_time: int | None = None) -> list[Point]:
    """Parse a whole line-protocol text; raise LineProtocolError on the first bad line.

    ``precision`` (``ns``, ``us``, ``ms``, ``s``) scales the timestamps;
    points without one get ``default_time`` (ns; default: now), truncated to
    the precision.
    """
    mult = _multiplier(precision)
    if not isinstance(text, str):
        text = _decode(bytes(text))
    default = _default_time(default_time, mult)
    points: list[Point] = []
    append = points.append
    cache: _KeyCache = {}
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
            line = text[offset : _scan_line(text, offset)]
            index += line.count("\n") + 1
        else:
            index += 1
        offset += len(line) + 1
        if not line:
            continue
        start = 0
        if line[0] in _WS:
            start = len(line) - len(line.lstrip(_WS))
            if start == len(line):
                continue
        if line[start] == "#":
            continue
        point = None
        if start == 0 and len(line) <= _KEY_CHECK_CHARS:
            point = _plain_point(line, cache, mult, default)
        if point is None:
            point = _parse_slow(line, start, lineno, mult, default)
        append(point)
    return points


def parse_line(line: str | bytes, precision: str = "ns", default_time: int | None = None) -> Point:
    """Parse exactly one point (one logical line; one trailing newline is allowed)."""
    mult = _multiplier(precision)
    if not isinstance(line, str):
        line = _decode(bytes(line))
    default = _default_time(default_time, mult)
    if line.endswith("\n"):
        line = line[:-1]
    end = _scan_line(line, 0)
    if end < len(line):
        raise _error(line, end, 1, "unexpected end of line: more than one line given")
    start = len(line) - len(line.lstrip(_WS))
    if start == len(line) or line[start] == "#":
        raise _error(line, start, 1, "no point: the line is blank or a comment")
    point = None
    if start == 0 and len(line) <= _KEY_CHECK_CHARS:
        point = _plain_point(line, {}, mult, default)
    return point or _parse_slow(line, start, 1, mult, default)


# --------------------------------------------------------------------------
# Line splitting


def _scan_line(text: str, pos: int) -> int:
    """Return the index of the newline ending the logical line at pos (or len(text)).

    Mirrors InfluxDB's scanLine: a backslash skips the next character, and
    after the first space a quote toggles quoting when more '=' than ',' were
    seen outside quotes.
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


# --------------------------------------------------------------------------
# Fast path: "<key> <fields>[ <time>]" where the fields have no quotes or
# backslashes, and so no spaces.  Splitting at the last spaces is then exact
# whenever the part before is a valid measurement+tags section (it cannot end
# in a backslash, so the space after it is the unescaped one InfluxDB stops at).


def _plain_point(line: str, cache: _KeyCache, mult: int, default: int) -> Point | None:
    """The point for a plain line, or None to let the exact parser decide."""
    parts = line.rsplit(" ", 2)
    if len(parts) == 3:
        key, raw_fields, raw_time = parts
    elif len(parts) == 2:
        key, raw_fields = parts
        raw_time = None
    else:
        return None
    cached = cache.get(key)
    if cached is None:
        cached = _simple_key(key)
        if cached is None:
            return None
        if len(cache) >= _KEY_CACHE_SIZE:
            cache.clear()
        cache[key] = cached
    parsed = _plain_fields(raw_fields)
    if parsed is None:
        return None
    if raw_time is None:
        stamp = default
    else:
        digits = raw_time[1:] if raw_time[:1] == "-" else raw_time
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
            return None  # (longer ones with leading zeros are left to the exact path)
        stamp = int(raw_time) * mult
        if not MIN_NANO_TIME <= stamp <= MAX_NANO_TIME:
            return None
    return _new_point(cached[0], dict(cached[1]), parsed[0], parsed[1], stamp)


def _simple_key(key: str) -> tuple[str, dict[str, str]] | None:
    """Measurement and tags of a key section with simple escapes, else None."""
    match = _SIMPLE_KEY_RE.fullmatch(key)
    if match is None:
        return None
    raw_measurement, raw_tags = match.groups()
    tags: dict[str, str] = {}
    if "\\" not in key:
        if raw_tags:
            items = raw_tags[1:].split(",")
            for item in items:
                tag_key, _, tag_value = item.partition("=")
                tags[tag_key] = tag_value
    else:
        raw_measurement = raw_measurement.replace("\\", "")
        items = _SPLIT_COMMA_RE.split(raw_tags)[1:]
        for item in items:
            tag_key, tag_value = _SPLIT_EQUALS_RE.split(item)
            tags[tag_key.replace("\\", "")] = tag_value.replace("\\", "")
    if tags and len(tags) != len(items):
        return None  # duplicate tag key: the exact parser reports it
    return raw_measurement, tags


def _plain_fields(raw: str) -> tuple[dict[str, FieldValue], dict[str, str]] | None:
    """Fields and types of a field set without quotes or backslashes, else None."""
    if not raw or raw[0] in _WS or '"' in raw or "\\" in raw:
        return None
    if _ALL_FLOATS_RE.fullmatch(raw):  # the common case: only float fields
        floats: dict[str, float] = {}
        may_overflow = "e" in raw or "E" in raw or len(raw) > 300  # an exponent or 309+ digits
        for item in raw.split(","):
            key, _, value = item.partition("=")
            number = float(value)
            if may_overflow and math.isinf(number):
                return None  # checked per item: a later duplicate key would hide it
            floats[key] = number
        return cast("dict[str, FieldValue]", floats), dict.fromkeys(floats, "float")
    fields: dict[str, FieldValue] = {}
    types: dict[str, str] = {}
    for item in raw.split(","):
        key, _, value = item.partition("=")
        if not key or not value or "=" in value:
            return None
        typed = _plain_value(value)
        if typed is None:
            return None
        fields[key], types[key] = typed
    return fields, types


def _plain_value(value: str) -> tuple[FieldValue, str] | None:
    """An unquoted value that is valid and short enough for the fast path, else None."""
    boolean = _BOOLS.get(value)
    if boolean is not None:
        return boolean, "boolean"
    last = value[-1]
    if last == "i":
        if len(value) <= 21 and _INT_RE.fullmatch(value):
            number = int(value[:-1])
            if INT64_MIN <= number <= INT64_MAX:
                return number, "integer"
    elif last == "u":
        if len(value) <= 21 and _UINT_RE.fullmatch(value):
            number = int(value[:-1])
            if number <= UINT64_MAX:
                return number, "unsigned"
    elif _FLOAT_RE.fullmatch(value):
        real = float(value)
        if not math.isinf(real):
            return real, "float"
    return None


# --------------------------------------------------------------------------
# Exact path, with error positions


def _error(line: str, index: int, first_line: int, reason: str) -> LineProtocolError:
    """A LineProtocolError for position `index` of a logical line starting at first_line."""
    return LineProtocolError(
        reason, first_line + line.count("\n", 0, index), index - line.rfind("\n", 0, index)
    )


def _skip_whitespace(line: str, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos] in _WS:
        pos += 1
    return pos


def _parse_slow(line: str, pos: int, lineno: int, mult: int, default: int) -> Point:
    """Parse one logical line starting at pos (leading whitespace already skipped)."""
    return _SlowParser(line, lineno).parse(pos, mult, default)


class _SlowParser:
    """Section-by-section parser for one logical line."""

    def __init__(self, line: str, lineno: int) -> None:
        self.line = line
        self.n = len(line)
        self.lineno = lineno
        self.key_bytes = 0  # escaped measurement+tags size, only when it could matter

    def fail(self, index: int, reason: str) -> LineProtocolError:
        return _error(self.line, index, self.lineno, reason)

    def parse(self, pos: int, mult: int, default: int) -> Point:
        measurement, tags, pos = self.key(pos)
        fields, types, pos = self.fields(pos)
        return _new_point(measurement, tags, fields, types, self.timestamp(pos, mult, default))

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
        if n > _KEY_CHECK_CHARS:
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
        # The first character is not checked, so a value may start with "=".
        found = _SEP_TAG_RE.search(line, value_start + 1)
        if found is None:
            raise self.fail(n, "expected a space and fields after the tags")
        if found.group() == "=":
            raise self.fail(found.start(), f"unescaped '=' in value of tag \"{key}\"")
        tags[key] = _unescape_tag(line[value_start : found.start()])
        return found.start()

    def fields(self, pos: int) -> tuple[dict[str, FieldValue], dict[str, str], int]:
        """The field set after the space at pos; returns the index just past it."""
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
        if self.key_bytes and self.key_bytes + 4 + len(raw.encode("utf-8", "surrogatepass")) > (
            MAX_KEY_LENGTH
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
            fields[key], types[key] = _parse_value(line[pos:end])
        except _BadValueError as exc:
            raise self.fail(pos, f'{exc.reason} for field "{key}"') from None
        return end

    def timestamp(self, end: int, mult: int, default: int) -> int:
        """The optional timestamp after the fields (which end at `end`), in nanoseconds."""
        line, n = self.line, self.n
        pos = _skip_whitespace(line, end + 1)
        if pos >= n:
            return default
        end = line.find(" ", pos)
        if end < 0:
            end = n
        if _TIMESTAMP_RE.fullmatch(line, pos, end) is None:
            raise self.fail(pos, f"invalid timestamp {line[pos:end]!r}")
        rest = n - len(line[end:].lstrip(" "))
        if rest < n:
            raise self.fail(rest, "unexpected text after the timestamp")
        stamp = _scale_time(_parse_int(line[pos:end]), mult)
        if stamp is None:
            raise self.fail(pos, f"timestamp out of range [{MIN_NANO_TIME}, {MAX_NANO_TIME}] ns")
        return stamp


# --------------------------------------------------------------------------
# Encoding

_ESCAPE_MEASUREMENT_RE = re.compile(r'[, ]|(?<=\\)[="]')
_ESCAPE_TAG_RE = re.compile(r"[, =]")
_ESCAPE_FIELD_KEY_RE = re.compile(r'[, =]|(?<=\\)"')
_BACKSLASH_BEFORE_SEPARATOR_RE = re.compile(r"\\[, =]")


def _backslash(match: re.Match[str]) -> str:
    return "\\" + match.group()


def _check_name(what: str, name: str, bad_start: str = "") -> None:
    if not name:
        raise ValueError(f"{what} must not be empty")
    if "\n" in name:
        raise ValueError(f"{what} {name!r} cannot contain a newline in line protocol")
    if name.endswith("\\"):
        raise ValueError(f"{what} {name!r} cannot end with a backslash in line protocol")
    if name[0] in bad_start:
        raise ValueError(f"{what} {name!r} cannot start with {name[0]!r} in line protocol")


def format_line(point: Point, precision: str = "ns") -> str:
    """Encode a Point as one canonical line (tags sorted by key bytes, as InfluxDB does).

    The time is written in ``precision``.  Raises ValueError for points line
    protocol cannot represent: no fields; empty names; newlines or a trailing
    backslash in names; a measurement (or the first field key) starting with a
    tab or NUL, or a measurement starting with "#"; a backslash before ",",
    "=" or " " in a field key; NaN/inf; out-of-range integers; a time that is
    not a whole number of ``precision`` units.
    """
    mult = _multiplier(precision)
    measurement = point.measurement
    _check_name("measurement", measurement, "\t\x00#")
    parts = [_ESCAPE_MEASUREMENT_RE.sub(_backslash, measurement)]
    for key in sorted(point.tags, key=lambda k: k.encode("utf-8", "surrogatepass")):
        tag_value = point.tags[key]
        _check_name("tag key", key)
        _check_name(f"value of tag {key!r}", tag_value)
        escaped_value = _ESCAPE_TAG_RE.sub(_backslash, tag_value)
        parts.append(f",{_ESCAPE_TAG_RE.sub(_backslash, key)}={escaped_value}")
    if not point.fields:
        raise ValueError("a point needs at least one field")
    encoded = []
    for index, (key, value) in enumerate(point.fields.items()):
        _check_name("field key", key, "\t\x00" if index == 0 else "")
        if _BACKSLASH_BEFORE_SEPARATOR_RE.search(key):
            raise ValueError(
                f"field key {key!r}: a backslash before ',', '=' or ' ' cannot be encoded"
            )
        kind = point.field_types.get(key) or _infer_type(value)
        encoded.append(
            f"{_ESCAPE_FIELD_KEY_RE.sub(_backslash, key)}={_format_value(key, value, kind)}"
        )
    stamp, remainder = divmod(point.time, mult)
    if remainder:
        raise ValueError(f"time {point.time} is not a whole number of {precision}")
    return f"{''.join(parts)} {','.join(encoded)} {stamp}"


def _infer_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise ValueError(f"unsupported field value {value!r}")


def _format_value(key: str, value: object, kind: str) -> str:
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        real = float(value)
        if math.isfinite(real):
            return repr(real)
    elif kind == "integer" and type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return f"{value}i"
    elif kind == "unsigned" and type(value) is int and 0 <= value <= UINT64_MAX:
        return f"{value}u"
    elif kind == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    elif kind == "string" and isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise ValueError(f"field {key!r}: {value!r} is not a representable {kind} value")
