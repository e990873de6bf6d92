"""The poller's SQL: commit polls atomically, and restore a source after a restart.

These functions run on the store's writer thread (``await store.call(...)``). DuckDB is an
analytical engine: each statement costs ~1 ms of CPU however small, so polls are committed
in batches (see :mod:`headlined.pollwriter`) with a handful of set-based statements each.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from headlined.gaps import Gap
from headlined.records import Record


@dataclass(frozen=True, slots=True)
class Summary:
    """One row of ``fetch_summary`` (``new`` is filled in from what the insert really added)."""

    source: str
    started_at: datetime
    duration_ms: float
    http_status: int | None
    fetched: int
    overlap: int
    next_interval_s: float | None
    error: str | None
    attempts: int = 1
    """HTTP requests this poll made (retries included)."""


@dataclass(slots=True)
class Poll:
    """Everything one poll commits, and the future its poller awaits."""

    summary: Summary
    new: list[Record]
    gap: Gap | None
    state: dict[str, Any] | None
    """The schedule state to save with this poll; None when it need not be saved yet."""
    seen_at: datetime
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


_INSERT = """
    INSERT INTO messages (source, record_key, record_time, payload, first_seen)
    SELECT s, k, t, p::JSON, f
    FROM (SELECT unnest(?::VARCHAR[]) AS s, unnest(?::VARCHAR[]) AS k,
                 unnest(?::TIMESTAMPTZ[]) AS t, unnest(?::VARCHAR[]) AS p,
                 unnest(?::TIMESTAMPTZ[]) AS f)
"""


def commit_polls(conn: duckdb.DuckDBPyConnection, polls: list[Poll]) -> list[int]:
    """Commit ``polls`` in one transaction; return how many records each really added.

    The pollers only hand over records they have not seen, so the plain INSERT almost always
    succeeds; ON CONFLICT costs DuckDB three times as much, so it is the fallback, taken when
    the unique key says a record is already stored (then the batch is redone with it).
    """
    try:
        return _commit(conn, polls, on_conflict=False)
    except duckdb.ConstraintException:
        return _commit(conn, polls, on_conflict=True)


def _commit(conn: duckdb.DuckDBPyConnection, polls: list[Poll], on_conflict: bool) -> list[int]:
    rows = [(p, r) for p in polls for r in p.new]
    conn.execute("BEGIN TRANSACTION")
    try:
        counts = [len(p.new) for p in polls]
        if rows:
            params = [
                [p.summary.source for p, _ in rows],
                [r.key for _, r in rows],
                [r.time for _, r in rows],
                [json.dumps(r.payload, ensure_ascii=False) for _, r in rows],
                [p.seen_at for p, _ in rows],
            ]
            if on_conflict:
                inserted = conn.execute(
                    _INSERT + " ON CONFLICT DO NOTHING RETURNING source, record_key", params
                ).fetchall()
                counts = _per_poll(polls, {(s, k) for s, k in inserted})
            else:
                conn.execute(_INSERT, params)
        _insert_summaries(conn, polls, counts)
        gaps = [p for p in polls if p.gap is not None]
        if gaps:
            _insert_gaps(conn, gaps)
        states = {p.summary.source: p for p in polls if p.state is not None}
        if states:
            save_states(conn, {s: (p.state or {}, p.seen_at) for s, p in states.items()})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


def _per_poll(polls: list[Poll], inserted: set[tuple[str, str]]) -> list[int]:
    return [sum((p.summary.source, r.key) in inserted for r in p.new) for p in polls]


def _insert_summaries(conn: duckdb.DuckDBPyConnection, polls: list[Poll], new: list[int]) -> None:
    s = [p.summary for p in polls]
    conn.execute(
        """
        INSERT INTO fetch_summary BY NAME
        SELECT unnest(?::VARCHAR[]) AS source, unnest(?::TIMESTAMPTZ[]) AS started_at,
               unnest(?::DOUBLE[]) AS duration_ms, unnest(?::INTEGER[]) AS http_status,
               unnest(?::INTEGER[]) AS fetched, unnest(?::INTEGER[]) AS new,
               unnest(?::INTEGER[]) AS overlap, unnest(?::BOOLEAN[]) AS gap,
               unnest(?::DOUBLE[]) AS next_interval_s, unnest(?::VARCHAR[]) AS error,
               unnest(?::INTEGER[]) AS attempts
        """,
        [
            [x.source for x in s],
            [x.started_at for x in s],
            [x.duration_ms for x in s],
            [x.http_status for x in s],
            [x.fetched for x in s],
            new,
            [x.overlap for x in s],
            [p.gap is not None for p in polls],
            [x.next_interval_s for x in s],
            [x.error for x in s],
            [x.attempts for x in s],
        ],
    )


def _insert_gaps(conn: duckdb.DuckDBPyConnection, polls: list[Poll]) -> None:
    gaps = [(p, p.gap) for p in polls if p.gap is not None]
    conn.execute(
        """
        INSERT INTO gaps
        SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::TIMESTAMPTZ[]),
                              unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::BIGINT[]))
        """,
        [
            [p.summary.source for p, _ in gaps],
            [p.seen_at for p, _ in gaps],
            [g.last_seen_key for _, g in gaps],
            [g.first_new_key for _, g in gaps],
            [g.est_missing for _, g in gaps],
        ],
    )


def save_states(
    conn: duckdb.DuckDBPyConnection, states: dict[str, tuple[dict[str, Any], datetime]]
) -> None:
    """Upsert the schedule state of each source (an upsert costs DuckDB ~3 ms: do it rarely)."""
    conn.execute(
        """
        INSERT OR REPLACE INTO source_state
        SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[])::JSON,
                              unnest(?::TIMESTAMPTZ[]))
        """,
        [
            list(states),
            [json.dumps(state) for state, _ in states.values()],
            [at for _, at in states.values()],
        ],
    )


@dataclass(frozen=True, slots=True)
class Restored:
    """What the database remembers of a source."""

    state: dict[str, Any] | None
    payloads: list[dict[str, Any]]
    """Payloads of the most recent records, oldest first."""
    records: int
    gaps: int


def restore(conn: duckdb.DuckDBPyConnection, source: str, keep: int) -> Restored:
    """The schedule state, the last ``keep`` records' payloads, and counters of a source."""
    row = conn.execute("SELECT state FROM source_state WHERE source = ?", [source]).fetchone()
    state = json.loads(row[0]) if row else None
    payloads = [
        json.loads(p)
        for (p,) in conn.execute(
            """SELECT payload FROM (SELECT payload, id FROM messages WHERE source = ?
                                    ORDER BY id DESC LIMIT ?) ORDER BY id""",
            [source, keep],
        ).fetchall()
    ]
    counts = conn.execute(
        """SELECT (SELECT count(*) FROM messages WHERE source = $1),
                  (SELECT count(*) FROM gaps WHERE source = $1)""",
        [source],
    ).fetchone()
    records, gaps = (int(counts[0]), int(counts[1])) if counts else (0, 0)
    return Restored(state, payloads, records, gaps)
