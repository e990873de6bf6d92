"""`FeedModel`: a pure, deterministic function of a `FeedSpec` and a time.

It says which records exist at time t, what the window holds and what each record looks
like. No I/O and no real clock, so a test can state exactly which records existed and
compute ``lost = existed - stored``. Randomness (jitter, content, faults) comes from seeded
SplitMix64 hashes, stable across runs and processes.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

from headlined.demo.spec import SHAPES, FeedSpec, Shape

__all__ = ["Fault", "FeedModel"]

_STATIONS = 3

# Text values deliberately mix scripts, right-to-left text, emoji (including a ZWJ sequence),
# accents and characters JSON must escape, so storage and encoding bugs surface in tests.
_TEXTS = (
    "Grüße aus Köln — Straße gesperrt",
    "東京駅で遅延が発生しています",
    "Привет! Погода: ясно, +3 °C",
    "naïve café ☕ déjà vu",
    "مرحبا بالعالم",
    "Ελληνικά: άλφα, βήτα, γάμμα",
    "launch 🚀🔥 by 👩\u200d💻",
    'quote " backslash \\ tab\t done',
    "ñandú — señal débil\nsegunda línea",
    "한국어 텍스트 샘플",
)
_USERS = ("ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances")
_CURRENCIES = ("EUR", "USD", "JPY", "CHF")
_CHANNELS = ("#general", "#ops", "#random", "#alerts")

# Distinct salts keep the pseudo-random streams for different purposes independent.
_SALT_JITTER = 1
_SALT_RECORD = 2
_SALT_UUID_HI = 3
_SALT_UUID_LO = 4
_SALT_ERROR = 5
_SALT_SLOW = 6

_MASK64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64 step: a bijection on 64-bit integers with good avalanche."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _stream(seed: int, salt: int) -> int:
    """Key of one pseudo-random stream, for use with `_hash`."""
    return _mix(_mix(seed & _MASK64) ^ salt)


def _hash(stream: int, n: int) -> int:
    """Deterministic 64-bit hash of element n of a stream; unlike hash(), stable across runs.

    A bijection of n (mod 2**64) for a given stream, so distinct n never collide.
    """
    return _mix(stream ^ (n & _MASK64))


def _unit(h: int) -> float:
    """Map a 64-bit hash to a float in [0, 1)."""
    return (h >> 11) * 2.0**-53


def _iso_ms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Fault(NamedTuple):
    """How the server misbehaves for one request."""

    error: bool
    delay_s: float


class FeedModel:
    """Pure, deterministic model of a feed: which records exist at time t and their content.

    Records are numbered 0, 1, 2, ... in arrival order. Steady record k arrives at
    ``t0 + (k + offset_k) / rate`` with a seeded offset in [0, 1); burst j (j >= 1) brings
    `size` records at ``t0 + j * every_s``, after any steady record arriving at that same
    instant. Counting and locating are both defined from these arrival times, so
    ``arrivals_until(arrival_time(i)) > i`` holds exactly, float rounding included.
    """

    def __init__(self, spec: FeedSpec) -> None:
        """Build the model for `spec`."""
        self.spec = spec
        self._layout = SHAPES[spec.shape]
        # Stream keys are computed once: hashing dominates the cost of rendering a window.
        self._jitter_stream = _stream(spec.seed, _SALT_JITTER)
        self._record_stream = _stream(spec.seed, _SALT_RECORD)
        self._uuid_hi_stream = _stream(spec.seed, _SALT_UUID_HI)
        self._uuid_lo_stream = _stream(spec.seed, _SALT_UUID_LO)
        self._error_stream = _stream(spec.seed, _SALT_ERROR)
        self._slow_stream = _stream(spec.seed, _SALT_SLOW)
        self._burst_every_s, self._burst_size = spec.burst or (0.0, 0)
        self._memo: dict[int, dict[str, Any]] = {}

    def arrivals_until(self, t: float) -> int:
        """How many records have arrived at or before time `t`."""
        return self._steady_until(t) + self._burst_size * self._bursts_until(t)

    def arrival_time(self, i: int) -> float:
        """When record `i` arrives (epoch seconds); also the basis of its time field."""
        return self._arrival_times(i, i + 1)[0]

    def record(self, i: int) -> dict[str, Any]:
        """Record number `i` (0-based, arrival order) as the feed would return it."""
        return self._record(i, self.arrival_time(i))

    def _record(self, i: int, t: float) -> dict[str, Any]:
        h = _hash(self._record_stream, i)
        text = _TEXTS[h % len(_TEXTS)]
        # Further mixing steps give independent streams for the numeric and categorical fields.
        u = _unit(_mix(h))
        pick = _mix(_mix(h))
        shape = self.spec.shape
        if shape is Shape.DATA:
            return {
                "id": i + 1,
                "created_at": _iso_ms(t),
                "user": _USERS[pick % len(_USERS)],
                "score": round(u * 100, 3),
                "likes": (pick >> 8) % 1000,
                "text": text,
            }
        if shape is Shape.RESULT_ITEMS:
            return {
                "station": f"st-{i % _STATIONS + 1}",
                "seq": i // _STATIONS + 1,
                "ts": math.floor(t),
                "temp_c": round(-10 + 40 * u, 1),
                "humidity_pct": 20 + pick % 80,
                "status": "degraded" if (pick >> 8) % 10 == 0 else "ok",
                "note": text,
            }
        if shape is Shape.BARE_LIST:
            return {
                "uuid": self._uuid(i),
                "time_ms": math.floor(t * 1000),
                "amount": round(u * 500, 2),
                "currency": _CURRENCIES[pick % len(_CURRENCIES)],
                "settled": (pick >> 8) % 4 != 0,
                "memo": text,
            }
        return {
            "msg_id": f"msg-{i + 1:08d}",
            "channel": _CHANNELS[pick % len(_CHANNELS)],
            "priority": 1 + (pick >> 8) % 5,
            "body": text,
        }

    def window_at(self, t: float) -> list[dict[str, Any]]:
        """The newest `window` records at time `t`, in the spec's order."""
        n = self.arrivals_until(t)
        start = max(0, n - self.spec.window)
        # Consecutive polls overlap almost entirely, so reuse the previous window's records
        # and render only newer ones. The memo dict is never mutated, only replaced whole,
        # which keeps concurrent calls from server threads safe without a lock.
        memo = self._memo
        reused = start
        while reused < n and reused in memo:
            reused += 1
        rendered = [memo[i] for i in range(start, reused)] + self.records_between(reused, n)
        self._memo = dict(zip(range(start, n), rendered, strict=True))
        # Callers get copies: a caller editing a record must not change later windows.
        records = [dict(r) for r in rendered]
        if self.spec.order == "newest_first":
            records.reverse()
        return records

    def response_at(self, t: float) -> Any:
        """The full JSON body the feed returns at time `t`, envelope included."""
        records = self.window_at(t)
        shape = self.spec.shape
        if shape is Shape.DATA:
            return {"data": records, "meta": {"count": len(records), "generated_at": _iso_ms(t)}}
        if shape is Shape.RESULT_ITEMS:
            stations = [f"st-{s + 1}" for s in range(_STATIONS)]
            return {"status": "ok", "result": {"stations": stations, "items": records}}
        if shape is Shape.BARE_LIST:
            return records
        return {"messages": records}

    def key_of(self, record: dict[str, Any]) -> tuple[Any, ...]:
        """The record's key values, in the order of ``source_fragment(shape)["key"]``."""
        return tuple(record[field] for field in self._layout.key)

    def all_keys_until(self, t: float) -> list[tuple[Any, ...]]:
        """Keys of every record that existed at or before `t`, oldest first.

        Whatever a poller stored, ``set(all_keys_until(t)) - stored`` is exactly what it lost.
        """
        return [self.key_of(r) for r in self.records_between(0, self.arrivals_until(t))]

    def records_between(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Records numbered `start` up to, not including, `stop`, oldest first.

        Much faster than calling `record` for each, since arrival times are walked in order.
        """
        return [self._record(i, t) for i, t in enumerate(self._arrival_times(start, stop), start)]

    def request_fault(self, n: int) -> Fault:
        """Whether request number `n` (0-based, per feed) fails and how long it stalls."""
        error = _unit(_hash(self._error_stream, n)) < self.spec.error_rate
        slow = _unit(_hash(self._slow_stream, n)) < self.spec.slow_rate
        return Fault(error=error, delay_s=self.spec.slow_s if slow else 0.0)

    def _steady_time(self, k: int) -> float:
        spec = self.spec
        offset = 0.5 + spec.jitter * (_unit(_hash(self._jitter_stream, k)) - 0.5)
        return spec.t0 + (k + offset) / spec.rate

    def _steady_until(self, t: float) -> int:
        spec = self.spec
        if spec.rate == 0 or t < spec.t0:
            return 0
        # The estimate from (t - t0) * rate can be off by one through rounding, so settle
        # on the exact count of k with _steady_time(k) <= t (monotone in k).
        n = math.floor((t - spec.t0) * spec.rate)
        while n > 0 and self._steady_time(n - 1) > t:
            n -= 1
        while self._steady_time(n) <= t:
            n += 1
        return n

    def _burst_time(self, j: int) -> float:
        return self.spec.t0 + j * self._burst_every_s

    def _bursts_until(self, t: float) -> int:
        spec = self.spec
        if self._burst_size == 0 or t < spec.t0:
            return 0
        # Same rounding guard as _steady_until: count exactly the j >= 1 with time <= t.
        j = math.floor((t - spec.t0) / self._burst_every_s)
        while j > 0 and self._burst_time(j) > t:
            j -= 1
        while self._burst_time(j + 1) <= t:
            j += 1
        return j

    def _arrival_times(self, start: int, stop: int) -> list[float]:
        """Arrival times of records start..stop-1, walking the merged steady/burst streams."""
        if start < 0:
            raise ValueError(f"record numbers start at 0, got {start}")
        count = max(0, stop - start)
        size = self._burst_size
        if size == 0:
            if self.spec.rate == 0 and count:
                raise ValueError("no record ever arrives in a feed with rate 0 and no bursts")
            return [self._steady_time(k) for k in range(start, start + count)]
        j = self._first_burst_ending_after(start)
        steady_before = self._steady_until(self._burst_time(j))
        burst_start = steady_before + size * (j - 1)
        if start >= burst_start:
            k, pending = steady_before, size - (start - burst_start)
        else:
            k, pending = start - size * (j - 1), 0
        # From here merge in order: k is the next steady record, j the current or next
        # burst, `pending` how many of burst j are still to come. Ties go to steady records.
        times: list[float] = []
        while len(times) < count:
            burst_t = self._burst_time(j)
            if pending:
                times.append(burst_t)
                pending -= 1
                if pending == 0:
                    j += 1
                continue
            steady_t = self._steady_time(k) if self.spec.rate > 0 else math.inf
            if steady_t <= burst_t:
                times.append(steady_t)
                k += 1
            else:
                pending = size
        return times

    def _first_burst_ending_after(self, i: int) -> int:
        """Smallest j >= 1 such that burst j ends after record number i."""
        # Burst j occupies numbers [S(b_j) + size*(j-1), S(b_j) + size*j) where S counts
        # steady arrivals up to the burst time b_j; that end is increasing in j, and
        # size*j > i guarantees the search range holds the answer.
        size = self._burst_size
        lo, hi = 1, i // size + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._steady_until(self._burst_time(mid)) + size * mid > i:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _uuid(self, i: int) -> str:
        # The low half is a bijection of i, so uuids never collide within a feed.
        lo = _hash(self._uuid_lo_stream, i)
        # Version nibble 4, so the value reads as a random (v4) UUID.
        hi = (_hash(self._uuid_hi_stream, i) & ~(0xF << 12)) | (4 << 12)
        return str(uuid.UUID(int=(hi << 64) | lo))
