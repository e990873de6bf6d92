"""The lake's part of ``headlined status``: the last cycle's outcome, as the daemon sees it or
as it left it in ``<state_dir>/lake/status.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from headlined.config import Config, format_duration

FILE = "status.json"
MAX_TABLE_ERRORS = 5


def path(cfg: Config) -> Path:
    """Where the daemon keeps the last cycle's outcome."""
    return cfg.state_dir / "lake" / FILE


def read(cfg: Config) -> dict[str, Any] | None:
    """The last outcome a daemon wrote (None: it never published), for ``headlined status``
    without a daemon."""
    try:
        document: dict[str, Any] = json.loads(path(cfg).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"{path(cfg)}: unreadable ({exc})"}
    return document


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "never"
    seconds = round(now - when)
    return f"{format_duration(seconds)} ago" if seconds >= 1 else "just now"


def render(lake: dict[str, Any] | None, now: float | None = None) -> list[str]:
    """The lines about the lake (none without a lake: section)."""
    if not lake:
        return []
    now = time.time() if now is None else now
    if lake.get("never_ran"):
        return ["", "lake: nothing published yet (the daemon publishes at start)"]
    snapshots: dict[str, int] = lake.get("snapshots") or {}
    waiting = lake.get("waiting")
    state = "FAILING" if lake.get("error") else "ok"
    headline = (
        f"lake: {state}: {len(snapshots)} tables, "
        f"{'?' if waiting is None else waiting} files waiting, "
        f"last published {_ago(lake.get('last_success'), now)} "
        f"(site {lake.get('site') or '?'}, catalog {lake.get('catalog') or '?'}, "
        f"warehouse {lake.get('warehouse') or '?'})"
    )
    lines = ["", headline]
    if lake.get("error"):
        retry = lake.get("next_attempt")
        when = f"; next try in {format_duration(max(0, round(retry - now)))}" if retry else ""
        lines.append(f"  error: {lake['error']}{when}")
    errors: dict[str, str] = lake.get("table_errors") or {}
    for table, error in sorted(errors.items())[:MAX_TABLE_ERRORS]:
        lines.append(f"  table {table}: {error}")
    if len(errors) > MAX_TABLE_ERRORS:
        lines.append(f"  … {len(errors) - MAX_TABLE_ERRORS} more tables failing (status --json)")
    if snapshots:
        newest = max(snapshots.items(), key=lambda item: item[1])
        lines.append(f"  last snapshot: {newest[0]} {newest[1]}")
    return lines
