"""systemd's notify protocol (sd_notify): READY, STATUS, WATCHDOG, RELOADING, STOPPING.

A thin adapter over sdnotify. sdnotify's socket blocks and its errors are swallowed; we make
the socket non-blocking (a stalled systemd must never freeze the event loop) and log failures.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import sdnotify

from headlined import logs

log = logs.get("notify")


class Notifier:
    """Sends notify messages when ``NOTIFY_SOCKET`` is set; does nothing otherwise."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self.watchdog_interval = watchdog_interval(env)
        if self._address:
            self._connect()

    def _connect(self) -> None:
        try:
            # sdnotify reads the address from the environment itself (and maps "@" to an
            # abstract socket); debug=True makes it raise instead of silently giving up.
            notifier = sdnotify.SystemdNotifier(debug=True)
            sock: socket.socket = notifier.socket
            sock.setblocking(False)
            self._sock = sock
        except OSError as exc:
            log.error("notify_socket_unusable", socket=self._address, error=str(exc))

    @property
    def enabled(self) -> bool:
        """Whether messages go anywhere."""
        return self._sock is not None

    def send(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines as one datagram."""
        if self._sock is None:
            return
        try:
            self._sock.send("\n".join(assignments).encode())
        except BlockingIOError:
            # systemd is not reading; dropping one message beats stalling every poll.
            log.warning("notify_dropped", message=assignments[0].split("=", 1)[0])
        except OSError as exc:
            log.error("notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        """Startup finished: config valid and storage open."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """Replace the one-line status ``systemctl status`` shows."""
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Tell systemd we are alive and making progress."""
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """A reload has started (systemd ≥ 253 also wants MONOTONIC_USEC)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """Shutdown has started."""
        self.send("STOPPING=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when not asked.

    ``WATCHDOG_PID`` set to another process means the watchdog is not meant for us.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2
