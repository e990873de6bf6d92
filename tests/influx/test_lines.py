"""headlined.influx.convert._lines: the converter's first pass, in C (its outcome vs parse() is in
test_convert.py; here: each kind of line, and that the way bytes arrive changes nothing)."""

from __future__ import annotations

import array
import itertools
import random
from typing import Any

import duckdb
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from headlined.influx.convert._lines import (
    BULK,
    MAX_LINE,
    MAX_PAIRS,
    NOT_UTF8,
    OVERLONG,
    SKIP,
    SLOW,
    Batch,
    Splitter,
)
from headlined.lineprotocol import LineProtocolError, parse_line

LOW, HIGH = -(2**63) + 2, 2**63 - 2
Row = tuple[Any, ...]


_CON = duckdb.connect()  # one for the module: connecting costs more than most tests here


def rows_of(batch: Batch) -> list[Row]:
    found = _CON.execute("SELECT * FROM batch").fetchall()
    assert _CON.execute("SELECT count(*) FROM batch").fetchone() == (len(found),)  # read again
    return found


def split(*pieces: bytes) -> tuple[list[Row], Splitter]:
    """The rows of these bytes, each with its series key's text in place of its number."""
    splitter = Splitter(LOW, HIGH)
    for piece in pieces:
        splitter.feed(piece)
    splitter.finish()
    keys = splitter.keys(0)
    rows = []
    for kind, kid, fk, v, ts, raw, ty, bad in rows_of(splitter.take()):
        # Only a one-field bulk line has its value typed (test_values_are_typed_...).
        assert (ty is None, bad is None) == (fk is None, fk is None)
        rows.append((kind, None if kid is None else keys[kid], fk, v, ts, raw))
    return rows, splitter


@pytest.mark.parametrize(
    ("line", "row"),
    [
        (b"m,t=a f=1.5 17", (BULK, "m,t=a", "f", "1.5", 17, None)),
        (b"m a=1,b=2i -5", (BULK, "m", None, "a=1,b=2i", -5, None)),
        (b'm,t=a\\ b s="x y \\" z" 3', (BULK, "m,t=a\\ b", "s", '"x y \\" z"', 3, None)),
        (b"m f=1 017", (SLOW, None, None, None, None, "m f=1 017")),  # not canonical
        (b"m f=1 -0", (SLOW, None, None, None, None, "m f=1 -0")),
        (
            b"m f=1 99999999999999999999",
            (SLOW, None, None, None, None, "m f=1 99999999999999999999"),
        ),
        (b"m f=1", (SLOW, None, None, None, None, "m f=1")),  # no time: the exact parser's
        (b"m f\\=1 2", (SLOW, None, None, None, None, "m f\\=1 2")),
        (b"m =1 2", (SLOW, None, None, None, None, "m =1 2")),
        (b'm s="a"b" 2', (SLOW, None, None, None, None, 'm s="a"b" 2')),
        (b"# CONTEXT-DATABASE:db", (SKIP, None, None, None, None, "# CONTEXT-DATABASE:db")),
        (b" \t# x", (SKIP, None, None, None, None, " \t# x")),
        (b"CREATE DATABASE db WITH NAME autogen", (SKIP, None, None, None, None, None)),
        (b"", (SKIP, None, None, None, None, None)),
        # Control characters are text like any other (a bad value: convert rejects it).
        (b"m f=1\r 2", (BULK, "m", "f", "1\r", 2, None)),
        (b"m f=\x02\x01 2", (BULK, "m", "f", "\x02\x01", 2, None)),
        (b"m f=1 2\r", (SLOW, None, None, None, None, "m f=1 2\r")),
        (b"m f=\xff 2", (NOT_UTF8, None, None, None, None, "6d20663dff2032")),
        (b"m f=\xed\xa0\x80 2", (NOT_UTF8, None, None, None, None, "6d20663deda0802032")),
        ("m,t=ไทย f=1 2".encode(), (BULK, "m,t=ไทย", "f", "1", 2, None)),
    ],
)
def test_each_kind_of_line(line: bytes, row: Row) -> None:
    expected = row
    if line.startswith(b"CREATE"):
        expected = (SKIP, None, None, None, None, line.decode())
    assert split(line + b"\n")[0] == [expected]


def test_time_bounds_are_the_precision_range() -> None:
    splitter = Splitter(-10, 10)
    splitter.feed(b"m f=1 10\nm f=1 11\nm f=1 -10\nm f=1 -11\n")
    kinds = [row[0] for row in rows_of(splitter.take())]
    assert kinds == [BULK, SLOW, BULK, SLOW]


def test_a_bom_is_kept_as_it_is_on_any_line() -> None:
    rows, _ = split(b"\xef\xbb\xbfm f=1 2\n\xef\xbb\xbfm f=1 2\n")
    assert rows == [(BULK, "\ufeffm", "f", "1", 2, None)] * 2


def test_overlong_lines_become_rows_of_their_own_wherever_they_are_cut() -> None:
    long = b"m f=" + b"x" * MAX_LINE + b" 1"
    row = (OVERLONG, f"{len(long)}:{long[:200].hex()}")
    data = b"m f=1 1\n" + long + b"\nm f=2 2\n" + long
    whole, splitter = split(data)
    assert [(kind, raw) for kind, *_, raw in whole] == [(BULK, None), row, (BULK, None), row]
    assert splitter.lines == 4
    assert not splitter.final_newline
    pieces = [data[i : i + 4099] for i in range(0, len(data), 4099)]
    assert split(*pieces)[0] == whole


def test_line_count_and_final_newline() -> None:
    assert split()[1].lines == 0
    assert split()[1].final_newline
    _, splitter = split(b"m f=1 1\n\n")
    assert (splitter.lines, splitter.final_newline) == (2, True)
    rows, splitter = split(b"m f=1 1\nm f=1 2")
    assert (splitter.lines, splitter.final_newline, len(rows)) == (2, False, 2)


def test_series_keys_are_numbered_as_they_first_appear() -> None:
    splitter = Splitter(LOW, HIGH)
    splitter.feed(b"b f=1 1\nb g=1 1\na f=1 1\n# c\nb f=2 2\nc a=1,b=2 3\na f=2 2\n")
    assert [row[1] for row in rows_of(splitter.take())] == [0, 0, 1, None, 0, 2, 1]
    assert splitter.keys(0) == ["b", "a", "c"]
    assert splitter.keys(2) == ["c"]
    assert splitter.keys(3) == []
    with pytest.raises(IndexError):
        splitter.keys(4)


def test_many_keys_keep_their_numbers() -> None:
    splitter = Splitter(LOW, HIGH)
    data = b"".join(b"m,id=%d f=1 1\n" % (i % 5000) for i in range(20000))
    splitter.feed(data)
    kids = [row[1] for row in rows_of(splitter.take())]
    assert kids == [i % 5000 for i in range(20000)]
    assert splitter.keys(0) == [f"m,id={i}" for i in range(5000)]


def test_batches_continue_where_the_last_one_stopped() -> None:
    splitter = Splitter(LOW, HIGH)
    splitter.feed(b"m f=1 1\nm f=")
    assert splitter.rows == 1
    first = splitter.take()
    splitter.feed(b"2 2\n")
    second = splitter.take()
    assert (len(first), len(second), splitter.rows) == (1, 1, 0)
    assert rows_of(second) == [(BULK, 0, "f", "2", 2, None, 0, False)]


PIECES = st.sampled_from(
    [
        b"m,t=a f=1 1",
        b'm s="a b" 2',
        b"m a=1,b=t 3",
        b"# c",
        b"",
        b"m f=1\r 2",
        b"\xef\xbb\xbfm f=1 2",
        b"m f=\xff 2",
        b"\x01\x02",
        "ไทย f=1 2".encode(),
        b"m f=1 0123",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=30), st.booleans(), st.lists(st.integers(0, 400), max_size=8))
def test_how_bytes_arrive_changes_nothing(
    lines: list[bytes], newline: bool, cuts: list[int]
) -> None:
    cut_anywhere(b"\n".join(lines) + (b"\n" if newline and lines else b""), cuts)


def cut_anywhere(data: bytes, cuts: list[int]) -> None:
    """Fed whole or in pieces cut at `cuts`, `data` gives the same rows, one per line."""
    whole, one = split(data)
    bounds = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    cut_rows, pieces = split(*(data[a:b] for a, b in itertools.pairwise(bounds)))
    assert cut_rows == whole
    assert (pieces.lines, pieces.final_newline) == (one.lines, one.final_newline)
    unfinished = 1 if data and not data.endswith(b"\n") else 0
    assert one.lines == len(whole) == data.count(b"\n") + unfinished


TYPES = ("float", "integer", "unsigned", "string", "boolean")


def typed(value: str) -> tuple[int, bool]:
    """(type code, bad) that the splitter gives the value of a one-field line."""
    splitter = Splitter(LOW, HIGH)
    splitter.feed(f"m f={value} 1\n".encode())
    ((kind, _, _, _, _, _, ty, bad),) = rows_of(splitter.take())
    assert kind == BULK
    return ty, bad


def agrees_with_the_parser(value: str) -> None:
    ty, bad = typed(value)
    try:
        point = parse_line(f"m f={value} 1")
    except LineProtocolError:
        assert bad, value
        return
    assert not bad, value
    assert TYPES[ty] == point.field_types["f"], value


@pytest.mark.parametrize(
    "value",
    [
        *("1.5", "-.5", "5.", "1e308", "1.7976931348623157e308", "1.7976931348623159e308"),
        *("-1.8e308", "1e309", "0.0001e310", "99e306", "1e-400", ".", "1e", "+1", "1_0", ""),
        *("nan", "inf", "0x10", "1.5i", "tRUE", "1e+5", "1E-5"),
        *("9223372036854775807i", "9223372036854775808i", "-9223372036854775808i"),
        *("-9223372036854775809i", "0000000000000000000000001i", "i", "-i", "-0i"),
        *("18446744073709551615u", "18446744073709551616u", "000000000000000000000001u"),
        *("-1u", "u", '"x"', '"a\\"b"', "t", "T", "true", "True", "TRUE", "f", "FALSE"),
    ],
)
def test_values_are_typed_and_checked_as_the_parser_does(value: str) -> None:
    agrees_with_the_parser(value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789.eE+-iu_tTrRfFaAlLsSnN", max_size=25))
def test_any_number_like_value_agrees_with_the_parser(value: str) -> None:
    agrees_with_the_parser(value)


@pytest.mark.parametrize(
    ("data", "unique"),
    [
        (b"m f=1 1\nm f=1 2\nm g=1 1\nm,t=a f=1 1\n", True),  # runs, as an export writes them
        (b"m f=1 1\nm g=1 1\nm f=1 2\nm g=1 2\n", True),  # a pair comes back with later times
        (b"m f=1 1\nm f=2 1\n", False),  # the second overrides the first
        (b"m f=1 2\nm f=1 1\n", False),  # not in time order: may repeat a time
        (b"m f=1 1\nm g=1 1\nm f=2 1\n", False),  # the TSM part, then an overwrite in the WAL
        (b"m a=1,b=2 1\nm a=1,b=2 1\n", True),  # multi-field lines: convert checks for them
    ],
)
def test_unique_tells_when_no_line_can_override_another(data: bytes, unique: bool) -> None:
    assert split(data)[1].unique == unique


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_any_bytes_split_the_same_however_cut(data: bytes, cuts: list[int]) -> None:
    cut_anywhere(data, cuts)


def test_size_counts_the_text_waiting_for_take() -> None:
    splitter = Splitter(LOW, HIGH)
    assert splitter.size == 0
    splitter.feed(b'm s="' + b"x" * 1000 + b'" 1\n# note\n')
    assert 1000 < splitter.size < 1100  # the value, then the comment's raw text
    splitter.take()
    assert splitter.size == 0


def test_unique_gives_up_past_max_pairs_to_bound_memory() -> None:
    splitter = Splitter(LOW, HIGH)
    splitter.feed(b"".join(b"m,id=%d f=1 1\n" % i for i in range(MAX_PAIRS)))
    assert splitter.unique
    splitter.feed(b"m,id=new f=1 1\n")
    assert not splitter.unique


# --------------------------------------------------------------------------
# The pivot: one-field lines straight into one row per point

PIVOT = 1 << 24


Table = tuple[str, list[int], list[tuple[str, int]], list[Row]]  # name, kids, fields, rows


def points_of(batch: Batch) -> list[Row]:
    """The rows of a pivoted table, its time (TIMESTAMPTZ_NS) as epoch nanoseconds."""
    assert _CON.execute("SELECT typeof(ts) FROM batch LIMIT 1").fetchall() in (
        [],
        [("TIMESTAMPTZ_NS",)],
    )
    return _CON.execute("SELECT * REPLACE (epoch_ns(ts) AS ts) FROM batch").fetchall()


def pivoted(
    data: bytes, low: int = LOW, high: int = HIGH, scale: int = 1
) -> tuple[Splitter, list[Table]]:
    """The splitter after `data` with the pivot on, and its tables with their rows."""
    splitter = Splitter(low, high, PIVOT, scale)
    splitter.feed(data)
    splitter.finish()
    if splitter.pivot_failure is not None:
        return splitter, []
    return splitter, [
        (name, kids, fields, points_of(batch))
        for name, kids, fields, batch in splitter.pivot_tables()
    ]


def test_the_pivot_gives_a_row_per_point_and_a_column_per_field_and_type() -> None:
    splitter, tables = pivoted(
        b"# CONTEXT-DATABASE:db\n"
        b'm,t=a f=1.5 10\nm,t=a f=2 20\nm,t=b f=3i 10\nm,t=a s="x \\" \\\\ \\n" 20\n'
        b"n\\,x,t=1 b=T 5\nm,t=a u=18446744073709551615u 10\n"
    )
    assert (splitter.pivot_failure, splitter.pivot_lines, splitter.pivot_first_line) == (None, 6, 2)
    assert splitter.keys(0) == ["m,t=a", "m,t=b", "n\\,x,t=1"]
    assert tables == [
        (
            "m",
            [0, 1],
            [("f", 0), ("f", 1), ("s", 3), ("u", 2)],
            [
                (0, 10, 1.5, None, None, 2**64 - 1),
                (0, 20, 2.0, None, 'x " \\ \\n', None),
                (1, 10, None, 3, None, None),
            ],
        ),
        ("n\\,x", [2], [("b", 4)], [(2, 5, True)]),
    ]
    assert rows_of(splitter.take()) == [
        (SKIP, None, None, None, None, "# CONTEXT-DATABASE:db", None, None)
    ]
    with pytest.raises(RuntimeError, match="no pivot"):
        splitter.pivot_tables()  # handed out once


def pivot_batch(data: bytes) -> Batch:
    splitter = Splitter(LOW, HIGH, PIVOT, 1)
    splitter.feed(data)
    splitter.finish()
    ((_, _, _, batch),) = splitter.pivot_tables()
    return batch


def test_with_tags_gives_rows_in_order_their_tags_and_leaves_others_alone() -> None:
    data = b"m,t=a f=1 10\nm,t=a f=2 20\nm,t=b f=3 10\nm,t=c f=4 5\n"
    ranks = array.array("i", [0, 1, 2]).tobytes()
    batch = pivot_batch(data)
    assert batch.with_tags(ranks, [["x", None, "ไทย"], ["", "y", "z"]])
    found = _CON.execute("SELECT kid, epoch_ns(ts), t0, t1 FROM batch").fetchall()
    assert found == [(0, 10, "x", ""), (0, 20, "x", ""), (1, 10, None, "y"), (2, 5, "ไทย", "z")]
    with pytest.raises(RuntimeError, match="once per pivoted table"):
        batch.with_tags(ranks, [])
    not_a_tag: Any = 1
    with pytest.raises(TypeError, match="a str or None"):
        pivot_batch(data).with_tags(ranks, [["x", not_a_tag, "z"]])
    # A series' times that overlap (a at 10 and 20, then at 15), or two series of one rank
    # whose times interleave: not in order, and no runs put them in order: no change.
    for other, rows in (([0, 1, 2], data + b"m,t=a f=5 15\n"), ([0, 0, 1], data)):
        batch = pivot_batch(rows)
        assert not batch.with_tags(array.array("i", other).tobytes(), [["x", "y", "z"]])
        assert [d[0] for d in _CON.execute("SELECT * FROM batch").description or []] == [
            "kid",
            "ts",
            "c0",
        ]


def test_with_tags_puts_runs_of_series_in_order_with_all_their_cells() -> None:
    # As an export of two shards gives them, the later shard first: each shard lists series
    # a then b, with rising times; a string, a boolean and cells left empty move with them.
    data = (
        b'm,t=a f=1 30\nm,t=a s="one" 30\nm,t=b ok=true 30\n'
        b'm,t=a f=3 10\nm,t=b f=4 10\nm,t=b s="four" 10\n'
    )
    batch = pivot_batch(data)
    assert batch.with_tags(array.array("i", [0, 1]).tobytes(), [["x", "y"]])
    found = _CON.execute("SELECT kid, epoch_ns(ts), c0, c1, c2, t0 FROM batch").fetchall()
    assert found == [
        (0, 10, 3.0, None, None, "x"),
        (0, 30, 1.0, "one", None, "x"),
        (1, 10, 4.0, "four", None, "y"),
        (1, 30, None, None, True, "y"),
    ]
    # Ranked otherwise (b before a): the same runs, in the other order.
    batch = pivot_batch(data)
    assert batch.with_tags(array.array("i", [1, 0]).tobytes(), [])
    found = _CON.execute("SELECT kid, epoch_ns(ts), c1 FROM batch").fetchall()
    assert found == [(1, 10, "four"), (1, 30, None), (0, 10, None), (0, 30, "one")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"m a=1,b=2 1\n", "a line with several fields"),
        (b"m a=1x 1\n", "a bad value"),
        (b"m a=1 1\n# CONTEXT-RETENTION-POLICY:x\n", "a context header after the data"),
        (b'm a="open 1\n', "a line for the exact parser"),
        (b"m a=1 1\n\xff\n", "a line for the exact parser"),  # not UTF-8: a row of its own
    ],
)
def test_the_pivot_fails_on_what_it_cannot_take_and_stops_reading(data: bytes, reason: str) -> None:
    splitter, _ = pivoted(data)
    assert splitter.pivot_failure == reason
    lines = splitter.lines
    splitter.feed(b"m z=1 99\n" * 10)
    assert splitter.lines == lines  # the rest is left: the caller converts again


def test_the_pivot_takes_control_characters_and_a_bom() -> None:
    splitter, tables = pivoted('\ufeffm,t=\r a="\x01\x02 \\"" 1\nm,t=\r b=2 1\n'.encode())
    assert splitter.pivot_failure is None
    assert tables == [
        ("\ufeffm", [0], [("a", 3)], [(0, 1, '\x01\x02 "')]),
        ("m", [1], [("b", 0)], [(1, 1, 2.0)]),
    ]
    assert splitter.keys(0) == ["\ufeffm,t=\r", "m,t=\r"]


def test_a_later_line_replaces_a_points_value_whatever_its_type() -> None:
    """As the WAL after TSM: the later value stays, in its own type's column only."""
    splitter, tables = pivoted(
        b'm a=1 1\nm a=2 1\nm b=t 1\nm b=false 1\nm c=1 1\nm c="x" 1\nm c=3i 1\nm c=4i 2\n'
    )
    assert (splitter.pivot_failure, splitter.pivot_lines) == (None, 8)
    assert tables == [
        (
            "m",
            [0],
            [("a", 0), ("b", 4), ("c", 0), ("c", 3), ("c", 1)],
            [(0, 1, 2.0, False, None, None, 3), (0, 2, None, None, None, None, 4)],
        )
    ]


def expected_table(lines: list[tuple[str, str, int, int]]) -> Table:
    """What the pivot must give for the lines (series key, field, time, integer value) of
    measurement ``m``: keys numbered and fields in columns as they first come, a row per
    point in the order points first came, each field's latest value."""
    kids = {key: kid for kid, key in enumerate(dict.fromkeys(key for key, *_ in lines))}
    fields = list(dict.fromkeys(field for _, field, _, _ in lines))
    points: dict[tuple[int, int], dict[str, int]] = {}
    for key, field, time, value in lines:
        points.setdefault((kids[key], time), {})[field] = value
    rows = [(kid, time, *map(cells.get, fields)) for (kid, time), cells in points.items()]
    return ("m", list(kids.values()), [(field, 1) for field in fields], rows)


@settings(max_examples=200, deadline=None)
@given(
    st.permutations(range(12)),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 1200)), max_size=6),
    st.integers(0, 2**32),
)
def test_shards_in_any_order_pivot_each_point_once(
    shards: list[int], later: list[tuple[int, int, int]], seed: int
) -> None:
    """As influx_inspect lists shards (in the order of their folders, not of their times): per
    shard each series' fields in turn, each over the shard's times with gaps; then, as the WAL,
    lines for points given before, new ones, and ones between two of a series' times."""
    # The gaps and values: many draws, from one of hypothesis' (whose every draw costs).
    rng = random.Random(seed)  # noqa: S311  test data, not secrets
    lines = [
        (f"m,k={key}", f"f{field}", shard * 100 + step * 3, rng.randrange(1000))
        for shard in shards
        for key in range(3)
        for field in range(2)
        for step in range(rng.randrange(1, 20))
        if rng.random() < 0.9
    ]
    lines += [(f"m,k={key}", f"f{field}", time, rng.randrange(1000)) for key, field, time in later]
    assume(lines)
    splitter, tables = pivoted(
        "".join(f"{key} {field}={value}i {time}\n" for key, field, time, value in lines).encode()
    )
    assert splitter.pivot_failure is None
    assert tables == [expected_table(lines)]


def test_headers_before_the_data_comments_and_blank_lines_keep_the_pivot() -> None:
    splitter, tables = pivoted(
        b"# CONTEXT-DATABASE:a\n# CONTEXT-RETENTION-POLICY:b\n"
        b"m f=1 1\n\n# writing wal data\nm f=2 2\n"
    )
    assert splitter.pivot_failure is None
    assert [rows for *_, rows in tables] == [[(0, 1, 1.0), (0, 2, 2.0)]]


def test_the_pivots_times_are_nanoseconds_marked_utc() -> None:
    """Times in another precision are scaled to nanoseconds, which DuckDB reads as
    TIMESTAMPTZ_NS with no conversion; the `lines` rows keep the input's units."""
    low, high = -(2**63) // 1000 + 1, (2**63 - 1) // 1000
    splitter, tables = pivoted(
        b"m f=1 -1\nm f=2 1700000000123456\nm f=3 %d\nm f=4 %d\n" % (low, high),
        low,
        high,
        1000,
    )
    assert splitter.pivot_failure is None
    assert tables == [
        (
            "m",
            [0],
            [("f", 0)],
            [
                (0, -1000, 1.0),
                (0, 1_700_000_000_123_456_000, 2.0),
                (0, low * 1000, 3.0),
                (0, high * 1000, 4.0),
            ],
        )
    ]
    rows, _ = split(b"m f=1 1700000000123456\n")
    assert rows == [(BULK, "m", "f", "1", 1_700_000_000_123_456, None)]


@pytest.mark.parametrize(
    ("low", "high", "scale"),
    [(0, 1, 0), (-(2**62), 0, 4), (0, 2**62, 4), (0, 2**63 - 1, 2)],
)
def test_the_scale_must_keep_the_times_in_64_bits(low: int, high: int, scale: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        Splitter(low, high, PIVOT, scale)


def test_the_pivot_fails_past_its_budget() -> None:
    splitter = Splitter(LOW, HIGH, 4096)
    splitter.feed(b"".join(b"m f=1 %d\n" % t for t in range(1000)))
    assert splitter.pivot_failure == "the points exceed the memory budget"


def test_the_pivot_budget_is_checked_and_off_by_default() -> None:
    with pytest.raises(ValueError, match="budget"):
        Splitter(LOW, HIGH, -1)
    splitter = Splitter(LOW, HIGH)
    splitter.feed(b"m f=1 1\n")
    assert (splitter.pivot_failure, splitter.pivot_lines) == (None, 0)
    with pytest.raises(RuntimeError, match="no pivot"):
        splitter.pivot_tables()
    assert len(splitter.take()) == 1  # the line went to the batch as usual


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.integers(0, 10**16).flatmap(  # short decimals: the fast path's
            lambda n: st.integers(0, 24).map(lambda k: f"{n / 10**k:.{k}f}")
        ),
        st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    )
)
def test_pivoted_floats_are_read_exactly_as_the_parser_reads_them(value: str) -> None:
    """The fast decimal path and strtod agree with Python to the last bit."""
    try:
        expected = parse_line(f"m f={value} 1").fields["f"]
    except LineProtocolError:
        return
    splitter, tables = pivoted(f"m f={value} 1\n".encode())
    assert splitter.pivot_failure is None, value
    ((_, _, _, rows),) = tables
    assert float(rows[0][2]).hex() == float(expected).hex(), value
