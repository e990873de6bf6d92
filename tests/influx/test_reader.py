"""The daemon's way to InfluxDB's files, over a real Unix socket as systemd would serve it.

`AcceptingSocket` does what `headlined-inspect.socket` (Accept=yes) does under systemd: one
`headlined-inspect` per connection, with the connection as its stdin and stdout. The real
unit is tested under real systemd in test_systemd_deb.py; this covers the fine-grained cases.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import select
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
from headlined.influx import reader as reader_module
from headlined.influx import spawn
from headlined.influx.chunkplan import Chunk
from headlined.influx.datadir import DataDirError
from headlined.influx.protocol import FAILURE, Request, decode_json, read_header, read_payload
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


async def export_into_pipe(reader: InfluxReader) -> bytes:
    """WEEK exported into a pipe read on a thread, as the converter reads it."""
    read_end, write_end = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            received.append(pipe.read())

    draining = threading.Thread(target=drain)
    draining.start()
    try:
        exported = await reader.export_into(WEEK, write_end)
        assert exported.exit_code == 0, exported.stderr
    finally:
        os.close(write_end)
        await reader.close()
        await asyncio.to_thread(draining.join)
    return received[0]


@pytest.mark.parametrize("set_by_operator", [None, "3"])
def test_influx_inspect_leaves_a_core_to_the_converter_unless_gomaxprocs_is_set(
    influx: InfluxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    set_by_operator: str | None,
) -> None:
    seen = tmp_path / "gomaxprocs"
    wrapper = tmp_path / "influx_inspect"
    real = require_binary("influx_inspect")
    wrapper.write_text(f'#!/bin/sh\necho "$2 $GOMAXPROCS" >> {seen}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    if set_by_operator is None:
        monkeypatch.delenv("GOMAXPROCS", raising=False)
    else:
        monkeypatch.setenv("GOMAXPROCS", set_by_operator)
    sock = tmp_path / "inspect.sock"
    server = AcceptingSocket(sock, str(wrapper))  # the helper gets this test's environment
    try:
        _, lines = asyncio.run(read_all(InfluxReader(config(influx, sock)), tmp_path / "out.lp"))
    finally:
        server.close()
    assert lines >= 6000
    expected = set_by_operator or str(max(1, len(os.sched_getaffinity(0)) - 1))
    runs = [line.split(" ") for line in seen.read_text().splitlines()]
    exports = [value for argument, value in runs if argument == "-datadir"]
    assert exports == [expected, expected]  # the chunk's, then the WAL's scan


@pytest.mark.parametrize("via", ["socket", "local"])
def test_an_export_into_a_pipe_is_written_by_influx_inspect_itself(
    influx: InfluxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """The converter's pipe goes to the helper with the request (SCM_RIGHTS), and
    influx_inspect writes into it: the same lines as an export into a file, none of them
    relayed through the daemon."""
    expected = tmp_path / "file.lp"

    async def into_file() -> None:
        local = InfluxReader(config(influx, tmp_path / "absent.sock"))
        try:
            await local.export(WEEK, expected)
        finally:
            await local.close()

    asyncio.run(into_file())
    relayed: list[int] = []
    monkeypatch.setattr(reader_module, "_write_all", lambda _, data: relayed.append(len(data)))
    sock = tmp_path / "inspect.sock"
    server = AcceptingSocket(sock, require_binary("influx_inspect")) if via == "socket" else None
    try:
        reader = InfluxReader(config(influx, sock))
        assert reader.mode == via
        received = asyncio.run(export_into_pipe(reader))
    finally:
        if server is not None:
            server.close()
    assert received == expected.read_bytes()
    assert len(received.splitlines()) >= 6000
    assert relayed == []


def test_a_passed_pipe_reopens_for_reading_and_writing_as_another_user() -> None:
    """influx_inspect reopens the pipe it is given by /proc/self/fd/N for reading and writing
    (Go's os.Create), as InfluxDB's user under headlined-inspect@.service: the pipe's mode
    must let that user, which a pipe's own (0600, the daemon's user) does not."""
    if os.geteuid() != 0:
        pytest.skip("runs a child as another user: needs root")
    nobody = pwd.getpwnam("nobody")

    def reopened_by_nobody(mode_set: bool) -> tuple[int, bytes]:
        read_end, write_end = os.pipe()
        try:
            if mode_set:
                assert reader_module._passable(write_end)
            child = subprocess.run(
                ["/bin/sh", "-c", f"exec 5<>/proc/self/fd/{write_end} && echo line >&5"],
                pass_fds=(write_end,),
                user=nobody.pw_uid,
                group=nobody.pw_gid,
                extra_groups=[],
                capture_output=True,
                check=False,
            )
            os.close(write_end)
            return child.returncode, os.read(read_end, 100)
        finally:
            os.close(read_end)

    assert reopened_by_nobody(mode_set=True) == (0, b"line\n")
    assert reopened_by_nobody(mode_set=False)[0] != 0  # what the mode is for


def passed_pipe_export(folder: Path) -> bytes:
    """An export request that says a pipe comes with it (of a data dir with nothing)."""
    return Request(
        op="export",
        data_dir=str(folder),
        wal_dir=str(folder),
        database="plant",
        retention_policy="autogen",
        passed_pipe=True,
    ).encode()


def test_a_failed_export_leaves_the_passed_pipe_to_end(tmp_path: Path) -> None:
    """The helper lets go of the client's pipe with its reply, also when the export fails:
    the converter reading it sees its end instead of waiting for ever."""
    request = passed_pipe_export(tmp_path)
    helper = spawn.start(str(tmp_path / "no-influx_inspect"), polite=False)
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(helper.sock, [request], [write_end])
        os.close(write_end)
        with helper.sock.makefile("rb") as replies:
            header = read_header(replies)
            assert header is not None
            assert header[0] == FAILURE
            assert "influx_inspect not found" in str(
                decode_json(read_payload(replies, header[1]))["error"]
            )
        ready, _, _ = select.select([read_end], [], [], 10)
        assert ready, "the helper still holds the pipe"
        assert os.read(read_end, 10) == b""
    finally:
        os.close(read_end)
        spawn.stop(helper)


def test_the_helper_refuses_a_passed_pipe_that_is_missing_or_not_a_pipe(tmp_path: Path) -> None:
    request = passed_pipe_export(tmp_path)
    helper = spawn.start(require_binary("influx_inspect"), polite=False)
    try:
        with helper.sock.makefile("rb") as replies, (tmp_path / "file").open("wb") as file:
            for fds, problem in (([], "0 descriptors"), ([file.fileno()], "not a pipe")):
                socket.send_fds(helper.sock, [request], fds)
                header = read_header(replies)
                assert header is not None
                assert header[0] == FAILURE
                reply = decode_json(read_payload(replies, header[1]))
                assert reply["kind"] == "bad_request"
                assert problem in str(reply["error"])
    finally:
        spawn.stop(helper)
    assert helper.proc.returncode == 0


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
