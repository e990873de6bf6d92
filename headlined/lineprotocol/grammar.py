"""The line-protocol value grammar and its limits: the one definition that the parser and the
converter's SQL build on, and that headlined/influx/convert/_lines.c follows by hand (tests
check it).

A field value is typed by its shape: ``"..."`` a string, one of ``BOOLEANS`` a boolean, ``...i``
an integer, ``...u`` an unsigned integer, anything else a float; a value that breaks its type's
pattern or range is refused.  ``u`` integers are accepted although stock InfluxDB 1.x builds
refuse them (they need the ``uint`` build tag).
"""

from __future__ import annotations

import math
import re

FieldValue = float | int | str | bool

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

# Measurement plus tags (escaped) may not exceed this many bytes, nor may they with the field
# key and the "#!~#" that InfluxDB stores between them.
MAX_KEY_LENGTH = 65535
_FIELD_KEY_SEPARATOR = b"#!~#"
# A line this short (in characters, up to 4 bytes each) cannot reach MAX_KEY_LENGTH bytes.
KEY_CHECK_CHARS = (MAX_KEY_LENGTH - len(_FIELD_KEY_SEPARATOR)) // 4

WHITESPACE = " \t\x00"  # what InfluxDB's skipWhitespace skips

# The type names, by type code (the index): _lines.c's T_FLOAT... enum has the same order.
TYPES = ("float", "integer", "unsigned", "string", "boolean")
STRING_QUOTE = '"'
INTEGER_SUFFIX = "i"
UNSIGNED_SUFFIX = "u"
BOOLEANS: dict[str, bool] = {
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
# Patterns in the syntax both Python's re and DuckDB's RE2 read.  A float must also be finite.
FLOAT = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
INTEGER = rf"-?[0-9]+{INTEGER_SUFFIX}"
UNSIGNED = rf"[0-9]+{UNSIGNED_SUFFIX}"
TIMESTAMP = r"-?[0-9]+"

FLOAT_RE = re.compile(FLOAT)
INTEGER_RE = re.compile(INTEGER)
UNSIGNED_RE = re.compile(UNSIGNED)
TIMESTAMP_RE = re.compile(TIMESTAMP)


class BadValueError(Exception):
    """A field value the parser refuses; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def series_key_fits(key_bytes: int, field_key_bytes: int) -> bool:
    """Whether a series key and a field key of these escaped sizes fit InfluxDB's key limit."""
    return key_bytes + len(_FIELD_KEY_SEPARATOR) + field_key_bytes <= MAX_KEY_LENGTH


def parse_int(digits: str) -> int | None:
    """int(digits) for -?[0-9]+ (any leading zeros), or None when beyond 64 bits."""
    negative = digits.startswith("-")
    body = (digits[1:] if negative else digits).lstrip("0") or "0"
    if len(body) > 20:
        return None
    return -int(body) if negative else int(body)


def parse_value(token: str) -> tuple[FieldValue, str]:
    """The value and type of an unquoted field value, as InfluxDB 1.x types it.

    Raises BadValueError for a value the parser refuses.
    """
    boolean = BOOLEANS.get(token)
    if boolean is not None:
        return boolean, "boolean"
    if token[0] not in "0123456789.-Nn":
        raise BadValueError(f"invalid boolean {token!r}")
    if FLOAT_RE.fullmatch(token):
        real = float(token)
        if math.isinf(real):
            raise BadValueError(f"float {token!r} out of range")
        return real, "float"
    if INTEGER_RE.fullmatch(token):
        number = parse_int(token[:-1])
        if number is None or not INT64_MIN <= number <= INT64_MAX:
            raise BadValueError(f"integer {token!r} out of the signed 64-bit range")
        return number, "integer"
    if UNSIGNED_RE.fullmatch(token):
        number = parse_int(token[:-1])
        if number is None or number > UINT64_MAX:
            raise BadValueError(f"unsigned integer {token!r} out of the 64-bit range")
        return number, "unsigned"
    if token[0] in "Nn":
        raise BadValueError("NaN is not supported")
    raise BadValueError(f"invalid number {token!r}")


def scale_time(stamp: int | None, mult: int) -> int | None:
    """Nanoseconds for a timestamp in the precision, or None when out of range."""
    if stamp is None or not INT64_MIN <= stamp <= INT64_MAX:
        return None
    stamp *= mult
    return stamp if MIN_NANO_TIME <= stamp <= MAX_NANO_TIME else None
