"""headlined.influx.convert with a schema: one column per field, the same columns and types in
every file of a measurement however its data was cut, values of other types converted into
the field's type, and the widened and rounded reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from headlined.influx.convert import ConvertError, ConvertResult, convert
from headlined.influx.schema import MeasurementSchema, MeasurementTypes
from headlined.lineprotocol import parse
from tests.influx.test_convert import FLOAT_TEXTS, export_files, valid_only

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
HOUR = 3600 * 10**9
EXACT = 2**53  # integers beyond this are not all doubles
HEAD = "# CONTEXT-DATABASE:db\n# CONTEXT-RETENTION-POLICY:rp\n"
IDENT = ("db", "rp", "m")

Schema = dict[str, MeasurementSchema]


# --------------------------------------------------------------------------
# Helpers


def types_of(text: str) -> dict[str, MeasurementTypes]:
    """What discovery would say of the measurements in ``text``: tag keys and field types."""
    found: dict[str, MeasurementTypes] = {}
    for point in parse(text):
        types = found.setdefault(point.measurement, MeasurementTypes())
        types.add(MeasurementTypes(set(point.tags), {k: {v} for k, v in point.field_types.items()}))
    return found


def schema_of(*texts: str) -> Schema:
    """The schema of every measurement over all ``texts``, as the exporter gives it."""
    found: dict[str, MeasurementTypes] = {}
    for text in texts:
        for measurement, types in types_of(text).items():
            found.setdefault(measurement, MeasurementTypes()).add(types)
    return {measurement: MeasurementSchema.of(types) for measurement, types in found.items()}


def run(directory: Path, text: str, **options: Any) -> ConvertResult:
    """Convert ``text`` (written to a file in ``directory``) into ``directory``/out."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "in.lp"
    source.write_text(text, encoding="utf-8", newline="")
    return convert(source, directory / "out", **options)


def columns(path: Path) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of one Parquet file."""
    described = duckdb.execute(
        "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning=false)", [str(path)]
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in described]


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The rows of one Parquet file, `time` as epoch nanoseconds, floats by their bits."""
    cursor = duckdb.execute(
        "SELECT * REPLACE (epoch_ns(time) AS time) FROM read_parquet(?, hive_partitioning=false)",
        [str(path)],
    )
    return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in cursor.fetchall()]


def by_measurement(result: ConvertResult) -> dict[str, Path]:
    """The one file of each measurement."""
    return {path.parent.name: path for path in result.files}


def one_field_lines(text: str) -> str:
    """``text`` with each multi-field line cut into one-field lines (the pivot's input): the
    same points, as influx_inspect writes them."""
    out = []
    for line in text.splitlines():
        key, fields, time = line.rsplit(" ", 2)  # no spaces in these fields' values
        out += [f"{key} {item} {time}\n" for item in fields.split(",")]
    return "".join(out)


def cut_by_time(lines: list[str], cuts: list[int]) -> list[str]:
    """The lines (one point each) in pieces by time: before cuts[0], then up to cuts[1]..."""
    pieces: list[list[str]] = [[] for _ in range(len(cuts) + 1)]
    for line in lines:
        (point,) = parse(line + "\n")
        pieces[sum(point.time >= cut for cut in cuts)].append(line)
    return ["".join(f"{line}\n" for line in piece) for piece in pieces]


def same_as_whole(tmp_path: Path, whole: str, pieces: list[str], *, pivot: bool) -> None:
    """Converted whole or in pieces (each with the schema of all of them): the same columns and
    types in every file of a measurement, and the same rows."""
    schema = schema_of(*pieces)
    alone = by_measurement(run(tmp_path / "alone", whole, pivot=pivot))
    given = by_measurement(run(tmp_path / "whole", whole, pivot=pivot, schema=schema))
    assert given.keys() == alone.keys()
    for name, path in given.items():
        # The schema of the whole input is what the whole input resolves to by itself.
        assert (columns(path), rows(path)) == (columns(alone[name]), rows(alone[name]))
    found: dict[str, list[tuple[Any, ...]]] = {}
    for index, piece in enumerate(pieces):
        result = run(tmp_path / f"piece{index}", piece, pivot=pivot, schema=schema)
        assert result.widened == {}
        for name, path in by_measurement(result).items():
            assert columns(path) == columns(given[name]), (index, name)
            found.setdefault(name, []).extend(rows(path))
    assert found.keys() == given.keys()
    for name, path in given.items():
        assert sorted(found[name], key=repr) == sorted(rows(path), key=repr), name


# --------------------------------------------------------------------------
# (a) One schema per measurement, whatever the chunking

PIECES = [
    # `level` float and `state` boolean; `site` tag; `kind` a tag (a field key in a later
    # piece: `kind_tag` everywhere); `note` absent.
    (
        f"sensors,host=a,kind=k,site=x level=1.5,state=true,count=1i {T0}\n"
        f"sensors,host=b,site=x level=-0,state=false {T0 + 1}\n"
        f"other,host=a v=1 {T0}\n"
    ),
    # `level` integer, `state` string; `zone` tag and `note` only here; no `site` tag.
    (
        f'sensors,host=a,zone=n level=3i,state="on",note="x",count=2i {T0 + HOUR}\n'
        f"sensors,host=a,zone=n level={EXACT + 1}i {T0 + HOUR + 1}\n"
    ),
    # `level` float again but `state` boolean, `kind` a field; `other` with another type.
    (
        f'sensors,host=c level=2,state=T,kind="field" {T0 + 2 * HOUR}\n'
        f"sensors,host=c level=7i {T0 + 2 * HOUR}\n"  # the same point: the integer wins
        f"other,host=b v=2i {T0 + 2 * HOUR}\n"
    ),
]


@pytest.mark.parametrize("pivot", [True, False])
def test_pieces_give_the_schema_and_rows_of_the_whole(tmp_path: Path, pivot: bool) -> None:
    """Cut by time into three pieces, each converted with the schema of all three: every file
    of a measurement has the whole input's columns and types, and together the same rows."""
    pieces = [one_field_lines(piece) if pivot else piece for piece in PIECES]
    same_as_whole(tmp_path, "".join(pieces), pieces, pivot=pivot)
    schema = schema_of(*pieces)
    first = run(tmp_path / "first", pieces[0], pivot=pivot, schema=schema)
    last = run(tmp_path / "last", pieces[2], pivot=pivot, schema=schema)
    assert (first.pivoted, last.pivoted) == (pivot, pivot)
    sensors = by_measurement(first)["sensors"]
    assert columns(sensors) == [
        ("time", "TIMESTAMPTZ_NS"),
        ("host", "VARCHAR"),
        ("kind_tag", "VARCHAR"),
        ("site", "VARCHAR"),
        ("zone", "VARCHAR"),  # absent here: NULLs
        ("count", "BIGINT"),
        ("kind", "VARCHAR"),  # absent here: NULLs
        ("level", "DOUBLE"),  # float here, integer in another piece
        ("note", "VARCHAR"),  # absent here: NULLs
        ("state", "VARCHAR"),  # boolean here, string in another piece
    ]
    assert rows(sensors) == [
        (T0, "a", "k", "x", None, 1, None, (1.5).hex(), None, "true"),
        (T0 + 1, "b", None, "x", None, None, None, (-0.0).hex(), None, "false"),
    ]
    later = by_measurement(last)
    assert rows(later["sensors"]) == [
        (T0 + 2 * HOUR, "c", None, None, None, None, "field", (7.0).hex(), None, "true")
    ]
    assert rows(later["other"]) == [(T0 + 2 * HOUR, "b", (2.0).hex())]


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=export_files(), cuts=st.lists(st.integers(-2, 6), min_size=1, max_size=2))
def test_any_export_cut_by_time_keeps_one_schema(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], cuts: list[int]
) -> None:
    """Export-like input (a field's type may change from point to point) cut at any times:
    each piece with the schema of all of them gives the whole input's columns, types and rows,
    the pivot and the general way alike."""
    data = valid_only(lines[2:])  # without the context headers: each piece gets them
    assume(data)
    times = sorted({parse(line + "\n")[0].time for line in data})
    at = sorted({times[cut % len(times)] for cut in cuts})
    pieces = [HEAD + piece for piece in cut_by_time(data, at)]
    whole = HEAD + "".join(f"{line}\n" for line in data)
    for pivot in (True, False):
        same_as_whole(tmp_path_factory.mktemp("cut"), whole, pieces, pivot=pivot)


# --------------------------------------------------------------------------
# (b) Values of another type, converted into the field's type

# (value text, its column type, the value written)
CONVERSIONS: list[tuple[str, str, float | str]] = [
    ("-9223372036854775808i", "float", -9.223372036854775808e18),
    (f"{EXACT + 1}i", "float", float(EXACT)),  # the nearest double: a digit lost
    ("007i", "float", 7.0),
    ("-0i", "float", 0.0),
    ("18446744073709551615u", "float", 1.8446744073709552e19),
    ("00042u", "float", 42.0),
    ("-9223372036854775808i", "string", "-9223372036854775808"),
    ("007i", "string", "7"),
    ("-0i", "string", "0"),
    ("18446744073709551615u", "string", "18446744073709551615"),
    ("00042u", "string", "42"),
    ("t", "string", "true"),
    ("FALSE", "string", "false"),
    ("True", "string", "true"),
    ("f", "string", "false"),
    # Floats as DuckDB's CAST(DOUBLE AS VARCHAR): the shortest text of the same double.
    ("1.5", "string", "1.5"),
    ("-0", "string", "-0.0"),
    ("100", "string", "100.0"),
    ("007.50", "string", "7.5"),
    ("0.1", "string", "0.1"),
    ("1e16", "string", "1e+16"),
    ("1e300", "string", "1e+300"),
    ("4.9e-324", "string", "5e-324"),
    ("123456789012345678", "string", "1.2345678901234568e+17"),
    ("1.7976931348623157e308", "string", "1.7976931348623157e+308"),
]


def written(result: ConvertResult) -> dict[int, dict[str, Any]]:
    """time -> the non-NULL fields of that row, of the one file written."""
    (path,) = result.files
    names = [name for name, _ in columns(path)]
    cursor = duckdb.execute(
        "SELECT * REPLACE (epoch_ns(time) AS time) FROM read_parquet(?)", [str(path)]
    )
    return {
        row[0]: {name: v for name, v in zip(names[1:], row[1:], strict=True) if v is not None}
        for row in cursor.fetchall()
    }


@pytest.mark.parametrize("pivot", [True, False])
@pytest.mark.parametrize("mixed", [False, True], ids=["schema", "types in one file"])
def test_values_of_another_type_are_converted(tmp_path: Path, pivot: bool, mixed: bool) -> None:
    """Integer and unsigned into DOUBLE; integer, unsigned, boolean and float into VARCHAR
    (digits, true/false, DuckDB's text of the double): so when the schema says so, and when
    the field has several types in this one file."""
    if mixed:
        # One field per column type, with a value of that type among the others.
        names = {"float": "n", "string": "s"}
        lines = [f"m n=0.5 {T0 - 1}", f'm s="text" {T0 - 1}']
        schema: Schema = {}
    else:
        # A field per conversion, typed by the schema alone.
        names = {}
        lines = []
        schema = {
            "m": MeasurementSchema((), {f"f{i}": to for i, (_, to, _) in enumerate(CONVERSIONS)})
        }
    for index, (text, to, _) in enumerate(CONVERSIONS):
        lines.append(f"m {names.get(to, f'f{index}')}={text} {T0 + index}")
    result = run(tmp_path, "".join(f"{line}\n" for line in lines), pivot=pivot, schema=schema)
    assert (result.pivoted, result.rejected, result.widened) == (pivot, 0, {})
    found = written(result)
    for index, (text, to, value) in enumerate(CONVERSIONS):
        (got,) = found[T0 + index].values()
        assert type(got) is type(value), (text, to, got)
        assert got == value, (text, to, got)
        if to == "string" and text[-1] not in "iu" and value not in ("true", "false"):
            assert float(got) == float(text), text  # reads back as the same double
    if mixed:
        assert found[T0 - 1] == {"n": 0.5, "s": "text"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    floats=st.lists(FLOAT_TEXTS, min_size=1, max_size=20),
    integers=st.lists(st.integers(-(2**63), 2**64 - 1), max_size=20),
    pivot=st.booleans(),
)
def test_any_number_written_as_text_reads_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, floats: list[str], integers: list[int], pivot: bool
) -> None:
    """A float written into a string column reads back as the same double, bit for bit; an
    integer or unsigned as its digits; into a float column, as Python's nearest double."""
    texts = [f"{i}i" if i < 2**63 else f"{i}u" for i in integers]
    values = [text for text in [*floats, *texts] if valid_only([f"m s={text} 1"])]
    assume(values)
    lines = "".join(
        f"m s={text} {T0 + index}\nm n={text} {T0 + index}\n" for index, text in enumerate(values)
    )
    schema = {"m": MeasurementSchema((), {"s": "string", "n": "float"})}
    result = run(tmp_path_factory.mktemp("text"), lines, pivot=pivot, schema=schema)
    assert result.rejected == 0
    found = written(result)
    for index, text in enumerate(values):
        parsed = parse(f"m v={text} 1")[0].fields["v"]
        got = found[T0 + index]
        if text[-1] in "iu":
            assert got["s"] == str(parsed)
        else:
            assert float(got["s"]).hex() == float(parsed).hex(), (text, got["s"])
        assert float(got["n"]).hex() == float(parsed).hex(), (text, got["n"])


# --------------------------------------------------------------------------
# (c) What the schema could not hold, and digits lost


@pytest.mark.parametrize("pivot", [True, False])
def test_values_the_schema_type_cannot_hold_widen_the_column_and_are_reported(
    tmp_path: Path, pivot: bool
) -> None:
    """Data written after the schema was read: the column takes resolve(schema's type and the
    types seen) in this file, and `widened` says so; what fits is not reported."""
    schema = {
        "m": MeasurementSchema(
            ("host", "rack"),
            {"f": "float", "i": "integer", "u": "unsigned", "b": "boolean", "s": "string"},
        ),
        "quiet": MeasurementSchema((), {"v": "float"}),
    }
    text = HEAD + "".join(
        f"{line}\n"
        for line in [
            f"m,host=a f=1.5 {T0}",
            f'm,host=a f="text" {T0 + 1}',  # a string where the schema says float
            f"m,host=a i=2.5 {T0}",  # a float where it says integer
            f"m,host=a u=-1i {T0}",  # an integer where it says unsigned
            f"m,host=a b=true {T0}",
            f"m,host=a s=3i {T0}",  # anything fits a string
            f"m,host=a new=1u {T0}",  # a field it does not know: as the data says
            f"quiet v=1i {T0}",  # an integer fits a float
        ]
    )
    result = run(tmp_path, text, pivot=pivot, schema=schema, layout="database")
    assert result.pivoted is pivot
    assert result.widened == {("db", "rp", "m"): {"f": "string", "i": "float", "u": "float"}}
    assert result.rounded == {}
    files = by_measurement(result)
    assert columns(files["m"]) == [
        ("time", "TIMESTAMPTZ_NS"),
        ("host", "VARCHAR"),
        ("rack", "VARCHAR"),
        ("b", "BOOLEAN"),
        ("f", "VARCHAR"),
        ("i", "DOUBLE"),
        ("new", "UBIGINT"),
        ("s", "VARCHAR"),
        ("u", "DOUBLE"),
    ]
    assert rows(files["m"]) == [
        (T0, "a", None, True, "1.5", (2.5).hex(), 1, "3", (-1.0).hex()),
        (T0 + 1, "a", None, None, "text", None, None, None, None),
    ]
    assert columns(files["quiet"]) == [("time", "TIMESTAMPTZ_NS"), ("v", "DOUBLE")]


@pytest.mark.parametrize("pivot", [True, False])
def test_integers_that_lose_digits_in_a_float_column_are_counted(
    tmp_path: Path, pivot: bool
) -> None:
    """Integer and unsigned values written as doubles that are not exactly the integer (beyond
    2**53) are counted per field: the values written, not those a later line replaced."""
    lines = [
        f"m f={EXACT}i {T0}",  # exact
        f"m f={EXACT + 1}i {T0 + 1}",  # lost
        f"m f={-EXACT - 1}i {T0 + 2}",  # lost
        f"m f={2**60}i {T0 + 3}",  # exact: a power of two
        f"m f=9223372036854775807i {T0 + 4}",  # lost
        f"m f=-9223372036854775808i {T0 + 5}",  # exact
        f"m f=18446744073709551615u {T0 + 6}",  # lost
        f"m f={EXACT + 1}u {T0 + 7}",  # lost
        f"m f=1e300 {T0 + 8}",  # a float: nothing lost
        f"m f={EXACT + 1}i {T0 + 9}",  # replaced by the next line: not written
        f"m f=1i {T0 + 9}",
        f"m f=1i {T0 + 10}",  # replaced by the next line, which is written
        f"m f={EXACT + 3}i {T0 + 10}",  # lost
        f"m g={EXACT + 1}i {T0}",  # no schema for g: integer only, a BIGINT column
        f"m h=1.5 {T0}",  # h: float and integer in this file, a DOUBLE column
        f"m h={-EXACT - 3}i {T0 + 1}",  # lost
        f"m k=2.5 {T0}",  # float and integer, none of them lost: not reported
        f"m k=3i {T0 + 1}",
    ]
    schema = {"m": MeasurementSchema((), {"f": "float"})}
    text = "".join(f"{line}\n" for line in lines)
    result = run(tmp_path, text, pivot=pivot, schema=schema)
    assert result.pivoted is pivot
    ident = (None, None, "m")
    assert result.rounded == {(ident, "f"): 6, (ident, "h"): 1}
    assert result.widened == {}
    found = written(result)
    assert found[T0 + 1]["f"] == float(EXACT)
    assert found[T0 + 9]["f"] == 1.0
    assert found[T0]["g"] == EXACT + 1


def test_a_schema_with_an_unknown_type_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.lp"
    source.write_text(f"m f=1 {T0}\n")
    with pytest.raises(ConvertError, match="field types must be some of"):
        convert(source, tmp_path / "out", schema={"m": MeasurementSchema((), {"f": "double"})})
    assert not (tmp_path / "out" / "m").exists()
