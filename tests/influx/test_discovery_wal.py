"""What the WAL holds, read from influx_inspect's lines (WalScanner), and end to end from a real
influxd through headlined-inspect (InfluxReader.wal_scan)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headlined.config import InfluxConfig
from headlined.influx.chunkplan import HOUR_NS
from headlined.influx.datadir import WalScan, WalScanner, discover, hour_of
from headlined.influx.reader import InfluxReader
from headlined.influx.schema import MeasurementTypes
from tests.support.influxdb_server import InfluxServer, require_binary, running_influxd

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z, a Monday: weekly shard groups start there
WEEK = 7 * 24 * HOUR_NS

HEADER = b"""# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z
# DDL
CREATE DATABASE d WITH NAME autogen
# DML
# CONTEXT-DATABASE:d
# CONTEXT-RETENTION-POLICY:autogen
# writing wal data
"""
# As influx_inspect 1.6 prints a WAL: one field per line, keys escaped, strings quoted (and
# free to hold newlines, spaces, "=" and ","), booleans as true/false.
POINTS = [
    rb"m\ x\,y,t\ a\=b=v\,1\ 2 i=3i " + str(BASE).encode(),
    rb"m\ x\,y,t\ a\=b=v\,1\ 2 s=" + b'"he said \\"hi\\" a=b, c" ' + str(BASE).encode(),
    rb"m\ x\,y,t\ a\=b=v\,1\ 2 b=true " + str(BASE + 1).encode(),
    rb"m\ x\,y,t\ a\=b=v\,1\ 2 f\ k\=\,=2 " + str(BASE + HOUR_NS).encode(),
    b'mlt s="line1\nline2 a=1 5" ' + str(BASE).encode(),
    b"mlt u=7u " + str(BASE + 2 * HOUR_NS).encode(),
    b"mlt B=F " + str(BASE + 2 * HOUR_NS).encode(),  # any spelling of a boolean
    b"old,host=a v=-1.5e-07 " + str(-HOUR_NS - 1).encode(),  # before 1970
    b'q"uo"te,t="x" f"q=1 ' + str(BASE).encode(),  # quotes in keys are no strings
]
OUTPUT = HEADER + b"\n".join(POINTS) + b"\n"


def scan(*pieces: bytes) -> WalScan | None:
    scanner = WalScanner()
    for piece in pieces:
        scanner.feed(piece)
    return scanner.finish()


def digest(lines: list[bytes]) -> str:
    total = sum(
        int.from_bytes(hashlib.blake2b(line, digest_size=16).digest(), "big") for line in lines
    )
    return format(total % 2**128, "032x")


def test_range_hours_and_types_of_influx_inspect_lines() -> None:
    found = scan(OUTPUT)
    assert found is not None
    assert (found.first_ns, found.last_ns) == (-HOUR_NS - 1, BASE + 2 * HOUR_NS)
    hour = hour_of(BASE)
    by_hour: dict[int, list[bytes]] = {}
    for line in POINTS:
        by_hour.setdefault(int(line.rsplit(b" ", 1)[1]) // HOUR_NS, []).append(line)
    assert sorted(found.hours) == [-2, hour, hour + 1, hour + 2]
    assert found.hours == {h: (len(lines), digest(lines)) for h, lines in by_hour.items()}
    assert found.hours[hour][0] == 5  # the string with a newline is one line
    assert found.types == {
        "m x,y": MeasurementTypes(
            {"t a=b"},
            {"i": {"integer"}, "s": {"string"}, "b": {"boolean"}, "f k=,": {"float"}},
        ),
        "mlt": MeasurementTypes(set(), {"s": {"string"}, "u": {"unsigned"}, "B": {"boolean"}}),
        "old": MeasurementTypes({"host"}, {"v": {"float"}}),
        'q"uo"te': MeasurementTypes({"t"}, {'f"q': {"float"}}),
    }


@given(st.lists(st.integers(0, len(OUTPUT)), max_size=12), st.randoms())
def test_the_same_lines_in_any_order_and_pieces_give_the_same_scan(
    cuts: list[int], shuffle: random.Random
) -> None:
    lines = list(POINTS)
    shuffle.shuffle(lines)
    output = HEADER + b"\n".join(lines) + b"\n"
    bounds = [0, *sorted(cuts), len(output)]
    assert scan(*(output[a:b] for a, b in pairwise(bounds))) == scan(OUTPUT)


def test_a_line_more_changes_its_hour_only() -> None:
    before = scan(OUTPUT)
    after = scan(OUTPUT, b"mlt u=8u " + str(BASE + 2 * HOUR_NS + 5).encode() + b"\n")
    assert before is not None
    assert after is not None
    changed = hour_of(BASE) + 2
    assert after.hours[changed][0] == before.hours[changed][0] + 1
    assert after.hours[changed][1] != before.hours[changed][1]
    assert {h: v for h, v in after.hours.items() if h != changed} == {
        h: v for h, v in before.hours.items() if h != changed
    }


def test_no_point_is_none_and_odd_lines_are_read_alone() -> None:
    assert scan(HEADER) is None
    assert scan() is None
    odd = scan(
        b"m v=1 5\n\nnot a point\nm v=2i 7200000000007\n",
        b"j,t=a\\\nb v=3 6\n",  # a backslash before the newline joins two lines
        b'm s="never closed 9',
    )
    assert odd is not None
    assert (odd.first_ns, odd.last_ns) == (5, 7200000000007)
    assert {h: n for h, (n, _) in odd.hours.items()} == {0: 3, 2: 1}  # the last line counts
    assert odd.types == {
        "m": MeasurementTypes(set(), {"v": {"float", "integer"}}),
        "j": MeasurementTypes({"t"}, {"v": {"float"}}),
    }


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    require_binary("influxd")
    require_binary("influx_inspect")
    with running_influxd(tmp_path_factory.mktemp("influx")) as server:
        server.create_database("plant")
        # Week 1 goes to TSM; weeks 2 and 3 (two more shards) stay in the WAL. Field n is a
        # float in weeks 1 and 3, an integer in week 2.
        server.write("plant", [f"m,id=a n=1.5 {BASE + h * HOUR_NS}" for h in range(3)])
        server.flush_to_tsm("plant")
        server.write("plant", week_2_lines())
        server.write("plant", [rf'm,id=c\ d n=2.5,s="x y" {BASE + 2 * WEEK}'])
        yield server


def week_2_lines() -> list[str]:
    # 40 series: influx_inspect prints a WAL entry's keys in Go's random map order.
    return [
        f"m,id=s{s:02d} n={s}i,on=true {BASE + WEEK + h * HOUR_NS + s}"
        for s in range(40)
        for h in range(4)
    ]


def wal_scan(influx: InfluxServer) -> WalScan | None:
    reader = InfluxReader(
        InfluxConfig(data_dir=influx.data_dir, wal_dir=influx.wal_dir, inspect_socket=None)
    )

    async def run() -> WalScan | None:
        try:
            return await reader.wal_scan("plant", "autogen")
        finally:
            await reader.close()

    return asyncio.run(run())


def test_a_real_wal_scanned_through_the_helper(influx: InfluxServer) -> None:
    first = wal_scan(influx)
    assert first is not None
    assert (first.first_ns, first.last_ns) == (BASE + WEEK, BASE + 2 * WEEK)
    week_2 = hour_of(BASE + WEEK)
    assert {h: n for h, (n, _) in first.hours.items()} == {
        week_2: 80,  # 40 series x 2 fields
        week_2 + 1: 80,
        week_2 + 2: 80,
        week_2 + 3: 80,
        hour_of(BASE + 2 * WEEK): 2,
    }  # and nothing of week 1: it is in TSM
    assert first.types == {
        "m": MeasurementTypes(
            {"id"}, {"n": {"float", "integer"}, "on": {"boolean"}, "s": {"string"}}
        )
    }
    (found,) = discover(influx.data_dir, influx.wal_dir, ["plant"]).found
    (tsm,) = found.tsm
    assert tsm.types == {"m": MeasurementTypes({"id"}, {"n": {"float"}})}
    assert found.wal_bytes > 0
    assert wal_scan(influx) == first  # the lines' order differs, the digests do not

    influx.write("plant", [f"m,id=s00 n=99i {BASE + WEEK + 2 * HOUR_NS + 30}"])
    again = wal_scan(influx)
    assert again is not None
    changed = week_2 + 2
    assert again.hours[changed][0] == first.hours[changed][0] + 1
    assert again.hours[changed][1] != first.hours[changed][1]
    assert {h: v for h, v in again.hours.items() if h != changed} == {
        h: v for h, v in first.hours.items() if h != changed
    }
    assert (again.first_ns, again.last_ns, again.types) == (
        first.first_ns,
        first.last_ns,
        first.types,
    )
