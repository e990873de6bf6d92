"""scan() over Parquet files in the exporter's layout, written by DuckDB as the converter
writes them (sorted by series then time): series across files, a hole at a file boundary, a
failed chunk, an imported file overlapping an exported one, a tag absent from a series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from headlined.coverage import series
from headlined.coverage.model import ChunkState, Missing, SeriesCoverage
from headlined.influx.chunkplan import Chunk, to_ns

START = datetime(2024, 1, 1, tzinfo=UTC)
T0 = to_ns(START)
MIN = 60 * 10**9
H = 60 * MIN
DAY = 24 * H
FIELDS = {("db", "cpu"): {"value", "note"}}


def day(n: float) -> int:
    return T0 + round(n * DAY)


def points() -> list[tuple[int, str, str | None, float, str]]:
    rows: list[tuple[int, str, str | None, float, str]] = []
    # a: hourly, nothing from day 7 (a file boundary) to day 9.
    rows += [
        (t, "a", "eu", 1.0, "x") for t in range(day(0), day(35), H) if not day(7) <= t < day(9)
    ]
    # b: no region; stops at day 10.
    rows += [(t, "b", None, 2.0, "y") for t in range(day(0), day(10), H)]
    # c: every minute for 3 days, then every 5 minutes.
    rows += [(t, "c", "us", 3.0, "z") for t in range(day(0), day(3), MIN)]
    rows += [(t, "c", "us", 3.0, "z") for t in range(day(3), day(35), 5 * MIN)]
    return rows


def write(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[int, str, str | None, float, str]],
    target: Path,
) -> None:
    """Rows into ``target`` as the converter writes them: time, tags, fields; series, time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 5
    con.execute(
        "CREATE OR REPLACE TEMP TABLE p AS SELECT unnest($1::BIGINT[]) AS t, "
        "unnest($2::VARCHAR[]) AS host, unnest($3::VARCHAR[]) AS region, "
        "unnest($4::DOUBLE[]) AS value, unnest($5::VARCHAR[]) AS note",
        columns,
    )
    con.execute(
        "COPY (SELECT timezone('UTC', make_timestamp_ns(t)) AS time, host, region, note, value "
        f"FROM p ORDER BY host, region, t) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ChunkState]]:
    out = tmp_path_factory.mktemp("export")
    folder = out / "db" / "autogen" / "cpu"
    con = duckdb.connect()
    rows = points()
    states = ["done", "done", "failed", "done", "done"]
    chunks = []
    for week, state in enumerate(states):
        chunk = Chunk(
            "db", "autogen", START + timedelta(days=7 * week), START + timedelta(days=7 * week + 7)
        )
        chunks.append(ChunkState("db", "autogen", to_ns(chunk.start), to_ns(chunk.end), state))
        if state != "failed":  # a failed chunk publishes nothing
            inside = [r for r in rows if to_ns(chunk.start) <= r[0] < to_ns(chunk.end)]
            write(con, inside, folder / f"{chunk.stem}.parquet")
    # An imported file from an older export, overlapping the second week: it has a's points of
    # day 8 (in a's hole), some a had anyway (counted once), and d, a series of its own.
    imported = [(t, "a", "eu", 1.0, "x") for t in range(day(8), day(8.5) + 1, H)]
    imported += [(t, "a", "eu", 1.0, "x") for t in range(day(10), day(10.25), H)]
    imported += [(t, "d", "eu", 4.0, "w") for t in range(day(8), day(8.5) + 1, H)]
    write(con, imported, folder / "imported-2023.parquet")
    (folder / ".tmp-half-written.parquet").write_bytes(b"not parquet")
    (out / "_rejected").mkdir()
    return out, chunks


def scanned(
    export: tuple[Path, list[ChunkState]], since: int | None = None, until: int | None = None
) -> dict[str, SeriesCoverage]:
    out, chunks = export
    found = list(
        series.scan(out, chunks, now_ns=day(100), fields=FIELDS, since_ns=since, until_ns=until)
    )
    assert all(
        (s.database, s.retention_policy, s.measurement) == ("db", "autogen", "cpu") for s in found
    )
    return {s.tags["host"]: s for s in found}


def test_every_series_with_its_holes_and_their_causes(
    export: tuple[Path, list[ChunkState]],
) -> None:
    found = scanned(export)
    assert sorted(found) == ["a", "b", "c", "d"]
    a, b, c, d = (found[h] for h in "abcd")
    assert a.tags == {"host": "a", "region": "eu"}
    assert b.tags == {"host": "b"}  # its region is NULL: no such tag
    # a: the hole at the boundary of weeks 1 and 2 (partly filled by the imported file), the
    # failed third week.
    assert a.missing == (
        Missing(day(7), day(8), "not in InfluxDB"),
        Missing(day(8.5) + H, day(9), "not in InfluxDB"),
        Missing(day(14), day(21), "failed"),
    )
    lost = DAY + 11 * H + 7 * DAY
    # (The span ends one typical cadence after the last point: that cadence is within 0.8%.)
    assert a.coverage == pytest.approx(1 - lost / (35 * DAY), rel=1e-4)
    assert a.cadence_s == pytest.approx(3600, rel=0.01)
    assert (a.first_ns, a.last_ns, a.ended) == (day(0), day(35) - H, False)
    hourly_in_files = (35 - 2 - 7) * 24  # the repeated imported points count once
    assert a.points == hourly_in_files + 13
    # b stopped at day 10: ended, not missing.
    assert (b.missing, b.coverage, b.ended, b.points) == ((), 1.0, True, 240)
    # c went from 1-minute to 5-minute readings: not a gap; the failed week is.
    assert c.missing == (Missing(day(14), day(21), "failed"),)
    assert c.cadence_s == pytest.approx(300, rel=0.01)
    assert c.coverage == pytest.approx(1 - 7 / 35, rel=1e-3)
    # d is only in the imported file.
    assert (d.first_ns, d.last_ns, d.points, d.missing, d.ended) == (day(8), day(8.5), 13, (), True)


def test_since_and_until_clip_points_and_holes(export: tuple[Path, list[ChunkState]]) -> None:
    found = scanned(export, day(7), day(10))
    a = found["a"]
    assert a.missing == (
        Missing(day(7), day(8), "not in InfluxDB"),
        Missing(day(8.5) + H, day(9), "not in InfluxDB"),
    )
    assert (a.first_ns, a.last_ns, a.points) == (day(8), day(10) - H, 13 + 24)
    assert a.coverage == pytest.approx(1 - (DAY + 11 * H) / (3 * DAY))
    assert "c" in found
    # Inside the failed week: no point, but the hole.
    inside = scanned(export, day(15), day(16))
    assert sorted(inside) == ["a", "c"]
    assert inside["a"].missing == (Missing(day(15), day(16), "failed"),)
    assert (inside["a"].points, inside["a"].coverage) == (0, 0.0)


def test_filters_and_an_empty_folder(export: tuple[Path, list[ChunkState]], tmp_path: Path) -> None:
    out, chunks = export
    assert list(series.scan(out, chunks, now_ns=0, database="other")) == []
    assert list(series.scan(out, chunks, now_ns=0, measurement="mem")) == []
    assert (
        len(
            list(
                series.scan(out, chunks, now_ns=0, database="db", measurement="cpu", fields=FIELDS)
            )
        )
        == 4
    )
    assert list(series.scan(tmp_path / "nothing", chunks, now_ns=0)) == []


def test_tag_columns_come_from_the_fields_or_the_column_order() -> None:
    columns = [("time", False), ("host", True), ("region", True), ("note", True), ("value", False)]
    assert series.tag_columns([columns], {"note", "value"}) == ["host", "region"]
    # Without the fields, the sorted run of VARCHAR columns after `time`: a string field that
    # sorts before the last tag ends it.
    assert series.tag_columns([columns], None) == ["host", "region"]
    assert series.tag_columns([[("time", False), ("a", True), ("z", True)]], None) == ["a", "z"]


def test_files_not_grouped_by_series_and_a_tag_that_appears_later(tmp_path: Path) -> None:
    folder = tmp_path / "db" / "autogen" / "mem"
    folder.mkdir(parents=True)
    week1, week2 = (
        Chunk("db", "autogen", START + timedelta(days=d), START + timedelta(days=d + 7))
        for d in (0, 7)
    )
    con = duckdb.connect()
    # Week 1: x and z interleaved (rows in time order), no `rack` column at all.
    con.execute(
        f"""COPY (SELECT timezone('UTC', make_timestamp_ns(t)) AS time, host, 1.0 AS value
                  FROM range({day(0)}, {day(7)}, {H}) a(t), (VALUES ('x'), ('z')) b(host)
                  ORDER BY t, host)
            TO '{folder / f"{week1.stem}.parquet"}' (FORMAT parquet)"""
    )
    # Week 2: x again (rack NULL: the same series) and y, in rack r1.
    con.execute(
        f"""COPY (SELECT timezone('UTC', make_timestamp_ns(t)) AS time, host, rack, 1.0 AS value
                  FROM range({day(7)}, {day(14)}, {H}) a(t),
                       (VALUES ('x', NULL), ('y', 'r1')) b(host, rack)
                  ORDER BY host, rack, t)
            TO '{folder / f"{week2.stem}.parquet"}' (FORMAT parquet)"""
    )
    chunks = [
        ChunkState("db", "autogen", to_ns(c.start), to_ns(c.end), "done") for c in (week1, week2)
    ]
    found = {s.tags["host"]: s for s in series.scan(tmp_path, chunks, now_ns=day(100))}
    assert sorted(found) == ["x", "y", "z"]
    x, y, z = found["x"], found["y"], found["z"]
    assert (x.tags, x.points, x.missing, x.ended) == ({"host": "x"}, 14 * 24, (), False)
    assert (y.tags, y.points, y.first_ns, y.missing) == (
        {"host": "y", "rack": "r1"},
        168,
        day(7),
        (),
    )
    assert (z.points, z.last_ns, z.missing, z.ended) == (168, day(7) - H, (), True)


def test_a_file_replaced_while_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunk = Chunk("db", "autogen", START, START + timedelta(days=7))
    target = tmp_path / "db" / "autogen" / "cpu" / f"{chunk.stem}.parquet"
    con = duckdb.connect()
    write(con, [(t, "a", "eu", 1.0, "x") for t in range(day(0), day(7), H)], target)
    real = series._Read._stream
    reexported: list[Path] = []

    def stream_after_a_reexport(self: series._Read, *args: Any) -> None:
        if not reexported:
            # The daemon re-exports the chunk between the two reads of the file, and publishes
            # it as it does: renamed over the old one.
            fresh = target.with_suffix(".new")
            write(con, [(t, "a", "eu", 1.0, "x") for t in range(day(0), day(3), H)], fresh)
            fresh.rename(target)
            reexported.append(target)
        real(self, *args)

    monkeypatch.setattr(series._Read, "_stream", stream_after_a_reexport)
    [found] = series.scan(tmp_path, [], now_ns=day(100), fields=FIELDS)
    assert reexported
    assert (found.points, found.last_ns) == (3 * 24, day(3) - H)
