"""The daemon's way to InfluxDB's files: a connection to ``headlined-inspect``.

Through ``headlined-inspect.socket`` where it exists, else a local child at low priority.
See docs/exporter.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

from headlined import logs
from headlined.config import InfluxConfig
from headlined.influx import spawn
from headlined.influx.protocol import (
    DATA,
    RESULT,
    STDERR,
    Op,
    ProtocolError,
    Request,
    decode_json,
    read_header,
    read_payload,
)

# Only what sending the first request needs is imported up front: `headlined export` starts
# the helper as soon as it can, and imports the rest while the helper discovers.
if TYPE_CHECKING:
    from headlined.influx.chunkplan import Chunk
    from headlined.influx.datadir import Discovery, WalScan

log = logs.get("influx_reader")

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10.0
PASSED_PIPE_MODE = 0o666  # see _passable
STDERR_KEEP = 1 << 20  # influx_inspect can name thousands of skipped keys: keep a bounded part


class ReaderError(Exception):
    """The helper could not be reached, or failed; the message says why and what to do."""

    def __init__(self, message: str, kind: str = "helper") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Exported:
    """How one influx_inspect run ended: its exit code and what it wrote on stderr."""

    exit_code: int
    stderr: str


class _Connection:
    """One blocking connection to a helper (a Unix socket): requests go out, frames come
    back."""

    def __init__(self, sock: socket.socket, close: Callable[[], None], name: str) -> None:
        self._sock = sock
        self._rfile: BinaryIO = sock.makefile("rb")
        self._close = close
        self.name = name
        self.broken = False

    def call(
        self,
        request: Request,
        on_data: Callable[[bytes], None] | None = None,
        sink: int | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Send ``request``; pass ``D`` frames to ``on_data``, or write them to the file
        descriptor ``sink``; return (result, stderr). An export into a pipe ``sink`` sends
        the helper the pipe itself: influx_inspect writes into it, nothing is relayed."""
        fds: tuple[int, ...] = ()
        if request.op == "export" and sink is not None and _passable(sink):
            request = dataclasses.replace(request, passed_pipe=True)
            fds = (sink,)
        self.send(request, fds)
        return self.receive(on_data, sink)

    def send(self, request: Request, fds: tuple[int, ...] = ()) -> None:
        """Send ``request`` (and ``fds`` with it) without waiting for its reply (ReaderError
        if it cannot be)."""
        data = request.encode()
        try:
            sent = socket.send_fds(self._sock, [data], list(fds)) if fds else 0
            self._sock.sendall(data[sent:])
        except OSError as exc:
            self.broken = True
            raise ReaderError(f"{self.name}: {exc}") from None

    def receive(
        self, on_data: Callable[[bytes], None] | None = None, sink: int | None = None
    ) -> tuple[dict[str, Any], str]:
        """The reply to the request sent last, as :meth:`call` returns it."""
        try:
            return self._reply(on_data, sink)
        except (OSError, ProtocolError) as exc:
            self.broken = True
            raise ReaderError(f"{self.name}: {exc}") from None
        except ReaderError as exc:
            if exc.kind == "helper":
                self.broken = True
            raise

    def _reply(
        self, on_data: Callable[[bytes], None] | None, sink: int | None
    ) -> tuple[dict[str, Any], str]:
        stderr = bytearray()
        while header := read_header(self._rfile):
            kind, size = header
            if kind == DATA and sink is not None:
                _write_all(sink, read_payload(self._rfile, size))
                continue
            payload = read_payload(self._rfile, size)
            if kind == DATA:
                if on_data is None:
                    raise ProtocolError("line protocol in reply to a request for none")
                on_data(payload)
            elif kind == STDERR:
                stderr += payload[: max(0, STDERR_KEEP - len(stderr))]
            elif kind == RESULT:
                return decode_json(payload), stderr.decode("utf-8", "replace")
            else:
                failure = decode_json(payload)
                raise ReaderError(str(failure.get("error")), str(failure.get("kind")))
        raise ReaderError(f"{self.name} closed the connection mid-reply")

    def close(self) -> None:
        """End the connection (unblocks a thread waiting on it)."""
        self.broken = True
        self._close()
        # The reader holds the socket open until it is closed too (once a waiting read ends).
        self._rfile.close()


def _passable(sink: int) -> bool:
    """Whether ``sink`` is a pipe the helper can be sent; False (the line protocol then
    comes back in frames) where its mode cannot be set.

    The helper may run as InfluxDB's user, and influx_inspect reopens the pipe by
    /proc/self/fd/N for reading and writing (Go's os.Create), which checks the pipe's mode:
    both are opened to all. That lets no one new in. Reaching the pipe by such a name takes
    holding it or the right to trace a process that does: this one (its user or root), or
    influx_inspect, whose user can read InfluxDB's data in any case and could as well feed
    the helper's own pipe."""
    try:
        if not stat.S_ISFIFO(os.fstat(sink).st_mode):
            return False
        os.fchmod(sink, PASSED_PIPE_MODE)
    except OSError:
        return False
    return True


def _write_all(sink: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(sink, view) :]


def _connect_socket(path: Path) -> _Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        hint = (
            "is headlined-inspect.socket running? systemctl enable --now headlined-inspect.socket"
            if not isinstance(exc, PermissionError)
            else "the daemon's user must be in the socket's group (headlined)"
        )
        raise ReaderError(f"cannot connect to {path}: {exc.strerror or exc}: {hint}") from None
    sock.settimeout(None)  # an export streams for as long as it takes; progress is watched

    def close() -> None:
        with contextlib.suppress(OSError):  # already closed by the other end
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    return _Connection(sock, close, f"headlined-inspect at {path}")


def _spawn_local(
    inspect: str, *, polite: bool = True, helper: spawn.Local | None = None
) -> _Connection:
    """A connection to a local helper: ``helper`` (started already, see spawn.Early) or one
    started now."""
    if helper is None:
        try:
            helper = spawn.start(inspect, polite=polite)
        except OSError as exc:
            argv = " ".join(spawn.helper_argv(polite=polite))
            raise ReaderError(f"cannot start {argv}: {exc}") from None
    # Its input ending makes it stop influx_inspect and exit; a kill would orphan that.
    close = functools.partial(spawn.stop, helper)
    return _Connection(helper.sock, close, "headlined-inspect (local)")


async def _on_thread(conn: _Connection, work: Callable[[], T]) -> T:
    """``work`` on a worker thread; cancelled, it closes ``conn``, which frees that thread."""
    future = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # The thread blocks on the connection: closing it is what frees the thread.
        await asyncio.to_thread(conn.close)
        await asyncio.gather(future, return_exceptions=True)
        raise


class InfluxReader:
    """The export's one way to InfluxDB's files (see the module docstring)."""

    def __init__(
        self, cfg: InfluxConfig, *, polite: bool = True, early: spawn.Early | None = None
    ) -> None:
        """``polite``: a local helper runs at low CPU and IO priority (the daemon's case);
        ``headlined export`` in the foreground gives it the converter's own priority.
        ``early``: a helper started before the config was read, taken by the first local
        connection if it was started as this one needs."""
        self.cfg = cfg
        self._polite = polite
        self._early = early
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._discovering = False  # a discover request is out, its reply not read yet

    @property
    def mode(self) -> Literal["socket", "local"]:
        """``socket`` when ``influx.inspect_socket`` exists, else ``local``."""
        sock = self.cfg.inspect_socket
        return "socket" if sock is not None and sock.is_socket() else "local"

    def _open(self) -> _Connection:
        if self.mode == "socket" and self.cfg.inspect_socket is not None:
            return _connect_socket(self.cfg.inspect_socket)
        early, self._early = self._early, None
        helper = None if early is None else early.take(self.cfg.inspect, polite=self._polite)
        return _spawn_local(self.cfg.inspect, polite=self._polite, helper=helper)

    async def connect(self) -> None:
        """Reach the helper now rather than at the first request (ReaderError if it cannot
        be: the first request tries again)."""
        async with self._lock:
            await self._connected()

    async def _connected(self) -> _Connection:
        if self._conn is None or self._conn.broken:
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
                self._conn = None
            self._conn = await asyncio.to_thread(self._open)
            log.debug("influx_reader_connected", via=self._conn.name)
        return self._conn

    async def _call(
        self,
        request: Request,
        on_data: Callable[[bytes], None] | None = None,
        sink: int | None = None,
    ) -> tuple[dict[str, Any], str]:
        async with self._lock:
            conn = await self._connected()
            return await _on_thread(conn, lambda: conn.call(request, on_data, sink))

    def _request(self, op: Op, **fields: Any) -> Request:
        meta_dir = self.cfg.meta_dir or self.cfg.data_dir.parent / "meta"
        return Request(
            op=op,
            data_dir=str(self.cfg.data_dir),
            wal_dir=str(self.cfg.wal_dir),
            meta_dir=str(meta_dir),
            **fields,
        )

    def begin_discovery(self) -> None:
        """Reach the helper and send it the discover request now, without waiting (blocking,
        outside an event loop): it discovers while this process imports and opens its state
        file, and :meth:`discover` then reads the reply. Any failure is left for
        :meth:`discover` to meet again."""
        try:
            self._conn = self._open()
            self._conn.send(self._discover_request())
        except ReaderError:
            return
        self._discovering = True

    def _discover_request(self) -> Request:
        return self._request("discover", databases=tuple(self.cfg.databases))

    async def _discovery_reply(self) -> tuple[dict[str, Any], str]:
        if self._discovering:
            self._discovering = False
            async with self._lock:
                conn = self._conn
                if conn is not None and not conn.broken:
                    return await _on_thread(conn, conn.receive)
        return await self._call(self._discover_request())

    async def discover(self) -> Discovery:
        """What InfluxDB's directories hold; DataDirError if they cannot be used (yet)."""
        from headlined.influx.datadir import DataDirError, Discovery  # noqa: PLC0415  see the imports

        try:
            result, _ = await self._discovery_reply()
        except ReaderError as exc:
            if exc.kind in DataDirError.KINDS:
                raise DataDirError(exc.kind, str(exc)) from None
            raise
        try:
            return Discovery.from_json(result)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReaderError(f"discovery reply not understood: {exc!r}") from None

    async def wal_scan(self, database: str, rp: str) -> WalScan | None:
        """What a retention policy's WAL holds, read by influx_inspect itself: its time range,
        lines and their digest per hour, and types; None when it holds no point."""
        from headlined.influx.datadir import WalScan  # noqa: PLC0415  see the imports
        from headlined.influx.report import describe_exit  # noqa: PLC0415  see the imports

        result, stderr = await self._call(
            self._request("wal_scan", database=database, retention_policy=rp)
        )
        code = int(result.get("exit", -1))
        if code != 0:
            raise ReaderError(
                f"reading the WAL of {database}/{rp}: influx_inspect {describe_exit(code)}: "
                f"{stderr.strip()[-500:] or '(no message)'}"
            )
        scan = result.get("scan")
        if scan is None:
            return None
        try:
            return WalScan.from_json(scan)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReaderError(f"WAL scan reply not understood: {exc!r}") from None

    async def export(self, chunk: Chunk, out: Path) -> Exported:
        """influx_inspect export of ``chunk``, appended to ``out`` as it arrives."""
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            return await self.export_into(chunk, fd)
        finally:
            os.close(fd)

    async def export_into(self, chunk: Chunk, fd: int) -> Exported:
        """influx_inspect export of ``chunk``, written into the file descriptor ``fd`` (a
        file, or a pipe the converter reads) as it arrives; ``fd`` stays open."""
        start, end = chunk.inspect_range()
        request = self._request(
            "export",
            database=chunk.database,
            retention_policy=chunk.retention_policy,
            start=start,
            end=end,
        )
        # A pipe goes to the helper, whose influx_inspect writes into it; D frames are written
        # into a file as they come: the converter follows it, it must see every byte at once.
        result, stderr = await self._call(request, sink=fd)
        return Exported(int(result.get("exit", -1)), stderr)

    async def close(self) -> None:
        """End the connection (the helper exits)."""
        async with self._lock:
            if self._conn is not None:
                await asyncio.to_thread(self._conn.close)
                self._conn = None
