"""Starting a local ``headlined-inspect``: a child Python on pipes (the standard library only).

``headlined export`` starts one before it reads its config (:class:`Early`): the config and the
export's imports take ~0.2 s, in which the child gets ready; the export then adopts it when
the config asks for what it was started with (a local helper, the default influx_inspect),
or stops it. See docs/exporter.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import TracebackType

BINARY_ENV = "HEADLINED_INFLUX_INSPECT"  # the influx_inspect a helper runs (never a client's)
DEFAULT_INSPECT = "influx_inspect"  # influx.inspect's default
DEFAULT_SOCKET = Path("/run/headlined-inspect.sock")  # influx.inspect_socket's default
EXIT_S = 10.0  # for a helper to stop its influx_inspect and exit once its stdin ends


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


def start(inspect: str, *, polite: bool) -> subprocess.Popen[bytes]:
    """A local helper running ``inspect``, on unbuffered pipes (the reply's line protocol is
    spliced from the pipe itself); OSError if it cannot be started."""
    return subprocess.Popen(
        helper_argv(polite=polite),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, BINARY_ENV: inspect},
        bufsize=0,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a helper that answers nothing now: its stdin ending makes it stop influx_inspect
    and exit (a kill would orphan that), killed only if it does not within EXIT_S."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


class Early:
    """A helper started before the config is known, as the default config has it (local:
    no ``headlined-inspect.socket`` at its default path; the default influx_inspect; in the
    foreground, not at low priority). :meth:`take` hands it over when the config agrees;
    leaving the ``with`` block stops it if it was not taken."""

    def __init__(self) -> None:
        """Start the helper now, unless the default socket says it would not be used."""
        self._proc: subprocess.Popen[bytes] | None = None
        if not DEFAULT_SOCKET.is_socket():
            with contextlib.suppress(OSError):  # the export starts one itself, and says why not
                self._proc = start(DEFAULT_INSPECT, polite=False)

    def take(self, inspect: str, *, polite: bool) -> subprocess.Popen[bytes] | None:
        """The helper, if it was started as a local one for ``inspect`` and ``polite`` would be
        (and still runs); else None, and it is stopped."""
        proc, self._proc = self._proc, None
        if proc is not None and (inspect != DEFAULT_INSPECT or polite or proc.poll() is not None):
            stop(proc)
            return None
        return proc

    def __enter__(self) -> Early:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc)
