"""One poll's request through the daemon's client, against a scripted server on 127.0.0.1.

The socket cases a MockTransport cannot show: keep-alive, chunked and gzip bodies, bodies
cut short, garbage, silence, TLS and proxies.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trustme

from headlined.poll.fetch import FetchError, client, get_once
from tests.poll.test_fetch import source

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Server:
    """Answers each request with the next scripted reply; records what it was sent."""

    def __init__(self, replies: list[bytes | Reply]) -> None:
        self.replies = replies
        self.heads: list[bytes] = []
        self.connections = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                self.heads.append(head)
                reply = self.replies.pop(0)
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
                    return
        except ConnectionError:
            return  # the client hung up: what some tests do on purpose
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    replies: list[bytes | Reply], tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(replies)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}"
    async with listener:
        yield server


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{head}\r\n".encode() + body


async def outcome(server: Server, path: str = "/feed", **overrides: object) -> bytes | str:
    """The body of one GET through the daemon's client, or its FetchError's kind."""
    async with client() as shared:
        return await get(shared, server, path, **overrides)


async def get(
    shared: httpx.AsyncClient, server: Server, path: str = "/feed", **overrides: object
) -> bytes | str:
    try:
        return (await get_once(shared, source(url=server.url + path, **overrides))).body
    except FetchError as exc:
        return exc.kind


def test_keep_alive_connection_is_reused_and_the_headers_sent() -> None:
    async def run() -> tuple[list[bytes | str], Server]:
        async with serving([ok(b'{"a":1}'), ok(b'{"a":2}')]) as server, client() as shared:
            bodies = [
                await get(shared, server, headers={"Authorization": "Bearer t"}),
                await get(shared, server),
            ]
        return bodies, server

    bodies, server = asyncio.run(run())
    assert bodies == [b'{"a":1}', b'{"a":2}']
    assert server.connections == 1
    head = server.heads[0].decode().lower()
    assert head.startswith("get /feed http/1.1\r\n")
    assert "user-agent: headlined/" in head
    assert "accept: application/json" in head
    assert "authorization: bearer t" in head
    assert "accept-encoding: gzip" in head


def test_chunked_body_is_joined() -> None:
    reply = (
        b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n'
    )

    async def run() -> bytes | str:
        async with serving([reply]) as server:
            return await outcome(server)

    assert asyncio.run(run()) == b'{"a":1}'


def test_gzip_is_decoded_and_the_cap_counts_decoded_bytes() -> None:
    small = gzip.compress(b'{"a":1}')
    bomb = gzip.compress(b" " * 100_000)  # ~100 bytes on the wire, 100 KB decoded

    async def run() -> list[bytes | str]:
        async with (
            serving(
                [ok(small, "content-encoding: gzip"), ok(bomb, "content-encoding: gzip")]
            ) as server,
            client() as shared,
        ):
            return [await get(shared, server), await get(shared, server)]

    assert asyncio.run(run()) == [b'{"a":1}', "too_large"]


def test_a_connection_left_unread_is_not_reused() -> None:
    async def run() -> tuple[list[bytes | str], int]:
        # More than one read of the socket: the client stops before the end.
        async with serving([ok(b"x" * 1_000_000), ok(b'{"a":1}')]) as server, client() as shared:
            results = [await get(shared, server), await get(shared, server)]
        return results, server.connections

    assert asyncio.run(run()) == (["too_large", b'{"a":1}'], 2)


def test_redirect_is_followed() -> None:
    async def run() -> tuple[bytes | str, list[bytes]]:
        async with serving(
            [b"HTTP/1.1 302 Found\r\nlocation: /moved\r\ncontent-length: 0\r\n\r\n", ok(b"{}")]
        ) as server:
            return await outcome(server), server.heads

    body, heads = asyncio.run(run())
    assert body == b"{}"
    assert heads[1].startswith(b"GET /moved ")


def test_set_cookie_is_not_sent_back() -> None:
    async def run() -> list[bytes]:
        async with serving([ok(b"{}", "set-cookie: s=1; Path=/"), ok(b"{}")]) as server:
            async with client() as shared:
                await get(shared, server)
                await get(shared, server)
            return server.heads

    assert b"cookie" not in asyncio.run(run())[1].lower()


def test_refused_connection_is_a_connect_error() -> None:
    async def run() -> bytes | str:
        async with serving([]) as server:
            url = server.url
        closed = Server([])
        closed.url = url  # the listener is gone: nothing accepts on that port now
        return await outcome(closed)

    assert asyncio.run(run()) == "connect"


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (b'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{"cut', "transport"),
        (b"garbage\r\n\r\n", "transport"),
        (b"", "transport"),  # closed without a word
    ],
)
def test_broken_responses_are_transport_errors(reply: bytes, kind: str) -> None:
    async def close_after(writer: asyncio.StreamWriter) -> None:
        writer.write(reply)
        await writer.drain()

    async def run() -> bytes | str:
        async with serving([close_after]) as server:
            return await outcome(server)

    assert asyncio.run(run()) == kind


def test_silent_server_is_a_timeout() -> None:
    async def silent(_writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def run() -> bytes | str:
        async with serving([silent]) as server:
            return await outcome(server, timeout="300ms")

    assert asyncio.run(run()) == "timeout"


def test_https_checks_the_certificate_against_ssl_cert_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(tls)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))

    async def run() -> tuple[bytes | str, bytes | str]:
        async with serving([ok(b"{}")], tls) as server:
            untrusted = await outcome(server)  # certifi's CAs: this one is not among them
            monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # read when the client is made
            trusted = await outcome(server)
        return untrusted, trusted

    assert asyncio.run(run()) == ("connect", b"{}")


def test_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> tuple[bytes, list[bytes]]:
        async with serving([ok(b"{}")]) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            async with client() as shared:
                body = (await get_once(shared, source(url="http://feed.test/x"))).body
            return body, proxy.heads

    body, heads = asyncio.run(run())
    assert body == b"{}"
    assert heads[0].startswith(b"GET http://feed.test/x HTTP/1.1\r\n")


def test_no_proxy_hosts_are_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async def run() -> bytes | str:
        async with serving([ok(b"{}")]) as server:
            return await outcome(server)

    assert asyncio.run(run()) == b"{}"
