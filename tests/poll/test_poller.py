"""The poller loop against an httpx transport and a fake clock: stored, deduplicated, gaps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from headlined import logs
from headlined.config import SourceConfig
from headlined.poll.poller import SEEN_WINDOWS, SourcePoller
from headlined.poll.rejects import RejectSampler
from headlined.poll.tables import restore
from headlined.poll.writer import PollWriter
from headlined.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Feed:
    """A rolling window: record n arrives at t0 + n / rate; the newest ``window`` are served."""

    def __init__(self, clock: Clock, rate: float, window: int = 200) -> None:
        self.clock = clock
        self.rate = rate
        self.window = window
        self.t0 = clock.now
        self.fault: Callable[[], httpx.Response | None] = lambda: None

    def arrived(self) -> int:
        return int((self.clock.now - self.t0) * self.rate)

    def handler(self, request: httpx.Request) -> httpx.Response:
        fault = self.fault()
        if fault is not None:
            return fault
        n = self.arrived()
        items = [
            {"id": i, "ts": self.t0 + i / self.rate, "v": i * 0.5}
            for i in range(max(0, n - self.window), n)
        ][::-1]
        return httpx.Response(200, json={"data": items})


def source(**overrides: Any) -> SourceConfig:
    fields: dict[str, Any] = {
        "name": "feed",
        "url": "http://feed.test/x",
        "records": "data",
        "key": ["id"],
        "time": "ts",
        "window": 200,
        "min_interval": "1s",
        "max_interval": "1m",
    }
    fields.update(overrides)
    return SourceConfig.model_validate(fields)


async def run_polls(
    tmp_path: Path, feed: Feed, clock: Clock, polls: int, cfg: SourceConfig | None = None
) -> tuple[Store, SourcePoller]:
    store = Store(tmp_path / "h.duckdb")
    await store.open()
    writer = PollWriter(store, tmp_path / "journal")
    await writer.start()
    client = httpx.AsyncClient(transport=httpx.MockTransport(feed.handler))
    poller = SourcePoller(
        cfg or source(),
        client,
        writer,
        RejectSampler(tmp_path / "rejected"),
        clock=clock,
        sleep=clock.sleep,
    )
    poller.restore(await store.call(lambda c: restore(c, "feed", 400)))
    for _ in range(polls):
        await poller.poll_once()
        clock.now += poller.state.interval or 1.0
    await writer.close()
    await client.aclose()
    return store, poller


def polled(tmp_path: Path, feed: Feed, clock: Clock, polls: int, sql: str) -> list[tuple[Any, ...]]:
    """Poll ``polls`` times, then what ``sql`` finds in the database."""

    async def scenario() -> list[tuple[Any, ...]]:
        store, _ = await run_polls(tmp_path, feed, clock, polls)
        rows = await store.call(lambda c: c.execute(sql).fetchall())
        await store.close()
        return rows

    return asyncio.run(scenario())


@pytest.mark.parametrize("rate", [0.1, 2.0, 20.0, 80.0])
def test_steady_feed_loses_nothing(tmp_path: Path, rate: float) -> None:
    clock = Clock()
    feed = Feed(clock, rate)

    [(count, distinct, first, gaps)] = polled(
        tmp_path,
        feed,
        clock,
        120,
        "SELECT count(*), count(DISTINCT record_key), min(record_key::JSON->>0), "
        "(SELECT count(*) FROM gaps) FROM messages",
    )
    arrived = feed.arrived()
    # The last poll happened one interval before the end: everything before it is stored.
    assert count == distinct
    assert first == "0"
    assert gaps == 0
    assert arrived - count <= rate * 60 + 1  # at most one max_interval of records not yet polled


def test_fast_feed_reports_gap_with_estimate(tmp_path: Path) -> None:
    clock = Clock()
    feed = Feed(clock, rate=500.0)  # 200 / 500 = 0.4 s window, min_interval 1 s: loss

    gaps = polled(
        tmp_path, feed, clock, 5, "SELECT last_seen_key, first_new_key, est_missing FROM gaps"
    )
    assert len(gaps) == 3  # polls 3-5: the first saw an empty feed, the second the first data
    for last, first, est in gaps:
        true_missing = json.loads(first)[0] - json.loads(last)[0] - 1
        assert est == true_missing
        assert true_missing == pytest.approx(300, abs=2)


def test_restart_reports_downtime_loss(tmp_path: Path) -> None:
    clock = Clock()
    feed = Feed(clock, rate=5.0)

    async def scenario() -> tuple[int, list[tuple[Any, ...]]]:
        store, _ = await run_polls(tmp_path, feed, clock, polls=10)
        await store.close()
        clock.now += 600  # down for ten minutes: 3000 records, a 200 window
        store, _ = await run_polls(tmp_path, feed, clock, polls=3)
        rows = await store.call(lambda c: c.execute("SELECT est_missing FROM gaps").fetchall())
        count = await store.call(lambda c: c.execute("SELECT count(*) FROM messages").fetchone())
        await store.close()
        return int(count[0]) if count else 0, rows

    _, gaps = asyncio.run(scenario())
    assert len(gaps) == 1
    assert gaps[0][0] == pytest.approx(3000 - 200, rel=0.05)


BAD = {
    "not_json": lambda: httpx.Response(200, content=b"<html>oops</html>"),
    "not_utf8": lambda: httpx.Response(200, content=b'{"data": ["\xff"]}'),
    "missing_records_path": lambda: httpx.Response(200, json={"items": []}),
    "not_a_list": lambda: httpx.Response(200, json={"data": {"id": 1}}),
    "http_5xx": lambda: httpx.Response(503, content=b"maintenance"),
    "http_4xx": lambda: httpx.Response(404, content=b"no such feed"),
    "too_large": lambda: httpx.Response(200, content=b"[" + b" " * 2_000_000 + b"]"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_is_counted_sampled_and_logged_once(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    feed = Feed(clock, rate=1.0)
    polls = {"n": 0}

    def fault() -> httpx.Response | None:
        polls["n"] += 1
        return BAD[kind]() if 3 <= polls["n"] < 12 else None

    feed.fault = fault
    cfg = source(max_response_bytes=1_000_000)

    async def scenario() -> list[tuple[Any, ...]]:
        store, _ = await run_polls(tmp_path, feed, clock, polls=20, cfg=cfg)
        rows = await store.call(
            lambda c: c.execute(
                "SELECT error FROM fetch_summary WHERE error IS NOT NULL"
            ).fetchall()
        )
        total = await store.call(
            lambda c: c.execute(
                "SELECT count(*) = count(DISTINCT record_key) FROM messages"
            ).fetchall()
        )
        await store.close()
        assert total == [(True,)]
        return rows

    errors = asyncio.run(scenario())
    assert errors, "failures are recorded in fetch_summary"
    assert all(e[0].startswith(kind) for e in errors)
    out = capsys.readouterr().out
    assert out.count("poll_failed") == 1, "logged once per streak"
    assert out.count("poll_recovered") == 1
    samples = list((tmp_path / "rejected" / "feed").glob("*.txt"))
    assert len(samples) == 1
    assert f"kind: {kind}" in samples[0].read_text(errors="replace")


def test_records_without_key_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    clock = Clock()
    feed = Feed(clock, rate=1.0)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": 1}, {"noid": 2}, {"id": 3}]})

    feed.handler = handler  # type: ignore[method-assign]

    rows = polled(
        tmp_path, feed, clock, 2, "SELECT (SELECT count(*) FROM messages), error FROM fetch_summary"
    )
    assert rows[0][0] == 2
    assert "bad_records: 1 rejected" in rows[0][1]


def test_duplicate_already_stored_is_not_stored_twice(tmp_path: Path) -> None:
    """A record stored long ago (no longer remembered) that comes back is not doubled."""
    clock = Clock()
    feed = Feed(clock, rate=1.0)

    async def scenario() -> list[tuple[Any, ...]]:
        store, poller = await run_polls(tmp_path, feed, clock, polls=3)
        await store.close()
        store = Store(tmp_path / "h.duckdb")
        await store.open()
        writer = PollWriter(store, tmp_path / "journal")
        await writer.start()
        old = {"data": [{"id": 0, "ts": feed.t0}, {"id": 10_000, "ts": clock.now}]}
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=old))
        )
        fresh = SourcePoller(
            source(), client, writer, RejectSampler(tmp_path / "r"), clock=clock, sleep=clock.sleep
        )  # remembers nothing
        await fresh.poll_once()
        await writer.close()
        await client.aclose()
        rows = await store.call(
            lambda c: c.execute(
                "SELECT record_key, count(*) FROM messages WHERE record_key IN ('[0]', '[10000]') "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        news = await store.call(
            lambda c: c.execute(
                "SELECT new FROM fetch_summary ORDER BY started_at DESC LIMIT 1"
            ).fetchall()
        )
        await store.close()
        del poller
        return rows + news

    assert asyncio.run(scenario()) == [("[0]", 1), ("[10000]", 1), (1,)]


@pytest.mark.parametrize(("api_window", "level"), [(100, "warning"), (300, "info"), (200, None)])
def test_window_the_api_contradicts_is_said_once_and_a_smaller_one_adopted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api_window: int, level: str | None
) -> None:
    logs.configure("info", mode="json")
    clock = Clock()
    feed = Feed(clock, rate=60.0, window=api_window)  # the config says window: 200

    async def scenario() -> tuple[SourcePoller, list[tuple[Any, ...]]]:
        store, poller = await run_polls(tmp_path, feed, clock, polls=40)
        rows = await store.call(
            lambda c: c.execute(
                "SELECT overlap FROM fetch_summary ORDER BY started_at DESC LIMIT 10"
            ).fetchall()
        )
        await store.close()
        return poller, rows

    poller, last_overlaps = asyncio.run(scenario())
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines if "window_misconfigured" in line]
    if level is None:
        assert events == []
        return
    assert len(events) == 1
    assert events[0]["observed"] == api_window
    assert events[0]["action"] == f"set window: {api_window} for this source"
    assert events[0]["level"] == level
    # Only a smaller real window is adopted: then polls overlap again, and gaps could show.
    assert poller.limits.window == min(api_window, 200)
    assert all(overlap > 0 for (overlap,) in last_overlaps)
    # The keys remembered (and restored after a restart) follow the window in use.
    assert poller.keys_remembered == SEEN_WINDOWS * poller.limits.window
    assert len(poller._seen) == poller.keys_remembered  # full, and no larger


@pytest.mark.parametrize(("key", "warned"), [(["station"], True), (["station", "id"], False)])
def test_a_key_shared_by_different_records_is_warned_about_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: list[str], warned: bool
) -> None:
    logs.configure("info", mode="json")
    clock = Clock()
    feed = Feed(clock, rate=5.0)
    served = feed.handler

    def handler(request: httpx.Request) -> httpx.Response:
        items = served(request).json()["data"]
        return httpx.Response(200, json={"data": [{**r, "station": r["id"] % 3} for r in items]})

    feed.handler = handler  # type: ignore[method-assign]
    store, _ = asyncio.run(run_polls(tmp_path, feed, clock, polls=10, cfg=source(key=key)))
    asyncio.run(store.close())
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines if "key_not_unique" in line]
    assert len(events) == int(warned)
    if warned:
        assert events[0]["key"] == ["station"]
        assert events[0]["level"] == "warning"
        assert "add fields to key" in events[0]["action"]


@pytest.mark.parametrize(("field", "problem"), [("ts", None), ("created", "no field 'created'")])
def test_a_time_field_that_gives_no_time_is_warned_about_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, problem: str | None
) -> None:
    logs.configure("info", mode="json")
    clock = Clock()
    feed = Feed(clock, rate=5.0)
    store, _ = asyncio.run(run_polls(tmp_path, feed, clock, polls=5, cfg=source(time=field)))
    times = asyncio.run(
        store.call(lambda c: c.execute("SELECT count(record_time) FROM messages").fetchone())
    )
    asyncio.run(store.close())
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines if "time_unusable" in line]
    if problem is None:
        assert events == []
        assert times is not None
        assert times[0] > 0
        return
    assert len(events) == 1
    assert problem in events[0]["problem"]
    assert events[0]["field"] == field
    assert times == (0,)


def test_awkward_records_are_stored_and_polling_goes_on(tmp_path: Path) -> None:
    """Once, each of these stopped a source: a lone surrogate made every commit fail, a key
    of "²" made every poll raise."""
    clock = Clock()
    feed = Feed(clock, rate=2.0)
    odd = (
        b'{"data": [{"id": "\\u00b2", "ts": 1}, {"id": "lone", "v": "x\\ud800"},'
        b' {"id": 123456789012345678901234567890, "v": NaN}]}'
    )
    first = True

    def fault() -> httpx.Response | None:
        nonlocal first
        if first:
            first = False
            return httpx.Response(200, content=odd)
        return None

    feed.fault = fault
    rows = polled(
        tmp_path,
        feed,
        clock,
        6,
        "SELECT record_key, payload->>'v' FROM messages WHERE source = 'feed' ORDER BY id",
    )
    assert sorted(rows[:3]) == [
        ('["lone"]', "x?"),  # DuckDB stores no lone surrogate: it becomes "?"
        ('["²"]', None),
        ("[123456789012345678901234567890]", None),  # NaN is not JSON: stored as null
    ]
    assert len(rows) > 3  # and the feed's own records after them
