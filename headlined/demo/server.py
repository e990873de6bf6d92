"""`DemoFeedServer`: serves `FeedModel` windows over HTTP/1.1 on loopback, from a thread.

Time comes from an injectable clock, read when a request arrives, so tests can drive it;
each request's `Fault` (HTTP 500, delay) is decided by the model, per feed and in order.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

from headlined import logs
from headlined.demo.model import FeedModel
from headlined.demo.spec import FeedSpec, source_fragment

__all__ = ["DemoFeedServer"]

log = logs.get("demofeed")


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
        log.debug("demo_feed_http", client=self.address_string(), detail=format % args)


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
        exc = sys.exception()
        if isinstance(exc, OSError):
            log.debug("demo_feed_connection_failed", client=client_address, exc_info=exc)
        else:
            log.error("demo_feed_answer_failed", client=client_address, exc_info=exc)

    def close_connections(self, timeout: float) -> None:
        """Shut down every open connection and wait for handler threads to release them."""
        with self._connections_changed:
            for conn in self._connections:
                # The handler thread owns the socket and closes it; shutting it down only
                # wakes that thread from a blocking read, write or keep-alive wait.
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    log.debug("demo_feed_connection_gone", exc_info=True)
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
