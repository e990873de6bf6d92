"""A real ``NOTIFY_SOCKET``: an AF_UNIX datagram socket that records what systemd would see."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path


class NotifyListener:
    """Binds a datagram socket (a path, or an abstract ``@name``) and collects messages."""

    def __init__(self, directory: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"headlined-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.received: list[tuple[float, dict[str, str]]] = []
        self._cursor = 0  # wait_for looks only at messages after the last one it matched

    def env(self, watchdog_usec: int | None = None) -> dict[str, str]:
        """Environment for a child process, as systemd would set it."""
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.address
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def collect(self, seconds: float) -> list[dict[str, str]]:
        """Receive for ``seconds``; return the messages that arrived (also kept in order)."""
        deadline = time.monotonic() + seconds
        new: list[dict[str, str]] = []
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((time.monotonic(), message))
            new.append(message)
        return new

    def wait_for(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict[str, str]:
        """The next message, after the last one matched, with ``key`` (and ``value``)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.received):
                message = self.received[self._cursor][1]
                self._cursor += 1
                if key in message and (value is None or message[key] == value):
                    return message
            if time.monotonic() >= deadline:
                break
            self.collect(min(0.2, deadline - time.monotonic()))
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.received}")

    def times_of(self, key: str) -> list[float]:
        """Arrival times of every message holding ``key``."""
        return [t for t, message in self.received if key in message]

    def close(self) -> None:
        """Close (and unlink a path socket)."""
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)
