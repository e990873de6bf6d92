"""The Parquet side of ``headlined verify``: per series, day and field, how many values the
mirror holds, one measurement and window at a time (DuckDB streams the files; only the daily
counts are kept).

Files are read as published: the export replaces a chunk's files by rename, so a query sees
each file whole, old or new. A file replaced between the listing and the read makes DuckDB
fail; the window is then listed and read again.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import duckdb

from headlined import sql
from headlined.influx.convert.paths import path_segment
from headlined.influx.verify.compare import (
    DAY_NS,
    Counts,
    file_range,
    series_key,
    split_columns,
)

ATTEMPTS = 3  # a re-export replacing files under a read is rare; three is plenty


class ParquetError(Exception):
    """The Parquet files of a measurement could not be read."""


def policy_dir(output_dir: Path, database: str, retention_policy: str) -> Path:
    """``<output_dir>/<database>/<rp>``, names encoded as the export writes them."""
    return output_dir / path_segment(database) / path_segment(retention_policy)


def measurements(output_dir: Path, database: str, retention_policy: str) -> list[str]:
    """The measurements with Parquet files under one retention policy (names decoded)."""
    folder = policy_dir(output_dir, database, retention_policy)
    if not folder.is_dir():
        return []
    return sorted(
        urllib.parse.unquote(p.name)
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and any(p.glob("*.parquet"))
    )


def files(output_dir: Path, where: tuple[str, str, str], start_ns: int, end_ns: int) -> list[str]:
    """The published Parquet files of ``where`` = (database, rp, measurement) that may hold
    points in [start_ns, end_ns): a chunk's file holds its chunk's time only, which its name
    says; a file named otherwise is always read. Hidden names are work in progress."""
    database, retention_policy, measurement = where
    folder = policy_dir(output_dir, database, retention_policy) / path_segment(measurement)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        if path.suffix != ".parquet" or path.name.startswith((".", "_")) or not path.is_file():
            continue
        held = file_range(path.name)
        if held is None or (held[0] < end_ns and start_ns < held[1]):
            out.append(str(path))
    return sorted(out)


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for the counting; times compare in UTC."""
    conn = duckdb.connect(":memory:")
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def count(
    conn: duckdb.DuckDBPyConnection,
    output_dir: Path,
    where: tuple[str, str, str],
    field_keys: Iterable[str],
    *,
    start_ns: int,
    end_ns: int,
) -> Counts:
    """Values per (series, day) and field of ``where`` = (database, rp, measurement) within
    [start_ns, end_ns); ``field_keys``: the measurement's fields (``export_fields``), which
    tell its field columns from its tag columns."""
    keys = list(field_keys)
    for attempt in range(ATTEMPTS):
        paths = files(output_dir, where, start_ns, end_ns)
        if not paths:
            return {}
        try:
            return _count(conn, paths, keys, start_ns, end_ns)
        except duckdb.IOException as exc:
            if attempt == ATTEMPTS - 1:
                raise ParquetError(f"{'/'.join(where)}: {exc}") from None
        except duckdb.Error as exc:  # a damaged file, say: no use reading it again
            raise ParquetError(f"{'/'.join(where)}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover  the loop returns or raises


def _count(
    conn: duckdb.DuckDBPyConnection, paths: list[str], keys: list[str], start_ns: int, end_ns: int
) -> Counts:
    source = f"read_parquet([{', '.join(sql.literal(p) for p in paths)}], union_by_name = true)"
    columns = [row[0] for row in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    fields, tags = split_columns(columns, keys)
    tag_columns = list(tags)
    field_columns = list(fields)
    if not field_columns:
        return {}
    ns = "epoch_ns(time)"
    # Floored to the UTC day (DuckDB's % keeps the sign of the dividend).
    day = f"{ns} - (({ns} % {DAY_NS}) + {DAY_NS}) % {DAY_NS}"
    selected = [*(sql.ident(c) for c in tag_columns), f"{day} AS day"]
    counted = [f"count({sql.ident(c)})" for c in field_columns]
    query = (
        f"SELECT {', '.join([*selected, *counted])} FROM {source} "
        # Constant bounds, so DuckDB skips row groups (and files) outside the window.
        "WHERE time >= make_timestamp_ns(?::BIGINT)::TIMESTAMPTZ_NS "
        "AND time < make_timestamp_ns(?::BIGINT)::TIMESTAMPTZ_NS "
        "GROUP BY ALL"
    )
    out: Counts = {}
    cursor = conn.execute(query, [start_ns, end_ns])
    width = len(tag_columns)
    while batch := cursor.fetchmany(10_000):
        for row in batch:
            series = series_key({tags[c]: v for c, v in zip(tag_columns, row[:width], strict=True)})
            values = {
                fields[c]: n for c, n in zip(field_columns, row[width + 1 :], strict=True) if n
            }
            if values:
                day_counts = out.setdefault((series, int(row[width])), {})
                for key, n in values.items():
                    day_counts[key] = day_counts.get(key, 0) + int(n)
    return out
