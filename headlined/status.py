"""``headlined status``: per source and per export, from the running daemon or the state file.

The document has the same shape either way: ``daemon`` (only when running), ``sources`` and
``export``; :func:`render` turns it into the text a person reads.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import duckdb

from headlined.config import Config, format_duration
from headlined.influx import tables
from headlined.lake import status as lakestatus

MAX_PROBLEMS = 10  # failed or damaged chunks listed by name


def offline_snapshot(conn: duckdb.DuckDBPyConnection, cfg: Config) -> dict[str, Any]:
    """What the state file says when no daemon is running."""
    sources: dict[str, Any] = {}
    for source in cfg.sources:
        name = source.name
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM messages WHERE source = $1),
                   (SELECT count(*) FROM gaps WHERE source = $1),
                   (SELECT count(*) FROM fetch_summary WHERE source = $1),
                   (SELECT count(*) FROM fetch_summary WHERE source = $1 AND error IS NOT NULL),
                   (SELECT epoch(max(started_at)) FROM fetch_summary WHERE source = $1),
                   (SELECT arg_max(error, started_at) FROM fetch_summary
                     WHERE source = $1 AND error IS NOT NULL),
                   (SELECT state::VARCHAR FROM source_state WHERE source = $1)
            """,
            [name],
        ).fetchone()
        records, gaps, polls, errors, last_poll, last_error, state_json = row or (0,) * 7
        state = json.loads(state_json) if state_json else {}
        sources[name] = {
            "url": source.url,
            "last_poll": last_poll,
            "seconds_since_poll": None if last_poll is None else round(time.time() - last_poll, 1),
            "interval_s": state.get("interval"),
            "rate_per_s": state.get("rate"),
            "window": source.window,
            "records": records,
            "gaps": gaps,
            "polls": polls,
            "errors": errors,
            "failing": bool(state.get("errors")),
            "last_error": last_error,
        }
    document: dict[str, Any] = {
        "sources": sources,
        "export": tables.chunk_summary(conn),
        "export_problems": tables.problems(conn),
        "export_field_conflicts": tables.field_conflicts(conn),
    }
    if cfg.lake is not None:
        document["lake"] = lakestatus.read(cfg) or {"never_ran": True}
    return document


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{format_duration(round(seconds))} ago" if seconds >= 1 else "just now"


def _since(when: float | None) -> str:
    return _ago(None if when is None else time.time() - when)


def _journal(journal: dict[str, Any] | None) -> list[str]:
    if not journal:
        return []
    ago = _since(journal.get("last_applied"))
    waiting = journal.get("waiting_polls", 0)
    note = f"(last applied {ago}; queries apply it first)"
    lines = ["", f"journal: {waiting} polls committed and waiting for DuckDB {note}"]
    if journal.get("set_aside"):
        lines.append(
            f"journal: {journal['set_aside']} segment(s) DuckDB refused are kept in "
            f"{journal.get('failed_dir')} (see journal_segment_set_aside in the log)"
        )
    return lines


def _parquet(parquet: dict[str, Any] | None) -> list[str]:
    if not parquet:
        return []
    merged = parquet.get("days_merged", 0)
    ago = _since(parquet.get("last_flush"))
    summary = f"{merged} closed day(s) merged since start ({parquet.get('dir')})"
    lines = ["", f"parquet: last flush {ago}, {summary}"]
    if parquet.get("flush_error"):
        lines.append(f"parquet: FLUSH FAILING: {parquet['flush_error']} (records wait in DuckDB)")
    if parquet.get("merge_failures"):
        lines.append(
            f"parquet: {parquet['merge_failures']} merge(s) of a closed day failed "
            "(compaction_failed in the log); those days stay as they were"
        )
    if parquet.get("merge_unsupported"):
        lines.append(
            "parquet: closed days are not merged: the file system cannot swap folders "
            "(compaction_unsupported in the log)"
        )
    return lines


def render(document: dict[str, Any]) -> str:
    """The text ``headlined status`` prints."""
    lines = []
    daemon = document.get("daemon")
    if daemon:
        state = "STALLED: " + ", ".join(daemon["unhealthy"]) if daemon["unhealthy"] else "running"
        lines.append(
            f"headlined: {state} (pid {daemon['pid']}, up "
            f"{format_duration(round(daemon['uptime_s']))}) - {daemon['status']}"
        )
        if daemon.get("metrics_problem"):
            lines.append(f"metrics: NOT SERVED: {daemon['metrics_problem']}")
    else:
        lines.append("headlined: not running (figures from the state file)")
    sources = document.get("sources", {})
    if sources:
        header = (
            "SOURCE",
            "LAST POLL",
            "INTERVAL",
            "RATE/S",
            "WINDOW",
            "RECORDS",
            "GAPS",
            "ERRORS",
            "LAST ERROR",
        )
        rows: list[tuple[str, ...]] = [header]
        for name, s in sources.items():
            interval = s.get("interval_s")
            rate = s.get("rate_per_s")
            rows.append(
                (
                    name,
                    _ago(s.get("seconds_since_poll")),
                    format_duration(interval) if interval else "-",
                    f"{rate:.2f}" if rate is not None else "-",
                    str(s.get("window", "-")),
                    str(s.get("records", 0)),
                    str(s.get("gaps", 0)),
                    str(s.get("errors", 0)),
                    (s.get("last_error") or "-")[:60],
                )
            )
        lines.append("")
        lines.extend(table(rows))
    lines.extend(_journal(document.get("journal")))
    lines.extend(_parquet(document.get("parquet")))
    export = document.get("export", {})
    if document.get("export_waiting"):
        lines += ["", f"export: WAITING: {document['export_waiting']}"]
    if export:
        lines.append("")
        rows = [("DATABASE", "CHUNKS DONE/TOTAL", "FAILED", "DAMAGED", "ROWS", "SPEED", "ETA")]
        for database, e in export.items():
            chunks = e.get("chunks", {})
            total = sum(chunks.values())
            speed = e.get("rows_per_s")
            eta = e.get("eta_s")
            rows.append(
                (
                    database,
                    # An open chunk (its time not over yet) is exported as far as it goes.
                    f"{chunks.get('done', 0) + chunks.get('open', 0)}/{total}",
                    str(chunks.get("failed", 0)),
                    str(chunks.get("damaged", 0)),
                    str(e.get("rows", 0)),
                    f"{speed:,.0f} rows/s" if speed else "-",
                    format_duration(round(eta)) if eta else "-",
                )
            )
        lines.extend(table(rows))
    for conflict in document.get("export_field_conflicts") or []:
        rounds = ", big integers rounded" if conflict["may_round"] else ""
        lines.append(
            f"  field {conflict['database']}.{conflict['measurement']}.{conflict['field']}: "
            f"{'/'.join(conflict['kinds'])} in InfluxDB, one {conflict['type']} column{rounds} "
            "(export_fields)"
        )
    problems = document.get("export_problems") or []
    for problem in problems[:MAX_PROBLEMS]:
        lines.append(f"  {problem['state']} {problem['chunk']}: {problem['error'] or '-'}")
    if len(problems) > MAX_PROBLEMS:
        lines.append(
            f"  … {len(problems) - MAX_PROBLEMS} more: "
            "headlined query \"SELECT * FROM export_chunks WHERE state <> 'done'\""
        )
    lines.extend(lakestatus.render(document.get("lake")))
    return "\n".join(lines)


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def to_json(document: dict[str, Any]) -> str:
    """``status --json``."""
    return json.dumps(document, indent=2, default=_default, ensure_ascii=False)


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
