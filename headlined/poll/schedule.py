"""When to poll a rolling-window feed next, and how long retries may take (pure).

See docs/poller.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

FILL = 0.5  # fraction of the window that may turn over between polls, at the steady rate
ROOM = 0.9  # fraction of the window that steady arrivals plus a known burst may fill
RELAX = 1.5  # the interval grows at most this much from one poll to the next
RATE_ALPHA = 0.2  # how fast a falling rate estimate follows the observations
BURST_HALF_LIFE_S = 6 * 3600.0  # a burst is remembered for hours, fading slowly
BURST_MIN_FRACTION = 0.1  # smaller excesses are noise, not bursts

Outcome = Literal["ok", "retryable_error", "client_error"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The source's config, as the scheduler needs it."""

    window: int
    min_interval: float
    max_interval: float


@dataclass(frozen=True, slots=True)
class State:
    """What the scheduler knows about one feed; persisted so a restart resumes it."""

    rate: float | None = None
    """Estimated arrivals per second; None until two polls (or record times) tell."""
    burst: float = 0.0
    """Records seen arriving at once beyond the steady rate (decays over hours)."""
    interval: float | None = None
    last_success: float | None = None
    """Wall-clock time of the last successful poll."""
    errors: int = 0
    """Consecutive failed polls."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for the ``source_state`` table."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """Read back :meth:`to_json` output, ignoring keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one successful poll saw."""

    at: float
    new: int
    fetched: int
    gap: bool
    window_rate: float | None = None
    """Arrival rate read from the record times of this response, when they exist."""
    missing: int | None = None
    """A gap's estimated size (None: no gap, or unknown)."""
    burst_seen: int | None = None
    """The most records of this response that arrived within one second."""


def after_success(state: State, obs: Observation, limits: Limits) -> State:
    """The new state after a successful poll, with the interval until the next one."""
    elapsed = None if state.last_success is None else max(0.0, obs.at - state.last_success)
    sample = _rate_sample(obs, elapsed, limits)
    rate = _update_rate(state.rate, sample)
    burst = _update_burst(state, obs, elapsed, limits)
    interval = _interval(rate, burst, limits, state.interval, obs)
    return State(rate=rate, burst=burst, interval=interval, last_success=obs.at, errors=0)


def after_failure(state: State, outcome: Outcome, limits: Limits) -> State:
    """The state after a failed poll: back off, but not past the point of overflow for 5xx."""
    errors = state.errors + 1
    backoff = min(limits.max_interval, limits.min_interval * 2 ** min(errors, 30))
    if outcome == "retryable_error":
        # The feed keeps filling while it fails: keep trying at least as often as usual.
        usual = state.interval if state.interval is not None else limits.min_interval
        backoff = min(backoff, max(usual, limits.min_interval))
    return replace(state, interval=_clamp(backoff, limits), errors=errors)


def retry_budget(state: State, now: float, limits: Limits) -> float:
    """Seconds that retries of this poll may take before the window would overflow."""
    if state.rate is None or state.rate <= 0 or state.last_success is None:
        return limits.max_interval
    room = max(ROOM * limits.window - state.burst, FILL * limits.window)
    overflow_at = state.last_success + room / state.rate
    return max(limits.min_interval, min(limits.max_interval, overflow_at - now))


def _rate_sample(obs: Observation, elapsed: float | None, limits: Limits) -> float | None:
    samples = []
    if elapsed is not None and elapsed > 0:
        observed = obs.new / elapsed
        if obs.gap:
            # A gap hides how many records went by: at least a full window did.
            observed = max(observed, 2 * limits.window / elapsed)
        samples.append(observed)
    if obs.window_rate is not None:
        samples.append(obs.window_rate)
    return max(samples) if samples else None


def _update_rate(previous: float | None, sample: float | None) -> float | None:
    if sample is None:
        return previous
    if previous is None or sample >= previous:
        return sample  # tighten at once
    return previous + RATE_ALPHA * (sample - previous)  # relax gradually


def _update_burst(state: State, obs: Observation, elapsed: float | None, limits: Limits) -> float:
    burst = state.burst
    excesses = []
    if elapsed is not None:
        burst *= 0.5 ** (elapsed / BURST_HALF_LIFE_S)
        if state.rate is not None:
            arrived = float(obs.new + (obs.missing or 0))
            if obs.gap and obs.missing is None:
                # A loss of unknown size: at least half a window more came than we saw.
                arrived += FILL * limits.window
            excesses.append(arrived - state.rate * elapsed)
    if obs.burst_seen is not None:
        # Read from record times: seen even when the burst did not overflow the window.
        excesses.append(obs.burst_seen - (state.rate or 0.0))
    for excess in excesses:
        if excess > BURST_MIN_FRACTION * limits.window:
            burst = max(burst, excess)
    return min(burst, float(limits.window))


def _interval(
    rate: float | None, burst: float, limits: Limits, previous: float | None, obs: Observation
) -> float:
    if obs.gap or rate is None:
        # Lost data, or nothing known yet: look again as soon as allowed.
        return limits.min_interval
    if rate <= 0:
        target = math.inf
    else:
        room = ROOM * limits.window - burst
        target = min(FILL * limits.window, room) / rate if room > 0 else 0.0
    if previous is not None:
        target = min(target, previous * RELAX)
    return _clamp(target, limits)


def _clamp(seconds: float, limits: Limits) -> float:
    return min(limits.max_interval, max(limits.min_interval, seconds))
