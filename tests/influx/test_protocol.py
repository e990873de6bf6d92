"""The daemon ↔ headlined-inspect wire format (pure: BytesIO streams)."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headlined.influx.protocol import (
    DATA,
    FAILURE,
    MAX_FRAME,
    RESULT,
    STDERR,
    ProtocolError,
    Request,
    decode_json,
    decode_request,
    read_frame,
    write_frame,
    write_json,
)

frames = st.lists(
    st.tuples(st.sampled_from([DATA, STDERR, RESULT, FAILURE]), st.binary(max_size=300)),
    max_size=8,
)


@given(frames)
def test_frames_read_back_in_order(sent: list[tuple[bytes, bytes]]) -> None:
    stream = io.BytesIO()
    for kind, payload in sent:
        write_frame(stream, kind, payload)
    stream.seek(0)
    received = []
    while (frame := read_frame(stream)) is not None:
        received.append(frame)
    assert received == sent


@given(frames, st.data())
def test_a_stream_cut_inside_a_frame_is_an_error_never_a_short_frame(
    sent: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    stream = io.BytesIO()
    for kind, payload in sent:
        write_frame(stream, kind, payload)
    whole = stream.getvalue()
    cut = data.draw(st.integers(0, len(whole)))
    cut_stream = io.BytesIO(whole[:cut])
    received = []
    try:
        while (frame := read_frame(cut_stream)) is not None:
            received.append(frame)
    except ProtocolError:
        return  # cut inside a frame: said so
    assert received == sent[: len(received)]
    assert len(b"".join(k + len(p).to_bytes(4, "big") + p for k, p in received)) == cut


def test_large_data_is_split_and_results_are_bounded() -> None:
    stream = io.BytesIO()
    write_frame(stream, DATA, b"x" * (MAX_FRAME + 5))
    stream.seek(0)
    sizes = []
    while (frame := read_frame(stream)) is not None:
        sizes.append(len(frame[1]))
    assert sizes == [MAX_FRAME, 5]
    with pytest.raises(ProtocolError, match="R frame"):
        write_frame(io.BytesIO(), RESULT, b"x" * (MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="unknown frame kind"):
        read_frame(io.BytesIO(b"Z\x00\x00\x00\x00"))
    with pytest.raises(ProtocolError, match="over the limit"):
        read_frame(io.BytesIO(b"D\xff\xff\xff\xff"))


def test_json_replies() -> None:
    stream = io.BytesIO()
    write_json(stream, RESULT, {"exit": 0})
    stream.seek(0)
    assert read_frame(stream) == (RESULT, b'{"exit": 0}')
    with pytest.raises(ProtocolError, match="reply is not JSON"):
        decode_json(b"{")
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decode_json(b"[1]")


def test_requests_round_trip_and_bad_ones_are_refused() -> None:
    request = Request(
        op="export",
        data_dir="/var/lib/influxdb/data",
        wal_dir="/var/lib/influxdb/wal",
        database="ข่าว",
        retention_policy="autogen",
        start="2024-01-01T00:00:00.000000000Z",
        end="2024-01-07T23:59:59.999999999Z",
    )
    assert decode_request(request.encode()) == request
    passing = dataclasses.replace(request, passed_pipe=True)
    assert decode_request(passing.encode()) == passing
    good = json.loads(request.encode())
    for change, problem in (
        ({"op": "rm"}, "unknown op"),
        ({"start": "yesterday"}, "not an RFC 3339"),
        ({"database": ""}, "needs database"),
        ({"data_dir": 7}, "data_dir: not a string"),
        ({"wal_dir": "a\x00b"}, "wal_dir: not a string"),
        ({"databases": "all"}, "databases: not a list"),
        ({"passed_pipe": "yes"}, "passed_pipe: not true or false"),
        ({"op": "discover", "passed_pipe": True}, "discover takes no pipe"),
    ):
        with pytest.raises(ProtocolError, match=problem):
            decode_request(json.dumps({**good, **change}).encode())
    with pytest.raises(ProtocolError, match="longer than"):
        decode_request(b" " * 70_000)
    with pytest.raises(ProtocolError, match="request is not JSON"):
        decode_request(b"export everything\n")
