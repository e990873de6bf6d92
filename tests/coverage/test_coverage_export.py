"""``headlined coverage`` on a real export (issue #16, acceptance 1): a real influxd holds two
years of hourly readings of 12 stations; one has a 37-day hole, one moves from 1-minute to
5-minute readings, one ends half-way. After the export, coverage reports the hole (edges
within one cadence, "not in InfluxDB") and nothing else; a chunk made to fail shows its range
as "failed"; it also answers while the daemon runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tests.support.daemon_process import Daemon
from tests.support.influxdb_server import InfluxServer, require_binary

S = 1_000_000_000
HOUR = 3600 * S
MINUTE = 60 * S
START = 1_640_995_200 * S  # 2022-01-01T00:00:00Z
END = 1_704_067_200 * S  # 2024-01-01T00:00:00Z
HOLE = (1_665_360_000 * S, 1_668_556_800 * S)  # 2022-10-10 → 2022-11-16: 37 days
ENDS = 1_672_531_200 * S  # 2023-01-01: st02 stops here
FAST = (1_701_388_800 * S, 1_702_598_400 * S)  # 2023-12-01 → 12-15: st01 every minute
# … then every 5 minutes to the end.


def _times(station: str) -> Iterator[int]:
    if station == "st01":
        yield from range(FAST[0], FAST[1], MINUTE)
        yield from range(FAST[1], END, 5 * MINUTE)
        return
    for t in range(START, END, HOUR):
        if station == "st00" and HOLE[0] <= t < HOLE[1]:
            continue
        if station == "st02" and t >= ENDS:
            return
        yield t


STATIONS = [f"st{n:02d}" for n in range(12)]


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    with InfluxServer(tmp_path_factory.mktemp("influxd")) as server:
        server.create_database("air")
        for station in STATIONS:
            lines = [
                f"aq,station={station},site=bkk pm25={(t // HOUR) % 97 + 0.5} {t}"
                for t in _times(station)
            ]
            for i in range(0, len(lines), 20_000):
                server.write("air", lines[i : i + 20_000])
        server.flush_to_tsm("air")
        yield server


def _config(tmp_path: Path, influx: InfluxServer, inspect: str) -> Path:
    path = tmp_path / "headlined.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "influx": {
                    "inspect": inspect,
                    "data_dir": str(influx.data_dir),
                    "wal_dir": str(influx.wal_dir),
                    "chunk": "30d",
                    "follow": None,
                    "output_dir": str(tmp_path / "influx"),
                },
            }
        )
    )
    return path


def _headlined(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headlined", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _coverage(config: Path, *extra: str) -> dict[str, dict[str, Any]]:
    result = _headlined("coverage", "-c", str(config), "--json", *extra)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["kind"] == "series" for e in entries)
    return {e["tags"]["station"]: e for e in entries}


def _ns(stamp: str) -> int:
    moment = datetime.fromisoformat(stamp)
    assert moment.tzinfo == UTC
    return int(moment.timestamp()) * S


def _failed_chunks(state_dir: Path) -> list[tuple[int, int]]:
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        rows = conn.execute(
            "SELECT epoch_ns(start), epoch_ns(\"end\") FROM export_chunks WHERE state = 'failed'"
        ).fetchall()
    finally:
        conn.close()
    return [(int(a), int(b)) for a, b in rows]


def test_coverage_shows_the_hole_the_failed_chunk_and_nothing_else(
    tmp_path: Path, influx: InfluxServer
) -> None:
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(f"""#!/bin/sh
for arg in "$@"; do
  case "$arg" in 2023-06-*) echo "simulated: shard is unreadable" >&2; exit 1;; esac
done
exec {require_binary("influx_inspect")} "$@"
""")
    wrapper.chmod(0o755)
    config = _config(tmp_path, influx, str(wrapper))
    assert _headlined("export", "-c", str(config)).returncode == 1
    failed = _failed_chunks(tmp_path / "state")
    assert failed, "the wrapper should have failed a June 2023 chunk"

    found = _coverage(config)
    assert sorted(found) == STATIONS
    for station in ("st03", "st07", "st11"):
        spans = [(_ns(m["start"]), _ns(m["end"])) for m in found[station]["missing"]]
        causes = {m["cause"] for m in found[station]["missing"]}
        assert causes == {"failed"}, found[station]
        # Each failed chunk's range is missing (adjacent failed chunks make one interval),
        # its edges within one reading of the chunks' edges.
        for lo, hi in failed:
            assert any(a - HOUR <= lo and hi <= b + HOUR for a, b in spans), (lo, hi, spans)
        for a, b in spans:
            assert any(abs(a - lo) <= HOUR for lo, _ in failed), (a, failed)
            assert any(abs(b - hi) <= HOUR for _, hi in failed), (b, failed)

    # Exported again with the real influx_inspect: only the real hole is left.
    config = _config(tmp_path, influx, "influx_inspect")
    result = _headlined("export", "-c", str(config))
    assert result.returncode == 0, result.stderr
    found = _coverage(config)
    hole = found["st00"]["missing"]
    assert len(hole) == 1, hole
    assert hole[0]["cause"] == "not in InfluxDB"
    assert abs(_ns(hole[0]["start"]) - HOLE[0]) <= HOUR
    assert abs(_ns(hole[0]["end"]) - HOLE[1]) <= HOUR
    assert found["st00"]["cadence_s"] == pytest.approx(3600, rel=0.01)
    fast = found["st01"]
    assert fast["missing"] == [], fast  # 1-minute, then 5-minute readings: no hole
    assert fast["points"] == len(list(_times("st01")))
    ended = found["st02"]
    assert ended["missing"] == [], ended
    assert ended["ended"] is True
    assert _ns(ended["last"]) == ENDS - HOUR
    for station in STATIONS[3:]:
        entry = found[station]
        assert entry["missing"] == [], entry
        assert entry["coverage"] >= 0.999, entry
        assert entry["points"] == (END - START) // HOUR
        assert entry["first"] == "2022-01-01T00:00:00Z"
        assert entry["last"] == "2023-12-31T23:00:00Z"
        assert entry["database"] == "air"
        assert entry["retention_policy"] == "autogen"
        assert entry["measurement"] == "aq"
        assert entry["tags"] == {"site": "bkk", "station": station}

    # Filters, and the table a person reads.
    assert set(_coverage(config, "--since", "2022-10-01", "--until", "2022-12-01")) == set(
        STATIONS
    ) - {"st01"}
    assert _coverage(config, "--database", "nope") == {}
    table = _headlined("coverage", "-c", str(config))
    assert table.returncode == 0, table.stderr
    assert "air/autogen/aq site=bkk,station=st00" in table.stdout
    assert "not in InfluxDB" in table.stdout

    # While the daemon runs (it holds the state file), the same answer.
    daemon = Daemon(config)
    daemon.wait_started()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not daemon.events("export_complete"):
        time.sleep(0.2)
    assert _coverage(config) == found
    assert daemon.stop() == 0, daemon.output()

    # The HTML report of the same coverage, self-contained.
    page = tmp_path / "coverage.html"
    result = _headlined("coverage", "-c", str(config), "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text(encoding="utf-8")
    assert "station=st00" in text
    assert "not in InfluxDB" in text
    assert "http://" not in text
    assert "https://" not in text
