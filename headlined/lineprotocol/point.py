"""What the parser gives: points, and errors that say where (1-based line and column, counted in
characters of the decoded text)."""

from __future__ import annotations

from dataclasses import dataclass

from headlined.lineprotocol.grammar import FieldValue


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


def new_point(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, FieldValue],
    field_types: dict[str, str],
    stamp: int,
) -> Point:
    """A Point, built faster than Point(...) (the parser makes one per line)."""
    point: Point = _new_object(Point)
    _SET_MEASUREMENT(point, measurement)
    _SET_TAGS(point, tags)
    _SET_FIELDS(point, fields)
    _SET_FIELD_TYPES(point, field_types)
    _SET_TIME(point, stamp)
    return point


def error_at(line: str, index: int, first_line: int, reason: str) -> LineProtocolError:
    """A LineProtocolError for position ``index`` of a logical line starting at ``first_line``."""
    return LineProtocolError(
        reason, first_line + line.count("\n", 0, index), index - line.rfind("\n", 0, index)
    )
