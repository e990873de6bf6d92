"""Which records are new, in what order, and whether records were lost (pure logic).

A gap is a full window sharing no record with what was seen before. See docs/poller.md.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import attrgetter, sub

from headlined.poll.records import Record, Scan


@dataclass(frozen=True, slots=True)
class Seen:
    """What is remembered of a record already stored: enough to order it and count a gap."""

    time: datetime | None
    seq: tuple[str, int] | None


@dataclass(frozen=True, slots=True)
class Gap:
    """A detected loss, as stored in the ``gaps`` table."""

    last_seen_key: str | None
    first_new_key: str
    est_missing: int | None


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one response's new records mean once compared with what was seen."""

    new: list[Record]
    """New records, oldest first."""
    gap: Gap | None
    window_rate: float | None
    burst: int | None
    """The most records whose times fall within one second (None without times)."""


class SeenKeys:
    """The most recent keys of one source, oldest first, bounded in size.

    Rolling windows never bring back a record that aged out, so remembering a few windows is
    enough to tell new from seen; the database's unique key is the final word on duplicates.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: set[str] = set()
        # (key, time, seq), oldest first: plain tuples, as this runs for every new record.
        self._order: deque[tuple[str, datetime | None, tuple[str, int] | None]] = deque()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def view(self) -> AbstractSet[str]:
        """The keys, for fast ``in`` tests (a live view: it follows later additions)."""
        return self._keys

    def remember(self, records: Iterable[Record]) -> None:
        """Remember records in order, the last as the newest; keys known already are skipped."""
        keys = self._keys
        fresh = {r.key: (r.key, r.time, r.seq) for r in records if r.key not in keys}
        keys.update(fresh)
        order = self._order
        order.extend(fresh.values())
        for _ in range(len(order) - self.capacity):
            keys.discard(order.popleft()[0])

    def resize(self, capacity: int) -> None:
        """Keep at most ``capacity`` keys from now on (the oldest go first)."""
        self.capacity = capacity
        order = self._order
        for _ in range(len(order) - capacity):
            self._keys.discard(order.popleft()[0])

    def newest(self) -> tuple[str, Seen] | None:
        """The most recently added key."""
        if not self._order:
            return None
        key, time, seq = self._order[-1]
        return key, Seen(time, seq)

    def max_seq(self) -> dict[str, int]:
        """The highest sequence number seen per group."""
        out: dict[str, int] = {}
        for _, _, seq in self._order:
            if seq is not None:
                group, number = seq
                out[group] = max(number, out.get(group, number))
        return out


def chronological(records: list[Record], newest_first: bool | None = None) -> list[Record]:
    """Records oldest first, whichever way the API sorts them.

    Times decide when every record has one; else sequence numbers tell the direction of the
    list; else the caller's hint (where the already-seen records sat); else APIs
    overwhelmingly list newest first, so we assume that.
    """
    if not records:
        return []
    oldest_first = _oldest_first(records, newest_first)
    if None not in map(_time, records):
        # Stable sort: ties keep their response order, itself made oldest-first first.
        return sorted(records if oldest_first else records[::-1], key=_time)
    return list(records) if oldest_first else records[::-1]


_time = attrgetter("time")


def _oldest_first(records: list[Record], newest_first: bool | None) -> bool:
    rising = falling = 0
    last_by_group: dict[str, int] = {}
    for record in records:
        if record.seq is None:
            continue
        group, number = record.seq
        previous = last_by_group.get(group)
        if previous is not None:
            rising += number > previous
            falling += number < previous
        last_by_group[group] = number
    if rising != falling:
        return rising > falling
    first, last = records[0].time, records[-1].time
    if first is not None and last is not None and first != last:
        return first < last
    return newest_first is False


def window_rate(records: list[Record]) -> float | None:
    """Arrivals per second over the span of the records' times (None if it cannot tell)."""
    times = [r.time for r in records if r.time is not None]
    if len(times) < 10:
        return None
    span = (max(times) - min(times)).total_seconds()
    return (len(times) - 1) / span if span >= 1.0 else None


def largest_burst(records: list[Record], span_s: float = 1.0) -> int | None:
    """The most records whose times fall within any ``span_s`` seconds."""
    times = sorted([t for t in map(_time, records) if t is not None])
    if not times:
        return None
    span = timedelta(seconds=span_s)
    # For each time, the first one at most span_s before it. bisect and map run in C, on
    # datetimes: a Python loop, or converting to timestamps, cost twice as much per poll.
    firsts = map(bisect_left, repeat(times), [t - span for t in times])
    return int(max(map(sub, range(1, len(times) + 1), firsts)))


def compare(scan: Scan, seen: SeenKeys, window: int) -> PollResult:
    """Decide what a response's new records mean: their order, and whether it is a gap."""
    # New records sit at the newest end of the list: that tells its direction.
    hint = None
    if scan.overlap and scan.new:
        hint = scan.new_positions / len(scan.new) < scan.known_positions / scan.overlap
    ordered = chronological(scan.new, newest_first=hint)
    gap = None
    if scan.overlap == 0 and ordered and len(seen) > 0 and scan.fetched >= window:
        gap = _gap(ordered, seen)
    return PollResult(ordered, gap, window_rate(ordered), largest_burst(ordered))


def _gap(new: list[Record], seen: SeenKeys) -> Gap | None:
    newest = seen.newest()
    last_key, last_seen = newest if newest is not None else (None, None)
    by_seq = _missing_by_sequence(new, seen)
    if by_seq == 0:
        return None  # no overlap, but the sequence numbers prove nothing fell between
    estimate = by_seq if by_seq is not None else _missing_by_time(new, last_seen)
    return Gap(last_key, new[0].key, estimate)


def _missing_by_sequence(new: list[Record], seen: SeenKeys) -> int | None:
    seqs = [r.seq for r in new if r.seq is not None]
    if len(seqs) != len(new):
        return None
    highest = seen.max_seq()
    lowest_new: dict[str, int] = {}
    for group, number in seqs:
        lowest_new[group] = min(number, lowest_new.get(group, number))
    if not lowest_new or any(group not in highest for group in lowest_new):
        return None  # a group we never saw: its start is unknown
    return sum(max(0, lowest_new[g] - highest[g] - 1) for g in lowest_new)


def _missing_by_time(new: list[Record], last_seen: Seen | None) -> int | None:
    rate = window_rate(new)
    first = new[0].time
    if rate is None or first is None or last_seen is None or last_seen.time is None:
        return None
    between = (first - last_seen.time).total_seconds()
    return max(0, round(rate * between) - 1) if between > 0 else None
