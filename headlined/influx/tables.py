"""The export's tables in DuckDB: the plan and checkpoints in ``export_chunks``.

The poll side's counterpart is :mod:`headlined.poll.tables`. Every function takes a
connection and runs on the store's writer thread (or a read-only connection for status).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from headlined.influx.chunkplan import Chunk
from headlined.influx.schema import Conflict, MeasurementTypes, conflicts, may_round, resolve

ChunkKey = tuple[str, str, datetime]  # database, retention policy, start


def key_of(chunk: Chunk) -> ChunkKey:
    """How ``export_chunks`` names a chunk (its primary key)."""
    return chunk.database, chunk.retention_policy, chunk.start


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What a plan changed in ``export_chunks``: chunks to export again, and why."""

    changed: list[Chunk]  # InfluxDB changed their data since their export
    retyped: list[Chunk]  # their database's schema changed
    closed: int  # open chunks whose time has passed, unchanged: now done
    conflicts: list[tuple[str, Conflict]]  # (database, field whose type differs by shard)


def save_plan(
    conn: duckdb.DuckDBPyConnection,
    new: list[Chunk],
    signatures: dict[ChunkKey, str],
    *,
    kept: set[ChunkKey],
    types: Mapping[str, Mapping[str, MeasurementTypes]],
    now: datetime,
) -> Reconciled:
    """Add the new chunks, record each database's field types (``export_fields``), and send
        back to ``pending`` every chunk whose inputs or schema changed.

        ``signatures``: each chunk's inputs now (:func:`headlined.influx.changes.signature`);
        a ``done``, ``open`` or ``damaged`` chunk whose stored signature differs (or that has none:
        exported before signatures) is exported again, unless it is in ``kept`` (InfluxDB dropped
        its time). When a field's resolved type changed, every chunk of its database is exported
    again, so that all files of a measurement keep one schema. A chunk left
        ``running`` by a crash becomes ``pending``; an ``open`` one whose end has passed, unchanged,
        becomes ``done``.
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        retyped_databases = {db for db, seen in types.items() if save_fields(conn, db, seen, now)}
        if new:
            conn.execute(
                """INSERT OR IGNORE INTO export_chunks
                   (database, retention_policy, start, "end", state, updated_at)
                   SELECT * FROM (SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                                         unnest(?::TIMESTAMPTZ[]), unnest(?::TIMESTAMPTZ[]),
                                         'pending', ?::TIMESTAMPTZ)""",
                [
                    [c.database for c in new],
                    [c.retention_policy for c in new],
                    [c.start for c in new],
                    [c.end for c in new],
                    now,
                ],
            )
        conn.execute(
            "UPDATE export_chunks SET state = 'pending', updated_at = ? WHERE state = 'running'",
            [now],
        )
        changed: list[Chunk] = []
        retyped: list[Chunk] = []
        closed: list[Chunk] = []
        for chunk, state, stored in _exported(conn):
            key = key_of(chunk)
            current = signatures.get(key)  # None: its database or RP is not exported now
            if chunk.database in retyped_databases:
                retyped.append(chunk)
            elif current is not None and key not in kept and stored != current:
                changed.append(chunk)
            elif state == "open" and chunk.end <= now:
                closed.append(chunk)
        _set_states(conn, changed + retyped, "pending", now)
        _set_states(conn, closed, "done", now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    found = [(db, c) for db, seen in sorted(types.items()) for c in conflicts(seen)]
    return Reconciled(changed, retyped, len(closed), found)


def _exported(conn: duckdb.DuckDBPyConnection) -> list[tuple[Chunk, str, str | None]]:
    rows = conn.execute(
        """SELECT database, retention_policy, start, "end", state, signature FROM export_chunks
           WHERE state IN ('done', 'open', 'damaged')"""
    ).fetchall()
    return [
        (Chunk(d, r, s.astimezone(UTC), e.astimezone(UTC)), state, sig)
        for d, r, s, e, state, sig in rows
    ]


def _set_states(
    conn: duckdb.DuckDBPyConnection, chunks: list[Chunk], state: str, now: datetime
) -> None:
    if chunks:
        conn.execute(
            """UPDATE export_chunks SET state = ?, updated_at = ?
               WHERE (database, retention_policy, start) IN
                     (SELECT (unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                              unnest(?::TIMESTAMPTZ[])))""",
            [
                state,
                now,
                [c.database for c in chunks],
                [c.retention_policy for c in chunks],
                [c.start for c in chunks],
            ],
        )


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
    signature: str | None = None,
) -> None:
    """Checkpoint one chunk; ``damage`` lists what influx_inspect skipped (state damaged);
    ``signature``: what the export read (given when it published, kept otherwise)."""
    now = datetime.now(UTC)
    conn.execute(
        """UPDATE export_chunks SET state = ?, lines = ?, rows = ?, files = ?, error = ?,
                  damage = ?, updated_at = ?,
                  signature = coalesce(?, signature),
                  exported_at = CASE WHEN ? IS NULL THEN exported_at ELSE ? END
           WHERE database = ? AND retention_policy = ? AND start = ?""",
        [
            state,
            lines,
            rows,
            files,
            error,
            None if damage is None else json.dumps(damage),
            now,
            signature,
            signature,
            now,
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


def save_fields(
    conn: duckdb.DuckDBPyConnection,
    database: str,
    types: Mapping[str, MeasurementTypes],
    now: datetime,
) -> set[tuple[str, str]]:
    """Record each field's types and resolved type in ``export_fields``; return the
    (measurement, field) pairs whose resolved type changed from what was recorded."""
    rows = [
        (measurement, key, sorted(kinds), resolve(kinds), may_round(kinds, resolve(kinds)))
        for measurement, seen in sorted(types.items())
        for key, kinds in sorted(seen.fields.items())
    ]
    before = {
        (m, f): t
        for m, f, t in conn.execute(
            "SELECT measurement, field, type FROM export_fields WHERE database = ?", [database]
        ).fetchall()
    }
    retyped = {(m, f) for m, f, _, t, _ in rows if (m, f) in before and before[m, f] != t}
    if rows:
        conn.execute(
            """INSERT OR REPLACE INTO export_fields
               SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[][]),
                      unnest(?::VARCHAR[]), unnest(?::BOOLEAN[]), ?""",
            [
                database,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
                [r[4] for r in rows],
                now,
            ],
        )
    return retyped


def field_conflicts(conn: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every field seen with more than one type, and the type its column has (for status)."""
    columns = ("database", "measurement", "field", "kinds", "type", "may_round")
    rows = conn.execute(
        f"""SELECT {", ".join(columns)} FROM export_fields
            WHERE len(kinds) > 1 ORDER BY ALL"""
    ).fetchall()
    return [dict(zip(columns, row, strict=True)) for row in rows]
