"""``headlined export`` and the daemon against damaged or unusable InfluxDB files, for real.

A real influxd 1.6 writes two databases over several weekly shards into TSM files; then it is
stopped and each test damages a copy of its directories the way disks and operators do: 16
bytes flipped inside one data block, a TSM file cut in half or with a garbled index, a wrong
``data_dir``, a data directory that appears (or becomes readable) only after the daemon
started. What is expected is derived from the points written, never from headlined.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest
import yaml

from headlined.influx.service import WAIT_S
from tests.support.daemon_process import Daemon, status, without_dac
from tests.support.export_fixture import (
    BASE,
    DAY,
    HOUR,
    Expected,
    Fixture,
    export,
    export_config,
    normalise,
    read_dataset,
)
from tests.support.influxdb_server import InfluxServer, require_binary, running_influxd

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")
WEEK = 7 * DAY
PLANT = ("plant", "autogen", "pm")
WEATHER = ("weather", "autogen", "temp")
WEEKS = {"plant": 4, "weather": 3}  # weekly shards (INF policy: 7d shard groups), 7d chunks
DATABASES = tuple(WEEKS)
STATIONS = ("a", "b")
KEY_SEPARATOR = b"#!~#"
# A snappy-compressed string block: flipped bytes in it make influx_inspect fail to decode it.
# (A float or integer block may decode into other numbers without an error: influx_inspect
# 1.6 does not check a block's CRC, see tsm1.mmapAccessor.readAll, "TODO: Validate checksum".)
DAMAGED_SERIES, DAMAGED_FIELD = "pm,id=a", "note"
DAMAGED_WEEK = 1  # the second of plant's four weeks: chunks exist on both sides of it
NOBODY = 65534  # uid and gid of nobody/nogroup: the owner of files the daemon may not read


@dataclass(frozen=True, slots=True)
class Source:
    """A stopped influxd's directories (data/, wal/, meta/) and every point written to it."""

    root: Path
    expected: Expected


@dataclass(frozen=True, slots=True)
class Block:
    """One data block of a TSM file, from the file's index."""

    key: bytes  # SERIES#!~#FIELD
    type: int
    min_ns: int
    max_ns: int
    offset: int  # of its 4-byte CRC32; the encoded block follows
    size: int  # CRC included


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One row of export_chunks."""

    database: str
    start_ns: int
    end_ns: int
    state: str
    error: str | None
    damage: list[dict[str, Any]] | None
    rows: int | None
    updated_at: datetime


def fill(influx: InfluxServer) -> Fixture:
    """Hourly points over weekly shards: plant 4 weeks (2 series, 3 fields), weather 3."""
    fx = Fixture(influx)
    rng = random.Random(11)  # noqa: S311  reproducible values, not cryptography
    for database in DATABASES:
        influx.create_database(database)
    fx.send(
        "plant",
        "autogen",
        [
            fx.write(
                PLANT,
                {"id": station},
                BASE + hour * HOUR,
                {
                    "pm10": rng.uniform(0, 500),
                    "note": f"reading {rng.randrange(10**6)} at {station}",
                    "count": rng.randrange(10**6),
                },
            )
            for hour in range(WEEKS["plant"] * WEEK // HOUR)
            for station in STATIONS
        ],
    )
    fx.send(
        "weather",
        "autogen",
        [
            fx.write(
                WEATHER, {"station": "bkk"}, BASE + hour * HOUR, {"reading": rng.uniform(-5, 45)}
            )
            for hour in range(WEEKS["weather"] * WEEK // HOUR)
        ],
    )
    for database in DATABASES:
        influx.flush_to_tsm(database)
    return fx


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """One influxd for the module: filled, flushed to TSM, checked by InfluxQL, stopped."""
    require_binary("influxd")
    require_binary("influx_inspect")
    root = tmp_path_factory.mktemp("influxdb")
    with running_influxd(root) as influx:
        fx = fill(influx)
        for (database, rp, measurement), points in fx.expected.items():
            assert influx.count(database, measurement, rp) == len(points)
            assert influx.count_values(database, measurement, rp) == sum(
                len(fields) for fields in points.values()
            )
        assert influx.wal_segments() == []  # everything is in TSM files
        assert len(influx.tsm_files("plant")) == WEEKS["plant"]
        assert len(influx.tsm_files("weather")) == WEEKS["weather"]
    return Source(root, fx.expected)


def copy_influx(source: Source, dest: Path) -> Path:
    """A copy of the stopped influxd's directories, to damage."""
    shutil.copytree(source.root, dest)
    return dest


def write_config(
    tmp_path: Path, data_dir: Path, wal_dir: Path, log_level: str = "info", **extra: str
) -> Path:
    # The daemon's own reader, as its own user; weekly chunks.
    return export_config(tmp_path, data_dir, wal_dir, log_level=log_level, chunk="7d", **extra)


def chunk_rows(state_dir: Path) -> list[ChunkRow]:
    conn = duckdb.connect(str(state_dir / "headlined.duckdb"), read_only=True)
    try:
        rows = conn.execute(
            """SELECT database, start, "end", state, error, damage, rows, updated_at
               FROM export_chunks ORDER BY database, start"""
        ).fetchall()
    finally:
        conn.close()
    return [
        ChunkRow(
            database,
            int(start.timestamp()) * 10**9,
            int(end.timestamp()) * 10**9,
            state,
            error,
            None if damage is None else json.loads(damage),
            count,
            updated,
        )
        for database, start, end, state, error, damage, count, updated in rows
    ]


def weeks_of(rows: list[ChunkRow]) -> dict[str, list[int]]:
    """The planned chunks of each database, as week numbers from BASE."""
    out: dict[str, list[int]] = {}
    for row in rows:
        assert row.end_ns - row.start_ns == WEEK, row
        assert (row.start_ns - BASE) % WEEK == 0, row
        out.setdefault(row.database, []).append((row.start_ns - BASE) // WEEK)
    return out


def week_range(week: int) -> tuple[int, int]:
    return BASE + week * WEEK, BASE + (week + 1) * WEEK


def points_in(expected: Expected, database: str, lo: int, hi: int) -> int:
    """Points (rows of Parquet) of ``database`` with ``lo <= time < hi``."""
    return sum(
        1
        for (db, _, _), points in expected.items()
        if db == database
        for (_, t) in points
        if lo <= t < hi
    )


def without(
    expected: Expected,
    database: str,
    lo: int,
    hi: int,
    *,
    tags: tuple[tuple[str, str], ...] | None = None,
    field: str | None = None,
) -> Expected:
    """``expected`` less the values of ``database`` in ``[lo, hi)`` (of one series and field
    if given); points left without a value are gone."""
    out = copy.deepcopy(expected)
    for (db, _, _), points in out.items():
        if db != database:
            continue
        for (point_tags, t), fields in list(points.items()):
            if not lo <= t < hi or (tags is not None and point_tags != tags):
                continue
            if field is None:
                fields.clear()
            else:
                fields.pop(field, None)
            if not fields:
                del points[(point_tags, t)]
    return out


def tsm_blocks(path: Path) -> tuple[list[Block], int]:
    """Every block listed in a TSM file's index, and where the index starts.

    The file ends with the 8-byte offset of its index; each index entry is a key, its block
    type, a block count and per block min time, max time, offset and size (reader.go).
    """
    data = path.read_bytes()
    assert struct.unpack(">I", data[:4])[0] == 0x16D116D1, path
    (index_at,) = struct.unpack(">Q", data[-8:])
    pos, end = index_at, len(data) - 8
    blocks = []
    while pos < end:
        (key_len,) = struct.unpack_from(">H", data, pos)
        key = data[pos + 2 : pos + 2 + key_len]
        pos += 2 + key_len
        block_type = data[pos]
        (count,) = struct.unpack_from(">H", data, pos + 1)
        pos += 3
        for _ in range(count):
            lo, hi, offset, size = struct.unpack_from(">qqqI", data, pos)
            pos += 28
            blocks.append(Block(key, block_type, lo, hi, offset, size))
    assert pos == end, f"{path}: index does not end at the footer"
    return blocks, index_at


def week_file(data_dir: Path, database: str, week: int) -> Path:
    """The TSM file holding ``database``'s points of ``week`` (one per weekly shard)."""
    lo, hi = week_range(week)
    found = [
        path
        for path in sorted((data_dir / database / "autogen").glob("*/*.tsm"))
        if all(lo <= b.min_ns and b.max_ns < hi for b in tsm_blocks(path)[0])
    ]
    assert len(found) == 1, found
    return found[0]


def inspect_stderr(root: Path, database: str) -> str:
    """What the real influx_inspect says on stderr when it exports ``database`` of ``root``."""
    result = subprocess.run(
        [
            require_binary("influx_inspect"),
            "export",
            "-datadir",
            str(root / "data"),
            "-waldir",
            str(root / "wal"),
            "-database",
            database,
            "-out",
            os.devnull,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def parquet_files(out: Path) -> list[Path]:
    return sorted(p.relative_to(out) for p in out.glob("*/*/*/*.parquet"))


def test_flipped_data_block_damages_its_chunk_and_publishes_everything_else(
    tmp_path: Path, source: Source
) -> None:
    """16 bytes flipped in the middle of one block (not its CRC): the chunk holding it is
    ``damaged``, naming series, field and file in export_chunks.damage, its error and the
    command's stderr, and publishes every other value; every other chunk is ``done`` and
    complete; the exit code is 1. A second run tries the damaged chunk again (still damaged)
    and doubles nothing."""
    root = copy_influx(source, tmp_path / "influxdb")
    tsm = week_file(root / "data", "plant", DAMAGED_WEEK)
    key = DAMAGED_SERIES.encode() + KEY_SEPARATOR + DAMAGED_FIELD.encode()
    (block,) = [b for b in tsm_blocks(tsm)[0] if b.key == key]
    assert block.size > 100, block  # room for 16 bytes inside, clear of the CRC and edges
    data = bytearray(tsm.read_bytes())
    middle = block.offset + block.size // 2 - 8
    assert block.offset + 4 < middle  # past the CRC
    assert middle + 16 < block.offset + block.size
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    tsm.write_bytes(bytes(data))
    said = inspect_stderr(root, "plant")
    assert f'unable to read key "{key.decode()}" in {tsm}, skipping: ' in said, said
    assert said.count("unable to read") == 1, said  # the flip hit that key alone

    config = write_config(tmp_path, root / "data", root / "wal")
    first = export(config)
    assert first.returncode == 1, first.stderr
    lo, hi = week_range(DAMAGED_WEEK)
    label = "plant/autogen 2024-01-08T00:00Z..2024-01-15T00:00Z"
    assert f"damaged  {label}" in first.stderr
    assert f"{DAMAGED_SERIES} field {DAMAGED_FIELD} in {tsm}" in first.stderr

    rows = chunk_rows(tmp_path / "state")
    assert weeks_of(rows) == {db: list(range(n)) for db, n in WEEKS.items()}
    (damaged,) = [r for r in rows if r.state != "done"]
    assert (damaged.database, damaged.start_ns, damaged.end_ns) == ("plant", lo, hi)
    assert damaged.state == "damaged"
    assert damaged.damage is not None
    assert [{k: v for k, v in d.items() if k != "error"} for d in damaged.damage] == [
        {"kind": "key", "file": str(tsm), "series": DAMAGED_SERIES, "field": DAMAGED_FIELD}
    ]
    assert damaged.damage[0]["error"]  # influx_inspect's reason, e.g. snappy: corrupt input
    assert damaged.error is not None
    assert f"{DAMAGED_SERIES} field {DAMAGED_FIELD} in {tsm}" in damaged.error
    # Every point of every chunk is a row, the damaged one included: its points of the
    # damaged series keep their other fields.
    for row in rows:
        assert row.rows == points_in(source.expected, row.database, row.start_ns, row.end_ns)

    want = without(source.expected, "plant", lo, hi, tags=(("id", "a"),), field=DAMAGED_FIELD)
    lost = sum(len(p) for p in source.expected[PLANT].values()) - sum(
        len(p) for p in want[PLANT].values()
    )
    assert lost == WEEK // HOUR  # exactly that series' notes of that week
    out = tmp_path / "out"
    assert normalise(read_dataset(out)) == normalise(want)
    files = parquet_files(out)

    second = export(config)
    assert second.returncode == 1, second.stderr
    assert f"damaged  {label}" in second.stderr  # tried again, by this run
    again = chunk_rows(tmp_path / "state")
    assert [(r.database, r.start_ns, r.state, r.rows, r.damage) for r in again] == [
        (r.database, r.start_ns, r.state, r.rows, r.damage) for r in rows
    ]
    for before, after in zip(rows, again, strict=True):
        if before.state == "done":
            assert after.updated_at == before.updated_at  # a done chunk is not redone
        else:
            assert after.updated_at > before.updated_at
    assert parquet_files(out) == files
    assert normalise(read_dataset(out)) == normalise(want)  # read_dataset refuses doubles


def test_a_block_that_fails_its_checksum_marks_its_values_as_suspect(
    tmp_path: Path, source: Source
) -> None:
    """A float block with flipped bytes decodes into other numbers and influx_inspect says
    nothing; headlined checks each block's CRC32 itself: the chunk is ``damaged``, naming
    the series, field and file, its values (possibly wrong) published, exit code 1."""
    root = copy_influx(source, tmp_path / "influxdb")
    tsm = week_file(root / "data", "plant", DAMAGED_WEEK)
    key = DAMAGED_SERIES.encode() + KEY_SEPARATOR + b"pm10"
    (block,) = [b for b in tsm_blocks(tsm)[0] if b.key == key]
    data = bytearray(tsm.read_bytes())
    middle = block.offset + block.size // 2
    data[middle : middle + 2] = bytes(b ^ 0xFF for b in data[middle : middle + 2])
    tsm.write_bytes(bytes(data))
    assert inspect_stderr(root, "plant") == ""  # influx_inspect reads it without a word

    result = export(write_config(tmp_path, root / "data", root / "wal"))
    assert result.returncode == 1, result.stderr
    rows = chunk_rows(tmp_path / "state")
    (damaged,) = [r for r in rows if r.state != "done"]
    assert (damaged.start_ns, damaged.end_ns) == week_range(DAMAGED_WEEK)
    assert damaged.state == "damaged"
    assert damaged.damage is not None
    (finding,) = damaged.damage
    assert {k: finding[k] for k in ("kind", "file", "series", "field")} == {
        "kind": "checksum",
        "file": str(tsm),
        "series": DAMAGED_SERIES,
        "field": "pm10",
    }
    assert "may be wrong" in finding["error"]
    assert f"{DAMAGED_SERIES} field pm10 in {tsm}: block fails its checksum" in result.stderr
    for row in rows:  # nothing is skipped: every point is a row
        assert row.rows == points_in(source.expected, row.database, row.start_ns, row.end_ns)


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble_index(path: Path) -> None:
    """Every byte between the index's start and the footer flipped; the size is kept."""
    _, index_at = tsm_blocks(path)
    data = bytearray(path.read_bytes())
    data[index_at:-8] = bytes(b ^ 0xFF for b in data[index_at:-8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("breaking", [cut_in_half, garble_index], ids=lambda f: f.__name__)
def test_tsm_file_with_broken_index_fails_its_chunk_alone(
    tmp_path: Path, source: Source, breaking: Callable[[Path], None]
) -> None:
    """plant's first week lives in one TSM file, broken so that its index cannot be read:
    that chunk is still planned (its range comes from meta.db, not from the file) and
    ``failed``, naming the file; every other chunk of plant and of weather is ``done`` and
    complete; the exit code is 1 and stderr names the file."""
    root = copy_influx(source, tmp_path / "influxdb")
    tsm = week_file(root / "data", "plant", 0)
    size = tsm.stat().st_size
    breaking(tsm)
    if breaking is garble_index:
        assert tsm.stat().st_size == size
    said = inspect_stderr(root, "plant")
    assert f"unable to read {tsm}, skipping: " in said, said

    config = write_config(tmp_path, root / "data", root / "wal")
    result = export(config)
    assert result.returncode == 1, result.stderr
    assert str(tsm) in result.stderr

    rows = chunk_rows(tmp_path / "state")
    # Week 0 is the first of plant's data and its only file is the broken one: planned all
    # the same, from the shard group in meta.db.
    assert weeks_of(rows) == {db: list(range(n)) for db, n in WEEKS.items()}
    lo, hi = week_range(0)
    (failed,) = [r for r in rows if r.state != "done"]
    assert (failed.database, failed.start_ns, failed.state) == ("plant", lo, "failed")
    assert failed.error is not None
    assert str(tsm) in failed.error
    for row in rows:
        if row.state == "done":
            assert row.rows == points_in(source.expected, row.database, row.start_ns, row.end_ns)
    out = tmp_path / "out"
    assert normalise(read_dataset(out)) == normalise(without(source.expected, "plant", lo, hi))
    assert not [p for p in parquet_files(out) if p.parts[0] == "plant" and p.name < "20240108"]


def influx_root(tmp_path: Path, source: Source) -> tuple[Path, Path]:
    """data_dir = InfluxDB's root (holding data/ meta/ wal/), a usual mistake."""
    return source.root, source.root / "wal"


def empty_dir(tmp_path: Path, source: Source) -> tuple[Path, Path]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "wal").mkdir()
    return tmp_path / "empty", tmp_path / "wal"


def csv_files(tmp_path: Path, source: Source) -> tuple[Path, Path]:
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "plant.csv").write_text("time,pm10\n1,2.5\n")
    (tmp_path / "exports" / "weather.csv").write_text("time,reading\n1,30.5\n")
    (tmp_path / "wal").mkdir()
    return tmp_path / "exports", tmp_path / "wal"


def database_without_points(tmp_path: Path, source: Source) -> tuple[Path, Path]:
    (tmp_path / "data" / "idle" / "autogen" / "1").mkdir(parents=True)
    (tmp_path / "wal" / "idle" / "autogen" / "1").mkdir(parents=True)
    return tmp_path / "data", tmp_path / "wal"


@pytest.mark.parametrize(
    ("layout", "code", "says"),
    [
        pytest.param(
            influx_root,
            1,
            ["InfluxDB's root directory", "set influx.data_dir: {data}/data "],
            id="influxdb-root",
        ),
        pytest.param(empty_dir, 1, ["{data}: empty: no InfluxDB database here yet"], id="empty"),
        pytest.param(
            csv_files,
            1,
            ["{data}: not an InfluxDB data directory", "plant.csv", "weather.csv"],
            id="csv-files",
        ),
        pytest.param(
            database_without_points,
            0,
            ["nothing to export: idle/autogen hold no points in {data}"],
            id="database-without-points",
        ),
    ],
)
def test_a_data_dir_that_is_not_influxdb_data_says_what_it_is(
    tmp_path: Path,
    source: Source,
    layout: Callable[[Path, Source], tuple[Path, Path]],
    code: int,
    says: list[str],
) -> None:
    """A wrong ``data_dir`` exits 1 saying what is there instead (the root: which folder to
    set); "nothing to export" (exit 0) is said only of a database folder without points."""
    data_dir, wal_dir = layout(tmp_path, source)
    result = export(write_config(tmp_path, data_dir, wal_dir))
    assert result.returncode == code, result.stderr
    for text in says:
        assert text.format(data=data_dir) in result.stderr, result.stderr
    assert ("nothing to export" in result.stderr) == (code == 0), result.stderr
    assert parquet_files(tmp_path / "out") == []


def wait_for(what: str, daemon: Daemon, timeout: float, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert daemon.proc.poll() is None, f"daemon exited: {daemon.output()}"
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout:g} s: {daemon.output()}")


def logged(daemon: Daemon) -> list[dict[str, Any]]:
    """Every event the daemon logged (JSON lines)."""
    return [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]


def waits_quietly(daemon: Daemon, config: Path, *expected: str) -> str:
    """The daemon's status says it waits, with ``expected`` in the reason; it logged that once
    and looked again (a new reader) at least once, without a crash. The reason."""
    problem = wait_for("export_waiting", daemon, 30, lambda: status(config).get("export_waiting"))
    assert isinstance(problem, str)
    for text in expected:
        assert text in problem, problem
    # Looked again after WAIT_S: every look starts a reader (a debug event).
    wait_for(
        "a second look",
        daemon,
        WAIT_S + 15,
        lambda: len(daemon.events("influx_reader_connected")) >= 2,
    )
    waiting = [e for e in daemon.events("export_waiting") if e["problem"] == problem]
    assert len(waiting) == 1, daemon.output()
    assert waiting[0]["level"] == "error"
    assert daemon.events("component_crashed") == []
    assert "Traceback" not in daemon.output()
    loud = [e["event"] for e in logged(daemon) if e["level"] in ("warning", "error")]
    assert loud == ["export_waiting"], daemon.output()
    return problem


def exported_by_daemon(daemon: Daemon, config: Path, source: Source, state_dir: Path) -> None:
    """Within two looks the export completes; the daemon stops cleanly; all chunks are done
    and the Parquet holds exactly what was written."""
    wait_for("export_complete", daemon, 2 * WAIT_S + 20, lambda: daemon.events("export_complete"))
    assert daemon.events("export_ready")
    assert status(config)["export_waiting"] is None
    assert daemon.stop() == 0, daemon.output()
    assert daemon.events("component_crashed") == []
    rows = chunk_rows(state_dir)
    assert weeks_of(rows) == {db: list(range(n)) for db, n in WEEKS.items()}
    assert {r.state for r in rows} == {"done"}
    out = Path(yaml.safe_load(config.read_text())["influx"]["output_dir"])
    assert normalise(read_dataset(out)) == normalise(source.expected)


def test_daemon_waits_for_a_missing_data_dir_and_exports_it_once_it_appears(
    tmp_path: Path, source: Source
) -> None:
    """The daemon starts before InfluxDB's directory exists: status says it waits, naming
    the path, with one export_waiting error and no crash loop; once a real InfluxDB
    directory (data, wal, meta) is moved into place, the export completes without a
    restart."""
    root = tmp_path / "influxdb"
    config = write_config(tmp_path, root / "data", root / "wal", log_level="debug")
    daemon = Daemon(config)
    daemon.wait_started()
    waits_quietly(daemon, config, f"{root / 'data'}: no such directory")
    staged = copy_influx(source, tmp_path / "influxdb.new")
    staged.rename(root)  # in place at once: the daemon never sees half a copy
    exported_by_daemon(daemon, config, source, tmp_path / "state")


def chown_tree(folders: list[Path], uid: int) -> None:
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, uid, uid)


def database_folders(root: Path) -> list[Path]:
    """InfluxDB's folders of each database, in data/ and wal/: 0700, as influxd makes them."""
    folders = [root / kind / db for kind in ("data", "wal") for db in DATABASES]
    for folder in folders:
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    return folders


@pytest.mark.parametrize("kind", ["data", "wal"])
def test_export_names_a_database_folder_it_cannot_read(
    tmp_path: Path, source: Source, kind: str
) -> None:
    """A database folder (in data_dir, or in wal_dir: InfluxDB's wal/ is 0700 too) owned by
    another user, mode 0700: ``headlined export`` without the right to read it exits 1
    saying "cannot read" with the path and what to do (not a crash of its reader, not
    "nothing to export"); readable again, the same export completes."""
    root = copy_influx(source, tmp_path / "influxdb")
    hidden = [root / kind / "plant"]
    assert hidden[0] in database_folders(root)
    chown_tree(hidden, NOBODY)
    config = write_config(tmp_path, root / "data", root / "wal")
    result = subprocess.run(
        [*without_dac(), sys.executable, "-m", "headlined", "export", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"headlined export: {root / kind / 'plant'}" in result.stderr
    assert ": cannot read: Permission denied" in result.stderr
    assert "enable headlined-inspect.socket" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing to export" not in result.stderr
    assert parquet_files(tmp_path / "out") == []
    chown_tree(hidden, 0)
    again = export(config)
    assert again.returncode == 0, again.stderr
    assert normalise(read_dataset(tmp_path / "out")) == normalise(source.expected)


def test_daemon_waits_for_unreadable_database_folders_and_exports_them_once_readable(
    tmp_path: Path, source: Source
) -> None:
    """InfluxDB's database folders (0700, as influxd makes them) belong to another user
    (nobody) and the daemon may not read them (see ``without_dac``): status says it waits,
    "cannot read" and the path, with one export_waiting error and no crash loop; once they
    are handed back (chown), the export completes without a restart."""
    root = copy_influx(source, tmp_path / "influxdb")
    folders = database_folders(root)
    chown_tree(folders, NOBODY)
    config = write_config(tmp_path, root / "data", root / "wal", log_level="debug")
    daemon = Daemon(config, prefix=without_dac())
    daemon.wait_started()
    waits_quietly(daemon, config, f"{root / 'data' / 'plant'}: cannot read")
    chown_tree(folders, 0)
    exported_by_daemon(daemon, config, source, tmp_path / "state")
