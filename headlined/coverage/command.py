"""``headlined coverage``: whether the history is complete, per exported series and per
polled source, as a table, JSON lines or a self-contained HTML report.

Works while the daemon runs: the export's chunk states and the polled sources' figures come
through ``statequery`` (the daemon, else the file read-only), the series straight from the
Parquet files.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headlined import config, control, query, statequery
from headlined.coverage import report, series, sources
from headlined.coverage.model import ChunkState

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Options:
    """The command line's choices."""

    as_json: bool = False
    html: Path | None = None
    database: str | None = None
    measurement: str | None = None
    source: str | None = None
    since: str | None = None
    until: str | None = None


class UsageError(Exception):
    """An option the command cannot use."""


def parse_time(text: str, now_ns: int) -> int:
    """``--since``/``--until``: RFC 3339 or a date (UTC when no zone), or a duration ago
    (``30d``: thirty days before now). Returns ns since the epoch."""
    try:
        return now_ns - int(config.parse_duration(text) * NS)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time: write 2024-10-01, 2024-10-01T12:00:00Z or 30d (ago)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def load_chunks(cfg: config.Config) -> list[ChunkState]:
    """Every export chunk's range and state, from the daemon or the state file."""
    return [ChunkState(*row) for row in statequery.export_chunks(cfg)]


def entries(cfg: config.Config, options: Options, now_ns: int) -> list[dict[str, Any]]:
    """The report's entries: the series (when an export is configured), then the sources."""
    since = None if options.since is None else parse_time(options.since, now_ns)
    until = None if options.until is None else parse_time(options.until, now_ns)
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    want_series = options.source is None
    want_sources = options.database is None and options.measurement is None
    out: list[dict[str, Any]] = []
    if want_series and cfg.influx is not None:
        chunks = load_chunks(cfg)
        out += [
            report.series_entry(s)
            for s in series.scan(
                cfg.influx.output_dir,
                chunks,
                now_ns=now_ns,
                database=options.database,
                measurement=options.measurement,
                since_ns=since,
                until_ns=until,
                fields=statequery.export_field_keys(cfg),
            )
        ]
    if want_sources:
        names = [s.name for s in cfg.sources]
        if options.source is not None:
            names = [options.source]

        def select(sql: str) -> list[list[Any]]:
            return statequery.select(cfg, sql).rows

        for facts in sources.facts(select, names):
            if options.source is None or facts.source == options.source:
                out.append(
                    report.source_entry(
                        sources.analyse(facts, now_ns=now_ns, since_ns=since, until_ns=until)
                    )
                )
    return out


def run(loaded: config.Loaded, options: Options) -> int:
    """The command: print the table or JSON lines, write the HTML file if asked."""
    cfg = loaded.config
    if options.source is not None and options.source not in {s.name for s in cfg.sources}:
        print(f"{loaded.path}: no source named {options.source}", file=sys.stderr)
        return EXIT_USAGE
    if (options.database or options.measurement) and cfg.influx is None:
        print(f"{loaded.path}: no influx export is configured", file=sys.stderr)
        return EXIT_USAGE
    now_ns = time.time_ns()
    try:
        found = entries(cfg, options, now_ns)
    except UsageError as exc:
        print(f"headlined coverage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (control.ControlError, query.QueryError, series.ScanError, OSError) as exc:
        print(f"headlined coverage: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if options.html is not None:
        from headlined.coverage import html  # noqa: PLC0415  only --html needs it

        page = html.render(
            found,
            title=f"headlined coverage: {loaded.path}",
            generated_at=datetime.fromtimestamp(now_ns / NS, UTC),
            since=_moment(options.since, now_ns),
            until=_moment(options.until, now_ns),
        )
        try:
            options.html.write_text(page, encoding="utf-8")
        except OSError as exc:
            print(f"headlined coverage: {options.html}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"wrote {options.html} ({len(found)} entries)", file=sys.stderr)
    if options.as_json:
        for entry in found:
            print(json.dumps(entry, ensure_ascii=False))
    elif options.html is None:
        print(report.render_table(found))
    return EXIT_OK


def _moment(text: str | None, now_ns: int) -> datetime | None:
    if text is None:
        return None
    return datetime.fromtimestamp(parse_time(text, now_ns) / NS, UTC)
