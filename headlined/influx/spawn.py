"""Starting a local ``headlined-inspect``: a child Python on a socketpair (the standard library
only), so that an export can send it the converter's pipe, as to the systemd socket's.

``headlined export`` starts one before it reads its config (:class:`Early`): the config and the
export's imports take ~0.2 s, in which the child gets ready; the export then adopts it when
the config asks for what it was started with (a local helper, the default influx_inspect),
or stops it. See docs/exporter.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

BINARY_ENV = "HEADLINED_INFLUX_INSPECT"  # the influx_inspect a helper runs (never a client's)
DEFAULT_INSPECT = "influx_inspect"  # influx.inspect's default
DEFAULT_SOCKET = Path("/run/headlined-inspect.sock")  # influx.inspect_socket's default
EXIT_S = 10.0  # for a helper to stop its influx_inspect and exit once its stdin ends


@dataclass(frozen=True)
class Local:
    """A local helper and this process's end of its connection (its stdin and stdout)."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket


def low_priority() -> list[str]:
    """nice/ionice prefixes: an export must never starve the pollers or influxd."""
    prefix = []
    if shutil.which("nice"):
        prefix += ["nice", "-n", "10"]
    if shutil.which("ionice"):
        prefix += ["ionice", "-c", "2", "-n", "7"]
    return prefix


def helper_argv(*, polite: bool) -> list[str]:
    """The command line of a local helper (at low priority when ``polite``)."""
    return [*(low_priority() if polite else []), sys.executable, "-m", "headlined.influx.helper"]


def start(inspect: str, *, polite: bool) -> Local:
    """A local helper running ``inspect``, its stdin and stdout one end of a socketpair;
    OSError if it cannot be started."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            helper_argv(polite=polite),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            env={**os.environ, BINARY_ENV: inspect},
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Local(proc, ours)


def stop(helper: Local) -> None:
    """End a helper that answers nothing now: its stdin ending makes it stop influx_inspect
    and exit (a kill would orphan that), killed only if it does not within EXIT_S."""
    with contextlib.suppress(OSError):  # the other end may be gone already
        helper.sock.shutdown(socket.SHUT_WR)
    try:
        helper.proc.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        helper.proc.kill()
        helper.proc.wait()
    helper.sock.close()


class Early:
    """A helper started before the config is known, as the default config has it (local:
    no ``headlined-inspect.socket`` at its default path; the default influx_inspect; in the
    foreground, not at low priority). :meth:`take` hands it over when the config agrees;
    leaving the ``with`` block stops it if it was not taken."""

    def __init__(self) -> None:
        """Start the helper now, unless the default socket says it would not be used."""
        self._helper: Local | None = None
        if not DEFAULT_SOCKET.is_socket():
            with contextlib.suppress(OSError):  # the export starts one itself, and says why not
                self._helper = start(DEFAULT_INSPECT, polite=False)

    def take(self, inspect: str, *, polite: bool) -> Local | None:
        """The helper, if it was started as a local one for ``inspect`` and ``polite`` would be
        (and still runs); else None, and it is stopped."""
        helper, self._helper = self._helper, None
        if helper is not None and (
            inspect != DEFAULT_INSPECT or polite or helper.proc.poll() is not None
        ):
            stop(helper)
            return None
        return helper

    def __enter__(self) -> Early:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            stop(helper)
