"""The daemon's local control socket: how ``status``, ``query`` and ``export`` reach a running
daemon (DuckDB lets one process hold the file, so the CLI cannot simply open it).

``<state_dir>/control.sock``, mode 0660 (the service's user and group). One request per
connection: a JSON line ``{"cmd": ..., ...}`` answered by one JSON line ``{"ok": ..., ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from headlined import logs

log = logs.get("control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 1024 * 1024
MAX_REPLY = 256 * 1024 * 1024


class ControlError(Exception):
    """The daemon could not be reached, or it refused the request."""


def socket_path(state_dir: Path) -> Path:
    """Where the daemon listens."""
    return state_dir / "control.sock"


class ControlServer:
    """Serves requests on the control socket, dispatching ``cmd`` to registered handlers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handlers: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind (replacing a stale socket file left by a killed daemon) and listen."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_REQUEST
        )
        self.path.chmod(0o660)

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            if not line:
                return  # closed without a request: daemon_listening's probe
            reply = await self._dispatch(line)
            writer.write(json.dumps(reply, default=str, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("control_request_dropped", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "request is not an object"}
        handler = self.handlers.get(str(request.get("cmd")))
        if handler is None:
            return {"ok": False, "error": f"unknown command {request.get('cmd')!r}"}
        try:
            return {"ok": True, **await handler(request)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.error(
                "control_handler_failed", cmd=request.get("cmd"), error=repr(exc), exc_info=exc
            )
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def request(path: Path, message: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to a running daemon (blocking: the CLI has no event loop).

    Raises FileNotFoundError/ConnectionRefusedError when no daemon listens there.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        chunks = []
        size = 0
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY:
                raise ControlError("reply too large")
    reply: dict[str, Any] = json.loads(b"".join(chunks))
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the daemon refused the request")))
    return reply


def daemon_listening(path: Path) -> bool:
    """Whether a daemon answers on ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
    except OSError:
        return False
    return True
