"""Polls committed to the journal reach DuckDB exactly once (headlined/poll/writer.py)."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest

from headlined.poll import journal
from headlined.poll import writer as pollwriter
from headlined.poll.gaps import Gap
from headlined.poll.journal import Journal, Segment
from headlined.poll.records import Record
from headlined.poll.tables import JOURNAL_APPLIED, Poll, Summary, apply_segment
from headlined.poll.writer import APPLY_ATTEMPTS, PollWriter
from headlined.store import Store

T = TypeVar("T")
T0 = datetime(2026, 12, 2, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def poll(first: int, count: int, gap: Gap | None = None, source: str = "feed") -> Poll:
    at = T0 + timedelta(seconds=first)
    new = [
        Record(f"[{n}]", T0 + timedelta(seconds=n), {"id": n}, ("[]", n))
        for n in range(first, first + count)
    ]
    summary = Summary(source, at, 1.0, 200, count + 5, 5, 2.0, None)
    return Poll(summary, new, gap, {"rate": float(first)}, at)


def journal_in(directory: Path) -> Journal:
    """A journal as a previous run of the daemon left it."""
    j = Journal(directory)
    j.start_after(0)
    return j


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 2.0) -> None:
    """Wait until ``check`` holds or ``seconds`` pass (the caller asserts what it needs)."""
    for _ in range(int(seconds / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)


def close(j: Journal) -> Segment:
    """Close the journal's open segment as the writer does, and return it."""
    rotated = j.rotate()
    assert rotated is not None
    segment, sync_and_close = rotated
    sync_and_close()
    return segment


def with_store(tmp_path: Path, body: Callable[[Store], Awaitable[T]]) -> T:
    async def scenario() -> T:
        store = Store(tmp_path / "h.duckdb")
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(scenario())


async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return await store.call(lambda c: c.execute(sql).fetchall())


def test_committed_polls_are_in_duckdb_after_sync(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        assert writer.submit(poll(0, 3)) == 3
        assert writer.submit(poll(3, 2, gap=Gap("[2]", "[3]", 4))) == 2
        assert await rows(store, "SELECT count(*) FROM messages") == [(0,)]  # not yet
        assert writer.snapshot()["waiting_polls"] == 2
        assert writer.snapshot()["last_applied"] is None
        await writer.sync()
        assert writer.snapshot()["waiting_polls"] == 0
        assert writer.snapshot()["last_applied"] is not None
        assert await rows(store, "SELECT record_key, record_time, payload FROM messages") == [
            (f"[{n}]", T0 + timedelta(seconds=n), json.dumps({"id": n}).replace(" ", ""))
            for n in range(5)
        ]
        assert await rows(
            store, "SELECT fetched, new, overlap, gap, attempts FROM fetch_summary"
        ) == [(8, 3, 5, False, 1), (7, 2, 5, True, 1)]
        assert await rows(store, "SELECT last_seen_key, first_new_key, est_missing FROM gaps") == [
            ("[2]", "[3]", 4)
        ]
        assert await rows(store, "SELECT state->>'rate' FROM source_state") == [("3.0",)]
        assert journal.existing(writer.directory) == []  # applied segments are deleted
        await writer.close()

    with_store(tmp_path, body)


def test_segments_apply_when_due_by_time(tmp_path: Path) -> None:
    clock = Clock()

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal", apply_every=30, clock=clock)
        await writer.start()
        writer.submit(poll(0, 1))
        clock.now += 29
        writer.submit(poll(1, 1))
        await asyncio.sleep(0.05)
        assert await rows(store, "SELECT count(*) FROM messages") == [(0,)]
        clock.now += 1
        writer.submit(poll(2, 1))

        async def applied() -> bool:
            return await rows(store, "SELECT count(*) FROM messages") == [(3,)]

        await until(applied)
        assert await rows(store, "SELECT count(*) FROM messages") == [(3,)]
        await writer.close()

    with_store(tmp_path, body)


def test_a_crash_leftover_is_applied_at_start_and_a_torn_frame_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "journal"
    left = journal_in(directory)
    left.append(journal.encode(poll(0, 2), 1))
    close(left)
    left.append(journal.encode(poll(2, 2), 2))
    torn = journal.encode(poll(4, 2), 3)
    left.append(torn[: len(torn) // 2])  # killed half-way through this write
    close(left)

    async def body(store: Store) -> None:
        writer = PollWriter(store, directory)
        await writer.start()
        assert await rows(store, "SELECT record_key FROM messages ORDER BY id") == [
            ("[0]",),
            ("[1]",),
            ("[2]",),
            ("[3]",),
        ]
        assert await rows(store, "SELECT count(*) FROM fetch_summary") == [(2,)]
        assert journal.existing(directory) == []
        writer.submit(poll(4, 1))
        await writer.close()
        assert await rows(store, "SELECT count(*) FROM messages") == [(5,)]

    with_store(tmp_path, body)
    out = capsys.readouterr().out
    assert "journal_torn_frame_dropped" in out


def test_a_segment_applied_but_not_deleted_is_not_applied_again(tmp_path: Path) -> None:
    directory = tmp_path / "journal"

    async def first_run(store: Store) -> None:
        writer = PollWriter(store, directory)
        await writer.start()
        writer.submit(poll(0, 2))
        await writer.close()

    with_store(tmp_path, first_run)
    # As if the process died between the COMMIT and the unlink of segment 1.
    applied = journal_in(directory)
    applied.append(journal.encode(poll(0, 2), 1))
    assert close(applied).number == 1

    async def second_run(store: Store) -> None:
        assert await rows(store, f"SELECT value FROM meta WHERE key = '{JOURNAL_APPLIED}'") == [
            ("1",)
        ]
        writer = PollWriter(store, directory)
        await writer.start()
        assert await rows(store, "SELECT count(*) FROM fetch_summary") == [(1,)]
        assert journal.existing(directory) == []
        # Numbering goes on above what was applied, so the next segment is not skipped.
        writer.submit(poll(2, 1))
        await writer.close()
        assert await rows(store, "SELECT count(*), max(record_key) FROM messages") == [(3, "[2]")]
        assert await rows(store, f"SELECT value FROM meta WHERE key = '{JOURNAL_APPLIED}'") == [
            ("2",)
        ]

    with_store(tmp_path, second_run)


def test_records_already_stored_are_not_doubled_and_not_counted_new(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        writer.submit(poll(0, 3))
        await writer.sync()
        writer.submit(poll(2, 3))  # [2] is stored already
        writer.submit(poll(4, 2))  # and [4] comes in the poll before, same segment
        await writer.close()
        assert await rows(store, "SELECT count(*), count(DISTINCT record_key) FROM messages") == [
            (6, 6)
        ]
        assert await rows(store, "SELECT new FROM fetch_summary ORDER BY started_at") == [
            (3,),
            (2,),
            (1,),
        ]

    with_store(tmp_path, body)


def test_awkward_values_are_stored(tmp_path: Path) -> None:
    payload = {"big": 2**70, "nan": math.nan, "lone": "x\ud800y", "thai": "ภาษาไทย"}

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        p = poll(0, 1)
        p.new[0].payload = payload
        writer.submit(p)
        await writer.close()
        assert await rows(
            store,
            "SELECT payload->>'big', payload->'nan', payload->>'lone', payload->>'thai' "
            "FROM messages",
        ) == [(str(2**70), "null", "x?y", "ภาษาไทย")]

    with_store(tmp_path, body)


def test_a_segment_duckdb_refuses_is_retried_then_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "journal"
    bad = journal_in(directory)
    bad.append(journal.encode(poll(0, 1), 1))
    bad.append(b'{"n": 2, "source": [not json\n')  # no writer of ours does this: a bad disk
    close(bad)
    bad.append(journal.encode(poll(5, 1), 3))
    close(bad)

    async def body(store: Store) -> None:
        writer = PollWriter(store, directory)
        await writer.start()  # first attempt fails; the later segment must wait for it
        assert await rows(store, "SELECT count(*) FROM messages") == [(0,)]
        assert writer.snapshot()["waiting_polls"] == 3
        assert len(journal.existing(directory)) == 2
        for _ in range(APPLY_ATTEMPTS - 1):
            await writer.sync()
        assert await rows(store, "SELECT record_key FROM messages") == [("[5]",)]
        assert journal.existing(directory) == []
        assert [p.name for p in (directory / "failed").iterdir()] == [f"{1:016d}.jsonl"]
        assert writer.snapshot()["set_aside"] == 1
        await writer.close()

    with_store(tmp_path, body)
    out = capsys.readouterr().out
    assert out.count("journal_apply_failed") == APPLY_ATTEMPTS - 1
    assert out.count("journal_segment_set_aside") == 1


def test_the_journal_reaches_the_disk_within_sync_every(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:  # a real fdatasync, counted: no other way to see one
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    clock = Clock()

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal", sync_every=1.0, clock=clock)
        await writer.start()
        writer.submit(poll(0, 1))
        await asyncio.sleep(0.05)
        assert synced == []  # within the second: written, not yet synced
        clock.now += 1.0
        writer.submit(poll(1, 1))

        async def any_synced() -> bool:
            return bool(synced)

        await until(any_synced)
        assert len(synced) == 1
        await writer.close()  # the rest is synced as the segment closes
        assert len(synced) == 2

    with_store(tmp_path, body)


def test_a_segment_is_applied_once_even_when_asked_twice(tmp_path: Path) -> None:
    j = journal_in(tmp_path / "journal")
    j.append(journal.encode(poll(0, 2), 1))
    segment = close(j)

    async def body(store: Store) -> None:
        first = await store.call(lambda c: apply_segment(c, segment.path, segment.number))
        again = await store.call(lambda c: apply_segment(c, segment.path, segment.number))
        assert (first, again) == (1, 0)
        assert await rows(store, "SELECT count(*) FROM fetch_summary") == [(1,)]

    with_store(tmp_path, body)


def test_a_segment_that_cannot_be_deleted_is_still_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:  # as a read-only file system
        if self.suffix == journal.SUFFIX:
            raise PermissionError(13, "Permission denied", str(self))
        real(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        writer.submit(poll(0, 2))
        await writer.sync()
        writer.submit(poll(2, 1))
        await writer.sync()
        await writer.close()
        assert await rows(store, "SELECT count(*) FROM fetch_summary") == [(2,)]
        assert await rows(store, "SELECT count(*) FROM messages") == [(3,)]

    with_store(tmp_path, body)
    assert capsys.readouterr().out.count("journal_unlink_failed") == 2


def test_a_full_disk_is_waited_out_not_taken_for_a_bad_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def refuse_five_times(conn: duckdb.DuckDBPyConnection, path: Path, number: int) -> int:
        nonlocal calls
        calls += 1
        if calls <= 5:  # no real disk fills up in a test: DuckDB's error for one
            raise duckdb.IOException("Could not write file: No space left on device")
        return apply_segment(conn, path, number)

    monkeypatch.setattr(pollwriter, "apply_segment", refuse_five_times)

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        writer.submit(poll(0, 2))
        for _ in range(5):
            await writer.sync()
            assert await rows(store, "SELECT count(*) FROM messages") == [(0,)]
        await writer.sync()
        assert await rows(store, "SELECT count(*) FROM messages") == [(2,)]
        assert writer.snapshot()["set_aside"] == 0
        await writer.close()

    with_store(tmp_path, body)


def test_sync_after_close_leaves_what_close_could_not_apply_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(conn: duckdb.DuckDBPyConnection, path: Path, number: int) -> int:
        raise duckdb.IOException("Could not write file: No space left on device")

    async def body(store: Store) -> None:
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        writer.submit(poll(0, 2))
        monkeypatch.setattr(pollwriter, "apply_segment", refuse)
        await writer.close()
        monkeypatch.undo()  # the disk has room again
        await writer.sync()  # the Parquet copy at shutdown asks again: no error
        assert len(journal.existing(writer.directory)) == 1
        again = PollWriter(store, tmp_path / "journal")
        await again.start()
        assert await rows(store, "SELECT count(*) FROM messages") == [(2,)]
        await again.close()

    with_store(tmp_path, body)
