"""Why a series misses data (headlined/coverage/causes.py) and how one series' coverage is
summed up (headlined/coverage/summary.py): ended series, failed and unexported chunks,
since/until clipping."""

from __future__ import annotations

from headlined.coverage import causes, gaps
from headlined.coverage.gaps import Gap
from headlined.coverage.model import ChunkState, Missing, SeriesCoverage
from headlined.coverage.summary import Context, Tracked, summarize

H = 3600 * 10**9
DAY = 24 * H


def chunk(start_day: int, end_day: int, state: str) -> ChunkState:
    return ChunkState("db", "autogen", start_day * DAY, end_day * DAY, state)


PLAN = [
    chunk(0, 7, "done"),
    chunk(7, 14, "failed"),
    chunk(14, 21, "damaged"),
    # days 21..28: no chunk (InfluxDB had no data there when planned)
    chunk(28, 35, "pending"),
    chunk(35, 42, "running"),
    chunk(42, 49, "open"),
]


def test_each_piece_of_a_missing_interval_takes_the_cause_of_its_chunk() -> None:
    assert causes.explain(-DAY, 60 * DAY, PLAN) == [
        Missing(-DAY, 0, "unknown"),
        Missing(0, 7 * DAY, "not in InfluxDB"),
        Missing(7 * DAY, 14 * DAY, "failed"),
        Missing(14 * DAY, 21 * DAY, "damaged"),
        Missing(21 * DAY, 28 * DAY, "not in InfluxDB"),
        Missing(28 * DAY, 42 * DAY, "not exported yet"),  # pending and running, merged
        Missing(42 * DAY, 49 * DAY, "not in InfluxDB"),
        Missing(49 * DAY, 60 * DAY, "unknown"),
    ]
    assert causes.explain(3 * DAY, 5 * DAY, PLAN) == [Missing(3 * DAY, 5 * DAY, "not in InfluxDB")]
    assert causes.explain(3 * DAY, 5 * DAY, []) == [Missing(3 * DAY, 5 * DAY, "unknown")]


def test_after_the_last_point_only_lost_chunks_make_a_trailing_hole() -> None:
    # Ends in the done chunk, well before its end: the series ended.
    assert causes.trailing(2 * DAY, H, PLAN, gaps.K) == []
    # Ends at the end of the done chunk: the failed and damaged chunks after it are lost.
    assert causes.trailing(7 * DAY - H, H, PLAN, gaps.K) == [
        Missing(7 * DAY, 14 * DAY, "failed"),
        Missing(14 * DAY, 21 * DAY, "damaged"),
    ]
    # Ends in the last done chunk before pending ones, two cadences from its end: still lost.
    tail = [chunk(0, 7, "done"), chunk(7, 14, "pending")]
    assert causes.trailing(7 * DAY - 3 * H, H, tail, gaps.K) == [
        Missing(7 * DAY, 14 * DAY, "not exported yet")
    ]
    assert causes.leading(14 * DAY, H, [chunk(0, 7, "failed"), chunk(7, 14, "pending")], 3) == [
        Missing(0, 7 * DAY, "failed"),
        Missing(7 * DAY, 14 * DAY, "not exported yet"),
    ]
    assert causes.leading(3 * DAY, H, PLAN, gaps.K) == []


def hourly(first: int, last: int, found: tuple[Gap, ...] = ()) -> Tracked:
    count = (last - first) // H + 1
    return Tracked(count, first, last, count, first, last, float(H), found)


def context(plan: list[ChunkState], data_end: int, **more: int) -> Context:
    return Context(chunks=plan, data_end_ns=data_end, now_ns=100 * DAY, **more)


def summary(tracked: Tracked, ctx: Context) -> SeriesCoverage | None:
    return summarize(
        database="db",
        retention_policy="autogen",
        measurement="m",
        tags={"id": "a"},
        tracked=tracked,
        context=ctx,
    )


def test_a_hole_over_a_failed_chunk_says_failed_and_lowers_coverage() -> None:
    plan = [chunk(0, 7, "done"), chunk(7, 14, "failed"), chunk(14, 21, "done")]
    hole = Gap(7 * DAY - H, 14 * DAY, H)
    found = summary(hourly(0, 21 * DAY - H, (hole,)), context(plan, 21 * DAY - H))
    assert found is not None
    assert found.missing == (Missing(7 * DAY, 14 * DAY, "failed"),)
    assert found.coverage == 1 - 7 / 21
    assert found.ended is False


def test_a_series_that_stopped_is_ended_not_missing() -> None:
    plan = [chunk(0, 7, "done"), chunk(7, 14, "done")]
    found = summary(hourly(0, 5 * DAY), context(plan, 14 * DAY - H))
    assert found is not None
    assert (found.missing, found.coverage, found.ended) == ((), 1.0, True)
    running = summary(hourly(0, 14 * DAY - H), context(plan, 14 * DAY - H))
    assert running is not None
    assert running.ended is False


def test_a_series_followed_by_pending_chunks_has_a_trailing_hole_not_an_end() -> None:
    plan = [chunk(0, 7, "done"), chunk(7, 14, "pending")]
    found = summary(hourly(0, 7 * DAY - H), context(plan, 7 * DAY - H))
    assert found is not None
    assert found.missing == (Missing(7 * DAY, 14 * DAY, "not exported yet"),)
    assert found.ended is False
    assert found.coverage == 0.5


def test_since_and_until_clip_the_span_and_the_holes() -> None:
    plan = [chunk(0, 30, "done")]
    hole = Gap(10 * DAY - H, 20 * DAY, H)
    tracked = Tracked(500, 0, 30 * DAY - H, 0, 0, 0, float(H), (hole,))
    ctx = context(plan, 30 * DAY - H, since_ns=5 * DAY, until_ns=15 * DAY)
    found = summary(
        Tracked(
            (30 * DAY - 10 * DAY) // H + 1,
            0,
            30 * DAY - H,
            5 * DAY // H,  # the points of days 5..10
            5 * DAY,
            10 * DAY - H,
            float(H),
            (hole,),
        ),
        ctx,
    )
    assert found is not None
    assert found.missing == (Missing(10 * DAY, 15 * DAY, "not in InfluxDB"),)
    assert found.coverage == 0.5
    assert (found.first_ns, found.last_ns) == (5 * DAY, 10 * DAY - H)
    # Wholly inside the hole: no point there, but the hole is reported.
    inside = summary(tracked, context(plan, 30 * DAY - H, since_ns=12 * DAY, until_ns=13 * DAY))
    assert inside is not None
    assert inside.points == 0
    assert inside.coverage == 0.0
    # Outside the series and its holes: nothing.
    before = Tracked(25, 0, DAY, 0, 0, 0, float(H), ())
    assert summary(before, context(plan, 30 * DAY, since_ns=40 * DAY)) is None
