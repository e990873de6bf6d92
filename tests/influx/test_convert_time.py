"""The converter's `time` column: Parquet TIMESTAMP(NANOS, isAdjustedToUTC=true), which pyarrow,
polars and DuckDB all read as UTC, exact to the nanosecond whatever the process's time zone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headlined.influx.convert import ConvertResult, convert

# Before 1970, with nanoseconds, the extremes of InfluxDB's range, and today.
TIMES = [
    -1_500_000_000_123_456_789,
    -1,
    0,
    1,
    1_704_067_200_123_456_789,
    -(2**63) + 2,
    2**63 - 2,
]
ZONE = "America/New_York"


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process in New York time: a fresh DuckDB connection takes its TimeZone from TZ."""
    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def convert_times(directory: Path, *, pivot: bool) -> ConvertResult:
    """Each of TIMES as a point of its own, converted."""
    source = directory / "in.lp"
    source.write_text("".join(f"m,s=a v={i} {t}\n" for i, t in enumerate(TIMES)))
    result = convert(source, directory / "out", pivot=pivot)
    assert result.pivoted is pivot
    return result


def epoch_ns(path: Path, con: duckdb.DuckDBPyConnection) -> list[Any]:
    """DuckDB's type of `time`, then its values as epoch nanoseconds, in file order."""
    described = con.execute("DESCRIBE SELECT time FROM read_parquet(?)", [str(path)]).fetchall()
    values = con.execute("SELECT epoch_ns(time) FROM read_parquet(?)", [str(path)]).fetchall()
    return [described[0][1], *(row[0] for row in values)]


@pytest.mark.parametrize("pivot", [True, False])
def test_time_is_utc_and_exact_in_pyarrow_polars_and_duckdb(tmp_path: Path, pivot: bool) -> None:
    (path,) = convert_times(tmp_path, pivot=pivot).files
    column = pq.ParquetFile(path).schema.column(0)
    assert column.name == "time"
    logical = json.loads(column.logical_type.to_json())
    assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == (
        "Timestamp",
        True,
        "nanoseconds",
    )
    arrow = pq.read_table(path).column("time")
    assert arrow.type == pa.timestamp("ns", tz="UTC")
    frame = pl.read_parquet(path)
    assert frame.schema["time"] == pl.Datetime("ns", "UTC")
    expected = sorted(TIMES)  # one series: rows in time order
    assert arrow.cast(pa.int64()).to_pylist() == expected
    assert frame["time"].dt.epoch("ns").to_list() == expected
    assert epoch_ns(path, duckdb.connect()) == ["TIMESTAMPTZ_NS", *expected]


@pytest.mark.usefixtures("new_york")
@pytest.mark.parametrize("pivot", [True, False])
@pytest.mark.parametrize("session_zone", [None, "Asia/Kathmandu"])
def test_time_does_not_depend_on_the_time_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pivot: bool, session_zone: str | None
) -> None:
    """TZ=America/New_York (DuckDB's default zone then), or the converter's session set to
    another zone: the same epoch nanoseconds, where a plain cast would shift them."""
    con = duckdb.connect()
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == (ZONE,)
    # What the converter must not do: a plain TIMESTAMP_NS cast reads the time in the zone.
    shifted = con.execute("SELECT epoch_ns(make_timestamp_ns(0)::TIMESTAMPTZ_NS)").fetchone()
    assert shifted == (5 * 3600 * 10**9,)
    with monkeypatch.context() as patch:
        if session_zone is not None:
            connect = duckdb.connect

            def connect_in_zone(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
                opened = connect(*args, **kwargs)
                opened.execute(f"SET TimeZone = '{session_zone}'")
                return opened

            patch.setattr(duckdb, "connect", connect_in_zone)
        (path,) = convert_times(tmp_path, pivot=pivot).files
    assert epoch_ns(path, con) == ["TIMESTAMPTZ_NS", *sorted(TIMES)]
    assert pq.read_table(path).column("time").cast(pa.int64()).to_pylist() == sorted(TIMES)
