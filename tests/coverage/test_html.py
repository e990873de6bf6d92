"""The ``--html`` report of ``headlined coverage``: what it draws, and that Chromium shows it.

The unit tests read the page's markup (the colour of each rectangle comes from the page's own
CSS); the Chromium test opens the page headless, reads the screenshot's pixels and Chromium's
net log.
"""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from headlined.coverage import heatmap, html, timebins
from headlined.coverage.report import name

GENERATED = datetime(2025, 1, 2, 8, 30, tzinfo=UTC)
START = datetime(2023, 1, 1, tzinfo=UTC)
END = datetime(2025, 1, 1, tzinfo=UTC)
HOLE = (datetime(2023, 10, 5, tzinfo=UTC), datetime(2023, 11, 11, tzinfo=UTC))  # 37 days
HALF_WAY = datetime(2024, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def series(
    tags: Mapping[str, str],
    *,
    missing: Sequence[tuple[datetime, datetime, str]] = (),
    first: datetime = START,
    last: datetime = END - timedelta(hours=1),
    ended: bool = False,
    database: str = "telegraf",
    measurement: str = "cpu",
) -> dict[str, Any]:
    """An hourly series as ``headlined coverage --json`` prints it."""
    span = (last - first).total_seconds() + 3600
    lost = sum((end - start).total_seconds() for start, end, _ in missing)
    return {
        "kind": "series",
        "database": database,
        "retention_policy": "autogen",
        "measurement": measurement,
        "tags": dict(tags),
        "source": None,
        "first": iso(first),
        "last": iso(last),
        "points": int((span - lost) // 3600),
        "cadence_s": 3600.0,
        "coverage": (span - lost) / span,
        "ended": ended,
        "missing": [{"start": iso(s), "end": iso(e), "cause": c} for s, e, c in missing],
    }


def source(name_: str, missing: list[dict[str, Any]]) -> dict[str, Any]:
    """A polled source as ``headlined coverage --json`` prints it."""
    return {
        "kind": "source",
        "source": name_,
        "database": None,
        "retention_policy": None,
        "measurement": None,
        "tags": {},
        "first": iso(datetime(2024, 6, 1, tzinfo=UTC)),
        "last": iso(END - timedelta(minutes=1)),
        "points": 300_000,
        "cadence_s": 60.0,
        "coverage": 0.995,
        "ended": False,
        "missing": missing,
    }


def two_years() -> list[dict[str, Any]]:
    """12 hourly series over 2 years, one with a 37-day hole in Oct-Nov, one ended half-way;
    and a source with a recorded gap and a stretch the daemon was not polling."""
    entries = [series({"host": f"h{i:02d}"}) for i in range(12)]
    entries[3] = series({"host": "h03"}, missing=[(*HOLE, "not in InfluxDB")])
    entries[5] = series({"host": "h05"}, last=HALF_WAY, ended=True)
    feed = source(
        "feed",
        [
            {
                "start": iso(datetime(2024, 7, 1, tzinfo=UTC)),
                "end": iso(datetime(2024, 7, 8, tzinfo=UTC)),
                "cause": "gap",
                "estimate": 1200,
            },
            {
                "start": iso(datetime(2024, 9, 2, tzinfo=UTC)),
                "end": iso(datetime(2024, 9, 30, tzinfo=UTC)),
                "cause": "not polling",
            },
        ],
    )
    return [*entries, feed]


def render(entries: list[dict[str, Any]], **kwargs: Any) -> str:
    return html.render(entries, title="headlined coverage: test", generated_at=GENERATED, **kwargs)


class _Page(HTMLParser):
    """The tags and the text of a page, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_RECT = re.compile(r'<rect class="(\w+)"[^>]*><title>([^<]*)</title>')


def drawn(page: str) -> list[tuple[str, str]]:
    """Every heatmap rectangle as (fill colour, first line of its hover title)."""
    fills = dict(re.findall(r"\.(\w+)\{fill:(#[0-9a-f]{6})\}", page))
    return [
        (fills[css], htmllib.unescape(title).split("\n")[0].removesuffix(": no data expected"))
        for css, title in _RECT.findall(page)
    ]


def test_every_string_is_escaped() -> None:
    weird = {
        'we"ird<tag': "a&b</text><script>alert(1)</script>",
        "ไทย": "ค่า 'quoted' \x01 \ud800",
    }
    entries = [
        series(weird, missing=[(*HOLE, "failed")], database='db"&<', measurement="m<1>"),
        source("<b>feed</b>", []),
    ]
    page = render(entries)
    parsed = _Page(page)
    page.encode("utf-8")  # a lone surrogate in a tag must not make the page unwritable
    assert "script" not in parsed.tags
    text = "".join(parsed.text)
    shown = name(entries[0]).replace("\x01", "\\x01").replace("\ud800", "\\ud800")
    assert shown in text  # the full name, in the list of missing intervals
    assert "source <b>feed</b>" in text
    assert "<b>feed" not in page
    assert "ไทย" in page  # UTF-8 as it is, not mangled
    assert "\x01" not in page


@pytest.mark.parametrize(
    ("span", "unit", "step"),
    [
        (timedelta(days=2), "hour", 1),
        (timedelta(days=30), "hour", 6),
        (timedelta(days=200), "day", 1),
        (timedelta(days=731), "week", 1),
        (timedelta(days=3650), "month", 1),
        (timedelta(days=365 * 50), "month", 3),
        (timedelta(days=365 * 150), "year", 1),
        (timedelta(days=365 * 300), "year", 2),
    ],
)
def test_bins_follow_the_calendar_and_stay_few(span: timedelta, unit: str, step: int) -> None:
    start = datetime(1990, 3, 17, 13, 45, tzinfo=UTC)
    bins = timebins.choose(timebins.to_us(start), timebins.to_us(start + span))
    assert (bins.unit, bins.step) == (unit, step)
    assert bins.count <= 240
    edges = [timebins.from_us(e) for e in bins.edges]
    assert edges[0] <= start < edges[1]
    assert edges[-2] < start + span <= edges[-1]
    assert all(e.minute == 0 and e.second == 0 for e in edges)
    if unit == "week":
        assert {e.weekday() for e in edges} == {0}  # Mondays
    if unit in ("month", "year"):
        assert {e.day for e in edges} == {1}


def test_bins_of_a_single_point() -> None:
    moment = timebins.to_us(START)
    bins = timebins.choose(moment, moment)
    assert bins.count >= 1
    assert bins.edges[0] <= moment < bins.edges[-1]


def test_times_of_json_parse_to_microseconds() -> None:
    # --json prints nanoseconds when they are not zero; the report works in microseconds.
    assert timebins.parse("2024-01-01T00:00:00.123456789Z") == 1_704_067_200_123_456
    assert timebins.parse("1970-01-01T00:00:01+00:00") == 1_000_000
    assert timebins.from_us(timebins.to_us(START)) == START


def test_not_polling_is_drawn_but_not_counted_as_lost() -> None:
    page = render([two_years()[-1]])
    light, heavy = html.CAUSE_COLOURS["not polling"]
    assert {light, heavy} & {colour for colour, _ in drawn(page)}
    # 7 days of gap over the source's 7 months, whatever the 4 weeks without polling.
    assert "<b>7d</b><span>missing time</span>" in page


def test_axis_reads_in_years_and_months() -> None:
    bins = timebins.choose(timebins.to_us(START), timebins.to_us(END))
    ticks = timebins.ticks(bins, html.PLOT_W / bins.count)
    assert [t.label for t in ticks if t.major] == ["2023", "2024"]
    minor = [t.label for t in ticks if not t.major]
    assert minor[:3] == ["Jan", "Feb", "Mar"]
    assert minor.count("Oct") == 2
    days = timebins.choose(timebins.to_us(START), timebins.to_us(START + timedelta(days=120)))
    ticks = timebins.ticks(days, html.PLOT_W / days.count)
    assert [t.label for t in ticks if t.major] == ["Jan 2023", "Feb 2023", "Mar 2023", "Apr 2023"]


def test_cell_states() -> None:
    assert heatmap.state(0, {}) == heatmap.NONE
    assert heatmap.state(100, {}) == heatmap.COMPLETE
    assert heatmap.state(100, {"not in InfluxDB": 60}) == ("not in InfluxDB", True)
    assert heatmap.state(100, {"not in InfluxDB": 10}) == ("not in InfluxDB", False)
    # Failed and damaged win over a longer hole of another cause, and are always dark.
    assert heatmap.state(100, {"not in InfluxDB": 90, "failed": 1}) == ("failed", True)
    assert heatmap.state(100, {"failed": 5, "damaged": 1}) == ("damaged", True)
    assert heatmap.runs([heatmap.COMPLETE] * 3 + [heatmap.NONE] * 2) == [
        (0, 3, heatmap.COMPLETE),
        (3, 5, heatmap.NONE),
    ]


def test_each_cause_has_its_colour() -> None:
    causes = ["not in InfluxDB", "failed", "damaged", "not exported yet", "unknown"]
    entries = [series({"cause": c}, missing=[(*HOLE, c)]) for c in causes]
    entries.append(series({"cause": "none"}))
    entries.append(series({"cause": "ended"}, last=HALF_WAY, ended=True))
    page = render(entries)
    rects = drawn(page)
    for cause, entry in zip(causes, entries[: len(causes)], strict=True):
        colours = {colour for colour, title in rects if title == name(entry)}
        light, heavy = html.CAUSE_COLOURS[cause]
        # A 37-day hole fills whole weekly columns (dark) and touches two partly (light, or
        # dark for failed and damaged, which always show dark).
        assert colours >= {html.COMPLETE_COLOUR, heavy}, cause
        assert colours <= {html.COMPLETE_COLOUR, html.NONE_COLOUR, heavy, light}, cause
        assert cause in page  # in the legend and the list of missing intervals
    other = {colour for colour, title in rects if title == name(entries[-2])}
    assert other == {html.COMPLETE_COLOUR, html.NONE_COLOUR}  # the row's background
    # The colours of the causes differ from each other and from complete and no data.
    every = [html.COMPLETE_COLOUR, html.NONE_COLOUR] + [
        c for pair in html.CAUSE_COLOURS.values() for c in pair
    ]
    assert len(set(every)) == len(every)


def test_an_ended_series_shows_no_data_after_its_end() -> None:
    entries = [series({"host": "a"}), series({"host": "b"}, last=HALF_WAY, ended=True)]
    page = render(entries)
    complete = re.finditer(r'<rect class="k" x="([\d.]+)"[^>]*width="([\d.]+)"', page)
    ends = sorted(float(m[1]) + float(m[2]) for m in complete)
    full_end = html.PLOT_X + html.PLOT_W
    assert ends[-1] == pytest.approx(full_end)
    # The ended one stops half-way through the plot (a week's column of slack).
    assert ends[0] - html.PLOT_X == pytest.approx(html.PLOT_W / 2, abs=2 * html.PLOT_W / 105)


def test_since_until_choose_the_window() -> None:
    entries = two_years()
    page = render(
        entries,
        since=datetime(2024, 1, 1, tzinfo=UTC),
        until=datetime(2024, 7, 1, tzinfo=UTC),
    )
    assert "from 2024-01-01 to 2024-07-01" in page
    assert "one column = one day" in page
    heavy = html.CAUSE_COLOURS["not in InfluxDB"][1]
    assert heavy not in {colour for colour, _ in drawn(page)}  # the 2023 hole is outside


def test_empty_report() -> None:
    page = render([])
    parsed = _Page(page)
    assert "svg" not in parsed.tags
    assert "Nothing exported or polled yet" in "".join(parsed.text)


def test_thousands_of_series_collapse_into_a_page_of_reasonable_size() -> None:
    entries = []
    for m in range(10):
        for i in range(500):
            hole = START + timedelta(days=(7 * i + m) % 700)
            missing = [(hole, hole + timedelta(days=3), "not in InfluxDB")] if i % 5 == 0 else []
            entries.append(series({"host": f"h{i:04d}"}, missing=missing, measurement=f"m{m}"))
    page = render(entries)
    # Each of the 10 measurements draws its 39 worst series and one row for the other 461.
    assert page.count("+ 461 more series (coverage ≥ 99.58%)</text>") == 10
    assert "Collapsed: 4,610 series or sources" in page
    rows = re.findall(r'<g class="r">', page)
    assert len(rows) == 400
    assert len(page.encode()) < 2_500_000
    # Worst first: every series with a hole is drawn before the complete ones.
    first = page.index("m0 <tspan")
    labels = re.findall(r"(h\d{4})</text>", page[first:])[:39]
    assert all(int(label[1:]) % 5 == 0 for label in labels)


# --- Chromium ------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


def chromium() -> str:
    """Debian's chromium: a test that needs it fails under CI, where a skip would hide a
    broken install step, and skips elsewhere (as tests/support/influxdb_server.py does)."""
    path = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    if path is None:
        message = "chromium not found; install Debian's chromium (scripts/test does it as root)"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def screenshot(page: Path, tmp_path: Path) -> tuple[Image.Image, list[str]]:
    """Open ``page`` in headless Chromium: its screenshot, and the http(s)/ws URLs the page
    asked for (Chromium's own background requests, made with no page as initiator, aside)."""
    png, netlog = tmp_path / "shot.png", tmp_path / "netlog.json"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1000",
            f"--screenshot={png}",
            f"--log-net-log={netlog}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    asked = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job
        and event.get("params", {}).get("initiator") != "not an origin"
        and event["params"].get("url", "").split(":")[0] in {"http", "https", "ws", "wss"}
    ]
    with Image.open(png) as image:
        return image.convert("RGB"), asked


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def pixels(image: Image.Image, colour: str) -> dict[int, list[int]]:
    """The x of every pixel of ``colour``, by row."""
    width, height = image.size
    data = image.tobytes()
    pattern = re.compile(re.escape(bytes(rgb(colour))))
    found: dict[int, list[int]] = {}
    for y in range(height):
        row = data[y * width * 3 : (y + 1) * width * 3]
        xs = [m.start() // 3 for m in pattern.finditer(row) if m.start() % 3 == 0]
        if xs:
            found[y] = xs
    return found


@pytest.mark.integration
@pytest.mark.slow
def test_chromium_shows_the_heatmap_and_the_hole_and_loads_nothing(tmp_path: Path) -> None:
    page = render(two_years())
    # Nothing in the page can load anything: no URL, no element or CSS that fetches.
    assert not re.search(r"https?:|wss?:|//|url\(|@import|\b(src|href|action)\s*=", page)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(_Page(page).tags)
    report = tmp_path / "coverage.html"
    report.write_text(page, encoding="utf-8")

    image, asked = screenshot(report, tmp_path)
    assert asked == []

    complete = pixels(image, html.COMPLETE_COLOUR)
    # Series rows: the rows of the picture with a long stretch of "complete".
    rows = sorted(y for y, xs in complete.items() if len(xs) > 400)
    left = min(min(complete[y]) for y in rows)
    right = max(max(complete[y]) for y in rows)
    width = right - left + 1
    assert sum(len(complete[y]) for y in rows) > 80_000  # the heatmap, mostly complete
    assert width == pytest.approx(html.PLOT_W, abs=2)

    hole = {
        y: [x for x in xs if left <= x <= right]
        for y, xs in pixels(image, html.CAUSE_COLOURS["not in InfluxDB"][1]).items()
        if rows[0] <= y <= rows[-1]
    }
    hole = {y: xs for y, xs in hole.items() if xs}
    assert hole, "the 37-day hole is not in the picture"
    # One row, the top one: the series with the hole is the worst, so it comes first.
    assert min(hole) == rows[0]
    assert max(hole) - min(hole) < html.ROW_H
    span = (END - START).total_seconds()
    begins = (HOLE[0] - START).total_seconds() / span
    ends = (HOLE[1] - START).total_seconds() / span
    xs = [x for row in hole.values() for x in row]
    # Within one weekly column (about 1/105 of the width) of where October-November is.
    assert (min(xs) - left) / width == pytest.approx(begins, abs=0.015)
    assert (max(xs) + 1 - left) / width == pytest.approx(ends, abs=0.015)

    # The ended series: complete up to half-way, then "no data", in one row of its own.
    none = pixels(image, html.NONE_COLOUR)
    ended = [y for y in rows if max(complete[y]) < left + 0.55 * width]
    assert ended
    assert max(ended) - min(ended) < html.ROW_H
    assert all(max(none[y]) == right for y in ended)
    assert (max(complete[ended[0]]) - left) / width == pytest.approx(0.5, abs=0.015)

    # The source's row shows its gap.
    gap = pixels(image, html.CAUSE_COLOURS["gap"][1])
    assert any(rows[-1] < y and left <= x <= right for y, xs in gap.items() for x in xs)


@pytest.mark.integration
@pytest.mark.slow
def test_the_net_log_check_catches_a_page_that_loads(tmp_path: Path) -> None:
    # The check above must be able to fail: a page that asks for an image and a WebSocket
    # (on a closed loopback port) shows up in the net log.
    loader = tmp_path / "loads.html"
    loader.write_text(
        '<!DOCTYPE html><img src="http://127.0.0.1:9/x.png">'
        '<script>new WebSocket("ws://127.0.0.1:9/s")</script>',
        encoding="utf-8",
    )
    _, asked = screenshot(loader, tmp_path)
    assert set(asked) == {"http://127.0.0.1:9/x.png", "ws://127.0.0.1:9/s"}
