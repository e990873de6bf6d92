"""Stopping the servers tests start (influxd, PostgreSQL, moto): politely, then for sure."""

from __future__ import annotations

import signal
import subprocess


def terminate(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` (the server's clean shutdown) if it still runs; kill it if it has not
    exited after ``timeout`` seconds; reap it either way."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
