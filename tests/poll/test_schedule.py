"""The adaptive schedule: half a window between polls, bursts kept in room, clamped."""

from __future__ import annotations

import pytest

from headlined.poll.schedule import (
    Limits,
    Observation,
    State,
    after_failure,
    after_success,
    retry_budget,
)

LIMITS = Limits(window=200, min_interval=1.0, max_interval=300.0)


def run(rate: float, polls: int, limits: Limits = LIMITS, start: State | None = None) -> State:
    """Poll a steady feed ``polls`` times at whatever interval the scheduler picks."""
    state = start if start is not None else State()
    now = 1000.0
    for _ in range(polls):
        interval = state.interval if state.interval is not None else limits.min_interval
        now += interval
        new = min(limits.window, round(rate * interval)) if state.last_success else 0
        state = after_success(state, Observation(now, new, limits.window, gap=False), limits)
    return state


def test_first_poll_without_times_looks_again_soon() -> None:
    state = after_success(State(), Observation(0.0, 200, 200, gap=False), LIMITS)
    assert state.interval == LIMITS.min_interval


def test_steady_feed_polls_at_half_window_turnover() -> None:
    state = run(rate=4.0, polls=40)
    assert state.rate == pytest.approx(4.0, rel=0.1)
    assert state.interval == pytest.approx(100 / 4.0, rel=0.1)


@pytest.mark.parametrize("rate", [0.1, 1, 5, 10, 20, 50])
def test_never_more_than_half_a_window_between_polls(rate: float) -> None:
    state = run(rate=rate, polls=60)
    assert state.interval is not None
    assert rate * state.interval <= LIMITS.window * 0.5 * 1.05 or state.interval == 1.0


def test_quiet_feed_relaxes_gradually_to_max() -> None:
    state = run(rate=10, polls=20)
    intervals = []
    now = state.last_success or 0.0
    for _ in range(30):
        assert state.interval is not None
        now += state.interval
        previous = state.interval
        state = after_success(state, Observation(now, 0, 200, gap=False), LIMITS)
        assert state.interval is not None
        assert state.interval <= previous * 1.5 + 1e-9
        intervals.append(state.interval)
    assert intervals[-1] == LIMITS.max_interval


def test_rate_jump_tightens_at_once() -> None:
    state = run(rate=0.5, polls=30)
    assert state.interval is not None
    assert state.last_success is not None
    now = state.last_success + state.interval
    fast = after_success(state, Observation(now, 150, 200, gap=False), LIMITS)
    assert fast.interval is not None
    assert fast.interval <= 100 / (150 / state.interval) + 1e-9


def test_gap_goes_to_min_interval() -> None:
    state = run(rate=1, polls=20)
    assert state.last_success is not None
    gap = after_success(state, Observation(state.last_success + 100, 200, 200, gap=True), LIMITS)
    assert gap.interval == LIMITS.min_interval
    assert gap.rate is not None
    assert gap.rate >= 4.0


def test_burst_keeps_room_in_the_window() -> None:
    state = run(rate=1, polls=30)
    assert state.last_success is not None
    assert state.interval is not None
    now = state.last_success + state.interval
    burst = after_success(
        state, Observation(now, 150 + round(state.interval), 200, gap=False), LIMITS
    )
    calm = run(rate=1, polls=30, start=burst)
    assert calm.burst > 100
    assert calm.interval is not None
    assert 1 * calm.interval + 150 <= 200


def test_window_rate_from_record_times_on_first_poll() -> None:
    state = after_success(State(), Observation(0.0, 200, 200, gap=False, window_rate=2.0), LIMITS)
    assert state.interval == pytest.approx(50.0)


def test_failures_back_off_for_client_errors_but_not_past_usual_for_5xx() -> None:
    state = run(rate=2, polls=30)
    usual = state.interval
    assert usual is not None
    for _ in range(10):
        state = after_failure(state, "retryable_error", LIMITS)
    assert state.interval is not None
    assert state.interval <= usual
    client = run(rate=2, polls=30)
    for _ in range(10):
        client = after_failure(client, "client_error", LIMITS)
    assert client.interval == LIMITS.max_interval
    assert client.errors == 10


def test_retry_budget_ends_before_overflow() -> None:
    state = State(rate=10.0, last_success=1000.0, interval=10.0)
    assert retry_budget(state, 1005.0, LIMITS) == pytest.approx(180 / 10 - 5)
    assert retry_budget(State(), 0.0, LIMITS) == LIMITS.max_interval


def test_state_round_trips_through_json() -> None:
    state = run(rate=3, polls=10)
    assert State.from_json(state.to_json() | {"future_key": 1}) == state
