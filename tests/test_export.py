"""``headlined export`` against a real influxd and influx_inspect: exactly once, resumable."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.export_fixture import Fixture, build, normalise, read_dataset
from tests.influxdb_server import InfluxServer, require_binary, running_influxd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InfluxServer, Fixture]]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path_factory.mktemp("influx")) as influx:
        yield influx, build(influx)


def write_config(tmp_path: Path, influx: InfluxServer, inspect: str = "influx_inspect") -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "log_level": "info",
        "influx": {
            "inspect": inspect,
            "data_dir": str(influx.data_dir),
            "wal_dir": str(influx.wal_dir),
            "chunk": "7d",
            "output_dir": str(tmp_path / "influx"),
        },
    }
    path = tmp_path / "headlined.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def export(config: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headlined", "export", "-c", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def chunk_states(state_dir: Path) -> list[tuple[str, str, str, str | None]]:
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        return conn.execute(
            "SELECT database, strftime(start, '%Y-%m-%d'), state, error FROM export_chunks "
            "ORDER BY ALL"
        ).fetchall()
    finally:
        conn.close()


def test_every_point_exactly_once_with_its_latest_value(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    config = write_config(tmp_path, influx)
    result = export(config)
    assert result.returncode == 0, result.stderr
    assert "export complete" in result.stderr
    found = read_dataset(tmp_path / "influx")
    assert normalise(found) == normalise(fixture.expected)
    for (db, rp, measurement), points in fixture.expected.items():
        assert influx.count(db, measurement, rp) == len(points), (db, rp, measurement)
    assert {s for _, _, s, _ in chunk_states(tmp_path / "state")} == {"done"}
    again = export(config)  # everything done: nothing to redo, nothing doubled
    assert again.returncode == 0
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)
    views = subprocess.run(
        [
            sys.executable,
            "-m",
            "headlined",
            "query",
            "-c",
            str(config),
            "--json",
            'SELECT count(*) AS n, count(DISTINCT retention_policy) AS rps FROM "sensors"."pm"',
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert views.returncode == 0, views.stderr
    expected_pm = len(fixture.expected[("sensors", "autogen", "pm")]) + len(
        fixture.expected[("sensors", "archive", "pm")]
    )
    assert json.loads(views.stdout) == {"n": expected_pm, "rps": 2}


def test_kill_9_of_export_at_random_moments_then_rerun(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    config = write_config(tmp_path, influx)
    rng = random.Random(5)  # noqa: S311  reproducible kill moments, not cryptography
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "headlined", "export", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.8, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    states = {s for _, _, s, _ in chunk_states(tmp_path / "state")}
    result = export(config)
    assert result.returncode == 0, result.stderr
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)
    assert states  # the killed runs had planned and checkpointed something
    leftovers = list((tmp_path / "influx").rglob("*.tmp")) + list(
        (tmp_path / "influx" / ".work").glob("*/out/**/*.parquet")
    )
    assert leftovers == []


def children_named(pid: int, name: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        # nice and ionice exec into it under the same pid: any of the three counts.
        if ppid == pid and any(arg.endswith(name.encode()) for arg in cmdline):
            found.append(int(proc.name))
    return found


def test_kill_9_of_influx_inspect_is_retried(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, fixture = filled
    config = write_config(tmp_path, influx)
    proc = subprocess.Popen(
        [sys.executable, "-m", "headlined", "export", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = 0
    deadline = time.monotonic() + 120
    # Two kills at most: even if both hit one chunk, its third attempt must succeed.
    while proc.poll() is None and time.monotonic() < deadline and killed < 2:
        for child in children_named(proc.pid, "influx_inspect"):
            os.kill(child, signal.SIGKILL)
            killed += 1
        time.sleep(0.001)
    _, err = proc.communicate(timeout=300)
    assert killed >= 1, "influx_inspect was never caught running"
    assert proc.returncode == 0, err
    assert normalise(read_dataset(tmp_path / "influx")) == normalise(fixture.expected)


def test_failing_chunk_is_marked_and_others_complete(
    tmp_path: Path, filled: tuple[InfluxServer, Fixture]
) -> None:
    influx, _ = filled
    real = require_binary("influx_inspect")
    wrapper = tmp_path / "influx_inspect"
    wrapper.write_text(f"""#!/bin/sh
for arg in "$@"; do
  case "$arg" in 2024-01-15T*) echo "simulated: shard is unreadable" >&2; exit 1;; esac
done
exec {real} "$@"
""")
    wrapper.chmod(0o755)
    config = write_config(tmp_path, influx, inspect=str(wrapper))
    result = export(config)
    assert result.returncode == 1
    assert "2024-01-15" in result.stderr
    assert "simulated: shard is unreadable" in result.stderr
    states = chunk_states(tmp_path / "state")
    failed = [(db, start) for db, start, state, _ in states if state == "failed"]
    assert failed
    assert all(start == "2024-01-15" for _, start in failed)
    assert all(
        error and "simulated" in error for _, start, state, error in states if state == "failed"
    )
    assert all(state == "done" for _, start, state, _ in states if start != "2024-01-15")
