"""Chunk planning: by volume, on shard boundaries, incremental, clipped."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from headlined.influx.chunkplan import (
    GO_ZERO_NS,
    HOUR_NS,
    NS,
    UNCUT_FACTOR,
    Budget,
    Chunk,
    Extent,
    RpData,
    Straddle,
    from_ns,
    outside,
    plan,
    rfc3339,
    to_ns,
)

DAY = 86400.0
T = datetime(2024, 1, 3, 5, 0, tzinfo=UTC)


def ext(first: datetime, last: datetime, db: str = "db", rp: str = "autogen") -> Extent:
    return Extent(db, rp, to_ns(first), to_ns(last))


WEEK_NS = 7 * 24 * HOUR_NS
NOW = to_ns(datetime(2026, 12, 2, 12, tzinfo=UTC))


def hour_of(when: datetime) -> int:
    return to_ns(when) // HOUR_NS


def weekly_shards(first: datetime, weeks: int) -> tuple[tuple[int, int], ...]:
    """Shard groups aligned as InfluxDB aligns 7-day ones (from Go's zero time, a Monday)."""
    lo = (to_ns(first) + GO_ZERO_NS) // WEEK_NS * WEEK_NS - GO_ZERO_NS
    return tuple((lo + i * WEEK_NS, lo + (i + 1) * WEEK_NS) for i in range(weeks))


def hourly(first: datetime, hours: int, points: int = 72) -> dict[int, int]:
    start = hour_of(first)
    return {start + i: points for i in range(hours)}


def rp_data(
    hours: dict[int, int],
    shards: tuple[tuple[int, int], ...] = (),
    db: str = "db",
    rp: str = "autogen",
) -> RpData:
    return RpData(db, rp, shards, hours)


def spans(chunks: list[Chunk]) -> list[tuple[int, int]]:
    return [(to_ns(c.start), to_ns(c.end)) for c in chunks]


def test_sparse_years_become_few_chunks_on_shard_boundaries() -> None:
    first = datetime(2013, 3, 1, tzinfo=UTC)
    shards = weekly_shards(first, 4 * 53)
    hours = hourly(first, 4 * 365 * 24)  # 12 series x 6 fields, 1000 points per block at most
    chunks = plan([rp_data(hours, shards)], {}, Budget(1_500_000), now_ns=NOW)
    assert len(chunks) == 2  # 0.63M estimated points a year
    edges = {lo for lo, _ in shards} | {hi for _, hi in shards}
    assert all(lo in edges and hi in edges for lo, hi in spans(chunks))
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))


def test_a_dense_shard_is_cut_at_hours_within_the_budget() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 1)
    hours = hourly(first, 48, points=1_000_000)
    chunks = plan([rp_data(hours, shards)], {}, Budget(5_000_000), now_ns=NOW)
    assert len(chunks) == 10
    assert all((hi - lo) % HOUR_NS == 0 for lo, hi in spans(chunks)[:-1])
    assert spans(chunks)[0][0] == shards[0][0]
    assert spans(chunks)[-1][1] == shards[0][1]
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))


def test_a_shard_whose_blocks_span_it_is_not_cut_so_nothing_is_decoded_twice() -> None:
    # 2000 series x 5 fields of a point a minute for 17 hours: each key's one block reaches
    # from the first hour to the last, so influx_inspect would decode all of it for any cut.
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 1)
    hours = hourly(first, 17, points=600_000)
    edges = {hour_of(first): (10_000_000, 0), hour_of(first) + 16: (0, 10_000_000)}
    data = RpData("db", "autogen", shards, hours, edges)
    chunks = plan([data], {}, Budget(5_000_000), now_ns=NOW)
    assert spans(chunks) == [shards[0]]


def test_a_shard_of_short_blocks_is_still_cut_within_the_budget() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 1)
    hours = hourly(first, 48, points=1_000_000)
    # Blocks of two hours, one beginning every hour: each cut lies inside one hour's worth
    # of blocks, and nine cuts decode 9M of the 48M points twice, a share worth the memory.
    start = hour_of(first)
    edges = {h: (1_000_000 * (h < start + 47), 1_000_000 * (h > start)) for h in hours}
    chunks = plan(
        [RpData("db", "autogen", shards, hours, edges)], {}, Budget(5_000_000), now_ns=NOW
    )
    assert len(chunks) == 10
    assert plan([rp_data(hours, shards)], {}, Budget(5_000_000), now_ns=NOW) == chunks


def test_a_shard_far_over_the_budget_is_cut_into_uncut_factor_parts() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 1)
    hours = hourly(first, 48, points=1_000_000)
    edges = {hour_of(first): (48_000_000, 0), hour_of(first) + 47: (0, 48_000_000)}
    data = RpData("db", "autogen", shards, hours, edges)
    chunks = plan([data], {}, Budget(5_000_000), now_ns=NOW)
    lengths = [(hi - lo) // HOUR_NS for lo, hi in spans(chunks)]
    assert lengths[:2] == [UNCUT_FACTOR * 5, UNCUT_FACTOR * 5]  # hours of 1M points each
    assert spans(chunks)[-1][1] == shards[0][1]


def test_straddle_counts_the_blocks_a_boundary_lies_inside() -> None:
    # Blocks (first hour, last hour, points): 10..12, 11..11, 12..15.
    edges = {10: (100, 0), 11: (10, 10), 12: (1000, 100), 15: (0, 1000)}
    straddle = Straddle(edges)
    assert [straddle.at(h) for h in (9, 10, 11, 12, 13, 15, 16)] == [0, 0, 100, 100, 1000, 1000, 0]


def test_chunks_planned_by_the_old_cutting_rule_stay_as_they_are() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 2)
    hours = hourly(first, 17, points=600_000) | hourly(first + timedelta(days=7), 17, 600_000)
    edges = {
        hour_of(first): (10_000_000, 0),
        hour_of(first) + 16: (0, 10_000_000),
        hour_of(first) + 7 * 24: (10_000_000, 0),
        hour_of(first) + 7 * 24 + 16: (0, 10_000_000),
    }
    old = plan([rp_data(hours, shards)], {}, Budget(5_000_000), now_ns=NOW)
    first_week = [span for span in spans(old) if span[1] <= shards[0][1]]
    assert len(first_week) == 3  # planned before edges were known
    data = RpData("db", "autogen", shards, hours, edges)
    new = plan([data], {("db", "autogen"): first_week}, Budget(5_000_000), now_ns=NOW)
    assert spans(new) == [shards[1]]


def test_one_hour_over_the_budget_is_a_chunk_of_its_own() -> None:
    first = datetime(2024, 1, 1, 5, tzinfo=UTC)
    chunks = plan(
        [rp_data({hour_of(first): 9_000_000, hour_of(first) + 1: 10})],
        {},
        Budget(1_000_000),
        now_ns=NOW,
    )
    assert len(chunks) == 2
    assert to_ns(chunks[1].start) == to_ns(first) + HOUR_NS


def test_the_open_shard_is_cut_by_day_and_empty_days_are_not_planned() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)  # a Wednesday
    shards = weekly_shards(now, 1)
    hours = hourly(datetime(2026, 11, 30, tzinfo=UTC), 12) | hourly(now, 1)
    chunks = plan([rp_data(hours, shards)], {}, Budget(5_000_000), now_ns=to_ns(now))
    assert [c.start.day for c in chunks] == [30, 2]
    assert all(c.end - c.start == timedelta(days=1) for c in chunks)


def test_planned_chunks_are_kept_and_only_new_data_is_planned() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 10)
    old = plan([rp_data(hourly(first, 24 * 21), shards)], {}, Budget(10**9), now_ns=NOW)
    existing = {("db", "autogen"): spans(old)}
    grown = hourly(first, 24 * 70)
    new = plan([rp_data(grown, shards)], existing, Budget(10**9), now_ns=NOW)
    assert spans(new) == [(to_ns(first) + 21 * 24 * HOUR_NS, shards[-1][1])]
    assert (
        plan(
            [rp_data(grown, shards)],
            {("db", "autogen"): spans(old + new)},
            Budget(10**9),
            now_ns=NOW,
        )
        == []
    )


def test_old_seven_day_checkpoints_stay_and_the_rest_is_filled_around_them() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 3)
    existing = {("db", "autogen"): [shards[1]]}
    chunks = plan([rp_data(hourly(first, 24 * 21), shards)], existing, Budget(10**9), now_ns=NOW)
    assert spans(chunks) == [shards[0], shards[2]]  # not merged across the planned week


def test_longest_span_cuts_and_skips_long_empty_stretches() -> None:
    first = datetime(2024, 1, 1, tzinfo=UTC)
    shards = weekly_shards(first, 1)
    hours = hourly(first, 2) | hourly(first + timedelta(days=5), 2)
    chunks = plan([rp_data(hours, shards)], {}, Budget(10**9, 24 * HOUR_NS), now_ns=NOW)
    assert all(c.end - c.start <= timedelta(days=1) for c in chunks)
    assert len(chunks) == 2
    covered = [h for h in hours if any(lo <= h * HOUR_NS < hi for lo, hi in spans(chunks))]
    assert sorted(covered) == sorted(hours)


def test_data_outside_known_shards_falls_on_the_seven_day_grid() -> None:
    first = datetime(2024, 1, 3, tzinfo=UTC)  # a Wednesday
    chunks = plan([rp_data(hourly(first, 2))], {}, Budget(10**9), now_ns=NOW)
    assert len(chunks) == 1
    assert chunks[0].start == datetime(2024, 1, 1, tzinfo=UTC)
    assert chunks[0].end - chunks[0].start == timedelta(days=7)


def test_configured_range_clips_exactly() -> None:
    start = datetime(2024, 1, 5, 12, tzinfo=UTC)
    end = datetime(2024, 1, 8, tzinfo=UTC)
    first = datetime(2024, 1, 1, tzinfo=UTC)
    chunks = plan(
        [rp_data(hourly(first, 24 * 30), weekly_shards(first, 5))],
        {},
        Budget(10**9),
        now_ns=NOW,
        start=start,
        end=end,
    )
    assert chunks[0].start == start
    assert chunks[-1].end == end


def test_range_without_data_plans_nothing() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    first = datetime(2024, 1, 1, tzinfo=UTC)
    assert plan([rp_data(hourly(first, 5))], {}, Budget(10**9), now_ns=NOW, start=start) == []


def test_point_on_a_boundary_is_in_exactly_one_chunk() -> None:
    boundary = datetime(2024, 1, 4, tzinfo=UTC)
    chunks = plan(
        [rp_data({hour_of(boundary): 1}, weekly_shards(boundary, 1))],
        {},
        Budget(10**9),
        now_ns=NOW,
    )
    assert len(chunks) == 1
    start, end = chunks[0].inspect_range()
    assert start == "2024-01-01T00:00:00.000000000Z"
    assert end == "2024-01-07T23:59:59.999999999Z"  # influx_inspect includes its -end


def test_databases_and_policies_are_planned_separately() -> None:
    hours = hourly(T, 1)
    chunks = plan(
        [rp_data(hours, db="b", rp="rp2"), rp_data(hours, db="a"), rp_data(hours, db="b")],
        {},
        Budget(10**9),
        now_ns=NOW,
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
