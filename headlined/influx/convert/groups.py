"""The output's shape: a group (one file) per database, retention policy and measurement, the
series in it, numbered in tag order, and its column names."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


def column_names(
    tag_keys: Sequence[str], fields: dict[str, set[str]]
) -> tuple[list[tuple[str, str, str, bool]], list[str]]:
    """Field columns (name, key, type, of a conflicting field) and tag column names."""
    # Type conflicts are kept, never coerced: a field with several types gets a column per type,
    # <field>__<type>, in the order of TYPES, and no plain one.  Names are unique also ignoring
    # case (DuckDB matches them so): a tag key that is also a field key (or "time") gets _tag, a
    # field column that would be "time" gets _field, and any clash left _2, _3... in order.
    taken = {"time"}

    def claim(name: str) -> str:
        base, number = name, 1
        while name.casefold() in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name.casefold())
        return name

    field_columns: list[tuple[str, str, str, bool]] = []
    for key in sorted(fields):
        kinds = [kind for kind in TYPES if kind in fields[key]]
        multi = len(kinds) > 1
        for kind in kinds:
            name = f"{key}__{kind}" if multi else key
            if name.casefold() == "time":
                name += "_field"
            field_columns.append((claim(name), key, kind, multi))
    folded_fields = {key.casefold() for key in fields} | {"time"}
    tag_columns = [
        claim(f"{tag}_tag" if tag.casefold() in folded_fields else tag) for tag in tag_keys
    ]
    return field_columns, tag_columns
