"""``headlined query``: read-only SQL over everything stored.

The state tables (``messages``, ``fetch_summary``, ``gaps``, ``export_chunks``) are queried in
the DuckDB file itself; each exported measurement is a view ``"<database>"."<measurement>"``
over its Parquet files (every retention policy, with a ``retention_policy`` column).
The same code runs inside the daemon (on a cursor of its connection, via the control socket)
and in the CLI (on a read-only connection when no daemon holds the file).
"""

from __future__ import annotations

import csv
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import duckdb

from headlined import sql

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryError(Exception):
    """The SQL was refused or failed."""


@dataclass(frozen=True, slots=True)
class Result:
    """Column names and rows."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    notes: list[str]


def check_read_only(sql: str) -> None:
    """Refuse anything but SELECT/EXPLAIN: queries must never change the state file."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    if not statements:
        raise QueryError("no SQL statement given")
    for statement in statements:
        if statement.type not in ALLOWED:
            raise QueryError(
                f"only SELECT queries are allowed, not {statement.type.name}: "
                "the state file is the daemon's"
            )


def measurement_views(influx_dir: Path | None) -> dict[tuple[str, str], str]:
    """``(database, measurement)`` → Parquet glob, from ``<dir>/<db>/<rp>/<measurement>/``."""
    if influx_dir is None or not influx_dir.is_dir():
        return {}
    out: dict[tuple[str, str], str] = {}
    for db_dir in sorted(p for p in influx_dir.iterdir() if p.is_dir() and _visible(p)):
        for rp_dir in sorted(p for p in db_dir.iterdir() if p.is_dir() and _visible(p)):
            for m_dir in sorted(p for p in rp_dir.iterdir() if p.is_dir() and _visible(p)):
                if any(m_dir.glob("*.parquet")):
                    key = (urllib.parse.unquote(db_dir.name), urllib.parse.unquote(m_dir.name))
                    out[key] = str(db_dir / "*" / m_dir.name / "*.parquet")
    return out


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


# Catalog names DuckDB or we already use: a database named so cannot get views.
RESERVED = {"main", "temp", "system", "memory", "state", "headlined"}


def create_views(conn: duckdb.DuckDBPyConnection, influx_dir: Path | None) -> list[str]:
    """Views ``"<database>"."<measurement>"`` for every exported measurement.

    Each InfluxDB database becomes an attached in-memory catalog holding only views, so the
    state file is never written. Returns notes about databases that could not get views.
    """
    notes = []
    attached: set[str] = set()
    for (database, measurement), pattern in measurement_views(influx_dir).items():
        if database.lower() in RESERVED:
            notes.append(f"database {database!r} has no views: its name is reserved here")
            continue
        if database not in attached:
            conn.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {sql.ident(database)}")
            attached.add(database)
        conn.execute(
            f"CREATE OR REPLACE VIEW {sql.ident(database)}.main.{sql.ident(measurement)} AS "
            f"SELECT * EXCLUDE (filename), "
            f"url_decode(split_part(filename, '/', -3)) AS retention_policy "
            f"FROM read_parquet({sql.literal(pattern)}, union_by_name = true, filename = true)"
        )
    return notes


def run(
    conn: duckdb.DuckDBPyConnection, sql: str, influx_dir: Path | None, limit: int = 100_000
) -> Result:
    """Run read-only ``sql``; at most ``limit`` rows come back."""
    check_read_only(sql)
    notes = create_views(conn, influx_dir)
    try:
        cursor = conn.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(limit + 1)
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None
    return Result(columns, [list(r) for r in rows[:limit]], len(rows) > limit, notes)


def write(result: Result, fmt: str, out: TextIO) -> None:
    """Print rows as an aligned table, JSON lines or CSV."""
    if fmt == "json":
        for row in result.rows:
            out.write(
                json.dumps(
                    dict(zip(result.columns, row, strict=True)), default=str, ensure_ascii=False
                )
                + "\n"
            )
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        cells: list[tuple[str, ...]] = [tuple(result.columns)]
        cells += [tuple("NULL" if v is None else str(v) for v in row) for row in result.rows]
        widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(result.columns))]
        for line in cells:
            text = "  ".join(c[:60].ljust(w) for c, w in zip(line, widths, strict=True))
            out.write(text.rstrip() + "\n")
        out.write(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})\n")


def open_offline(database: Path) -> duckdb.DuckDBPyConnection:
    """The state file attached read-only (possible only while no daemon holds it)."""
    if not database.exists():
        raise QueryError(f"{database} does not exist yet: has the daemon ever run?")
    conn = duckdb.connect(":memory:")
    try:
        conn.execute(f"ATTACH {sql.literal(str(database))} AS state (READ_ONLY)")
    except duckdb.Error as exc:
        conn.close()
        raise QueryError(f"{database}: {exc}") from None
    conn.execute("USE state")
    conn.execute("SET TimeZone = 'UTC'")
    return conn
