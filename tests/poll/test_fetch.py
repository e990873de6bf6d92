"""One poll's request: retries on what may pass, within the budget; no retry of the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from headlined.config import SourceConfig
from headlined.poll.fetch import MAX_ATTEMPTS, FetchError, Response, client, fetch


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def source(**overrides: object) -> SourceConfig:
    fields: dict[str, object] = {
        "name": "feed",
        "url": "http://feed.test/x",
        "records": "data",
        "key": ["id"],
        "max_response_bytes": 1024,
    }
    fields.update(overrides)
    return SourceConfig.model_validate(fields)


def get(
    responses: Iterator[httpx.Response], budget: float = 30.0, **overrides: object
) -> tuple[Response | FetchError, Clock, int]:
    """Fetch from a transport serving ``responses``: the outcome, the clock, the requests."""
    return asyncio.run(_get(responses, budget, **overrides))


async def _get(
    responses: Iterator[httpx.Response], budget: float, **overrides: object
) -> tuple[Response | FetchError, Clock, int]:
    clock = Clock()
    requests = 0

    def handler(_request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return next(responses)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        try:
            outcome: Response | FetchError = await fetch(
                client, source(**overrides), budget, clock=clock, sleep=clock.sleep
            )
        except FetchError as exc:
            outcome = exc
    return outcome, clock, requests


def ok() -> httpx.Response:
    return httpx.Response(200, content=b'{"data": []}')


def test_a_good_response_takes_one_request_and_no_wait() -> None:
    outcome, clock, requests = get(iter([ok()]))
    assert outcome == Response(200, b'{"data": []}', 1)
    assert (requests, clock.sleeps) == (1, [])


def test_5xx_is_retried_with_growing_jittered_waits() -> None:
    outcome, clock, requests = get(iter([httpx.Response(503)] * 3 + [ok()]))
    assert isinstance(outcome, Response)
    assert (outcome.attempts, requests) == (4, 4)
    assert len(clock.sleeps) == 3
    for n, wait in enumerate(clock.sleeps):
        assert 0.25 * 2**n / 2 <= wait <= 0.25 * 2**n  # exponential, jittered down to half


def test_429_waits_as_long_as_retry_after_says() -> None:
    busy = httpx.Response(429, headers={"retry-after": "7"})
    outcome, clock, _ = get(iter([busy, ok()]))
    assert isinstance(outcome, Response)
    assert clock.sleeps == [7.0]


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (lambda: httpx.Response(404), "http_4xx"),
        (lambda: httpx.Response(200, content=b"x" * 5000), "too_large"),  # declared too large
        (lambda: httpx.Response(200, content=_chunks(5, 1000)), "too_large"),  # undeclared
    ],
)
def test_what_cannot_pass_is_not_retried(response: Callable[[], httpx.Response], kind: str) -> None:
    outcome, clock, requests = get(iter([response(), ok()]))
    assert isinstance(outcome, FetchError)
    assert (outcome.kind, outcome.attempts, requests, clock.sleeps) == (kind, 1, 1, [])


def test_retries_stop_before_the_budget_runs_out() -> None:
    busy = httpx.Response(429, headers={"retry-after": "4"})
    outcome, clock, requests = get(iter([busy] * 20), budget=10.0)
    assert isinstance(outcome, FetchError)
    assert outcome.kind == "http_429"
    assert clock.sleeps == [4.0, 4.0]  # a third wait would end past 10 s
    assert (outcome.attempts, requests) == (3, 3)


def test_retries_stop_after_max_attempts() -> None:
    outcome, _, requests = get(iter([httpx.Response(500)] * 20), budget=1e6)
    assert isinstance(outcome, FetchError)
    assert (outcome.kind, outcome.status) == ("http_5xx", 500)
    assert (outcome.attempts, requests) == (MAX_ATTEMPTS, MAX_ATTEMPTS)


def test_a_connection_refused_is_retried() -> None:
    clock = Clock()
    refusals = iter([True, True, False])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(refusals):
            raise httpx.ConnectError("refused", request=request)
        return ok()

    async def scenario() -> Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await fetch(client, source(), 30.0, clock=clock, sleep=clock.sleep)

    assert asyncio.run(scenario()).attempts == 3


def test_the_shared_client_keeps_no_cookie() -> None:
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=1; Path=/"}, content=b"[]")

    async def scenario() -> None:
        async with client(httpx.MockTransport(handler)) as shared:
            for _ in range(2):
                await fetch(shared, source(), 30.0)

    asyncio.run(scenario())
    assert sent == [None, None]
