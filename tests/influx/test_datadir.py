"""Discovery of databases, retention policies and time ranges from real influxd files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from headlined.influx.datadir import (
    DataDirError,
    Discovery,
    InfluxFilesError,
    TsmFile,
    block_points,
    blocks,
    discover,
    extents,
    hour_of,
    tsm_time_range,
)
from headlined.influx.schema import MeasurementTypes
from tests.support.influxdb_server import require_binary, running_influxd

pytestmark = pytest.mark.integration

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
HOUR = 3600 * 10**9
WEEK = 7 * 24 * HOUR


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


def only_file(discovery: Discovery) -> TsmFile:
    (found,) = discovery.found
    (tsm,) = found.tsm
    return tsm


def test_stat_tombstone_volume_and_types_of_real_files(tmp_path: Path) -> None:
    require_binary("influxd")
    with running_influxd(tmp_path) as influx:
        influx.create_database("plant")
        key = r"m\ x,t\,a=v\=1\ 2"  # measurement "m x", tag "t,a" = "v=1 2"
        points = [
            f'{key} n={h}.5,s="at {h}:{m}",b=true {BASE + h * HOUR + m * 60 * 10**9}'
            for h in range(6)
            for m in range(0, 60, 10)
        ]
        influx.write("plant", [*points, f"other v=1 {BASE}"])
        influx.flush_to_tsm("plant")
        influx.write("plant", [f"{key} n=3i {BASE + WEEK}"])  # another shard, in the WAL
        discovery = discover(influx.data_dir, influx.wal_dir, ["plant"])
        tsm = only_file(discovery)
        stat = Path(tsm.path).stat()
        assert (tsm.size, tsm.mtime_ns, tsm.tombstone) == (stat.st_size, stat.st_mtime_ns, None)
        data_hours = {hour_of(BASE) + h for h in range(6)}
        assert set(tsm.volume) == data_hours  # nothing outside the hours holding data
        assert sum(tsm.volume.values()) >= 3 * len(points)  # an upper bound of the values
        assert tsm.types == {
            "m x": MeasurementTypes({"t,a"}, {"n": {"float"}, "s": {"string"}, "b": {"boolean"}}),
            "other": MeasurementTypes(set(), {"v": {"float"}}),
        }
        (found,) = discovery.found
        assert found.wal_bytes > 0
        for segment in found.wal:
            stat = Path(segment.path).stat()
            assert (segment.size, segment.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        assert any(
            s.size and Path(s.path).parent.name != Path(tsm.path).parent.name for s in found.wal
        )

        influx.query(
            f'DELETE FROM "m x" WHERE time >= {BASE + HOUR} AND time < {BASE + 2 * HOUR}', "plant"
        )
        deleted = only_file(discover(influx.data_dir, influx.wal_dir, ["plant"]))
        # InfluxDB 1.6 writes 000000001-000000001.tombstone beside 000000001-000000001.tsm; the
        # TSM file itself stays as it was.
        assert Path(tsm.path).with_suffix(".tombstone").is_file()
        assert deleted.tombstone is not None
        assert (deleted.path, deleted.size, deleted.mtime_ns) == (tsm.path, tsm.size, tsm.mtime_ns)
        influx.query("DROP SERIES FROM other", "plant")
        dropped = only_file(discover(influx.data_dir, influx.wal_dir, ["plant"]))
        assert dropped.tombstone is not None
        assert dropped.tombstone[0] > deleted.tombstone[0]  # each delete adds to it


def test_points_per_block_are_read_from_the_timestamps(tmp_path: Path) -> None:
    """block_points agrees with InfluxQL over every block of real files: regular times
    (run-length), irregular ones (simple8b), and blocks full (1000) and partial."""
    require_binary("influxd")
    rng = random.Random(3)  # noqa: S311  reproducible irregular times, not cryptography
    with running_influxd(tmp_path) as influx:
        influx.create_database("plant")
        regular = [f"r,id={s} v={i}.5 {BASE + i * 10**9}" for s in range(3) for i in range(2500)]
        at = BASE
        irregular = []
        for i in range(1700):
            at += rng.randrange(1, 10**12)
            irregular.append(f"j v={i}i {at}")
        influx.write("plant", regular + irregular)
        influx.flush_to_tsm("plant")
        counted = 0
        for path in influx.tsm_files("plant"):
            with path.open("rb") as f:
                for block in blocks(path):
                    f.seek(block.offset)
                    points = block_points(f.read(block.size))
                    assert points is not None
                    assert 0 < points <= 1000
                    counted += points
        assert counted == influx.count_values("plant", "r") + influx.count_values("plant", "j")
        assert counted == len(regular) + len(irregular)
