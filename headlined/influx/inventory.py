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
    that covers it is planned (and fails naming the file) instead of being left out.
    """
    out = []
    for item in discovery.found:
        key = (item.database, item.retention_policy)
        hours: Counter[int] = Counter()
        for tsm in item.tsm:
            hours.update(tsm.volume)
        scan = scans.get(key)
        if scan is not None:
            hours.update({hour: lines for hour, (lines, _) in scan.hours.items()})
        for bad in broken.get(key, []):
            if bad.first_ns is not None:
                hours[bad.first_ns // HOUR_NS] += 1
        shards = sorted({span for (db, rp, _), span in discovery.shards.items() if (db, rp) == key})
        out.append(RpData(item.database, item.retention_policy, tuple(shards), dict(hours)))
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
