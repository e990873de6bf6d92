"""A rolling-window JSON API simulator on loopback, for tests, benchmarks and the demo.

Real feeds that headlined polls return only their newest ~200 records with no pagination,
so anything that scrolls out of the window between two polls is gone for good. This module
reproduces that behaviour deterministically:

* `FeedSpec` describes one feed (rate, window, bursts, failures, record shape, seed, start).
* `FeedModel` is a pure function of a spec and a time: which records exist, what the window
  holds, what each record looks like. No I/O, no real clock, so a test can state exactly which
  records existed and compute ``lost = existed - stored``.
* `DemoFeedServer` serves several models over HTTP/1.1 on loopback from a background thread,
  reading time from an injectable clock so tests can drive it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self, TextIO
from urllib.parse import urlsplit

__all__ = [
    "DemoFeedServer",
    "Fault",
    "FeedModel",
    "FeedSpec",
    "Order",
    "Shape",
    "default_specs",
    "run_demo",
    "source_fragment",
]

_log = logging.getLogger(__name__)

Order = Literal["newest_first", "oldest_first"]


class Shape(StrEnum):
    """Record and response layouts seen in real rolling-window APIs."""

    DATA = "data"
    """``{"data": [{"id": 1, "created_at": "2026-11-23T10:00:00.123Z", ...}]}``."""
    RESULT_ITEMS = "result_items"
    """``{"result": {"items": [{"station": "st-1", "seq": 7, "ts": 1700000000, ...}]}}``."""
    BARE_LIST = "bare_list"
    """``[{"uuid": "…", "time_ms": 1700000000123, ...}]``."""
    NO_TIME = "no_time"
    """``{"messages": [{"msg_id": "msg-00000001", ...}]}`` with no time field at all."""


class _ShapeInfo(NamedTuple):
    records: str
    key: tuple[str, ...]
    time: str | None


_SHAPES: dict[Shape, _ShapeInfo] = {
    Shape.DATA: _ShapeInfo("data", ("id",), "created_at"),
    Shape.RESULT_ITEMS: _ShapeInfo("result.items", ("station", "seq"), "ts"),
    Shape.BARE_LIST: _ShapeInfo("", ("uuid",), "time_ms"),
    Shape.NO_TIME: _ShapeInfo("messages", ("msg_id",), None),
}

_STATIONS = 3
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

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


def source_fragment(shape: Shape) -> dict[str, Any]:
    """The headlined source settings matching `shape`.

    Returns ``{"records": dotted path ("" for a bare list), "key": [field, ...],
    "time": field name or None}``. Time fields differ in format per shape: ISO 8601 text
    (DATA), epoch seconds (RESULT_ITEMS), epoch milliseconds (BARE_LIST).
    """
    info = _SHAPES[shape]
    return {"records": info.records, "key": list(info.key), "time": info.time}


@dataclass(frozen=True)
class FeedSpec:
    """Everything that determines one simulated feed.

    `rate` is steady records per second (0 allowed, e.g. for burst-only feeds); `burst` is
    ``(every_s, size)``: `size` extra records arrive at once every `every_s` seconds after
    `t0`. `jitter` in [0, 1] spreads each steady arrival inside its 1/rate slot (0 = evenly
    spaced at mid-slot). `error_rate` is the fraction of requests answered with HTTP 500,
    `slow_rate` the fraction delayed by `slow_s` seconds. `t0` is the epoch second at which
    the feed starts; nothing exists before it.
    """

    name: str
    rate: float
    window: int = 200
    shape: Shape = Shape.DATA
    burst: tuple[float, int] | None = None
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 1.5
    seed: int = 0
    order: Order = "newest_first"
    t0: float = 0.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        """Reject specs that would make the model meaningless."""
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"feed name {self.name!r} must match {_NAME_RE.pattern}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {self.rate!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window!r}")
        if self.burst is not None:
            every_s, size = self.burst
            if not (math.isfinite(every_s) and every_s > 0) or size < 1:
                raise ValueError(f"burst must be (every_s > 0, size >= 1), got {self.burst!r}")
        for field in ("error_rate", "slow_rate", "jitter"):
            value = getattr(self, field)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be within [0, 1], got {value!r}")
        if not (math.isfinite(self.slow_s) and self.slow_s >= 0):
            raise ValueError(f"slow_s must be a finite number >= 0, got {self.slow_s!r}")
        if self.order not in ("newest_first", "oldest_first"):
            raise ValueError(f"order must be newest_first or oldest_first, got {self.order!r}")
        if not math.isfinite(self.t0):
            raise ValueError(f"t0 must be finite, got {self.t0!r}")


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
        self._info = _SHAPES[spec.shape]
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
        return tuple(record[field] for field in self._info.key)

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


class _Reply(NamedTuple):
    status: int
    payload: Any
    delay_s: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are dropped eventually so handler threads don't pile up.
    timeout = 60.0
    # Headers and body go out in two writes; without TCP_NODELAY the second one waits for
    # a delayed ACK, adding ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        owner = self.server.owner
        reply = owner._reply(urlsplit(self.path).path)
        if reply.delay_s > 0 and owner._stopping.wait(reply.delay_s):
            self.close_connection = True
            return
        body = json.dumps(reply.payload, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("demo feed %s: " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: DemoFeedServer) -> None:
        self.owner = owner
        # Open connections, tracked so stop() can end keep-alive sessions promptly.
        self._connections: set[socket.socket] = set()
        self._connections_changed = threading.Condition()
        super().__init__(address, _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Registered here, in the serving thread, so a connection accepted just before
        # shutdown is never missed by close_connections().
        if isinstance(request, socket.socket):
            with self._connections_changed:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._connections_changed:
                if isinstance(request, socket.socket):
                    self._connections.discard(request)
                self._connections_changed.notify_all()

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Clients vanishing mid-response (and stop() cutting connections) are routine here;
        # anything else is a bug in the simulator and must not go unnoticed.
        if isinstance(sys.exception(), OSError):
            _log.debug("demo feed connection from %s failed", client_address, exc_info=True)
        else:
            _log.exception("demo feed failed to answer %s", client_address)

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and wait for handler threads to release them."""
        with self._connections_changed:
            for conn in self._connections:
                # The handler thread owns the socket and closes it; shutting it down only
                # wakes that thread from a blocking read, write or keep-alive wait.
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    _log.debug("demo feed connection already gone", exc_info=True)
            self._connections_changed.wait_for(lambda: not self._connections, timeout)


class DemoFeedServer:
    """Serves simulated feeds at ``http://<host>:<port>/feeds/<name>`` from a background thread.

    ``GET /feeds`` lists the feeds; unknown paths get 404. Each request for a feed is numbered
    per feed and its `Fault` (HTTP 500, delay) decided by the model, so a seeded run fails the
    same requests every time when requests are sequential. Time comes from `clock`, read when
    the request arrives. Port 0 picks a free port; see `port` after `start()`.
    """

    def __init__(
        self,
        specs: Iterable[FeedSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the server; nothing listens until `start()`."""
        self._models: dict[str, FeedModel] = {}
        for spec in specs:
            if spec.name in self._models:
                raise ValueError(f"duplicate feed name {spec.name!r}")
            self._models[spec.name] = FeedModel(spec)
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._counts = dict.fromkeys(self._models, 0)
        self._counts_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port actually bound; available from `start()` on, also after `stop()`."""
        if self._port is None:
            raise RuntimeError("DemoFeedServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self._host}:{self.port}"

    def url_for(self, name: str) -> str:
        """URL of feed `name`; raises KeyError for feeds this server does not serve."""
        if name not in self._models:
            raise KeyError(name)
        return f"{self.base_url}/feeds/{name}"

    def model(self, name: str) -> FeedModel:
        """The model behind feed `name`, e.g. to compute which records existed."""
        return self._models[name]

    def request_count(self, name: str) -> int:
        """Requests received so far for feed `name`, failed and delayed ones included."""
        with self._counts_lock:
            return self._counts[name]

    def start(self) -> Self:
        """Bind and begin serving in a daemon thread; returns self."""
        if self._httpd is not None or self._stopping.is_set():
            raise RuntimeError("DemoFeedServer can be started only once")
        self._httpd = _HTTPServer((self._host, self._requested_port), self)
        self._port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # The poll interval bounds how long stop() waits for the accept loop to notice.
            kwargs={"poll_interval": 0.05},
            name=f"demofeed-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open connections (and pending slow replies), free the port.

        Idempotent; returns within about 0.1 s unless a handler thread is stuck.
        """
        self._stopping.set()
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        thread.join()
        httpd.close_connections(timeout=2.0)
        httpd.server_close()

    def __enter__(self) -> Self:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def _reply(self, path: str) -> _Reply:
        if path in ("/feeds", "/feeds/"):
            return _Reply(200, {"feeds": [self._describe(m) for m in self._models.values()]}, 0.0)
        name = path.removeprefix("/feeds/")
        model = self._models.get(name) if name != path else None
        if model is None:
            return _Reply(404, {"error": f"no feed at {path}", "feeds": "/feeds"}, 0.0)
        with self._counts_lock:
            n = self._counts[name]
            self._counts[name] = n + 1
        fault = model.request_fault(n)
        if fault.error:
            return _Reply(500, {"error": "simulated server error", "feed": name}, fault.delay_s)
        return _Reply(200, model.response_at(self._clock()), fault.delay_s)

    def _describe(self, model: FeedModel) -> dict[str, Any]:
        spec = model.spec
        return {
            "name": spec.name,
            "url": self.url_for(spec.name),
            "shape": spec.shape.value,
            "rate": spec.rate,
            "window": spec.window,
            "order": spec.order,
            "source": source_fragment(spec.shape),
        }


_PREFILL_S = 60.0


def default_specs(t0: float | None = None) -> list[FeedSpec]:
    """Friendly demo feeds: ``a`` (DATA, 2/s), ``b`` (RESULT_ITEMS, 0.5/s), ``c`` (rough).

    ``c`` is a bare list, oldest first, with a burst of 150 records every minute and a few
    failed or slow responses, to show headlined coping. `t0` defaults to a minute ago so the
    first poll already finds records.
    """
    start = time.time() - _PREFILL_S if t0 is None else t0
    return [
        FeedSpec("a", rate=2.0, shape=Shape.DATA, seed=1, t0=start),
        FeedSpec("b", rate=0.5, shape=Shape.RESULT_ITEMS, seed=2, t0=start),
        FeedSpec(
            "c",
            rate=1.0,
            shape=Shape.BARE_LIST,
            burst=(60.0, 150),
            error_rate=0.02,
            slow_rate=0.02,
            slow_s=1.5,
            seed=3,
            order="oldest_first",
            t0=start,
        ),
    ]


def run_demo(
    port: int = 8787,
    specs: Sequence[FeedSpec] | None = None,
    *,
    host: str = "127.0.0.1",
    stop: threading.Event | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve demo feeds (default: `default_specs()`) until Ctrl-C or `stop` is set.

    Prints the feed URLs and their matching source settings to `out` (default stdout).
    Returns normally on KeyboardInterrupt, after the server has stopped.
    """
    stream = sys.stdout if out is None else out
    stop_event = threading.Event() if stop is None else stop
    feeds = default_specs() if specs is None else specs
    with DemoFeedServer(feeds, host=host, port=port) as srv:
        print(f"demo feeds at {srv.base_url}/feeds (Ctrl-C to stop)", file=stream)
        for spec in feeds:
            fragment = source_fragment(spec.shape)
            print(
                f"  {srv.url_for(spec.name)}  {spec.rate:g} records/s, window {spec.window};"
                f" records {fragment['records']!r}, key {fragment['key']},"
                f" time {fragment['time']!r}",
                file=stream,
                flush=True,
            )
        try:
            stop_event.wait()
        except KeyboardInterrupt:
            _log.debug("demo feed interrupted")
