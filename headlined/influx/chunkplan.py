"""Which export chunks to run (pure: no files, no clock), aligned like InfluxDB's shards.

See docs/exporter.md.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

NS = 1_000_000_000
GO_ZERO_NS = 62_135_596_800 * NS  # from 0001-01-01T00:00:00Z to the Unix epoch


@dataclass(frozen=True, slots=True, order=True)
class Chunk:
    """One unit of export work and of resumption."""

    database: str
    retention_policy: str
    start: datetime
    end: datetime
    """Exclusive."""

    @property
    def label(self) -> str:
        """How messages name the chunk: ``sensors/autogen 2024-01-15T00:00Z..2024-01-22T00:00Z``."""
        return (
            f"{self.database}/{self.retention_policy} "
            f"{self.start:%Y-%m-%dT%H:%MZ}..{self.end:%Y-%m-%dT%H:%MZ}"
        )

    @property
    def stem(self) -> str:
        """The chunk's Parquet file name (without ``.parquet``): deterministic."""
        return f"{self.start:%Y%m%dT%H%M%SZ}_{self.end:%Y%m%dT%H%M%SZ}"

    def inspect_range(self) -> tuple[str, str]:
        """``-start``/``-end`` for influx_inspect, which includes both ends: end - 1 ns."""
        last_ns = to_ns(self.end) - 1
        return rfc3339(to_ns(self.start)), rfc3339(last_ns)


@dataclass(frozen=True, slots=True)
class Extent:
    """What discovery found for one database/retention policy: its data's time range."""

    database: str
    retention_policy: str
    first_ns: int
    last_ns: int


def to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch (exact: no float)."""
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    """The UTC datetime of ``ns`` (microsecond precision, as datetime allows)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def rfc3339(ns: int) -> str:
    """RFC 3339 with nanoseconds, as Go's time.Parse(time.RFC3339) accepts."""
    seconds, frac = divmod(ns, NS)
    base = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return f"{base:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS
DEFAULT_SHARD_NS = 7 * DAY_NS  # InfluxDB's shard duration for a retention policy kept forever


@dataclass(frozen=True, slots=True)
class RpData:
    """What planning needs of one database/retention policy (from discovery)."""

    database: str
    retention_policy: str
    shards: tuple[tuple[int, int], ...]
    """The shard groups' ``[start, end)`` in ns (meta.db), sorted; may be empty."""
    hours: Mapping[int, int]
    """Hour index (ns // HOUR_NS) -> estimated points (lines) there; absent: none."""
    edges: Mapping[int, tuple[int, int]] | None = None
    """Hour index -> estimated points of the blocks that begin in it and of those that end in
    it (see :class:`Straddle`); None: unknown, every block taken to lie within one hour."""


class Straddle:
    """How many points a chunk boundary at the start of an hour would have influx_inspect
    decode twice: it decodes every block overlapping a chunk's range, so each block that
    begins before the boundary and ends after it is decoded by the chunks on both sides."""

    def __init__(self, edges: Mapping[int, tuple[int, int]]) -> None:
        """``edges``: hour -> (points of the blocks beginning in it, of those ending in it)."""
        self._hours = sorted(edges)
        self._open: list[int] = []
        running = 0
        for hour in self._hours:
            begins, ends = edges[hour]
            running += begins - ends
            self._open.append(running)

    def at(self, hour: int) -> int:
        """Points of the blocks beginning before ``hour`` and ending in it or after."""
        before = bisect.bisect_left(self._hours, hour) - 1
        # Estimates scaled and rounded per file may leave a few points below zero.
        return max(0, self._open[before]) if before >= 0 else 0


@dataclass(frozen=True, slots=True)
class Budget:
    """How big a chunk may be: estimated points, and (``influx.chunk``) a longest span."""

    points: int
    span_ns: int | None = None


# A unit over the budget is cut only if the cuts make influx_inspect decode at most this
# share of its points a second time: in a shard whose blocks all span it (a dense day, every
# series' block reaching from the first hour to the last), three chunks decoded it three times.
REDECODE_SHARE = 0.25
# Such a unit is exported whole up to this many times the budget, and beyond it cut into parts
# of that size, which bounds the converter's memory: 15M lines with the default budget, whose
# points the pivot still holds within its 256 MiB unless they have one or two fields each
# (see docs/exporter.md).
UNCUT_FACTOR = 3


@dataclass(slots=True)
class _Piece:
    start: int
    end: int
    points: int
    whole: bool  # a whole closed shard group: may be merged with its neighbours


def plan(
    data: list[RpData],
    existing: Mapping[tuple[str, str], list[tuple[int, int]]],
    budget: Budget,
    *,
    now_ns: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Chunk]:
    """New chunks for the data that no planned chunk covers yet (pure).

    Planned chunks keep their ranges for ever (their checkpoints and file names depend on
    them), so re-planning only fills what is not covered. Each shard group with data is a
    unit: a closed one whose estimate fits the budget may be merged with its closed
    neighbours (sparse years become few chunks), a dense one is cut at hour boundaries so
    each part fits (one hour is the smallest part) unless its blocks span the cuts (then it
    stays whole up to UNCUT_FACTOR times the budget), and a group still open at ``now_ns`` is
    cut by day, so that following it re-exports only the days that change. Time without data
    gets no chunk; ``start``/``end`` clip exactly.
    """
    low = None if start is None else to_ns(start)
    high = None if end is None else to_ns(end)
    chunks: list[Chunk] = []
    for rp in sorted(data, key=lambda d: (d.database, d.retention_policy)):
        covered = sorted(existing.get((rp.database, rp.retention_policy), []))
        straddle = None if rp.edges is None else Straddle(rp.edges)
        pieces: list[_Piece] = []
        for unit_start, unit_end in _units(rp):
            lo = unit_start if low is None else max(unit_start, low)
            hi = unit_end if high is None else min(unit_end, high)
            if lo >= hi:
                continue
            is_open = unit_end > now_ns
            for part_lo, part_hi in _uncovered(lo, hi, covered):
                whole = not is_open and (part_lo, part_hi) == (unit_start, unit_end)
                cuts = _days(part_lo, part_hi, unit_start) if is_open else [(part_lo, part_hi)]
                for cut_lo, cut_hi in cuts:
                    pieces += _fit(rp.hours, cut_lo, cut_hi, budget, straddle, whole=whole)
        for lo, hi in _merged(pieces, covered, budget):
            chunks.append(Chunk(rp.database, rp.retention_policy, from_ns(lo), from_ns(hi)))
    return chunks


def _units(rp: RpData) -> list[tuple[int, int]]:
    """The shard groups holding data: meta.db's, else cells of InfluxDB's default 7-day grid
    (cut short where they would overlap a known group)."""
    units: set[tuple[int, int]] = set()
    # Shard groups one after another (as InfluxDB makes them): the one holding an hour is
    # found by bisection, not by a scan of all of them per hour (4 years of hours times 209
    # groups took 0.6 s). Overlapping ones are scanned, the first holding it found first.
    starts = [lo for lo, _ in rp.shards]
    apart = all(a[1] <= b[0] for a, b in zip(rp.shards, rp.shards[1:], strict=False))
    last = (0, 0)  # apart: the unit found last, which mostly holds the next hour too
    for hour, points in rp.hours.items():
        if not points:
            continue
        t = hour * HOUR_NS
        if apart and last[0] <= t < last[1]:
            # Found already: with groups apart, every hour of a unit (a group, or a grid cell
            # cut short by them) is found in it.
            continue
        if apart:
            at = bisect.bisect_right(starts, t) - 1
            found = rp.shards[at] if at >= 0 and t < rp.shards[at][1] else None
        else:
            found = next(((lo, hi) for lo, hi in rp.shards if lo <= t < hi), None)
        if found is None:
            lo = (t + GO_ZERO_NS) // DEFAULT_SHARD_NS * DEFAULT_SHARD_NS - GO_ZERO_NS
            hi = lo + DEFAULT_SHARD_NS
            lo = max([lo] + [s_hi for _, s_hi in rp.shards if s_hi <= t])
            hi = min([hi] + [s_lo for s_lo, _ in rp.shards if s_lo > t])
            found = (lo, hi)
        units.add(found)
        last = found
    return sorted(units)


def _uncovered(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[lo, hi)`` minus every covered range."""
    out = []
    at = lo
    for c_lo, c_hi in covered:
        if c_hi <= at or c_lo >= hi:
            continue
        if c_lo > at:
            out.append((at, c_lo))
        at = max(at, c_hi)
        if at >= hi:
            break
    if at < hi:
        out.append((at, hi))
    return out


def _days(lo: int, hi: int, origin: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` cut at each day boundary counted from ``origin``."""
    out = []
    at = lo
    while at < hi:
        edge = origin + ((at - origin) // DAY_NS + 1) * DAY_NS
        out.append((at, min(edge, hi)))
        at = edge
    return out


def hours_touching(hours: Mapping[int, object], lo: int, hi: int) -> list[int]:
    """The hours of ``hours`` (hour index -> anything) that ``[lo, hi)`` touches, in order:
    by walking the range or the mapping, whichever is shorter."""
    first, last = lo // HOUR_NS, (hi - 1) // HOUR_NS
    if last - first + 1 <= len(hours):
        return [h for h in range(first, last + 1) if h in hours]
    return [h for h in sorted(hours) if first <= h <= last]


def _points(hours: Mapping[int, int], lo: int, hi: int) -> list[tuple[int, int]]:
    """(hour, points) of the hours touching ``[lo, hi)`` that hold data, in order."""
    return [(h, hours[h]) for h in hours_touching(hours, lo, hi) if hours[h]]


def _fit(
    hours: Mapping[int, int],
    lo: int,
    hi: int,
    budget: Budget,
    straddle: Straddle | None,
    *,
    whole: bool,
) -> list[_Piece]:
    """``[lo, hi)`` as pieces within the budget, cut at hour boundaries; none if empty.

    An hour is never cut, so one hour holding more than the budget is a piece of its own.
    Cuts that would have influx_inspect decode more than REDECODE_SHARE of the points twice
    (``straddle``) are not made: the range stays whole up to UNCUT_FACTOR times the budget,
    and is cut into parts of that size beyond. ``influx.chunk`` (a longest span) is obeyed
    as it is.
    """
    touched = _points(hours, lo, hi)
    total = sum(n for _, n in touched)
    if not total:
        return []
    pieces = _cut(touched, total, lo, hi, budget, whole=whole)
    if straddle is None or budget.span_ns is not None or len(pieces) < 2:
        return pieces
    again = sum(straddle.at(piece.start // HOUR_NS) for piece in pieces[1:])
    if again <= REDECODE_SHARE * total:
        return pieces
    return _cut(touched, total, lo, hi, Budget(UNCUT_FACTOR * budget.points), whole=whole)


def _cut(
    touched: list[tuple[int, int]], total: int, lo: int, hi: int, budget: Budget, *, whole: bool
) -> list[_Piece]:
    """``[lo, hi)`` (``touched``: its hours with data and their points) cut by the budget."""
    if total <= budget.points and (budget.span_ns is None or hi - lo <= budget.span_ns):
        return [_Piece(lo, hi, total, whole)]
    span = budget.span_ns
    pieces: list[_Piece] = []
    at, acc, data_end = lo, 0, lo
    for hour, n in touched:
        edge = max(hour * HOUR_NS, lo)
        too_long = span is not None and min(edge + HOUR_NS, hi) - at > span
        if acc and (acc + n > budget.points or too_long):
            # A stretch without data longer than a chunk may be is left unplanned.
            cut = edge if span is None or edge - at <= span else data_end
            pieces.append(_Piece(at, cut, acc, whole=False))
            at, acc = edge, 0
        elif too_long:
            at = edge
        acc += n
        data_end = min((hour + 1) * HOUR_NS, hi)
    if span is not None and hi - at > span:
        hi = data_end  # nor is one after the last data
    pieces.append(_Piece(at, hi, acc, whole=False))
    return pieces


def _merged(
    pieces: list[_Piece], covered: list[tuple[int, int]], budget: Budget
) -> list[tuple[int, int]]:
    """Consecutive whole, closed shard groups joined while the budget allows; the time between
    two joined groups must be planned by no other chunk."""
    out: list[_Piece] = []
    for piece in sorted(pieces, key=lambda p: p.start):
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.whole
            and piece.whole
            and prev.points + piece.points <= budget.points
            and (budget.span_ns is None or piece.end - prev.start <= budget.span_ns)
            and (
                prev.end == piece.start
                or _uncovered(prev.end, piece.start, covered) == [(prev.end, piece.start)]
            )
        ):
            out[-1] = _Piece(prev.start, piece.end, prev.points + piece.points, whole=True)
        else:
            out.append(piece)
    return [(p.start, p.end) for p in out]


def outside(extents: list[Extent], start: datetime | None, end: datetime | None) -> list[Extent]:
    """The extents that the configured ``[start, end)`` leaves without a single chunk."""
    low = None if start is None else to_ns(start)
    high = None if end is None else to_ns(end)
    return [
        e
        for e in extents
        if (high is not None and e.first_ns >= high) or (low is not None and e.last_ns < low)
    ]
