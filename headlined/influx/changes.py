"""What InfluxDB changed since a chunk was exported, from its files alone (pure).

A chunk's signature digests what InfluxDB holds for its time: each TSM file whose index
reaches into it (name, size, mtime, and its tombstone's), each unreadable file that may cover
it, and the digest of the WAL's lines in the hours it spans. TSM files are immutable: a write,
a compaction, a DELETE (tombstone) or a WAL snapshot changes the signature of exactly the
chunks whose time it touches, which are then exported again. A changed signature may be a
false alarm (a compaction that moved the same points, a tombstone for another chunk of the same
file); a re-export then writes the same rows, so it costs time, never correctness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from headlined.influx.chunkplan import Chunk, hours_touching, to_ns
from headlined.influx.datadir import Found, Unreadable, WalScan

NOTHING = ""  # the signature of a time InfluxDB holds no file or WAL line for


def signature(
    chunk: Chunk, found: Found | None, broken: Iterable[Unreadable], wal: WalScan | None
) -> str:
    """The digest of every input InfluxDB would export ``chunk`` from; NOTHING if none."""
    lo, hi = to_ns(chunk.start), to_ns(chunk.end)
    parts: list[str] = []
    for tsm in found.tsm if found is not None else ():
        first, last = tsm.first_ns, tsm.last_ns
        if (
            tsm.error is None
            and first is not None
            and last is not None
            and first < hi
            and lo <= last
        ):
            parts.append(f"tsm {_name(tsm.path)} {tsm.size} {tsm.mtime_ns} {tsm.tombstone}")
    parts += [f"bad {_name(b.path)} {b.error}" for b in broken if b.covers(lo, hi)]
    if wal is not None:
        for hour in hours_touching(wal.hours, lo, hi):
            lines, digest = wal.hours[hour]
            parts.append(f"wal {hour} {lines} {digest}")
    if not parts:
        return NOTHING
    return hashlib.blake2b("\n".join(sorted(parts)).encode(), digest_size=16).hexdigest()


def _name(path: str) -> str:
    """``<shard>/<file>``: the same whichever way the files were reached."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def still_held(chunk: Chunk, shards: Mapping[tuple[str, str, int], tuple[int, int]]) -> bool:
    """Whether a shard group of meta.db still covers some of ``chunk``'s time.

    When none does, InfluxDB dropped that time (its retention policy, DROP SHARD): headlined
    keeps the chunk's Parquet, the history it was asked to keep, rather than follow the drop.
    """
    lo, hi = to_ns(chunk.start), to_ns(chunk.end)
    return any(
        db == chunk.database and rp == chunk.retention_policy and s_lo < hi and lo < s_hi
        for (db, rp, _), (s_lo, s_hi) in shards.items()
    )
