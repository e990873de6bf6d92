"""Tests for the loopback HTTP server that serves feed models."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from headlined import logs
from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape, source_fragment

T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 100.0)


@pytest.fixture
def server(clock: FakeClock) -> Iterator[DemoFeedServer]:
    specs = [
        FeedSpec("a", rate=2.0, shape=Shape.DATA, seed=1, t0=T0),
        FeedSpec("b", rate=0.5, shape=Shape.RESULT_ITEMS, seed=2, order="oldest_first", t0=T0),
        FeedSpec("flaky", rate=1.0, shape=Shape.BARE_LIST, error_rate=0.3, seed=7, t0=T0),
        FeedSpec("slow", rate=1.0, shape=Shape.NO_TIME, slow_rate=1.0, slow_s=0.2, t0=T0),
    ]
    with DemoFeedServer(specs, clock=clock) as running:
        yield running


@pytest.mark.integration
def test_serves_the_model_window_as_json(server: DemoFeedServer, clock: FakeClock) -> None:
    with httpx.Client() as client:
        response = client.get(server.url_for("a"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.json() == server.model("a").response_at(clock.now)
        first_newest = response.json()["data"][0]["id"]

        clock.now += 10.0
        items = client.get(server.url_for("b")).json()["result"]["items"]
        assert items == server.model("b").window_at(clock.now)
        assert items[0]["seq"] < items[-1]["seq"]
        assert client.get(server.url_for("a")).json()["data"][0]["id"] >= first_newest + 19
    assert server.request_count("a") == 2
    assert server.request_count("b") == 1


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("debug", stream=out, mode="json")
    yield out
    logs.configure("info", mode="json")


@pytest.mark.integration
def test_requests_are_logged_as_structured_debug_events(
    server: DemoFeedServer, log_lines: io.StringIO
) -> None:
    with httpx.Client() as client:
        client.get(server.url_for("a"))
    events = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    [event] = [e for e in events if e["event"] == "demo_feed_http"]
    assert (event["level"], event["component"]) == ("debug", "demofeed")
    assert '"GET /feeds/a HTTP/1.1" 200' in event["detail"]


@pytest.mark.integration
def test_keep_alive_reuses_the_connection(server: DemoFeedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/feeds/a")
        first_socket = conn.sock
        bodies = [json.loads(conn.getresponse().read())]
        for _ in range(2):
            conn.request("GET", "/feeds/a")
            assert conn.sock is first_socket
            response = conn.getresponse()
            assert response.status == 200
            bodies.append(json.loads(response.read()))
    finally:
        conn.close()
    assert bodies[0] == bodies[2]
    assert server.request_count("a") == 3


@pytest.mark.integration
def test_lists_feeds(server: DemoFeedServer) -> None:
    with httpx.Client() as client:
        listing = client.get(f"{server.base_url}/feeds").json()
    feeds = {feed["name"]: feed for feed in listing["feeds"]}
    assert list(feeds) == ["a", "b", "flaky", "slow"]
    assert feeds["b"]["url"] == server.url_for("b")
    assert feeds["b"]["source"] == source_fragment(Shape.RESULT_ITEMS)


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/feeds/nope", "/", "/feedsa", "/feeds/a/extra"])
def test_unknown_paths_are_404(server: DemoFeedServer, path: str) -> None:
    with httpx.Client() as client:
        response = client.get(f"{server.base_url}{path}")
    assert response.status_code == 404
    assert "error" in response.json()
    assert server.request_count("a") == 0


@pytest.mark.integration
def test_error_rate_follows_the_model(server: DemoFeedServer) -> None:
    model = server.model("flaky")
    with httpx.Client() as client:
        responses = [client.get(server.url_for("flaky")) for _ in range(100)]
    failed = [r.status_code == 500 for r in responses]
    assert failed == [model.request_fault(n).error for n in range(100)]
    assert 15 <= sum(failed) <= 45
    assert {r.status_code for r in responses} == {200, 500}
    assert all("error" in r.json() for r in responses if r.status_code == 500)
    assert server.request_count("flaky") == 100


@pytest.mark.integration
def test_slow_responses_are_delayed(server: DemoFeedServer) -> None:
    with httpx.Client() as client:
        started = time.monotonic()
        response = client.get(server.url_for("slow"))
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "messages" in response.json()
    assert 0.2 <= elapsed < 1.0


@pytest.mark.integration
def test_stop_is_prompt_despite_open_and_pending_connections() -> None:
    specs = [
        FeedSpec("a", rate=1.0, t0=T0),
        FeedSpec("stuck", rate=1.0, slow_rate=1.0, slow_s=30, t0=T0),
    ]
    server = DemoFeedServer(specs, clock=FakeClock(T0 + 10)).start()
    outcome: list[str] = []

    def wait_for_stuck_feed() -> None:
        with httpx.Client(timeout=10) as client:
            try:
                client.get(server.url_for("stuck"))
                outcome.append("answered")
            except httpx.HTTPError as exc:
                outcome.append(type(exc).__name__)

    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    waiter = threading.Thread(target=wait_for_stuck_feed)
    try:
        idle.request("GET", "/feeds/a")
        idle.getresponse().read()
        waiter.start()
        while server.request_count("stuck") == 0:
            time.sleep(0.005)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
        waiter.join(timeout=2)
        assert outcome == ["RemoteProtocolError"]
        with pytest.raises(httpx.ConnectError), httpx.Client() as client:
            client.get(server.url_for("a"))
    finally:
        idle.close()
        server.stop()


@pytest.mark.integration
def test_server_lifecycle_errors() -> None:
    server = DemoFeedServer([FeedSpec("a", rate=1.0)])
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port
    with pytest.raises(ValueError, match="duplicate"):
        DemoFeedServer([FeedSpec("a", rate=1.0), FeedSpec("a", rate=2.0)])
    with server:
        with pytest.raises(KeyError):
            server.url_for("b")
        with pytest.raises(RuntimeError, match="only once"):
            server.start()
