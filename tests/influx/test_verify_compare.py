"""The pure part of ``headlined verify``: months and days, tag and field columns, the
per-field comparison and how a difference is classed by its chunk's state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from headlined.influx.verify.compare import (
    DAY_NS,
    Chunk,
    Counts,
    Tally,
    Window,
    compare,
    day_of,
    day_state,
    day_text,
    file_range,
    months,
    series_key,
    span,
    split_columns,
    to_ns,
)

JAN = to_ns(datetime(2024, 1, 1, tzinfo=UTC))
A = (("id", "a"),)
B = (("id", "b"), ("site", "x"))


def at(text: str) -> int:
    return to_ns(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_days_are_utc_days_also_before_1970() -> None:
    assert day_of(at("2024-02-29T23:59:59.999999")) == at("2024-02-29T00:00:00")
    assert day_of(JAN) == JAN
    assert day_of(-1) == -DAY_NS  # 1969-12-31
    assert day_text(-DAY_NS) == "1969-12-31"


def test_months_cut_at_month_starts_and_keep_the_ends() -> None:
    start, end = at("2023-12-15T06:00:00"), at("2024-03-02T00:00:00")
    assert months(start, end) == [
        (start, JAN),
        (JAN, at("2024-02-01T00:00:00")),
        (at("2024-02-01T00:00:00"), at("2024-03-01T00:00:00")),
        (at("2024-03-01T00:00:00"), end),
    ]
    assert months(JAN, JAN) == []


def test_span_is_the_chunks_range_within_the_configured_one() -> None:
    chunks = [
        Chunk("db", "rp", JAN, JAN + 7 * DAY_NS, "done"),
        Chunk("db", "rp", JAN + 14 * DAY_NS, JAN + 21 * DAY_NS, "pending"),
        Chunk("db", "other", 0, 1, "done"),
    ]
    assert span(chunks, "db", "rp") == (JAN, JAN + 21 * DAY_NS)
    assert span(chunks, "db", "rp", JAN + DAY_NS, JAN + 2 * DAY_NS) == (
        JAN + DAY_NS,
        JAN + 2 * DAY_NS,
    )
    assert span(chunks, "db", "rp", JAN + 30 * DAY_NS) is None
    assert span(chunks, "db", "nope") is None


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((), "none"),
        (("done",), "done"),
        (("done", "open"), "open"),
        (("open", "pending"), "pending"),
        (("pending", "running"), "running"),
        (("running", "damaged"), "damaged"),
        (("damaged", "failed"), "failed"),
    ],
)
def test_a_day_takes_the_most_telling_state_of_its_chunks(
    states: tuple[str, ...], expected: str
) -> None:
    # Chunks cut at noon: the day overlaps each of them.
    noon = JAN + DAY_NS // 2
    chunks = [Chunk("db", "rp", noon + i, noon + i + 1, s) for i, s in enumerate(states)]
    chunks.append(Chunk("db", "rp", JAN + DAY_NS, JAN + 2 * DAY_NS, "failed"))  # the next day
    chunks.append(Chunk("db", "x", JAN, JAN + DAY_NS, "failed"))  # another policy
    assert day_state(chunks, "db", "rp", JAN, JAN + DAY_NS) == expected


def test_series_leave_out_empty_tags() -> None:
    assert series_key({"site": "x", "id": "b", "room": ""}) == B
    assert series_key({"id": "a", "site": None}) == A
    assert series_key({}) == ()


def test_columns_are_split_into_fields_and_tags_as_the_converter_names_them() -> None:
    # Tag "x" shares its name with field "x" (column x_tag); field "time" is time_field;
    # "Pm" and "pm" differ only in case (pm_2).
    columns = ["time", "host", "x_tag", "Pm", "pm_2", "time_field", "x", "note_tag"]
    fields, tags = split_columns(columns, ["x", "time", "Pm", "pm"])
    assert fields == {"Pm": "Pm", "pm_2": "pm", "time_field": "time", "x": "x"}
    # A tag really named note_tag (no field "note") keeps its name.
    assert tags == {"host": "host", "x_tag": "x", "note_tag": "note_tag"}


def test_a_field_missing_from_the_files_is_no_column() -> None:
    fields, tags = split_columns(["time", "id", "a"], ["a", "b"])
    assert (fields, tags) == ({"a": "a"}, {"id": "id"})


WINDOW = Window("db", "rp", "m", JAN, JAN + 31 * DAY_NS)


def test_equal_counts_are_no_difference() -> None:
    counts: Counts = {(A, JAN): {"v": 3, "w": 1}, (B, JAN + DAY_NS): {"v": 2}}
    assert compare(WINDOW, counts, dict(counts), []) == []


def test_each_field_is_compared_and_points_are_the_largest_count() -> None:
    ours: Counts = {(A, JAN): {"v": 24, "w": 10}, (B, JAN): {"v": 5}}
    theirs: Counts = {
        (A, JAN): {"v": 24, "w": 12},
        (B, JAN): {"v": 5},
        (B, JAN + DAY_NS): {"v": 7, "s": 2},
    }
    chunks = [Chunk("db", "rp", JAN, JAN + 7 * DAY_NS, "done")]
    found = compare(WINDOW, ours, theirs, chunks)
    assert [(d.tags, day_text(d.day_ns)) for d in found] == [
        (A, "2024-01-01"),
        (B, "2024-01-02"),
    ]
    first, second = found
    assert (first.parquet_points, first.influx_points) == (24, 24)  # one field lost values
    assert dict(first.fields) == {"w": (10, 12)}
    assert (second.parquet_points, second.influx_points) == (0, 7)
    assert dict(second.fields) == {"s": (0, 2), "v": (0, 7)}
    assert {d.kind for d in found} == {"mismatch"}
    assert first.to_json()["fields"] == {"w": {"parquet": 10, "influxdb": 12}}


def test_extra_points_in_parquet_are_differences_too() -> None:
    # InfluxDB dropped them (retention, DELETE) after the export.
    found = compare(WINDOW, {(A, JAN): {"v": 3}}, {}, [])
    assert [(d.parquet_points, d.influx_points, d.chunk_state) for d in found] == [(3, 0, "none")]
    assert found[0].kind == "mismatch"


@pytest.mark.parametrize(
    ("state", "kind", "fails"),
    [
        ("done", "mismatch", True),
        ("failed", "broken", True),
        ("damaged", "broken", True),
        ("open", "unsettled", False),
        ("pending", "unsettled", False),
        ("running", "unsettled", False),
    ],
)
def test_a_difference_is_classed_by_its_chunk(state: str, kind: str, fails: bool) -> None:
    chunks = [Chunk("db", "rp", JAN, JAN + DAY_NS, state)]
    found = compare(WINDOW, {}, {(A, JAN): {"v": 1}}, chunks)
    assert [d.kind for d in found] == [kind]
    tally = Tally()
    tally.add(1, found)
    assert tally.failed is fails
    assert ("no mismatch" in tally.summary()) is (kind != "mismatch")


def test_the_day_at_a_window_edge_is_judged_within_the_window() -> None:
    # The window starts at noon: only the afternoon's chunk decides.
    noon = JAN + DAY_NS // 2
    window = Window("db", "rp", "m", noon, JAN + DAY_NS)
    chunks = [
        Chunk("db", "rp", JAN, noon, "failed"),
        Chunk("db", "rp", noon, JAN + DAY_NS, "done"),
    ]
    found = compare(window, {}, {(A, JAN): {"v": 1}}, chunks)
    assert [d.chunk_state for d in found] == ["done"]


def test_a_chunk_file_name_says_its_time_and_other_names_say_nothing() -> None:
    assert file_range("20240101T000000Z_20240108T120000Z.parquet") == (
        JAN,
        at("2024-01-08T12:00:00"),
    )
    assert file_range("part-00000.parquet") is None
    assert file_range("20240101T000000Z_2024.parquet") is None
