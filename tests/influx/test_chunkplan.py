"""Chunk planning: aligned, contiguous, clipped, deterministic."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from headlined.influx.chunkplan import NS, Chunk, Extent, from_ns, outside, plan, rfc3339, to_ns

DAY = 86400.0
T = datetime(2024, 1, 3, 5, 0, tzinfo=UTC)


def ext(first: datetime, last: datetime, db: str = "db", rp: str = "autogen") -> Extent:
    return Extent(db, rp, to_ns(first), to_ns(last))


def test_chunks_cover_the_data_contiguously_and_align_like_influxdb_shards() -> None:
    chunks = plan([ext(T, T + timedelta(days=20))], 7 * DAY, None, None)
    assert chunks[0].start <= T
    assert chunks[-1].end > T + timedelta(days=20)
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start
    assert all(c.start.weekday() == 0 and c.start.hour == 0 for c in chunks)  # Mondays


def test_same_data_same_plan() -> None:
    one = plan([ext(T, T + timedelta(days=9))], DAY, None, None)
    two = plan([ext(T + timedelta(hours=1), T + timedelta(days=9))], DAY, None, None)
    assert one == two
    assert [c.stem for c in one] == [c.stem for c in two]


def test_configured_range_clips_exactly() -> None:
    start = datetime(2024, 1, 5, 12, tzinfo=UTC)
    end = datetime(2024, 1, 8, tzinfo=UTC)
    chunks = plan([ext(T, T + timedelta(days=30))], DAY, start, end)
    assert chunks[0].start == start
    assert chunks[-1].end == end
    assert len(chunks) == 3


def test_range_without_data_plans_nothing() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert plan([ext(T, T + timedelta(days=2))], DAY, start, None) == []


def test_point_on_a_boundary_is_in_exactly_one_chunk() -> None:
    boundary = datetime(2024, 1, 4, tzinfo=UTC)
    chunks = plan([ext(boundary, boundary)], DAY, None, None)
    assert len(chunks) == 1
    assert chunks[0].start == boundary
    start, end = chunks[0].inspect_range()
    assert start == "2024-01-04T00:00:00.000000000Z"
    assert end == "2024-01-04T23:59:59.999999999Z"  # influx_inspect includes its -end


def test_databases_and_policies_are_planned_separately() -> None:
    chunks = plan(
        [ext(T, T, "b", "rp2"), ext(T, T, "a", "autogen"), ext(T, T, "b", "autogen")],
        DAY,
        None,
        None,
    )
    assert [(c.database, c.retention_policy) for c in chunks] == [
        ("a", "autogen"),
        ("b", "autogen"),
        ("b", "rp2"),
    ]


@pytest.mark.parametrize("ns", [0, 1, -1, 1_704_067_200_123_456_789, -86_400 * NS])
def test_rfc3339_is_exact(ns: int) -> None:
    text = rfc3339(ns)
    whole = datetime.fromisoformat(text[:19] + "+00:00")
    assert to_ns(whole) + int(text[20:29]) == ns


def test_ns_round_trip_at_microsecond_precision() -> None:
    assert to_ns(from_ns(1_704_067_200_123_456_000)) == 1_704_067_200_123_456_000


def test_stems_are_sortable_and_path_safe() -> None:
    chunk = Chunk("db", "rp", T, T + timedelta(days=1))
    assert chunk.stem == "20240103T050000Z_20240104T050000Z"


def test_outside_names_the_data_that_start_and_end_leave_out() -> None:
    old = ext(T, T + timedelta(days=3), db="old")
    new = ext(T + timedelta(days=30), T + timedelta(days=40), db="new")
    both = [old, new]
    assert outside(both, None, None) == []
    assert outside(both, T + timedelta(days=10), None) == [old]
    assert outside(both, None, T + timedelta(days=30)) == [new]  # end is exclusive
    assert outside(both, T + timedelta(days=3), T + timedelta(days=31)) == []
    assert (
        plan(outside(both, T + timedelta(days=50), None), DAY, T + timedelta(days=50), None) == []
    )
