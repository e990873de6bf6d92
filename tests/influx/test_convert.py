"""Tests for headlined.influx.convert: the bulk line-protocol to Parquet converter.

The converter must agree with headlined.lineprotocol line for line, so most checks compare its
Parquet output with what `lineprotocol.parse` gives for the same text, merged into points the
documented way (a later line wins; a field gets one column, typed by schema.resolve() of the
types it has in the input, and values of other types are converted into it).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import subprocess
import threading
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headlined.influx.convert import (
    STAGED,
    ConvertError,
    ConvertResult,
    convert,
    path_segment,
    pivot,
    published_name,
    read,
)
from headlined.influx.schema import resolve
from headlined.lineprotocol import LineProtocolError, Point, parse
from tests.support.influxdb_server import require_binary, running_influxd

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
TYPES = ("float", "integer", "unsigned", "string", "boolean")
SQL_TYPES = dict(zip(TYPES, ("DOUBLE", "BIGINT", "UBIGINT", "VARCHAR", "BOOLEAN"), strict=True))

# A point as compared here: measurement, tags, time, and each field's (type, value).
Fields = dict[str, tuple[str, Any]]
Row = tuple[str, tuple[tuple[str, str], ...], int, tuple[tuple[str, tuple[str, Any]], ...]]


# --------------------------------------------------------------------------
# Helpers: what the output should be, and what it is


def comparable(kind: str, value: Any) -> tuple[str, Any]:
    """A value with its type, comparable exactly (floats by bits, so -0.0 differs from 0.0)."""
    if kind == "float":
        return kind, float(value).hex()
    return kind, value


_DUCK = duckdb.connect()


def double_text(value: float) -> str:
    """A double as the converter writes it into a string column: DuckDB's own text for it."""
    row = _DUCK.execute("SELECT CAST($1::DOUBLE AS VARCHAR)", [value]).fetchone()
    assert row is not None
    return str(row[0])


def converted(kind: str, to: str, value: Any) -> Any:
    """A parsed value of type `kind` as the documented rule writes it into a `to` column."""
    if kind == to:
        return value
    if to == "float":
        return float(value)
    assert to == "string", (kind, to)
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "float":
        return double_text(value)
    return str(value)


def expected_rows(points: list[Point]) -> tuple[set[Row], dict[str, dict[str, set[str]]]]:
    """Merge points as documented: keyed by series and time, a later point's field wins, each
    value converted into its field's one type, resolve() of the field's types in the input.

    Returns the merged rows and, per measurement, the types each field had in any point.
    """
    merged: dict[tuple[str, tuple[tuple[str, str], ...], int], dict[str, tuple[str, Any]]] = {}
    types: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for point in points:
        key = (point.measurement, tuple(sorted(point.tags.items())), point.time)
        fields = merged.setdefault(key, {})
        for name, value in point.fields.items():
            kind = point.field_types[name]
            fields[name] = kind, value
            types[point.measurement][name].add(kind)
    rows = set()
    for (m, tags, t), raw in merged.items():
        values: Fields = {}
        for name, (kind, value) in raw.items():
            to = resolve(types[m][name])
            values[name] = comparable(to, converted(kind, to, value))
        rows.add((m, tags, t, tuple(sorted(values.items()))))
    return rows, types


def field_columns(types: dict[str, set[str]]) -> dict[str, str]:
    """Column -> type by the documented rule: one column per field, resolve() of its types."""
    return {key: resolve(types[key]) for key in sorted(types)}


def read_output(
    result: ConvertResult, out_dir: Path, types: dict[str, dict[str, set[str]]]
) -> set[Row]:
    """Every row of every written file as a Row, checking column order and types on the way.

    The measurement comes from the directory name; `types` (per measurement, field -> types)
    tells field columns from tag columns (names must not clash: that has its own tests).
    """
    rows: set[Row] = set()
    for path, ident in zip(result.files, result.measurements, strict=True):
        assert path.is_relative_to(out_dir)
        measurement = urllib.parse.unquote(path.parent.name)
        assert measurement == ident[2]
        columns = schema(path)
        names = [name for name, _ in columns]
        sql_types = dict(columns)
        fields = field_columns(types[measurement])
        tags = [name for name in names[1:] if name not in fields]
        assert names == ["time", *sorted(tags), *fields], "time, tags sorted, fields sorted"
        assert sql_types["time"] == "TIMESTAMPTZ_NS"
        for name, kind in fields.items():
            assert sql_types[name] == SQL_TYPES[kind], (name, sql_types[name], kind)
        data = table(path)
        for record in data:
            values: Fields = {
                name: comparable(kind, record[name])
                for name, kind in fields.items()
                if record[name] is not None
            }
            tag_items = tuple(sorted((t, record[t]) for t in tags if record[t] is not None))
            rows.add((measurement, tag_items, record["time"], tuple(sorted(values.items()))))
        assert len(data) == result.measurements[ident]
    return rows


def run(tmp_path: Path, text: str | bytes, name: str = "in.lp", **options: Any) -> ConvertResult:
    """Write `text` to a file in tmp_path and convert it into tmp_path/out."""
    source = tmp_path / name
    if isinstance(text, str):
        source.write_text(text, encoding="utf-8", newline="")
    else:
        source.write_bytes(text)
    return convert(source, tmp_path / "out", **options)


def table(path: Path) -> list[dict[str, Any]]:
    """The rows of one Parquet file, time as integer nanoseconds."""
    con = duckdb.connect()
    cursor = con.execute(
        "SELECT * REPLACE (epoch_ns(time) AS time) FROM read_parquet(?, hive_partitioning=false)",
        [str(path)],
    )
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def schema(path: Path) -> list[tuple[str, str]]:
    """(column, DuckDB type) of one Parquet file, in order."""
    rows = (
        duckdb.connect()
        .execute("DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning=false)", [str(path)])
        .fetchall()
    )
    return [(str(r[0]), str(r[1])) for r in rows]


def rejected_lines(tmp_path: Path) -> list[str]:
    """The lines of the default rejected file, or [] when there is none."""
    path = tmp_path / "out" / "_rejected" / "part-00000.txt"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


# --------------------------------------------------------------------------
# Differential: converter vs lineprotocol.parse on generated input

NAME_ALPHABET = [
    *"abcxyzAB019_-.",
    " ",
    ",",
    "=",
    '"',
    "\\",
    "'",
    "ไ",
    "ท",
    "🚀",
    "é",
    "\r",
    "\x01",
    "\x02",
]
NAMES = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=6)
STRING_ALPHABET = [*NAME_ALPHABET, "\n", "\t", "\x00"]
FLOAT_TEXTS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "-0",
            "0",
            "1.",
            ".5",
            "-.5",
            "1E5",
            "1e-5",
            "1e+300",
            "-1e+300",
            "007.50",
            "4.9e-324",
            "1.7976931348623157e308",
            "123456789012345678901234567890",
            "2.5e-400",
            "1e-07",
        ]
    ),
    st.integers(-(10**20), 10**20).map(str),
)
INT_TEXTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda i: f"{i}i"),
    st.sampled_from(["-9223372036854775808i", "9223372036854775807i", "-0i", "007i", "0i"]),
)
UINT_TEXTS = st.one_of(
    st.integers(0, 2**64 - 1).map(lambda i: f"{i}u"),
    st.sampled_from(["18446744073709551615u", "0u", "00042u"]),
)
BOOL_TEXTS = st.sampled_from(
    ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]
)
STRING_TEXTS = st.text(alphabet=STRING_ALPHABET, max_size=12).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
# Strings with backslashes that are not escapes, which the parser keeps as they are.
RAW_STRING_TEXTS = st.text(alphabet=STRING_ALPHABET, max_size=8).map(
    lambda s: '"' + s.replace('"', '\\"') + '"'
)
VALUE_TEXTS = st.one_of(
    FLOAT_TEXTS, INT_TEXTS, UINT_TEXTS, BOOL_TEXTS, STRING_TEXTS, RAW_STRING_TEXTS
)
# Few distinct times, so that lines often meet in one point and a later one must win.
TIMES = st.one_of(
    st.sampled_from([T0, T0 + 1, T0 + 60 * 10**9]),
    st.integers(T0, T0 + 10**9 * 5),
    st.sampled_from([0, -1, 1, -(2**63) + 2, 2**63 - 2, 10**18, 999_999_999_999_999_999]),
)
NOISE = st.sampled_from(["", "# a comment", "  ", "\t# indented comment", "# CONTEXT-X:y"])


def escape(name: str, special: str) -> str:
    """Backslash the characters in `special` (and nothing else) as line protocol does."""
    return "".join("\\" + c if c in special else c for c in name)


@st.composite
def series_keys(draw: st.DrawFn) -> str:
    """A measurement and up to three tags, escaped."""
    measurement = escape(draw(NAMES), ", ")
    tags = draw(st.dictionaries(NAMES, NAMES, max_size=3))
    return measurement + "".join(
        f",{escape(k, ', =')}={escape(v, ', =')}" for k, v in sorted(tags.items())
    )


@st.composite
def line_sets(draw: st.DrawFn) -> list[str]:
    """Lines as influx_inspect writes them (one field each) mixed with multi-field lines,
    comments, blank lines and odd whitespace."""
    keys = draw(st.lists(series_keys(), min_size=1, max_size=4))
    field_keys = draw(st.lists(NAMES, min_size=1, max_size=4))
    lines = []
    for _ in range(draw(st.integers(1, 30))):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(NOISE))
            continue
        key = draw(st.sampled_from(keys))
        chosen = draw(st.lists(st.sampled_from(field_keys), min_size=1, max_size=3))
        fields = ",".join(f"{escape(k, ', =')}={draw(VALUE_TEXTS)}" for k in chosen)
        lead, gap = draw(st.sampled_from([("", " "), ("", " "), ("", " "), (" ", " "), ("", "  ")]))
        lines.append(f"{lead}{key} {fields}{gap}{draw(TIMES)}")
    return lines


def valid_only(lines: list[str]) -> list[str]:
    """The lines the exact parser accepts (generation also makes some it rightly rejects).

    Each is checked with its newline, as it will be in the file: parse() and parse_line()
    differ on a line whose quote is still open at its end.
    """
    kept = []
    for line in lines:
        try:
            parse(line + "\n")
        except LineProtocolError:
            continue
        kept.append(line)
    return kept


def converts_like_parse(tmp_path: Path, lines: list[str], **options: Any) -> ConvertResult:
    """Convert the lines parse() accepts; rows, values and types must equal its points merged
    by (series, time), a later one winning."""
    kept = valid_only(lines)
    assume(kept)
    text = "\n".join(kept) + "\n"
    points = parse(text)
    expected, types = expected_rows(points)
    assume(_no_name_clash(points))
    result = run(tmp_path, text, **options)
    assert (result.lines, result.rejected, result.points) == (len(points), 0, len(expected))
    assert read_output(result, tmp_path / "out", types) == expected
    return result


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=line_sets())
def test_agrees_with_the_exact_parser(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    """Rows, values and types equal parse()'s points merged by (series, time), later wins."""
    converts_like_parse(tmp_path_factory.mktemp("diff"), lines)


def _no_name_clash(points: list[Point]) -> bool:
    """Whether tag and field names stay apart (clash handling has its own tests)."""
    names: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for point in points:
        names[point.measurement][0].update(point.tags)
        names[point.measurement][1].update(point.fields)
    for tags, fields in names.values():
        folded = [n.casefold() for n in [*tags, *fields, "time"]]
        if len(set(folded)) != len(folded):
            return False
    return True


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=line_sets())
def test_agrees_with_the_exact_parser_through_the_reader_thread(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    """The same, for gzip input: read once by the reader thread and re-encoded for DuckDB."""
    text = "\n".join(valid_only(lines))
    points = parse(text)
    expected, types = expected_rows(points)
    assume(_no_name_clash(points))
    tmp_path = tmp_path_factory.mktemp("diffgz")
    result = run(tmp_path, gzip.compress(text.encode()), name="in.lp.gz")
    assert (result.lines, result.rejected, result.points) == (len(points), 0, len(expected))
    assert read_output(result, tmp_path / "out", types) == expected


# --------------------------------------------------------------------------
# The pivot: the fast path for files of one-field lines, and the general way behind it

# What influx_inspect writes and the pivot takes: tags with escaped spaces, commas and
# equals signs (control characters too); plain field keys; values without newlines.
CLEAN_NAMES = st.text(alphabet=[c for c in NAME_ALPHABET if c not in '\\"'], min_size=1, max_size=6)
FIELD_NAMES = st.text(alphabet=[*"abcxyzAB019_-.'", "ไ", "🚀", "é"], min_size=1, max_size=6)
CLEAN_VALUES = VALUE_TEXTS.filter(lambda v: "\n" not in v)


@st.composite
def export_files(draw: st.DrawFn) -> list[str]:
    """Lines as influx_inspect writes them: one field each (its type may differ from point to
    point), grouped by series and field or shuffled, then maybe a few overwrites."""
    measurement = escape(draw(CLEAN_NAMES), ", ")
    keys = draw(
        st.lists(
            st.dictionaries(CLEAN_NAMES, CLEAN_NAMES, max_size=2).map(
                lambda tags: (
                    measurement
                    + "".join(
                        f",{escape(k, ', =')}={escape(v, ', =')}" for k, v in sorted(tags.items())
                    )
                )
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    fields = draw(st.lists(FIELD_NAMES, min_size=1, max_size=3, unique=True))
    times = draw(st.lists(TIMES, min_size=1, max_size=4, unique=True))
    lines = [
        f"{key} {escape(field, ', =')}={draw(CLEAN_VALUES)} {t}"
        for key in keys
        for field in fields
        for t in times
        if draw(st.integers(0, 3))
    ]
    assume(lines)
    if draw(st.booleans()):
        lines = draw(st.permutations(lines))
    # As the WAL after TSM: later lines for points already given, possibly of another type.
    lines += [
        f"{draw(st.sampled_from(keys))} {escape(draw(st.sampled_from(fields)), ', =')}="
        f"{draw(CLEAN_VALUES)} {draw(st.sampled_from(times))}"
        for _ in range(draw(st.integers(0, 3)))
    ]
    return ["# CONTEXT-DATABASE:db", "# CONTEXT-RETENTION-POLICY:rp", *lines]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=export_files())
def test_the_pivot_and_the_general_way_agree_with_the_exact_parser(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    """Both ways give parse()'s points; the pivot takes nearly every export-like file."""
    general = converts_like_parse(tmp_path_factory.mktemp("general"), lines, pivot=False)
    assert not general.pivoted
    # A key the exact parser reads otherwise than the bulk split (odd escapes) is the one
    # reason left for these files to take the general way.
    assume(converts_like_parse(tmp_path_factory.mktemp("pivot"), lines).pivoted)


def test_an_export_takes_the_pivot(tmp_path: Path) -> None:
    """Headers, escapes, unicode, every type, a type that changes between points: pivoted,
    and the same rows as the general way."""
    text = (
        EXPORT_HEAD
        + "# CONTEXT-DATABASE:db1\n# CONTEXT-RETENTION-POLICY:autogen\n# writing tsm data\n"
        + "".join(
            f"{key} {field}={value} {T0 + t}\n"
            for key in ("air,site=north\\ gate,id=a\\,1", "air,site=ท่าเรือ", "water")
            for field, value in (
                ("temp", "21.5"),
                ("temp", "22i"),
                ("n", "18446744073709551615u"),
                ("ok", "T"),
                ("note", '"say \\"hi\\" \\\\ ไทย \\n"'),
            )
            for t in ((0, 1) if field != "temp" or value == "21.5" else (2,))
        )
    )
    for name in "ab":
        (tmp_path / name).mkdir()
    pivoted = run(tmp_path / "a", text, layout="database")
    general = run(tmp_path / "b", text, layout="database", pivot=False)
    assert (pivoted.pivoted, general.pivoted) == (True, False)
    assert (pivoted.lines, pivoted.points) == (general.lines, general.points) == (27, 9)
    assert [table(f) for f in pivoted.files] == [table(f) for f in general.files]
    assert [schema(f) for f in pivoted.files] == [schema(f) for f in general.files]
    notes = {r["note"] for r in table(pivoted.files[0])}
    assert notes == {'say "hi" \\ ไทย \\n', None}  # None: the point of t=2


def pivots_like_the_general_way(tmp_path: Path, text: str) -> None:
    """The text is pivoted, into parse()'s points merged, and the same rows as the general way."""
    expected, types = expected_rows(parse(text))
    pivoted = run(tmp_path, text)
    assert pivoted.pivoted
    assert read_output(pivoted, tmp_path / "out", types) == expected
    (tmp_path / "b").mkdir()
    general = run(tmp_path / "b", text, pivot=False)
    assert [table(f) for f in pivoted.files] == [table(f) for f in general.files]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"m a=1 {T0}\nm a=2 {T0}\n", id="a value given again"),
        pytest.param(f"m a=1 {T0}\nm a=2i {T0}\nm a=3 {T0 + 1}\n", id="again, another type"),
        pytest.param(
            "".join(f"m,s={s} a={t} {T0 + t}\n" for s in "xy" for t in range(5))
            + f"# writing wal data\nm,s=x a=9i {T0 + 2}\nm,s=y a=8 {T0 + 9}\n",
            id="TSM, then overwrites in the WAL",
        ),
    ],
)
def test_the_pivot_takes_later_lines_that_overwrite_as_the_general_way_does(
    tmp_path: Path, text: str
) -> None:
    """A later line for a point's field wins, on the fast path too."""
    pivots_like_the_general_way(tmp_path, text)


IN_ORDER = "".join(
    f"air,{tags} {field}={value} {T0 + t * 60 * 10**9}\n"
    # As an export lists one shard: series in order (a missing tag sorts last), then fields,
    # then times.
    for tags in ("id=a,site=north\\ gate", "id=b", "id=c,site=ท่าเรือ")
    for field, value in (("pm", "1.5"), ("n", "7i"), ("ok", "true"), ("note", '"x"'))
    for t in range(4)
)


def spy_tags_into(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each pivoted table's _tags_into answered (True: written in order, as it is)."""
    taken: list[bool] = []
    tags_into = pivot._tags_into

    def spied(*args: Any) -> bool:
        taken.append(tags_into(*args))
        return taken[-1]

    monkeypatch.setattr(pivot, "_tags_into", spied)
    return taken


@pytest.mark.parametrize(
    ("text", "in_order"),
    [
        pytest.param(IN_ORDER, True, id="one shard: already in order"),
        pytest.param(
            # Before the series' other points: its run moves ahead of theirs.
            IN_ORDER + f"air,id=a,site=north\\ gate pm=2 {T0 - 1}\n",
            True,
            id="a WAL point before",
        ),
        pytest.param(
            # Two shards, the later one listed first.
            IN_ORDER.replace(f" {T0}\n", f" {T0 + 3600 * 10**9}\n"),
            True,
            id="shards out of order",
        ),
        pytest.param(
            "".join(reversed(IN_ORDER.splitlines(keepends=True))), True, id="series reversed"
        ),
        pytest.param(
            # Between two of the series' points: no moving of runs gives the order.
            IN_ORDER + f"air,id=a,site=north\\ gate pm=2 {T0 + 1}\n",
            False,
            id="a WAL point between",
        ),
    ],
)
def test_a_pivoted_table_in_order_is_written_without_a_sort_and_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, in_order: bool
) -> None:
    """Points in the file's order (series, then time), or put in it by moving whole runs of a
    series' points, are copied as they are, with their tags from the splitter: the same rows,
    in the same order, as the join and sort."""
    taken = spy_tags_into(monkeypatch)
    (tmp_path / "a").mkdir()
    fast = run(tmp_path / "a", text)
    monkeypatch.setattr(pivot, "_tags_into", lambda *args: False)
    (tmp_path / "b").mkdir()
    sorted_way = run(tmp_path / "b", text)
    assert (fast.pivoted, sorted_way.pivoted, taken) == (True, True, [in_order])
    assert [table(f) for f in fast.files] == [table(f) for f in sorted_way.files]
    assert [schema(f) for f in fast.files] == [schema(f) for f in sorted_way.files]
    rows = table(fast.files[0])
    assert list(dict.fromkeys((r["id"], r["site"]) for r in rows)) == [
        ("a", "north gate"),
        ("b", None),
        ("c", "ท่าเรือ"),
    ]
    assert rows == sorted(rows, key=lambda r: (r["id"], r["time"]))


@pytest.mark.parametrize("over", [0, 1])
def test_tag_columns_past_their_budget_are_left_to_the_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, over: int
) -> None:
    # 12 points, an index of 4 bytes per point and tag, and each series' values once.
    needed = 12 * 4 * 2 + sum(len(v.encode()) for v in ("a", "north gate", "b", "c", "ท่าเรือ"))
    monkeypatch.setattr(pivot, "TAGS_BUDGET", needed - over)
    taken = spy_tags_into(monkeypatch)
    (tmp_path / "a").mkdir()
    result = run(tmp_path / "a", IN_ORDER)
    monkeypatch.undo()
    (tmp_path / "b").mkdir()
    assert taken == [not over]
    assert table(result.files[0]) == table(run(tmp_path / "b", IN_ORDER).files[0])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"m a=1 {T0}\nm a=2,b=3 {T0 + 1}\n", id="a multi-field line"),
        pytest.param(f"m a=1 {T0}\nm a=1x {T0 + 1}\n", id="a bad value"),
        pytest.param(
            f"# CONTEXT-DATABASE:x\nm a=1 {T0}\n# CONTEXT-DATABASE:x\nm a=2 {T0 + 1}\n",
            id="a late header",
        ),
        pytest.param(f'm a=1 {T0}\nm a="two\nlines" {T0 + 1}\n', id="an exact-path line"),
        pytest.param(f"m a=1 {T0}\n m a=2 {T0 + 1}\n", id="an odd series key"),
        pytest.param(f"m,x=1,y=2 a=1 {T0}\nm,y=2,x=1 a=2 {T0}\n", id="one series, two keys"),
        pytest.param(f"{'m' * 300} a=1 {T0}\n", id="a name no directory can have"),
    ],
)
def test_what_the_pivot_cannot_take_goes_the_general_way(tmp_path: Path, text: str) -> None:
    """Each reason to give up: the file is converted again, the general way, correctly."""
    points = parse(text.replace(f"m a=1x {T0 + 1}\n", ""))  # the bad line is rejected
    expected, types = expected_rows(points)
    result = run(tmp_path, text)
    assert not result.pivoted
    if "m" * 300 in text:
        assert (result.points, result.rejected) == (0, 1)  # as the general way rejects it
        return
    assert result.points == len(expected)
    assert read_output(result, tmp_path / "out", types) == expected


def test_the_pivot_takes_control_characters_and_a_bom(tmp_path: Path) -> None:
    """Any UTF-8 text reaches DuckDB as it is: such lines are pivoted, with the same rows as the
    general way and parse()."""
    text = (
        f"\ufeffm,t=a\rb a=1 {T0}\n"
        f'm,t=a\rb s="x\ry\x01z\x02\x00 \\"q\\"" {T0}\n'
        f"m\x02U,t=\x01 a\x02=2i {T0 + 1}\n"
    )
    pivots_like_the_general_way(tmp_path, text)


def test_points_past_the_memory_budget_go_the_general_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose points would not fit the pivot's budget still converts, the general way."""
    text = "".join(f"m,s={i % 3} v={i} {T0 + i}\n" for i in range(5000))
    for name in "ab":
        (tmp_path / name).mkdir()
    assert run(tmp_path / "a", text).pivoted
    monkeypatch.setattr(pivot, "PIVOT_BUDGET", 10_000)
    result = run(tmp_path / "b", text)
    assert (result.pivoted, result.points) == (False, 5000)
    assert [r["v"] for r in table(result.files[0])][:3] == [0.0, 3.0, 6.0]


# --------------------------------------------------------------------------
# influx_inspect exports: headers, merging, later wins

EXPORT_HEAD = """\
# INFLUXDB EXPORT: 1677-09-21T00:12:43Z - 2262-04-11T23:47:16Z
# DDL
CREATE DATABASE db1 WITH NAME autogen
CREATE DATABASE db2 WITH NAME autogen
# DML
"""


def test_headers_route_lines_to_databases_and_retention_policies(tmp_path: Path) -> None:
    """Context headers repeat per database and policy; each line lands under the last ones."""
    text = EXPORT_HEAD + "".join(
        f"# CONTEXT-DATABASE:{db}\n# CONTEXT-RETENTION-POLICY:{rp}\n# writing {part} data\n"
        f"m,s=a v={index} {T0}\n"
        for index, (db, rp, part) in enumerate(
            [
                ("db1", "autogen", "tsm"),
                ("db1", "week", "tsm"),
                ("db2", "autogen", "tsm"),
                ("db2", "week", "wal"),
            ]
        )
    )
    result = run(tmp_path, text, layout="database")
    assert (result.lines, result.points, result.rejected) == (4, 4, 0)
    out = tmp_path / "out"
    assert result.measurements == {
        ("db1", "autogen", "m"): 1,
        ("db1", "week", "m"): 1,
        ("db2", "autogen", "m"): 1,
        ("db2", "week", "m"): 1,
    }
    assert result.files == [
        out / db / rp / "m" / "part-00000.parquet"
        for db in ("db1", "db2")
        for rp in ("autogen", "week")
    ]
    values = {(f.parts[-4], f.parts[-3]): table(f)[0]["v"] for f in result.files}
    assert values == {
        ("db1", "autogen"): 0.0,
        ("db1", "week"): 1.0,
        ("db2", "autogen"): 2.0,
        ("db2", "week"): 3.0,
    }
    assert rejected_lines(tmp_path) == []


def test_comments_headers_ddl_and_blank_lines_are_skipped_not_rejected(tmp_path: Path) -> None:
    """Only data lines count; the rest is neither converted nor rejected."""
    result = run(tmp_path, EXPORT_HEAD + "\n   \n# CONTEXT-DATABASE:db1\n# writing wal data\n")
    assert result == ConvertResult(0, 0, 0, [], {}, pivoted=True)
    assert not (tmp_path / "out" / "_rejected").exists()


def test_one_field_per_line_merges_into_points(tmp_path: Path) -> None:
    """influx_inspect order (series, field, time) comes back as one row per point."""
    lines = [
        f"pm,id=db{s},model=v2\\ x {field}={value} {T0 + t * 60 * 10**9}"
        for s in (11, 12)
        for field, value in (("ok", "true"), ("pm10", "66.5"), ("pm25", "41i"))
        for t in (0, 1)
    ]
    result = run(tmp_path, "\n".join(lines) + "\n")
    assert (result.lines, result.points) == (12, 4)
    (path,) = result.files
    assert path == tmp_path / "out" / "pm" / "part-00000.parquet"
    assert schema(path) == [
        ("time", "TIMESTAMPTZ_NS"),
        ("id", "VARCHAR"),
        ("model", "VARCHAR"),
        ("ok", "BOOLEAN"),
        ("pm10", "DOUBLE"),
        ("pm25", "BIGINT"),
    ]
    assert table(path) == [
        {
            "time": T0 + t * 60 * 10**9,
            "id": f"db{s}",
            "model": "v2 x",
            "ok": True,
            "pm10": 66.5,
            "pm25": 41,
        }
        for s in (11, 12)
        for t in (0, 1)
    ]


def test_a_later_line_wins(tmp_path: Path) -> None:
    """A point overwritten in the WAL (exported after TSM data) keeps the WAL value."""
    text = (
        f"# writing tsm data\nm,s=a v=1 {T0}\nm,s=a w=10i {T0}\nm,s=a v=2 {T0 + 1}\n"
        f"# writing wal data\nm,s=a v=99 {T0}\nm,s=a v=3,v=4 {T0 + 1}\n"
    )
    result = run(tmp_path, text)
    assert (result.lines, result.points) == (5, 2)
    assert table(result.files[0]) == [
        {"time": T0, "s": "a", "v": 99.0, "w": 10},
        {"time": T0 + 1, "s": "a", "v": 4.0, "w": None},
    ]


def test_fields_first_seen_late_are_kept(tmp_path: Path) -> None:
    """A field that appears only near the end still gets its column."""
    lines = [f"m v={i} {T0 + i}" for i in range(50)] + [f'm late="yes" {T0 + 49}']
    result = run(tmp_path, "\n".join(lines))
    rows = table(result.files[0])
    assert [r["late"] for r in rows] == [None] * 49 + ["yes"]


def test_tag_named_like_a_field_gets_the_tag_suffix(tmp_path: Path) -> None:
    """Column names stay unique, also ignoring case; `time` is taken by the time column."""
    text = f'm,v=x,time=t,Host=h v=1,host="a",time=2i,X=3,x=4 {T0}\n'
    result = run(tmp_path, text)
    (path,) = result.files
    assert schema(path) == [
        ("time", "TIMESTAMPTZ_NS"),
        ("Host_tag", "VARCHAR"),
        ("time_tag", "VARCHAR"),
        ("v_tag", "VARCHAR"),
        ("X", "DOUBLE"),
        ("host", "VARCHAR"),
        ("time_field", "BIGINT"),
        ("v", "DOUBLE"),
        ("x_2", "DOUBLE"),
    ]
    assert table(path) == [
        {
            "time": T0,
            "Host_tag": "h",
            "time_tag": "t",
            "v_tag": "x",
            "X": 3.0,
            "host": "a",
            "time_field": 2,
            "v": 1.0,
            "x_2": 4.0,
        }
    ]


@pytest.mark.parametrize("pivot", [True, False])
def test_fields_named_like_the_converters_own_columns(tmp_path: Path, pivot: bool) -> None:
    """Fields called like the columns the converter works with (sid, t, kid, ts, o, v, c0)
    are fields like any other."""
    names = ("sid", "t", "kid", "ts", "o", "v", "fk", "c0", "t0", "f0")
    text = "".join(f"m,t=x {name}={index}i {T0}\n" for index, name in enumerate(names))
    result = run(tmp_path, text, pivot=pivot)
    assert result.pivoted is pivot
    (row,) = table(result.files[0])
    assert row == {"time": T0, "t_tag": "x", **{name: i for i, name in enumerate(names)}}


def test_a_field_with_several_types_gets_one_column(tmp_path: Path) -> None:
    """One column per field, of resolve(its types): a string among them makes it VARCHAR, and
    the latest line gives the point's value, whatever its type."""
    text = "\n".join(
        [
            f"m f=1.5 {T0}",
            f"m f=2i {T0 + 1}",
            f'm f="three" {T0 + 2}',
            f"m f=4.5 {T0 + 3}",
            f"m f=5i {T0 + 3}",  # the same point: the integer wins
            f"m g=7u {T0}",
            f"m h=7u {T0}",
            f"m h=-8i {T0 + 1}",  # numbers only: DOUBLE
        ]
    )
    for pivoted in (True, False):
        out = tmp_path / str(pivoted)
        out.mkdir()
        result = run(out, text, pivot=pivoted)
        assert result.pivoted is pivoted
        (path,) = result.files
        assert schema(path) == [
            ("time", "TIMESTAMPTZ_NS"),
            ("f", "VARCHAR"),
            ("g", "UBIGINT"),
            ("h", "DOUBLE"),
        ]
        assert [(r["f"], r["g"], r["h"]) for r in table(path)] == [
            ("1.5", 7, 7.0),
            ("2", None, -8.0),
            ("three", None, None),
            ("5", None, None),
        ]
        assert (result.widened, result.rounded) == ({}, {})


def test_rows_are_sorted_by_tags_then_time(tmp_path: Path) -> None:
    """Sorted by tag values (a missing tag last), then by time."""
    text = "\n".join(
        [
            f"m,a=2 v=1 {T0 + 5}",
            f"m,a=1,b=z v=1 {T0 + 9}",
            f"m v=1 {T0}",
            f"m,a=1 v=1 {T0 + 7}",
            f"m,a=1 v=1 {T0 + 3}",
            f"m,a=1,b=a v=1 {T0}",
        ]
    )
    rows = table(run(tmp_path, text).files[0])
    assert [(r["a"], r["b"], r["time"] - T0) for r in rows] == [
        ("1", "a", 0),
        ("1", "z", 9),
        ("1", None, 3),
        ("1", None, 7),
        ("2", None, 5),
        (None, None, 0),
    ]


# --------------------------------------------------------------------------
# Paths and files


@pytest.mark.parametrize(
    "name",
    [
        ".",
        "..",
        ".hidden",
        "a/b",
        "a%2Fb",
        "x=1",
        "tab\tnew\nline\x00nul\x7f",
        "back\\slash",
        "ไทย 🚀",
        "cpu,host=a b",
        "_rejected",
        "%",
    ],
)
def test_path_segment_round_trips_and_is_safe(name: str) -> None:
    """unquote() gives the name back; the segment is one harmless, non-hidden path part."""
    segment = path_segment(name)
    assert urllib.parse.unquote(segment) == name
    assert segment not in {".", ".."}
    assert not segment.startswith(".")
    assert not re.search(r"[/\\=\x00-\x1f\x7f]", segment)
    assert Path(segment).name == segment


def test_path_segment_refuses_what_no_directory_can_be() -> None:
    """An empty name, or one longer than 255 bytes encoded, raises a clear error."""
    with pytest.raises(ValueError, match="empty"):
        path_segment("")
    with pytest.raises(ValueError, match="255 bytes"):
        path_segment("ไ" * 86)
    assert path_segment("a" * 255) == "a" * 255


def test_unsafe_measurement_and_database_names_are_encoded(tmp_path: Path) -> None:
    """Names reach the directories percent-encoded, and unquote() gives them back."""
    text = (
        "# CONTEXT-DATABASE:../etc\n# CONTEXT-RETENTION-POLICY:a/b\n"
        f"..,t=1 v=1 {T0}\n.hidden v=2 {T0}\n"
    )
    result = run(tmp_path, text, layout="database")
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in result.files) == [
        "%2E.%2Fetc/a%2Fb/%2E./part-00000.parquet",
        "%2E.%2Fetc/a%2Fb/%2Ehidden/part-00000.parquet",
    ]
    assert sorted(result.measurements) == [("../etc", "a/b", ".."), ("../etc", "a/b", ".hidden")]


def test_file_names_are_deterministic_and_a_redo_replaces_its_files(tmp_path: Path) -> None:
    """Converting the same input again gives the same names; no copies, no stale files."""
    out = tmp_path / "out"
    two_dbs = f"# CONTEXT-DATABASE:a\nm v=1 {T0}\n# CONTEXT-DATABASE:b\nm v=2 {T0}\n"
    first = run(tmp_path, two_dbs)
    assert [p.name for p in first.files] == ["part-00000-0.parquet", "part-00000-1.parquet"]
    again = run(tmp_path, two_dbs)
    assert again.files == first.files
    assert sorted(p.name for p in (out / "m").iterdir()) == [
        "part-00000-0.parquet",
        "part-00000-1.parquet",
    ]
    single = run(tmp_path, f"m v=3 {T0}\n")
    assert [p.name for p in (out / "m").iterdir()] == ["part-00000.parquet"]
    assert [r["v"] for r in table(single.files[0])] == [3.0]
    other_stem = convert(tmp_path / "in.lp", out, file_stem="part-00001")
    assert sorted(p.name for p in (out / "m").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert other_stem.files == [out / "m" / "part-00001.parquet"]


@pytest.mark.parametrize("pivot_first", [True, False])
def test_staged_files_are_named_so_that_no_parquet_glob_counts_them(
    tmp_path: Path, pivot_first: bool
) -> None:
    """A chunk or an import is converted under ``<output_dir>/.work/`` before it is published;
    DuckDB's and polars' ``**/*.parquet`` walk hidden folders, so a staged file named
    ``.parquet`` would be counted beside the published one. Staged files end in STAGED, a
    redo replaces them (no stale ones), and published_name gives the final name."""
    out = tmp_path / "out"
    source = tmp_path / "in.lp"
    source.write_text(f"# CONTEXT-DATABASE:a\nm v=1 {T0}\n# CONTEXT-DATABASE:b\nm v=2 {T0}\n")
    for _ in range(2):
        result = convert(source, out, file_stem="c1", suffix=STAGED, pivot=pivot_first)
        assert sorted(p.name for p in (out / "m").iterdir()) == [
            "c1-0.parquet-staged",
            "c1-1.parquet-staged",
        ]
    assert not list(out.rglob("*.parquet"))
    assert [published_name(p.name) for p in result.files] == ["c1-0.parquet", "c1-1.parquet"]
    rows = duckdb.execute(f"SELECT sum(v) FROM read_parquet('{out}/m/*.parquet-staged')").fetchone()
    assert rows == (3.0,)


def test_files_appear_only_whole(tmp_path: Path) -> None:
    """Written under hidden temporary names and renamed: nothing hidden or temporary is left,
    and the work directory is gone."""
    run(tmp_path, f"m v=1 {T0}\nbad line\n")
    left = [p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")]
    assert sorted(map(str, left)) == [
        "_rejected",
        "_rejected/part-00000.txt",
        "m",
        "m/part-00000.parquet",
    ]


def test_empty_input_writes_nothing(tmp_path: Path) -> None:
    """No lines: no files, nothing rejected."""
    assert run(tmp_path, "") == ConvertResult(0, 0, 0, [], {}, pivoted=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------
# Inputs: gzip, FIFO, awkward bytes


def test_gzip_input(tmp_path: Path) -> None:
    """A gzip file (recognised by its magic bytes) converts like the plain text."""
    text = "".join(f"m,s=a v={i} {T0 + i}\n" for i in range(1000))
    result = run(tmp_path, gzip.compress(text.encode()), name="export.gz")
    assert (result.lines, result.points) == (1000, 1000)
    assert [r["v"] for r in table(result.files[0])] == [float(i) for i in range(1000)]


@pytest.mark.parametrize("compressed", [False, True])
def test_fifo_input_is_read_once(tmp_path: Path, compressed: bool) -> None:
    """A named pipe (as the exporter gives influx_inspect's output) streams through."""
    fifo = tmp_path / "export.fifo"
    os.mkfifo(fifo)
    text = (
        EXPORT_HEAD
        + "# CONTEXT-DATABASE:db1\n# CONTEXT-RETENTION-POLICY:autogen\n"
        + "".join(f"m,s={i % 7} v={i} {T0 + i}\n" for i in range(20_000))
    )
    data = gzip.compress(text.encode()) if compressed else text.encode()

    def write() -> None:
        with fifo.open("wb") as pipe:
            for start in range(0, len(data), 4096):
                pipe.write(data[start : start + 4096])

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    result = convert(fifo, tmp_path / "out", layout="database", progress=seen.append)
    writer.join()
    assert (result.lines, result.points, result.rejected) == (20_000, 20_000, 0)
    assert seen == sorted(seen)
    assert seen[-1] == text.count("\n")


def convert_from_pipe(tmp_path: Path, text: str) -> ConvertResult:
    """``text`` through an anonymous pipe (as the exporter streams a chunk), pivot only."""
    read_end, write_end = os.pipe()
    source = tmp_path / "export.lp"
    source.symlink_to(f"/proc/self/fd/{read_end}")

    def write() -> None:
        # BrokenPipeError: the converter gave up and stopped reading.
        with contextlib.suppress(BrokenPipeError), os.fdopen(write_end, "wb") as pipe:
            pipe.write(text.encode())

    writer = threading.Thread(target=write)
    writer.start()
    try:
        return convert(source, tmp_path / "out", layout="database", pivot_only=True)
    finally:
        os.close(read_end)
        writer.join()


def test_a_pipe_is_pivoted_as_the_file_would_be(tmp_path: Path) -> None:
    text = (
        EXPORT_HEAD
        + "# CONTEXT-DATABASE:db1\n# CONTEXT-RETENTION-POLICY:autogen\n"
        + "".join(f"m,s={i % 7} {f}={i} {T0 + i}\n" for f in "vw" for i in range(50_000))
    )
    (tmp_path / "pipe").mkdir()
    piped = convert_from_pipe(tmp_path / "pipe", text)
    assert piped.pivoted
    assert (piped.lines, piped.points) == (100_000, 50_000)
    (tmp_path / "file").mkdir()
    from_file = run(tmp_path / "file", text, layout="database")
    assert [table(f) for f in piped.files] == [table(f) for f in from_file.files]


def test_a_pipe_the_pivot_cannot_take_raises_and_writes_nothing(tmp_path: Path) -> None:
    text = (
        EXPORT_HEAD
        + "# CONTEXT-DATABASE:db1\n# CONTEXT-RETENTION-POLICY:autogen\n"
        + "".join(f"m,s={i % 7} v={i} {T0 + i}\n" for i in range(1000))
        + f"m,s=0 v=1,w=2 {T0}\n"  # two fields in a line: the general way's
        + "".join(f"m,s={i % 7} v={i} {T0 + i}\n" for i in range(200_000))
    )
    with pytest.raises(pivot.NoPivotError, match="several fields"):
        convert_from_pipe(tmp_path, text)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_a_missing_source_raises(tmp_path: Path) -> None:
    """An unreadable source is an error, not an empty conversion."""
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "nope.lp", tmp_path / "out")


def test_bytes_duckdb_would_mangle_are_kept_exact(tmp_path: Path) -> None:
    """CR, \\x01, \\x02, NUL and a BOM survive; CRLF ends make lines invalid, as for parse()."""
    good = (
        "\ufeffm,t=a\rb v=1 " + str(T0) + "\n"
        'm s="x\r\ny\x01z\x02\x00" ' + str(T0 + 1) + "\n"
        "m\x02e v=2 " + str(T0) + "\n"
    )
    result = run(tmp_path, good)
    expected, types = expected_rows(parse(good))
    assert read_output(result, tmp_path / "out", types) == expected
    crlf = run(tmp_path, f"m v=1 {T0}\r\nm v=2 {T0 + 1}\r\n")
    assert (crlf.lines, crlf.rejected, crlf.points) == (2, 2, 0)


def test_invalid_utf8_and_overlong_lines_are_rejected(tmp_path: Path) -> None:
    """They cannot be lines of text DuckDB reads; they are rejected with their line number."""
    data = (
        f"m v=1 {T0}\n".encode()
        + b"m v=\xff\xfe 1\n"
        + b'm s="'
        + b"x" * (1 << 20)
        + b'" 1\n'
        + f"m v=2 {T0 + 1}\n".encode()
    )
    result = run(tmp_path, data)
    assert (result.lines, result.points, result.rejected) == (4, 2, 2)
    lines = rejected_lines(tmp_path)
    assert lines[0] == f"{tmp_path / 'in.lp'}:2: invalid UTF-8: m v=\\xff\\xfe 1"
    assert lines[1].startswith(f"{tmp_path / 'in.lp'}:3: line of 1048584 bytes, longer than")


# --------------------------------------------------------------------------
# Awkward lines: exact path, rejects


def test_rejected_lines_are_kept_with_file_line_and_reason(tmp_path: Path) -> None:
    """Bad lines are counted and written as FILE:LINE: reason: line; good lines still convert."""
    text = "\n".join(
        [
            f"m v=1 {T0}",
            "garbage",
            f"m v=1e400 {T0}",
            f"m v=9223372036854775808i {T0}",
            f"m v=1 {T0} extra",
            f'm s="never closed {T0}',
            f"m v=2 {T0 + 1}",
        ]
    )
    result = run(tmp_path, text)
    # The unterminated string runs to the end, taking the last line with it, as in parse().
    assert (result.lines, result.points, result.rejected) == (6, 1, 5)
    source = tmp_path / "in.lp"
    assert rejected_lines(tmp_path) == [
        f"{source}:2: expected a space and fields after the measurement (column 8): garbage",
        f"{source}:3: float '1e400' out of range for field \"v\" (column 5): m v=1e400 {T0}",
        (
            f"{source}:4: integer '9223372036854775808i' out of the signed 64-bit range for "
            f'field "v" (column 5): m v=9223372036854775808i {T0}'
        ),
        f"{source}:5: unexpected text after the timestamp (column 27): m v=1 {T0} extra",
        (
            f'{source}:6: unterminated string value for field "s" (column 5): '
            f'm s="never closed {T0}\\nm v=2 {T0 + 1}'
        ),
    ]


AWKWARD_VALUES = [
    "+1",
    "1_000",
    "\t1",
    "1\t",
    "\x0b1",
    "1\x0c",
    "inf",
    "-Infinity",
    "nan",
    "NaN",
    "0x10",
    "1e",
    "1e+",
    ".",
    "-",
    "--1",
    "-+1",
    "1.5.5",
    "\u0661",
    "1d",
    "0b1",
    "1e400",
    "-1e400",
    "1e-400",
    "5.",
    ".5",
    "-.5",
    "007.5",
    "1E5",
    "1e+5",
    "4.9e-324",
    "9" * 310,
    "9" * 310 + ".5",
    "+1i",
    "1_0i",
    "0x10i",
    "--1i",
    "9223372036854775808i",
    "-9223372036854775809i",
    "00000000000000000000000001i",
    "18446744073709551616u",
    "-1u",
    "+1u",
    "0x1u",
    "000000000000000000000000000042u",
    "tru",
    "TRUe",
    "yes",
    "t\t",
    "1\r",
    "\x011",
]


def accepted_exactly_as_parse_accepts(tmp_path: Path, line: str) -> None:
    """The one line converts to parse()'s point, or is rejected when parse() refuses it."""
    try:
        expected: list[Point] = parse(line + "\n")
    except LineProtocolError:
        expected = []
    result = run(tmp_path, line + "\n")
    assert (result.points, result.rejected) == (len(expected), 1 - len(expected))
    if expected:
        rows, types = expected_rows(expected)
        assert read_output(result, tmp_path / "out", types) == rows


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_values_are_accepted_exactly_when_parse_accepts_them(tmp_path: Path, value: str) -> None:
    """Bulk validation (in C, for a one-field line) agrees with the parser on awkward values."""
    accepted_exactly_as_parse_accepts(tmp_path, f"m v={value} {T0}")


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_values_of_multi_field_lines_are_accepted_exactly_when_parse_accepts_them(
    tmp_path: Path, value: str
) -> None:
    """The same for the fields of a multi-field line, which SQL types and checks."""
    accepted_exactly_as_parse_accepts(tmp_path, f"m v={value},w=1i {T0}")


def test_text_like_the_old_markers_is_ordinary_text(tmp_path: Path) -> None:
    """\\x02U and \\x02L once marked unreadable lines: in a line for the exact parser they are
    text like any other."""
    text = f'm\x02U v=1 0{T0}\nm s="\x02L\n" {T0}\nm\x02L,t=\x02U v=2 {T0}\n'
    result = run(tmp_path, text)
    expected, types = expected_rows(parse(text))
    assert (result.lines, result.rejected) == (3, 0)
    assert read_output(result, tmp_path / "out", types) == expected


def test_an_unreadable_line_inside_a_quoted_string_rejects_its_line(tmp_path: Path) -> None:
    """A line that is not UTF-8 inside a string: the logical line is rejected where it starts,
    the unreadable line shown as \ufffd; the lines after it convert."""
    data = b'm s="a\n\xff\nb" 1\nm v=1 2\n'
    result = run(tmp_path, data)
    assert (result.lines, result.points, result.rejected) == (2, 1, 1)
    reason = "invalid UTF-8 or an overlong line inside a quoted string"
    assert rejected_lines(tmp_path) == [f'{tmp_path / "in.lp"}:1: {reason}: m s="a\\n\ufffd\\nb" 1']


def test_multi_line_strings_take_the_following_lines_as_parse_does(tmp_path: Path) -> None:
    """A quoted string may hold newlines; what looks like a line or a header inside it is
    string content."""
    text = (
        f"# CONTEXT-DATABASE:db1\n"
        f'm s="first\nm v=1 {T0 + 5}\n# CONTEXT-DATABASE:evil\nlast" {T0}\n'
        f"m v=2 {T0}\n"
    )
    result = run(tmp_path, text, default_rp="autogen", layout="database")
    assert (result.lines, result.points, result.rejected) == (2, 1, 0)
    assert list(result.measurements) == [("db1", "autogen", "m")]
    assert table(result.files[0]) == [
        {"time": T0, "s": f"first\nm v=1 {T0 + 5}\n# CONTEXT-DATABASE:evil\nlast", "v": 2.0}
    ]


def test_influx_inspect_skipped_file_message_is_split_off(tmp_path: Path) -> None:
    """influx_inspect 1.6 glues 'skipped missing file: PATH' to the next line: the message is
    rejected, the line after it kept (even a header)."""
    tsm = "/var/lib/influxdb/data/db1/autogen/12/000000004-000000002.tsm"
    text = (
        f"# CONTEXT-DATABASE:db1\n# CONTEXT-RETENTION-POLICY:autogen\nm v=1 {T0}\n"
        f"skipped missing file: {tsm}m v=2 {T0 + 1}\n"
        f"skipped missing file: {tsm}skipped missing file: {tsm}"
        f"# CONTEXT-DATABASE:db2\n# CONTEXT-RETENTION-POLICY:autogen\nm v=3 {T0}\n"
    )
    result = run(tmp_path, text, layout="database")
    assert (result.lines, result.points, result.rejected) == (6, 3, 3)
    assert result.measurements == {("db1", "autogen", "m"): 2, ("db2", "autogen", "m"): 1}
    message = f"influx_inspect message, not line protocol: skipped missing file: {tsm}"
    source = tmp_path / "in.lp"
    assert rejected_lines(tmp_path) == [
        f"{source}:4: {message}",
        f"{source}:5: {message}",
        f"{source}:5: {message}",
    ]


def test_lines_with_escapes_and_whitespace_agree_with_parse(tmp_path: Path) -> None:
    """Lines that need the exact path still give parse()'s points."""
    text = "\n".join(
        [
            f"  m v=1 {T0}",
            f"m  v=2 {T0 + 1}",
            f"m v=3  {T0 + 2}",
            f"m\\ x,t\\=k=a\\,b f\\ g=1,h\\,i=2i {T0}",
            f"m,t=a\\\\b v=4 {T0 + 3}",
            f'm,t=a s="back\\\\slash \\"q\\" \\n",u=1u {T0 + 4}',
            f"#m v=5 {T0}",
            f"m v=6,\tw=7 {T0}",
        ]
    )
    result = run(tmp_path, text)
    points = parse(text)
    expected, types = expected_rows(points)
    assert (result.lines, result.rejected) == (len(points), 0)
    assert read_output(result, tmp_path / "out", types) == expected


def test_a_line_without_timestamp_gets_the_current_time(tmp_path: Path) -> None:
    """As parse() does (truncated to the precision)."""
    before = time.time_ns()
    result = run(tmp_path, "m v=1\nm v=2 -0\n", precision="s")
    after = time.time_ns()
    times = [r["time"] for r in table(result.files[0])]
    assert times[0] == 0
    assert before - before % 10**9 <= times[1] <= after
    assert times[1] % 10**9 == 0


@pytest.mark.parametrize(("precision", "scale"), [("s", 10**9), ("ms", 10**6), ("us", 10**3)])
def test_precision_scales_timestamps(tmp_path: Path, precision: str, scale: int) -> None:
    """Timestamps are read in the precision; out-of-range ones are rejected."""
    text = f"m v=1 {T0 // scale}\nm v=2 {2**63 // scale + 1}\n"
    result = run(tmp_path, text, precision=precision)
    assert (result.points, result.rejected) == (1, 1)
    assert table(result.files[0])[0]["time"] == T0


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    """Precision, layout and file stem are checked before anything is read."""
    source = tmp_path / "in.lp"
    source.write_text(f"m v=1 {T0}\n")
    with pytest.raises(ConvertError, match="precision"):
        convert(source, tmp_path / "out", precision="h")
    with pytest.raises(ConvertError, match="layout"):
        convert(source, tmp_path / "out", layout="flat")  # type: ignore[arg-type]
    for stem in ("../x", ".hidden", "a/b", "", "x" * 201):
        with pytest.raises(ConvertError, match="file_stem"):
            convert(source, tmp_path / "out", file_stem=stem)
    # What path_segment() makes of an input file name is a valid stem.
    stem = path_segment("data=1%")
    assert convert(source, tmp_path / "out", file_stem=stem).files == [
        tmp_path / "out" / "m" / f"{stem}.parquet"
    ]


def test_database_layout_needs_a_database_and_policy(tmp_path: Path) -> None:
    """Lines before any context header need default_database and default_rp."""
    with pytest.raises(ConvertError, match="default_database"):
        run(tmp_path, f"m v=1 {T0}\n", layout="database")
    with pytest.raises(ConvertError, match="default_database"):
        run(tmp_path, f"m v=1 {T0}\n", layout="database", default_database="db")
    result = run(
        tmp_path,
        f"m v=1 {T0}\n# CONTEXT-DATABASE:db2\nm v=2 {T0}\n",
        layout="database",
        default_database="db",
        default_rp="rp",
    )
    assert sorted(result.measurements) == [("db", "rp", "m"), ("db2", "rp", "m")]


def test_a_measurement_too_long_for_a_directory_is_rejected(tmp_path: Path) -> None:
    """Its lines are rejected with the reason; the others convert."""
    long_name = "m" * 300
    result = run(tmp_path, f"{long_name} v=1 {T0}\n{long_name} w=2 {T0}\nok v=1 {T0}\n")
    assert (result.lines, result.points, result.rejected) == (3, 1, 2)
    assert list(result.measurements) == [(None, None, "ok")]
    assert all(
        "measurement name longer than 255 bytes" in line for line in rejected_lines(tmp_path)
    )


# --------------------------------------------------------------------------
# The real thing: influxd, influx_inspect export, convert

DB = "plant"
YEAR = 365 * 86400 * 10**9
# Batches written in this order; a later write of the same point and field wins, as in InfluxDB.
BEFORE_FLUSH = {
    "autogen": [
        (
            f"sensors,id=a\\ 1,site=ไทย temp=21.5,count=3i,ok=true,"
            f'note="say \\"hi\\", a=b,c\\\\d" {T0}'
        ),
        f"sensors,id=a\\ 1,site=ไทย temp=22.25,count=-9223372036854775808i {T0 + 60 * 10**9}",
        f'sensors,id=b\\,2 temp=-0.5,ok=F,note="🚀 two\\nlines" {T0}',
        f"power\\ meter,phase=L1 watts=1234567.0,volts=230i {T0}",
        f"power\\ meter,phase=L1 watts=1e-7 {T0 + 10**9}",
        f"sensors,id=a\\ 1,site=ไทย temp=99.9 {T0 + 120 * 10**9}",  # overwritten in the WAL
        f"drift x=1.5 {T0}",
    ],
    "week": [f"sensors,id=a\\ 1 temp=5,count=9223372036854775807i {T0}"],
}
AFTER_FLUSH = {
    "autogen": [
        f"sensors,id=a\\ 1,site=ไทย temp=23.0 {T0 + 120 * 10**9}",
        f'sensors,id=c ok=TRUE,note="multi\nline \\"string\\"" {T0 + 180 * 10**9}',
        f"drift x=2i {T0 + YEAR}",  # another shard: the field's type may differ there
        f"events,kind=door open=true {T0 + 5}",
    ],
    "week": [f"sensors,id=a\\ 1 temp=6 {T0 + 10**9}"],
}


@pytest.mark.integration
def test_real_influx_inspect_export_converts_exactly(tmp_path: Path) -> None:
    """Every point an influxd holds comes out once, with its exact values and types, from a
    real influx_inspect export (TSM and WAL data, two retention policies)."""
    inspect = require_binary("influx_inspect")
    require_binary("influxd")
    with running_influxd(tmp_path / "influxd") as server:
        server.create_database(DB)
        server.create_retention_policy(DB, "week", "INF")
        for batches in (BEFORE_FLUSH, AFTER_FLUSH):
            for rp, lines in batches.items():
                server.write(DB, lines, rp=rp)
            if batches is BEFORE_FLUSH:
                server.flush_to_tsm(DB)
        assert server.tsm_files(DB)
        assert server.wal_segments(DB)
        export = tmp_path / "export.lp"
        subprocess.run(
            [
                inspect,
                "export",
                "-datadir",
                str(server.data_dir),
                "-waldir",
                str(server.wal_dir),
                "-out",
                str(export),
                "-database",
                DB,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        result = convert(export, tmp_path / "out", layout="database")
        where = [
            (rp, m)
            for rp in ("autogen", "week")
            for m in ("sensors", "power meter", "drift", "events")
        ]
        points = {(DB, rp, m): server.count(DB, m, rp) for rp, m in where}
        values = sum(server.count_values(DB, m, rp) for rp, m in where)
    assert result.rejected == 0
    assert result.measurements == {k: v for k, v in points.items() if v}
    # influx_inspect writes one field value per line, and both versions of the value that was
    # overwritten after the flush (TSM, then WAL); influxd counts it once.
    assert result.lines == values + 1
    for rp in ("autogen", "week"):
        written = "\n".join([*BEFORE_FLUSH[rp], *AFTER_FLUSH[rp]])
        expected, types = expected_rows(parse(written))
        files = [f for f in result.files if f.parts[-3] == rp]
        got = read_output(
            ConvertResult(
                result.lines,
                result.points,
                0,
                files,
                {k: v for k, v in result.measurements.items() if k[1] == rp},
            ),
            tmp_path / "out",
            types,
        )
        assert got == expected
    drift = table(tmp_path / "out" / DB / "autogen" / "drift" / "part-00000.parquet")
    assert [r["x"] for r in drift] == [1.5, 2.0]  # float and integer: one DOUBLE column


def test_long_lines_go_into_duckdb_in_batches_of_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read 500 bytes at a time, a batch at 1 kB of text; for real 4 MiB and 64 MiB, where
    # lines of 1 MiB strings would otherwise pile up 2^19 of them (past 2 GiB of offsets).
    monkeypatch.setattr(read, "CHUNK", 500)
    monkeypatch.setattr(read, "BYTES_PER_INSERT", 1000)
    lines = [f'm,n={i % 3} s="{"x" * 300} {i}" {i}' for i in range(40)]
    result = run(tmp_path, "\n".join(lines) + "\n")
    assert result.points == 40
    rows = table(tmp_path / "out" / "m" / "part-00000.parquet")
    assert sorted((row["time"], row["s"]) for row in rows) == [
        (i, f"{'x' * 300} {i}") for i in range(40)
    ]
