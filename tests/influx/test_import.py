"""``headlined import``: earlier Parquet exports landed beside headlined's own export.

The acceptance scenario runs a real influxd and influx_inspect: an older period exported the
users' raw way (influx_inspect's line protocol read by DuckDB as one ``raw_line`` column plus a
timestamp, written to Parquet), a newer one by ``headlined export``, overlapping by a week;
after ``headlined import`` the Parquet holds every point of InfluxDB once, typed as the export
types it. The ``influx_tools export-parquet`` layout is tested with files built by pyarrow to
the layout its source writes (no influx_tools binary is available here; docs/import.md says
what the layout is and where that was read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from headlined import query
from headlined.coverage import series
from headlined.coverage.model import ChunkState
from headlined.influx import convert
from headlined.influx.chunkplan import to_ns
from tests.influx.test_follow import in_influx, in_parquet
from tests.support.export_fixture import export, export_config
from tests.support.influxdb_server import InfluxServer, require_binary, running_influxd

HOUR = 3600 * 10**9
DAY = 24 * HOUR
BASE = to_ns(datetime(2024, 1, 1, tzinfo=UTC))  # a Monday: InfluxDB's weekly shards start so
STATIONS = ("s1", "s 2", "s,3")
GAP = (BASE + 20 * DAY, BASE + 23 * DAY)  # no data written: the planted gap
NEW_FROM = BASE + 23 * DAY  # headlined exports from here...
RAW_UNTIL = BASE + 30 * DAY  # ...the raw export ends here: one week of overlap
PLANTED = BASE + 25 * DAY + 4 * HOUR  # a point of the overlap given another value in the raw file


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _air(station: str, t: int, i: int) -> str:
    name = station.replace(",", "\\,").replace(" ", "\\ ")
    return (
        f"air,station={name} pm25={i % 97 + 0.25},count={i}i,"
        f'ok={"true" if i % 3 else "false"},note="n {i % 7}, \\"q\\"" {t}'
    )


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path / "influxdb") as server:
        server.create_database("plant")
        times = [t for t in range(BASE, BASE + 45 * DAY, 2 * HOUR) if not GAP[0] <= t < GAP[1]]
        lines = [_air(s, t, i) for i, t in enumerate(times) for s in STATIONS]
        old = [line for line in lines if int(line.rsplit(" ", 1)[1]) < NEW_FROM]
        server.write("plant", old)
        server.flush_to_tsm("plant")
        server.write("plant", [line for line in lines if line not in set(old)])  # in the WAL
        yield server


def _config(tmp_path: Path, influx: InfluxServer) -> Path:
    return export_config(tmp_path, influx.data_dir, influx.wal_dir, start=_rfc3339(NEW_FROM))


def _raw_export(influx: InfluxServer, tmp_path: Path) -> Path:
    """The users' way: influx_inspect export to a file, then DuckDB: every line as one
    ``raw_line`` column, its timestamp derived into ``time``, written to Parquet. Every other
    line loses its own timestamp (kept only in the column), as some scripts cut it off."""
    text = tmp_path / "old.lp"
    subprocess.run(
        [
            require_binary("influx_inspect"),
            "export",
            "-datadir",
            str(influx.data_dir),
            "-waldir",
            str(influx.wal_dir),
            "-database",
            "plant",
            "-start",
            _rfc3339(BASE),
            "-end",
            _rfc3339(RAW_UNTIL - 1),
            "-out",
            str(text),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    lines = text.read_text().splitlines()
    planted = "air,station=s1 pm25="
    index = next(
        i
        for i, line in enumerate(lines)
        if line.startswith(planted) and line.endswith(f" {PLANTED}")
    )
    lines[index] = f"air,station=s1 pm25=999.5 {PLANTED}"
    text.write_text("\n".join(lines) + "\n")
    raw = tmp_path / "old.parquet"
    conn = duckdb.connect()
    conn.execute(
        f"""COPY (
            SELECT CASE WHEN n % 2 = 0 THEN regexp_replace(raw_line, ' [0-9]+$', '')
                        ELSE raw_line END AS raw_line,
                   make_timestamp_ns(TRY_CAST(regexp_extract(raw_line, ' ([0-9]+)$', 1)
                                              AS BIGINT)) AS "time"
            FROM (SELECT raw_line, row_number() OVER () AS n
                  FROM read_csv('{text}', columns = {{'raw_line': 'VARCHAR'}}, header = false,
                                delim = '\x1f', quote = '', escape = '', auto_detect = false))
        ) TO '{raw}' (FORMAT parquet)"""
    )
    return raw


def _headlined(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headlined", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob("*/*/*/*.parquet"))
        if not p.name.startswith(".")
    }


@pytest.mark.integration
@pytest.mark.slow
def test_raw_older_period_and_exported_newer_one_give_one_history(
    tmp_path: Path, influx: InfluxServer
) -> None:
    config = _config(tmp_path, influx)
    out = tmp_path / "out"
    raw = _raw_export(influx, tmp_path)
    exported = export(config)
    assert exported.returncode == 0, exported.stderr
    exported_files = _files(out)
    assert exported_files, "the export wrote nothing"
    assert not any("import-" in name for name in exported_files)

    done = _headlined("import", "-c", str(config), "--database", "plant", str(raw))
    assert done.returncode == 0, done.stderr

    # Every point of InfluxDB once, with the export's types: the imported file has exactly
    # the exported files' columns and types (in_parquet checks every file's schema is one).
    expected, expected_types = in_influx(influx, "plant")
    found, found_types = in_parquet(out, "plant", {"station"})
    assert found.keys() == expected.keys(), (
        f"missing {sorted(expected.keys() - found.keys())[:3]}, "
        f"extra {sorted(found.keys() - expected.keys())[:3]}"
    )
    wrong = {k: (found[k], v) for k, v in expected.items() if found[k] != v}
    assert not wrong, f"{len(wrong)} points differ, e.g. {list(wrong.items())[:3]}"
    assert (
        found_types
        == expected_types
        == {"air": {"count": "BIGINT", "note": "VARCHAR", "ok": "BOOLEAN", "pm25": "DOUBLE"}}
    )
    # The exported value won over the raw file's planted one; the exported files are untouched.
    assert found[("air", (("station", "s1"),), PLANTED)]["pm25"] != 999.5
    after = _files(out)
    assert {k: v for k, v in after.items() if k in exported_files} == exported_files
    imported = [name for name in after if name not in exported_files]
    assert len(imported) == 1
    assert imported[0].startswith("plant/autogen/air/import-")
    conn = duckdb.connect()
    first, last = conn.execute(
        f"SELECT min(epoch_ns(time)), max(epoch_ns(time)) FROM read_parquet('{out / imported[0]}')"
    ).fetchone() or (None, None)
    # The overlap week came from the export: the import holds the older period alone.
    assert (first, last) == (BASE, GAP[0] - 2 * HOUR)

    # The measurement's view reads every file as one table.
    (count,) = query.run(conn, 'SELECT count(*) FROM "plant"."air"', out).rows[0]
    assert count == len(expected)

    # Coverage sees one history per series, and the planted gap between the pieces as the
    # one missing interval (neither piece holds a point in it: InfluxDB has none).
    state = duckdb.connect(str(tmp_path / "state" / "headlined.duckdb"), read_only=True)
    chunks = [
        ChunkState(*row)
        for row in state.execute(
            'SELECT database, retention_policy, epoch_ns(start), epoch_ns("end"), state '
            "FROM export_chunks"
        ).fetchall()
    ]
    state.close()
    covered = list(series.scan(out, chunks, now_ns=BASE + 60 * DAY))
    assert sorted(c.tags["station"] for c in covered) == sorted(STATIONS)
    for one in covered:
        assert (one.first_ns, one.points) == (BASE, len(expected) // len(STATIONS))
        assert [(m.start_ns, m.end_ns) for m in one.missing] == [GAP], one.missing

    # Again: the same file, replaced, nothing added.
    again = _headlined("import", "-c", str(config), "--database", "plant", str(raw))
    assert again.returncode == 0, again.stderr
    assert _files(out).keys() == after.keys()
    assert in_parquet(out, "plant", {"station"})[0] == found


# influx_tools export-parquet, as its source (cmd/influx_tools/parquet in influxdata/influxdb,
# 1.11) writes it: <output>/<measurement>-<NNNNN>.parquet, one per measurement and shard;
# `time` timestamp[ns] without a zone, then the tags (string, sorted), then the fields (sorted,
# typed); uncompressed; the file's key-value metadata names the measurement, its tags and
# fields comma-joined, the database, retention policy, shard and export times.
def _tools_file(
    folder: Path,
    measurement: str,
    number: int,
    rows: list[dict[str, Any]],
    *,
    tags: list[str],
    fields: dict[str, pa.DataType],
) -> Path:
    schema = pa.schema(
        [pa.field("time", pa.timestamp("ns"), nullable=False)]
        + [pa.field(tag, pa.string()) for tag in tags]
        + [pa.field(name, kind) for name, kind in fields.items()]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    path = folder / f"{measurement}-{number:05d}.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, schema, compression="none", store_schema=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(
            {
                "export": "2024-03-01T00:00:00Z",
                "database": "plant",
                "retention": "autogen",
                "measurement": measurement,
                "shard": str(number + 1),
                "start_time": "2024-01-01T00:00:00Z",
                "end_time": "2024-01-22T00:00:00Z",
                "tags": ",".join(tags),
                "fields": ",".join(fields),
            }
        )
    return path


def _plain_config(tmp_path: Path) -> Path:
    path = tmp_path / "headlined.yaml"
    path.write_text(
        yaml.safe_dump(
            {"state_dir": str(tmp_path / "state"), "influx": {"output_dir": str(tmp_path / "out")}}
        )
    )
    return path


def _export_chunk(out: Path, stem: str, lines: list[str]) -> None:
    """A chunk file as the exporter publishes it (the same converter, layout "database")."""
    source = out.parent / f"{stem}.lp"
    source.write_text("\n".join(lines) + "\n")
    convert.convert(
        source,
        out,
        layout="database",
        file_stem=stem,
        default_database="plant",
        default_rp="autogen",
        rejected_dir=out.parent / "rejected",
    )


def _points(out: Path) -> dict[tuple[str | None, int], dict[str, Any]]:
    """Every point of plant.air through the `headlined query` view; no (series, time) twice."""
    conn = duckdb.connect()
    result = query.run(
        conn,
        "SELECT station, epoch_ns(time) AS t, * EXCLUDE (station, time, retention_policy) "
        'FROM "plant"."air"',
        out,
    )
    points: dict[tuple[str | None, int], dict[str, Any]] = {}
    for station, t, *values in result.rows:
        assert (station, t) not in points, f"point twice: {station} {t}"
        points[station, t] = {
            k: v for k, v in zip(result.columns[2:], values, strict=True) if v is not None
        }
    return points


def test_influx_tools_files_land_typed_deduplicated_and_exported_wins(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _plain_config(tmp_path)
    # Exported by headlined: days 7-14, `count` a float there.
    _export_chunk(
        out,
        "20240108T000000Z_20240115T000000Z",
        [f"air,station=s1 pm25={d}.5,count={d}.25 {BASE + d * DAY}" for d in range(7, 14)],
    )
    tools = tmp_path / "tools"
    fields = {"battery": pa.bool_(), "count": pa.int64(), "pm25": pa.float64()}

    def row(day: int, station: str | None, pm25: float) -> dict[str, Any]:
        return {
            "time": BASE + day * DAY,
            "station": station,
            "pm25": pm25,
            "count": day,
            "battery": day % 2 == 0,
        }

    shard_1 = _tools_file(
        tools,
        "air",
        0,
        [row(d, s, 1.0) for s in ("s1", None) for d in range(7)],
        tags=["station"],
        fields=fields,
    )
    shard_2 = _tools_file(  # overlaps the exported days 7-9
        tools, "air", 1, [row(d, "s1", 2.0) for d in range(7, 10)], tags=["station"], fields=fields
    )
    later = _tools_file(  # another export, later on the command line: its day 3 wins
        tmp_path / "again", "air", 0, [row(3, "s1", 3.0)], tags=["station"], fields=fields
    )
    # DuckDB reads a zone-less time in the session's zone unless told: never a shift.
    env = {**os.environ, "TZ": "Asia/Bangkok"}
    command = [
        sys.executable,
        "-m",
        "headlined",
        "import",
        "-c",
        str(config),
        "--database",
        "plant",
        str(shard_1),
        str(shard_2),
        str(later),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert done.returncode == 0, done.stderr

    points = _points(out)
    assert len(points) == 7 + 7 + 7  # s1 days 0-13, no station days 0-6
    for day in range(7, 14):
        assert points["s1", BASE + day * DAY] == {"pm25": day + 0.5, "count": day + 0.25}
    assert points["s1", BASE + 3 * DAY] == {"pm25": 3.0, "count": 3.0, "battery": False}
    assert points["s1", BASE + 2 * DAY] == {"pm25": 1.0, "count": 2.0, "battery": True}
    assert points[None, BASE] == {"pm25": 1.0, "count": 0.0, "battery": True}

    (imported,) = sorted(out.glob("plant/autogen/air/import-*.parquet"))
    conn = duckdb.connect()
    described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{imported}')").fetchall()
    assert [(c[0], c[1]) for c in described] == [
        ("time", "TIMESTAMPTZ_NS"),
        ("station", "VARCHAR"),
        ("battery", "BOOLEAN"),  # only the import has it: a column of its own
        ("count", "DOUBLE"),  # integer in influx_tools, float in the export: DOUBLE
        ("pm25", "DOUBLE"),
    ]
    compression = conn.execute(
        f"SELECT DISTINCT compression FROM parquet_metadata('{imported}')"
    ).fetchall()
    assert compression == [("ZSTD",)]
    order = conn.execute(
        f"SELECT station, epoch_ns(time) FROM read_parquet('{imported}')"
    ).fetchall()
    assert order == sorted(order, key=lambda r: (r[0] is None, r[0] or "", r[1]))
    (document,) = conn.execute(
        f"SELECT decode(value) FROM parquet_kv_metadata('{imported}') "
        "WHERE decode(key) = 'headlined.import'"
    ).fetchone() or (None,)
    recorded = json.loads(document)
    assert [i["layout"] for i in recorded["inputs"]] == ["influx_tools"] * 3
    assert recorded["tags"] == ["station"]

    # A later export covers days 0-1: the same import run again gives those points up.
    _export_chunk(
        out,
        "20240101T000000Z_20240102T000000Z",
        [f"air,station=s1 pm25=-1.5,count=0.5 {BASE}"],
    )
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert sorted(out.glob("plant/autogen/air/import-*.parquet")) == [imported]
    now = _points(out)
    assert len(now) == len(points)
    assert now["s1", BASE] == {"pm25": -1.5, "count": 0.5}


def _import(config: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return _headlined("import", "-c", str(config), "--database", "plant", *map(str, files))


def test_a_file_of_neither_layout_is_refused_by_name_and_nothing_lands(tmp_path: Path) -> None:
    config = _plain_config(tmp_path)
    conn = duckdb.connect()
    other = tmp_path / "other.parquet"
    conn.execute(f"COPY (SELECT 1 AS a, 'x' AS b) TO '{other}' (FORMAT parquet)")
    good = tmp_path / "good.parquet"
    conn.execute(
        f"COPY (SELECT 'air v=1 1000' AS raw_line, 1000 AS ts) TO '{good}' (FORMAT parquet)"
    )
    text = tmp_path / "notes.parquet"
    text.write_text("air v=1 1000\n")
    lonely = tmp_path / "lonely.parquet"
    conn.execute(f"COPY (SELECT 'air v=1 1000' AS raw_line) TO '{lonely}' (FORMAT parquet)")

    done = _import(config, good, other)
    assert done.returncode == 2
    assert str(other) in done.stderr
    assert "no 'raw_line' column" in done.stderr
    assert "'measurement'" in done.stderr
    assert "columns: a, b" in done.stderr

    done = _import(config, text)
    assert done.returncode == 2
    assert f"{text}: not a Parquet file" in done.stderr

    done = _import(config, lonely)
    assert done.returncode == 2
    assert f"{lonely}: a 'raw_line' column but no timestamp column" in done.stderr

    done = _import(config, tmp_path / "missing.parquet")
    assert done.returncode == 2
    assert "missing.parquet: no such file" in done.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


def test_a_timestamp_column_that_disagrees_with_the_lines_fails_before_anything_lands(
    tmp_path: Path,
) -> None:
    config = _plain_config(tmp_path)
    seconds = tmp_path / "seconds.parquet"
    duckdb.connect().execute(
        f"""COPY (SELECT 'air,station=s1 v=' || i || ' ' || (i * 1000000000) AS raw_line,
                         i AS ts FROM range(1, 5) r(i)) TO '{seconds}' (FORMAT parquet)"""
    )
    done = _import(config, seconds)
    assert done.returncode == 1
    assert f"{seconds}: 4 lines carry another time than column 'ts'" in done.stderr
    assert "nothing was imported" in done.stderr
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_raw_lines_are_converted_with_the_converter_and_bad_ones_kept(tmp_path: Path) -> None:
    config = _plain_config(tmp_path)
    raw = tmp_path / "raw.parquet"
    rows = [
        # the line's own time, or the column's where it has none; a point given twice in the
        # file: the later line wins field by field, as InfluxDB does
        (f"air,station=a pm25=1.5,n=1i {BASE}", BASE),
        ("air,station=a pm25=2.5", BASE + HOUR),
        (f"air,station=a pm25=9.5 {BASE}", BASE),
        ('air,station=b note="x y" ', None),  # no time at all and a trailing space: cannot place
    ]
    conn = duckdb.connect()
    conn.execute("CREATE TABLE r (raw_line VARCHAR, ts BIGINT)")
    conn.executemany("INSERT INTO r VALUES (?, ?)", [*rows[:3], ("air,station=c pm25=bad 5", 5)])
    conn.execute(f"COPY r TO '{raw}' (FORMAT parquet)")
    done = _import(config, raw)
    assert done.returncode == 0, done.stderr
    assert "1 lines rejected" in done.stderr
    out = tmp_path / "out"
    assert _points(out) == {
        ("a", BASE): {"pm25": 9.5, "n": 1},
        ("a", BASE + HOUR): {"pm25": 2.5},
    }
    (rejected,) = (out / "_rejected" / "plant" / "autogen").glob("import-*.txt")
    assert "pm25=bad" in rejected.read_text()

    timeless = tmp_path / "timeless.parquet"
    conn.execute("DELETE FROM r")
    conn.execute("INSERT INTO r VALUES (?, ?)", rows[3])
    conn.execute(f"COPY r TO '{timeless}' (FORMAT parquet)")
    done = _import(config, timeless)
    assert done.returncode == 1
    assert "1 lines have no time" in done.stderr


def test_points_a_nanosecond_apart_are_told_apart_and_equal_ones_matched(tmp_path: Path) -> None:
    config = _plain_config(tmp_path)
    out = tmp_path / "out"
    last = BASE + 2 * HOUR + 998  # neither it nor the next nanosecond a whole microsecond
    _export_chunk(
        out,
        "20240101T000000Z_20240108T000000Z",
        [f"air,station=s1 pm25=1.5 {last}", f"air,station=s1 pm25=2.5 {last - 1}"],
    )
    raw = tmp_path / "raw.parquet"
    duckdb.connect().execute(
        f"""COPY (SELECT * FROM (VALUES ('air,station=s1 pm25=7.5 {BASE}', {BASE}),
                                        ('air,station=s1 pm25=8.5 {last}', {last}),
                                        ('air,station=s1 pm25=9.5 {last + 1}', {last + 1})
                 ) v(raw_line, ts)) TO '{raw}' (FORMAT parquet)"""
    )
    done = _import(config, raw)
    assert done.returncode == 0, done.stderr
    assert _points(out) == {
        ("s1", BASE): {"pm25": 7.5},
        ("s1", last - 1): {"pm25": 2.5},
        ("s1", last): {"pm25": 1.5},
        ("s1", last + 1): {"pm25": 9.5},
    }
