"""Gap detection: real losses found and sized, no false gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from headlined.poll.gaps import PollResult, SeenKeys, chronological, compare, largest_burst
from headlined.poll.records import Record, Scan, Scanner

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(n: int, group: str | None = None, timed: bool = True, rate: float = 1.0) -> dict[str, Any]:
    """A record as an API sends it: ``id`` (and ``g``) its key, ``t`` its time."""
    item: dict[str, Any] = {"id": n}
    if group is not None:
        item["g"] = group
    if timed:
        item["t"] = (T0 + timedelta(seconds=n / rate)).isoformat()
    return item


def window(lo: int, hi: int, newest_first: bool = True, **kw: Any) -> list[dict[str, Any]]:
    items = [rec(n, **kw) for n in range(lo, hi)]
    return items[::-1] if newest_first else items


def poll(
    items: list[dict[str, Any]], seen: SeenKeys, key: tuple[str, ...] = ("id",)
) -> tuple[Scan, PollResult]:
    scan = Scanner("", list(key), "t").scan(items, seen.view())
    return scan, compare(scan, seen, window=200)


def remember(seen: SeenKeys, items: list[dict[str, Any]], key: tuple[str, ...] = ("id",)) -> None:
    new = Scanner("", list(key), "t").scan(items).new
    seen.remember(chronological(new))


def test_first_poll_is_never_a_gap() -> None:
    _, result = poll(window(0, 200), SeenKeys(800))
    assert len(result.new) == 200
    assert result.gap is None


def test_overlapping_full_window_is_not_a_gap() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    scan, result = poll(window(150, 350), seen)
    assert scan.overlap == 50
    assert [r.key for r in result.new][:2] == ["[200]", "[201]"]  # oldest first
    assert result.gap is None


def test_full_window_without_overlap_is_a_gap_counted_by_sequence() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    _, result = poll(window(260, 460), seen)
    assert result.gap is not None
    assert result.gap.last_seen_key == "[199]"
    assert result.gap.first_new_key == "[260]"
    assert result.gap.est_missing == 60


def test_contiguous_but_not_overlapping_is_no_loss() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    assert poll(window(200, 400), seen)[1].gap is None


def test_gap_counted_by_time_when_keys_are_not_sequential() -> None:
    def uuid_rec(n: int) -> dict[str, Any]:
        return {"id": f"u{n * 7919 % 10007}", "t": (T0 + timedelta(seconds=n / 4)).isoformat()}

    seen = SeenKeys(800)
    remember(seen, [uuid_rec(n) for n in range(200)])
    _, result = poll([uuid_rec(n) for n in range(300, 500)], seen)
    assert result.gap is not None
    assert result.gap.est_missing is not None
    assert abs(result.gap.est_missing - 100) <= 2


def test_gap_without_times_or_sequences_has_unknown_size() -> None:
    seen = SeenKeys(800)
    remember(seen, [{"id": f"a{n}"} for n in range(200)])
    _, result = poll([{"id": f"b{n}"} for n in range(200)], seen)
    assert result.gap is not None
    assert result.gap.est_missing is None


def test_quiet_feed_and_partial_windows_are_not_gaps() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    _, quiet = poll(window(0, 200), seen)
    assert quiet.new == []
    assert quiet.gap is None
    _, partial = poll(window(500, 550), seen)  # an API that restarted small
    assert partial.gap is None


def test_reordered_records_are_not_gaps() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    shuffled = window(100, 300)
    shuffled = shuffled[::2] + shuffled[1::2]
    _, result = poll(shuffled, seen)
    assert result.gap is None
    assert len(result.new) == 100


def test_per_group_sequences() -> None:
    seen = SeenKeys(800)
    key = ("g", "id")
    remember(seen, [rec(n, group=g, timed=False) for n in range(100) for g in ("a", "b")], key)
    lost = [rec(n, group=g, timed=False) for n in range(110, 210) for g in ("a", "b")]
    _, result = poll(lost, seen, key)
    assert result.gap is not None
    assert result.gap.est_missing == 20


def test_oldest_first_apis_are_understood() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200, newest_first=False, timed=False))
    newest = seen.newest()
    assert newest is not None
    assert newest[0] == "[199]"


def test_seen_keys_are_bounded() -> None:
    seen = SeenKeys(3)
    for n in range(10):
        seen.remember([Record(str(n), None, {}, None)])
    assert len(seen) == 3
    assert "6" not in seen
    assert "9" in seen


def test_seen_keys_shrink_to_a_smaller_capacity_oldest_first() -> None:
    seen = SeenKeys(10)
    seen.remember([Record(str(n), None, {}, None) for n in range(10)])
    seen.resize(4)
    assert sorted(seen.view()) == ["6", "7", "8", "9"]
    seen.remember([Record("10", None, {}, None)])
    assert sorted(seen.view()) == ["10", "7", "8", "9"]


def test_direction_of_untimed_unsequenced_lists_comes_from_the_seen_records() -> None:
    def msg(n: int) -> dict[str, Any]:
        return {"id": f"m{n:04d}"}

    seen = SeenKeys(800)
    seen.remember(Record(f'["m{n:04d}"]', None, {}, None) for n in range(100))
    oldest_first = [msg(n) for n in range(50, 150)]  # seen ones first, new ones at the end
    _, result = poll(oldest_first, seen)
    assert [r.key for r in result.new][:2] == ['["m0100"]', '["m0101"]']
    _, result = poll(oldest_first[::-1], seen)
    assert [r.key for r in result.new][:2] == ['["m0100"]', '["m0101"]']


def test_largest_burst_counts_records_within_a_second() -> None:
    def at(seconds: float) -> Record:
        return Record("[1]", T0 + timedelta(seconds=seconds), {}, None)

    steady = [at(n / 2) for n in range(40)]
    burst = [at(5 + n / 1000) for n in range(150)]
    assert largest_burst(steady) == 3
    assert largest_burst(steady + burst) == 150 + 3
    assert largest_burst([Record("[1]", None, {}, None)]) is None


@given(st.lists(st.integers(0, 64 * 5), max_size=60), st.integers(1, 128))
def test_largest_burst_is_the_fullest_span(offsets: list[int], span_64ths: int) -> None:
    # Sixty-fourths of a second: exact in floating point, so no boundary is a coin toss.
    records = [Record("[1]", T0 + timedelta(seconds=o / 64), {}, None) for o in offsets]
    fullest = max(
        (sum(0 <= end - o <= span_64ths for o in offsets) for end in offsets), default=None
    )
    assert largest_burst(records, span_64ths / 64) == fullest


def test_seen_keys_remember_a_key_once() -> None:
    seen = SeenKeys(3)
    seen.remember(Record(k, None, {}, None) for k in ["a", "b", "a", "c"])
    seen.remember([Record("b", None, {}, None), Record("d", None, {}, None)])
    assert len(seen) == 3
    assert sorted(seen.view()) == ["b", "c", "d"]  # "a", the oldest, made room for "d"
