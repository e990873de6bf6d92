"""Missing intervals of one series, from its point times (pure; docs/coverage.md).

A diff ``d`` between consecutive points is a missing interval when ``d > K x`` its *local
cadence*: the upper median of up to :data:`SIDE` diffs before it and :data:`SIDE` after it,
``d`` itself excluded. So a stray point inside a hole does not hide it (its two diffs each
still see mostly short neighbours), and a change of pace (1-minute readings, then 5-minute) is
not a gap: at the change, half the neighbours are already the new pace and the upper median
takes it. The missing interval is ``[prev + cadence, next)``: it starts one local cadence after
the last point before the hole (where the next point was due) and ends at the first point after
it, so both edges are within one cadence of the hole's.

The C extension :mod:`headlined.coverage._runs` runs this algorithm over every point of an
export; :func:`find_gaps` is its reference, which the tests compare it with. The typical
cadence of a series is the upper median of all its diffs, kept in a log-binned histogram (bins
1/64 wide, reported at their middle: within 0.8% of the true median) so memory stays bounded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

K = 3
"""A diff longer than K local cadences is a missing interval."""
SIDE = 4
"""Diffs on each side of a diff that give its local cadence."""
BIN_BITS = 6
"""Mantissa bits of a cadence histogram bin: bins are 1/64 wide."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Two consecutive points too far apart, and the local cadence they were judged by."""

    prev_ns: int
    next_ns: int
    cadence_ns: int

    @property
    def missing(self) -> tuple[int, int]:
        """The missing interval ``[prev + cadence, next)``."""
        return self.prev_ns + self.cadence_ns, self.next_ns


def distinct(times: Iterable[int]) -> list[int]:
    """``times`` without repeats (a point in two overlapping files counts once).

    Raises ValueError when a time is earlier than the one before it.
    """
    out: list[int] = []
    for time in times:
        if out and time <= out[-1]:
            if time == out[-1]:
                continue
            raise ValueError(f"times are not in order: {time} comes after {out[-1]}")
        out.append(time)
    return out


def local_cadence(diffs: Sequence[int], i: int) -> int | None:
    """The upper median of up to SIDE diffs each side of ``diffs[i]`` (None if it has none)."""
    near = sorted([*diffs[max(0, i - SIDE) : i], *diffs[i + 1 : i + 1 + SIDE]])
    return near[len(near) // 2] if near else None


def find_gaps(times: Sequence[int], k: float = K) -> list[Gap]:
    """The gaps of a series whose points are at ``times`` (ascending; repeats count once)."""
    points = distinct(times)
    diffs = [b - a for a, b in itertools.pairwise(points)]
    gaps = []
    for i, d in enumerate(diffs):
        cadence = local_cadence(diffs, i)
        if cadence is not None and d > k * cadence:
            gaps.append(Gap(points[i], points[i + 1], cadence))
    return gaps


def cadence_bin(diff: int) -> int:
    """The histogram bin of a positive diff: its top bit and the BIN_BITS bits after it."""
    top = diff.bit_length() - 1
    mantissa = diff >> (top - BIN_BITS) if top >= BIN_BITS else diff << (BIN_BITS - top)
    return (top << BIN_BITS) + (mantissa & ((1 << BIN_BITS) - 1))


def bin_middle(b: int) -> float:
    """The middle of histogram bin ``b``: within 1/128 of any diff in it."""
    top, mantissa = b >> BIN_BITS, b & ((1 << BIN_BITS) - 1)
    width = 1 << BIN_BITS
    low = math.ldexp(1 + mantissa / width, top)
    high = math.ldexp(1 + (mantissa + 1) / width, top)
    return (low + high) / 2


def typical_cadence(diffs: Sequence[int]) -> float:
    """The upper median of ``diffs`` as the C extension gives it (its bin's middle); 0 if none."""
    if not diffs:
        return 0.0
    return bin_middle(sorted(cadence_bin(d) for d in diffs)[len(diffs) // 2])


def clip(start: int, end: int, lo: int | None, hi: int | None) -> tuple[int, int]:
    """``[start, end)`` within ``[lo, hi)`` (None: unbounded); may come out empty."""
    return max(start, lo) if lo is not None else start, min(end, hi) if hi is not None else end


def covered(span: tuple[int, int], missing: Iterable[tuple[int, int]]) -> float:
    """The share of ``span`` outside the (disjoint) ``missing`` intervals, 0..1.

    An empty span counts as wholly covered.
    """
    lo, hi = span
    gone = sum(max(0, min(e, hi) - max(s, lo)) for s, e in missing)
    if hi <= lo:
        return 1.0
    return max(0.0, 1.0 - gone / (hi - lo))
