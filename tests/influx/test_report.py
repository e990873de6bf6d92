"""What influx_inspect says on stderr, sorted into skipped data (pure, no influx_inspect)."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headlined.influx.chunk import assess
from headlined.influx.chunkplan import Chunk, to_ns
from headlined.influx.datadir import Discovery, Unreadable
from headlined.influx.protocol import CHECKSUM_PREFIX, ProtocolError, parse_rfc3339
from headlined.influx.report import describe_exit, go_unquote, parse

WEEK_1 = Chunk("db", "autogen", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 8, tzinfo=UTC))
WEEK_2 = Chunk("db", "autogen", datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC))


def go_quote(text: bytes) -> str:
    """Go's strconv.Quote (what %q prints), for the bytes of a TSM key."""
    out = ['"']
    named = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
    decoded = text.decode("utf-8", "surrogateescape")
    for char in decoded:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif code in named:
            out.append(named[code])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not char.isprintable():
            out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def test_a_skipped_key_names_its_series_field_and_file() -> None:
    # As influx_inspect 1.6 printed it for a flipped data block (checked with Go's %q).
    text = (
        'unable to read key "cpu,host=a\\\\ b,x=ü\\xff\\x01\\"q\\\\#!~#val\\tue" in /d/1.tsm, '
        "skipping: EOF\n"
    )
    report = parse(text)
    assert len(report.skipped) == 1
    item = report.skipped[0]
    assert item.kind == "key"
    assert item.file == "/d/1.tsm"
    assert item.series == 'cpu,host=a\\ b,x=ü\ufffd\x01"q\\'
    assert item.field == "val\tue"
    assert item.error == "EOF"


@given(st.binary(max_size=60))
def test_go_quoted_keys_read_back(raw: bytes) -> None:
    expected = raw.decode("utf-8", "replace")
    assert go_unquote(go_quote(raw)) == expected


def test_unreadable_files_wal_corruption_and_deletes() -> None:
    text = (
        "unable to read /d/db/autogen/3/000000001-000000001.tsm, skipping: "
        "indirectIndex: not enough data for max time\n"
        "file /w/db/autogen/3/_00001.wal corrupt at position 96: snappy: corrupt input"
        "file /w/db/autogen/4/_00002.wal corrupt at position 7: EOF"
        "WARNING: detected deletes in wal file.\n"
        'Some series for "db/autogen" may be brought back by replaying this data.\n'
        "To resolve, you can either let the shard snapshot prior to exporting the data\n"
        "or manually editing the exported file.\n"
        "\t\t\t\n"
        "something new went wrong\n"
    )
    report = parse(text)
    assert [(s.kind, s.file) for s in report.skipped] == [
        ("file", "/d/db/autogen/3/000000001-000000001.tsm"),
        ("wal", "/w/db/autogen/3/_00001.wal"),
        ("wal", "/w/db/autogen/4/_00002.wal"),
        ("other", ""),
    ]
    assert report.skipped[1].error == "corrupt at position 96: snappy: corrupt input"
    assert report.skipped[3].describe() == "influx_inspect said: something new went wrong"
    assert report.wal_deletes == ("db/autogen",)
    assert parse("").skipped == ()


def test_an_unreadable_file_fails_only_the_chunks_it_covers() -> None:
    path = "/d/db/autogen/3/000000001-000000001.tsm"
    report = parse(f"unable to read {path}, skipping: bad magic\n")
    first = to_ns(WEEK_1.start)
    covering = [Unreadable(path, "bad magic", first, to_ns(WEEK_1.end) - 1)]
    fatal, damage = assess(report, WEEK_1, Discovery((), {}), covering)
    assert fatal == [f"{path}: unreadable TSM file (bad magic)"]
    assert damage == []
    assert assess(report, WEEK_2, Discovery((), {}), covering) == ([], [])
    # Nothing says where its data lies: every chunk of its retention policy fails.
    unknown = [Unreadable(path, "bad magic", None, None)]
    assert assess(report, WEEK_2, Discovery((), {}), unknown)[0]
    # Not found unreadable by discovery (it broke since): treated as covering.
    assert assess(report, WEEK_2, Discovery((), {}), [])[0]


def test_skipped_keys_damage_and_a_corrupt_wal_damages_the_chunks_of_its_shard() -> None:
    text = (
        'unable to read key "m,id=1#!~#v" in /d/db/autogen/3/1.tsm, skipping: EOF\n'
        "file /w/db/autogen/3/_00001.wal corrupt at position 9: EOF\n"
    )
    shards = {("db", "autogen", 3): (to_ns(WEEK_1.start), to_ns(WEEK_1.end))}
    fatal, damage = assess(parse(text), WEEK_1, Discovery((), shards), [])
    assert fatal == []
    assert [(d.kind, d.series, d.field) for d in damage] == [
        ("key", "m,id=1", "v"),
        ("wal", None, None),
    ]
    _, later = assess(parse(text), WEEK_2, Discovery((), shards), [])
    assert [d.kind for d in later] == ["key"]  # shard 3's WAL lies before this chunk


def test_a_checksum_line_names_the_block_and_yields_to_an_unread_key() -> None:
    line = (
        f'{CHECKSUM_PREFIX} "pm,id=a\\ b#!~#pm10" in /d/2.tsm '
        f"(times {to_ns(WEEK_1.start)}..{to_ns(WEEK_1.end) - 1})"
    )
    (item,) = parse(line).skipped
    assert (item.kind, item.series, item.field, item.file) == (
        "checksum",
        "pm,id=a\\ b",
        "pm10",
        "/d/2.tsm",
    )
    assert item.error == (
        "block fails its checksum: its values from 2024-01-01T00:00:00.000000000Z to "
        "2024-01-07T23:59:59.999999999Z were exported but may be wrong"
    )
    unread = 'unable to read key "pm,id=a\\ b#!~#pm10" in /d/2.tsm, skipping: EOF\n'
    assert [s.kind for s in parse(unread + line).skipped] == ["key"]


def test_rfc3339_to_nanoseconds() -> None:
    assert parse_rfc3339("2024-01-07T23:59:59.999999999Z") == to_ns(WEEK_1.end) - 1
    assert parse_rfc3339("1969-12-31T23:59:59Z") == -(10**9)
    with pytest.raises(ProtocolError, match="not an RFC 3339"):
        parse_rfc3339("2024-01-07 23:59:59")


def test_exit_codes_in_words() -> None:
    assert describe_exit(1) == "exited 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-200) == "was killed by signal 200"


@given(
    st.lists(
        st.one_of(
            st.text(alphabet=string.printable, max_size=60),
            st.builds(
                "file {} corrupt at position {}".format,
                st.text(alphabet=string.printable, max_size=20),
                st.text(alphabet=string.printable, max_size=5),
            ),
            st.builds("unable to read {}".format, st.text(alphabet=string.printable, max_size=30)),
        ),
        max_size=6,
    )
)
def test_no_line_of_stderr_is_ever_dropped(lines: list[str]) -> None:
    """Unknown words about the data are never ignored: every line becomes a finding."""
    text = "\n".join(lines)
    kept = [line for line in text.splitlines() if line.strip()]
    assert len(parse(text).skipped) >= len(kept)
