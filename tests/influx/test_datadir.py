"""Discovery of databases, retention policies and time ranges from real influxd files."""

from __future__ import annotations

from pathlib import Path

import pytest

from headlined.influx.datadir import (
    DataDirError,
    InfluxFilesError,
    discover,
    extents,
    tsm_time_range,
)
from tests.support.influxdb_server import require_binary, running_influxd

pytestmark = pytest.mark.integration

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
HOUR = 3600 * 10**9


def test_tsm_ranges_databases_and_policies(tmp_path: Path) -> None:
    require_binary("influxd")
    with running_influxd(tmp_path) as influx:
        for db in ("alpha", "beta", "_internal_like"):
            influx.create_database(db)
        influx.create_retention_policy("alpha", "short", "INF")
        influx.write("alpha", [f"m,id=a v={i} {BASE + i * HOUR}" for i in range(50)])
        influx.write("alpha", [f"m v=1 {BASE - 5 * HOUR}"], rp="short")
        influx.write("beta", [f"m v=1 {BASE + 1000 * HOUR}"])
        influx.flush_to_tsm("alpha")
        influx.flush_to_tsm("alpha", "short")
        influx.write("alpha", [f"m v=2 {BASE + 500 * HOUR}"])  # stays in the WAL
        discovery = discover(influx.data_dir, influx.wal_dir, [], influx.meta_dir)
        found = discovery.found
        names = [(f.database, f.retention_policy) for f in found]
        assert ("alpha", "autogen") in names
        assert ("alpha", "short") in names
        alpha = next(f for f in found if (f.database, f.retention_policy) == ("alpha", "autogen"))
        assert alpha.tsm
        assert alpha.wal_bytes > 0
        assert tsm_time_range(Path(alpha.tsm[0].path)) == (BASE, BASE + 49 * HOUR)
        assert (alpha.tsm[0].first_ns, alpha.tsm[0].last_ns) == (BASE, BASE + 49 * HOUR)
        assert discovery.meta_error is None
        assert discovery.shards  # each shard's time range, from meta.db
        ranges = {
            (e.database, e.retention_policy): (e.first_ns, e.last_ns)
            for e in extents(discovery, {("alpha", "autogen"): (BASE, BASE + 500 * HOUR)})
        }
        assert ranges[("alpha", "autogen")] == (BASE, BASE + 500 * HOUR)
        assert ranges[("alpha", "short")] == (BASE - 5 * HOUR, BASE - 5 * HOUR)
        assert ("beta", "autogen") not in ranges  # WAL only, and no WAL range given
        only = discover(influx.data_dir, influx.wal_dir, ["beta"])
        assert {f.database for f in only.found} == {"beta"}


def test_missing_directory_and_database_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="no such directory") as missing:
        discover(tmp_path / "nope", tmp_path, [])
    assert missing.value.kind == "missing"
    (tmp_path / "data" / "db1").mkdir(parents=True)
    with pytest.raises(DataDirError, match="no database db2") as absent:
        discover(tmp_path / "data", tmp_path, ["db2"])
    assert absent.value.kind == "no_database"


def test_corrupt_tsm_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "000000001-000000001.tsm"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(InfluxFilesError, match="bad magic"):
        tsm_time_range(bad)
    truncated = tmp_path / "t.tsm"
    truncated.write_bytes(b"\x16\xd1\x16\xd1\x01" + b"\x00\x05\xff" + (5).to_bytes(8, "big"))
    with pytest.raises(InfluxFilesError, match="truncated index"):
        tsm_time_range(truncated)
