"""Which chunks changed: signatures from file facts, and what a plan does with them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from headlined.influx import changes
from headlined.influx.chunkplan import HOUR_NS, Chunk, to_ns
from headlined.influx.datadir import Found, TsmFile, Unreadable, WalScan
from headlined.influx.schema import MeasurementTypes
from headlined.influx.tables import key_of, load_chunks, save_plan, set_state
from headlined.store import open_database

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)
WEEK = Chunk("db", "autogen", MONDAY, MONDAY + timedelta(days=7))
NEXT = Chunk("db", "autogen", WEEK.end, WEEK.end + timedelta(days=7))


def tsm(name: str, first: datetime, last: datetime, **facts: object) -> TsmFile:
    base = TsmFile(f"/data/db/autogen/1/{name}", to_ns(first), to_ns(last), size=100, mtime_ns=5)
    return dataclasses.replace(base, **facts)  # type: ignore[arg-type]  # test facts by name


def found(*files: TsmFile) -> Found:
    return Found("db", "autogen", files, (), 0)


def wal(hours: dict[datetime, tuple[int, str]]) -> WalScan:
    keyed = {to_ns(h) // HOUR_NS: v for h, v in hours.items()}
    lo = min(keyed) * HOUR_NS
    return WalScan(lo, max(keyed) * HOUR_NS, keyed, {})


ONE = tsm("000000001-000000001.tsm", MONDAY, MONDAY + timedelta(days=6))


def test_no_input_is_nothing() -> None:
    assert changes.signature(WEEK, None, [], None) == changes.NOTHING
    assert changes.signature(NEXT, found(ONE), [], None) == changes.NOTHING


def test_same_files_same_signature_whatever_the_directory() -> None:
    moved = dataclasses.replace(ONE, path="/elsewhere/1/000000001-000000001.tsm")
    assert changes.signature(WEEK, found(ONE), [], None) == changes.signature(
        WEEK, found(moved), [], None
    )


@pytest.mark.parametrize(
    "change",
    [
        {"size": 101},
        {"mtime_ns": 6},
        {"tombstone": (40, 7)},
        {"path": "/data/db/autogen/1/000000002-000000002.tsm"},
    ],
)
def test_a_changed_file_changes_the_chunks_it_reaches_only(change: dict[str, object]) -> None:
    other = tsm("000000003-000000001.tsm", NEXT.start, NEXT.start + timedelta(hours=5))
    before = found(ONE, other)
    after = found(dataclasses.replace(ONE, **change), other)  # type: ignore[arg-type]
    assert changes.signature(WEEK, before, [], None) != changes.signature(WEEK, after, [], None)
    assert changes.signature(NEXT, before, [], None) == changes.signature(NEXT, after, [], None)


def test_wal_lines_count_in_the_hours_of_the_chunk_only() -> None:
    inside, outside = MONDAY + timedelta(hours=3), NEXT.start + timedelta(hours=1)
    before = wal({inside: (10, "aa"), outside: (5, "bb")})
    grown_inside = wal({inside: (11, "ab"), outside: (5, "bb")})
    grown_outside = wal({inside: (10, "aa"), outside: (6, "bc")})
    sig = changes.signature(WEEK, None, [], before)
    assert sig != changes.NOTHING
    assert changes.signature(WEEK, None, [], grown_inside) != sig
    assert changes.signature(WEEK, None, [], grown_outside) == sig


def test_an_unreadable_file_counts_where_it_may_hold_data() -> None:
    bad = Unreadable("/data/db/autogen/1/x.tsm", "bad magic", to_ns(MONDAY), to_ns(MONDAY) + 1)
    assert changes.signature(WEEK, None, [bad], None) != changes.NOTHING
    assert changes.signature(NEXT, None, [bad], None) == changes.NOTHING


def test_still_held_by_a_shard_group_of_meta() -> None:
    shards = {("db", "autogen", 1): (to_ns(WEEK.start), to_ns(WEEK.end))}
    assert changes.still_held(WEEK, shards)
    assert not changes.still_held(NEXT, shards)
    assert not changes.still_held(dataclasses.replace(WEEK, database="other"), shards)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_database(tmp_path / "state.duckdb")
    yield connection
    connection.close()


def states(conn: duckdb.DuckDBPyConnection) -> dict[datetime, str]:
    return {c.start: state for c, state, _ in load_chunks(conn)}


def test_a_plan_sends_changed_chunks_back_and_keeps_the_rest(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    now = datetime(2024, 2, 1, tzinfo=UTC)
    save_plan(conn, [WEEK, NEXT], {}, kept=set(), types={}, now=now)
    for chunk, sig in ((WEEK, "a"), (NEXT, "b")):
        set_state(conn, chunk, "done", lines=1, rows=1, files=1, signature=sig)
    same = {key_of(WEEK): "a", key_of(NEXT): "b"}
    assert save_plan(conn, [], same, kept=set(), types={}, now=now).changed == []
    assert set(states(conn).values()) == {"done"}
    moved = {key_of(WEEK): "a", key_of(NEXT): "c"}
    reconciled = save_plan(conn, [], moved, kept=set(), types={}, now=now)
    assert reconciled.changed == [NEXT]
    assert states(conn) == {WEEK.start: "done", NEXT.start: "pending"}


def test_a_dropped_time_keeps_its_chunk(conn: duckdb.DuckDBPyConnection) -> None:
    now = datetime(2024, 2, 1, tzinfo=UTC)
    save_plan(conn, [WEEK], {}, kept=set(), types={}, now=now)
    set_state(conn, WEEK, "done", signature="a")
    gone = {key_of(WEEK): changes.NOTHING}
    assert save_plan(conn, [], gone, kept={key_of(WEEK)}, types={}, now=now).changed == []
    assert states(conn) == {WEEK.start: "done"}


def test_an_open_chunk_closes_when_its_time_has_passed_unchanged(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    save_plan(conn, [WEEK], {}, kept=set(), types={}, now=MONDAY)
    set_state(conn, WEEK, "open", signature="a")
    during = save_plan(conn, [], {key_of(WEEK): "a"}, kept=set(), types={}, now=MONDAY)
    assert during.closed == 0
    after = save_plan(conn, [], {key_of(WEEK): "a"}, kept=set(), types={}, now=WEEK.end)
    assert after.closed == 1
    assert states(conn) == {WEEK.start: "done"}


def test_a_changed_field_type_sends_its_whole_database_back(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    now = datetime(2024, 2, 1, tzinfo=UTC)
    floats = {"db": {"m": MeasurementTypes({"site"}, {"level": {"float"}})}}
    first = save_plan(conn, [WEEK, NEXT], {}, kept=set(), types=floats, now=now)
    assert first.conflicts == []
    for chunk in (WEEK, NEXT):
        set_state(conn, chunk, "done", signature="a")
    sigs = {key_of(WEEK): "a", key_of(NEXT): "a"}
    assert save_plan(conn, [], sigs, kept=set(), types=floats, now=now).retyped == []
    mixed = {"db": {"m": MeasurementTypes({"site"}, {"level": {"float", "string"}})}}
    reconciled = save_plan(conn, [], sigs, kept=set(), types=mixed, now=now)
    assert sorted(reconciled.retyped) == [WEEK, NEXT]
    assert [(c.field, c.resolved) for _, c in reconciled.conflicts] == [("level", "string")]
    assert set(states(conn).values()) == {"pending"}
    rows = conn.execute("SELECT field, kinds, type, may_round FROM export_fields").fetchall()
    assert rows == [("level", ["float", "string"], "string", False)]
