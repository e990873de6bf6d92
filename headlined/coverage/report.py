"""Coverage entries as the JSON objects of ``--json`` and as a table for a terminal.

Both outputs come from the same plain dicts (:func:`series_entry`, :func:`source_entry`), so
the HTML report, the JSON lines and the table never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headlined import query
from headlined.coverage.model import SeriesCoverage
from headlined.coverage.sources import SourceCoverage

NS = 1_000_000_000


def rfc3339(ns: int | None) -> str | None:
    """``ns`` since the epoch as RFC 3339 UTC, with as many fraction digits as it needs."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, NS)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def series_entry(series: SeriesCoverage) -> dict[str, Any]:
    """One exported series as a ``--json`` object."""
    return {
        "kind": "series",
        "database": series.database,
        "retention_policy": series.retention_policy,
        "measurement": series.measurement,
        "tags": dict(series.tags),
        "source": None,
        "first": rfc3339(series.first_ns),
        "last": rfc3339(series.last_ns),
        "points": series.points,
        "cadence_s": series.cadence_s,
        "coverage": series.coverage,
        "ended": series.ended,
        "missing": [
            {"start": rfc3339(m.start_ns), "end": rfc3339(m.end_ns), "cause": m.cause}
            for m in series.missing
        ],
    }


def source_entry(source: SourceCoverage) -> dict[str, Any]:
    """One polled source as a ``--json`` object: recorded gaps (cause ``gap``, with the
    estimated records lost) and the stretches the daemon was not polling (``not polling``)."""
    missing: list[tuple[int, dict[str, Any]]] = [
        (
            g.start_ns,
            {
                "start": rfc3339(g.start_ns),
                "end": rfc3339(g.end_ns),
                "cause": "gap",
                "estimate": g.estimate,
            },
        )
        for g in source.gaps
    ]
    missing += [
        (
            p.start_ns,
            {"start": rfc3339(p.start_ns), "end": rfc3339(p.end_ns), "cause": "not polling"},
        )
        for p in source.not_polling
    ]
    return {
        "kind": "source",
        "database": None,
        "retention_policy": None,
        "measurement": None,
        "tags": {},
        "source": source.source,
        "first": rfc3339(source.first_ns),
        "last": rfc3339(source.last_ns),
        "points": source.points,
        "cadence_s": source.cadence_s,
        "coverage": source.coverage,
        "ended": False,
        "missing": [entry for _, entry in sorted(missing, key=lambda m: m[0])],
    }


def name(entry: Mapping[str, Any]) -> str:
    """How a person names the entry: ``db/rp/measurement tag=value,…`` or ``source NAME``."""
    if entry["kind"] == "source":
        return f"source {entry['source']}"
    tags = ",".join(f"{k}={v}" for k, v in sorted(entry["tags"].items()))
    path = f"{entry['database']}/{entry['retention_policy']}/{entry['measurement']}"
    return f"{path} {tags}" if tags else path


def duration(seconds: float | None) -> str:
    """A short human duration: ``45s``, ``5m``, ``2h30m``, ``37d``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"


def _day(stamp: str | None) -> str:
    return "-" if stamp is None else stamp[:10]


def _span_s(item: Mapping[str, Any]) -> float:
    start = datetime.fromisoformat(item["start"])
    end = datetime.fromisoformat(item["end"])
    return (end - start).total_seconds()


def render_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """A compact table, one line per series or source, then every missing interval."""
    header = ("SERIES", "FIRST", "LAST", "POINTS", "CADENCE", "COVERAGE", "MISSING")
    rows = [header]
    for entry in entries:
        missing = entry["missing"]
        lost = sum(_span_s(m) for m in missing if m["cause"] != "not polling")
        note = f"{len(missing)} ({duration(lost)})" if missing else "-"
        if entry.get("ended"):
            note += ", ended"
        rows.append(
            (
                query.one_line(name(entry)),
                _day(entry["first"]),
                _day(entry["last"]),
                str(entry["points"]),
                duration(entry["cadence_s"]),
                f"{100 * entry['coverage']:.2f}%",
                note,
            )
        )
    widths = [min(70, max(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = [
        "  ".join(
            (c[: widths[i] - 1] + "…" if len(c) > widths[i] else c).ljust(widths[i])
            if i in (0, 1, 2, 6)
            else c.rjust(widths[i])
            for i, c in enumerate(row)
        ).rstrip()
        for row in rows
    ]
    details = [
        f"{query.one_line(name(entry))}: {m['start']} → {m['end']} "
        f"({duration(_span_s(m))}) {m['cause']}"
        + (f", ~{m['estimate']} records" if m.get("estimate") is not None else "")
        for entry in entries
        for m in entry["missing"]
    ]
    if details:
        lines += ["", "missing intervals (end exclusive):", *details]
    if not entries:
        lines = ["nothing exported or polled yet"]
    return "\n".join(lines)
