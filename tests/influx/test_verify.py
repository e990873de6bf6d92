"""``headlined verify`` against a real influxd: a clean export verifies; a Parquet file removed
or rows dropped from one are found, series by series and day by day; days of chunks still
open are listed apart; a config without ``influx.url`` is refused with what to set."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from headlined.influx.verify.compare import day_text
from tests.support.daemon_process import Daemon
from tests.support.export_fixture import Fixture, build, export, export_config
from tests.support.influxdb_server import (
    InfluxServer,
    edit_config,
    require_binary,
    running_influxd,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 86_400 * 10**9
PM = ("sensors", "autogen", "pm")
PM_FIELDS = ("count", "note", "ok", "pm10", "pm25")
TAGS = ("id", "model")


def write_config(root: Path, influx: InfluxServer, **extra: Any) -> Path:
    # Several files per measurement (chunk 7d), so that one can go missing.
    settings = {"chunk": "7d", "url": influx.http_url, **extra}
    return export_config(root, influx.data_dir, influx.wal_dir, output="influx", **settings)


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[InfluxServer, Fixture, Path]]:
    """influxd filled by the export fixture, and one clean export of it (kept pristine)."""
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path_factory.mktemp("influxdb")) as influx:
        fixture = build(influx)
        root = tmp_path_factory.mktemp("clean")
        result = export(write_config(root, influx))
        assert result.returncode == 0, result.stderr
        yield influx, fixture, root


@pytest.fixture
def copy(tmp_path: Path, exported: tuple[InfluxServer, Fixture, Path]) -> tuple[Path, Path]:
    """This test's own copy of the export (state and Parquet): (config, Parquet folder)."""
    influx, _, clean = exported
    shutil.copytree(clean / "state", tmp_path / "state")
    shutil.copytree(clean / "influx", tmp_path / "influx")
    return write_config(tmp_path, influx), tmp_path / "influx"


def verify(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``headlined verify -c CONFIG`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "headlined", "verify", "-c", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


Found = dict[tuple[str, str, str, tuple[tuple[str, str], ...], str], dict[str, Any]]


def differences(config: Path) -> tuple[int, Found]:
    """Exit code and every difference ``verify --json`` prints, by (db, rp, m, tags, day)."""
    result = verify(config, "--json")
    assert result.returncode in (0, 1), result.stderr
    found: Found = {}
    for line in result.stdout.splitlines():
        item = json.loads(line)
        key = (
            item["database"],
            item["retention_policy"],
            item["measurement"],
            tuple(sorted(item["tags"].items())),
            item["day"],
        )
        assert key not in found, f"listed twice: {key}"
        found[key] = item
    return result.returncode, found


def series_days(path: Path, where: str = "true") -> dict[tuple[Any, ...], dict[str, int]]:
    """Per (tags, day) of one ``pm`` file (rows matching ``where``): the values per field."""
    counted = ", ".join(f"count({f})" for f in PM_FIELDS)
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT id, model, epoch_ns(time) // {DAY} * {DAY} AS day, {counted} "
            f"FROM read_parquet('{path}') WHERE {where} GROUP BY ALL"
        )
        .fetchall()
    )
    return {
        (tuple(sorted(zip(TAGS, row[:2], strict=True))), day_text(row[2])): dict(
            zip(PM_FIELDS, row[3:], strict=True)
        )
        for row in rows
    }


def pm_files(out: Path) -> list[Path]:
    return sorted((out / "sensors" / "autogen" / "pm").glob("*.parquet"))


def test_clean_export_has_no_mismatch(copy: tuple[Path, Path]) -> None:
    config, _ = copy
    result = verify(config)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # the summary alone, no difference
    assert "no mismatch" in lines[0]
    assert differences(config) == (0, {})


def test_a_removed_file_lists_its_series_and_days(copy: tuple[Path, Path]) -> None:
    config, out = copy
    removed = pm_files(out)[1]
    lost = series_days(removed)
    assert len(lost) > 10  # three stations over a week
    removed.unlink()
    code, found = differences(config)
    assert code == 1
    assert set(found) == {(*PM, tags, day) for tags, day in lost}
    for (tags, day), counts in lost.items():
        item = found[(*PM, tags, day)]
        assert item["kind"] == "mismatch"
        assert (item["parquet_points"], item["influxdb_points"]) == (0, max(counts.values()))
        assert item["fields"] == {f: {"parquet": 0, "influxdb": n} for f, n in counts.items() if n}
    table = verify(config)
    assert table.returncode == 1
    listed = [line for line in table.stdout.splitlines() if "sensors/autogen/pm" in line]
    assert len(listed) == len(lost)
    some_tags, some_day = min(lost)
    series = ",".join(f"{k}={v}" for k, v in some_tags)
    assert any(line.startswith(some_day) and series in line for line in listed), listed
    assert f"{len(lost)} mismatch(es) in 3 series" in table.stdout


def test_rows_dropped_from_a_file_list_those_series_and_days(copy: tuple[Path, Path]) -> None:
    config, out = copy
    target = pm_files(out)[2]
    before = series_days(target)
    day = sorted({d for _, d in before})[3]
    gone = f"id = 'st 2' AND strftime(time, '%Y-%m-%d') = '{day}' AND hour(time) >= 12"
    kept = series_days(target, f"NOT ({gone})")
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    rewritten = target.with_name(".rewritten.parquet")
    conn.execute(
        f"COPY (SELECT * FROM read_parquet('{target}') WHERE NOT ({gone})) "
        f"TO '{rewritten}' (FORMAT parquet)"
    )
    rewritten.replace(target)
    code, found = differences(config)
    assert code == 1
    series = (("id", "st 2"), ("model", "v2 x"))
    assert set(found) == {(*PM, series, day)}
    item = found[(*PM, series, day)]
    assert item["parquet_points"] == max(kept[(series, day)].values())
    assert item["influxdb_points"] == max(before[(series, day)].values())
    assert item["parquet_points"] < item["influxdb_points"]
    assert set(item["fields"]) == {f for f in PM_FIELDS if before[(series, day)][f]}


def test_days_of_an_open_chunk_are_listed_apart_and_do_not_fail(copy: tuple[Path, Path]) -> None:
    config, out = copy
    removed = pm_files(out)[0]
    lost = series_days(removed)
    removed.unlink()
    start = removed.name.split("_")[0]
    state = duckdb.connect(str(config.parent / "state" / "headlined.duckdb"))
    try:
        changed = state.execute(
            "UPDATE export_chunks SET state = 'open' WHERE database = 'sensors' "
            "AND retention_policy = 'autogen' AND strftime(start, '%Y%m%dT%H%M%SZ') = ?",
            [start],
        ).fetchall()
    finally:
        state.close()
    assert changed == [(1,)], f"no chunk starts at {start}"
    code, found = differences(config)
    assert code == 0
    assert {k[3:] for k in found} == set(lost)
    assert {item["kind"] for item in found.values()} == {"unsettled"}
    assert {item["chunk_state"] for item in found.values()} == {"open"}
    table = verify(config)
    assert table.returncode == 0
    assert "no mismatch" in table.stdout
    assert f"{len(lost)} difference(s) in chunks still open" in table.stdout


def test_verify_works_while_the_daemon_holds_the_state_file(copy: tuple[Path, Path]) -> None:
    config, out = copy
    removed = pm_files(out)[3]
    lost = series_days(removed)
    removed.unlink()
    daemon = Daemon(config)
    daemon.wait_started()
    try:
        code, found = differences(config)
        assert (code, {k[3:] for k in found}) == (1, set(lost))
    finally:
        assert daemon.stop() == 0, daemon.output()


def test_a_measurement_missing_altogether_is_found_and_database_narrows_the_run(
    copy: tuple[Path, Path], exported: tuple[InfluxServer, Fixture, Path]
) -> None:
    config, out = copy
    _, fixture, _ = exported
    shutil.rmtree(out / "weather")
    assert verify(config, "--database", "sensors").returncode == 0
    result = verify(config, "--database", "weather", "--json")
    assert result.returncode == 1
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    days = {day_text(t - t % DAY) for _, t in fixture.expected[("weather", "autogen", "temp")]}
    assert {(i["measurement"], i["day"]) for i in listed} == {("temp", d) for d in days}
    assert {i["parquet_points"] for i in listed} == {0}


def test_an_unreachable_influxdb_is_a_failure_that_names_the_url(
    tmp_path: Path, exported: tuple[InfluxServer, Fixture, Path]
) -> None:
    influx, _, clean = exported
    shutil.copytree(clean / "state", tmp_path / "state")
    config = write_config(tmp_path, influx, url="http://127.0.0.1:9")  # discard: nothing listens
    result = verify(config)
    assert result.returncode == 1
    assert "cannot reach InfluxDB at http://127.0.0.1:9" in result.stderr


def test_without_influx_url_verify_says_what_to_set(
    tmp_path: Path, exported: tuple[InfluxServer, Fixture, Path]
) -> None:
    influx, _, _ = exported
    config = write_config(tmp_path, influx, url=None)
    result = verify(config)
    assert result.returncode == 2
    assert "influx.url is not set" in result.stderr
    assert "http://127.0.0.1:8086" in result.stderr


class AuthInflux(InfluxServer):
    """An influxd that wants a user and password for every query (``auth-enabled``)."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text(encoding="utf-8")
        self.config_path.write_text(edit_config(text, {("http", "auth-enabled"): "true"}))


PASSWORD = "pw-5d1e-secret"


def headlined(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``headlined ARGS`` with extra environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "headlined", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def test_credentials_reach_influxdb_and_never_the_output(tmp_path: Path) -> None:
    require_binary("influxd")
    require_binary("influx_inspect")
    with AuthInflux(tmp_path / "influxdb") as influx:
        # The first user may be created without credentials; then every request needs them.
        influx.query(f"CREATE USER admin WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES")
        influx.client.auth = httpx.BasicAuth("admin", PASSWORD)
        influx.create_database("db")
        influx.write("db", [f"m,id=a v={i} {1_704_067_200 * 10**9 + i * 10**9}" for i in range(5)])
        reference = "${INFLUX_PASSWORD}"  # taken from the environment at load
        config = write_config(tmp_path, influx, username="admin", password=reference)
        right = {"INFLUX_PASSWORD": PASSWORD}
        exported = headlined("export", "-c", str(config), env=right)
        assert exported.returncode == 0, exported.stderr  # the files need no credentials

        ok = headlined("verify", "-c", str(config), env=right)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "1 series-days compared" in ok.stdout  # one series, one day
        assert "no mismatch" in ok.stdout

        refused = headlined("verify", "-c", str(config), env={"INFLUX_PASSWORD": "nope"})
        assert refused.returncode == 1
        assert "refused the credentials (401" in refused.stderr
        assert "influx.username and influx.password" in refused.stderr

        token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
        config = write_config(tmp_path, influx, headers={"Authorization": "Basic ${TOKEN}"})
        by_header = headlined("verify", "-c", str(config), env={"TOKEN": token})
        assert by_header.returncode == 0, by_header.stdout + by_header.stderr
        for result in (exported, ok, refused, by_header):
            assert PASSWORD not in result.stdout + result.stderr
            assert token not in result.stdout + result.stderr
