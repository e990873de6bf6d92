"""Reading the state file whether or not the daemon runs: the daemon holds the DuckDB file
(one process per file), so commands ask it over the control socket, else open the file
read-only themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from headlined import control, query
from headlined.poll import journal

if TYPE_CHECKING:
    import duckdb

    from headlined.config import Config


def daemon_or_file(
    cfg: Config,
    message: dict[str, Any],
    offline: Callable[[duckdb.DuckDBPyConnection], dict[str, Any]],
) -> dict[str, Any]:
    """Ask the running daemon (it holds the DuckDB file), else read the file ourselves.

    Raises control.ControlError, query.QueryError or OSError.
    """
    sock = control.socket_path(cfg.state_dir)
    if control.daemon_listening(sock):
        reply = control.request(sock, message)
        reply.pop("ok", None)
        return reply
    directory = journal.directory_in(cfg.state_dir)
    waiting = journal.existing(directory)
    if waiting:
        print(
            f"headlined: {len(waiting)} journal segment(s) in "
            f"{directory} may not be in the database yet "
            "(the daemon stopped without applying them): it applies them when it next starts",
            file=sys.stderr,
        )
    conn = query.open_offline(cfg.database_path)
    try:
        return offline(conn)
    finally:
        conn.close()


def select(cfg: Config, sql: str, limit: int = 10_000_000) -> query.Result:
    """Rows of a read-only ``sql`` over the state tables, from the daemon or the file.

    Through the daemon values travel as JSON (timestamps become text): select times as
    integers (``epoch_ns``) to read them the same way either way.
    """
    influx_dir = cfg.influx.output_dir if cfg.influx else None
    reply = daemon_or_file(
        cfg,
        {"cmd": "query", "sql": sql, "limit": limit},
        lambda conn: asdict(query.run(conn, sql, influx_dir, limit)),
    )
    result = query.Result(**reply)
    if result.truncated:
        raise query.QueryError(f"the state query's answer was cut short: {'; '.join(result.notes)}")
    return result


def export_chunks(cfg: Config) -> list[tuple[str, str, int, int, str]]:
    """Every export chunk as (database, retention policy, start ns, end ns, state)."""
    result = select(
        cfg,
        'SELECT database, retention_policy, epoch_ns(start), epoch_ns("end"), state '
        "FROM export_chunks ORDER BY database, retention_policy, start",
    )
    return [(r[0], r[1], int(r[2]), int(r[3]), r[4]) for r in result.rows]


def export_field_keys(cfg: Config) -> dict[tuple[str, str], set[str]]:
    """(database, measurement) -> its field keys, as the export recorded them."""
    result = select(cfg, "SELECT database, measurement, field FROM export_fields")
    out: dict[tuple[str, str], set[str]] = {}
    for database, measurement, key in result.rows:
        out.setdefault((database, measurement), set()).add(key)
    return out
