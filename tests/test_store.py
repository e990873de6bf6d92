"""The state file: forward migrations in place, clear errors when it cannot be used."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import duckdb
import pytest

from headlined.store import MIGRATIONS, SCHEMA_VERSION, Store, StoreError, open_database


def make_v1_file(path: Path) -> None:
    """A state file as headlined 0.1 (schema 1) left it, written by that version's SQL."""
    conn = duckdb.connect(str(path))
    conn.execute(MIGRATIONS[0])
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    conn.execute(
        "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
        "VALUES ('a', '[1]', ?, '{\"id\": 1}', ?)",
        [now, now],
    )
    # Schema 1's fetch_summary insert: ten columns, by position.
    conn.execute(
        "INSERT INTO fetch_summary VALUES ('a', ?, 12.5, 200, 1, 1, 0, false, 2.0, NULL)", [now]
    )
    conn.execute("INSERT INTO gaps VALUES ('a', ?, '[0]', '[1]', 5)", [now])
    conn.close()


def test_schema_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "headlined.duckdb"
    make_v1_file(path)
    conn = open_database(path)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT source, record_key FROM messages").fetchall() == [("a", "[1]")]
        assert conn.execute("SELECT duration_ms, attempts FROM fetch_summary").fetchall() == [
            (12.5, None)
        ]
        assert conn.execute("SELECT est_missing FROM gaps").fetchall() == [(5,)]
    finally:
        conn.close()
    again = open_database(path)  # idempotent: nothing left to apply
    again.close()


def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "headlined.duckdb"
    open_database(path).close()
    conn = duckdb.connect(str(path))
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="newer than this headlined"):
        open_database(path)


def test_store_runs_jobs_off_the_loop_and_closes(tmp_path: Path) -> None:
    async def scenario() -> int:
        store = Store(tmp_path / "s" / "headlined.duckdb")
        await store.open()
        count = await store.call(lambda c: c.execute("SELECT count(*) FROM messages").fetchone())
        read = await store.read(lambda c: c.execute("SELECT 41 + 1").fetchone(), limit_s=10)
        await store.close()
        assert read == (42,)
        return int(count[0]) if count else -1

    assert asyncio.run(scenario()) == 0
    assert not (tmp_path / "s" / "headlined.duckdb.wal").exists(), "checkpointed on close"
