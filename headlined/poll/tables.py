"""The poller's SQL: apply journal segments to DuckDB, save and restore a source's state.

Run on the store's writer thread. See docs/journal.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from headlined import sql
from headlined.poll.gaps import Gap
from headlined.poll.records import Record
from headlined.store import read_meta, write_meta


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


@dataclass(frozen=True, slots=True)
class Poll:
    """Everything one poll commits."""

    summary: Summary
    new: list[Record]
    gap: Gap | None
    state: dict[str, Any] | None
    """The schedule state to save with this poll; None when it need not be saved yet."""
    seen_at: datetime


# How DuckDB reads a journal frame (see headlined.poll.journal.encode).
_FRAME = """{
    n: 'BIGINT', source: 'VARCHAR', started_at: 'TIMESTAMPTZ', duration_ms: 'DOUBLE',
    http_status: 'INTEGER', fetched: 'INTEGER', overlap: 'INTEGER',
    next_interval_s: 'DOUBLE', error: 'VARCHAR', attempts: 'INTEGER',
    seen_at: 'TIMESTAMPTZ',
    gap: 'STRUCT(last_seen_key VARCHAR, first_new_key VARCHAR, est_missing BIGINT)',
    state: 'JSON', new: 'STRUCT(k VARCHAR, t TIMESTAMPTZ, p JSON)[]'
}"""
_RECORDS = "SELECT n, source, seen_at, unnest(new) AS r FROM journal_frames"
JOURNAL_APPLIED = "journal_applied"
"""The ``meta`` key holding the number of the last journal segment applied."""


def journal_applied(conn: duckdb.DuckDBPyConnection) -> int:
    """The number of the last journal segment applied (0 if none ever was)."""
    return int(read_meta(conn, JOURNAL_APPLIED) or 0)


def apply_segment(conn: duckdb.DuckDBPyConnection, path: Path, number: int) -> int:
    """Apply one journal segment in one transaction; return how many polls it held.

    The pollers only journal records they have not seen, so the plain INSERT almost always
    succeeds; checking each record against the unique key costs DuckDB three times as much,
    so that is the fallback, taken when the key says a record is already stored.
    """
    try:
        return _apply(conn, path, number, check_stored=False)
    except duckdb.ConstraintException:
        return _apply(conn, path, number, check_stored=True)


def _apply(conn: duckdb.DuckDBPyConnection, path: Path, number: int, check_stored: bool) -> int:
    # Any line fits: a frame is at most one response's records.
    largest = max(16 << 20, path.stat().st_size + 1)
    conn.execute("BEGIN TRANSACTION")
    try:
        if number <= journal_applied(conn):
            conn.execute("ROLLBACK")
            return 0  # applied already (then not deleted): never twice
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE journal_frames AS
                SELECT * FROM read_json({sql.literal(str(path))}, format = 'newline_delimited',
                                        columns = {_FRAME}, maximum_object_size = {largest})"""
        )
        new = "len(new)"
        if check_stored:
            conn.execute(
                f"""CREATE OR REPLACE TEMP TABLE journal_records AS
                    SELECT * FROM ({_RECORDS}) f
                    WHERE NOT EXISTS (SELECT 1 FROM messages m
                                      WHERE m.source = f.source AND m.record_key = f.r.k)
                    QUALIFY row_number() OVER (PARTITION BY source, r.k ORDER BY n) = 1"""
            )
            new = "(SELECT count(*) FROM journal_records x WHERE x.n = f.n)"
        source = "journal_records" if check_stored else f"({_RECORDS})"
        conn.execute(
            f"""INSERT INTO messages (source, record_key, record_time, payload, first_seen)
                SELECT source, r.k, r.t, r.p, seen_at FROM {source} ORDER BY n"""
        )
        conn.execute(
            f"""INSERT INTO fetch_summary BY NAME
                SELECT source, started_at, duration_ms, http_status, fetched, {new} AS new,
                       overlap, gap IS NOT NULL AS gap, next_interval_s, error, attempts
                FROM journal_frames f ORDER BY n"""
        )
        conn.execute(
            """INSERT INTO gaps
               SELECT source, seen_at, gap.last_seen_key, gap.first_new_key, gap.est_missing
               FROM journal_frames WHERE gap IS NOT NULL ORDER BY n"""
        )
        conn.execute(
            """INSERT OR REPLACE INTO source_state
               SELECT source, arg_max(state, n), arg_max(seen_at, n)
               FROM journal_frames WHERE state IS NOT NULL GROUP BY source"""
        )
        write_meta(conn, JOURNAL_APPLIED, str(number))
        row = conn.execute("SELECT count(*) FROM journal_frames").fetchone()
        conn.execute("DROP TABLE journal_frames")
        conn.execute("DROP TABLE IF EXISTS journal_records")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(row[0]) if row else 0


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
