"""The lake copy of local Parquet files, in a shape every Iceberg v2 reader takes.

pyiceberg 0.12 writes table format v2 only, whose timestamps are microseconds, while
headlined's measurement files hold ``time`` as TIMESTAMP(NANOS, UTC). So a measurement file
is copied (DuckDB, an in-memory connection of its own) with:

- ``time``: TIMESTAMPTZ in microseconds, floored (toward -inf, also before 1970), so that
  engines filter and prune on it as a timestamp;
- ``time_ns``: BIGINT, the exact nanoseconds since the epoch: nothing is lost;
- ``retention_policy``: VARCHAR, from the file's folder (the table holds every policy);
- then the tag and field columns as they are, but for unsigned integers, which Iceberg has
  no type for: UBIGINT becomes DECIMAL(20,0) (exact), the smaller ones the next signed type.

A flush of messages is registered as it is (headlined/lake/publisher.py) unless an older
version wrote its ``payload`` with Parquet's JSON logical type, which trips polars' Iceberg
reader (Binary against String) and pyiceberg's statistics. Such a file (a flush, or a day
an older version merged) is copied, with ``payload`` as plain VARCHAR and the ``source`` and
``date`` columns that only its path held.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import duckdb

from headlined import sql

# What each column type becomes in the lake copy (types missing here are kept).
_LAKE_TYPES = {
    "JSON": "VARCHAR",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INTEGER",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "HUGEINT": "DECIMAL(38,0)",
    "UHUGEINT": "DECIMAL(38,0)",
    "TIMESTAMP_NS": "TIMESTAMP",
    "TIMESTAMPTZ_NS": "TIMESTAMPTZ",
}
MEASUREMENT_ADDED = ("time", "time_ns", "retention_policy")
MESSAGES_ADDED = ("source", "date")
COPY_THREADS = 2  # at most


class RewriteError(Exception):
    """A local file cannot be copied into the lake (unreadable, or a clashing column)."""


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for lake copies, its session in UTC (the copies' plain timestamps are
    read as UTC), on two threads where there are two cores: the chunk it copies was made by
    influx_inspect and the converter side by side, and a chunk's row groups are encoded in
    parallel (an export's cycle 106 -> 84 ms in bench/lake.py, the same CPU)."""
    conn = duckdb.connect(config={"threads": min(COPY_THREADS, len(os.sched_getaffinity(0)))})
    # SET after connecting: as a connect() option DuckDB refuses it, after trying for ~2 s to
    # autoload the ICU extension (checked with DuckDB 2.0.1).
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def rewrite_measurement(
    conn: duckdb.DuckDBPyConnection, local: Path, lake: Path, retention_policy: str
) -> int:
    """Write the lake copy of measurement file ``local`` to ``lake``; return its rows."""
    columns = _columns(conn, local)
    if "time" not in columns or not columns["time"].startswith("TIMESTAMP"):
        raise RewriteError(f"{local}: no timestamp column 'time'")
    clash = [name for name in MEASUREMENT_ADDED[1:] if name in columns]
    if clash:
        raise RewriteError(
            f"{local}: a tag or field is named {clash[0]!r}, which the lake uses for "
            "its own column; rename it in InfluxDB or leave this measurement out of the lake"
        )
    ns = f"epoch_ns({sql.ident('time')})"
    # DuckDB's integer // and % truncate toward zero: one less for negative remainders.
    micros = f"({ns} // 1000 - ({ns} % 1000 < 0)::BIGINT)"
    select = [
        # Straight from the microseconds: a cast from TIMESTAMP goes through ICU's calendar
        # (a seventh of the whole copy), and one from TIMESTAMPTZ_NS rounds instead of flooring.
        f"make_timestamptz({micros}) AS time",
        f"{ns} AS time_ns",
        f"{sql.literal(retention_policy)}::VARCHAR AS retention_policy",
        *(_lake_column(name, type_) for name, type_ in columns.items() if name != "time"),
    ]
    return _copy(conn, local, lake, select)


def rewrite_messages(
    conn: duckdb.DuckDBPyConnection,
    local: Path,
    lake: Path,
    source: str,
    date: datetime.date,
) -> int:
    """Write the lake copy of the messages file ``local`` (of partition ``source``, ``date``)
    to ``lake``; return its rows."""
    # The poller's files have one schema (headlined/poll/parquet.py): no DESCRIBE first, which
    # cost a third as much as the copy of a minute's file. A file without `payload` fails the
    # copy with a RewriteError; one with other columns is checked against the table after.
    select = [
        f"{sql.literal(source)}::VARCHAR AS source",
        f"DATE {sql.literal(date.isoformat())} AS date",
        f"* REPLACE ({sql.ident('payload')}::VARCHAR AS {sql.ident('payload')})",
    ]
    return _copy(conn, local, lake, select)


def _lake_column(name: str, type_: str) -> str:
    column = sql.ident(name)
    lake_type = _LAKE_TYPES.get(type_)
    return f"{column}::{lake_type} AS {column}" if lake_type else column


def _read(local: Path) -> str:
    # hive_partitioning off: a messages file's source=/date= folders are not to become
    # columns behind our back (they are written explicitly).
    return f"read_parquet({sql.literal(str(local))}, hive_partitioning = false)"


def _columns(conn: duckdb.DuckDBPyConnection, local: Path) -> dict[str, str]:
    try:
        rows = conn.execute(f"DESCRIBE SELECT * FROM {_read(local)}").fetchall()
    except duckdb.Error as why:
        raise RewriteError(f"{local}: cannot be read as Parquet: {why}") from why
    return {str(row[0]): str(row[1]) for row in rows}


def _copy(conn: duckdb.DuckDBPyConnection, local: Path, lake: Path, select: list[str]) -> int:
    query = f"SELECT {', '.join(select)} FROM {_read(local)}"
    try:
        row = conn.execute(
            f"COPY ({query}) TO {sql.literal(str(lake))} ({sql.PARQUET_MEASUREMENTS})"
        ).fetchone()
    except duckdb.Error as why:
        raise RewriteError(f"{local}: cannot be copied into the lake: {why}") from why
    return int(row[0]) if row else 0
