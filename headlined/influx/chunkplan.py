"""Which export chunks to run (pure: no files, no clock), aligned like InfluxDB's shards.

See docs/exporter.md.
"""

from __future__ import annotations

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


def plan(
    extents: list[Extent], chunk_s: float, start: datetime | None, end: datetime | None
) -> list[Chunk]:
    """Chunks covering each extent, clipped to the configured ``[start, end)`` if given."""
    size = int(chunk_s * NS)
    chunks: list[Chunk] = []
    for extent in sorted(extents, key=lambda e: (e.database, e.retention_policy)):
        low = extent.first_ns if start is None else max(extent.first_ns, to_ns(start))
        high = extent.last_ns + 1 if end is None else min(extent.last_ns + 1, to_ns(end))
        if high <= low:
            continue
        edge = (low + GO_ZERO_NS) // size * size - GO_ZERO_NS
        while edge < high:
            # Clipping to the configured range keeps its edges exact (no data outside it).
            lo = max(edge, to_ns(start)) if start is not None else edge
            hi = min(edge + size, to_ns(end)) if end is not None else edge + size
            chunks.append(Chunk(extent.database, extent.retention_policy, from_ns(lo), from_ns(hi)))
            edge += size
    return chunks


def outside(extents: list[Extent], start: datetime | None, end: datetime | None) -> list[Extent]:
    """The extents that the configured ``[start, end)`` leaves without a single chunk."""
    low = None if start is None else to_ns(start)
    high = None if end is None else to_ns(end)
    return [
        e
        for e in extents
        if (high is not None and e.first_ns >= high) or (low is not None and e.last_ns < low)
    ]
