"""The export's tables in DuckDB: the plan and checkpoints in ``export_chunks``.

The poll side's counterpart is :mod:`headlined.poll.tables`. Every function takes a
connection and runs on the store's writer thread (or a read-only connection for status).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from headlined.influx.chunkplan import Chunk


def save_plan(conn: duckdb.DuckDBPyConnection, chunks: list[Chunk]) -> None:
    """Add chunks not yet planned; a chunk left ``running`` by a crash becomes ``pending``."""
    now = datetime.now(UTC)
    conn.execute("BEGIN TRANSACTION")
    try:
        if chunks:
            conn.execute(
                """INSERT OR IGNORE INTO export_chunks
                   (database, retention_policy, start, "end", state, updated_at)
                   SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                                         unnest(?::TIMESTAMPTZ[]), unnest(?::TIMESTAMPTZ[]),
                                         'pending', ?::TIMESTAMPTZ)""",
                [
                    [c.database for c in chunks],
                    [c.retention_policy for c in chunks],
                    [c.start for c in chunks],
                    [c.end for c in chunks],
                    now,
                ],
            )
        conn.execute(
            "UPDATE export_chunks SET state = 'pending', updated_at = ? WHERE state = 'running'",
            [now],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def load_chunks(conn: duckdb.DuckDBPyConnection) -> list[tuple[Chunk, str, int]]:
    """Every planned chunk with its state and rows."""
    rows = conn.execute(
        """SELECT database, retention_policy, start, "end", state, coalesce(rows, 0)
           FROM export_chunks ORDER BY database, retention_policy, start"""
    ).fetchall()
    return [
        (Chunk(d, r, s.astimezone(UTC), e.astimezone(UTC)), state, n)
        for d, r, s, e, state, n in rows
    ]


def set_state(
    conn: duckdb.DuckDBPyConnection,
    chunk: Chunk,
    state: str,
    *,
    lines: int | None = None,
    rows: int | None = None,
    files: int | None = None,
    error: str | None = None,
    damage: list[dict[str, str | None]] | None = None,
) -> None:
    """Checkpoint one chunk; ``damage`` lists what influx_inspect skipped (state damaged)."""
    conn.execute(
        """UPDATE export_chunks SET state = ?, lines = ?, rows = ?, files = ?, error = ?,
                  damage = ?, updated_at = ?
           WHERE database = ? AND retention_policy = ? AND start = ?""",
        [
            state,
            lines,
            rows,
            files,
            error,
            None if damage is None else json.dumps(damage),
            datetime.now(UTC),
            chunk.database,
            chunk.retention_policy,
            chunk.start,
        ],
    )


def chunk_summary(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Chunk counts by state, rows and lines, per database, from ``export_chunks``."""
    out: dict[str, Any] = {}
    for database, state, chunks, rows, lines in conn.execute(
        """SELECT database, state, count(*), coalesce(sum(rows), 0), coalesce(sum(lines), 0)
           FROM export_chunks GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        entry = out.setdefault(database, {"chunks": {}, "rows": 0, "lines": 0})
        entry["chunks"][state] = chunks
        entry["rows"] += rows
        entry["lines"] += lines
    return out


def problems(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every failed or damaged chunk with its error (what ``status`` lists by name)."""
    rows = conn.execute(
        """SELECT database, retention_policy, strftime(start, '%Y-%m-%dT%H:%MZ'),
                  strftime("end", '%Y-%m-%dT%H:%MZ'), state, error,
                  coalesce(json_array_length(damage), 0)
           FROM export_chunks WHERE state IN ('failed', 'damaged')
           ORDER BY database, retention_policy, start"""
    ).fetchall()
    return [
        {
            "chunk": f"{db}/{rp} {start}..{end}",
            "state": state,
            "error": error,
            "skipped": skipped,
        }
        for db, rp, start, end, state, error, skipped in rows
    ]
