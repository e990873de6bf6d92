"""Records: extraction at a dotted path, canonical keys, every time format."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from headlined.records import (
    BadResponseError,
    decode_json,
    extract,
    parse_time,
    record_key,
    time_problem,
)


def test_keys_are_canonical_json_in_config_order() -> None:
    assert record_key([123]) == "[123]"
    assert record_key(["a", 7]) == '["a",7]'
    assert record_key(["ทดสอบ"]) == '["ทดสอบ"]'


def test_extract_nested_path_and_key_order() -> None:
    doc = {"result": {"items": [{"seq": 7, "station": "st-1", "ts": 1700000000}]}}
    out = extract(doc, "result.items", ["station", "seq"], "ts")
    [record] = out.records
    assert record.key == '["st-1",7]'
    assert record.time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert record.seq == ('["st-1"]', 7)
    assert record.payload == doc["result"]["items"][0]


def test_bare_list_and_records_without_keys_are_counted() -> None:
    out = extract([{"id": 1}, {"id": None}, {"x": 2}, "junk", {"id": [1]}], "", ["id"], None)
    assert [r.key for r in out.records] == ["[1]"]
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
        extract(decode_json(body), path, ["id"], None)
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


def test_known_records_skip_time_parsing() -> None:
    doc = [{"id": 1, "t": "2026-01-01T00:00:00Z"}, {"id": 2, "t": "2026-01-01T00:00:01Z"}]
    out = extract(doc, "", ["id"], "t", known={"[1]"})
    assert [(r.key, r.time is None, r.seq is None) for r in out.records] == [
        ("[1]", True, True),
        ("[2]", False, False),
    ]


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
    out = extract([{"id": value}], "", ["id"], None)
    if value is None or isinstance(value, dict | list):
        assert out.records == []
        assert out.rejected == 1
    else:
        assert [r.key for r in out.records] == [record_key([value])]
        number = value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
            number = int(value)
        expected = ("[]", number) if type(number) is int else None
        assert out.records[0].seq == expected
