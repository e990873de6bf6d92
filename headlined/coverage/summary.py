"""One series' coverage from what the per-point pass found (pure; docs/coverage.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from headlined.coverage import causes, gaps
from headlined.coverage.model import ChunkState, Missing, SeriesCoverage

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Tracked:
    """What :class:`headlined.coverage._runs.Tracker` gives for one series."""

    count: int
    first_ns: int
    last_ns: int
    count_in: int  # within [since, until)
    first_in_ns: int
    last_in_ns: int
    cadence_ns: float  # typical: the median diff
    gaps: tuple[gaps.Gap, ...]

    @classmethod
    def of(
        cls, row: tuple[int, int, int, int, int, int, float, list[tuple[int, int, int]]]
    ) -> Tracked:
        """From one row of ``Tracker.results()``."""
        *head, cadence, found = row
        count, first, last, count_in, first_in, last_in = head
        return cls(
            count,
            first,
            last,
            count_in,
            first_in,
            last_in,
            cadence,
            tuple(gaps.Gap(*gap) for gap in found),
        )


@dataclass(frozen=True, slots=True)
class Context:
    """What a series is judged against: its chunks and the end of its measurement's data."""

    chunks: Sequence[ChunkState]  # of its database and retention policy, sorted by start
    data_end_ns: int  # the latest point of any series of its measurement
    now_ns: int
    since_ns: int | None = None
    until_ns: int | None = None  # exclusive
    k: float = gaps.K


def summarize(
    *,
    database: str,
    retention_policy: str,
    measurement: str,
    tags: dict[str, str],
    tracked: Tracked,
    context: Context,
) -> SeriesCoverage | None:
    """The series' coverage, or None when it has nothing within ``[since, until)``."""
    if tracked.count == 0:
        return None
    k, chunks = context.k, context.chunks
    missing: list[Missing] = causes.leading(tracked.first_ns, tracked.cadence_ns, chunks, k)
    for gap in tracked.gaps:
        missing += causes.explain(*gap.missing, chunks)
    after = causes.trailing(tracked.last_ns, tracked.cadence_ns, chunks, k)
    missing += after
    span = (
        min([tracked.first_ns, *(m.start_ns for m in missing)]),
        max([tracked.last_ns + round(tracked.cadence_ns), *(m.end_ns for m in missing)]),
    )
    lo, hi = context.since_ns, context.until_ns
    span = gaps.clip(*span, lo, hi)
    shown = tuple(
        Missing(*gaps.clip(m.start_ns, m.end_ns, lo, hi), m.cause)
        for m in missing
        if gaps.clip(m.start_ns, m.end_ns, lo, hi)[0] < gaps.clip(m.start_ns, m.end_ns, lo, hi)[1]
    )
    if tracked.count_in == 0 and not shown:
        return None
    if tracked.count_in:
        first, last, points = tracked.first_in_ns, tracked.last_in_ns, tracked.count_in
    else:
        first, last, points = tracked.first_ns, tracked.last_ns, 0
    return SeriesCoverage(
        database=database,
        retention_policy=retention_policy,
        measurement=measurement,
        tags=tags,
        first_ns=first,
        last_ns=last,
        points=points,
        cadence_s=tracked.cadence_ns / NS,
        coverage=gaps.covered(span, ((m.start_ns, m.end_ns) for m in shown)),
        missing=shown,
        ended=not after and _ended(tracked, context),
    )


def _ended(tracked: Tracked, context: Context) -> bool:
    """Whether the series stopped well before its measurement's data did (or, for data still
    being exported, well before now)."""
    horizon = context.data_end_ns
    if any(c.state == "open" and c.end_ns > tracked.last_ns for c in context.chunks):
        horizon = max(horizon, context.now_ns)
    return tracked.last_ns + context.k * tracked.cadence_ns < horizon
