"""Decoding InfluxDB 1.x's meta.db: hand-built protobuf, real influxd 1.6 bytes, a real influxd."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headlined.influx.datadir import tsm_time_range
from headlined.influx.meta import (
    InfluxMetaError,
    Meta,
    RetentionPolicy,
    ShardGroup,
    parse_meta,
    read_meta,
    shard_ranges,
)
from tests.support.influxdb_server import require_binary, running_influxd

BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z, a Monday: weekly shard groups start there
DAY = 86_400 * 10**9

# A minimal protobuf encoder, to build inputs.


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 goes out as 64-bit two's complement, as from Go
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def vfield(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def lfield(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(raw)) + raw


def encode_group(group: ShardGroup, deleted_at: int = 0, junk: bytes = b"") -> bytes:
    shards = b"".join(lfield(5, vfield(1, s) + lfield(3, vfield(1, 1))) for s in group.shard_ids)
    head = vfield(1, group.id) + vfield(2, group.start_ns) + vfield(3, group.end_ns)
    return junk + head + vfield(4, deleted_at) + shards


def encode_policy(policy: RetentionPolicy, groups: Sequence[bytes], junk: bytes = b"") -> bytes:
    subscription = lfield(6, lfield(1, "s") + lfield(2, "ALL") + lfield(3, "udp://h:9"))
    head = lfield(1, policy.name) + vfield(2, policy.duration_ns)
    rest = vfield(3, policy.shard_group_duration_ns) + vfield(4, 1)
    return junk + head + rest + b"".join(lfield(5, g) for g in groups) + subscription


def encode_database(name: str, policies: Sequence[bytes], junk: bytes = b"") -> bytes:
    query = lfield(4, lfield(1, "cq") + lfield(2, "CREATE CONTINUOUS QUERY ..."))
    return (
        junk
        + lfield(1, name)
        + lfield(2, "autogen")
        + b"".join(lfield(3, p) for p in policies)
        + query
    )


USER = lfield(1, "alice") + lfield(2, "$2a$10$not-a-real-bcrypt-hash") + vfield(3, 1)
TAIL = vfield(7, 0) + vfield(8, 3) + vfield(9, 3)  # MaxNodeID, MaxShardGroupID, MaxShardID


def encode_meta(databases: Sequence[bytes], junk: bytes = b"", user: bytes = USER) -> bytes:
    # In influxd's order: fields by number, so users come before the MaxShardID that ends it.
    head = junk + vfield(1, 0) + vfield(2, 7) + vfield(3, 0x1234_5678_9ABC)
    return head + b"".join(lfield(5, d) for d in databases) + lfield(6, user) + TAIL


def encode(meta: Meta) -> bytes:
    databases = []
    for db, policies in meta.items():
        encoded = [
            encode_policy(p, [encode_group(g) for g in p.shard_groups]) for p in policies.values()
        ]
        databases.append(encode_database(db, encoded))
    return encode_meta(databases)


# InfluxDB 1.6.7~rc0's meta.db after: CREATE DATABASE a; CREATE RETENTION POLICY daily ON a
# DURATION INF REPLICATION 1 SHARD DURATION 1d; CREATE USER alice ... WITH ALL PRIVILEGES; a
# continuous query on a; a subscription on a.autogen; one point each on 2024-01-01, 02 and 03 in
# a.daily (shards 1-3); DROP SHARD 2.
GOLDEN = bytes.fromhex(
    "0800100a18d79ebaded2cc89863a2aa9020a016112076175746f67656e1a330a076175746f67656e10001880"
    "80a4c9ffc189012001321b0a01731203414c4c1a117564703a2f2f3132372e302e302e313a391a710a056461"
    "696c791000188080bc8ac9d21320012a1c0801108080948bf08284d317188080d095b9d597d31720002a0208"
    "012a200802108080d095b9d597d3171880808ca082a8abd31720cace97c183a0ddf6182a1c08031080808ca0"
    "82a8abd317188080c8aacbfabed31720002a02080322730a026371126d43524541544520434f4e54494e554f"
    "5553205155455259206371204f4e206120424547494e2053454c454354206d65616e28762920494e544f2061"
    "2e6175746f67656e2e6d322046524f4d20612e6175746f67656e2e6d2047524f55502042592074696d652831"
    "682920454e4432470a05616c696365123c243261243130247346335a79437a7a3663417464647a59524f665a"
    "516553597979467a3331655755476638636263324d4251723930356653713954531801380040034803"
)


def test_real_influxd_meta_db() -> None:
    assert parse_meta(GOLDEN) == {
        "a": {
            "autogen": RetentionPolicy("autogen", 0, 7 * DAY, ()),
            "daily": RetentionPolicy(
                "daily",
                0,
                DAY,
                (
                    ShardGroup(1, BASE, BASE + DAY, (1,)),
                    # group 2 was deleted with its only shard
                    ShardGroup(3, BASE + 2 * DAY, BASE + 3 * DAY, (3,)),
                ),
            ),
        }
    }
    for cut in range(len(GOLDEN)):
        with pytest.raises(InfluxMetaError, match=f"^meta.db: truncated at byte {cut}"):
            parse_meta(GOLDEN[:cut])


def test_users_are_skipped_unread() -> None:
    meta = {"db": {"rp": RetentionPolicy("rp", DAY, DAY, ())}}
    databases = [encode_database("db", [encode_policy(meta["db"]["rp"], [])])]
    assert parse_meta(encode_meta(databases, user=b"\xff\xff\xff")) == meta


def test_shard_ranges_and_negative_times() -> None:
    early = ShardGroup(4, -3 * DAY, -2 * DAY, (7, 8))  # before 1970
    late = ShardGroup(5, BASE, 2**63 - 1, (9,))  # influxd's last group ends at MaxInt64
    meta = {
        "db": {"rp": RetentionPolicy("rp", 0, DAY, (early, late))},
        "other": {"rp": RetentionPolicy("rp", 0, DAY, (ShardGroup(6, 0, DAY, ()),))},
    }
    assert parse_meta(encode(meta)) == meta
    assert shard_ranges(meta) == {
        ("db", "rp", 7): (-3 * DAY, -2 * DAY),
        ("db", "rp", 8): (-3 * DAY, -2 * DAY),
        ("db", "rp", 9): (BASE, 2**63 - 1),
    }


def test_read_meta(tmp_path: Path) -> None:
    with pytest.raises(InfluxMetaError, match=r"/meta\.db: cannot read: No such file"):
        read_meta(tmp_path)
    (tmp_path / "meta.db").write_bytes(GOLDEN)
    assert set(read_meta(tmp_path)["a"]) == {"autogen", "daily"}
    (tmp_path / "meta.db").write_bytes(GOLDEN[:100])
    with pytest.raises(InfluxMetaError, match=f"^{tmp_path}/meta.db: truncated at byte 100"):
        read_meta(tmp_path)


def _db(fields: bytes) -> bytes:
    return encode_meta([fields])


def _rp(fields: bytes) -> bytes:
    return _db(lfield(1, "a") + lfield(2, "r") + lfield(3, fields))


_RP_HEAD = lfield(1, "r") + vfield(2, 0) + vfield(3, DAY) + vfield(4, 1)

BROKEN = {
    "empty": (b"", "truncated at byte 0: no MaxShardID \\(field 9\\)"),
    "zeros": (b"\x00" * 16, "byte 0: invalid field number 0"),
    "group": (key(5, 3) + TAIL, "byte 0: unsupported wire type 3"),
    "wire 7": (key(5, 7) + TAIL, "byte 0: unsupported wire type 7"),
    "long varint": (key(1, 0) + b"\xff" * 10 + b"\x01", "byte 0: varint longer than 10 bytes"),
    "huge varint": (key(1, 0) + b"\xff" * 9 + b"\x02", "byte 0: varint over 64 bits"),
    "huge length": (key(5, 2) + varint(2**63), "truncated at byte 11"),
    "cut 64-bit": (key(20, 1) + b"\x00" * 3, "truncated at byte 5"),
    "cut 32-bit": (key(20, 5) + b"\x00" * 3, "truncated at byte 5"),
    "varint database": (vfield(5, 1) + TAIL, "byte 0: Data field 5 has wire type 0, not 2"),
    "varint name": (_db(vfield(1, 3)), "byte 14: DatabaseInfo.Name has wire type 0, not 2"),
    "no name": (_db(lfield(2, "autogen")), "byte 14: DatabaseInfo lacks Name \\(field 1\\)"),
    "not UTF-8": (_db(lfield(1, b"\xc3\x28")), "byte 16: DatabaseInfo.Name is not UTF-8"),
    "overrun": (
        _db(key(1, 2) + varint(10) + b"ab"),
        "byte 14: field runs past the end of its DatabaseInfo",
    ),
    "same database": (encode_meta([lfield(1, "a")] * 2), "byte 19: database 'a' appears twice"),
    "same policy": (
        _db(lfield(1, "a") + lfield(3, _RP_HEAD) * 2),
        "byte 36: retention policy a.r appears twice",
    ),
    "no duration": (
        _rp(lfield(1, "r")),
        "byte 22: RetentionPolicyInfo lacks Duration \\(field 2\\)",
    ),
    "no deleted at": (
        _rp(_RP_HEAD + lfield(5, vfield(1, 1))),
        "byte 39: ShardGroupInfo lacks DeletedAt \\(field 4\\)",
    ),
    "no start": (
        _rp(_RP_HEAD + lfield(5, vfield(1, 1) + vfield(4, 0) + vfield(3, 0))),
        "byte 39: ShardGroupInfo lacks StartTime \\(field 2\\)",
    ),
}


@pytest.mark.parametrize(("data", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_input_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(InfluxMetaError, match=f"^x/meta.db: {message}$"):
        parse_meta(data, "x/meta.db")


# Property tests: random meta stores, encoded as influxd would, with unknown fields thrown in.

INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)
NAMES = st.text(max_size=6)
GROUPS = st.builds(ShardGroup, UINT64, INT64, INT64, st.lists(UINT64, max_size=3).map(tuple))
UNKNOWN = st.integers(12, 2**29 - 1)  # numbers no message of meta.proto uses
JUNK = st.lists(
    st.one_of(
        st.builds(vfield, UNKNOWN, UINT64),
        st.builds(lambda n, b: key(n, 1) + b, UNKNOWN, st.binary(min_size=8, max_size=8)),
        st.builds(lfield, UNKNOWN, st.binary(max_size=12)),
        st.builds(lambda n, b: key(n, 5) + b, UNKNOWN, st.binary(min_size=4, max_size=4)),
    ),
    max_size=3,
).map(b"".join)


@st.composite
def encoded_metas(draw: st.DrawFn) -> tuple[Meta, bytes]:
    """A random meta store, and its encoding with deleted shard groups and unknown fields."""
    junk = draw(JUNK)
    meta: Meta = {}
    databases = []
    for db in draw(st.lists(NAMES, unique=True, max_size=3)):
        policies: dict[str, RetentionPolicy] = {}
        encoded = []
        for name in draw(st.lists(NAMES, unique=True, max_size=3)):
            groups = draw(st.lists(st.tuples(GROUPS, st.one_of(st.just(0), INT64)), max_size=4))
            live = tuple(group for group, deleted_at in groups if not deleted_at)
            policies[name] = policy = RetentionPolicy(name, draw(INT64), draw(INT64), live)
            shard_groups = [encode_group(group, deleted_at, junk) for group, deleted_at in groups]
            encoded.append(encode_policy(policy, shard_groups, junk))
        meta[db] = policies
        databases.append(encode_database(db, encoded, junk))
    return meta, encode_meta(databases, junk)


@given(encoded_metas())
def test_decodes_what_was_encoded(case: tuple[Meta, bytes]) -> None:
    meta, data = case
    parsed = parse_meta(data)
    assert parsed == meta
    assert [list(p) for p in parsed.values()] == [list(p) for p in meta.values()]  # same order


@given(encoded_metas(), st.data())
def test_every_truncation_is_detected(case: tuple[Meta, bytes], data: st.DataObject) -> None:
    encoded = case[1]
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(InfluxMetaError, match=f"^meta.db: truncated at byte {cut}"):
        parse_meta(encoded[:cut])


def _parses_or_fails_cleanly(data: bytes) -> None:
    with contextlib.suppress(InfluxMetaError):  # any other exception fails the test
        parse_meta(data)


@given(encoded_metas(), st.data())
def test_garbled_input_fails_cleanly(case: tuple[Meta, bytes], data: st.DataObject) -> None:
    encoded = bytearray(case[1])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(encoded)))
        edit = data.draw(st.binary(min_size=1, max_size=3))
        if data.draw(st.booleans()):
            encoded[at : at + len(edit)] = edit  # overwrite
        else:
            encoded[at:at] = edit  # insert
    _parses_or_fails_cleanly(bytes(encoded))


@given(st.binary(max_size=300))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    _parses_or_fails_cleanly(data)


# Against a real influxd.


def _ns(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp()) * 10**9  # SHOW SHARDS: whole seconds


@pytest.mark.integration
def test_matches_show_shards_of_real_influxd(tmp_path: Path) -> None:
    require_binary("influxd")
    with running_influxd(tmp_path) as influx:
        influx.create_database("alpha")
        influx.create_database("beta")
        influx.query(
            "CREATE RETENTION POLICY daily ON alpha DURATION INF REPLICATION 1 SHARD DURATION 1d"
        )
        influx.query("CREATE USER alice WITH PASSWORD 'secret' WITH ALL PRIVILEGES")
        influx.query(
            "CREATE CONTINUOUS QUERY cq ON alpha BEGIN "
            "SELECT mean(v) INTO m2 FROM m GROUP BY time(1h) END"
        )
        # 10 days in 1-day groups; 5 weeks in autogen's 7-day groups; 2023 in beta.
        influx.write("alpha", [f"m v={i} {BASE + i * DAY // 4}" for i in range(40)], rp="daily")
        influx.write("alpha", [f"m v={i} {BASE + i * DAY}" for i in range(35)])
        influx.write("beta", [f"m v={i} {BASE - (180 + i) * DAY}" for i in range(3)])
        shows = influx.query("SHOW SHARDS")["results"][0]["series"]
        expected = {
            (db, rp, shard): (group, _ns(start), _ns(end))
            for series in shows
            for shard, db, rp, group, start, end, *_ in series.get("values", [])
        }
        dropped = sorted(shard for (_, rp, shard) in expected if rp == "daily")[2]
        influx.query(f"DROP SHARD {dropped}")
        del expected[("alpha", "daily", dropped)]
        influx.flush_to_tsm("alpha")
        # No polling: influxd writes meta.db before it answers the write or statement.
        meta = read_meta(influx.meta_dir)
    assert read_meta(influx.meta_dir) == meta  # stopping influxd changes nothing
    assert len(expected) == 10 - 1 + 5 + 1
    assert {
        (db, policy.name, shard): (group.id, group.start_ns, group.end_ns)
        for db, policies in meta.items()
        for policy in policies.values()
        for group in policy.shard_groups
        for shard in group.shard_ids
    } == expected
    ranges = shard_ranges(meta)
    assert ranges == {shard: (start, end) for shard, (_, start, end) in expected.items()}
    daily, autogen = meta["alpha"]["daily"], meta["alpha"]["autogen"]
    assert (daily.duration_ns, daily.shard_group_duration_ns) == (0, DAY)
    assert (autogen.duration_ns, autogen.shard_group_duration_ns) == (0, 7 * DAY)
    assert [g.start_ns for g in daily.shard_groups] == [BASE + d * DAY for d in range(10) if d != 2]
    assert [g.start_ns for g in autogen.shard_groups] == [BASE + w * 7 * DAY for w in range(5)]
    assert all(g.end_ns - g.start_ns == 7 * DAY for g in autogen.shard_groups)
    shard_dirs = {
        (path.parent.parent.name, path.parent.name, int(path.name))
        for path in influx.data_dir.glob("*/*/*")
        if not path.parent.name.startswith("_")  # <db>/_series is the index, not a policy
    }
    assert shard_dirs == set(ranges)
    assert influx.tsm_files("alpha")
    for tsm in influx.tsm_files("alpha"):
        start, end = ranges[(tsm.parts[-4], tsm.parts[-3], int(tsm.parts[-2]))]
        found = tsm_time_range(tsm)
        assert found is not None
        assert start <= found[0] <= found[1] < end
