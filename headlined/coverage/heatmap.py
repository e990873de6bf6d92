"""The coverage heatmap as data: per series or source and column, how much of the column it was
expected to cover and how much of that is missing, by cause; the rows grouped under database
and measurement (and a Sources group), worst first, with long groups collapsed.

Pure logic, no markup: ``html.py`` draws what this computes.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headlined.coverage import timebins
from headlined.coverage.report import name

SERIES_CAUSES = ("not in InfluxDB", "failed", "damaged", "not exported yet", "unknown")
SOURCE_CAUSES = ("gap", "not polling")
# A column with any of these shows it, whatever else is missing there: a failed or damaged
# chunk is something the user can fix, a recorded gap is data that is gone.
_PRIORITY = {"damaged": 3, "failed": 2, "gap": 1}
# Drawn dark however little of a column they take: what the user must act on.
LOUD = frozenset({"failed", "damaged"})
# A pause the API's window bridged lost nothing (docs/coverage.md): drawn, not counted as lost.
LOSSLESS = frozenset({"not polling"})

Cell = tuple[str, bool]
"""A column's state: ``("none", False)`` nothing expected, ``("complete", False)``, or
``(cause, heavy)``: the cause drawn, heavy when half or more of the expected time is missing
(or when the cause is one of ``LOUD``)."""
NONE: Cell = ("none", False)
COMPLETE: Cell = ("complete", False)


def window(
    entries: Sequence[Mapping[str, Any]], since: int | None, until: int | None
) -> tuple[int, int] | None:
    """The time range the report shows: ``since``/``until`` where given, else from the earliest
    first point or missing interval to the latest; None when nothing has a time at all."""
    starts: list[int] = []
    ends: list[int] = []
    for entry in entries:
        span = _span(entry)
        if span is not None:
            starts.append(span[0])
            ends.append(span[1])
        for item in entry["missing"]:
            starts.append(timebins.parse(item["start"]))
            ends.append(timebins.parse(item["end"]))
    start = since if since is not None else min(starts, default=None)
    end = until if until is not None else max(ends, default=None)
    if start is None or end is None:
        return None
    return start, max(end, start + 1)


def _span(entry: Mapping[str, Any]) -> tuple[int, int] | None:
    """[first point, last point + one cadence): a point stands for the time until the next."""
    if entry.get("first") is None or entry.get("last") is None:
        return None
    first = timebins.parse(entry["first"])
    cadence = entry.get("cadence_s")
    step = round(cadence * timebins.US) if cadence else 0
    return first, timebins.parse(entry["last"]) + max(step, 1)


@dataclass(slots=True)
class Row:
    """One heatmap row: a series, a source, or several collapsed into one (``merged`` > 1)."""

    label: str
    name: str
    merged: int
    coverage: float | None
    expected: list[int]
    missing: dict[str, list[int]]

    def cells(self) -> list[Cell]:
        """The state of every column."""
        return [
            state(expected, {c: v[i] for c, v in self.missing.items() if v[i]})
            for i, expected in enumerate(self.expected)
        ]


def row(entry: Mapping[str, Any], bins: timebins.Bins, shown: tuple[int, int]) -> Row:
    """The row of one entry: per column, the expected time (its span and its missing
    intervals) and the missing time per cause, clipped to ``shown``."""
    lo, hi = shown
    clip = [(max(s, lo), min(e, hi)) for s, e in _intervals(entry)]
    expected = [0] * bins.count
    for start, end in _union(clip):
        _add(expected, bins.edges, start, end)
    missing: dict[str, list[int]] = {}
    by_cause: dict[str, list[tuple[int, int]]] = {}
    for item in entry["missing"]:
        start = max(timebins.parse(item["start"]), lo)
        end = min(timebins.parse(item["end"]), hi)
        by_cause.setdefault(str(item["cause"]), []).append((start, end))
    for cause, spans in by_cause.items():
        sums = missing.setdefault(cause, [0] * bins.count)
        for start, end in _union(spans):
            _add(sums, bins.edges, start, end)
    coverage = entry.get("coverage")
    return Row(label(entry), name(entry), 1, coverage, expected, missing)


def _intervals(entry: Mapping[str, Any]) -> Iterable[tuple[int, int]]:
    span = _span(entry)
    if span is not None:
        yield span
    for item in entry["missing"]:
        yield timebins.parse(item["start"]), timebins.parse(item["end"])


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _add(sums: list[int], edges: Sequence[int], start: int, end: int) -> None:
    i = max(bisect_right(edges, start) - 1, 0)
    while i < len(sums) and edges[i] < end:
        overlap = min(end, edges[i + 1]) - max(start, edges[i])
        if overlap > 0:
            sums[i] += overlap
        i += 1


def state(expected: int, missing: Mapping[str, int]) -> Cell:
    """The state of a column from its expected time and its missing time per cause."""
    if expected <= 0:
        return NONE
    lost = sum(missing.values())
    if lost <= 0:
        return COMPLETE
    cause = max(missing, key=lambda c: (_PRIORITY.get(c, 0), missing[c], c))
    return cause, cause in LOUD or 2 * min(lost, expected) >= expected


def runs(cells: Sequence[Cell]) -> list[tuple[int, int, Cell]]:
    """Consecutive equal cells as ``(first column, end column exclusive, cell)``: one rectangle
    each, which keeps a page of thousands of mostly complete series small."""
    out: list[tuple[int, int, Cell]] = []
    for i, cell in enumerate(cells):
        if out and out[-1][2] == cell:
            out[-1] = (out[-1][0], i + 1, cell)
        else:
            out.append((i, i + 1, cell))
    return out


def merge(rows: Sequence[Row], label_text: str) -> Row:
    """Several rows as one: their times added column by column."""
    width = len(rows[0].expected)
    expected = [sum(r.expected[i] for r in rows) for i in range(width)]
    missing: dict[str, list[int]] = {}
    for r in rows:
        for cause, values in r.missing.items():
            sums = missing.setdefault(cause, [0] * width)
            for i, v in enumerate(values):
                sums[i] += v
    merged = sum(r.merged for r in rows)
    return Row(label_text, label_text, merged, None, expected, missing)


def label(entry: Mapping[str, Any]) -> str:
    """The row label under its measurement's heading: the tags, or the source's name."""
    if entry["kind"] == "source":
        return str(entry["source"])
    tags = entry.get("tags") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items())) or "(no tags)"


@dataclass(slots=True)
class Group:
    """A measurement's rows (or the sources'); ``hidden`` entries went into the last row."""

    title: str
    entries: list[Mapping[str, Any]]
    rows: list[Row]
    hidden: int = 0


@dataclass(slots=True)
class Section:
    """A database's groups, or the one group of the polled sources (``database`` None)."""

    database: str | None
    groups: list[Group] = field(default_factory=list)

    @property
    def entries(self) -> list[Mapping[str, Any]]:
        """Every entry of the section, in drawing order."""
        return [e for g in self.groups for e in g.entries]

    @property
    def rows(self) -> list[Row]:
        """Every row of the section, collapsed ones included."""
        return [r for g in self.groups for r in g.rows]

    @property
    def title(self) -> str:
        """The heading: the database, or "Sources"."""
        return "Sources" if self.database is None else str(self.database)


def worst_first(entry: Mapping[str, Any]) -> tuple[float, str]:
    """Sort key: the lowest coverage first (none known before all), then by name."""
    coverage = entry.get("coverage")
    return (-1.0 if coverage is None else float(coverage)), name(entry)


def layout(
    entries: Sequence[Mapping[str, Any]],
    bins: timebins.Bins,
    shown: tuple[int, int],
    *,
    max_rows: int = 1200,
    rows_per_group: int = 40,
) -> list[Section]:
    """The sections in order (databases by name, then Sources), each group worst first.

    A group with more entries than it may draw keeps its worst ones and merges the rest into
    one last row, so that thousands of series stay a readable page of a reasonable size: each
    group may draw ``rows_per_group`` rows, fewer when there are so many groups that
    ``max_rows`` would be passed (never fewer than 3).
    """
    by_group: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    sources: list[Mapping[str, Any]] = []
    for entry in entries:
        if entry["kind"] == "source":
            sources.append(entry)
        else:
            key = (
                str(entry["database"]),
                str(entry["measurement"]),
                str(entry["retention_policy"]),
            )
            by_group.setdefault(key, []).append(entry)
    policies: dict[str, set[str]] = {}
    for db, _, rp in by_group:
        policies.setdefault(db, set()).add(rp)
    count = len(by_group) + (1 if sources else 0)
    cap = max(3, min(rows_per_group, max_rows // max(count, 1)))
    sections: dict[str | None, Section] = {}
    for (db, measurement, rp), members in sorted(by_group.items()):
        title = measurement if len(policies[db]) == 1 else f"{measurement} (retention {rp})"
        section = sections.setdefault(db, Section(db))
        section.groups.append(
            _group(title, members, bins=bins, shown=shown, cap=cap, noun="series")
        )
    if sources:
        sections[None] = Section(
            None, [_group("", sources, bins=bins, shown=shown, cap=cap, noun="sources")]
        )
    return list(sections.values())


def _group(
    title: str,
    members: list[Mapping[str, Any]],
    *,
    bins: timebins.Bins,
    shown: tuple[int, int],
    cap: int,
    noun: str,
) -> Group:
    ordered = sorted(members, key=worst_first)
    if len(ordered) <= cap:
        return Group(title, ordered, [row(e, bins, shown) for e in ordered])
    kept = [row(e, bins, shown) for e in ordered[: cap - 1]]
    rest = [row(e, bins, shown) for e in ordered[cap - 1 :]]
    low = min((r.coverage for r in rest if r.coverage is not None), default=None)
    # Rounded down, so that "≥ 99.99%" never claims more than the worst of them has.
    note = f" (coverage ≥ {math.floor(10_000 * low) / 100:.2f}%)" if low is not None else ""
    collapsed = merge(rest, f"+ {len(rest)} more {noun}{note}")
    return Group(title, ordered, [*kept, collapsed], hidden=len(rest))
