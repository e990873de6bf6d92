"""What discovery reads from TSM indexes, on hand-built files: volume, types, stat, tombstone,
files replaced while they are read, and the JSON that carries it all (no influxd)."""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headlined.influx import datadir
from headlined.influx.chunkplan import HOUR_NS
from headlined.influx.datadir import (
    BLOCK_POINTS,
    MAX_BLOCK_HOURS,
    Discovery,
    Found,
    TsmFile,
    WalScan,
    WalSegment,
    discover,
    hour_of,
    read_tsm,
    spread,
    tsm_time_range,
)
from headlined.influx.schema import MeasurementTypes

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
FLOAT, INTEGER, BOOLEAN, STRING, UNSIGNED = range(5)  # tsm1's block type bytes

Key = tuple[bytes, int, Sequence[tuple[int, int]]]  # SERIES#!~#FIELD, type, (first, last)s


def tsm_bytes(keys: Sequence[Key]) -> bytes:
    """A TSM file as tsm1 lays it out: header, (empty) blocks, index, index offset."""
    index = bytearray()
    for key, block_type, times in keys:
        index += struct.pack(">H", len(key)) + key + struct.pack(">BH", block_type, len(times))
        for first, last in times:
            index += struct.pack(">qqqI", first, last, 5, 0)
    return struct.pack(">IB", datadir.TSM_MAGIC, 1) + bytes(index) + struct.pack(">Q", 5)


def write_tsm(path: Path, keys: Sequence[Key]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tsm_bytes(keys))
    return path


def naive_volume(keys: Sequence[Key]) -> dict[int, int]:
    volume: dict[int, int] = {}
    for _, _, times in keys:
        for first, last in times:
            spread(volume, first, last)
    return volume


def test_a_block_is_spread_evenly_over_the_hours_it_touches_rounded_up() -> None:
    volume: dict[int, int] = {}
    spread(volume, BASE + 10, BASE + HOUR_NS - 1)  # within one hour
    assert volume == {hour_of(BASE): BLOCK_POINTS}
    volume = {}
    spread(volume, BASE + HOUR_NS - 1, BASE + 2 * HOUR_NS)  # touches three hours
    hour = hour_of(BASE)
    assert volume == {hour: 334, hour + 1: 334, hour + 2: 334}
    volume = {}
    spread(volume, BASE, BASE + 4000 * HOUR_NS)  # sparse: never less than 1 anywhere
    assert len(volume) == 4001
    assert set(volume.values()) == {1}
    spread(volume, BASE, BASE)  # adds up
    assert volume[hour] == 1 + BLOCK_POINTS


def test_hours_before_1970_round_down() -> None:
    assert hour_of(0) == 0
    assert hour_of(-1) == -1
    assert hour_of(-HOUR_NS) == -1
    assert hour_of(-HOUR_NS - 1) == -2
    volume: dict[int, int] = {}
    spread(volume, -HOUR_NS - 1, 1)  # from 1969-12-31T22:59:59.999999999Z to just after 1970
    assert volume == {-2: 334, -1: 334, 0: 334}


def test_a_block_that_cannot_be_spread_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be spread"):
        spread({}, BASE, BASE - HOUR_NS)  # ends before it starts
    with pytest.raises(ValueError, match="cannot be spread"):
        spread({}, 0, MAX_BLOCK_HOURS * HOUR_NS)


def test_types_from_index_keys_with_escapes_and_every_block_type(tmp_path: Path) -> None:
    escaped = rb"m\ x\,y,t\ a\=b=v\,1\ 2"  # measurement "m x,y", tag "t a=b" = "v,1 2"
    path = write_tsm(
        tmp_path / "1" / "000000001-000000001.tsm",
        [
            (escaped + b"#!~#B", BOOLEAN, [(BASE, BASE)]),
            (escaped + b"#!~#f k=,", FLOAT, [(BASE, BASE)]),  # fields are stored unescaped
            (escaped + b"#!~#i", INTEGER, [(BASE, BASE)]),
            (escaped + b"#!~#s", STRING, [(BASE, BASE)]),
            (escaped + b"#!~#u", UNSIGNED, [(BASE, BASE)]),
            (b"cpu,host=a#!~#v", FLOAT, [(BASE, BASE)]),
            (b"cpu,host=b,dc=x#!~#v", INTEGER, [(BASE, BASE)]),
            (b"cpu,host=b,dc=x#!~#w", 9, [(BASE, BASE)]),  # a type tsm1 does not know
            (b"no field separator", FLOAT, [(BASE, BASE)]),
            (b",bad#!~#v", FLOAT, [(BASE, BASE)]),  # no line can start with it
            (b"\xff#!~#v", FLOAT, [(BASE, BASE)]),  # not UTF-8
            (b"zero#!~#blocks", FLOAT, []),  # holds nothing
        ],
    )
    found = read_tsm(path)
    assert found.error is None
    assert found.types == {
        "m x,y": MeasurementTypes(
            {"t a=b"},
            {
                "B": {"boolean"},
                "f k=,": {"float"},
                "i": {"integer"},
                "s": {"string"},
                "u": {"unsigned"},
            },
        ),
        "cpu": MeasurementTypes({"host", "dc"}, {"v": {"float", "integer"}}),
    }
    assert found.volume == {hour_of(BASE): 11 * BLOCK_POINTS}  # every key counts for volume


def test_a_file_of_keys_without_blocks_holds_nothing(tmp_path: Path) -> None:
    path = write_tsm(tmp_path / "000000001-000000001.tsm", [(b"m#!~#v", FLOAT, [])])
    assert tsm_time_range(path) is None
    found = read_tsm(path)
    assert (found.error, found.first_ns, found.last_ns, found.volume, found.types) == (
        None,
        None,
        None,
        {},
        {},
    )


def test_volume_range_and_stat_of_a_file(tmp_path: Path) -> None:
    keys: list[Key] = [
        (b"m#!~#a", FLOAT, [(BASE - 3 * HOUR_NS, BASE - 1), (BASE, BASE + 5)]),
        (b"m#!~#b", FLOAT, [(BASE - 3 * HOUR_NS, BASE - 1), (BASE, BASE + 5)]),  # same times
        (b"n#!~#a", INTEGER, [(BASE + 10 * HOUR_NS, BASE + 10 * HOUR_NS)]),
    ]
    path = write_tsm(tmp_path / "000000002-000000001.tsm", keys)
    found = read_tsm(path)
    stat = path.stat()
    assert (found.size, found.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert found.tombstone is None
    assert (found.first_ns, found.last_ns) == (BASE - 3 * HOUR_NS, BASE + 10 * HOUR_NS)
    assert found.volume == naive_volume(keys)
    hour = hour_of(BASE)
    assert found.volume == {
        hour - 3: 2 * 334,
        hour - 2: 2 * 334,
        hour - 1: 2 * 334,
        hour: 2 * 1000,
        hour + 10: 1000,
    }  # and no hour between the blocks: nothing lies there
    tombstone = path.with_suffix(".tombstone")
    tombstone.write_bytes(b"\x00" * 7)
    os.utime(tombstone, ns=(1, 123_456_789))
    assert read_tsm(path).tombstone == (7, 123_456_789)


block_times = st.tuples(
    st.integers(-(2**40), 2**40).map(lambda t: t * 1_000_000),  # ns around 1970, both sides
    st.integers(0, 30 * HOUR_NS),
).map(lambda t: (t[0], t[0] + t[1]))


@given(st.lists(st.lists(block_times, min_size=1, max_size=5), min_size=1, max_size=8))
def test_volume_is_each_block_spread_and_range_covers_every_block(
    layouts: list[list[tuple[int, int]]],
) -> None:
    keys: list[Key] = [
        (f"m#!~#f{at:02d}".encode(), FLOAT, times) for at, times in enumerate(layouts)
    ]
    first, last, volume, edges, _ = datadir._summarize(Path("x.tsm"), tsm_bytes(keys)[5:-8], {})
    assert volume == naive_volume(keys)
    blocks = [times for _, _, layout in keys for times in layout]
    begins = Counter(f // HOUR_NS for f, _ in blocks)
    ends = Counter(last // HOUR_NS for _, last in blocks)
    assert edges == {
        h: (BLOCK_POINTS * begins[h], BLOCK_POINTS * ends[h]) for h in begins.keys() | ends.keys()
    }
    assert first == min(f for times in layouts for f, _ in times)
    assert last == max(last for times in layouts for _, last in times)
    assert sum(volume.values()) >= BLOCK_POINTS * sum(len(times) for times in layouts)


def test_an_unreadable_file_keeps_its_stat_and_a_corrupt_block_is_an_error(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    shard = data / "db" / "autogen" / "1"
    good = write_tsm(shard / "000000001-000000001.tsm", [(b"m#!~#v", FLOAT, [(BASE, BASE)])])
    bad = shard / "000000002-000000001.tsm"
    bad.write_bytes(b"\x00" * 64)
    reversed_block = write_tsm(
        shard / "000000003-000000001.tsm", [(b"m#!~#v", FLOAT, [(BASE + 2 * HOUR_NS, BASE)])]
    )
    (tmp_path / "wal").mkdir()
    discovery = discover(data, tmp_path / "wal", [])
    (found,) = discovery.found
    files = {Path(t.path).name: t for t in found.tsm}
    assert files[good.name].error is None
    broken = files[bad.name]
    assert broken.error is not None
    assert "bad magic" in broken.error
    assert (broken.size, broken.mtime_ns) == (64, bad.stat().st_mtime_ns)
    assert (broken.first_ns, broken.last_ns, broken.volume, broken.types) == (None, None, {}, {})
    corrupt = files[reversed_block.name]
    assert corrupt.error is not None
    assert "corrupt index: a block spans" in corrupt.error
    assert tsm_time_range(good) == (BASE, BASE)


def test_a_file_compacted_away_while_read_gives_way_to_its_successor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shard = data / "db" / "autogen" / "1"
    old = write_tsm(shard / "000000001-000000001.tsm", [(b"m#!~#v", FLOAT, [(BASE, BASE)])])
    successor = shard / "000000001-000000002.tsm"
    (tmp_path / "wal").mkdir()
    real = datadir._read_index

    def compacting(path: Path) -> bytes:
        if path == old and not successor.exists():
            old.rename(successor)  # as a compaction: the new file in place, the old one gone
        return real(path)

    monkeypatch.setattr(datadir, "_read_index", compacting)
    (found,) = discover(data, tmp_path / "wal", []).found
    assert [(Path(t.path).name, t.error) for t in found.tsm] == [(successor.name, None)]


def test_a_file_that_keeps_vanishing_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shard = data / "db" / "autogen" / "1"
    path = write_tsm(shard / "000000001-000000001.tsm", [(b"m#!~#v", FLOAT, [(BASE, BASE)])])
    (tmp_path / "wal").mkdir()

    def vanishing(_: Path) -> bytes:
        raise datadir._VanishedError(f"{path}: cannot read: No such file or directory")

    monkeypatch.setattr(datadir, "_read_index", vanishing)
    (found,) = discover(data, tmp_path / "wal", []).found
    (reported,) = found.tsm
    assert reported.error == f"{path}: cannot read: No such file or directory"
    assert datadir.unreadable(Discovery((found,), {}))[("db", "autogen")][0].path == str(path)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
kinds = st.sets(st.sampled_from(datadir.BLOCK_TYPES), min_size=1)
measurement_types = st.builds(
    MeasurementTypes, st.sets(names, max_size=3), st.dictionaries(names, kinds, max_size=3)
)
types_by_measurement = st.dictionaries(names, measurement_types, max_size=3)
times = st.integers(-(2**63) + 2, 2**63 - 2)
tsm_files = st.builds(
    TsmFile,
    names,
    st.none() | times,
    st.none() | times,
    st.none() | names,
    st.integers(0, 2**40),
    st.integers(0, 2**62),
    st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 2**62)),
    st.dictionaries(st.integers(-(2**43), 2**43), st.integers(1, 2**40), max_size=6),
    types_by_measurement,
    st.none()
    | st.dictionaries(
        st.integers(-(2**43), 2**43),
        st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
        max_size=6,
    ),
)
founds = st.builds(
    Found,
    names,
    names,
    st.lists(tsm_files, max_size=4).map(tuple),
    st.lists(names, max_size=2).map(tuple),  # without segments: as given
    st.integers(0, 2**40),
    st.lists(
        st.builds(WalSegment, names, st.integers(0, 2**40), st.integers(0, 2**62)), max_size=3
    ).map(tuple),
)
discoveries = st.builds(
    Discovery,
    st.lists(founds, max_size=3).map(tuple),
    st.dictionaries(
        st.tuples(names, names, st.integers(0, 2**40)), st.tuples(times, times), max_size=3
    ),
    st.none() | names,
)


@given(discoveries)
def test_discovery_json_round_trips_exactly(discovery: Discovery) -> None:
    document = json.loads(json.dumps(discovery.to_json()))
    again = Discovery.from_json(document)
    assert again == discovery
    for found in again.found:
        if found.wal:
            assert found.wal_files == tuple(w.path for w in found.wal)
            assert found.wal_bytes == sum(w.size for w in found.wal)


def test_files_with_the_same_types_share_them_in_json_but_not_in_memory() -> None:
    types = {"cpu": MeasurementTypes({"host"}, {"v": {"float"}})}
    files = tuple(TsmFile(f"/d/{n}.tsm", 1, 2, types=types) for n in range(3))
    document = json.loads(json.dumps(Discovery((Found("db", "rp", files),), {}).to_json()))
    assert len(document["types"]) == 1
    (found,) = Discovery.from_json(document).found
    found.tsm[0].types["cpu"].tags.add("dc")
    assert found.tsm[1].types == types  # a change to one file's types leaves the others


@given(
    st.builds(
        WalScan,
        times,
        times,
        st.dictionaries(
            st.integers(-(2**43), 2**43),
            st.tuples(st.integers(1, 2**40), st.text("0123456789abcdef", min_size=32, max_size=32)),
            max_size=5,
        ),
        types_by_measurement,
    )
)
def test_wal_scan_json_round_trips_exactly(scan: WalScan) -> None:
    assert WalScan.from_json(json.loads(json.dumps(scan.to_json()))) == scan


def test_bad_json_is_a_value_error() -> None:
    document = Discovery((Found("db", "rp", (TsmFile("/a.tsm", 1, 2),)),), {}).to_json()
    document["found"][0]["tsm"][0][8] = 5
    with pytest.raises(ValueError, match="types #5 of 1"):
        Discovery.from_json(document)
    document = Discovery((Found("db", "rp", (TsmFile("/a.tsm", 1, 2),)),), {}).to_json()
    document["found"][0]["tsm"][0][7] = [1]
    with pytest.raises(ValueError, match="odd length"):
        Discovery.from_json(document)
    document = Discovery((Found("db", "rp", (TsmFile("/a.tsm", 1, 2),)),), {}).to_json()
    document["found"][0]["tsm"][0][9] = [1, 2]
    with pytest.raises(ValueError, match="edges: length 2"):
        Discovery.from_json(document)


def test_a_file_row_of_an_older_helper_has_no_edges() -> None:
    document = Discovery((Found("db", "rp", (TsmFile("/a.tsm", 1, 2, edges={5: (1, 1)}),)),), {})
    older = document.to_json()
    del older["found"][0]["tsm"][0][9]
    (found,) = Discovery.from_json(older).found
    assert found.tsm[0].edges is None
