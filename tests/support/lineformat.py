"""format_line: a Point as one canonical line of line protocol, for tests that write input."""

from __future__ import annotations

import math
import re

from headlined.lineprotocol import PRECISION_NS, Point
from headlined.lineprotocol.grammar import INT64_MAX, INT64_MIN, UINT64_MAX

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
    mult = PRECISION_NS[precision]
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
