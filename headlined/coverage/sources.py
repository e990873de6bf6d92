"""Coverage of the polled sources: what was captured, when the daemon was not polling, and
every gap it recorded.

The state tables are read with a few aggregate queries (``statequery.select``: through the
daemon while it runs), so only the figures and the exceptional stretches travel, never the
polls themselves. The judgement is pure (:func:`analyse`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000
# A pause counts as "not polling" when the next poll came this many scheduled intervals late,
# and at least PAUSE_SLACK_S late (a restart takes a few seconds; that is not worth a line).
PAUSE_FACTOR = 3.0
PAUSE_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class Stretch:
    """A time interval, ``end_ns`` exclusive."""

    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class Gap:
    """Records the API dropped before a poll saw them, between the records on either side."""

    start_ns: int
    end_ns: int
    estimate: int | None


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the state tables say about one source (times in ns since the epoch)."""

    source: str
    points: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    last_poll_ns: int | None = None
    last_interval_s: float | None = None
    pauses: tuple[Stretch, ...] = ()
    gaps: tuple[Gap, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    """One source's coverage: its records' span, the pauses and the gaps within it."""

    source: str
    first_ns: int | None
    last_ns: int | None
    points: int
    cadence_s: float | None
    coverage: float
    not_polling: tuple[Stretch, ...] = ()
    gaps: tuple[Gap, ...] = ()


def paused(last_poll_ns: int, interval_s: float | None, now_ns: int) -> Stretch | None:
    """The stretch since the last poll, if the next one is overdue (the daemon is stopped)."""
    due = last_poll_ns + int((interval_s or 0.0) * NS)
    late_by = max(PAUSE_FACTOR * (interval_s or 0.0), (interval_s or 0.0) + PAUSE_SLACK_S)
    if now_ns - last_poll_ns > late_by * NS:
        return Stretch(due, now_ns)
    return None


def analyse(
    facts: SourceFacts, *, now_ns: int, since_ns: int | None = None, until_ns: int | None = None
) -> SourceCoverage:
    """The coverage of one source within [since, until] (both optional).

    Coverage is the share of the records' span not inside a recorded gap: a pause shorter
    than the API's window loses nothing (the next poll still overlaps), and a pause that lost
    records ends in a gap, so pauses are listed but do not count against coverage.
    """
    pauses = list(facts.pauses)
    if facts.last_poll_ns is not None:
        trailing = paused(facts.last_poll_ns, facts.last_interval_s, now_ns)
        if trailing is not None:
            pauses.append(trailing)
    lo = since_ns if since_ns is not None else -(2**63)
    hi = until_ns if until_ns is not None else 2**63 - 1
    kept_pauses = tuple(_clip(pauses, lo, hi))
    kept_gaps = tuple(
        Gap(max(g.start_ns, lo), min(g.end_ns, hi), g.estimate)
        for g in sorted(facts.gaps, key=lambda g: (g.start_ns, g.end_ns))
        if g.end_ns > lo and g.start_ns < hi
    )
    first, last = facts.first_ns, facts.last_ns
    if first is not None and last is not None:
        first, last = max(first, lo), min(last, hi)
    cadence = None
    if first is not None and last is not None and facts.points > 1 and last > first:
        cadence = (last - first) / (facts.points - 1) / NS
    coverage = 1.0
    if first is not None and last is not None and last > first:
        lost = _union_length([Stretch(g.start_ns, g.end_ns) for g in kept_gaps], first, last)
        coverage = max(0.0, 1.0 - lost / (last - first))
    return SourceCoverage(
        facts.source, first, last, facts.points, cadence, coverage, kept_pauses, kept_gaps
    )


def _clip(stretches: Iterable[Stretch], lo: int, hi: int) -> Iterable[Stretch]:
    for s in sorted(stretches, key=lambda s: s.start_ns):
        start, end = max(s.start_ns, lo), min(s.end_ns, hi)
        if end > start:
            yield Stretch(start, end)


def _union_length(stretches: Sequence[Stretch], lo: int, hi: int) -> int:
    """How much of [lo, hi) the stretches cover, overlaps counted once."""
    total, reach = 0, lo
    for s in sorted(stretches, key=lambda s: s.start_ns):
        start, end = max(s.start_ns, reach), min(s.end_ns, hi)
        if end > start:
            total += end - start
            reach = end
    return total


Select = Callable[[str], list[list[Any]]]

# The time a record is known by: its own time when the source has one, else when first seen.
_RECORD_TIME = "coalesce(record_time, first_seen)"


def facts(select: Select, names: Sequence[str]) -> list[SourceFacts]:
    """What the state tables hold for each source named (and any other that has records).

    ``select`` runs one read-only SQL statement and returns its rows.
    """
    pause = (
        f"greatest({PAUSE_FACTOR} * coalesce(next_interval_s, 0), "
        f"coalesce(next_interval_s, 0) + {PAUSE_SLACK_S})"
    )
    captured = {
        row[0]: row[1:]
        for row in select(
            f"SELECT source, count(*), epoch_ns(min({_RECORD_TIME})), "
            f"epoch_ns(max({_RECORD_TIME})) FROM messages GROUP BY source"
        )
    }
    polls = {
        row[0]: row[1:]
        for row in select(
            "SELECT source, epoch_ns(max(started_at)), arg_max(next_interval_s, started_at) "
            "FROM fetch_summary GROUP BY source"
        )
    }
    pauses: dict[str, list[Stretch]] = {}
    for source, start, end in select(
        "SELECT source, epoch_ns(started_at) + CAST(coalesce(next_interval_s, 0) * 1e9 AS BIGINT), "
        "epoch_ns(next_at) FROM (SELECT source, started_at, next_interval_s, "
        "lead(started_at) OVER (PARTITION BY source ORDER BY started_at) AS next_at "
        "FROM fetch_summary) "
        f"WHERE epoch_ns(next_at) - epoch_ns(started_at) > {pause} * 1e9 "
        "ORDER BY source, started_at"
    ):
        pauses.setdefault(source, []).append(Stretch(int(start), int(end)))
    gaps: dict[str, list[Gap]] = {}
    for source, detected, estimate, before, after, previous_poll in select(
        "SELECT g.source, epoch_ns(g.detected_at), g.est_missing, "
        f"(SELECT epoch_ns({_RECORD_TIME}) FROM messages m "
        " WHERE m.source = g.source AND m.record_key = g.last_seen_key), "
        f"(SELECT epoch_ns({_RECORD_TIME}) FROM messages m "
        " WHERE m.source = g.source AND m.record_key = g.first_new_key), "
        "(SELECT epoch_ns(max(f.started_at)) FROM fetch_summary f "
        " WHERE f.source = g.source AND f.started_at < g.detected_at) "
        "FROM gaps g ORDER BY g.source, g.detected_at"
    ):
        start, end = _gap_span(detected, before, after, previous_poll)
        gaps.setdefault(source, []).append(
            Gap(start, end, None if estimate is None else int(estimate))
        )
    out = []
    for name in sorted(set(names) | set(captured)):
        points, first, last = captured.get(name, (0, None, None))
        last_poll, interval = polls.get(name, (None, None))
        out.append(
            SourceFacts(
                name,
                int(points),
                _int(first),
                _int(last),
                _int(last_poll),
                None if interval is None else float(interval),
                tuple(pauses.get(name, ())),
                tuple(gaps.get(name, ())),
            )
        )
    return out


def _gap_span(detected: Any, before: Any, after: Any, previous_poll: Any) -> tuple[int, int]:
    """Between the records on either side of the hole when both have a time in order, else
    between the poll before and the poll that found it."""
    if before is not None and after is not None and int(before) < int(after):
        return int(before), int(after)
    start = int(previous_poll) if previous_poll is not None else int(detected)
    return start, int(detected)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
