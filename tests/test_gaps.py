"""Gap detection: real losses found and sized, no false gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from headlined.gaps import Seen, SeenKeys, chronological, compare, largest_burst
from headlined.records import Record, record_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(n: int, group: str | None = None, timed: bool = True, rate: float = 1.0) -> Record:
    values: list[object] = [n] if group is None else [group, n]
    seq = (record_key(values[:-1]), n)
    time = T0 + timedelta(seconds=n / rate) if timed else None
    return Record(record_key(values), time, {"id": n}, seq)


def window(lo: int, hi: int, newest_first: bool = True, **kw: object) -> list[Record]:
    records = [rec(n, **kw) for n in range(lo, hi)]  # type: ignore[arg-type]
    return records[::-1] if newest_first else records


def remember(seen: SeenKeys, records: list[Record]) -> None:
    seen.remember((r.key, Seen(r.time, r.seq)) for r in chronological(records))


def test_first_poll_is_never_a_gap() -> None:
    result = compare(window(0, 200), SeenKeys(800), window=200)
    assert len(result.new) == 200
    assert result.gap is None


def test_overlapping_full_window_is_not_a_gap() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    result = compare(window(150, 350), seen, window=200)
    assert result.overlap == 50
    assert [r.key for r in result.new][:2] == ["[200]", "[201]"]  # oldest first
    assert result.gap is None


def test_full_window_without_overlap_is_a_gap_counted_by_sequence() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    result = compare(window(260, 460), seen, window=200)
    assert result.gap is not None
    assert result.gap.last_seen_key == "[199]"
    assert result.gap.first_new_key == "[260]"
    assert result.gap.est_missing == 60


def test_contiguous_but_not_overlapping_is_no_loss() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    assert compare(window(200, 400), seen, window=200).gap is None


def test_gap_counted_by_time_when_keys_are_not_sequential() -> None:
    def uuid_rec(n: int) -> Record:
        return Record(record_key([f"u{n * 7919 % 10007}"]), T0 + timedelta(seconds=n / 4), {}, None)

    seen = SeenKeys(800)
    remember(seen, [uuid_rec(n) for n in range(200)])
    result = compare([uuid_rec(n) for n in range(300, 500)], seen, window=200)
    assert result.gap is not None
    assert result.gap.est_missing is not None
    assert abs(result.gap.est_missing - 100) <= 2


def test_gap_without_times_or_sequences_has_unknown_size() -> None:
    seen = SeenKeys(800)
    remember(seen, [Record(f'["a{n}"]', None, {}, None) for n in range(200)])
    result = compare([Record(f'["b{n}"]', None, {}, None) for n in range(200)], seen, window=200)
    assert result.gap is not None
    assert result.gap.est_missing is None


def test_quiet_feed_and_partial_windows_are_not_gaps() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    quiet = compare(window(0, 200), seen, window=200)
    assert quiet.new == []
    assert quiet.gap is None
    partial = compare(window(500, 550), seen, window=200)  # an API that restarted small
    assert partial.gap is None


def test_reordered_records_are_not_gaps() -> None:
    seen = SeenKeys(800)
    remember(seen, window(0, 200))
    shuffled = window(100, 300)
    shuffled = shuffled[::2] + shuffled[1::2]
    result = compare(shuffled, seen, window=200)
    assert result.gap is None
    assert len(result.new) == 100


def test_per_group_sequences() -> None:
    seen = SeenKeys(800)
    remember(seen, [rec(n, group=g, timed=False) for n in range(100) for g in ("a", "b")])
    lost = [rec(n, group=g, timed=False) for n in range(110, 210) for g in ("a", "b")]
    result = compare(lost, seen, window=200)
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
        seen.remember([(str(n), Seen(None, None))])
    assert len(seen) == 3
    assert "6" not in seen
    assert "9" in seen


def test_duplicates_inside_one_response_count_once() -> None:
    records = window(0, 10)
    result = compare(records + records, SeenKeys(100), window=200)
    assert len(result.new) == 10


def test_direction_of_untimed_unsequenced_lists_comes_from_the_seen_records() -> None:
    def msg(n: int) -> Record:
        return Record(f'["m{n:04d}"]', None, {}, None)

    seen = SeenKeys(800)
    seen.remember((msg(n).key, Seen(None, None)) for n in range(100))
    oldest_first = [msg(n) for n in range(50, 150)]  # seen ones first, new ones at the end
    result = compare(oldest_first, seen, window=200)
    assert [r.key for r in result.new][:2] == ['["m0100"]', '["m0101"]']
    newest_first = oldest_first[::-1]
    result = compare(newest_first, seen, window=200)
    assert [r.key for r in result.new][:2] == ['["m0100"]', '["m0101"]']


def test_largest_burst_counts_records_within_a_second() -> None:
    steady = [rec(n, rate=2.0) for n in range(40)]
    burst = [
        Record(f"[b{n}]", T0 + timedelta(seconds=5, milliseconds=n), {}, None) for n in range(150)
    ]
    assert largest_burst(steady) == 3
    assert largest_burst(steady + burst) == 150 + 3
    assert largest_burst([Record("[1]", None, {}, None)]) is None


def test_different_records_sharing_a_key_are_counted() -> None:
    # key: [station] where each station sends many readings: one key, many records.
    readings = [Record('["st-1"]', None, {"station": "st-1", "v": v}, None) for v in range(5)]
    seen = SeenKeys(800)
    result = compare(readings, seen, window=200)
    assert len(result.new) == 1
    assert result.key_conflicts == 4
    assert result.conflict_key == '["st-1"]'
    remember(seen, result.new)
    assert compare(readings, seen, window=200).key_conflicts == 4  # also among seen ones


def test_an_api_repeating_a_record_is_no_conflict() -> None:
    records = window(0, 10) + window(5, 10)
    result = compare(records, SeenKeys(800), window=200)
    assert len(result.new) == 10
    assert result.key_conflicts == 0
    assert result.conflict_key is None
