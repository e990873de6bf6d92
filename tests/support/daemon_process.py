"""Run the real ``headlined run`` as a child process, against demo feeds on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import yaml

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, source_fragment
from headlined.poll import journal
from headlined.poll.records import record_key
from tests.support.influxdb_server import require_binary


def write_config(path: Path, server: DemoFeedServer, specs: list[FeedSpec], **top: Any) -> Path:
    """A config polling every feed of ``server``, state under ``path.parent``."""
    sources = []
    for spec in specs:
        fragment = source_fragment(spec.shape)
        sources.append(
            {
                "name": spec.name,
                "url": server.url_for(spec.name),
                "records": fragment["records"],
                "key": fragment["key"],
                "time": fragment["time"],
                "window": spec.window,
                "min_interval": "1s",
                "max_interval": "20s",
            }
        )
    config = {
        "state_dir": str(path.parent / "state"),
        "parquet_dir": str(path.parent / "pq"),
        "log_level": "info",
        "sources": sources,
        **top,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


RUNNING: list[Daemon] = []


def reap() -> None:
    """Kill daemons a failed test left running (the conftest calls it after every test)."""
    while RUNNING:
        daemon = RUNNING.pop()
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        daemon.proc.wait()
        daemon.close()


class Daemon:
    """``headlined run -c CONFIG`` with its output captured to a file."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        """``prefix``: a command that runs the daemon (e.g. ``setpriv`` with fewer rights)."""
        self.config = config
        self.log = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "headlined", "run", "-c", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
        )
        RUNNING.append(self)  # reaped after the test if it is still running then

    def wait_started(self, timeout: float = 30) -> None:
        """Until the daemon logged ``started``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"started"' in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"daemon did not start: {self.output()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        """Close the output file."""
        self._out.close()

    def output(self) -> str:
        """Everything the daemon printed so far."""
        return self.log.read_text()

    def events(self, name: str) -> list[dict[str, Any]]:
        """The logged events called ``name``."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
        return out


def stored_keys(state_dir: Path) -> dict[str, list[str]]:
    """record_key of every stored message, per source (the daemon must not be running)."""
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        out: dict[str, list[str]] = {}
        for source, key in conn.execute("SELECT source, record_key FROM messages").fetchall():
            out.setdefault(source, []).append(key)
        return out
    finally:
        conn.close()


def committed_keys(state_dir: Path) -> dict[str, set[str]]:
    """record_key of every committed record, per source, after a crash (no daemon running).

    A poll is committed once its frame is whole in the journal; the next start applies the
    journal to DuckDB. Committed = stored in DuckDB, or in a whole frame of a segment not
    applied yet.
    """
    out: dict[str, set[str]] = {}
    for source, keys in stored_keys(state_dir).items():
        out.setdefault(source, set()).update(keys)
    applied = query(state_dir, "SELECT value FROM meta WHERE key = 'journal_applied'")
    last = int(applied[0][0]) if applied else 0
    for number, path in journal.existing(state_dir / "journal"):
        if number <= last:
            continue
        for line in path.read_bytes().split(b"\n")[:-1]:  # a torn last frame is no commit
            frame = json.loads(line)
            out.setdefault(frame["source"], set()).update(r["k"] for r in frame["new"])
    return out


def query(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL on the state file (the daemon must not be running)."""
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def first_answers(state_dir: Path) -> dict[str, float]:
    """Per source, when its first poll had its answer (epoch seconds).

    Records that aged out of a feed's window before then were never visible to the daemon:
    that is where a loss check must start. The daemon logs ``started`` when its pollers are
    started, which can be a few milliseconds before each one's first request.
    """
    rows = query(
        state_dir,
        "SELECT source, epoch(min(started_at)) + arg_min(duration_ms, started_at) / 1000 "
        "FROM fetch_summary GROUP BY source",
    )
    return {source: float(at) for source, at in rows}


def lost_records(
    server: DemoFeedServer, spec: FeedSpec, stored: list[str], start: float, end: float
) -> list[str]:
    """Keys of records the daemon could have seen (still in the window at ``start``) that aged
    out of the window by ``end`` without being stored."""
    model = server.model(spec.name)
    existed = [record_key(list(k)) for k in model.all_keys_until(end)]
    visible_from = max(0, model.arrivals_until(start) - spec.window)
    aged_out = existed[visible_from : max(0, len(existed) - spec.window)]
    have = set(stored)
    return [k for k in aged_out if k not in have]


def status(config: Path) -> dict[str, Any]:
    """``headlined status --json`` for ``config``: from the running daemon or the state file."""
    result = subprocess.run(
        [sys.executable, "-m", "headlined", "status", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def without_dac() -> tuple[str, ...]:
    """A prefix that runs a command as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH.

    Tests run as root, who reads and writes everything; so limited, file modes bind it like
    any user. (Running as nobody cannot work here: the venv's interpreter lives under /root,
    0700.)
    """
    return (require_binary("setpriv"), "--bounding-set=-dac_override,-dac_read_search")
