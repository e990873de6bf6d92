"""systemd's notify protocol (sd_notify): READY, STATUS, WATCHDOG, RELOADING, STOPPING.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (``@name`` is an abstract socket). We speak it directly rather than through
the sdnotify package, whose socket blocks (a stalled systemd would freeze the event loop), whose
errors are swallowed, and which leaks its socket when the connect fails.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from headlined import logs

log = logs.get("notify")


class Notifier:
    """Sends notify messages when ``NOTIFY_SOCKET`` is set; does nothing otherwise."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._dropped = 0
        self.watchdog_interval = watchdog_interval(env)
        if self._address:
            self._connect()

    def _connect(self) -> None:
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setblocking(False)
            sock.connect(address)
            self._sock = sock
        except OSError as exc:
            sock.close()
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
            # systemd is not reading; dropping a message beats stalling every poll.
            if self._dropped == 0:
                log.warning("notify_dropping", message=assignments[0].split("=", 1)[0])
            self._dropped += 1
        except OSError as exc:
            log.error("notify_failed", error=str(exc))
        else:
            if self._dropped:
                log.info("notify_recovered", dropped=self._dropped)
                self._dropped = 0

    def ready(self, status: str) -> None:
        """Startup finished: config valid and storage open."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before systemd gives up on the current start or stop."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

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
