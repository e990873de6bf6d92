"""Parquet copies of messages: every record exactly once, even across an interrupted flush."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb

from headlined.poll.parquet import PENDING, flush_messages
from headlined.store import open_database

NOW = datetime.datetime(2026, 11, 23, 12, tzinfo=datetime.UTC)


def insert(conn: duckdb.DuckDBPyConnection, source: str, keys: range) -> None:
    for n in keys:
        conn.execute(
            "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
            "VALUES (?, ?, ?, ?, ?)",
            [source, f"[{n}]", NOW if n % 2 else None, f'{{"id": {n}}}', NOW],
        )


def parquet_keys(root: Path) -> list[tuple[str, str, str]]:
    conn = duckdb.connect()
    try:
        return conn.execute(
            f"SELECT source, date::VARCHAR, record_key FROM read_parquet("
            f"'{root}/messages/**/*.parquet', hive_partitioning = true) ORDER BY ALL"
        ).fetchall()
    finally:
        conn.close()


def test_each_record_lands_once_in_its_partition(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "h.duckdb")
    insert(conn, "a", range(10))
    assert flush_messages(conn, tmp_path / "pq") == 10
    assert flush_messages(conn, tmp_path / "pq") == 0  # nothing new: nothing written
    insert(conn, "b", range(5))
    assert flush_messages(conn, tmp_path / "pq") == 5
    keys = parquet_keys(tmp_path / "pq")
    assert len(keys) == 15
    assert len(set(keys)) == 15
    assert {(s, d) for s, d, _ in keys} == {("a", "2026-11-23"), ("b", "2026-11-23")}
    assert not list((tmp_path / "pq").rglob(".tmp-*"))
    conn.close()


def test_interrupted_flush_is_redone_under_the_same_names(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "h.duckdb")
    insert(conn, "a", range(10))
    flush_messages(conn, tmp_path / "pq")
    files = sorted((tmp_path / "pq").rglob("*.parquet"))
    # A crash after the files were renamed but before the watermark moved: the range is
    # still pending, and more records have arrived since.
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'parquet_flushed_id'")
    conn.execute("INSERT INTO meta VALUES (?, '0,10')", [PENDING])
    insert(conn, "a", range(10, 13))
    assert flush_messages(conn, tmp_path / "pq") == 10  # the pending range, same names
    assert sorted((tmp_path / "pq").rglob("*.parquet")) == files
    assert flush_messages(conn, tmp_path / "pq") == 3
    keys = parquet_keys(tmp_path / "pq")
    assert len(keys) == len(set(keys)) == 13
    conn.close()
