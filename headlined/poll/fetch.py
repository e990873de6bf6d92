"""One poll's HTTP request: a timeout, a size cap, and retries that respect the window.

See docs/poller.md.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import http.cookiejar
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import tenacity

from headlined import __version__
from headlined.config import SourceConfig

SAMPLE_BYTES = 64 * 1024  # how much of a bad body is kept for a person to look at


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: JSON APIs polled by a daemon are no browser session,
    and reading every response's Set-Cookie headers was a tenth of httpx's CPU per poll."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep no cookie."""


def client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The HTTP client every source shares (``transport``: a test's or benchmark's)."""
    return httpx.AsyncClient(
        headers={"User-Agent": f"headlined/{__version__}", "Accept": "application/json"},
        cookies=_NoCookies(),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        transport=transport,
    )


@dataclass(frozen=True, slots=True)
class Response:
    """A successful response, read whole."""

    status: int
    body: bytes
    attempts: int


class FetchError(Exception):
    """A poll that did not produce a usable response."""

    def __init__(
        self,
        kind: str,
        detail: str,
        status: int | None = None,
        retry_after: float | None = None,
        sample: bytes = b"",
    ) -> None:
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.sample = sample
        self.attempts = 1
        super().__init__(f"{kind}: {detail}")

    @property
    def retryable(self) -> bool:
        """Whether trying again soon may succeed."""
        return self.kind in ("timeout", "connect", "http_5xx", "http_429", "transport")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now (it may be seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


async def get_once(client: httpx.AsyncClient, source: SourceConfig) -> Response:
    """One GET with a whole-request deadline and a body size cap."""
    try:
        async with asyncio.timeout(source.timeout):
            async with client.stream("GET", _url(source.url), headers=source.headers) as resp:
                body = await _read_capped(resp, source.max_response_bytes)
    except TimeoutError:
        raise FetchError("timeout", f"no complete response within {source.timeout:g}s") from None
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", type(exc).__name__) from None
    except httpx.ConnectError as exc:
        raise FetchError("connect", str(exc) or type(exc).__name__) from None
    except httpx.TransportError as exc:
        raise FetchError("transport", f"{type(exc).__name__}: {exc}") from None
    status = resp.status_code
    if status == 429 or status >= 500:
        raise FetchError(
            "http_429" if status == 429 else "http_5xx",
            f"HTTP {status}",
            status=status,
            retry_after=parse_retry_after(resp.headers.get("retry-after"), time.time()),
            sample=body[:SAMPLE_BYTES],
        )
    if status >= 400 or status < 200:
        raise FetchError("http_4xx", f"HTTP {status}", status=status, sample=body[:SAMPLE_BYTES])
    return Response(status, body, 1)


async def _read_capped(resp: httpx.Response, cap: int) -> bytes:
    declared = resp.headers.get("content-length", "")
    # A declared oversize is refused after reading only enough to keep a sample of it.
    limit = min(cap, SAMPLE_BYTES) if declared.isdigit() and int(declared) > cap else cap
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            # Decoded size counts, so a small gzip bomb is stopped too.
            sample = b"".join(chunks)[:SAMPLE_BYTES]
            detail = f"body over {cap} bytes" + (
                f" (Content-Length {declared})" if declared else ""
            )
            raise FetchError("too_large", detail, resp.status_code, None, sample)
    return b"".join(chunks)


@functools.lru_cache(maxsize=1024)
def _url(text: str) -> httpx.URL:
    # Parsed once per source, not once per request: parsing was a tenth of a poll's CPU.
    return httpx.URL(text)


MAX_ATTEMPTS = 8  # of one poll, whatever the budget


class _StopBefore(tenacity.stop.stop_base):
    """Stop when the next attempt would start at or after ``deadline`` on ``clock``.

    tenacity's own ``stop_before_delay`` reads the real monotonic clock; this one reads the
    poller's, so a test's virtual time (and its sleep) decide it too.
    """

    def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() + retry_state.upcoming_sleep >= self.deadline


def _wait(budget: float, rng: Callable[[], float]) -> Callable[[tenacity.RetryCallState], float]:
    exponential = tenacity.wait_exponential_jitter(
        multiplier=0.25, max=max(0.5, budget / 4), jitter=0
    )

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, FetchError) and error.retry_after is not None:
            return error.retry_after
        return float(exponential(state)) * (0.5 + rng() / 2)

    return wait


async def fetch(
    client: httpx.AsyncClient,
    source: SourceConfig,
    budget: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> Response:
    """GET the source, retrying what may pass for at most ``budget`` seconds."""
    deadline = clock() + budget
    try:
        # Most polls succeed at once: tenacity's machinery (a tenth of a poll's CPU) waits
        # for the first failure.
        return await get_once(client, source)
    except FetchError as first:
        if not first.retryable:
            raise
        failed = first
    retrying = tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, FetchError) and e.retryable),
        stop=_StopBefore(deadline, clock) | tenacity.stop_after_attempt(MAX_ATTEMPTS),
        wait=_wait(budget, rng),
        sleep=sleep,
        reraise=True,
    )
    attempts = 0
    try:
        async for attempt in retrying:
            with attempt:
                attempts += 1
                if attempts == 1:
                    raise failed  # the attempt made above: tenacity's policies go on from it
                response = await get_once(client, source)
    except FetchError as exc:
        exc.attempts = attempts
        raise
    return Response(response.status, response.body, attempts)
