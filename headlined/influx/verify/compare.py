"""The pure part of ``headlined verify``: windows, days, which Parquet columns are tags, the
comparison of counts, the chunk state of a day, and the summary (no files, no HTTP, no DuckDB).

InfluxQL cannot count points, only values per field (``count(*)`` gives ``count_<field>``),
so both sides are compared field by field: per series, day and field, the number of values
(non-NULL cells in Parquet). A (series, day) differs when any field's counts differ. Its
"points" on each side are the largest of its fields' counts: every point has at least one
field, so this is exact when one field is in every point and a lower bound otherwise, the
same measure on both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from headlined.influx.convert.groups import column_names

NS = 1_000_000_000
DAY_NS = 86_400 * NS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Tags = tuple[tuple[str, str], ...]  # a series' tags, sorted by key, empty values left out
DayKey = tuple[Tags, int]  # (series, start of its UTC day in ns)
Counts = dict[DayKey, dict[str, int]]  # field key -> values that day (non-zero only)

# A day whose chunks are all done (or that no chunk covers) is settled: a difference is a
# mismatch. Failed and damaged chunks are known to be incomplete: their days are listed on
# their own, and fail the run as `headlined export` does. Open, pending and running chunks
# are still being written (by InfluxDB, or by the export): listed on their own, not a failure.
SETTLED = frozenset({"done", "none"})
BROKEN = frozenset({"failed", "damaged"})
UNSETTLED = frozenset({"open", "pending", "running"})
# When a day touches several chunks, the state that says most about it wins.
_PRECEDENCE = ("failed", "damaged", "running", "pending", "open")


class ChunkLike(Protocol):
    """One row of ``export_chunks`` (times in ns since the epoch, ``end_ns`` exclusive)."""

    @property
    def database(self) -> str:
        """The chunk's database."""

    @property
    def retention_policy(self) -> str:
        """Its retention policy."""

    @property
    def start_ns(self) -> int:
        """Its first nanosecond."""

    @property
    def end_ns(self) -> int:
        """The nanosecond after its last."""

    @property
    def state(self) -> str:
        """pending, running, done, open, failed or damaged."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk's range and state, as :class:`ChunkLike` wants."""

    database: str
    retention_policy: str
    start_ns: int
    end_ns: int
    state: str


@dataclass(frozen=True, slots=True)
class Window:
    """One unit of work: a measurement of one retention policy over [start_ns, end_ns)."""

    database: str
    retention_policy: str
    measurement: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class Difference:
    """One series on one day whose counts differ between Parquet and InfluxDB."""

    database: str
    retention_policy: str
    measurement: str
    tags: Tags
    day_ns: int
    parquet_points: int
    influx_points: int
    fields: Mapping[str, tuple[int, int]]  # field key -> (Parquet, InfluxDB) values, differing
    chunk_state: str  # "done", "none" (no chunk covers the day) or the state of its chunk

    @property
    def kind(self) -> str:
        """``mismatch`` (a settled day), ``broken`` (failed or damaged chunk) or ``unsettled``."""
        if self.chunk_state in BROKEN:
            return "broken"
        if self.chunk_state in UNSETTLED:
            return "unsettled"
        return "mismatch"

    def to_json(self) -> dict[str, Any]:
        """One ``--json`` line."""
        return {
            "kind": self.kind,
            "database": self.database,
            "retention_policy": self.retention_policy,
            "measurement": self.measurement,
            "tags": dict(self.tags),
            "day": day_text(self.day_ns),
            "parquet_points": self.parquet_points,
            "influxdb_points": self.influx_points,
            "fields": {k: {"parquet": p, "influxdb": i} for k, (p, i) in self.fields.items()},
            "chunk_state": self.chunk_state,
        }


def day_of(ns: int) -> int:
    """The start of the UTC day holding ``ns`` (InfluxDB's ``time(1d)`` buckets)."""
    return ns - ns % DAY_NS  # Python's % floors, so times before 1970 work too


def day_text(day_ns: int) -> str:
    """``2024-01-31`` for the day starting at ``day_ns``."""
    return (EPOCH + timedelta(microseconds=day_ns // 1000)).strftime("%Y-%m-%d")


def to_ns(moment: datetime) -> int:
    """An aware datetime in ns since the epoch (exact, unlike ``timestamp()``)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def months(start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC month boundaries: InfluxDB is asked one month at a time, so
    neither side ever holds more than a month of one measurement's daily counts."""
    out = []
    low = start_ns
    while low < end_ns:
        moment = EPOCH + timedelta(microseconds=day_of(low) // 1000)
        first = moment.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        high = min(end_ns, to_ns(following))
        out.append((low, high))
        low = high
    return out


_STEM = re.compile(r"(\d{8}T\d{6}Z)_(\d{8}T\d{6}Z)")


def file_range(name: str) -> tuple[int, int] | None:
    """The time a chunk's Parquet file holds, from its name ``<start>_<end>.parquet``
    (:attr:`~headlined.influx.chunkplan.Chunk.stem`); None for a name of another form."""
    match = _STEM.fullmatch(name.removesuffix(".parquet"))
    if match is None:
        return None
    start, end = (
        to_ns(datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
        for text in match.groups()
    )
    return start, end


def span(
    chunks: Iterable[ChunkLike],
    database: str,
    retention_policy: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> tuple[int, int] | None:
    """What the export covers of one retention policy: from its first chunk's start to its
    last chunk's end, within the configured ``influx.start``/``end``; None: nothing."""
    mine = [c for c in chunks if (c.database, c.retention_policy) == (database, retention_policy)]
    if not mine:
        return None
    low = min(c.start_ns for c in mine)
    high = max(c.end_ns for c in mine)
    if start_ns is not None:
        low = max(low, start_ns)
    if end_ns is not None:
        high = min(high, end_ns)
    return (low, high) if low < high else None


def day_state(
    chunks: Iterable[ChunkLike], database: str, retention_policy: str, start_ns: int, end_ns: int
) -> str:
    """The state that decides how a difference in [start_ns, end_ns) is reported: the most
    telling state of the chunks it overlaps (failed, damaged, running, pending, open), else
    ``done``; ``none`` when no chunk covers any of it."""
    states = {
        c.state
        for c in chunks
        if (c.database, c.retention_policy) == (database, retention_policy)
        and c.start_ns < end_ns
        and start_ns < c.end_ns
    }
    if not states:
        return "none"
    return next((s for s in _PRECEDENCE if s in states), "done")


def series_key(tags: Mapping[str, str | None]) -> Tags:
    """A series' identity: its tags sorted, without the empty ones (InfluxDB says "" for a
    tag the series lacks in ``GROUP BY *``; Parquet says NULL)."""
    return tuple(sorted((k, v) for k, v in tags.items() if v))


def split_columns(
    columns: Sequence[str], field_keys: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Which columns of a measurement's files are fields and which tags: (column -> field
    key, column -> tag key), ``time`` in neither.

    The converter names field columns after their keys (a field "time" is ``time_field``,
    keys equal but for case get ``_2``...), then tag columns, a tag key that is also a field
    key getting ``_tag``: :func:`~headlined.influx.convert.groups.column_names`. Given the
    field keys (``export_fields``) the field columns are known, and the rest are tags.
    """
    keys = sorted(set(field_keys))
    present = set(columns)
    fields = {name: key for name, key in column_names([], keys)[0] if name in present}
    folded = {key.casefold() for key in keys} | {"time"}
    tags = {}
    for name in columns:
        if name == "time" or name in fields:
            continue
        stem = name.removesuffix("_tag")
        tags[name] = stem if stem != name and stem.casefold() in folded else name
    return fields, tags


def compare(
    window: Window, parquet: Counts, influx: Counts, chunks: Sequence[ChunkLike]
) -> list[Difference]:
    """Every (series, day) of ``window`` whose per-field counts differ, in series, day order."""
    out = []
    for key in sorted(parquet.keys() | influx.keys()):
        ours = parquet.get(key, {})
        theirs = influx.get(key, {})
        differing = {
            name: (ours.get(name, 0), theirs.get(name, 0))
            for name in sorted(ours.keys() | theirs.keys())
            if ours.get(name, 0) != theirs.get(name, 0)
        }
        if not differing:
            continue
        tags, day = key
        low = max(day, window.start_ns)
        high = min(day + DAY_NS, window.end_ns)
        out.append(
            Difference(
                window.database,
                window.retention_policy,
                window.measurement,
                tags,
                day,
                max(ours.values(), default=0),
                max(theirs.values(), default=0),
                differing,
                day_state(chunks, window.database, window.retention_policy, low, high),
            )
        )
    return out


def series_text(tags: Tags) -> str:
    """``id=st-1,model=v2 x``; ``(no tags)`` for a series without any."""
    return ",".join(f"{k}={v}" for k, v in tags) or "(no tags)"


@dataclass(slots=True)
class Tally:
    """What a run compared and found, for the summary."""

    windows: int = 0
    series_days: int = 0
    differences: int = 0
    mismatches: int = 0
    broken: int = 0
    unsettled: int = 0
    series: set[tuple[str, str, str, Tags]] = field(default_factory=set)

    def add(self, compared: int, found: Iterable[Difference]) -> None:
        """Count one window: ``compared`` (series, day) pairs, ``found`` differences."""
        self.windows += 1
        self.series_days += compared
        for d in found:
            self.differences += 1
            if d.kind == "mismatch":
                self.mismatches += 1
                self.series.add((d.database, d.retention_policy, d.measurement, d.tags))
            elif d.kind == "broken":
                self.broken += 1
            else:
                self.unsettled += 1

    @property
    def failed(self) -> bool:
        """Whether the run must exit 1: a mismatch, or a difference in a failed/damaged chunk."""
        return bool(self.mismatches or self.broken)

    def summary(self) -> str:
        """The closing line(s)."""
        series = len(self.series)
        lines = [
            f"verify: {self.series_days:,} series-days compared in {self.windows:,} windows: "
            + (
                f"{self.mismatches:,} mismatch(es) in {series:,} series"
                if self.mismatches
                else "no mismatch"
            )
        ]
        if self.broken:
            lines.append(
                f"  {self.broken:,} difference(s) in failed or damaged chunks: fix the cause "
                "(`headlined status` says it) and run `headlined export` again"
            )
        if self.unsettled:
            lines.append(
                f"  {self.unsettled:,} difference(s) in chunks still open, pending or running "
                "(InfluxDB or the export may still change them): not counted as mismatches"
            )
        return "\n".join(lines)
