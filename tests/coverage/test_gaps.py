"""The gap algorithm (headlined/coverage/gaps.py) and its C twin (headlined/coverage/_runs.c):
the cases a user sees, and that the C extension finds exactly what the reference finds however
the points arrive (in batches, series interleaved in runs, across several feeds)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headlined.coverage import gaps
from headlined.coverage._runs import Tracker
from headlined.coverage.gaps import Gap, find_gaps

MIN = 60 * 10**9
T0 = 1_700_000_000 * 10**9


def every(step: int, n: int, start: int = T0) -> list[int]:
    return [start + i * step for i in range(n)]


def stream(times: Sequence[int], *, batch: int = 1000) -> pa.RecordBatchReader:
    """``times`` as DuckDB hands them over: an Arrow stream of one int64 column."""
    array = pa.array(times, pa.int64())
    batches = [
        pa.record_batch([array.slice(i, batch)], names=["t"]) for i in range(0, len(times), batch)
    ]
    return pa.RecordBatchReader.from_batches(pa.schema([("t", pa.int64())]), batches)


def tracked(series: Sequence[Sequence[int]], **bounds: int) -> list[tuple[object, ...]]:
    tracker = Tracker(gaps.K, **bounds)
    tracker.feed(
        stream([t for times in series for t in times]), [(i, len(s)) for i, s in enumerate(series)]
    )
    return [tuple(row) for row in tracker.results()]


def test_a_hole_is_one_gap_from_one_cadence_after_the_last_point_to_the_next() -> None:
    times = every(MIN, 100) + every(MIN, 100, start=T0 + 200 * MIN)
    found = find_gaps(times)
    assert found == [Gap(T0 + 99 * MIN, T0 + 200 * MIN, MIN)]
    assert found[0].missing == (T0 + 100 * MIN, T0 + 200 * MIN)


def test_a_stray_point_inside_a_hole_does_not_hide_it() -> None:
    stray = T0 + 150 * MIN
    times = [*every(MIN, 100), stray, *every(MIN, 100, start=T0 + 200 * MIN)]
    assert [g.missing for g in find_gaps(times)] == [
        (T0 + 100 * MIN, stray),
        (stray + MIN, T0 + 200 * MIN),
    ]


def test_a_change_of_pace_is_not_a_gap() -> None:
    times = every(MIN, 100) + every(5 * MIN, 100, start=T0 + 100 * MIN)
    assert find_gaps(times) == []
    hourly = every(MIN, 100) + every(60 * MIN, 50, start=T0 + 160 * MIN)
    assert find_gaps(hourly) == []


def test_jitter_is_not_a_gap_but_a_hole_among_jitter_is() -> None:
    rnd = random.Random(7)  # noqa: S311 - reproducible jitter, not security
    times, t = [], T0
    for _ in range(2000):
        times.append(t)
        t += MIN + rnd.randint(-20, 20) * 10**9
    assert find_gaps(times) == []
    holed = [t for t in times if not times[500] < t < times[520]]
    [gap] = find_gaps(holed)
    assert (gap.prev_ns, gap.next_ns) == (times[500], times[520])
    assert 40 * 10**9 <= gap.cadence_ns <= 80 * 10**9


def test_repeated_times_count_once_and_disorder_is_refused() -> None:
    assert gaps.distinct([1, 2, 2, 3]) == [1, 2, 3]
    with pytest.raises(ValueError, match="not in order"):
        gaps.distinct([1, 3, 2])


def test_the_typical_cadence_is_the_median_within_one_percent() -> None:
    diffs = [MIN] * 40 + [5 * MIN] * 61 + [7 * MIN + 13]
    typical = gaps.typical_cadence(diffs)
    assert abs(typical - 5 * MIN) / (5 * MIN) < 0.01
    for diff in [1, 63, 64, 65, 1000, 10**9, 3 * 10**9 + 7, 2**62 + 12345]:
        middle = gaps.bin_middle(gaps.cadence_bin(diff))
        assert abs(middle - diff) / diff < 0.008


def test_the_tracker_counts_points_in_range_and_judges_each_series_apart() -> None:
    a = every(MIN, 100) + every(MIN, 100, start=T0 + 200 * MIN)
    b = every(5 * MIN, 50)
    [ra, rb] = tracked([a, b], lo=T0 + 10 * MIN, hi=T0 + 249 * MIN)
    assert ra[:6] == (200, a[0], a[-1], 140, T0 + 10 * MIN, T0 + 249 * MIN)
    assert ra[7] == [(T0 + 99 * MIN, T0 + 200 * MIN, MIN)]
    assert rb[:6] == (50, b[0], b[-1], 48, T0 + 10 * MIN, b[-1])
    assert rb[6] == pytest.approx(5 * MIN, rel=0.01)
    assert rb[7] == []


def test_the_tracker_carries_a_series_across_feeds() -> None:
    tracker = Tracker(gaps.K)
    first, second = every(MIN, 6), every(MIN, 6, start=T0 + 60 * MIN)
    other = every(MIN, 3)
    tracker.feed(stream([*first, *other]), [(0, 6), (1, 3)])
    tracker.feed(stream(second), [(0, 6)])
    [row, _] = tracker.results()
    assert row[0] == 12
    assert row[7] == [(T0 + 5 * MIN, T0 + 60 * MIN, MIN)]
    with pytest.raises(RuntimeError, match="after results"):
        tracker.feed(stream(second), [(0, 6)])


def test_the_tracker_refuses_what_it_cannot_read() -> None:
    tracker = Tracker(gaps.K)
    with pytest.raises(ValueError, match="not in time order"):
        tracker.feed(stream([3, 2]), [(0, 2)])
    with pytest.raises(ValueError, match="more rows"):
        Tracker(gaps.K).feed(stream([1, 2, 3]), [(0, 2)])
    with pytest.raises(ValueError, match="fewer rows"):
        Tracker(gaps.K).feed(stream([1, 2, 3]), [(0, 4)])
    with pytest.raises(ValueError, match="null times"):
        Tracker(gaps.K).feed(
            pa.RecordBatchReader.from_batches(
                pa.schema([("t", pa.int64())]),
                [pa.record_batch([pa.array([1, None])], names=["t"])],
            ),
            [(0, 2)],
        )
    with pytest.raises(ValueError, match="one int64"):
        Tracker(gaps.K).feed(
            pa.RecordBatchReader.from_batches(
                pa.schema([("t", pa.string())]), [pa.record_batch([pa.array(["a"])], names=["t"])]
            ),
            [(0, 1)],
        )


@st.composite
def series_times(draw: st.DrawFn) -> list[int]:
    """Point times with changes of pace, holes, jitter and repeats."""
    t = draw(st.integers(-(10**15), 10**15))
    times = [t]
    for _ in range(draw(st.integers(0, 8))):
        step = draw(st.integers(1, 10**6))
        for _ in range(draw(st.integers(0, 40))):
            t += step + draw(st.integers(0, step // 2 + 1)) * draw(st.sampled_from([0, 0, 0, 1]))
            times.append(t)
            if draw(st.integers(0, 30)) == 0:
                times.append(t)  # the same point again
        t += draw(st.sampled_from([0, step, 10 * step, 1000 * step]))
    return times


@settings(max_examples=300, deadline=None)
@given(
    st.lists(series_times(), min_size=1, max_size=4),
    st.integers(1, 50),
    st.integers(1, 3),
    st.data(),
)
def test_the_tracker_finds_what_the_reference_finds(
    series: list[list[int]], batch: int, feeds: int, data: st.DataObject
) -> None:
    everything = [t for times in series for t in times]
    lo = data.draw(st.sampled_from(everything))
    hi = data.draw(st.integers(lo, lo + 10**8))
    tracker = Tracker(gaps.K, lo, hi)
    # Each series cut into `feeds` parts; every feed holds the next part of every series.
    parts = [
        [times[i * len(times) // feeds : (i + 1) * len(times) // feeds] for i in range(feeds)]
        for times in series
    ]
    for f in range(feeds):
        rows = [(sid, parts[sid][f]) for sid in range(len(series))]
        tracker.feed(
            stream([t for _, part in rows for t in part], batch=batch),
            [(sid, len(part)) for sid, part in rows],
        )
    results = tracker.results()
    for times, row in zip(series, results, strict=True):
        points = gaps.distinct(times)
        inside = [t for t in points if lo <= t <= hi]
        diffs = [b - a for a, b in itertools.pairwise(points)]
        count, first, last, count_in, first_in, last_in, typical, found = row
        assert (count, first, last) == (len(points), points[0], points[-1])
        assert count_in == len(inside)
        if inside:
            assert (first_in, last_in) == (inside[0], inside[-1])
        assert typical == gaps.typical_cadence(diffs)
        assert [Gap(*g) for g in found] == find_gaps(points)
