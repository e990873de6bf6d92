"""Copies new messages to Parquet, each record exactly once, never half-written.

``<parquet_dir>/messages/source=<name>/date=<YYYY-MM-DD>/part-<first>-<last>.parquet``.
See docs/poller.md. ``payload`` is written as plain text (a UTF-8 string), not with Parquet's
JSON type: every reader takes it as a string (polars read the JSON type as binary), DuckDB's
JSON functions take it as it is, and the lake registers the file without a copy.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb

from headlined import durable, sql
from headlined.store import read_meta, write_meta

WATERMARK = "parquet_flushed_id"
PENDING = "parquet_flush_pending"
# A flush's file as flush_messages names it (or a lake key made of that name), with DuckDB's
# file number when it wrote several; a closed day's merged file is named the same way.
FLUSH_NAME = re.compile(r"part-(?P<first>[0-9]+)-(?P<last>[0-9]+)(?:-[^/]+)?(?:\.parquet)?")


def flush_range(name: str) -> tuple[int, int] | None:
    """The record ids (first, last) a flush's file or lake key names (its last path segment:
    ``.../part-<first>-<last>[-<n>][.parquet]``), None for any other name."""
    match = FLUSH_NAME.fullmatch(name.rpartition("/")[2])
    return (int(match["first"]), int(match["last"])) if match else None


def flush_messages(conn: duckdb.DuckDBPyConnection, parquet_dir: Path) -> int:
    """Write every message not yet in Parquet; return how many rows were written."""
    pending = read_meta(conn, PENDING)
    if pending is not None:
        low, high = (int(x) for x in pending.split(","))
    else:
        low = int(read_meta(conn, WATERMARK) or 0)
        row = conn.execute("SELECT max(id) FROM messages").fetchone()
        high = int(row[0]) if row and row[0] is not None else 0
        if high <= low:
            return 0
        write_meta(conn, PENDING, f"{low},{high}")
    root = parquet_dir / "messages"
    # Staged outside messages/: DuckDB's and polars' ** globs walk hidden folders too.
    tmp = parquet_dir / f".flush-{low}-{high}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copied = conn.execute(
        f"""
        COPY (
            SELECT source,
                   strftime(coalesce(record_time, first_seen) AT TIME ZONE 'UTC', '%Y-%m-%d')
                       AS date,
                   record_key, record_time, payload::VARCHAR AS payload, first_seen, id
            FROM messages WHERE id > $1 AND id <= $2 ORDER BY id
        ) TO {sql.literal(str(tmp))}
        (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (source, date), OVERWRITE_OR_IGNORE)
        """,
        [low, high],
    ).fetchone()
    for written in sorted(tmp.rglob("*.parquet")):
        partition = written.parent.relative_to(tmp)
        final_dir = root / partition
        final_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if written.stem in ("data_0", "data") else f"-{written.stem}"
        final = final_dir / f"part-{low + 1:012d}-{high:012d}{suffix}.parquet"
        durable.publish(written, final)
    write_meta(conn, WATERMARK, str(high))
    write_meta(conn, PENDING, None)
    shutil.rmtree(tmp, ignore_errors=True)
    return int(copied[0]) if copied else 0
