"""``headlined coverage --html``: one self-contained page (inline CSS and SVG, nothing loaded at
view time) with a series-by-time heatmap, a summary per database and for the sources, and every
missing interval with its cause.

The page's geometry is fixed (a label column of ``LABEL_W`` pixels, then ``PLOT_W`` pixels of
heatmap) so that a screenshot can be read back by a test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from headlined.coverage import heatmap, timebins
from headlined.coverage.report import duration, name

LABEL_W = 300
PLOT_W = 960
PLOT_X = LABEL_W
SVG_W = LABEL_W + PLOT_W + 12
AXIS_H = 40
SECTION_H = 28
GROUP_H = 18
ROW_H = 14
CELL_H = 12
LABEL_CHARS = 46
MAX_LISTED = 400

COMPLETE_COLOUR = "#2e9c5a"
NONE_COLOUR = "#e6e8ec"
# Cause → (colour where less than half is missing, colour where half or more is). Failed and
# damaged are the loud ones: they are what a user can act on.
CAUSE_COLOURS: dict[str, tuple[str, str]] = {
    "not in InfluxDB": ("#fbd0a3", "#f28e2b"),
    "failed": ("#f4a6a6", "#d62728"),
    "damaged": ("#dcaad4", "#9b1d8a"),
    "not exported yet": ("#bccde3", "#4e79a7"),
    "unknown": ("#dccca6", "#8c6d31"),
    "gap": ("#f6e3a1", "#e3b505"),
    "not polling": ("#b9c3cd", "#6c7a89"),
}
OTHER_COLOURS = ("#cccccc", "#555555")
NONE_HINT = "before the first point, after the last"
CAUSE_HELP = {
    "not in InfluxDB": "exported without error, but InfluxDB has no points there",
    "failed": "the export of this time failed",
    "damaged": "an exported file of this time is damaged",
    "not exported yet": "the export has not reached this time yet",
    "unknown": "no export record explains the hole",
    "gap": "the API moved on between two polls: records were lost",
    "not polling": "the daemon was not polling (nothing lost if the API's window bridged it)",
}

_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text(value: object) -> str:
    """``value`` as HTML text or attribute: escaped, with control characters and lone
    surrogates (which a tag may hold, and which UTF-8 cannot encode) shown as escapes."""
    shown = _UNSAFE.sub(lambda m: repr(m.group())[1:-1], str(value))
    return escape(shown, quote=True)


def render(
    entries: Sequence[Mapping[str, Any]],
    *,
    title: str,
    generated_at: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """The whole page for the entries of ``headlined coverage --json``."""
    shown = heatmap.window(
        entries,
        None if since is None else timebins.to_us(since),
        None if until is None else timebins.to_us(until),
    )
    parts = [_head(title), f"<h1>{text(title)}</h1>"]
    if shown is None:
        parts.append(f'<p class="meta">Generated {_when(generated_at)}.</p>')
        parts.append('<p class="empty">Nothing exported or polled yet: no series, no source.</p>')
        return "".join([*parts, "</body></html>\n"])
    bins = timebins.choose(*shown)
    sections = heatmap.layout(entries, bins, shown)
    causes = _causes(entries)
    parts += [
        _meta(generated_at, shown, bins),
        _cards(sections),
        _legend(causes),
        _collapsed_note(sections),
        _svg(sections, bins),
        _summary(sections),
        _missing(sections, causes),
        "</body></html>\n",
    ]
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#1f2328;background:#fff;margin:20px 24px}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:28px 0 8px}
h3{font-size:14px;margin:18px 0 6px}
.meta,.note{color:#59636e;margin:0 0 12px}.note{font-size:13px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:10px 0 14px}
.card{border:1px solid #d1d9e0;border-radius:6px;padding:6px 12px;min-width:120px}
.card b{display:block;font-size:18px}.card span{color:#59636e;font-size:12px}
.card.bad b{color:#d62728}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:12px;margin:0 0 8px;color:#333}
.legend span{display:inline-flex;align-items:center;gap:4px}
.sw{display:inline-block;width:14px;height:12px;border-radius:2px}
svg{display:block;font-size:11px}svg text{fill:#1f2328}
svg .axis{fill:#59636e}svg .major{font-weight:600;fill:#1f2328}
svg .db{font-size:13px;font-weight:600}svg .sub{fill:#59636e}svg .grp{font-style:italic}
svg .more{font-style:italic;fill:#59636e}
svg .r:hover text{font-weight:600}svg .r:hover .n{fill:#d5d9df}
table{border-collapse:collapse;font-size:13px;margin:0 0 8px}
th,td{padding:3px 10px 3px 0;text-align:left;vertical-align:top;border-bottom:1px solid #eef1f4}
th{color:#59636e;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;white-space:nowrap}
.empty{font-size:16px;color:#59636e}
"""


def _head(title: str) -> str:
    fills = [f".k{{fill:{COMPLETE_COLOUR}}}", f".n{{fill:{NONE_COLOUR}}}"]
    for index, (light, heavy) in enumerate(CAUSE_COLOURS.values()):
        fills.append(f".c{index}{{fill:{light}}}.c{index}h{{fill:{heavy}}}")
    fills.append(f".co{{fill:{OTHER_COLOURS[0]}}}.coh{{fill:{OTHER_COLOURS[1]}}}")
    # The CSP makes "loads nothing" a property of the page, not only of what is in it today.
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{text(title)}</title><style>{_CSS}{''.join(fills)}</style></head><body>"
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _stamp(us: int, *, hours: bool = True) -> str:
    moment = timebins.from_us(us)
    if not hours or (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M:%S" if moment.second else "%Y-%m-%d %H:%M")


def _meta(generated_at: datetime, shown: tuple[int, int], bins: timebins.Bins) -> str:
    return (
        f'<p class="meta">Generated {_when(generated_at)} · from {_stamp(shown[0])} to '
        f"{_stamp(shown[1])} · one column = one {bins.describe()} · times in UTC · "
        "hover a cell for its figures</p>"
    )


def _causes(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The causes present, in the palette's order, then any the palette does not know."""
    present = {str(m["cause"]) for e in entries for m in e["missing"]}
    known = [c for c in CAUSE_COLOURS if c in present]
    return known + sorted(present - set(CAUSE_COLOURS))


def _css_class(cell: heatmap.Cell) -> str:
    kind, heavy = cell
    if kind == "complete":
        return "k"
    if kind == "none":
        return "n"
    names = list(CAUSE_COLOURS)
    base = f"c{names.index(kind)}" if kind in CAUSE_COLOURS else "co"
    return base + ("h" if heavy else "")


def _colours(cause: str) -> tuple[str, str]:
    return CAUSE_COLOURS.get(cause, OTHER_COLOURS)


def _percent(part: int, whole: int) -> str:
    return "-" if whole <= 0 else _share(part / whole)


def _share(ratio: float) -> str:
    share = 100 * ratio
    # Never round a hole away: 99.9996% shows as 99.999%, not 100%.
    if ratio < 1 and share > 99.99:
        return f"{int(share * 1000) / 1000:.3f}%"
    return f"{share:.2f}%".replace(".00%", "%")


def _seconds(us: int) -> float:
    return us / timebins.US


class _Totals:
    """Expected and missing time of some rows, from their columns."""

    def __init__(self, rows: Sequence[heatmap.Row]) -> None:
        self.expected = sum(sum(r.expected) for r in rows)
        self.by_cause: dict[str, int] = {}
        for r in rows:
            for cause, values in r.missing.items():
                self.by_cause[cause] = self.by_cause.get(cause, 0) + sum(values)
        self.lost = min(
            self.expected,
            sum(v for c, v in self.by_cause.items() if c not in heatmap.LOSSLESS),
        )

    def covered(self) -> str:
        return _percent(self.expected - self.lost, self.expected)


def _cards(sections: Sequence[heatmap.Section]) -> str:
    series = sum(len(s.entries) for s in sections if s.database is not None)
    sources = sum(len(s.entries) for s in sections if s.database is None)
    totals = _Totals([r for s in sections for r in s.rows])
    bad = sum(
        1
        for s in sections
        for e in s.entries
        for m in e["missing"]
        if m["cause"] in ("failed", "damaged")
    )
    cards = [(f"{series:,}", "series")] if series else []
    cards += [(f"{sources:,}", "source" if sources == 1 else "sources")] if sources else []
    cards += [
        (totals.covered(), "of the expected time covered"),
        (duration(_seconds(totals.lost)) if totals.lost else "none", "missing time"),
    ]
    html = [f'<div class="card"><b>{v}</b><span>{label}</span></div>' for v, label in cards]
    html.append(
        f'<div class="card{" bad" if bad else ""}"><b>{bad}</b>'
        "<span>failed or damaged intervals</span></div>"
    )
    return f'<div class="cards">{"".join(html)}</div>'


def _swatch(colour: str) -> str:
    return f'<i class="sw" style="background:{colour}"></i>'


def _legend(causes: Sequence[str]) -> str:
    items = [
        f"<span>{_swatch(COMPLETE_COLOUR)}complete</span>",
        f"<span>{_swatch(NONE_COLOUR)}no data expected ({NONE_HINT})</span>",
    ]
    for cause in causes:
        light, heavy = _colours(cause)
        hint = CAUSE_HELP.get(cause, "")
        items.append(
            f'<span title="{text(hint)}">{_swatch(heavy)}{_swatch(light)}<b>{text(cause)}</b>'
            f"{': ' + text(hint) if hint else ''}</span>"
        )
    shades = "dark: half or more of the column missing (failed, damaged: any); light: less"
    note = f"<span>{shades}</span>" if causes else ""
    return f'<div class="legend">{"".join(items)}{note}</div>'


def _clip(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _svg(sections: Sequence[heatmap.Section], bins: timebins.Bins) -> str:
    column = PLOT_W / bins.count
    body: list[str] = []
    y = AXIS_H
    for section in sections:
        totals = _Totals(section.rows)
        count = len(section.entries)
        noun = "series" if section.database is not None else "source" if count == 1 else "sources"
        body.append(
            f'<text class="db" x="0" y="{y + 19}">{text(_clip(section.title))}</text>'
            f'<text class="sub" x="{PLOT_X}" y="{y + 19}">{count:,} {noun} · '
            f"{totals.covered()} of the expected time covered</text>"
        )
        y += SECTION_H
        for group in section.groups:
            if group.title:
                body.append(
                    f'<text class="grp" x="8" y="{y + 13}">{text(_clip(group.title))} '
                    f'<tspan class="sub">({len(group.entries):,})</tspan></text>'
                )
                y += GROUP_H
            for row in group.rows:
                body.append(_row(row, bins, column, y))
                y += ROW_H
        y += 6
    height = y + 4
    grid = [
        f'<line x1="{PLOT_X + t.index * column:.1f}" x2="{PLOT_X + t.index * column:.1f}" '
        f'y1="{AXIS_H}" y2="{y}"/>'
        for t in timebins.ticks(bins, column)
        if t.major and t.index > 0
    ]
    return (
        f'<svg width="{SVG_W}" height="{height}" '
        f'viewBox="0 0 {SVG_W} {height}" role="img" aria-label="coverage heatmap">'
        f"{_axis(bins, column)}"
        f'<g shape-rendering="crispEdges">{"".join(body)}</g>'
        f'<g stroke="#ffffff" stroke-opacity="0.85" shape-rendering="crispEdges">'
        f"{''.join(grid)}</g></svg>"
    )


def _axis(bins: timebins.Bins, column: float) -> str:
    labels = []
    for tick in timebins.ticks(bins, column):
        x = PLOT_X + tick.index * column
        if x > PLOT_X + PLOT_W - 24:
            continue
        y = 32 if tick.major else 14
        labels.append(
            f'<text class="{"major" if tick.major else "axis"}" x="{x + 2:.1f}" y="{y}">'
            f"{text(tick.label)}</text>"
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 10 if tick.major else 4}" '
            f'y2="{AXIS_H - 2}" stroke="#9aa3ad"/>'
        )
    return f'<g class="axis">{"".join(labels)}</g>'


def _row(row: heatmap.Row, bins: timebins.Bins, column: float, y: int) -> str:
    top = y + (ROW_H - CELL_H) // 2
    style = ' class="more"' if row.merged > 1 else ""
    covered = "" if row.coverage is None else f" · coverage {_share(row.coverage)}"
    # The row's background is one "no data" rectangle; the runs that have data go on top.
    parts = [
        (
            f'<g class="r"><text{style} x="{PLOT_X - 8}" y="{top + CELL_H - 2}" '
            f'text-anchor="end"><title>{text(row.name)}{covered}</title>'
            f"{text(_clip(row.label))}</text>"
            f'<rect class="n" x="{PLOT_X}" y="{top}" width="{PLOT_W}" height="{CELL_H}">'
            f"<title>{text(row.name)}: no data expected</title></rect>"
        )
    ]
    for start, end, cell in heatmap.runs(row.cells()):
        if cell == heatmap.NONE:
            continue
        parts.append(
            f'<rect class="{_css_class(cell)}" x="{PLOT_X + start * column:.2f}" y="{top}" '
            f'width="{(end - start) * column:.2f}" height="{CELL_H}">'
            f"<title>{_cell_title(row, bins, start, end)}</title></rect>"
        )
    parts.append("</g>")
    return "".join(parts)


def _cell_title(row: heatmap.Row, bins: timebins.Bins, start: int, end: int) -> str:
    hours = bins.unit == "hour"
    expected = sum(row.expected[start:end])
    lost = {c: sum(v[start:end]) for c, v in row.missing.items()}
    lost = {c: v for c, v in lost.items() if v}
    gone = min(expected, sum(lost.values()))
    lines = [
        row.name,
        f"{_stamp(bins.edges[start], hours=hours)} → {_stamp(bins.edges[end], hours=hours)}",
        f"{_percent(expected - gone, expected)} covered"
        + "".join(f"; {c}: {duration(_seconds(v))}" for c, v in sorted(lost.items())),
    ]
    return text("\n".join(lines))


def _collapsed_note(sections: Sequence[heatmap.Section]) -> str:
    hidden = [(s, g) for s in sections for g in s.groups if g.hidden]
    if not hidden:
        return ""
    count = sum(g.hidden for _, g in hidden)
    where = ", ".join(
        f"{text(s.title)}{'/' + text(g.title) if g.title else ''} ({g.hidden:,})"
        for s, g in hidden[:12]
    )
    more = f" and {len(hidden) - 12} more groups" if len(hidden) > 12 else ""
    return (
        f'<p class="note">Collapsed: {count:,} series or sources with the best coverage are '
        f"drawn as one row per group, their times added: {where}{more}. Every one of them is "
        "still counted in the summary, and its missing intervals are listed below.</p>"
    )


def _summary(sections: Sequence[heatmap.Section]) -> str:
    rows = []
    for section in sections:
        totals = _Totals(section.rows)
        entries = section.entries
        worst = min(entries, key=heatmap.worst_first)
        causes = "".join(
            _chip(c, f"{c} {duration(_seconds(v))}")
            for c, v in sorted(totals.by_cause.items(), key=lambda cv: -cv[1])
            if v
        )
        worst_cov = worst.get("coverage")
        rows.append(
            f"<tr><td>{text(section.title)}</td><td class=num>{len(entries):,}</td>"
            f"<td class=num>{sum(int(e.get('points') or 0) for e in entries):,}</td>"
            f"<td class=num>{totals.covered()}</td>"
            f"<td class=num>{duration(_seconds(totals.lost)) if totals.lost else '-'}</td>"
            f"<td>{causes or '-'}</td><td>{text(_clip(name(worst)))}"
            f"{'' if worst_cov is None else f' ({_share(worst_cov)})'}</td></tr>"
        )
    return (
        "<h2>Summary</h2><table><tr><th>database / sources</th><th>series</th><th>points</th>"
        "<th>time covered</th><th>missing</th><th>by cause</th><th>worst</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _chip(cause: str, label: str) -> str:
    light, _ = _colours(cause)
    return f'<span class="chip" style="background:{light}">{text(label)}</span> '


def _missing(sections: Sequence[heatmap.Section], causes: Sequence[str]) -> str:
    if not causes:
        return "<h2>Missing intervals</h2><p>None: every series and source is complete.</p>"
    parts = ["<h2>Missing intervals</h2><p class=note>End exclusive; in drawing order.</p>"]
    for section in sections:
        items = list(_intervals(section.entries))
        if not items:
            continue
        parts.append(
            f"<h3>{text(section.title)}</h3><table><tr><th>series</th><th>cause</th>"
            "<th>from</th><th>to</th><th>length</th><th>records lost</th></tr>"
        )
        for entry, item in items[:MAX_LISTED]:
            start, end = timebins.parse(item["start"]), timebins.parse(item["end"])
            estimate = item.get("estimate")
            parts.append(
                f"<tr><td>{text(name(entry))}</td><td>{_chip(item['cause'], item['cause'])}</td>"
                f"<td>{_stamp(start)}</td><td>{_stamp(end)}</td>"
                f"<td class=num>{duration(_seconds(end - start))}</td>"
                f"<td class=num>{'' if estimate is None else f'~{int(estimate):,}'}</td></tr>"
            )
        parts.append("</table>")
        if len(items) > MAX_LISTED:
            parts.append(
                f'<p class="note">… and {len(items) - MAX_LISTED:,} more: '
                "<code>headlined coverage --json</code> lists them all.</p>"
            )
    return "".join(parts)


def _intervals(
    entries: Sequence[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    for entry in entries:
        for item in entry["missing"]:
            yield entry, item
