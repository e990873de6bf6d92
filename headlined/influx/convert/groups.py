"""The output's shape: a group (one file) per database, retention policy and measurement, the
series in it, numbered in tag order, and its columns: one per tag and one per field."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headlined.influx.schema import MeasurementSchema, may_round, resolve
from headlined.lineprotocol import LineProtocolError, parse_series_key
from headlined.lineprotocol.grammar import TYPES

SeriesId = tuple[str, tuple[tuple[str, str], ...]]  # measurement, tags sorted
GroupId = tuple[str | None, str | None, str]  # database, retention policy, measurement

_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_PAIRED_KEY = re.compile(r"(?:[^\\ ]|\\.)*", re.DOTALL)


@dataclass
class Group:
    """One output table: a measurement under one database and retention policy."""

    database: str | None
    rp: str | None
    measurement: str
    fields: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    kids: set[int] = field(default_factory=set)  # series keys of bulk lines, by number
    canons: set[str] = field(default_factory=set)  # series of exact-path points
    segments: set[int] = field(default_factory=set)
    tag_keys: list[str] = field(default_factory=list)

    @property
    def ident(self) -> GroupId:
        """The group's (database, retention policy, measurement)."""
        return self.database, self.rp, self.measurement


def group_order(ident: GroupId) -> tuple[Any, ...]:
    """Sort key of groups: by database, then policy (None first), then measurement."""
    database, rp, measurement = ident
    return (database is not None, database or "", rp is not None, rp or "", measurement)


def series_of_key(key: str) -> SeriesId | None:
    """Measurement and tags of a bulk line's series key, or None if the bulk split may have read
    the line otherwise than the exact parser (then its lines take the exact path)."""
    # The bulk split took the first space not preceded by a backslash as the key's end; the
    # line scanner reads backslashes in pairs.  Both must agree that the key has no space.
    if _UNESCAPED_SPACE.search(key) or not _PAIRED_KEY.fullmatch(key):
        return None
    try:
        measurement, tags = parse_series_key(key)
    except LineProtocolError:
        return None
    return measurement, tuple(sorted(tags.items()))


@dataclass
class Series:
    """Every series written: those of bulk lines by key number, those of exact-path points by
    their canonical text."""

    bulk: dict[int, SeriesId]
    exact: dict[str, SeriesId]

    def of(self, group: Group) -> set[SeriesId]:
        """The series in one group."""
        return {self.bulk[kid] for kid in group.kids} | {
            self.exact[canon] for canon in group.canons
        }

    def numbered(self) -> dict[SeriesId, int]:
        """Number the series so that, within a measurement, ids follow the tag values.

        Tags compare in sorted-key order over all tag keys of the measurement, a missing tag
        last, so ORDER BY id sorts a measurement's rows by its tag columns.
        """
        series = set(self.bulk.values()) | set(self.exact.values())
        keys: dict[str, set[str]] = defaultdict(set)
        for measurement, tags in series:
            keys[measurement].update(tag for tag, _ in tags)
        ordered = {name: sorted(tags) for name, tags in keys.items()}

        def order(sid: SeriesId) -> tuple[str, tuple[tuple[int, str], ...]]:
            values = dict(sid[1])
            return sid[0], tuple(
                (0, values[tag]) if tag in values else (1, "") for tag in ordered[sid[0]]
            )

        return {sid: index for index, sid in enumerate(sorted(series, key=order))}


@dataclass(frozen=True)
class FieldColumn:
    """One field's column: exactly one per field key, whatever types its values have."""

    name: str
    key: str
    kind: str  # the column's type, one of grammar.TYPES
    seen: tuple[str, ...]  # types of the field's values in this input (TYPES order); none: NULLs

    @property
    def may_round(self) -> bool:
        """Whether some of its values may lose digits in the column (big integers as doubles)."""
        return may_round(self.seen, self.kind)


@dataclass(frozen=True)
class Columns:
    """The columns of one group's file after `time`: tags, then fields, each sorted by key."""

    tags: list[tuple[str, int | None]]  # name, index in Group.tag_keys (None: not in this input)
    fields: list[FieldColumn]
    widened: dict[str, str]  # field key -> type written, where the schema's type could not hold


def columns(group: Group, schema: MeasurementSchema | None) -> Columns:
    """The columns of ``group`` (whose tag keys Output.prepare set), given the schema of its
    measurement if there is one.

    With a schema, its tags and fields get columns too (NULL when absent from this input), so
    every file of the measurement has the same columns and types: a field's type is the
    schema's, or, when a value here cannot go into that type without loss,
    resolve(schema's type and the types here), which ``widened`` reports.  Without one, or
    for a field it does not know, the type is resolve(the types here).
    """
    known: Mapping[str, str] = schema.fields if schema is not None else {}
    types: dict[str, str] = {}
    widened: dict[str, str] = {}
    for key in sorted(known.keys() | group.fields.keys()):
        seen = group.fields.get(key, set())
        if key in known:
            types[key] = resolve({known[key], *seen})
            if types[key] != known[key]:
                widened[key] = types[key]
        else:
            types[key] = resolve(seen)
    tag_keys = sorted(set(group.tag_keys) | set(schema.tags if schema is not None else ()))
    field_names, tag_names = column_names(tag_keys, types)
    index = {tag: i for i, tag in enumerate(group.tag_keys)}
    return Columns(
        [(name, index.get(tag)) for name, tag in zip(tag_names, tag_keys, strict=True)],
        [
            FieldColumn(
                name, key, types[key], tuple(k for k in TYPES if k in group.fields.get(key, ()))
            )
            for name, key in field_names
        ],
        widened,
    )


def column_names(
    tag_keys: Sequence[str], fields: Iterable[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """Field columns (name, key), in key order, and tag column names, in ``tag_keys`` order."""
    # Names are unique also ignoring case (DuckDB matches them so): a tag key that is also a
    # field key (or "time") gets _tag, a field named "time" gets _field, and any clash left
    # _2, _3... in order.
    taken = {"time"}

    def claim(name: str) -> str:
        base, number = name, 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name.casefold())
        return name

    keys = sorted(fields)
    field_columns = [
        (claim(f"{key}_field" if key.casefold() == "time" else key), key) for key in keys
    ]
    folded_fields = {key.casefold() for key in keys} | {"time"}
    tag_columns = [
        claim(f"{tag}_tag" if tag.casefold() in folded_fields else tag) for tag in tag_keys
    ]
    return field_columns, tag_columns
