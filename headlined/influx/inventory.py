"""Discovery summed up for the planner and the converter (pure): each retention policy's
estimated points per hour and shard groups, and each database's measurements with their tag
keys and field types (TSM indexes and WAL together)."""

from __future__ import annotations

from collections import Counter

from headlined.influx.chunkplan import HOUR_NS, RpData
from headlined.influx.datadir import Discovery, Unreadable, WalScan
from headlined.influx.schema import MeasurementTypes


def rp_data(
    discovery: Discovery,
    scans: dict[tuple[str, str], WalScan],
    broken: dict[tuple[str, str], list[Unreadable]],
) -> list[RpData]:
    """What the planner needs of each database/retention policy found.

    An unreadable TSM file whose time is known counts one point at its start, so the chunk
    that covers it is planned (and fails naming the file) instead of being left out. Block
    edges are summed over the files (WAL lines count as blocks within their hour); they are
    unknown (None) when a readable file came without them.
    """
    out = []
    for item in discovery.found:
        key = (item.database, item.retention_policy)
        hours: Counter[int] = Counter()
        begins: Counter[int] = Counter()
        ends: Counter[int] = Counter()
        known = True
        for tsm in item.tsm:
            hours.update(tsm.volume)
            if tsm.edges is not None:
                for hour, (began, ended) in tsm.edges.items():
                    begins[hour] += began
                    ends[hour] += ended
            elif tsm.error is None:
                known = False
        scan = scans.get(key)
        if scan is not None:
            wal = {hour: lines for hour, (lines, _) in scan.hours.items()}
            for counter in (hours, begins, ends):
                counter.update(wal)
        for bad in broken.get(key, []):
            if bad.first_ns is not None:
                for counter in (hours, begins, ends):
                    counter[bad.first_ns // HOUR_NS] += 1
        shards = sorted({span for (db, rp, _), span in discovery.shards.items() if (db, rp) == key})
        edges = {h: (begins[h], ends[h]) for h in begins.keys() | ends.keys()} if known else None
        out.append(RpData(item.database, item.retention_policy, tuple(shards), dict(hours), edges))
    return out


def measurement_types(
    discovery: Discovery, scans: dict[tuple[str, str], WalScan]
) -> dict[str, dict[str, MeasurementTypes]]:
    """Database -> measurement -> tag keys and field types, over all its retention policies
    (queries read them together, so they share one schema)."""
    out: dict[str, dict[str, MeasurementTypes]] = {}
    for item in discovery.found:
        seen = out.setdefault(item.database, {})
        sources = [tsm.types for tsm in item.tsm]
        scan = scans.get((item.database, item.retention_policy))
        if scan is not None:
            sources.append(scan.types)
        for types in sources:
            for measurement, found in types.items():
                seen.setdefault(measurement, MeasurementTypes()).add(found)
    return out
