"""The fast path for plain lines: ``<key> <fields>[ <time>]`` whose fields have no quotes or
backslashes, and so no spaces.

Splitting at the last spaces is then exact whenever the part before is a valid measurement+tags
section (it cannot end in a backslash, so the space after it is the unescaped one InfluxDB stops
at).  A line it cannot read that way is left to the exact path, never read differently.
"""

from __future__ import annotations

import math
import re
from typing import cast

from headlined.lineprotocol.grammar import (
    FLOAT,
    MAX_NANO_TIME,
    MIN_NANO_TIME,
    WHITESPACE,
    BadValueError,
    FieldValue,
    parse_value,
)
from headlined.lineprotocol.point import Point, new_point

# Already parsed measurement+tags sections, by their text: one per parse() call.
KeyCache = dict[str, tuple[str, dict[str, str]]]
_KEY_CACHE_SIZE = 100_000

_PLAIN_FIELD_KEY = r'[^\\,= "\t\x00][^\\,= "]*+'
_ALL_FLOATS_RE = re.compile(rf"{_PLAIN_FIELD_KEY}={FLOAT}(?:,[^\\,= \"]++={FLOAT})*+")
# A whole measurement+tags section with only the simple escapes (\, \space \=),
# no tag value starting with "=".
_SIMPLE_KEY_RE = re.compile(
    r"((?:[^\\, ]++|\\[, ])++)((?:,(?:[^\\, =]++|\\[, =])++=(?:[^\\, =]++|\\[, =])++)*+)"
)
_SPLIT_COMMA_RE = re.compile(r"(?<!\\),")
_SPLIT_EQUALS_RE = re.compile(r"(?<!\\)=")


def plain_point(line: str, cache: KeyCache, mult: int, default: int) -> Point | None:
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
    return new_point(cached[0], dict(cached[1]), parsed[0], parsed[1], stamp)


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
    if not raw or raw[0] in WHITESPACE or '"' in raw or "\\" in raw:
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
        try:
            fields[key], types[key] = parse_value(value)
        except BadValueError:
            return None
    return fields, types
