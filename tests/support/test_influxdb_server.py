"""The throwaway-influxd helper, checked against the real influxd and influx_inspect."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import influxdb_server
from tests.support.influxdb_server import InfluxError, InfluxServer, require_binary, running_influxd

DB = "weather"
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
SENSOR_11 = r"pm,id=db11,model=v2\ x"
SENSOR_12 = r"pm,id=db12,model=v2\ x"

# (series key, {field: value as influx_inspect prints it}, timestamp in ns). Values are written
# in that same text, so the expected export lines follow from these tuples alone.
Point = tuple[str, dict[str, str], int]


def line_protocol(points: list[Point]) -> list[str]:
    """The lines that write `points`."""
    return [f"{s} {','.join(f'{k}={v}' for k, v in fields.items())} {t}" for s, fields, t in points]


def export_lines(points: list[Point]) -> list[str]:
    """What influx_inspect writes for `points` read from TSM: one field per line, ordered by
    series key, then field, then time."""
    cells = sorted((s, k, t, v) for s, fields, t in points for k, v in fields.items())
    return [f"{s} {k}={v} {t}" for s, k, t, v in cells]


def read_export(path: Path) -> tuple[list[str], dict[tuple[str, str, str], list[str]]]:
    """Split an influx_inspect export into its preamble (up to `# DML`) and its data lines by
    (database, retention policy, "tsm" or "wal")."""
    preamble: list[str] = []
    sections: dict[tuple[str, str, str], list[str]] = {}
    db = rp = ""
    section: tuple[str, str, str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# CONTEXT-DATABASE:"):
            db, section = line.partition(":")[2], None
        elif line.startswith("# CONTEXT-RETENTION-POLICY:"):
            rp, section = line.partition(":")[2], None
        elif line in ("# writing tsm data", "# writing wal data"):
            section = (db, rp, line.split()[2])
            sections[section] = []
        elif section is not None:
            sections[section].append(line)
        elif not db:
            preamble.append(line)
        else:
            raise AssertionError(f"unexpected line outside a data section: {line!r}")
    return preamble, sections


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    """A running influxd in tmp_path, with the test database and a 4-week policy `recent`."""
    require_binary("influxd")
    with running_influxd(tmp_path / "influxd") as server:
        server.create_database(DB)
        server.create_retention_policy(DB, "recent", "4w")
        yield server


def recent_t0() -> int:
    """A whole second an hour ago: inside the `recent` policy's 4 weeks."""
    return (time.time_ns() // 10**9 - 3600) * 10**9


def test_require_binary_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing binary must fail CI (a skip would hide a broken install) but only skip locally."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/install-influxdb"):
        require_binary("influxd")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="scripts/install-influxdb"):
        require_binary("influxd")
    tool = tmp_path / "influxd"
    tool.write_text("#!/bin/sh\n", encoding="utf-8")
    tool.chmod(0o755)
    assert require_binary("influxd") == str(tool)


@pytest.mark.integration
def test_start_fails_with_influxd_output_when_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed start names influxd's own reason instead of just timing out."""
    require_binary("influxd")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        monkeypatch.setattr(influxdb_server, "free_ports", lambda count: [port] * count)
        server = InfluxServer(tmp_path)
        with pytest.raises(InfluxError, match="address already in use"):
            server.start()


@pytest.mark.integration
def test_counts_points_and_values_per_retention_policy(influx: InfluxServer) -> None:
    """count() is points, (series, time) pairs; count_values() is field values."""
    recent = recent_t0()
    influx.write(
        DB,
        line_protocol(
            [
                (SENSOR_11, {"pm10": "66.73", "pm25": "41i"}, T0),
                (SENSOR_11, {"note": '"calibrated"'}, T0 + 60 * 10**9),  # a point with other fields
                (SENSOR_12, {"pm10": "12.5"}, T0),  # same time, other series: another point
            ]
        ),
    )
    # Seconds precision: the server scales timestamps to ns.
    influx.write(DB, f"{SENSOR_11} pm10=1.5 {recent // 10**9}", rp="recent", precision="s")

    assert influx.count(DB, "pm") == 3
    assert influx.count_values(DB, "pm") == 4
    assert influx.count(DB, "pm", rp="recent") == 1
    assert influx.query(f"SELECT pm10 FROM {DB}.recent.pm", epoch="ns")["results"][0]["series"][0][
        "values"
    ] == [[recent, 1.5]]
    assert influx.count(DB, "no_such_measurement") == 0
    with pytest.raises(InfluxError, match="points beyond retention policy dropped=1"):
        influx.write(DB, f"{SENSOR_11} pm10=2 {T0}", rp="recent")


@pytest.mark.integration
def test_flush_to_tsm_moves_only_earlier_writes_and_restart_keeps_the_wal(
    influx: InfluxServer,
) -> None:
    """flush_to_tsm() snapshots what is in the WAL; a restart snapshots nothing."""
    influx.write(DB, f"{SENSOR_11} pm10=1 {T0}")
    assert influx.tsm_files(DB) == []
    assert len(influx.wal_segments(DB)) == 1

    influx.flush_to_tsm(DB)
    tsm = influx.tsm_files(DB)
    assert [p.relative_to(influx.data_dir).parts[:2] for p in tsm] == [(DB, "autogen")]
    assert influx.wal_segments(DB) == []

    influx.write(DB, f"{SENSOR_11} pm10=2 {T0 + 10**9}")
    wal = influx.wal_segments(DB)
    assert len(wal) == 1
    assert influx.tsm_files(DB) == tsm

    influx.stop()
    influx.start()
    assert influx.tsm_files(DB) == tsm
    assert influx.wal_segments(DB) == wal
    assert influx.count(DB, "pm") == 2


@pytest.mark.integration
def test_influx_inspect_exports_tsm_then_wal_of_both_policies(
    influx: InfluxServer, tmp_path: Path
) -> None:
    """The real export holds every written field value, one per line, under its policy."""
    inspect = require_binary("influx_inspect")
    recent = recent_t0()
    flushed: dict[str, list[Point]] = {
        "autogen": [
            (SENSOR_12, {"pm10": "12.5", "ok": "true"}, T0),
            (SENSOR_11, {"pm10": "66.73", "pm25": "41i", "note": r'"say \"hi\""'}, T0),
            (SENSOR_11, {"pm10": "1.234567e+06"}, T0 + 60 * 10**9),  # how Go prints 1234567.0
        ],
        "recent": [(SENSOR_11, {"pm10": "3.25"}, recent)],
    }
    in_wal: dict[str, list[Point]] = {
        "autogen": [(SENSOR_11, {"pm10": "70.5", "pm25": "43i"}, T0 + 120 * 10**9)],
        "recent": [(SENSOR_12, {"pm10": "4"}, recent + 10**9)],
    }
    for rp, points in flushed.items():
        influx.write(DB, line_protocol(points), rp=rp)
    influx.flush_to_tsm(DB)
    for rp, points in in_wal.items():
        influx.write(DB, line_protocol(points), rp=rp)

    out = tmp_path / "export.lp"
    subprocess.run(
        [
            inspect,
            "export",
            "-datadir",
            str(influx.data_dir),
            "-waldir",
            str(influx.wal_dir),
            "-out",
            str(out),
            "-database",
            DB,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    preamble, sections = read_export(out)

    assert preamble[:2] == [
        "# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z",
        "# DDL",
    ]
    # Policies come in Go map order, which changes from run to run.
    assert sorted(preamble[2:-1]) == [
        f"CREATE DATABASE {DB} WITH NAME autogen",
        f"CREATE DATABASE {DB} WITH NAME recent",
    ]
    assert preamble[-1] == "# DML"
    assert set(sections) == {(DB, rp, part) for rp in flushed for part in ("tsm", "wal")}
    for rp, points in flushed.items():
        assert sections[DB, rp, "tsm"] == export_lines(points)
        # A WAL entry's values sit in a Go map too: compare WAL lines regardless of order.
        assert sorted(sections[DB, rp, "wal"]) == sorted(export_lines(in_wal[rp]))
        exported = len(sections[DB, rp, "tsm"]) + len(sections[DB, rp, "wal"])
        assert exported == influx.count_values(DB, "pm", rp=rp)
