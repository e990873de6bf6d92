"""Parquet copies of messages: every record exactly once, even across an interrupted flush."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import duckdb
import pytest

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from headlined.poll.parquet import PENDING, flush_messages
from headlined.store import open_database
from tests.support.daemon_process import Daemon, status, stored_keys, without_dac, write_config

NOBODY = 65534  # uid and gid of nobody: an owner the daemon, without DAC rights, cannot write as

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
    assert not list((tmp_path / "pq").rglob(".flush-*"))
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


@pytest.mark.integration
def test_a_parquet_dir_made_unwritable_while_running_is_said_once_and_resumes(
    tmp_path: Path,
) -> None:
    """No traceback a minute and no crash loop: one error, the records wait in DuckDB, and
    the copy resumes by itself once the folder is writable again."""
    specs = [FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=7, t0=time.time() - 10)]
    parquet = tmp_path / "pq"
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs, flush_interval="1s")
        daemon = Daemon(config, prefix=without_dac())
        daemon.wait_started()
        deadline = time.monotonic() + 30
        while not daemon.events("parquet_flushed"):
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        messages = parquet / "messages"
        folders = [parquet, *(p for p in parquet.rglob("*") if p.is_dir())]
        for folder in folders:
            os.chown(folder, NOBODY, NOBODY)
        deadline = time.monotonic() + 30
        while not daemon.events("parquet_flush_failed"):
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        time.sleep(3)  # three more failed flushes: still one error
        failing = status(config)["parquet"]
        for folder in folders:
            os.chown(folder, 0, 0)
        deadline = time.monotonic() + 30
        while not daemon.events("parquet_flush_resumed"):
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        resumed = status(config)["parquet"]
        assert daemon.stop() == 0
    assert "Permission denied" in failing["flush_error"]
    assert resumed["flush_error"] is None
    assert resumed["last_flush"] > failing["last_flush"]
    assert len(daemon.events("parquet_flush_failed")) == 1
    assert daemon.events("component_crashed") == []
    assert "Traceback" not in daemon.output()
    stored = {key for keys in stored_keys(tmp_path / "state").values() for key in keys}
    conn = duckdb.connect()
    try:
        copied = conn.execute(
            f"SELECT count(DISTINCT record_key) FROM read_parquet('{messages}/**/*.parquet')"
        ).fetchone()
    finally:
        conn.close()
    assert copied == (len(stored),)  # everything reached Parquet in the end
