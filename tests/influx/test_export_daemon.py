"""A large export inside the daemon never starves the pollers; `headlined export` hands over."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from tests.support.daemon_process import (
    Daemon,
    first_answers,
    lost_records,
    status,
    stored_keys,
    write_config,
)
from tests.support.influxdb_server import require_binary, running_influxd

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERIES = 400
POINTS = 1000  # per series: 400k points x 5 fields = 2M exported lines
BASE = 1_704_067_200 * 10**9


def sensor_lines(series: int) -> list[str]:
    return [
        f"pm,id=s{series:04d},model=v2\\ x pm10={i * 0.25},pm25={i * 0.5},temp={20 + i % 7}.5,"
        f"hum={i % 100}i,ok={'true' if i % 3 else 'false'} {BASE + i * 60 * 10**9}"
        for i in range(POINTS)
    ]


def test_large_export_in_the_daemon_while_seven_fast_feeds_lose_nothing(tmp_path: Path) -> None:
    require_binary("influx_inspect")
    with running_influxd(tmp_path / "influxd") as influx:
        influx.create_database("big")
        for first in range(0, SERIES, 20):
            influx.write(
                "big", [line for s in range(first, first + 20) for line in sensor_lines(s)]
            )
        influx.flush_to_tsm("big")
        assert influx.count_values("big", "pm") == SERIES * POINTS * 5

        t0 = time.time() - 30
        specs = [
            FeedSpec(f"fast{n}", rate=20.0, shape=shape, seed=n, t0=t0)
            for n, shape in enumerate(
                [Shape.DATA, Shape.RESULT_ITEMS, Shape.BARE_LIST, Shape.NO_TIME] * 2
            )
        ][:7]
        influx_cfg = {
            "data_dir": str(influx.data_dir),
            "wal_dir": str(influx.wal_dir),
            "chunk": "1d",
            "output_dir": str(tmp_path / "out"),
        }
        with DemoFeedServer(specs) as server:
            config = write_config(tmp_path / "h.yaml", server, specs, influx=influx_cfg)
            daemon = Daemon(config)
            daemon.wait_started()
            handed = subprocess.run(
                [sys.executable, "-m", "headlined", "export", "-c", str(config)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert handed.returncode == 0, handed.stderr
            assert "the daemon holds the state file" in handed.stderr
            document = status(config)
            export = document["export"]
            assert isinstance(export, dict)
            assert export["big"]["rows"] == SERIES * POINTS
            time.sleep(3)
            stopped = time.time()
            assert daemon.stop() == 0, daemon.output()
        stored = stored_keys(tmp_path / "state")
        started = first_answers(tmp_path / "state")
        for spec in specs:
            keys = stored.get(spec.name, [])
            assert len(keys) == len(set(keys))
            lost = lost_records(server, spec, keys, started[spec.name], stopped - 1)
            assert lost == [], spec.name
        assert not daemon.events("gap_detected")
        assert not daemon.events("components_unhealthy")
