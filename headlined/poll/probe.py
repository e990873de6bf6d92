"""``headlined probe``: poll each source once, store nothing, and say whether it is usable.

The checks a person makes before trusting a source: does it answer, are there records at
``records:``, does ``key`` name every record once, does ``time`` parse, how many records the
API returns (its window). The daemon runs the same checks on a new source's first response.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from headlined.config import SourceConfig
from headlined.poll.fetch import FetchError, get_once
from headlined.poll.records import BadResponseError, Scanner, decode_json, dig, time_problem

SAMPLE_CHARS = 300


@dataclass
class Probe:
    """What one poll of one source showed."""

    source: str
    url: str
    status: int | None = None
    seconds: float | None = None
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    sample: str | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether the daemon could poll this source as configured."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """For ``probe --json``."""
        return {
            "source": self.source,
            "url": self.url,
            "usable": self.usable,
            "http_status": self.status,
            "seconds": self.seconds,
            "records": self.records,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "sample": self.sample,
            "problems": self.problems,
            "notes": self.notes,
        }


def check(source: SourceConfig, document: Any, probe: Probe) -> None:
    """The checks on a decoded response (pure): records, key, time, window."""
    try:
        scan = Scanner(source.records, source.key, source.time).scan(document)
    except BadResponseError as exc:
        hint = ""
        if isinstance(document, dict):
            hint = f" (the body's top-level keys: {', '.join(sorted(document)[:8])})"
        probe.problems.append(f"records: {source.records!r}: {exc.detail}{hint}")
        return
    items = dig(document, source.records)
    probe.records = len(items)
    if not items:
        probe.notes.append("no records in this response: key and time are checked on some")
        return
    probe.sample = json.dumps(items[0], ensure_ascii=False, default=str)[:SAMPLE_CHARS]
    if scan.rejected:
        probe.problems.append(
            f"key: {scan.rejected} of {len(items)} records have no usable key "
            f"({scan.reject_reason}): key: {source.key} must name fields every record has"
        )
    if scan.key_conflicts:
        probe.problems.append(
            f"key: not unique: {scan.key_conflicts} records share their key with another "
            f"(e.g. {scan.conflict_key}): add a field to key: {source.key}"
        )
    if source.time is not None:
        dicts = [item for item in items if isinstance(item, dict)]
        problem = next((p for p in (time_problem(d, source.time) for d in dicts[:20]) if p), None)
        if problem is not None:
            probe.problems.append(f"time: {problem}")
        times = [r.time for r in scan.new if r.time is not None]
        if times:
            probe.first, probe.last = min(times), max(times)
    if len(items) != source.window:
        probe.notes.append(
            f"window: the API returned {len(items)} records, window: {source.window} is "
            "configured (set it to what the API always returns)"
        )


async def probe(client: httpx.AsyncClient, source: SourceConfig) -> Probe:
    """One GET of ``source`` and every check on what came back; nothing is stored."""
    result = Probe(source.name, source.url)
    started = time.perf_counter()
    try:
        response = await get_once(client, source)
    except FetchError as exc:
        result.seconds = round(time.perf_counter() - started, 3)
        result.status = exc.status
        result.problems.append(f"fetch: {exc.kind}: {exc.detail}")
        return result
    result.seconds = round(time.perf_counter() - started, 3)
    result.status = response.status
    try:
        document = decode_json(response.body)
    except BadResponseError as exc:
        result.problems.append(f"body: {exc.kind}: {exc.detail}")
        return result
    check(source, document, result)
    return result


def render(probes: list[Probe]) -> str:
    """The text ``headlined probe`` prints: one block per source, problems one per line."""
    lines = []
    for p in probes:
        verdict = "ok" if p.usable else "NOT USABLE"
        status = f"HTTP {p.status}" if p.status is not None else "no response"
        timing = f" in {p.seconds * 1000:.0f} ms" if p.seconds is not None else ""
        lines.append(f"{p.source}: {verdict} ({status}{timing}, {p.records} records) {p.url}")
        if p.first is not None and p.last is not None:
            lines.append(f"  time: {p.first.isoformat()} .. {p.last.isoformat()}")
        lines.extend(f"  problem: {problem}" for problem in p.problems)
        lines.extend(f"  note: {note}" for note in p.notes)
        if p.sample is not None:
            lines.append(f"  sample: {p.sample}")
    return "\n".join(lines)
