"""Calendar bins for the coverage heatmap's columns, and the labels of its time axis.

Times are integer microseconds since the epoch (UTC) so that the overlap sums of the heatmap
are exact; bins follow the calendar (whole hours, days, Monday weeks, months, years) so that a
column reads as "October" or "the week of 7 October", not as an arbitrary slice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HOUR = 3600 * US
_DAY = 24 * _HOUR
# The finest bins first: the first that needs at most `max_bins` columns wins. The lengths are
# rough (a month is 31 days at most) and only skip candidates that cannot fit.
_UNITS: tuple[tuple[str, int, int], ...] = (
    ("hour", 1, _HOUR),
    ("hour", 6, 6 * _HOUR),
    ("day", 1, _DAY),
    ("week", 1, 7 * _DAY),
    ("month", 1, 28 * _DAY),
    ("month", 3, 89 * _DAY),
    ("year", 1, 365 * _DAY),
)


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as microseconds since the epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> datetime:
    """Microseconds since the epoch as a UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def parse(stamp: str) -> int:
    """An RFC 3339 time of ``--json`` (``Z`` or an offset; digits past microseconds are
    dropped) as microseconds since the epoch."""
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_us(moment)


@dataclass(frozen=True, slots=True)
class Bins:
    """The heatmap's columns: ``edges[i]`` to ``edges[i + 1]`` (exclusive) is column ``i``."""

    unit: str
    step: int
    edges: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many columns."""
        return len(self.edges) - 1

    def describe(self) -> str:
        """``"week"``, ``"6 hours"``, ``"3 months"``: what one column is."""
        return self.unit if self.step == 1 else f"{self.step} {self.unit}s"


def _floor(moment: datetime, unit: str, step: int) -> datetime:
    if unit == "hour":
        return moment.replace(hour=moment.hour // step * step, minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(month=(day.month - 1) // step * step + 1, day=1)
    return day.replace(year=day.year // step * step, month=1, day=1)


def _next(moment: datetime, unit: str, step: int) -> datetime:
    if unit == "hour":
        return moment + timedelta(hours=step)
    if unit == "day":
        return moment + timedelta(days=step)
    if unit == "week":
        return moment + timedelta(weeks=step)
    if unit == "month":
        months = moment.year * 12 + moment.month - 1 + step
        return moment.replace(year=months // 12, month=months % 12 + 1)
    return moment.replace(year=moment.year + step)


def _edges(start: int, end: int, unit: str, step: int, limit: int) -> list[int] | None:
    moment = _floor(from_us(start), unit, step)
    edges = [to_us(moment)]
    while edges[-1] < end:
        if len(edges) > limit:
            return None
        moment = _next(moment, unit, step)
        edges.append(to_us(moment))
    return edges


def choose(start: int, end: int, max_bins: int = 240) -> Bins:
    """The finest calendar bins that cover ``[start, end)`` in at most ``max_bins`` columns.

    An empty or backwards span is widened to one day, so that a report of a single point
    still has a column to draw it in.
    """
    if end <= start:
        end = start + _DAY
    for unit, step, length in _UNITS:
        if (end - start) // length > max_bins:
            continue
        edges = _edges(start, end, unit, step, max_bins)
        if edges is not None:
            return Bins(unit, step, tuple(edges))
    # Centuries of data: as many years per column as it takes.
    step = max(-(-(end - start) // (365 * _DAY * max_bins)), 1)
    while (edges := _edges(start, end, "year", step, max_bins)) is None:
        step += 1
    return Bins("year", step, tuple(edges))


@dataclass(frozen=True, slots=True)
class Tick:
    """A label of the time axis, left-aligned at column edge ``index``; ``major`` ones (the
    coarser unit: days under hours, months under days, years under months) sit on a second
    line and draw a gridline through the heatmap."""

    index: int
    label: str
    major: bool


_Key = Callable[[datetime], Hashable]
_Level = tuple[_Key, Callable[[datetime], str]]


def _month_name(d: datetime) -> str:
    return MONTHS[d.month - 1]


def _year(d: datetime) -> str:
    return str(d.year)


def _every_hours(k: int) -> _Key:
    return lambda d: (d.date(), d.hour // k)


def _every_days(k: int) -> _Key:
    return lambda d: (d.year, d.month, (d.day - 1) // k)


def _every_months(k: int) -> _Key:
    return lambda d: (d.year, (d.month - 1) // k)


def _every_years(k: int) -> _Key:
    return lambda d: d.year // k


def _levels(unit: str) -> tuple[list[_Level], _Level | None]:
    """The candidate minor labellings (finest first) and the major one, for bins of ``unit``."""
    months: list[_Level] = [(_every_months(k), _month_name) for k in (1, 3, 6)]
    if unit == "hour":
        hours: list[_Level] = [
            (_every_hours(k), lambda d: f"{d.hour:02d}h") for k in (1, 2, 3, 6, 12)
        ]
        return hours, (lambda d: d.date(), lambda d: f"{d.day} {_month_name(d)} {d.year}")
    if unit == "day":
        days: list[_Level] = [(_every_days(k), lambda d: str(d.day)) for k in (1, 2, 7, 15)]
        return days + months, (_every_months(1), lambda d: f"{_month_name(d)} {d.year}")
    if unit in ("week", "month"):
        return months, (_every_years(1), _year)
    return [(_every_years(k), _year) for k in (1, 2, 5, 10, 20, 50, 100)], None


def _positions(bins: Bins, key: _Key) -> list[int]:
    """Column edges where ``key`` changes (edge 0 when the first column starts a period)."""
    moments = [from_us(e) for e in bins.edges[:-1]]
    keys = [key(m) for m in moments]
    first = [0] if key(from_us(bins.edges[0] - 1)) != keys[0] else []
    return first + [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]


def ticks(bins: Bins, column_px: float, min_gap_px: float = 36) -> list[Tick]:
    """The axis labels: the finest minor labelling whose labels stay ``min_gap_px`` apart, and
    the major ones (none when the labels would collide)."""
    minors, major = _levels(bins.unit)
    out: list[Tick] = []
    if major is not None:
        key, fmt = major
        positions = _positions(bins, key)
        # Majors are longer ("Oct 2024"); too dense, they are left out.
        if _spaced(positions, column_px, 2.5 * min_gap_px):
            out += [Tick(i, fmt(from_us(bins.edges[i])), True) for i in positions]
    for key, fmt in minors:
        positions = _positions(bins, key)
        if _spaced(positions, column_px, min_gap_px):
            out += [Tick(i, fmt(from_us(bins.edges[i])), False) for i in positions]
            break
    return sorted(out, key=lambda t: (t.index, t.major))


def _spaced(positions: list[int], column_px: float, gap_px: float) -> bool:
    return all((b - a) * column_px >= gap_px for a, b in itertools.pairwise(positions))
