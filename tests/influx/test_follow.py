"""Following a live InfluxDB (real influxd and influx_inspect): after InfluxDB changes, by
hand and by the daemon, the Parquet equals InfluxQL's answer exactly; a kill -9 during the
re-export of a changed chunk loses and doubles nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from headlined.influx.chunkplan import GO_ZERO_NS, to_ns
from headlined.influx.convert import path_segment
from tests.support.daemon_process import Daemon
from tests.support.export_fixture import export, export_config
from tests.support.influxdb_server import (
    InfluxServer,
    quote_ident,
    require_binary,
    running_influxd,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = 3600 * 10**9
DAY = 24 * HOUR
NOW = to_ns(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
START = NOW - 40 * DAY
# The week's start (InfluxDB's 7-day shard groups start on Go's zero time, a Monday) from
# which the field `depth` is written as an integer: before, it was a float.
SWITCH = (NOW - 14 * DAY + GO_ZERO_NS) // (7 * DAY) * (7 * DAY) - GO_ZERO_NS
STATIONS = ("s1", "s 2", "s,3")
TYPES = {"float": "DOUBLE", "integer": "BIGINT", "string": "VARCHAR", "boolean": "BOOLEAN"}

Points = dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, Any]]


def escape(tag: str) -> str:
    return tag.replace(",", "\\,").replace(" ", "\\ ")


def air(station: str, t: int, i: int) -> str:
    return (
        f"air,station={escape(station)} pm25={i % 97 + 0.25},count={i}i,"
        f'ok={"true" if i % 3 else "false"},note="n{i % 7}" {t}'
    )


def level(t: int, i: int, *, integer: bool) -> str:
    return f"level,site=dam depth={i}i {t}" if integer else f"level,site=dam depth={i + 0.5} {t}"


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path / "influxdb") as server:
        server.create_database("live")
        old = [
            air(s, t, i)
            for i, t in enumerate(range(START, NOW - 2 * DAY, 2 * HOUR))
            for s in STATIONS
        ]
        old += [
            level(t, i, integer=t >= SWITCH)
            for i, t in enumerate(range(START, NOW - 2 * DAY, 6 * HOUR))
        ]
        server.write("live", old)
        server.flush_to_tsm("live")
        recent = [
            air(s, t, i)
            for i, t in enumerate(range(NOW - 2 * DAY, NOW - HOUR, 2 * HOUR))
            for s in STATIONS
        ]
        server.write("live", recent)  # left in the WAL
        yield server


def write_config(tmp_path: Path, influx: InfluxServer, **extra: Any) -> Path:
    return export_config(tmp_path, influx.data_dir, influx.wal_dir, **extra)


def in_influx(influx: InfluxServer, db: str) -> tuple[Points, dict[str, dict[str, str]]]:
    """Every point of ``db`` by InfluxQL, and each measurement's field types."""
    points: Points = {}
    types: dict[str, dict[str, str]] = {}
    shown = influx.query("SHOW MEASUREMENTS", db)["results"][0].get("series", [])
    for (measurement,) in shown[0]["values"] if shown else []:
        fields = influx.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}", db)
        kinds: dict[str, set[str]] = {}
        for name, kind in fields["results"][0]["series"][0]["values"]:
            kinds.setdefault(name, set()).add(kind)
        types[measurement] = {
            name: TYPES[k.pop()] if len(k) == 1 else "DOUBLE" for name, k in kinds.items()
        }
        body = influx.query(f"SELECT * FROM {quote_ident(measurement)} GROUP BY *", db, epoch="ns")
        for series in body["results"][0].get("series", []):
            tags = tuple(sorted((k, v) for k, v in series.get("tags", {}).items() if v))
            columns = series["columns"]
            for row in series["values"]:
                values = dict(zip(columns, row, strict=True))
                t = values.pop("time")
                points[(measurement, tags, t)] = {k: v for k, v in values.items() if v is not None}
    return points, types


def in_parquet(out: Path, db: str, tag_keys: set[str]) -> tuple[Points, dict[str, dict[str, str]]]:
    """Every point of ``db`` in the Parquet (no (series, time) twice), and the column types
    of each measurement, which must be the same in every file."""
    points: Points = {}
    types: dict[str, dict[str, str]] = {}
    conn = duckdb.connect()
    for directory in sorted((out / path_segment(db)).glob("*/*")):
        measurement = directory.name
        schemas = {
            tuple(conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{f}')").fetchall())
            for f in directory.glob("*.parquet")
        }
        assert len(schemas) == 1, f"{measurement}: files differ in schema: {schemas}"
        columns = {row[0]: row[1] for row in schemas.pop()}
        assert columns.pop("time") == "TIMESTAMPTZ_NS"
        types[measurement] = {k: v for k, v in columns.items() if k not in tag_keys}
        names = list(columns)
        rows = conn.execute(
            f"SELECT epoch_ns(time), * EXCLUDE (time) FROM read_parquet('{directory}/*.parquet')"
        ).fetchall()
        for t, *values in rows:
            named = dict(zip(names, values, strict=True))
            tags = tuple(sorted((k, v) for k, v in named.items() if k in tag_keys and v))
            key = (measurement, tags, t)
            assert key not in points, f"point twice: {key}"
            points[key] = {k: v for k, v in named.items() if k not in tag_keys and v is not None}
    return points, types


def assert_mirror(influx: InfluxServer, out: Path, *databases: str) -> None:
    for db in databases:
        expected, expected_types = in_influx(influx, db)
        tag_keys = {k for _, tags, _ in expected for k, _ in tags}
        found, found_types = in_parquet(out, db, tag_keys)
        assert found.keys() == expected.keys(), (
            f"{db}: missing {sorted(expected.keys() - found.keys())[:5]}, "
            f"extra {sorted(found.keys() - expected.keys())[:5]}"
        )
        wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
        assert not wrong, f"{db}: {len(wrong)} points differ, e.g. {list(wrong.items())[:3]}"
        assert found_types == expected_types


def converges(
    influx: InfluxServer, out: Path, daemon: Daemon, *databases: str, timeout: float = 120
) -> None:
    """Within ``timeout`` the running daemon's Parquet mirrors InfluxDB exactly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_mirror(influx, out, *databases)
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(daemon.output()[-4000:]) from None
            time.sleep(0.5)
        else:
            return


def change_influx(influx: InfluxServer, round_: int) -> None:
    """What users do to a live InfluxDB: late points in the last closed week, points now, a
    corrected value in an old week, a DELETE of one series' range, a new database."""
    last_week = NOW - 9 * DAY + HOUR + round_ * 10**9  # odd hours: new times
    lines = [air("s1", last_week + i * 2 * HOUR, 1000 + i) for i in range(10)]
    lines += [air(s, NOW - 20 * 60 * 10**9 + round_ * 10**9, 2000) for s in STATIONS]
    old = START + 10 * DAY  # on the 2-hour grid: the same point, another value
    lines.append(f"air,station=s\\ 2 pm25={777.25 + round_} {old}")
    influx.write("live", lines)
    low, high = START + (15 + round_) * DAY, START + (17 + round_) * DAY
    influx.query(
        f"DELETE FROM air WHERE station = 's,3' AND time >= {low} AND time < {high}", "live"
    )
    fresh = f"fresh{round_}"
    influx.create_database(fresh)
    influx.write(fresh, [f"m,k=v x={i}.5 {NOW - DAY + i * 10**9}" for i in range(50)])


def test_follow_by_hand_then_by_the_daemon_then_through_a_kill(
    tmp_path: Path, influx: InfluxServer
) -> None:
    config = write_config(tmp_path, influx, follow="1s")
    out = tmp_path / "out"
    first = export(config)
    assert first.returncode == 0, first.stderr
    assert_mirror(influx, out, "live")

    # By hand: `headlined export` finds what changed and exports exactly that again.
    change_influx(influx, 0)
    second = export(config)
    assert second.returncode == 0, second.stderr
    assert_mirror(influx, out, "live", "fresh0")

    # The daemon follows by itself.
    change_influx(influx, 1)
    influx.flush_to_tsm("live")  # a WAL snapshot: new TSM files, the same points
    daemon = Daemon(config)
    daemon.wait_started()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not daemon.events("export_complete"):
        time.sleep(0.2)
    assert daemon.events("export_complete"), daemon.output()
    change_influx(influx, 2)
    converges(influx, out, daemon, "live", "fresh0", "fresh1", "fresh2")
    assert daemon.stop() == 0, daemon.output()
    assert "Traceback" not in daemon.output()
    assert len(daemon.events("export_changed")) >= 2, daemon.output()

    # kill -9 while changed chunks are exported again, then a rerun: still exact.
    rng = random.Random(15)  # noqa: S311  reproducible kill moments, not cryptography
    killed = 0
    for round_ in (3, 4, 5):
        change_influx(influx, round_)
        proc = subprocess.Popen(
            [sys.executable, "-m", "headlined", "export", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        work = out / ".work"
        while proc.poll() is None and not (work.exists() and any(work.iterdir())):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.3))
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed >= 2, "the kills came after the export had finished: nothing was tested"
    last = export(config)
    assert last.returncode == 0, last.stderr
    assert_mirror(influx, out, "live", *(f"fresh{r}" for r in range(6)))


def test_the_same_data_chunked_three_ways_gives_one_schema_and_the_same_rows(
    tmp_path: Path, influx: InfluxServer
) -> None:
    results = []
    ways: dict[str, dict[str, Any]] = {
        "day": {"chunk": "1d", "chunk_points": 1000},
        "week": {"chunk": "7d"},
        "month": {"chunk": "30d"},
    }
    for name, settings in ways.items():
        config = write_config(tmp_path / name, influx, **settings)
        done = export(config)
        assert done.returncode == 0, done.stderr
        expected, _ = in_influx(influx, "live")
        tag_keys = {k for _, tags, _ in expected for k, _ in tags}
        results.append(in_parquet(tmp_path / name / "out", "live", tag_keys))
    assert results[0] == results[1] == results[2]
    assert results[0][1]["level"] == {"depth": "DOUBLE"}  # float, then integer: one column
    assert_mirror(influx, tmp_path / "week" / "out", "live")


def test_time_reads_as_utc_in_pyarrow_polars_and_duckdb(
    tmp_path: Path, influx: InfluxServer
) -> None:
    import polars  # noqa: PLC0415  only this test needs it
    import pyarrow.parquet  # noqa: PLC0415  only this test needs it

    config = write_config(tmp_path, influx)
    assert export(config).returncode == 0
    files = sorted((tmp_path / "out" / "live").glob("*/air/*.parquet"))
    assert files
    for path in files:
        arrow = pyarrow.parquet.read_table(path).schema.field("time").type
        assert str(arrow) == "timestamp[ns, tz=UTC]"
        frame = polars.read_parquet(path)
        assert frame.schema["time"] == polars.Datetime("ns", "UTC")
        conn = duckdb.connect()
        conn.execute("SET TimeZone = 'America/New_York'")
        typed = conn.execute(
            f"SELECT any_value(typeof(time)), min(epoch_ns(time)) FROM '{path}'"
        ).fetchone()
        assert typed is not None
        assert typed[0] == "TIMESTAMPTZ_NS"
        assert typed[1] == frame["time"].cast(polars.Int64).min()


def test_chunks_exported_before_signatures_are_exported_once_more_then_kept(
    tmp_path: Path, influx: InfluxServer
) -> None:
    """A state file from before (schema version 3: no signature, no export_fields) keeps its
    checkpoints: each chunk is exported once more, into place, then left alone."""
    config = write_config(tmp_path, influx)
    out = tmp_path / "out"
    assert export(config).returncode == 0
    state = tmp_path / "state" / "headlined.duckdb"
    conn = duckdb.connect(str(state))
    planned = conn.execute("SELECT count(*) FROM export_chunks").fetchone()
    conn.execute("UPDATE export_chunks SET signature = NULL, exported_at = NULL")
    conn.execute("DELETE FROM export_fields")
    conn.close()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = export(config)
    assert again.returncode == 0, again.stderr
    conn = duckdb.connect(str(state), read_only=True)
    rows = conn.execute(
        "SELECT count(*), count(signature), count(exported_at) FROM export_chunks"
    ).fetchone()
    conn.close()
    assert planned is not None
    assert rows == (planned[0], planned[0], planned[0])
    assert_mirror(influx, out, "live")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    assert stamps.keys() == before.keys()
    assert all(stamps[p] != before[p] for p in stamps)  # every file written anew
    assert export(config).returncode == 0  # nothing changed: nothing exported again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == stamps
