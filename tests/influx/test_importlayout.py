"""The pure part of ``headlined import``: which layout a file has, and the import's columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from headlined.influx.importlayout import (
    ImportInputError,
    Part,
    RawInput,
    ToolsInput,
    classify,
    content_digest,
    file_name,
    plan,
    tag_prefix,
)

TOOLS_META = {"measurement": "air", "tags": "site,x,station", "fields": "pm25"}


def test_a_tag_key_with_a_comma_is_still_found_among_the_columns() -> None:
    columns = ["site,x", "station", "pm25"]
    assert tag_prefix(columns, "site,x,station") == ["site,x", "station"]
    assert tag_prefix(columns, "") == []
    assert tag_prefix(columns, "nope") is None


def test_influx_tools_columns_split_into_tags_and_typed_fields() -> None:
    found = classify(
        Path("air-00000.parquet"),
        [
            ("time", "TIMESTAMP_NS"),
            ("site,x", "VARCHAR"),
            ("station", "VARCHAR"),
            ("pm25", "DOUBLE"),
            ("n", "UBIGINT"),
        ],
        {**TOOLS_META, "retention": "autogen"},
    )
    assert found == ToolsInput(
        Path("air-00000.parquet"),
        "air",
        ("site,x", "station"),
        {"pm25": "float", "n": "unsigned"},
        "autogen",
    )


@pytest.mark.parametrize(
    ("columns", "metadata", "says"),
    [
        ([("a", "INTEGER")], {}, "neither layout"),
        ([("raw_line", "BLOB"), ("ts", "BIGINT")], {}, "'raw_line' is BLOB"),
        ([("raw_line", "VARCHAR"), ("a", "BIGINT"), ("b", "BIGINT")], {}, "several columns"),
        ([("time", "TIMESTAMP_NS"), ("v", "DOUBLE")], {"measurement": "m"}, "lacks 'tags'"),
        ([("time", "BIGINT"), ("v", "DOUBLE")], {**TOOLS_META, "tags": ""}, "not a TIMESTAMP"),
        ([("time", "TIMESTAMP_NS"), ("v", "DATE")], {**TOOLS_META, "tags": ""}, "is DATE"),
        ([("time", "TIMESTAMP_NS"), ("v", "DOUBLE")], TOOLS_META, "not its first columns"),
    ],
)
def test_what_a_file_lacks_is_said(
    columns: list[tuple[str, str]], metadata: dict[str, str], says: str
) -> None:
    with pytest.raises(ImportInputError, match=says) as raised:
        classify(Path("/data/x.parquet"), columns, metadata)
    assert str(raised.value).startswith("/data/x.parquet: ")


def test_the_raw_timestamp_column_is_the_only_candidate_or_the_one_named_so() -> None:
    path = Path("raw.parquet")
    only = classify(path, [("raw_line", "VARCHAR"), ("ns", "BIGINT"), ("note", "VARCHAR")], {})
    assert only == RawInput(path, "ns", "BIGINT")
    assert only.unit_ns == 1
    named = classify(
        path, [("raw_line", "VARCHAR"), ("line_no", "BIGINT"), ("Time", "TIMESTAMP")], {}
    )
    assert named == RawInput(path, "Time", "TIMESTAMP")
    assert named.unit_ns == 1000
    assert named.time_ns_sql() == 'epoch_ns("Time")'


def test_a_field_takes_one_type_over_the_input_and_the_files_in_place() -> None:
    parts = [
        Part("SELECT 1", ("station",), {"count": "integer", "note": "string"}),
        Part("SELECT 2", ("site",), {"count": "float", "ok": "boolean"}),
    ]
    shape = plan(parts, {"count": "DOUBLE", "note": "DOUBLE", "station": "VARCHAR"})
    assert shape.tags == ("site", "station")
    assert shape.fields == {"count": "float", "note": "string", "ok": "boolean"}
    assert shape.widened == {"note": "string"}  # the view reads the exported doubles as text
    select = shape.select(parts[1])
    assert 'NULL::VARCHAR AS "station"' in select
    assert 'CAST(NULL AS VARCHAR) AS "note"' in select
    assert 'CAST("count" AS DOUBLE) AS "count"' in select


def test_the_import_file_name_is_fixed_by_its_inputs_and_never_a_chunks() -> None:
    one = content_digest(["aa", "bb"])
    assert one == content_digest(["aa", "bb"])
    assert one != content_digest(["bb", "aa"])  # the order decides who wins: another import
    assert file_name(one) == f"import-{one}.parquet"  # a chunk's is <start>_<end>.parquet
