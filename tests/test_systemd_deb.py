"""The installed .deb under a real systemd, as a user's server runs it.

The package is built and installed on this machine, its conffile points at demo feeds served
on the host's loopback, and systemd 252 boots in a container over the host's root file system
(tests/support/systemd_container.py). What is checked is what a user sees: systemctl, journalctl and
``headlined status``/``query``. Debian's influxdb.service runs in the same container, the
setting in which headlined exports InfluxDB's files. One boot serves the whole module;
the package is purged, and the container powered off, however the tests end.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pytest

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from headlined.poll.parquet import flush_messages
from headlined.store import open_database
from tests.support.daemon_process import write_config
from tests.support.deb_package import (
    CONFFILE,
    STATE,
    apt_get,
    machine_restored,
    require_installable,
)
from tests.support.systemd_container import (
    INFLUX_DATA_DIR,
    Container,
    ContainerInflux,
    booted_container,
    require_influxdb,
    require_tools,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

UNIT = "headlined.service"
DATABASES = ("plant_a", "plant_b")
POINTS_PER_DATABASE = 25_000
BATCH = 5_000
BASE_S = 1_704_067_200  # 2024-01-01T00:00:00Z
EXPORT_DIR = PurePosixPath(STATE / "influx")


@dataclass(frozen=True)
class Booted:
    """The module's one container, the feeds the daemon polls, and the InfluxDB beside it."""

    container: Container
    feeds: DemoFeedServer
    news: FeedSpec  # polled from the start
    weather: FeedSpec  # added by a reload
    influx: ContainerInflux


def _write_conffile(feeds: DemoFeedServer, specs: list[FeedSpec]) -> None:
    """The conffile polling ``specs``, everything under the unit's state directory."""
    write_config(CONFFILE, feeds, specs, state_dir=str(STATE), parquet_dir=str(STATE / "parquet"))


@pytest.fixture(scope="module")
def booted(
    tmp_path_factory: pytest.TempPathFactory, built_deb: Callable[[], Path]
) -> Iterator[Booted]:
    """headlined installed (the session's .deb: about a minute to build if no test built it
    yet), its conffile pointing at demo feeds, systemd booted (a few seconds); all of it
    undone afterwards."""
    require_installable("dpkg-deb")
    require_tools()
    require_influxdb()
    workdir = tmp_path_factory.mktemp("systemd")
    with contextlib.ExitStack() as stack:
        stack.enter_context(machine_restored())
        apt_get("install", "-y", str(built_deb()))
        # A minute of history, so that the first poll already finds a full window.
        t0 = time.time() - 60
        news = FeedSpec("news", rate=5.0, t0=t0)
        weather = FeedSpec("weather", rate=1.0, shape=Shape.RESULT_ITEMS, t0=t0)
        feeds = stack.enter_context(DemoFeedServer([news, weather]))
        _write_conffile(feeds, [news])
        influx = ContainerInflux.configure(workdir)
        stack.callback(influx.close)
        container = stack.enter_context(booted_container("hltest", workdir, [influx.bind]))
        yield Booted(container, feeds, news, weather, influx)


@pytest.fixture(scope="module")
def influx(booted: Booted) -> ContainerInflux:
    """Debian's influxdb.service started in the container, holding DATABASES: plant_a's
    points moved into TSM files, plant_b's still in the WAL (both are exported)."""
    booted.influx.start(booted.container)
    influx = booted.influx
    for index, db in enumerate(DATABASES):
        influx.create_database(db)
        for start in range(0, POINTS_PER_DATABASE, BATCH):
            influx.write(db, _points(index, start, BATCH), precision="s")
    influx.flush_to_tsm(DATABASES[0])
    return influx


def _wait_for(container: Container, check: Callable[[], bool], timeout: float, what: str) -> None:
    """Until ``check()`` holds; a failure says ``what`` and shows headlined's journal."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s:\n{container.journal(UNIT)}")
        time.sleep(0.5)


def _as_headlined(container: Container, *args: str) -> str:
    """``headlined ARGS`` as the service user, as an admin runs it next to the service."""
    return container.run_as("headlined", "headlined", *args).stdout


def _stored(container: Container, source: str) -> int:
    """Records of ``source`` in the running daemon's DuckDB (through its control socket)."""
    sql = f"SELECT count(*) AS n FROM messages WHERE source = '{source}'"
    rows = [
        json.loads(line) for line in _as_headlined(container, "query", "--json", sql).splitlines()
    ]
    assert len(rows) == 1, rows
    n: int = rows[0]["n"]
    return n


def _events(container: Container, name: str) -> list[dict[str, Any]]:
    """The daemon's logged events called ``name``, from its journal."""
    events = []
    for line in container.journal(UNIT).splitlines():
        start = line.find("{")
        if start >= 0:
            event = json.loads(line[start:])
            if event.get("event") == name:
                events.append(event)
    return events


def _lake_done(container: Container, databases: tuple[str, ...]) -> bool:
    """Whether the daemon's last lake cycle published everything, with every table."""
    lake = json.loads(_as_headlined(container, "status", "--json")).get("lake") or {}
    tables = {f"{db}.reading" for db in databases} | {"headlined.messages"}
    return (
        lake.get("error") is None
        and lake.get("waiting") == 0
        and tables <= set(lake.get("snapshots") or {})
    )


def _lake_rows(container: Container, namespace: str, table: str) -> int:
    """Rows of an Iceberg table, counted by the package's own pyiceberg as the service user."""
    code = (
        "import sys\n"
        "from pyiceberg.catalog.sql import SqlCatalog\n"
        f"c = SqlCatalog('headlined', uri='sqlite:///{STATE}/lake/catalog.db',"
        f" warehouse='file://{STATE}/lake/warehouse')\n"
        "print(c.load_table((sys.argv[1], sys.argv[2])).scan().to_arrow().num_rows)\n"
    )
    python = "/opt/headlined/venv/bin/python"
    return int(container.run_as("headlined", python, "-c", code, namespace, table).stdout)


def test_headlined_service_polls_reloads_feeds_watchdog_and_stops_clean(booted: Booted) -> None:
    """systemctl start, status/query as the service user, reload, watchdog, stop."""
    c = booted.container
    info = CONFFILE.stat()
    assert pwd.getpwuid(info.st_uid).pw_name == "root"
    assert grp.getgrgid(info.st_gid).gr_name == "headlined"
    assert stat.S_IMODE(info.st_mode) == 0o640

    closed_day = _plant_closed_day(c, booted.news.name)
    c.systemctl("start", UNIT)
    props = ("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "WatchdogUSec")
    started = c.show(UNIT, *props, "WatchdogTimestampMonotonic")
    assert (started["ActiveState"], started["SubState"]) == ("active", "running"), started
    assert re.fullmatch(r"1 sources, \d+ records, \d+ gaps", started["StatusText"]), started
    assert started["WatchdogUSec"] not in ("", "0", "infinity"), started

    # The first poll stores a whole window; the running daemon answers through its socket.
    _wait_for(c, lambda: _stored(c, "news") >= booted.news.window, 60, "no full window of news")
    status = json.loads(_as_headlined(c, "status", "--json"))
    assert status["daemon"]["pid"] == int(started["MainPID"]), status
    assert status["sources"]["news"]["records"] >= booted.news.window, status
    assert status["sources"]["news"]["errors"] == 0, status

    # Reload applies an edited conffile (one more source) without a restart.
    _write_conffile(booted.feeds, [booted.news, booted.weather])
    c.systemctl("reload", UNIT)
    _wait_for(
        c,
        lambda: any(e["sources"] == 2 for e in _events(c, "reloaded")),
        30,
        "no 'reloaded' with 2 sources logged",
    )
    _wait_for(c, lambda: _stored(c, "weather") > 0, 60, "nothing stored from weather")
    reloaded = c.show(UNIT, *props)
    assert reloaded["StatusText"].startswith("2 sources, "), reloaded
    assert (reloaded["ActiveState"], reloaded["SubState"]) == ("active", "running"), reloaded
    assert reloaded["MainPID"] == started["MainPID"], reloaded

    # The daemon pings at least every WatchdogSec/2 (30 s); systemd stamps each ping.
    _wait_for(
        c,
        lambda: (
            int(c.show(UNIT, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
            > int(started["WatchdogTimestampMonotonic"])
        ),
        45,
        "no watchdog ping after start",
    )
    alive = c.show(UNIT, *props)
    assert (alive["NRestarts"], alive["MainPID"]) == ("0", started["MainPID"]), alive

    # A closed day's flushes merged after a flush, under the unit's seccomp filter and user.
    _wait_for(c, lambda: bool(_events(c, "messages_compacted")), 90, "no closed day merged")
    assert [p.name for p in closed_day.iterdir()] == ["part-000000000001-000000000030.parquet"]
    assert _keys(closed_day) == [f"[{n}]" for n in range(30)]

    c.systemctl("stop", UNIT)
    stopped = c.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert c.journal(UNIT, priority="err") == ""


def _plant_closed_day(container: Container, source: str) -> Path:
    """Three flushes of ``source`` into a long-closed day, as an earlier run of the daemon
    left them in the container's state directory (files and folders the service user's,
    under the unit's UMask); the folder as the host sees it."""
    work = Path(tempfile.mkdtemp(prefix="headlined-flushes-"))
    conn = open_database(work / "h.duckdb")
    when = datetime.datetime(2020, 1, 1, 12, tzinfo=datetime.UTC)
    for first in range(0, 30, 10):
        conn.execute(
            "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
            "SELECT $1, '[' || n || ']', $2, json_object('n', n), $2 FROM range($3, $4) t(n)",
            [source, when, first, first + 10],
        )
        flush_messages(conn, work)
    conn.close()
    state = container.host_path(PurePosixPath(STATE))
    user = pwd.getpwnam("headlined")
    for path in [state, state / "parquet", state / "parquet" / "messages"]:
        path.mkdir(mode=0o750, exist_ok=True)
        os.chown(path, user.pw_uid, user.pw_gid)
    planted = state / "parquet" / "messages" / f"source={source}"
    shutil.copytree(work / "messages" / f"source={source}", planted)
    shutil.rmtree(work)
    for path in [planted, *planted.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o750 if path.is_dir() else 0o640)
    folder = planted / "date=2020-01-01"
    assert len(list(folder.iterdir())) == 3
    return folder


def _keys(folder: Path) -> list[str]:
    conn = duckdb.connect()
    try:
        rows = conn.execute(
            f"SELECT record_key FROM read_parquet('{folder}/*.parquet') ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [str(row[0]) for row in rows]


def _points(db_index: int, start: int, count: int) -> list[str]:
    """Line protocol: one field per point, ten series, one point a minute (~17 days)."""
    return [
        f"reading,sensor=s{i % 10} value={db_index * 1000 + i * 0.5} {BASE_S + i * 60}"
        for i in range(start, start + count)
    ]


def test_debian_influxdb_service_takes_writes_into_0700_database_dirs(
    influx: ContainerInflux,
) -> None:
    """Points written from the host are all there, in database directories only the
    influxdb user can read: what headlined's export has to cope with."""
    body = influx.query("SHOW DATABASES")
    assert sorted(row[0] for row in body["results"][0]["series"][0]["values"]) == list(DATABASES)
    for db in DATABASES:
        # One field per point: the COUNT over all fields is the number of points.
        assert influx.count_values(db, "reading") == POINTS_PER_DATABASE
        owner_mode = influx.container.run("stat", "-c", "%U %a", str(INFLUX_DATA_DIR / db))
        assert owner_mode.stdout.split() == ["influxdb", "700"], db
    assert influx.tsm_files(DATABASES[0]), "plant_a was not moved into TSM files"
    assert influx.wal_segments(DATABASES[1]), "plant_b is not in the WAL"


def _parquet(container: Container, db: str) -> tuple[int, float]:
    """Rows and sum(value) of ``db``'s exported Parquet, read from the host."""
    files = container.host_path(EXPORT_DIR / db / "autogen" / "reading")
    conn = duckdb.connect()
    try:
        row = conn.execute(
            "SELECT count(*), sum(value) FROM read_parquet(?)", [f"{files}/*.parquet"]
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return int(row[0]), float(row[1])


def test_installed_service_exports_debian_influxdb_while_polling(
    booted: Booted, influx: ContainerInflux
) -> None:
    """The shipped units export every point of Debian's influxdb.service (its own user, its
    own 0700 folders) through headlined-inspect.socket while the daemon keeps polling; then
    reload, stop, and not one error in the journal."""
    c = booted.container
    write_config(
        CONFFILE,
        booted.feeds,
        [booted.news],
        state_dir=str(STATE),
        parquet_dir=str(STATE / "parquet"),
        # Small chunks, so that polling goes on across several; else the shipped defaults.
        influx={"output_dir": str(EXPORT_DIR), "chunk_points": 10_000},
        # The lake with its defaults (catalog and warehouse under the state directory).
        lake={"interval": "2s"},
    )
    # The package enables the socket; the container's preset starts only what tests start.
    c.systemctl("start", "headlined-inspect.socket")
    before = _stored(c, "news") if c.show(UNIT, "ActiveState")["ActiveState"] == "active" else 0
    c.systemctl("restart", UNIT)
    _wait_for(c, lambda: bool(_events(c, "export_complete")), 180, "no export_complete")
    planned = _events(c, "export_planned")[-1]
    assert planned["via"] == "socket", planned
    assert sorted(planned["databases"]) == list(DATABASES), planned

    status = json.loads(_as_headlined(c, "status", "--json"))
    for db in DATABASES:
        chunks = status["export"][db]["chunks"]
        assert set(chunks) == {"done"}, status["export"]
        assert chunks["done"] >= 3, status["export"]
        rows, total = _parquet(c, db)
        counted = influx.query(f'SELECT COUNT("value"), SUM("value") FROM "{db}".."reading"')
        count, summed = counted["results"][0]["series"][0]["values"][0][1:]
        assert rows == count == POINTS_PER_DATABASE, db
        assert total == pytest.approx(summed), db
    assert status["export_waiting"] is None
    # Polling went on through the export.
    _wait_for(c, lambda: _stored(c, "news") > before + booted.news.window, 60, "news stalled")
    assert json.loads(_as_headlined(c, "status", "--json"))["sources"]["news"]["gaps"] == 0

    # The lake, with the package's pyiceberg under the unit's hardening, holds every point.
    _wait_for(c, lambda: _lake_done(c, DATABASES), 120, "the lake did not catch up")
    for db in DATABASES:
        assert _lake_rows(c, db, "reading") == POINTS_PER_DATABASE, db

    # The reader ran as influxdb, one connection per export run, and ended with it.
    helpers = c.run("journalctl", "-u", "headlined-inspect@*", "--no-pager", "-o", "cat").stdout
    assert c.journal("headlined-inspect@*", priority="err") == "", helpers

    pid = c.show(UNIT, "MainPID")["MainPID"]
    # Counted first: the journal also holds the reloads of the tests before this one.
    reloads = len(_events(c, "reloaded"))
    c.systemctl("reload", UNIT)
    _wait_for(c, lambda: len(_events(c, "reloaded")) > reloads, 30, "no new 'reloaded'")
    reloaded = c.show(UNIT, "ActiveState", "SubState", "MainPID", "NRestarts")
    assert reloaded == {
        "ActiveState": "active",
        "SubState": "running",
        "MainPID": pid,
        "NRestarts": "0",
    }

    c.systemctl("stop", UNIT)
    stopped = c.show(UNIT, "ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert c.journal(UNIT, priority="err") == ""
