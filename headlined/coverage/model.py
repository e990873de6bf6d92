"""What ``headlined coverage`` reports: per series, its points, cadence and missing intervals."""

from __future__ import annotations

from dataclasses import dataclass

# Causes of a missing interval (see docs/coverage.md).
NOT_IN_INFLUXDB = "not in InfluxDB"
FAILED = "failed"
DAMAGED = "damaged"
NOT_EXPORTED = "not exported yet"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ChunkState:
    """One row of the ``export_chunks`` table: a planned chunk's range and state."""

    database: str
    retention_policy: str
    start_ns: int
    end_ns: int  # exclusive
    state: str  # pending | running | done | open | damaged | failed


@dataclass(frozen=True, slots=True)
class Missing:
    """A stretch of a series with no point, and why when headlined can know."""

    start_ns: int
    end_ns: int  # exclusive
    cause: str  # NOT_IN_INFLUXDB | FAILED | DAMAGED | NOT_EXPORTED | UNKNOWN


@dataclass(frozen=True, slots=True)
class SeriesCoverage:
    """One series (database, retention policy, measurement, tag set) over the exported data.

    ``first_ns``/``last_ns``/``points`` count the points within the scan's ``[since, until]``
    (the whole series when the scan has no bounds); a series with no point there but a missing
    interval reaching into it has ``points == 0`` and the first and last time of all its points.
    ``cadence_s`` is the median time between consecutive points (within 0.8%), ``coverage``
    the share of its span (clipped to the bounds) not in a missing interval.
    """

    database: str
    retention_policy: str
    measurement: str
    tags: dict[str, str]
    first_ns: int
    last_ns: int
    points: int
    cadence_s: float
    coverage: float  # 0..1
    missing: tuple[Missing, ...]
    ended: bool
