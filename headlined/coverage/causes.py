"""Why a series misses data: a missing interval split by the export's chunks (pure).

Each piece of a missing interval takes the cause of the chunk (of the series' database and
retention policy) it falls in: ``done`` or ``open`` chunks were exported and had nothing there
(``not in InfluxDB``); ``failed`` and ``damaged`` chunks say so; ``pending`` and ``running``
ones are ``not exported yet``. Time between planned chunks is ``not in InfluxDB`` (the plan
only makes chunks where InfluxDB had data); time before the first chunk or after the last is
``unknown``. Adjacent pieces with the same cause are merged.

After a series' last point (and before its first), only the chunks that follow can tell
whether it ended or lost its data: :func:`trailing` and :func:`leading`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from headlined.coverage.model import (
    DAMAGED,
    FAILED,
    NOT_EXPORTED,
    NOT_IN_INFLUXDB,
    UNKNOWN,
    ChunkState,
    Missing,
)

CAUSE_OF_STATE = {
    "done": NOT_IN_INFLUXDB,
    "open": NOT_IN_INFLUXDB,
    "failed": FAILED,
    "damaged": DAMAGED,
    "pending": NOT_EXPORTED,
    "running": NOT_EXPORTED,
}
LOST = frozenset({FAILED, DAMAGED, NOT_EXPORTED})
"""Causes under which a series may have had points that the export does not hold."""


def by_policy(chunks: Iterable[ChunkState]) -> dict[tuple[str, str], list[ChunkState]]:
    """The chunks of each (database, retention policy), sorted by start."""
    out: dict[tuple[str, str], list[ChunkState]] = defaultdict(list)
    for chunk in chunks:
        out[chunk.database, chunk.retention_policy].append(chunk)
    for listed in out.values():
        listed.sort(key=lambda c: (c.start_ns, c.end_ns))
    return dict(out)


def _pieces(start: int, end: int, chunks: Sequence[ChunkState]) -> Iterator[Missing]:
    """``[start, end)`` cut at chunk edges, each piece with its cause (not merged)."""
    # The first chunk that may reach past `start` (ends are sorted with starts, overlaps aside).
    index = max(0, bisect.bisect_right([c.end_ns for c in chunks], start) - 1)
    cursor = start
    for i in range(index, len(chunks)):
        chunk = chunks[i]
        if cursor >= end:
            return
        if chunk.end_ns <= cursor:
            continue
        if cursor < chunk.start_ns:
            between = UNKNOWN if i == 0 else NOT_IN_INFLUXDB
            yield Missing(cursor, min(chunk.start_ns, end), between)
            cursor = chunk.start_ns
            if cursor >= end:
                return
        piece_end = min(chunk.end_ns, end)
        yield Missing(cursor, piece_end, CAUSE_OF_STATE.get(chunk.state, UNKNOWN))
        cursor = piece_end
    if cursor < end:
        yield Missing(cursor, end, UNKNOWN)


def merge(pieces: Iterable[Missing]) -> list[Missing]:
    """Adjacent (or overlapping) pieces with the same cause as one; empty pieces dropped."""
    out: list[Missing] = []
    for piece in pieces:
        if piece.end_ns <= piece.start_ns:
            continue
        if out and out[-1].cause == piece.cause and out[-1].end_ns >= piece.start_ns:
            last = out.pop()
            out.append(Missing(last.start_ns, max(last.end_ns, piece.end_ns), piece.cause))
        else:
            out.append(piece)
    return out


def explain(start: int, end: int, chunks: Sequence[ChunkState]) -> list[Missing]:
    """The missing interval ``[start, end)`` as pieces with their causes, in time order.

    ``chunks``: those of the series' database and retention policy, sorted by start.
    """
    return merge(_pieces(start, end, chunks))


def trailing(
    last_ns: int, cadence_ns: float, chunks: Sequence[ChunkState], k: float
) -> list[Missing]:
    """What a series lost after its last point: the failed, damaged or unexported chunks that
    directly follow it (within ``k`` cadences of exported data), up to their end.

    Empty when exported chunks follow: the series ended there (or no chunk says anything).
    """
    if not chunks:
        return []
    start = last_ns + round(cadence_ns)
    return _lost_run(_pieces(start, max(start, chunks[-1].end_ns), chunks), k * cadence_ns)


def leading(
    first_ns: int, cadence_ns: float, chunks: Sequence[ChunkState], k: float
) -> list[Missing]:
    """What a series lost before its first point: the failed, damaged or unexported chunks
    directly before it, from their start up to the first point."""
    if not chunks:
        return []
    pieces = list(_pieces(min(first_ns, chunks[0].start_ns), first_ns, chunks))
    return list(reversed(_lost_run(reversed(pieces), k * cadence_ns)))


def _lost_run(pieces: Iterable[Missing], slack: float) -> list[Missing]:
    """The run of lost pieces (``LOST`` causes) that comes first in ``pieces``, after at most
    ``slack`` of other time; merged, in the order given."""
    run: list[Missing] = []
    quiet = 0
    for piece in pieces:
        if piece.cause in LOST:
            if run and run[-1].cause == piece.cause:
                a = run.pop()
                start, end = min(a.start_ns, piece.start_ns), max(a.end_ns, piece.end_ns)
                run.append(Missing(start, end, piece.cause))
            else:
                run.append(piece)
            continue
        if run:
            break
        quiet += piece.end_ns - piece.start_ns
        if piece.cause == UNKNOWN or quiet > slack:
            break
    return run
