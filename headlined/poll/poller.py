"""Polls one rolling-window source forever: fetch, compare, commit, schedule the next poll.

The loop around the pure steps (records, gaps, schedule); bad remote input never crashes it.
See docs/poller.md.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from headlined import logs
from headlined.config import SourceConfig
from headlined.poll.fetch import FetchError, fetch
from headlined.poll.gaps import SeenKeys, compare
from headlined.poll.records import BadResponseError, Record, Scanner, decode_json, time_problem
from headlined.poll.rejects import RejectSampler
from headlined.poll.schedule import (
    Limits,
    Observation,
    Outcome,
    State,
    after_failure,
    after_success,
    retry_budget,
)
from headlined.poll.tables import Poll, Restored, Summary
from headlined.poll.windowcheck import WindowCheck
from headlined.poll.writer import PollWriter
from headlined.supervisor import Heartbeat

log = logs.get("poller")

SEEN_WINDOWS = 4  # how many windows of keys are remembered per source
COMMIT_SLACK_S = 60.0  # slack past a poll's deadlines before the poller counts as hung
STATE_EVERY_S = 30.0  # the schedule state is saved at least this often (and at shutdown)
# Upper bounds (seconds) of the poll durations counted for the metrics' histogram: a loopback
# feed answers in a millisecond, a slow API retried within its budget takes up to 30 s.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(slots=True)
class Durations:
    """How long polls took, counted per bucket: a histogram without prometheus-client."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def observe(self, ms: float) -> None:
        """Count one poll that took ``ms`` milliseconds (its fetch_summary.duration_ms)."""
        self.counts[bisect.bisect_left(DURATION_BUCKETS_S, ms / 1000)] += 1
        self.sum_s += ms / 1000

    def snapshot(self) -> dict[str, object]:
        """Polls that took at most ``le`` seconds (cumulative, as Prometheus wants) and the sum."""
        # Copied in one step: the metrics thread reads this while the loop counts.
        cumulative = itertools.accumulate(list(self.counts))
        bounds = [*(str(b) for b in DURATION_BUCKETS_S), "+Inf"]
        return {"le": dict(zip(bounds, cumulative, strict=True)), "sum": self.sum_s}


@dataclass(slots=True)
class Counters:
    """What ``status`` and STATUS= show about a source."""

    polls: int = 0
    records: int = 0
    new_records: int = 0
    gaps: int = 0
    errors: int = 0
    last_poll: float | None = None
    last_error: str | None = None
    errors_by: dict[tuple[str, int | None], int] = field(default_factory=dict)
    """Failed polls by error kind and HTTP status (None: no HTTP answer)."""
    durations: Durations = field(default_factory=Durations)


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: str
    detail: str
    status: int | None
    body: bytes
    outcome: Outcome
    retry_after: float | None = None
    attempts: int = 1


class SourcePoller:
    """The polling loop of one source."""

    def __init__(
        self,
        source: SourceConfig,
        client: httpx.AsyncClient,
        writer: PollWriter,
        rejects: RejectSampler,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.source = source
        self.limits = Limits(source.window, source.min_interval, source.max_interval)
        self.state = State()
        self.counters = Counters()
        self._client = client
        self._writer = writer
        self._rejects = rejects
        self._clock = clock
        self._sleep = sleep
        self._seen = SeenKeys(self.keys_remembered)
        self._scanner = Scanner(source.records, source.key, source.time)
        self._next_due = 0.0
        self._failing: str | None = None  # the error kind of the current failure streak
        self._bad_records_logged: set[str] = set()
        self._saved_state: State | None = None
        self._saved_at = 0.0
        self._window_check = WindowCheck(source.window)
        self._key_conflict_logged = False
        self._time_checked = source.time is None
        self._first_poll = True

    @property
    def keys_remembered(self) -> int:
        """How many of the newest keys this source remembers (and a restart restores)."""
        return SEEN_WINDOWS * self.limits.window

    def restore(self, restored: Restored) -> None:
        """Pick up where the last run stopped: schedule state and the newest keys.

        The first poll then compares against what is stored, so loss during downtime shows.
        """
        if restored.state is not None:
            self.state = State.from_json(restored.state)
        old = Scanner("", self.source.key, self.source.time).scan(restored.payloads)
        self._seen.remember(old.new)
        self.counters.records = restored.records
        self.counters.gaps = restored.gaps

    async def run(self, heartbeat: Heartbeat) -> None:
        """Poll until cancelled (a supervisor component)."""
        while True:
            delay = self._next_due - self._clock()
            if delay > 0:
                heartbeat.beat(within=delay + COMMIT_SLACK_S)
                await self._sleep(delay)
            budget = retry_budget(self.state, self._clock(), self.limits)
            heartbeat.beat(within=budget + 2 * self.source.timeout + COMMIT_SLACK_S)
            await self.poll_once()
            heartbeat.beat()

    async def poll_once(self) -> None:
        """One poll: fetch (with retries), compare, commit, and schedule the next."""
        started = self._clock()
        started_at = datetime.fromtimestamp(started, UTC)
        # A source's first poll since start makes one attempt: a closed port or a wrong URL
        # is logged at once, not after the retries (the schedule tries again soon anyway).
        budget = 0.0 if self._first_poll else retry_budget(self.state, started, self.limits)
        self._first_poll = False
        tick = time.monotonic()
        try:
            response = await fetch(
                self._client, self.source, budget, clock=self._clock, sleep=self._sleep
            )
            document = decode_json(response.body)
            scan = self._scanner.scan(document, self._seen.view())
        except FetchError as exc:
            outcome: Outcome = (
                "client_error" if exc.kind in ("http_4xx", "too_large") else "retryable_error"
            )
            failure = _Failure(
                exc.kind,
                exc.detail,
                exc.status,
                exc.sample,
                outcome,
                exc.retry_after,
                exc.attempts,
            )
            await self._failed(started_at, tick, failure)
            return
        except BadResponseError as exc:
            failure = _Failure(
                exc.kind,
                exc.detail,
                response.status,
                response.body,
                "retryable_error",
                attempts=response.attempts,
            )
            await self._failed(started_at, tick, failure)
            return
        result = compare(scan, self._seen, self.limits.window)
        observation = Observation(
            started,
            len(result.new),
            scan.fetched,
            result.gap is not None,
            result.window_rate,
            missing=result.gap.est_missing if result.gap is not None else None,
            burst_seen=result.burst,
        )
        self.state = after_success(self.state, observation, self.limits)
        self._check_window(scan.fetched, len(result.new))
        if not self._time_checked and result.new:
            self._check_time(result.new)
        if scan.key_conflicts and not self._key_conflict_logged:
            self._check_key(scan.key_conflicts, scan.conflict_key)
        error = None
        if scan.rejected:
            error = f"bad_records: {scan.rejected} rejected ({scan.reject_reason})"
            await self._bad_records(scan.reject_reason or "", error, response.body)
        summary = Summary(
            self.source.name,
            started_at,
            _ms_since(tick),
            response.status,
            scan.fetched,
            scan.overlap,
            self.state.interval,
            error,
            response.attempts,
        )
        self.counters.durations.observe(summary.duration_ms)
        poll = Poll(summary, result.new, result.gap, self._state_to_save(started), started_at)
        added = self._writer.submit(poll)
        if result.gap is not None:
            # Said once the gap is committed with its poll: a failed commit says nothing, and
            # the next poll, which compares against the same keys, finds the gap again.
            log.warning(
                "gap_detected",
                source=self.source.name,
                est_missing=result.gap.est_missing,
                last_seen_key=result.gap.last_seen_key,
                first_new_key=result.gap.first_new_key,
                action="records aged out of the window before this poll",
            )
        self._seen.remember(result.new)
        self._next_due = started + (self.state.interval or self.limits.min_interval)
        self._recovered()
        self.counters.polls += 1
        self.counters.records += added
        self.counters.new_records += added
        self.counters.gaps += result.gap is not None
        self.counters.last_poll = started
        log.debug(
            "polled",
            source=self.source.name,
            fetched=scan.fetched,
            new=added,
            overlap=scan.overlap,
            attempts=response.attempts,
            next_s=round(self.state.interval or 0, 2),
            rate=self.state.rate,
        )

    def _check_key(self, conflicts: int, example: str | None) -> None:
        """Once: different records of one response share a key, so all but one are lost."""
        self._key_conflict_logged = True
        log.warning(
            "key_not_unique",
            source=self.source.name,
            key=self.source.key,
            example=example,
            records=conflicts,
            effect="different records share a key: all but the first are dropped as duplicates",
            action="add fields to key so that it identifies one record (an id, a sequence)",
        )

    def _check_time(self, new: list[Record]) -> None:
        """Once: say so when the configured time field gives no time for any new record."""
        self._time_checked = True
        field = self.source.time
        if field is None or any(r.time is not None for r in new):
            return
        problem = time_problem(new[0].payload, field)
        log.warning(
            "time_unusable",
            source=self.source.name,
            field=field,
            problem=problem,
            effect="record_time stays NULL; rates and gap sizes come from counts alone",
            action="set time: to the field holding each record's time, or leave time: out",
        )

    def _check_window(self, fetched: int, new: int) -> None:
        advice = self._window_check.observe(fetched, new)
        if advice is None:
            return
        if advice.kind == "too_large":
            # A window the API never fills hides every gap: detect and schedule by the real one.
            self.limits = replace(self.limits, window=advice.observed)
            self._seen.resize(self.keys_remembered)
        # Too small a window only costs polls: a note, not a warning.
        emit = log.warning if advice.kind == "too_large" else log.info
        emit(
            "window_misconfigured",
            source=self.source.name,
            window=advice.configured,
            observed=advice.observed,
            effect=advice.effect,
            action=advice.action,
        )

    async def _failed(self, started_at: datetime, tick: float, failure: _Failure) -> None:
        kind, status = failure.kind, failure.status
        self.state = after_failure(self.state, failure.outcome, self.limits)
        wait = self.state.interval or self.limits.min_interval
        if failure.retry_after is not None:
            wait = max(wait, failure.retry_after)  # the server asked: honour it
        error = f"{kind}: {failure.detail}"
        self.counters.polls += 1
        self.counters.errors += 1
        self.counters.errors_by[kind, status] = self.counters.errors_by.get((kind, status), 0) + 1
        self.counters.last_error = error
        self.counters.last_poll = started_at.timestamp()
        if self._failing != kind:
            # Once per streak: a source down for a day must not fill the journal.
            self._failing = kind
            sample = None
            if failure.body:
                sample = await asyncio.to_thread(
                    self._rejects.save, self.source.name, kind, failure.detail, failure.body, status
                )
            log.warning(
                "poll_failed",
                source=self.source.name,
                error=error,
                http_status=status,
                next_try_s=round(wait, 1),
                sample=str(sample) if sample else None,
            )
        summary = Summary(
            self.source.name,
            started_at,
            _ms_since(tick),
            status,
            0,
            0,
            wait,
            error,
            failure.attempts,
        )
        self.counters.durations.observe(summary.duration_ms)
        state = self._state_to_save(started_at.timestamp())
        self._writer.submit(Poll(summary, [], None, state, started_at))
        self._next_due = started_at.timestamp() + wait

    async def _bad_records(self, reason: str, error: str, body: bytes) -> None:
        if reason in self._bad_records_logged:
            return
        self._bad_records_logged.add(reason)
        sample = await asyncio.to_thread(
            self._rejects.save, self.source.name, "bad_records", reason, body, 200
        )
        log.warning("records_rejected", source=self.source.name, error=error, sample=str(sample))

    def _state_to_save(self, now: float) -> dict[str, Any] | None:
        """The schedule state when it is worth saving: every STATE_EVERY_S, or when the
        interval or the failure streak changed noticeably."""
        saved = self._saved_state
        changed = (
            saved is None
            or saved.errors != self.state.errors
            or abs((saved.interval or 0) - (self.state.interval or 0))
            > 0.25 * (saved.interval or 1)
        )
        if not changed and now - self._saved_at < STATE_EVERY_S:
            return None
        self._saved_state, self._saved_at = self.state, now
        return self.state.to_json()

    def _recovered(self) -> None:
        if self._failing is not None:
            log.info("poll_recovered", source=self.source.name, after=self._failing)
            self._failing = None


def _ms_since(tick: float) -> float:
    return round((time.monotonic() - tick) * 1000, 3)
