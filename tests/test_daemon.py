"""``headlined run`` under a real NOTIFY_SOCKET: READY, STATUS, watchdog, reload, stop."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headlined import config
from headlined.control import Handler
from headlined.daemon import Daemon
from headlined.notify import Notifier
from headlined.poll import journal
from headlined.poll.journal import Journal
from headlined.poll.records import Record
from headlined.poll.tables import Poll, Summary
from headlined.store import Store
from headlined.supervisor import Heartbeat, Supervisor
from tests.support.daemon_process import Daemon as ProcessDaemon
from tests.support.daemon_process import status, stored_keys, without_dac
from tests.support.notify_socket import NotifyListener

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "headlined.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\nlog_level: debug\nsources: []\n{extra}")
    return path


@pytest.fixture
def daemon_cmd() -> list[str]:
    return [sys.executable, "-m", "headlined", "run", "-c"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start(
    procs: list[subprocess.Popen[str]], cmd: list[str], env: dict[str, str]
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    procs.append(proc)
    return proc


def test_ready_status_watchdog_reload_stop(
    tmp_path: Path,
    notify_listener: NotifyListener,
    daemon_cmd: list[str],
    procs: list[subprocess.Popen[str]],
) -> None:
    cfg = write_config(tmp_path)
    proc = start(procs, [*daemon_cmd, str(cfg)], notify_listener.env(watchdog_usec=400_000))

    ready = notify_listener.wait_for("READY", "1")
    assert ready["MAINPID"] == str(proc.pid)
    assert "STATUS" in ready
    assert (tmp_path / "state" / "headlined.duckdb").exists(), "READY before storage was open"

    # WATCHDOG_USEC=0.4 s: pings at least every 0.2 s.
    notify_listener.collect(2.0)
    pings = notify_listener.times_of("WATCHDOG")
    assert len(pings) >= 8, pings
    assert max(b - a for a, b in itertools.pairwise(pings)) < 0.4

    proc.send_signal(signal.SIGHUP)
    reloading = notify_listener.wait_for("RELOADING", "1")
    assert int(reloading["MONOTONIC_USEC"]) > 0
    notify_listener.wait_for("READY", "1")

    # An invalid config on reload is logged and the old one kept: still READY, still running.
    cfg.write_text("log_level: loud\n")
    proc.send_signal(signal.SIGHUP)
    notify_listener.wait_for("RELOADING", "1")
    notify_listener.wait_for("READY", "1")
    assert proc.poll() is None

    proc.send_signal(signal.SIGTERM)
    notify_listener.wait_for("STOPPING", "1")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "reload_rejected" in out
    assert f"{cfg}:1: log_level" in out
    assert "reload_failed" in out
    assert '"event": "stopped"' in out


def test_status_is_refreshed(
    tmp_path: Path,
    notify_listener: NotifyListener,
    daemon_cmd: list[str],
    procs: list[subprocess.Popen[str]],
) -> None:
    proc = start(procs, [*daemon_cmd, str(write_config(tmp_path))], notify_listener.env())
    notify_listener.wait_for("READY", "1")
    status = notify_listener.wait_for("STATUS", timeout=8)
    assert status["STATUS"]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert not notify_listener.times_of("WATCHDOG"), "no WATCHDOG_USEC: no pings"


def test_a_large_journal_left_at_start_extends_the_start_timeout(
    tmp_path: Path,
    notify_listener: NotifyListener,
    daemon_cmd: list[str],
    procs: list[subprocess.Popen[str]],
) -> None:
    """After a long DuckDB outage the journal is large, and it is applied before READY."""
    left = Journal(journal.directory_in(tmp_path / "state"))
    left.start_after(0)
    at = datetime.now(UTC)
    for n in range(900):  # ~18 MiB
        records = [
            Record(f"[{n * 100 + i}]", at, {"id": n * 100 + i, "x": "y" * 150}, None)
            for i in range(100)
        ]
        summary = Summary("old", at, 1.0, 200, 100, 0, 1.0, None)
        left.append(journal.encode(Poll(summary, records, None, None, at), n + 1))
    rotated = left.rotate()
    assert rotated is not None
    rotated[1]()

    proc = start(procs, [*daemon_cmd, str(write_config(tmp_path))], notify_listener.env())
    extend = notify_listener.wait_for("EXTEND_TIMEOUT_USEC", timeout=30)
    assert int(extend["EXTEND_TIMEOUT_USEC"]) >= 90_000_000
    notify_listener.wait_for("READY", "1", timeout=120)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert '"event": "journal_backlog"' in out
    assert len(stored_keys(tmp_path / "state")["old"]) == 90_000


def test_bad_config_exits_2_and_never_ready(
    tmp_path: Path, notify_listener: NotifyListener, daemon_cmd: list[str]
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sources:\n  - name: a\n")
    proc = subprocess.run(
        [*daemon_cmd, str(cfg)],
        env=notify_listener.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{cfg}:2: sources[0].url: required key is missing" in proc.stdout
    assert not any("READY" in m for _, m in notify_listener.received)
    assert not notify_listener.collect(0.2)


def test_storage_locked_by_another_process_exits_1(
    tmp_path: Path,
    daemon_cmd: list[str],
    procs: list[subprocess.Popen[str]],
    notify_listener: NotifyListener,
) -> None:
    cfg = write_config(tmp_path)
    first = start(procs, [*daemon_cmd, str(cfg)], notify_listener.env())
    notify_listener.wait_for("READY", "1")
    second = subprocess.run(
        [*daemon_cmd, str(cfg)], capture_output=True, text=True, timeout=30, check=False
    )
    assert second.returncode == 1
    assert "another process holds it" in second.stdout
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=20)
    assert first.returncode == 0


class HangingService:
    """A component that beats for a while and then hangs (an await that never returns)."""

    def __init__(self, hang_after: float, block_loop: bool = False) -> None:
        self.hang_after = hang_after
        self.block_loop = block_loop
        self.hung = asyncio.Event()
        self.hung_at = 0.0

    async def start(self, supervisor: Supervisor) -> None:
        supervisor.add("hanger", self._run, deadline=0.3)

    async def _run(self, heartbeat: Heartbeat) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self.hang_after:
            heartbeat.beat()
            await asyncio.sleep(0.05)
        self.hung_at = time.monotonic()
        self.hung.set()
        if self.block_loop:
            time.sleep(1.5)  # noqa: ASYNC251  the point: a synchronous call freezes the loop
            heartbeat.beat()
            while True:
                heartbeat.beat()
                await asyncio.sleep(0.05)
        await asyncio.Event().wait()

    async def reconfigure(self, loaded: config.Loaded) -> None:
        """Nothing to adopt."""

    async def shutdown(self) -> None:
        """Nothing to flush."""

    async def sync(self) -> None:
        """Nothing waits."""

    def status(self) -> str:
        return "hanging test service"

    def snapshot(self) -> dict[str, object]:
        return {}

    def handlers(self) -> dict[str, Handler]:
        return {}


@pytest.mark.parametrize("block_loop", [False, True], ids=["hung-await", "blocked-loop"])
def test_watchdog_stops_while_a_component_hangs(
    tmp_path: Path,
    notify_listener: NotifyListener,
    block_loop: bool,
) -> None:
    loaded = config.load(write_config(tmp_path))
    service = HangingService(hang_after=1.0, block_loop=block_loop)
    notifier = Notifier({"NOTIFY_SOCKET": notify_listener.address, "WATCHDOG_USEC": "200000"})

    async def scenario() -> None:
        def services(_loaded: config.Loaded, _store: Store) -> list[HangingService]:
            return [service]

        daemon = Daemon(loaded, notifier=notifier, services=services)
        # Receive on a thread, as systemd would, while the daemon runs on this loop.
        receiving = asyncio.create_task(asyncio.to_thread(notify_listener.collect, 3.8))
        task = asyncio.create_task(daemon.run())
        await service.hung.wait()
        hung_at = service.hung_at
        await asyncio.sleep(2.0)
        daemon.request_stop()
        assert await task == 0
        await receiving
        pings = notify_listener.times_of("WATCHDOG")
        before = [t for t in pings if t < hung_at]
        after_grace = [t for t in pings if hung_at + 0.5 < t < hung_at + 1.4]
        assert len(before) >= 4, "pings while healthy"
        assert not after_grace, "pings continued while a component hung"
        if block_loop:
            assert [t for t in pings if t > hung_at + 1.7], "pings resume after the loop frees"

    asyncio.run(scenario())


NOBODY = 65534


@pytest.mark.parametrize("slip", ["owned_by_another_user", "parent_not_writable", "parquet_dir"])
def test_a_state_dir_it_may_not_write_is_one_clear_line(
    tmp_path: Path, daemon_cmd: list[str], slip: str
) -> None:
    """A state_dir made by another user, or one to be created where the service user may
    not write: exit 1, one error naming the path, its owner and mode, and the fix."""
    parent = tmp_path / "parent"
    parent.mkdir()
    state = parent / "state"
    if slip == "owned_by_another_user":
        state.mkdir(mode=0o755)
        os.chown(state, NOBODY, NOBODY)
        said = (
            f"{state}: not writable by user root (state_dir; owner nobody, mode 0755): "
            f"chown -R root: {state}, or choose another state_dir"
        )
    elif slip == "parent_not_writable":
        os.chown(parent, NOBODY, NOBODY)
        parent.chmod(0o755)
        said = (
            f"{state}: does not exist, and user root may not create it in {parent} "
            f"(state_dir; owner nobody, mode 0755): install -d -o root {state}, "
            "or choose another state_dir"
        )
    extra = ""
    if slip == "parquet_dir":
        parquet = tmp_path / "parquet"
        parquet.mkdir(mode=0o755)
        os.chown(parquet, NOBODY, NOBODY)
        extra = f"parquet_dir: {parquet}\n"
        said = (
            f"{parquet}: not writable by user root (parquet_dir; owner nobody, mode 0755): "
            f"chown -R root: {parquet}, or choose another parquet_dir"
        )
    cfg = tmp_path / "headlined.yaml"
    cfg.write_text(f"state_dir: {state}\nsources: []\n{extra}")
    result = subprocess.run(
        [*without_dac(), *daemon_cmd, str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert [(e["event"], e["problem"]) for e in errors] == [("directory_unusable", said)]


@pytest.mark.slow
def test_a_metrics_port_in_use_is_shown_and_taken_once_free(tmp_path: Path) -> None:
    """The daemon runs on without /metrics, says why once (log and status), and serves it by
    itself once the port is free."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    cfg = tmp_path / "headlined.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path / 'state'}\nsources: []\nmetrics: {{listen: 127.0.0.1:{port}}}\n"
    )
    daemon = ProcessDaemon(cfg)
    try:
        daemon.wait_started()
        shown = status(cfg)["daemon"]["metrics_problem"]
        assert shown.startswith(f"127.0.0.1:{port}: Address already in use; retrying every 30 s")
        holder.close()
        deadline = time.monotonic() + 45
        while status(cfg)["daemon"]["metrics_problem"] is not None:
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert b"headlined_build_info" in reply.read()
        assert len(daemon.events("metrics_unavailable")) == 1
        assert daemon.stop() == 0
    finally:
        holder.close()
