"""Tests for the pure feed model: arrivals, windows, record content, faults."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headlined.demo.model import Fault, FeedModel
from headlined.demo.spec import FeedSpec, Order, Shape, source_fragment

T0 = 1_700_000_000.0


def records_in(body: Any, path: str) -> list[dict[str, Any]]:
    """Follow a source fragment's dotted `records` path, as headlined would."""
    for part in filter(None, path.split(".")):
        body = body[part]
    assert isinstance(body, list)
    return body


def test_model_is_deterministic() -> None:
    spec = FeedSpec("a", rate=3.0, burst=(7.0, 20), seed=11, t0=T0)
    t = T0 + 45.5
    assert FeedModel(spec).response_at(t) == FeedModel(spec).response_at(t)
    assert FeedModel(spec).all_keys_until(t) == FeedModel(spec).all_keys_until(t)


def test_windows_are_independent_copies() -> None:
    spec = FeedSpec("a", rate=4.0, burst=(9.0, 30), seed=6, t0=T0)
    model = FeedModel(spec)
    for seconds in (10.0, 30.0, 31.5, 20.0, 90.0, 91.0):
        window = model.window_at(T0 + seconds)
        assert window == FeedModel(spec).window_at(T0 + seconds)
        window[0]["text"] = "edited by the caller"
    assert model.window_at(T0 + 91.0)[0]["text"] != "edited by the caller"


def test_seed_changes_content_not_rate() -> None:
    one = FeedModel(FeedSpec("a", rate=2.0, seed=1, t0=T0))
    two = FeedModel(FeedSpec("a", rate=2.0, seed=2, t0=T0))
    assert abs(one.arrivals_until(T0 + 100) - two.arrivals_until(T0 + 100)) <= 1
    assert [r["text"] for r in one.records_between(0, 20)] != [
        r["text"] for r in two.records_between(0, 20)
    ]


def test_arrivals_follow_rate_and_never_decrease() -> None:
    model = FeedModel(FeedSpec("a", rate=2.0, seed=5, t0=T0))
    assert model.arrivals_until(T0 - 1) == 0
    previous = 0
    for step in range(1, 2000):
        t = T0 + step * 0.05
        n = model.arrivals_until(t)
        assert n >= previous
        # Jitter moves each arrival within its own 1/rate slot, so the count stays within one.
        assert abs(n - 2.0 * (t - T0)) <= 1
        previous = n


def test_without_jitter_arrivals_are_evenly_spaced() -> None:
    model = FeedModel(FeedSpec("a", rate=2.0, jitter=0.0, t0=T0))
    assert [model.arrival_time(k) - T0 for k in range(4)] == [0.25, 0.75, 1.25, 1.75]
    assert model.arrivals_until(T0 + 0.2499) == 0
    assert model.arrivals_until(T0 + 0.25) == 1
    assert model.arrivals_until(T0 + 100) == 200


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_window_holds_newest_records_in_spec_order(order: Order) -> None:
    spec = FeedSpec("a", rate=1.0, window=50, jitter=0.0, order=order, t0=T0)
    model = FeedModel(spec)
    for seconds, expected_ids in [
        (0, []),
        (10, range(1, 11)),
        (50, range(1, 51)),
        (80.7, range(32, 82)),
    ]:
        window = model.window_at(T0 + seconds)
        ids = [r["id"] for r in window]
        expected = list(expected_ids)
        assert ids == (expected[::-1] if order == "newest_first" else expected)
        assert len(window) == min(50, model.arrivals_until(T0 + seconds))


def test_bursts_arrive_all_at_once() -> None:
    model = FeedModel(FeedSpec("a", rate=1.0, burst=(20.0, 150), jitter=0.0, t0=T0))
    before, at = model.arrivals_until(T0 + 19.999), model.arrivals_until(T0 + 20.0)
    assert (before, at) == (20, 170)
    assert {model.arrival_time(i) for i in range(20, 170)} == {T0 + 20.0}
    assert model.arrivals_until(T0 + 60.0) == 60 + 3 * 150
    # Newest first, so the window right after the burst opens with the burst, newest to oldest.
    window = model.window_at(T0 + 20.0)
    assert [r["id"] for r in window][:150] == list(range(170, 20, -1))


def test_burst_only_feed() -> None:
    model = FeedModel(FeedSpec("a", rate=0.0, burst=(5.0, 10), t0=T0))
    assert model.arrivals_until(T0 + 4.99) == 0
    assert model.arrivals_until(T0 + 5.0) == 10
    assert model.window_at(T0 + 1) == []
    assert FeedModel(FeedSpec("a", rate=0.0, t0=T0)).window_at(T0 + 100) == []


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([0.1, 0.5, 2.0, 50.0]),
    burst=st.sampled_from([None, (0.7, 1), (3.0, 40), (5.0, 250)]),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(-(2**63), 2**64),
    t0=st.sampled_from([0.0, T0, 12345.678]),
)
def test_arrival_times_agree_with_counts(
    rate: float, burst: tuple[float, int] | None, jitter: float, seed: int, t0: float
) -> None:
    model = FeedModel(FeedSpec("a", rate=rate, burst=burst, jitter=jitter, seed=seed, t0=t0))
    n = model.arrivals_until(t0 + 8.0)
    times = [model.arrival_time(i) for i in range(n + 3)]
    assert times == sorted(times)
    for i, t in enumerate(times):
        # Record i has arrived at its own arrival time, and not a moment earlier.
        assert model.arrivals_until(t) > i
        assert model.arrivals_until(math.nextafter(t, -math.inf)) <= i
    assert all(t <= t0 + 8.0 for t in times[:n])
    assert all(t > t0 + 8.0 for t in times[n:])
    assert model.records_between(max(0, n - 5), n + 3) == [
        model.record(i) for i in range(max(0, n - 5), n + 3)
    ]


@pytest.mark.parametrize("shape", list(Shape))
def test_shapes_match_their_source_fragment(shape: Shape) -> None:
    model = FeedModel(FeedSpec("a", rate=5.0, burst=(4.0, 30), shape=shape, seed=3, t0=T0))
    fragment = source_fragment(shape)
    t = T0 + 60.0
    body = json.loads(json.dumps(model.response_at(t), ensure_ascii=False))
    records = records_in(body, fragment["records"])
    assert records == model.window_at(t)
    assert len(records) == 200
    keys = [tuple(r[k] for k in fragment["key"]) for r in records]
    assert len(set(keys)) == len(keys)
    assert keys == [model.key_of(r) for r in records]
    texts = [v for r in records for v in r.values() if isinstance(v, str)]
    assert any(not text.isascii() for text in texts)
    if fragment["time"] is None:
        assert not any(isinstance(v, int | float) and v > 1e9 for r in records for v in r.values())
    else:
        assert all(fragment["time"] in r for r in records)


def test_time_fields_encode_arrival_time() -> None:
    specs = {s: FeedSpec("a", rate=3.0, shape=s, seed=9, t0=T0) for s in Shape}
    models = {s: FeedModel(spec) for s, spec in specs.items()}
    for i in range(0, 300, 37):
        arrived = models[Shape.DATA].arrival_time(i)
        created = models[Shape.DATA].record(i)["created_at"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created)
        assert abs(datetime.fromisoformat(created).timestamp() - arrived) < 0.001
        assert models[Shape.RESULT_ITEMS].record(i)["ts"] == math.floor(arrived)
        assert models[Shape.BARE_LIST].record(i)["time_ms"] == math.floor(arrived * 1000)


def test_stations_interleave_with_per_station_sequences() -> None:
    model = FeedModel(FeedSpec("b", rate=1.0, shape=Shape.RESULT_ITEMS, t0=T0))
    seqs: dict[str, list[int]] = {}
    for record in model.records_between(0, 30):
        seqs.setdefault(record["station"], []).append(record["seq"])
    assert sorted(seqs) == ["st-1", "st-2", "st-3"]
    assert all(s == list(range(1, 11)) for s in seqs.values())


def test_bare_list_uuids_are_unique_and_uuid_shaped() -> None:
    model = FeedModel(FeedSpec("c", rate=1.0, shape=Shape.BARE_LIST, seed=-4, t0=T0))
    ids = [r["uuid"] for r in model.records_between(0, 5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(u) == 36 and u[14] == "4" and u.count("-") == 4 for u in ids)


def test_lost_records_are_existed_minus_stored() -> None:
    # Bursts of 250 into a 200-record window: even a poller polling every second loses the
    # oldest 50 of each burst, and nothing else.
    model = FeedModel(FeedSpec("a", rate=0.0, burst=(10.0, 250), window=200, t0=T0))
    stored: set[tuple[Any, ...]] = set()
    for second in range(36):
        stored.update(model.key_of(r) for r in model.window_at(T0 + second))
    lost = set(model.all_keys_until(T0 + 35)) - stored
    assert sorted(lost) == [(b * 250 + i + 1,) for b in range(3) for i in range(50)]


def test_polling_slower_than_the_window_loses_the_gap() -> None:
    model = FeedModel(FeedSpec("a", rate=2.0, window=200, jitter=0.0, t0=T0))
    stored: set[tuple[Any, ...]] = set()
    for seconds in (150, 300):
        stored.update(model.key_of(r) for r in model.window_at(T0 + seconds))
    # 300 records existed by 150 s (first 100 gone), 600 by 300 s (records 301..400 gone).
    lost = set(model.all_keys_until(T0 + 300)) - stored
    assert len(lost) == 200
    assert min(lost) == (1,)
    assert max(lost) == (400,)


def test_request_faults_honour_rates_deterministically() -> None:
    spec = FeedSpec("a", rate=1.0, error_rate=0.25, slow_rate=0.1, slow_s=1.5, seed=42)
    faults = [FeedModel(spec).request_fault(n) for n in range(4000)]
    assert faults == [FeedModel(spec).request_fault(n) for n in range(4000)]
    assert 0.22 < sum(f.error for f in faults) / len(faults) < 0.28
    slow = [f.delay_s for f in faults if f.delay_s]
    assert 0.08 < len(slow) / len(faults) < 0.12
    assert set(slow) == {1.5}
    calm = FeedModel(FeedSpec("a", rate=1.0))
    assert {calm.request_fault(n) for n in range(1000)} == {Fault(error=False, delay_s=0.0)}


def test_record_numbers_start_at_zero() -> None:
    with pytest.raises(ValueError, match="start at 0"):
        FeedModel(FeedSpec("a", rate=1.0)).record(-1)
