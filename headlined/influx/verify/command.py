"""``headlined verify``: the plan (which windows), the progress bar, the output, the exit code.

Works while the daemon runs: the chunk states and field names come through ``statequery``
(the daemon, else the state file read-only), the counts from the Parquet files and from
InfluxDB. Each window is independent and nothing is kept between runs: a run costs one pass
over the Parquet and one ``count(*)`` per measurement and month in InfluxDB, so it is
simply run again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from headlined import control, logs, query, statequery
from headlined.config import Config, InfluxConfig, Loaded
from headlined.influx.verify import compare, parquet
from headlined.influx.verify.compare import Chunk, Difference, Tally, Window
from headlined.influx.verify.influxql import InfluxAPI, InfluxError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
# Differences in failed, damaged, open, pending or running chunks are printed after the
# mismatches, so they are held meanwhile: at most this many of each kind (a whole database
# still pending would otherwise be held day by day).
MAX_HELD = 1000


def load_chunks(cfg: Config) -> list[Chunk]:
    """Every export chunk's range and state, from the daemon or the state file."""
    return [Chunk(*row) for row in statequery.export_chunks(cfg)]


def plan(
    influx: InfluxConfig, chunks: Sequence[Chunk], api: InfluxAPI, database: str | None
) -> list[Window]:
    """The windows to compare: per exported retention policy, every measurement that either
    side has, one UTC month at a time, over the time the export's chunks cover."""
    start = None if influx.start is None else compare.to_ns(influx.start)
    end = None if influx.end is None else compare.to_ns(influx.end)
    windows = []
    shown: dict[str, list[str]] = {}
    for db, rp in sorted({(c.database, c.retention_policy) for c in chunks}):
        if database not in (None, db):
            continue
        covered = compare.span(chunks, db, rp, start, end)
        if covered is None:
            continue
        if db not in shown:
            shown[db] = api.measurements(db)
        names = set(shown[db]) | set(parquet.measurements(influx.output_dir, db, rp))
        windows += [
            Window(db, rp, m, low, high)
            for m in sorted(names)
            for low, high in compare.months(*covered)
        ]
    return windows


def usage_problem(loaded: Loaded, database: str | None) -> str | None:
    """What in the config or command line keeps verify from running, or None."""
    influx = loaded.config.influx
    if influx is None:
        return f"{loaded.path}: no influx: section: nothing to verify"
    if influx.url is None:
        return (
            f"{loaded.path}: influx.url is not set: verify counts points in InfluxDB itself, "
            "over its HTTP API. Set influx.url (e.g. http://127.0.0.1:8086) and, if InfluxDB "
            "has authentication on, influx.username and influx.password (or influx.headers)"
        )
    if database is not None and influx.databases and database not in influx.databases:
        return f"{loaded.path}: influx.databases does not list {database!r}"
    return None


def run(loaded: Loaded, database: str | None, as_json: bool) -> int:
    """Entry point of ``headlined verify``."""
    cfg = loaded.config
    logs.REDACTOR.set_secrets(loaded.secrets)  # a URL or header may come from ${NAME}
    problem = usage_problem(loaded, database)
    influx = cfg.influx
    if problem is not None or influx is None or influx.url is None:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    url = influx.url
    try:
        chunks = load_chunks(cfg)
        fields = statequery.export_field_keys(cfg)
    except (control.ControlError, query.QueryError, OSError) as exc:
        print(_scrub(f"headlined verify: {exc}"), file=sys.stderr)
        return EXIT_FAILURE
    if not any(database in (None, c.database) for c in chunks):
        where = f" of {database}" if database else ""
        print(
            f"headlined verify: nothing{where} is exported yet (export_chunks is empty): "
            "run `headlined export` first",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    auth = None if influx.username is None else (influx.username, influx.password or "")
    with InfluxAPI(url, dict(influx.headers), auth) as api:
        try:
            windows = plan(influx, chunks, api, database)
            tally = _verify(
                influx.output_dir, windows, api, chunks=chunks, fields=fields, as_json=as_json
            )
        except (InfluxError, parquet.ParquetError) as exc:
            print(_scrub(f"headlined verify: {exc}"), file=sys.stderr)
            return EXIT_FAILURE
    print(tally.summary(), file=sys.stderr if as_json else sys.stdout)
    return EXIT_FAILURE if tally.failed else EXIT_OK


def _verify(
    output_dir: Path,
    windows: Sequence[Window],
    api: InfluxAPI,
    *,
    chunks: Sequence[Chunk],
    fields: dict[tuple[str, str], set[str]],
    as_json: bool,
) -> Tally:
    tally = Tally()
    held: dict[str, list[Difference]] = {"broken": [], "unsettled": []}
    conn = parquet.connect()
    try:
        with _bar(len(windows)) as bar:
            for window in windows:
                where = (window.database, window.retention_policy, window.measurement)
                bar.set_postfix_str(
                    f"{'/'.join(where)} {compare.day_text(window.start_ns)[:7]}", refresh=False
                )
                theirs = api.count(*where, window.start_ns, window.end_ns)
                # The export's record of the measurement's fields tells its field columns
                # from its tag columns; InfluxDB's answer stands in if it has none.
                keys = fields.get((window.database, window.measurement)) or {
                    key for counts in theirs.values() for key in counts
                }
                ours = parquet.count(
                    conn,
                    output_dir,
                    where,
                    keys,
                    start_ns=window.start_ns,
                    end_ns=window.end_ns,
                )
                found = compare.compare(window, ours, theirs, chunks)
                tally.add(len(ours.keys() | theirs.keys()), found)
                for difference in found:
                    kind = difference.kind
                    if as_json or kind == "mismatch":
                        _emit(difference, as_json)
                    elif len(held[kind]) < MAX_HELD:
                        held[kind].append(difference)
                bar.update()
    finally:
        conn.close()
    if not as_json:
        _print_held(
            held["broken"], tally.broken, "in failed or damaged chunks (known to be incomplete)"
        )
        _print_held(
            held["unsettled"],
            tally.unsettled,
            "in chunks still open, pending or running (not mismatches: they may still change)",
        )
    return tally


def _bar(total: int) -> tqdm[Any]:
    return tqdm(
        total=total,
        unit="window",
        dynamic_ncols=True,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} windows [{elapsed}<{remaining}] {postfix}",
    )


def line(difference: Difference) -> str:
    """One difference on one line, as the table-less output prints it."""
    d = difference
    fields = ", ".join(f"{k} {p}/{i}" for k, (p, i) in d.fields.items())
    text = (
        f"{compare.day_text(d.day_ns)}  {d.database}/{d.retention_policy}/{d.measurement}  "
        f"{compare.series_text(d.tags)}  parquet {d.parquet_points}  influxdb {d.influx_points}"
        f"  fields (parquet/influxdb): {fields}"
    )
    if d.chunk_state not in compare.SETTLED:
        text += f"  chunk {d.chunk_state}"
    return text


def _emit(difference: Difference, as_json: bool) -> None:
    text = json.dumps(difference.to_json(), ensure_ascii=False) if as_json else line(difference)
    tqdm.write(text, file=sys.stdout)  # above the progress bar, which is drawn again


def _print_held(differences: Iterable[Difference], total: int, what: str) -> None:
    shown = list(differences)
    if not shown:
        return
    print(f"{total:,} difference(s) {what}:")
    for difference in shown:
        print(f"  {line(difference)}")
    if total > len(shown):
        print(f"  … {total - len(shown):,} more")


def _scrub(text: str) -> str:
    return logs.REDACTOR.scrub(text)
