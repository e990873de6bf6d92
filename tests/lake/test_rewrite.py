"""Lake copies: measurement times exact to the nanosecond, messages with their partitions."""

from __future__ import annotations

import datetime
import decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headlined.lake.rewrite import RewriteError, connect, rewrite_measurement, rewrite_messages
from headlined.poll.parquet import flush_messages
from headlined.store import open_database

# Before 1970 and after, on and off microsecond boundaries, and the extremes of the data.
TIMES_NS = [
    -315_619_199_876_543_211,  # 1960, 211 ns past a microsecond (floors away from zero)
    -1,
    -1000,
    -1001,
    0,
    1,
    999,
    1_704_067_200_000_000_001,
    1_704_067_200_123_456_789,
]


def measurement_file(path: Path, times: list[int]) -> None:
    conn = duckdb.connect()
    values = ", ".join(
        f"({t}, 'h{i}', {i}.5, {2**64 - 1 - i}::UBIGINT)" for i, t in enumerate(times)
    )
    conn.execute(
        f"COPY (SELECT timezone('UTC', make_timestamp_ns(t)) AS time, host, v, u "
        f"FROM (VALUES {values}) AS p(t, host, v, u)) TO '{path}' (FORMAT parquet)"
    )
    conn.close()


def test_time_is_floored_to_microseconds_and_time_ns_is_exact(tmp_path: Path) -> None:
    measurement_file(tmp_path / "local.parquet", TIMES_NS)
    rows = rewrite_measurement(
        connect(), tmp_path / "local.parquet", tmp_path / "lake.parquet", "one week"
    )
    assert rows == len(TIMES_NS)
    table = pq.read_table(tmp_path / "lake.parquet")
    assert table.column_names == ["time", "time_ns", "retention_policy", "host", "v", "u"]
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("time_ns").type == pa.int64()
    assert table.schema.field("u").type == pa.decimal128(20, 0)
    got = table.to_pylist()
    assert [row["time_ns"] for row in got] == TIMES_NS
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    for row, ns in zip(got, TIMES_NS, strict=True):
        assert row["time"] == epoch + datetime.timedelta(microseconds=ns // 1000)  # floor
        assert row["retention_policy"] == "one week"
    assert [row["u"] for row in got] == [decimal.Decimal(2**64 - 1 - i) for i in range(len(got))]


def test_a_column_named_like_the_lakes_own_is_refused(tmp_path: Path) -> None:
    conn = duckdb.connect()
    conn.execute(
        f"COPY (SELECT now()::TIMESTAMPTZ AS time, 'x' AS time_ns) TO '{tmp_path / 'l.parquet'}'"
        " (FORMAT parquet)"
    )
    with pytest.raises(RewriteError, match="time_ns"):
        rewrite_measurement(connect(), tmp_path / "l.parquet", tmp_path / "lake.parquet", "rp")


def test_an_unreadable_file_is_a_rewrite_error(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(RewriteError, match=r"bad\.parquet"):
        rewrite_measurement(connect(), tmp_path / "bad.parquet", tmp_path / "lake.parquet", "rp")


def test_messages_get_source_and_date_and_a_plain_text_payload(tmp_path: Path) -> None:
    store = open_database(tmp_path / "h.duckdb")
    now = datetime.datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=datetime.UTC)
    payload = '{"id": 1, "text": "ทดสอบ \\"q\\""}'
    store.execute(
        "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
        "VALUES ('s 1', '[1]', ?, ?, ?)",
        [now, payload, now],
    )
    flush_messages(store, tmp_path / "pq")
    store.close()
    (local,) = (tmp_path / "pq" / "messages").rglob("*.parquet")
    rewrite_messages(connect(), local, tmp_path / "lake.parquet", "s 1", now.date())
    table = pq.read_table(tmp_path / "lake.parquet")
    assert table.column_names == [
        "source",
        "date",
        "record_key",
        "record_time",
        "payload",
        "first_seen",
        "id",
    ]
    assert table.schema.field("payload").type == pa.string()
    assert table.schema.field("date").type == pa.date32()
    (row,) = table.to_pylist()
    assert row["source"] == "s 1"
    assert row["date"] == now.date()
    assert row["payload"] == payload
    assert row["record_time"] == now
    assert row["id"] == 1
