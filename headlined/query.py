"""``headlined query``: read-only SQL over everything stored.

The state tables (``messages``, ``fetch_summary``, ``gaps``, ``export_chunks``,
``export_fields``) are queried in the DuckDB file itself; each exported measurement is a
view ``"<database>"."<measurement>"`` over its Parquet files (every retention policy, with a
``retention_policy`` column).
The same code runs inside the daemon (on a cursor of its connection, via the control socket)
and in the CLI (on a read-only connection when no daemon holds the file).
"""

from __future__ import annotations

import csv
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import duckdb

from headlined import sql

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
FETCH_BATCH = 1000


class QueryError(Exception):
    """The SQL was refused or failed."""


@dataclass(frozen=True, slots=True)
class Result:
    """Column names, their DuckDB types, and rows."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    notes: list[str]
    types: list[str] = field(default_factory=list)


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
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    influx_dir: Path | None,
    limit: int = 100_000,
    max_bytes: int | None = None,
) -> Result:
    """Run read-only ``sql``; at most ``limit`` rows, and about ``max_bytes`` of them as JSON.

    Rows are fetched in batches (DuckDB streams the rest), so a large result costs the
    daemon no more than ``max_bytes`` and one batch.
    """
    check_read_only(sql)
    notes = create_views(conn, influx_dir)
    rows: list[list[Any]] = []
    size = 0
    truncated = False
    try:
        cursor = conn.execute(sql)
        description = cursor.description or []
        while len(rows) <= limit and (batch := cursor.fetchmany(FETCH_BATCH)):
            for row in batch:
                if max_bytes is not None:
                    size += len(json.dumps(row, default=str, ensure_ascii=False))
                    if size > max_bytes:
                        truncated = True
                        notes.append(
                            f"the result was cut at {max_bytes // 2**20} MiB ({len(rows)} rows) "
                            "to keep the daemon small: narrow the query or add LIMIT"
                        )
                        break
                rows.append(list(row))
            if truncated:
                break
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None
    except RuntimeError as exc:
        # DuckDB turns Ctrl-C during a query into this; the CLI treats it as Ctrl-C.
        if "interrupted" in str(exc).lower():
            raise KeyboardInterrupt from None
        raise
    if len(rows) > limit:
        del rows[limit:]
        truncated = True
        notes.append(f"only the first {limit} rows are shown (--limit)")
    return Result(
        [d[0] for d in description], rows, truncated, notes, [str(d[1]) for d in description]
    )


def write(result: Result, fmt: str, out: TextIO) -> None:
    """Print rows as an aligned table, JSON lines or CSV."""
    if fmt == "json":
        json_columns = {i for i, t in enumerate(result.types) if t.upper() == "JSON"}
        for row in result.rows:
            # A JSON column is a JSON value in the output, not a string holding JSON.
            values = [_json_value(v) if i in json_columns else v for i, v in enumerate(row)]
            out.write(
                json.dumps(
                    dict(zip(result.columns, values, strict=True)), default=str, ensure_ascii=False
                )
                + "\n"
            )
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        cells: list[tuple[str, ...]] = [tuple(result.columns)]
        cells += [
            tuple("NULL" if v is None else one_line(str(v)) for v in row) for row in result.rows
        ]
        widths = [min(60, max(len(r[i]) for r in cells)) for i in range(len(result.columns))]
        for line in cells:
            text = "  ".join(c[:60].ljust(w) for c, w in zip(line, widths, strict=True))
            out.write(text.rstrip() + "\n")
        out.write(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})\n")


def _json_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """A table cell on one line: control characters as escapes (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


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
