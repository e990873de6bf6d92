"""The daemon's way to InfluxDB's files, over a real Unix socket as systemd would serve it.

`AcceptingSocket` does what `headlined-inspect.socket` (Accept=yes) does under systemd: one
`headlined-inspect` per connection, with the connection as its stdin and stdout. The real
unit is tested under real systemd in test_systemd_deb.py; this covers the fine-grained cases.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headlined.config import InfluxConfig
from headlined.influx.chunkplan import Chunk
from headlined.influx.datadir import DataDirError
from headlined.influx.reader import InfluxReader, ReaderError
from tests.support.influxdb_server import InfluxServer, require_binary, running_influxd

pytestmark = pytest.mark.integration

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
MINUTE = 60 * 10**9
HELPER = Path(sys.executable).parent / "headlined-inspect"


class AcceptingSocket:
    """A listening Unix socket that starts one headlined-inspect per connection."""

    def __init__(self, path: Path, inspect: str) -> None:
        self.path = path
        self.children: list[subprocess.Popen[bytes]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen()
        self._sock.settimeout(0.2)
        self._env = {**os.environ, "HEADLINED_INFLUX_INSPECT": inspect}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                fd = conn.fileno()
                self.children.append(
                    subprocess.Popen([str(HELPER)], stdin=fd, stdout=fd, env=self._env)
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for child in self.children:
            try:
                child.wait(timeout=10)  # a closed connection ends it by itself
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path_factory.mktemp("influx")) as server:
        server.create_database("plant")
        server.write(
            "plant", [f"temp,room=r{i % 3} c={i}.5,n={i}i {BASE + i * MINUTE}" for i in range(3000)]
        )
        server.flush_to_tsm("plant")
        server.write("plant", [f"temp,room=wal c=1 {BASE + 5000 * MINUTE}"])  # stays in the WAL
        yield server


def config(influx: InfluxServer, sock: Path | None) -> InfluxConfig:
    return InfluxConfig(
        data_dir=influx.data_dir,
        wal_dir=influx.wal_dir,
        meta_dir=influx.meta_dir,
        inspect_socket=sock,
    )


WEEK = Chunk("plant", "autogen", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))


async def read_all(reader: InfluxReader, out: Path) -> tuple[list[str], int]:
    try:
        discovery = await reader.discover()
        exported = await reader.export(WEEK, out)
        assert exported.exit_code == 0, exported.stderr
        wal = await reader.wal_scan("plant", "autogen")
    finally:
        await reader.close()
    assert wal is not None
    assert (wal.first_ns, wal.last_ns) == (BASE + 5000 * MINUTE, BASE + 5000 * MINUTE)
    data = await asyncio.to_thread(out.read_bytes)
    return [f.database for f in discovery.found], len(data.splitlines())


def test_the_socket_and_the_local_helper_give_the_same_export(
    influx: InfluxServer, tmp_path: Path
) -> None:
    sock = tmp_path / "inspect.sock"
    server = AcceptingSocket(sock, require_binary("influx_inspect"))
    try:
        over_socket = InfluxReader(config(influx, sock))
        assert over_socket.mode == "socket"
        by_socket = asyncio.run(read_all(over_socket, tmp_path / "socket.lp"))
    finally:
        server.close()
    assert len(server.children) == 1  # one connection served discovery, export and WAL
    assert server.children[0].returncode == 0
    local = InfluxReader(config(influx, tmp_path / "absent.sock"))
    assert local.mode == "local"
    by_child = asyncio.run(read_all(local, tmp_path / "local.lp"))
    assert by_socket == by_child == (["plant"], by_child[1])
    assert by_child[1] >= 6000  # 3000 points x 2 fields, one field per line
    assert (tmp_path / "socket.lp").read_bytes() == (tmp_path / "local.lp").read_bytes()


def test_an_unusable_data_dir_comes_back_as_a_data_dir_error(
    influx: InfluxServer, tmp_path: Path
) -> None:
    cfg = InfluxConfig(data_dir=tmp_path / "missing", wal_dir=influx.wal_dir, inspect_socket=None)
    reader = InfluxReader(cfg)

    async def discover() -> None:
        try:
            await reader.discover()
        finally:
            await reader.close()

    with pytest.raises(DataDirError, match="no such directory") as caught:
        asyncio.run(discover())
    assert caught.value.kind == "missing"


def test_a_socket_nobody_serves_says_what_to_enable(influx: InfluxServer, tmp_path: Path) -> None:
    sock = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening: as after a crash
    stale.close()
    reader = InfluxReader(config(influx, sock))
    with pytest.raises(ReaderError, match=r"systemctl enable --now headlined-inspect\.socket"):
        asyncio.run(reader.discover())


def test_a_cancelled_export_ends_the_helper_and_influx_inspect(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """The daemon stopping mid-chunk leaves no helper or influx_inspect behind."""
    slow = tmp_path / "influx_inspect"
    marker = tmp_path / "pids"
    slow.write_text(
        f'#!/bin/sh\n[ "$2" = -h ] && echo "Usage: -datadir" && exit 0\n'
        f"echo $$ >> {marker}\nexec sleep 600\n"
    )
    slow.chmod(0o755)
    sock = tmp_path / "inspect.sock"
    server = AcceptingSocket(sock, str(slow))
    reader = InfluxReader(config(influx, sock))

    async def cancel_mid_export() -> None:
        task = asyncio.create_task(reader.export(WEEK, tmp_path / "out.lp"))
        for _ in range(100):
            if marker.exists():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await reader.close()

    try:
        asyncio.run(cancel_mid_export())
        helper = server.children[0]
        helper.wait(timeout=10)  # it saw the connection close
        pid = int(marker.read_text().split()[-1])
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), "influx_inspect outlived the cancelled export"
    finally:
        server.close()


def test_a_discovery_begun_early_is_the_one_discover_returns(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """`headlined export` sends discover before its imports; the reply is read later, on the
    same connection, which then serves the export."""
    sock = tmp_path / "inspect.sock"
    server = AcceptingSocket(sock, require_binary("influx_inspect"))
    try:
        early = InfluxReader(config(influx, sock))
        early.begin_discovery()
        by_early = asyncio.run(read_all(early, tmp_path / "early.lp"))
    finally:
        server.close()
    assert len(server.children) == 1  # the early discovery, the export and the WAL scan
    late = InfluxReader(config(influx, tmp_path / "absent.sock"))
    assert asyncio.run(read_all(late, tmp_path / "late.lp")) == by_early


def test_an_early_discovery_of_an_unusable_data_dir_fails_as_a_late_one(
    influx: InfluxServer, tmp_path: Path
) -> None:
    cfg = InfluxConfig(data_dir=tmp_path / "missing", wal_dir=influx.wal_dir, inspect_socket=None)
    reader = InfluxReader(cfg)
    reader.begin_discovery()

    async def discover() -> None:
        try:
            await reader.discover()
        finally:
            await reader.close()

    with pytest.raises(DataDirError, match="no such directory"):
        asyncio.run(discover())


def test_an_early_discovery_that_cannot_connect_fails_at_discover(
    influx: InfluxServer, tmp_path: Path
) -> None:
    sock = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening: as after a crash
    stale.close()
    reader = InfluxReader(config(influx, sock))
    reader.begin_discovery()  # no error yet: discover meets it
    with pytest.raises(ReaderError, match=r"systemctl enable --now headlined-inspect\.socket"):
        asyncio.run(reader.discover())
