"""The DuckDB file: schema, migrations, and the one writer thread that owns the connection.

DuckDB calls block, so they never run on the event loop: every call is a job handed to a
single worker thread (``await store.call(fn, ...)``), which also serialises writes. The
writer's heartbeat turns unhealthy when one job runs past its deadline, so a wedged DuckDB
stops the systemd watchdog pings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from headlined import logs
from headlined.supervisor import Heartbeat

log = logs.get("store")

T = TypeVar("T")

# Forward-only migrations: index i upgrades a file at version i to version i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE SEQUENCE messages_id;
    CREATE TABLE messages (
        source VARCHAR NOT NULL,
        record_key VARCHAR NOT NULL,
        record_time TIMESTAMPTZ,
        payload JSON NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL,
        id BIGINT NOT NULL DEFAULT nextval('messages_id'),
        PRIMARY KEY (source, record_key)
    );
    CREATE TABLE fetch_summary (
        source VARCHAR NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        duration_ms DOUBLE,
        http_status INTEGER,
        fetched INTEGER,
        new INTEGER,
        overlap INTEGER,
        gap BOOLEAN NOT NULL DEFAULT false,
        next_interval_s DOUBLE,
        error VARCHAR
    );
    CREATE TABLE gaps (
        source VARCHAR NOT NULL,
        detected_at TIMESTAMPTZ NOT NULL,
        last_seen_key VARCHAR,
        first_new_key VARCHAR,
        est_missing BIGINT
    );
    CREATE TABLE source_state (
        source VARCHAR PRIMARY KEY,
        state JSON NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE export_chunks (
        database VARCHAR NOT NULL,
        retention_policy VARCHAR NOT NULL,
        start TIMESTAMPTZ NOT NULL,
        "end" TIMESTAMPTZ NOT NULL,
        state VARCHAR NOT NULL DEFAULT 'pending',
        lines BIGINT,
        rows BIGINT,
        files INTEGER,
        error VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (database, retention_policy, start)
    );
    """,
    # 2: how many HTTP requests (retries included) each poll made.
    "ALTER TABLE fetch_summary ADD COLUMN attempts INTEGER;",
    # 3: what influx_inspect skipped in a chunk it could partly read (state 'damaged').
    "ALTER TABLE export_chunks ADD COLUMN damage JSON;",
    # 4: following InfluxDB (what each chunk was exported from, state 'open') and one schema
    # per measurement. Chunks exported before have no signature, so they are exported again
    # once, into the resolved schema with a UTC time.
    """
    ALTER TABLE export_chunks ADD COLUMN signature VARCHAR;
    ALTER TABLE export_chunks ADD COLUMN exported_at TIMESTAMPTZ;
    CREATE TABLE export_fields (
        database VARCHAR NOT NULL,
        measurement VARCHAR NOT NULL,
        field VARCHAR NOT NULL,
        kinds VARCHAR[] NOT NULL,
        type VARCHAR NOT NULL,
        may_round BOOLEAN NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (database, measurement, field)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The DuckDB file cannot be opened or upgraded."""


def open_database(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating) the DuckDB file and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Under systemd's DynamicUser there is no HOME; DuckDB must not go looking for one.
    home = path.parent / ".duckdb"
    try:
        conn = duckdb.connect(
            str(path),
            config={"home_directory": str(home), "extension_directory": str(home / "extensions")},
        )
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(
                f"{path}: another process holds it (DuckDB allows one per file): stop the other "
                f"headlined using this state_dir, or give this one its own. ({exc})"
            ) from None
        raise StoreError(f"{path}: cannot open: {exc}") from None
    try:
        # Dates of Parquet partitions and of query output must not depend on the host's zone.
        conn.execute("SET TimeZone = 'UTC'")
        # Give memory back after each bulk job (journal apply, Parquet copy) rather than
        # keep it cached: a daemon that idles between them should stay small.
        conn.execute("SET allocator_flush_threshold = '4MB'")
        conn.execute("SET allocator_background_threads = true")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def read_meta(conn: duckdb.DuckDBPyConnection, key: str) -> str | None:
    """A value of the ``meta`` table (None when the key is not there)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return str(row[0]) if row else None


def write_meta(conn: duckdb.DuckDBPyConnection, key: str, value: str | None) -> None:
    """Set a value of the ``meta`` table; None removes the key."""
    if value is None:
        conn.execute("DELETE FROM meta WHERE key = ?", [key])
    else:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The file's schema version (0 for an empty file)."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    return int(read_meta(conn, "schema_version") or 0)


def migrate(conn: duckdb.DuckDBPyConnection) -> None:
    """Apply every migration the file lacks: to an existing file each in its own transaction,
    to a new one all in one (one commit instead of one per step: ~30 ms of CPU and disk
    waits at the start of a first `headlined export`, with the same all-or-nothing)."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the state file has schema version {version}, newer than this headlined "
            f"({SCHEMA_VERSION}); upgrade headlined or restore an older backup"
        )
    pending = list(range(version + 1, SCHEMA_VERSION + 1))
    for targets in [pending] if version == 0 and pending else [[t] for t in pending]:
        conn.execute("BEGIN")
        for target in targets:
            conn.execute(MIGRATIONS[target - 1])
        write_meta(conn, "schema_version", str(targets[-1]))
        conn.execute("COMMIT")
        for target in targets:
            log.info("schema_migrated", version=target)


class Store:
    """Owns the DuckDB connection; runs every call on one dedicated thread."""

    def __init__(
        self, path: Path, heartbeat: Heartbeat | None = None, job_deadline: float = 120.0
    ) -> None:
        self.path = path
        self._heartbeat = heartbeat
        self._job_deadline = job_deadline
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        # Reads (queries from the CLI) run beside the writer on their own cursors.
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="duckdb-read")
        self._conn: duckdb.DuckDBPyConnection | None = None

    async def open(self) -> None:
        """Open the file on the writer thread."""
        self._conn = await self._submit(open_database, self.path)
        log.info("store_opened", path=str(self.path), schema_version=SCHEMA_VERSION)

    async def call(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread and return its result."""
        conn = self._conn
        if conn is None:
            raise StoreError("store is not open")
        return await self._submit(fn, conn)

    async def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T], limit_s: float) -> T:
        """Run ``fn(cursor)`` on a reader thread, interrupting it after ``limit_s`` seconds."""
        cursor = await self.call(lambda conn: conn.cursor())
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._readers, fn, cursor)
        try:
            return await asyncio.wait_for(asyncio.shield(future), limit_s)
        except TimeoutError:
            cursor.interrupt()
            raise
        finally:
            # The cursor is closed only once its thread let go of it.
            future.add_done_callback(lambda _: cursor.close())

    async def _submit(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._job, fn, args)

    def _job(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        if self._heartbeat is not None:
            self._heartbeat.beat(within=self._job_deadline)
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            elapsed = time.monotonic() - started
            if elapsed > 5:
                log.warning(
                    "slow_store_job", job=getattr(fn, "__name__", "?"), seconds=round(elapsed, 1)
                )
            if self._heartbeat is not None:
                # Idle is healthy: nothing is owed until the next job starts.
                self._heartbeat.beat(within=math.inf)

    async def close(self) -> None:
        """Checkpoint and close the file, then stop the thread."""
        conn, self._conn = self._conn, None
        self._readers.shutdown(wait=True, cancel_futures=True)
        if conn is not None:
            await self._submit(_checkpoint_and_close, conn)
        self._executor.shutdown(wait=True)


def _checkpoint_and_close(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CHECKPOINT")
    conn.close()
