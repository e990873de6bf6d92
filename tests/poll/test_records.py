"""Records: the scan at a dotted path, canonical keys, every time format, C and Python alike."""

from __future__ import annotations

import json
import re
from collections.abc import Container
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from headlined.poll import _records, records
from headlined.poll.records import (
    BadResponseError,
    Record,
    Scan,
    Scanner,
    decode_json,
    parse_time,
    record_key,
    time_problem,
)


def scan(
    document: object,
    path: str,
    key: list[str],
    time: str | None,
    known: Container[str] = (),
) -> Scan:
    return Scanner(path, key, time).scan(document, known)


def test_keys_are_canonical_json_in_config_order() -> None:
    assert record_key([123]) == "[123]"
    assert record_key(["a", 7]) == '["a",7]'
    assert record_key(["ทดสอบ"]) == '["ทดสอบ"]'


def test_scan_nested_path_and_key_order() -> None:
    doc = {"result": {"items": [{"seq": 7, "station": "st-1", "ts": 1700000000}]}}
    out = scan(doc, "result.items", ["station", "seq"], "ts")
    [record] = out.new
    assert record.key == '["st-1",7]'
    assert record.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert record.seq == ('["st-1"]', 7)
    assert record.payload == doc["result"]["items"][0]


def test_bare_list_and_records_without_keys_are_counted() -> None:
    out = scan([{"id": 1}, {"id": None}, {"x": 2}, "junk", {"id": [1]}], "", ["id"], None)
    assert [r.key for r in out.new] == ["[1]"]
    assert out.fetched == 1
    assert out.rejected == 4
    assert out.reject_reason is not None


@pytest.mark.parametrize(
    ("body", "path", "kind"),
    [
        (b"\xff\xfe", "", "not_utf8"),
        (b"<html>", "", "not_json"),
        (b'{"a": 1}', "data", "missing_records_path"),
        (b'{"data": {"x": 1}}', "data", "not_a_list"),
        (b"[" * 100000, "", "not_json"),
    ],
)
def test_bad_bodies(body: bytes, path: str, kind: str) -> None:
    with pytest.raises(BadResponseError) as err:
        scan(decode_json(body), path, ["id"], None)
    assert err.value.kind == kind


T = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:00:00.123Z", T),
        ("2026-11-23T10:00:00.123z", T),
        (" 2026-11-23 10:00:00.123Z ", T),
        ("2026-11-23T10:00:00.123", T),
        ("2026-11-23T17:00:00.123+07:00", T),
        (T.timestamp(), T),
        (int(T.timestamp() * 1000), T),
        (str(int(T.timestamp() * 1000)), T),
        (int(T.timestamp() * 1_000_000), T),
        (int(T.timestamp() * 1_000_000_000), T),
        ("yesterday", None),
        (None, None),
        (True, None),
        (float("nan"), None),
        ({"a": 1}, None),
    ],
)
def test_time_formats(value: object, expected: datetime | None) -> None:
    parsed = parse_time(value)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert abs((parsed - expected).total_seconds()) < 0.001


@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.text(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_record_key_is_canonical_json(values: list[object]) -> None:
    assert record_key(values) == json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def test_known_records_are_counted_and_only_new_ones_kept() -> None:
    doc = [{"id": n, "t": f"2026-01-01T00:00:0{n}Z"} for n in (4, 3, 2, 1)]
    out = scan(doc, "", ["id"], "t", known={"[1]", "[2]"})
    assert [r.key for r in out.new] == ["[4]", "[3]"]
    assert (out.fetched, out.overlap) == (4, 2)
    assert (out.new_positions, out.known_positions) == (0 + 1, 2 + 3)  # new first: newest first


def test_duplicates_inside_one_response_count_once() -> None:
    doc = [{"id": n} for n in range(10)] * 2
    out = scan(doc, "", ["id"], None)
    assert [r.key for r in out.new] == [f"[{n}]" for n in range(10)]
    assert (out.fetched, out.key_conflicts, out.conflict_key) == (20, 0, None)


def test_different_records_sharing_a_key_are_counted() -> None:
    # key: [station] where each station sends many readings: one key, many records.
    readings = [{"station": "st-1", "v": v} for v in range(5)]
    out = scan(readings, "", ["station"], None)
    assert len(out.new) == 1
    assert (out.key_conflicts, out.conflict_key) == (4, '["st-1"]')
    again = scan(readings, "", ["station"], None, known={'["st-1"]'})
    assert (again.new, again.overlap, again.key_conflicts) == ([], 5, 4)  # seen ones too


def test_time_problem_says_why_a_record_has_no_time() -> None:
    assert time_problem({"ts": "2026-01-01T00:00:00Z"}, "ts") is None
    assert time_problem({"createdAt": 1}, "created_at") == (
        "the records have no field 'created_at'"
    )
    assert time_problem({"meta": {"at": "01/02/2026 10:00"}}, "meta.at") == (
        "'meta.at' is \"01/02/2026 10:00\": neither ISO 8601 nor epoch seconds/ms/µs/ns"
    )
    assert time_problem({"ts": None}, "ts") == (
        "'ts' is null: neither ISO 8601 nor epoch seconds/ms/µs/ns"
    )


JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_decode_json_reads_what_pythons_json_reads(document: object) -> None:
    body = json.dumps(document, ensure_ascii=False).encode()
    # repr: 1 and 1.0, or 0.0 and -0.0, must not pass for each other
    assert repr(decode_json(body)) == repr(json.loads(body))


@pytest.mark.parametrize(
    "body",
    [
        b'[{"id": 1180591620717411303424}]',  # 2**70: no float may stand in for it
        b'[{"id": -9223372036854775809}]',
        b'[{"id": 1, "v": NaN}]',
        b'[{"id": 1, "v": "x\\ud800"}]',  # a lone surrogate, as an escape
        b'[{"id": 1, "v": 1e400}]',
    ],
)
def test_decode_json_keeps_what_orjson_would_change_or_refuse(body: bytes) -> None:
    assert repr(decode_json(body)) == repr(json.loads(body))


@given(
    st.one_of(
        st.integers(),
        st.text(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        st.just({}),
        st.just([]),
    )
)
@example("²")  # str.isdigit() says yes, int() says no: once a crash of every poll
@example("٣")
def test_one_key_field_gives_the_canonical_key(value: object) -> None:
    out = scan([{"id": value}], "", ["id"], None)
    if value is None or isinstance(value, dict | list):
        assert out.new == []
        assert out.rejected == 1
    else:
        assert [r.key for r in out.new] == [record_key([value])]
        number = value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
            number = int(value)
        expected = ("[]", number) if type(number) is int else None
        assert out.new[0].seq == expected


def reference_scan(
    items: list[Any], key: list[str], time_field: str | None, known: Container[str]
) -> Scan:
    """What Scanner.scan means, in Python: the rules of records.py on every record."""
    new: list[Record] = []
    firsts: dict[str, Any] = {}
    fetched = overlap = known_sum = new_sum = conflicts = rejected = 0
    conflict_key = reason = None
    for item in items:
        answer = records._key_of(key, item)
        if isinstance(answer, str):
            rejected, reason = rejected + 1, answer
            continue
        identity, values = answer
        position, fetched = fetched, fetched + 1
        size = len(firsts)
        earlier = firsts.setdefault(identity, item)
        first = len(firsts) != size
        if not first and earlier is not item and earlier != item:
            conflicts, conflict_key = conflicts + 1, identity
        if identity in known:
            overlap, known_sum = overlap + 1, known_sum + position
        elif first:
            time = records._time_of(time_field, item)
            new.append(Record(identity, time, item, records._seq(values)))
            new_sum += position
    return Scan(
        new, fetched, overlap, known_sum, new_sum, conflicts, conflict_key, rejected, reason
    )


def _iso(moment: datetime, sep: str, digits: int, zone: str, pad: str) -> str:
    fraction = f"{moment.microsecond:06d}{moment.microsecond % 10}"[:digits]
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if digits else "")
    return f"{pad}{moment.year:04d}{text[4:]}{zone}{pad}"


ISO_TIMES = st.builds(
    _iso,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["T", " ", "x"]),
    st.integers(0, 7),
    st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+0000", "+00:01", "+07:00", "Zq"]),
    st.sampled_from(["", " "]),
)
TIMES = st.one_of(
    ISO_TIMES,
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,3})?Z?\Z"),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=30),
    st.none(),
    st.booleans(),
)
KEY_VALUES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=300),
    st.text(st.characters(codec="ascii"), max_size=300),
    st.sampled_from(['a"b', "a\\b", "", "x" * 255, "x" * 256, "12", "²"]),
    st.floats(allow_nan=False),
    st.none(),
    st.just([1]),
)


def _item(shape: str, g: object, n: object, t: object) -> object:
    if shape == "flat":
        return {"g": g, "id": n, "t": t}
    if shape == "dotted":  # key and time under "m": found by walking, in Python
        return {"g": g, "m": {"id": n, "t": t}}
    if shape == "missing":
        return {"g": g}
    return [g, n]  # not an object


ITEMS = st.builds(
    _item,
    st.sampled_from(["flat", "flat", "flat", "dotted", "missing", "list"]),
    KEY_VALUES,
    KEY_VALUES,
    TIMES,
)


@given(
    st.lists(ITEMS, max_size=12).flatmap(
        lambda pool: st.tuples(
            st.lists(st.sampled_from(pool), max_size=30) if pool else st.just([]),
            st.sets(
                st.sampled_from(
                    [json.dumps([i["id"]]) for i in pool if isinstance(i, dict) and "id" in i]
                    or ["[0]"]
                )
            ),
        )
    ),
    st.sampled_from([["id"], ["g", "id"], ["m.id"], ["g", "m.id"]]),
    st.sampled_from(["t", "m.t", None]),
)
@example(([{"id": 1, "t": "2024-02-29T23:59:59.5Z"}], set()), ["id"], "t")
@example(([{"id": 1, "t": "1900-02-29T00:00:00"}], set()), ["id"], "t")
@example(([{"id": 1, "t": "0000-01-01T00:00:00"}], set()), ["id"], "t")
@example(([{"id": 1, "t": "2024-01-01T24:00:00+00:00"}], set()), ["id"], "t")
@example(([{"id": 2**63}, {"id": -(2**63)}], set()), ["id"], None)
def test_the_c_scan_follows_the_python_rules(
    case: tuple[list[Any], set[str]], key: list[str], time_field: str | None
) -> None:
    items, known = case
    got = Scanner("", key, time_field).scan(items, known)
    want = reference_scan(items, key, time_field, known)
    assert got == want
    # Equal datetimes may still differ in zone: what is stored must be the same text.
    assert [(r.time.isoformat() if r.time else None) for r in got.new] == [
        (r.time.isoformat() if r.time else None) for r in want.new
    ]
    assert all(type(r.key) is str for r in got.new)


@given(st.one_of(ISO_TIMES, TIMES))  # ISO 8601 the more often: the C path reads it
@example("2020-01-01T00:00:00.1234567Z")  # seven digits: Python keeps six
@example("2020-01-01T00:00:00.Z")
@example("2020-01-01T00:00:00+00:01")  # not UTC, though it starts like it
@example("2020-01-01T00:00:00+00:00x")
def test_the_c_time_is_the_python_time(value: object) -> None:
    [record] = Scanner("", ["id"], "t").scan([{"id": 1, "t": value}]).new
    want = parse_time(value)
    assert (record.time, record.time and record.time.utcoffset()) == (
        want,
        want and want.utcoffset(),
    )


@given(st.lists(KEY_VALUES, min_size=1, max_size=3))
def test_the_c_key_is_the_python_key(values: list[object]) -> None:
    fields = [f"f{i}" for i in range(len(values))]
    item = dict(zip(fields, values, strict=True))
    got = Scanner("", fields, None).scan([item])
    assert got == reference_scan([item], fields, None, ())


@given(
    # "/" and ":" sit on either side of the digits in ASCII
    st.lists(st.sampled_from([b"0", b"5", b"9", b"/", b":", b"x", b"\xff"]), max_size=80).map(
        b"".join
    ),
    st.integers(1, 25),
)
@example(b"1" * 18 + b"x" + b"1" * 18, 19)
@example(b"x" + b"9" * 19, 19)
def test_has_digit_run_finds_every_run_of_digits(data: bytes, run: int) -> None:
    assert _records.has_digit_run(data, run) == (re.search(rb"[0-9]{%d}" % run, data) is not None)
