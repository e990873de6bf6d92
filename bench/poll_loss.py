"""Records lost by headlined vs a fixed 60 s poller, CPU per poll, and the daemon's RSS.

    .venv/bin/python bench/poll_loss.py [--hours 1] [--rss-seconds 60]

1. Loss: the same simulated feeds (headlined.demo.model models, window 200, jittered arrivals,
   one with bursts) are polled in virtual time by the real SourcePoller (real schedule, gap
   detection, journal and DuckDB; HTTP through an httpx MockTransport) and by a fixed 60 s
   poller. A record is lost when it left the window before any poll saw it.
2. CPU per poll of a 200-record response (half of it new, the steady state), through the
   whole poll path: HTTP (an httpx MockTransport: no socket), parsing, comparing, the journal
   commit (write and fdatasync) and the journal's application to DuckDB, all threads
   counted; back to back, then with 10 ms idle before each poll; then both again over a
   real loopback socket to a server process. Baseline in the same run and the same way:
   ``json.loads`` of the same body.
3. Peak RSS of a real ``headlined run`` polling seven real HTTP feeds on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.server
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from headlined import logs
from headlined.config import SourceConfig
from headlined.demo.model import FeedModel
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape, source_fragment
from headlined.poll import fetch
from headlined.poll.poller import SourcePoller
from headlined.poll.records import record_key
from headlined.poll.rejects import RejectSampler
from headlined.poll.writer import PollWriter
from headlined.store import Store
from tests.support.daemon_process import Daemon, write_config

RATES = [1.0, 5.0, 10.0, 20.0, 50.0]
WINDOW = 200
MIN_INTERVAL = 1.0
T0 = 1_800_000_000.0


PACED_IDLE_S = 0.01  # the paced CPU measurement idles this long before each poll


class VirtualClock:
    """Virtual time: sleeping advances it instantly."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def config_for(spec: FeedSpec) -> SourceConfig:
    fragment = source_fragment(spec.shape)
    return SourceConfig.model_validate(
        {
            "name": spec.name,
            "url": f"http://bench.invalid/{spec.name}",
            "records": fragment["records"],
            "key": fragment["key"],
            "time": fragment["time"],
            "window": spec.window,
            "min_interval": f"{MIN_INTERVAL:g}s",
            "max_interval": "5m",
        }
    )


def seen_keys(model: FeedModel, t: float) -> set[str]:
    return {record_key(list(model.key_of(r))) for r in model.window_at(t)}


def lost(model: FeedModel, seen: set[str], start: float, end: float, window: int) -> int:
    """Records visible at some time in [start, end] but never seen by any poll."""
    keys = [record_key(list(k)) for k in model.all_keys_until(end)]
    first = max(0, model.arrivals_until(start) - window)
    last = max(0, len(keys) - window)  # still in the window at the end: not lost yet
    return sum(1 for k in keys[first:last] if k not in seen)


async def headlined_loss(spec: FeedSpec, hours: float, workdir: Path) -> tuple[int, int, int]:
    """(lost, polls, gaps) for the real poller over ``hours`` of virtual time."""
    model = FeedModel(spec)
    clock = VirtualClock(T0)

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=model.response_at(clock.now))

    poller, writer, client, store = await _poller(
        spec, clock, httpx.MockTransport(handler), workdir
    )
    seen: set[str] = set()
    end = T0 + hours * 3600
    while clock.now < end:
        seen |= seen_keys(model, clock.now)
        await poller.poll_once()
        await clock.sleep(poller.state.interval or MIN_INTERVAL)  # the journal applies meanwhile
    await writer.sync()
    stored = await store.call(
        lambda c: c.execute("SELECT count(*), (SELECT count(*) FROM gaps) FROM messages").fetchone()
    )
    await _close(writer, client, store)
    assert stored is not None
    assert stored[0] == len(seen), "everything a poll saw is stored"
    return lost(model, seen, T0, clock.now, spec.window), poller.counters.polls, int(stored[1])


def fixed_loss(spec: FeedSpec, hours: float, every: float = 60.0) -> int:
    """Records lost by a poller that asks every ``every`` seconds, like the old cron job."""
    model = FeedModel(spec)
    seen: set[str] = set()
    t = T0
    while t < T0 + hours * 3600:
        seen |= seen_keys(model, t)
        t += every
    return lost(model, seen, T0, t - every, spec.window)


@dataclass(frozen=True)
class CpuPerPoll:
    """Milliseconds of CPU per poll: all threads, and where they went."""

    total: float
    event_loop: float
    duckdb_writer: float
    baseline: float
    """``json.loads`` of the same body."""

    @property
    def other_threads(self) -> float:
        """The journal's fdatasync thread and DuckDB's own workers."""
        return self.total - self.event_loop - self.duckdb_writer


CPU_SPEC = FeedSpec("cpu", rate=100.0, shape=Shape.DATA, seed=7, t0=T0 - 100)
CPU_WARMUP = 20  # polls before the clock starts: imports, first DuckDB statements


def cpu_bodies(polls: int) -> list[bytes]:
    """The responses of the CPU measurement, one per virtual second."""
    model = FeedModel(CPU_SPEC)
    return [
        json.dumps(model.response_at(T0 + step)).encode()
        for step in range(1, CPU_WARMUP + polls + 1)
    ]


class _BodyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API
    disable_nagle_algorithm = True
    server: _BodyServer

    def do_GET(self) -> None:
        body = next(self.server.bodies)
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode() + body)  # one write: no delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _BodyServer(http.server.HTTPServer):
    bodies: Iterator[bytes]


def serve_bodies(polls: int, ports: multiprocessing.Queue[int]) -> None:
    """Serve the CPU measurement's bodies in order on loopback (in a process of its own)."""
    server = _BodyServer(("127.0.0.1", 0), _BodyHandler)
    server.bodies = iter(cpu_bodies(polls))
    ports.put(server.server_address[1])
    server.serve_forever()


async def cpu_per_poll(
    workdir: Path, polls: int = 300, idle_s: float = 0.0, real_http: bool = False
) -> CpuPerPoll:
    """CPU per poll, and per ``json.loads`` of the same body.

    Bodies are rendered before the clock starts: the simulated server's JSON encoding runs
    in this process too, and is not headlined's cost. ``idle_s``: real seconds of idleness
    before each poll and each ``json.loads``, as the daemon idles between polls. Code run
    after an idle spell takes about twice the CPU time here (cold caches, a vCPU that
    slowed down), ``json.loads`` included; back to back (0) measures the work itself.
    ``real_http``: through a socket to a server in another process (whose CPU is not
    counted) rather than an httpx MockTransport in this one.
    """
    bodies = cpu_bodies(polls)
    served = iter(bodies)

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=next(served), headers={"content-type": "application/json"}
        )

    server = None
    url = None
    if real_http:
        context = multiprocessing.get_context("spawn")
        ports: multiprocessing.Queue[int] = context.Queue()
        server = context.Process(target=serve_bodies, args=(polls, ports), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{ports.get(timeout=60)}/feed"
    clock = VirtualClock(T0)
    transport = None if real_http else httpx.MockTransport(handler)
    poller, writer, client, store = await _poller(CPU_SPEC, clock, transport, workdir, url)
    for _ in range(CPU_WARMUP):
        await clock.sleep(1.0)
        await poller.poll_once()
    await writer.sync()
    gc.freeze()  # as the daemon does once it has started
    writer_thread = await store.call(lambda _conn: time.thread_time())
    loop_thread = time.thread_time()
    started = time.process_time()
    for _ in range(polls):
        # 100 new records of 200 per poll. The sleep lets the journal's task run between
        # polls: its fdatasyncs and its applications to DuckDB are counted. (Back to back,
        # an application lasts many virtual seconds, so fewer, larger segments are applied.)
        clock.now += 1.0
        await asyncio.sleep(idle_s)
        await poller.poll_once()
    await writer.sync()  # the journal's last segment into DuckDB: part of the cost
    total = time.process_time() - started
    assert poller.counters.errors == 0, "every poll got its 200 records"
    loop_thread = time.thread_time() - loop_thread
    writer_thread = await store.call(lambda _conn: time.thread_time()) - writer_thread
    await _close(writer, client, store)
    if server is not None:
        server.terminate()
        server.join()
    baseline = 0.0
    for body in bodies[CPU_WARMUP:]:
        await asyncio.sleep(idle_s)  # the loop is idle: nothing else runs
        started = time.process_time()
        json.loads(body)
        baseline += time.process_time() - started
    ms = 1000 / polls
    return CpuPerPoll(total * ms, loop_thread * ms, writer_thread * ms, baseline * ms)


async def _poller(
    spec: FeedSpec,
    clock: VirtualClock,
    transport: httpx.AsyncBaseTransport | None,
    workdir: Path,
    url: str | None = None,
) -> tuple[SourcePoller, PollWriter, httpx.AsyncClient, Store]:
    store = Store(workdir / f"{spec.name}.duckdb")
    await store.open()
    writer = PollWriter(store, workdir / f"{spec.name}-journal", clock=clock)
    await writer.start()
    client = fetch.client(transport)
    config = config_for(spec)
    poller = SourcePoller(
        config if url is None else config.model_copy(update={"url": url}),
        client,
        writer,
        RejectSampler(workdir / "rej"),
        clock=clock,
        sleep=clock.sleep,
    )
    return poller, writer, client, store


async def _close(writer: PollWriter, client: httpx.AsyncClient, store: Store) -> None:
    await writer.close()
    await client.aclose()
    await store.close()


SEVEN = [
    FeedSpec("f1", rate=20.0, shape=Shape.DATA, seed=1),
    FeedSpec("f2", rate=5.0, shape=Shape.RESULT_ITEMS, error_rate=0.05, seed=2),
    FeedSpec("f3", rate=1.0, shape=Shape.BARE_LIST, burst=(20.0, 150), seed=3),
    FeedSpec("f4", rate=0.1, shape=Shape.NO_TIME, seed=4),
    FeedSpec("f5", rate=10.0, shape=Shape.DATA, slow_rate=0.1, slow_s=1.5, seed=5),
    FeedSpec("f6", rate=2.0, shape=Shape.RESULT_ITEMS, burst=(30.0, 150), seed=6),
    FeedSpec("f7", rate=3.0, shape=Shape.NO_TIME, seed=7),
]


def daemon_rss(workdir: Path, seconds: float) -> tuple[float, float]:
    """(peak RSS MB, CPU seconds) of a real daemon polling seven loopback feeds."""
    t0 = time.time() - 30
    specs = [FeedSpec(**{**s.__dict__, "t0": t0}) for s in SEVEN]
    with DemoFeedServer(specs) as server:
        daemon = Daemon(write_config(workdir / "h.yaml", server, specs))
        daemon.wait_started()
        time.sleep(seconds)
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        stat = Path(f"/proc/{daemon.proc.pid}/stat").read_text().split()
        assert daemon.stop() == 0
    peak_kb = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
    )
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[13]) + int(stat[14])) / ticks
    return peak_kb / 1024, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=1.0, help="virtual hours per feed")
    parser.add_argument("--rss-seconds", type=float, default=60.0)
    args = parser.parse_args()
    logs.configure("error")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(
            f"records lost over {args.hours:g} h of virtual time, window {WINDOW}, "
            f"min_interval {MIN_INTERVAL:g}s"
        )
        print(
            f"{'rate/s':>7} {'arrived':>8} {'headlined':>10} {'polls':>6} {'gaps':>5} "
            f"{'fixed 60s':>10}  window/rate >= 3 x min_interval?"
        )
        for rate in RATES:
            for burst in (None, (60.0, 150)):
                spec = FeedSpec(
                    f"r{rate:g}{'b' if burst else ''}",
                    rate=rate,
                    window=WINDOW,
                    shape=Shape.DATA,
                    seed=int(rate),
                    burst=burst,
                    t0=T0 - 10,
                )
                lost_h, polls, gaps = asyncio.run(headlined_loss(spec, args.hours, work))
                lost_f = fixed_loss(spec, args.hours)
                arrived = FeedModel(spec).arrivals_until(T0 + args.hours * 3600)
                label = f"{rate:g}" + (" +burst" if burst else "")
                ok = WINDOW / rate >= 3 * MIN_INTERVAL
                print(
                    f"{label:>7} {arrived:>8} {lost_h:>10} {polls:>6} {gaps:>5} "
                    f"{lost_f:>10}  {'yes' if ok else 'no'}"
                )
        print(
            "\nCPU per poll of a 200-record response (100 new), whole path incl. journal and DuckDB"
        )
        paced = f"{PACED_IDLE_S * 1000:g} ms idle before each"
        for idle_s, how, real in (
            (0.0, "back to back, httpx MockTransport", False),
            (PACED_IDLE_S, f"{paced}, httpx MockTransport", False),
            (0.0, "back to back, real loopback HTTP", True),
            (PACED_IDLE_S, f"{paced}, real loopback HTTP", True),
        ):
            cpu = asyncio.run(cpu_per_poll(work, idle_s=idle_s, real_http=real))
            print(
                f"  {how}: {cpu.total:.2f} ms; json.loads of the body alone: "
                f"{cpu.baseline:.2f} ms (ratio {cpu.total / cpu.baseline:.1f}x)\n    of which "
                f"the event loop {cpu.event_loop:.2f} ms, the DuckDB writer thread "
                f"{cpu.duckdb_writer:.2f} ms, other threads (journal fdatasync, DuckDB "
                f"workers) {cpu.other_threads:.2f} ms"
            )
        rss, daemon_cpu = daemon_rss(work, args.rss_seconds)
        print(
            f"daemon with 7 sources on loopback for {args.rss_seconds:g} s: peak RSS "
            f"{rss:.0f} MB, CPU {daemon_cpu:.1f} s "
            f"({daemon_cpu / args.rss_seconds * 100:.1f}% of a core)"
        )
        print(
            f"bench process peak RSS: "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
