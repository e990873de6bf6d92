"""From a response body to keyed, timed records (pure: no I/O).

A record's identity is its key fields' values as canonical JSON (``[123]``, ``["a",7]``).
See docs/poller.md.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from headlined.poll import _records


class BadResponseError(Exception):
    """The body is not what the source's config describes; ``kind`` names the problem."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclass(slots=True)  # not frozen: built for every record of every poll, and frozen is slow
class Record:
    """One record as the API sent it, with its identity and (optional) time."""

    key: str
    time: datetime | None
    payload: dict[str, Any]
    seq: tuple[str, int] | None
    """(group, number) when the last key field is an integer: the others form the group.
    Sequential numbers let a gap's size be counted exactly."""


@dataclass(frozen=True, slots=True)
class Scan:
    """One response's records, told apart into new and already seen."""

    new: list[Record]
    """The first copy of each record not seen before, in response order."""
    fetched: int
    """Records with a key (``rejected`` more had none)."""
    overlap: int
    """Records already seen (every copy counts)."""
    known_positions: int
    """The sum of the seen records' positions among the fetched ones (0 is the first)."""
    new_positions: int
    """The sum of the new records' positions."""
    key_conflicts: int
    """Records whose key an earlier, different record of the response already had: the key
    does not identify a record, and all but the first are taken for duplicates."""
    conflict_key: str | None
    rejected: int
    reject_reason: str | None


def decode_json(body: bytes) -> Any:
    """Parse a body; non-UTF-8 and non-JSON become :class:`BadResponseError`."""
    # orjson parses 3x faster, but turns an integer beyond 64 bits into a float (a long id
    # would lose digits), and refuses what Python's json accepts (NaN, lone surrogates):
    # Python's json decides those bodies, as it always has.
    if not _records.has_digit_run(body, _LONG_NUMBER):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadResponseError("not_utf8", f"byte {exc.start} is not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadResponseError(
            "not_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise BadResponseError("not_json", "nested too deeply") from None


# 19 digits in a row may be an integer beyond 64 bits (a regular expression took longer
# than parsing the body; bytes.translate() and ``in``, a sixth of it).
_LONG_NUMBER = 19


def dig(document: Any, path: str) -> Any:
    """Follow a dotted path (``result.items``); ``""`` is the document itself."""
    node = document
    walked = []
    for part in path.split(".") if path else []:
        walked.append(part)
        if not isinstance(node, dict) or part not in node:
            raise BadResponseError(
                "missing_records_path", f"no {'.'.join(walked)!r} in the response"
            )
        node = node[part]
    return node


class Scanner:
    """Reads responses for one source's ``key`` fields and ``time`` field.

    The loop over the records runs in C (:mod:`headlined.poll._records`) for the usual shapes and
    calls back into the functions below for the rest, which define the rules.
    """

    def __init__(self, records_path: str, key: list[str], time_field: str | None) -> None:
        self.records_path = records_path
        self._c = _records.Scanner(
            tuple(key),
            time_field,
            Record,
            functools.partial(_key_of, key),
            functools.partial(_time_of, time_field),
            parse_time,
            _seq,
        )

    def scan(self, document: Any, known: Container[str] = ()) -> Scan:
        """The records at the records path. Records lacking a key field are counted, not kept.

        Only new records (not in ``known``) get a time and a sequence number: nothing
        downstream needs them for the others.
        """
        items = dig(document, self.records_path)
        if not isinstance(items, list):
            where = self.records_path or "the body"
            raise BadResponseError("not_a_list", f"{where} is a {type(items).__name__}, not a list")
        return Scan(*self._c.scan(items, known))


def _key_of(key: list[str], item: Any) -> tuple[str, list[Any]] | str:
    """A record's identity and key values, or why it has none."""
    if type(item) is not dict:
        return f"a record is a {type(item).__name__}, not an object"
    values, unusable = _key_values(item, key)
    if unusable is not None:
        return f"a record has no usable key field {unusable!r}"
    return record_key(values), values


def _time_of(time_field: str | None, item: dict[str, Any]) -> datetime | None:
    return parse_time(_get(item, time_field)) if time_field else None


def _key_values(item: dict[str, Any], key: list[str]) -> tuple[list[Any], str | None]:
    """The values of the key fields, and the first field that gives none (None if all do)."""
    values: list[Any] = []
    for field in key:
        value = _get(item, field)
        if value is _MISSING or value is None or isinstance(value, _CONTAINERS):
            return values, field
        values.append(value)
    return values, None


def record_key(values: list[Any]) -> str:
    """Canonical JSON of the key values: ``[123]``, ``["a",7]``.

    Exactly ``json.dumps(values, ensure_ascii=False, separators=(",", ":"))``; int and plain
    str values are written directly, for the keys the C scan leaves to Python (non-ASCII).
    """
    return "[" + ",".join(_encode(v) for v in values) + "]"


def _encode(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # nothing json.dumps would escape (ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


_MISSING = object()
_CONTAINERS = (dict, list)  # a key field holding one of these gives no key


def _get(item: dict[str, Any], field: str) -> Any:
    # A field name that exists as written wins; otherwise a dotted name walks nested objects.
    if field in item:
        return item[field]
    node: Any = item
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _seq(values: list[Any]) -> tuple[str, int] | None:
    last = values[-1]
    if isinstance(last, bool):
        return None
    if isinstance(last, str) and last.isascii() and last.isdigit() and len(last) < 19:
        last = int(last)
    if not isinstance(last, int):
        return None
    return (record_key(values[:-1]) if len(values) > 1 else "[]"), last


# Epoch numbers are told apart by size: seconds until the year 5138, then ms, µs, ns.
_EPOCH_SCALES = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (math.inf, 1e9))


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (zone optional: UTC assumed), or epoch seconds/ms/µs/ns; None if unusable."""
    if value is None or value is _MISSING or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[4:5] == "-":  # YYYY-...: ISO 8601, which never reads as a number
            parsed = _parse_iso(text)
            if parsed is not None:
                return parsed
        try:
            number: float = float(text)
        except ValueError:
            return _parse_iso(text)
        return _from_epoch(number)
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    return None


def time_problem(payload: dict[str, Any], field: str) -> str | None:
    """Why the ``field`` (dotted) of a record gives no time; None when it does give one."""
    value = _get(payload, field)
    if value is _MISSING:
        return f"the records have no field {field!r}"
    if parse_time(value) is not None:
        return None
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{field!r} is {shown}: neither ISO 8601 nor epoch seconds/ms/µs/ns"


def _parse_iso(text: str) -> datetime | None:
    if text[-1:] == "z":  # fromisoformat takes "Z" itself, not "z"
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    for limit, scale in _EPOCH_SCALES:
        if abs(number) < limit:
            try:
                return datetime.fromtimestamp(number / scale, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None
