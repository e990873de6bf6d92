"""The cost of ``lake:``: publishing N message flushes and M measurement chunks, lake off vs on.

    .venv/bin/python bench/lake.py [--flushes 20] [--chunks 4] [--runs 3] [--cycle-every 5]
        [--warmup 1] [--series 10] [--fields 5] [--step 60]

The same work is done twice, in the same script, each run a fresh child process, the four
kinds of child taking turns (messages off, messages on, chunks off, chunks on; each run
starts with another one, so none always follows the same):

- messages, off: ``--flushes`` times, a minute of records of the seven feeds that
  bench/poll_loss.py polls (the demo models: 20/s, 5/s, 1/s with 150 more every 20 s, 0.1/s,
  10/s, 2/s with 150 more every 30 s, 3/s: 3,216 records a minute, their real JSON bodies
  and keys) is inserted into a real store (``headlined.store.open_database``, one bulk
  ``INSERT ... SELECT`` from a file made beforehand, as the journal is applied in bulk) and
  then ``headlined.poll.parquet.flush_messages`` writes it (one file per source and day);
- export, off: a real export (headlined's ``Exporter`` with the default config but the paths,
  its helper and ``influx_inspect`` reading a real influxd's TSM files, the converter, the
  published chunks) of ``--chunks`` weeks of ``--series`` x ``--fields`` points a minute
  (made once with a real influxd, one line a point), as the daemon exports a history: the
  chunks are what it plans (one here);
- chunks, off: the converter alone, as before the export kind: ``--chunks`` times,
  ``influx_inspect export``-style line protocol (one field a line, sorted by series and
  field: ``--series`` x ``--fields`` x a 7-day chunk one point every ``--step`` s, 504,000
  lines by default) converted by the real converter (``headlined.influx.convert.convert``,
  layout "database", one thread as the daemon's exporter) and published into
  ``<influx>/<db>/<rp>/<measurement>/`` with ``durable.publish``; without influx_inspect's
  part of the work, its ratio is an upper bound of the export's;
- on: the same, plus a ``Publisher`` (local warehouse, SQLite catalog, both fresh in each run:
  the defaults of ``settings_from_config`` under a new state directory) whose ``cycle()``
  runs after every ``--cycle-every`` K flushes and every K chunks (and after the last),
  timed together with the work;
- in both modes, ``--warmup`` W flushes (chunks) come first, then (on) a cycle that creates
  the table, all timed apart and printed apart: a daemon creates its tables once and then
  publishes for months, so the ratio is the steady state's; ``--warmup 0`` times the
  table's creation in. K = 5 by default: the daemon's ``flush_interval`` is 60 s
  and its ``lake.interval`` 5 minutes. For chunks that is an upper bound: the daemon's
  exporter, going from chunk to chunk, makes more than 5 between two lake cycles, and each
  cycle pays its fixed cost (catalog, snapshot, manifests, a commit) once. The daemon also
  runs the lake on a thread of its own, beside the poller and the exporter, and one cycle
  covers both trees; here it runs in line with the work, a cycle per kind: upper bounds
  again.

The line protocol and the minutes of records are made once and cached under bench/.cache/.
Each child times its work with the wall clock and its process CPU time (every thread, and
any child process), the lake's ``cycle()`` separately, and reports its peak RSS (its own
ru_maxrss: the on runs carry pyiceberg, pyarrow, SQLAlchemy). Printed per kind and combined
(messages + export, run by run): the median and range of the off and on times, of the ratio
on/off (target <= 1.2), the lake's share of the on time, the CPU ratio, a cycle's time (and
whether it grows: the first quarter of a run's cycles against the last) and the peak RSS.
After the clock stops, each on run reads its Iceberg tables back with pyiceberg and checks
that they hold exactly the rows written locally (so a broken publisher cannot look fast),
and that no cycle reported an error or left files waiting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headlined import logs  # noqa: E402  after the path set-up above
from headlined.demo.model import FeedModel  # noqa: E402  as above
from headlined.demo.spec import FeedSpec, Shape  # noqa: E402  as above
from headlined.poll.records import record_key  # noqa: E402  as above

TARGET = 1.2  # issue 19, acceptance 5
KINDS = ("messages", "export", "chunks")
# What each kind times, for the report.
PER = {"messages": "flushes of a minute", "export": "weeks exported", "chunks": "chunks converted"}
MODES = ("off", "on")
DATABASE, RP, MEASUREMENT = "bench", "autogen", "air"
# 2026-12-01T08:00Z: the flushed minutes stay within one day, as most minutes do.
MINUTES_T0 = datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp()
CHUNKS_T0 = datetime(2024, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
# The seven feeds of bench/poll_loss.py (SEVEN), without their faults (no HTTP here).
FEEDS = [
    FeedSpec("f1", rate=20.0, shape=Shape.DATA, seed=1, t0=MINUTES_T0),
    FeedSpec("f2", rate=5.0, shape=Shape.RESULT_ITEMS, seed=2, t0=MINUTES_T0),
    FeedSpec("f3", rate=1.0, shape=Shape.BARE_LIST, burst=(20.0, 150), seed=3, t0=MINUTES_T0),
    FeedSpec("f4", rate=0.1, shape=Shape.NO_TIME, seed=4, t0=MINUTES_T0),
    FeedSpec("f5", rate=10.0, shape=Shape.DATA, seed=5, t0=MINUTES_T0),
    FeedSpec("f6", rate=2.0, shape=Shape.RESULT_ITEMS, burst=(30.0, 150), seed=6, t0=MINUTES_T0),
    FeedSpec("f7", rate=3.0, shape=Shape.NO_TIME, seed=7, t0=MINUTES_T0),
]
# Field name and how its value is written; the line protocol's types: float, integer, bool.
FIELDS: list[tuple[str, Callable[[float], str]]] = [
    ("pm25", lambda u: f"{8 + 40 * u * u:.2f}"),
    ("pm10", lambda u: f"{12 + 60 * u:.2f}"),
    ("temp", lambda u: f"{22 + 12 * u:.1f}"),
    ("hum", lambda u: f"{30 + int(65 * u)}i"),
    ("ok", lambda u: "true" if u < 0.95 else "false"),
    ("no2", lambda u: f"{5 + 50 * u:.3f}"),
    ("o3", lambda u: f"{10 + 80 * u:.3f}"),
]


# -- the input, made once ------------------------------------------------------------------


def minute_records(minute: int) -> list[dict[str, Any]]:
    """The records that the seven feeds brought in minute ``minute`` (0-based), as rows of
    the store: source, key, record time and first seen (epoch microseconds), JSON payload."""
    start, end = MINUTES_T0 + 60 * minute, MINUTES_T0 + 60 * (minute + 1)
    rows = []
    for spec in FEEDS:
        model = FeedModel(spec)
        first, last = model.arrivals_until(start), model.arrivals_until(end)
        for i, record in enumerate(model.records_between(first, last), first):
            at = model.arrival_time(i)
            rows.append(
                {
                    "source": spec.name,
                    "k": record_key(list(model.key_of(record))),
                    "t": None if spec.shape is Shape.NO_TIME else math.floor(at * 1e6),
                    "p": json.dumps(record, ensure_ascii=False, separators=(",", ":")),
                    "seen": math.floor(end * 1e6),
                }
            )
    return rows


def noise(series: int, i: int, field: str) -> float:
    """A deterministic value in [0, 1) for point ``i`` of ``series``' ``field``: so that
    Parquet sizes mean something, and every kind writes the same values."""
    return (series * 2_654_435_761 + i * 40_503 + len(field) * 7_919) % 10_007 / 10_007


def chunk_lines(index: int, series: int, fields: int, step: int) -> tuple[str, str, int]:
    """(file stem, line protocol, lines) of chunk ``index``: a 7-day chunk as
    ``influx_inspect export`` writes it, one field a line, by series, field and time."""
    start = CHUNKS_T0 + index * WEEK
    stem = f"{start:%Y%m%dT%H%M%SZ}_{start + WEEK:%Y%m%dT%H%M%SZ}"
    first_ns = int(start.timestamp()) * 10**9
    points = int(WEEK.total_seconds()) // step
    out: list[str] = []
    for s in range(series):
        key = f"{MEASUREMENT},city=Bangkok,station=st-{s:03d}"
        for name, value in FIELDS[:fields]:
            out.extend(
                f"{key} {name}={value(noise(s, i, name))} {first_ns + i * step * 10**9}"
                for i in range(points)
            )
    return stem, "\n".join(out) + "\n", len(out)


def influx_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """influxd's data and wal folders holding database ``bench``: ``--warmup`` + ``--chunks``
    weeks of the chunks' series, one line a point with every field (as an application
    writes them), flushed to TSM; made once with a real influxd and cached."""
    from tests.support.influxdb_server import running_influxd  # noqa: PLC0415  influxd

    weeks = args.warmup + args.chunks
    cache = (
        ROOT
        / "bench"
        / ".cache"
        / f"lake-influx-v1-{weeks}w-{args.series}x{args.fields}x{args.step}s"
    )
    done = cache / "complete"
    if not done.exists():
        print(f"making {cache} (once) ...", file=sys.stderr, flush=True)
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        with running_influxd(cache) as influx:
            influx.create_database(DATABASE)
            for week in range(weeks):
                for s in range(args.series):
                    influx.write(DATABASE, point_lines(week, s, args.fields, args.step))
            influx.flush_to_tsm(DATABASE)
            data_dir, wal_dir = influx.data_dir, influx.wal_dir
        done.write_text(f"{data_dir}\n{wal_dir}\n")
    data_dir, wal_dir = (Path(p) for p in done.read_text().split())
    return data_dir, wal_dir


def point_lines(week: int, series: int, fields: int, step: int) -> list[str]:
    """Week ``week`` of series ``series``: the values of chunk_lines, a line a point."""
    start = CHUNKS_T0 + week * WEEK
    first_ns = int(start.timestamp()) * 10**9
    key = f"{MEASUREMENT},city=Bangkok,station=st-{series:03d}"
    out = []
    for i in range(int(WEEK.total_seconds()) // step):
        values = []
        for name, value in FIELDS[:fields]:
            values.append(f"{name}={value(noise(series, i, name))}")
        out.append(f"{key} {','.join(values)} {first_ns + i * step * 10**9}")
    return out


def make_input(args: argparse.Namespace) -> Path:
    """The cached input: minutes/<n>.jsonl and chunks/<stem>.lp (the warm-up's first); made
    when missing."""
    flushes, chunks = args.flushes + args.warmup, args.chunks + args.warmup
    cache = (
        ROOT
        / "bench"
        / ".cache"
        / f"lake-v1-{flushes}m-{chunks}c-{args.series}x{args.fields}x{args.step}s"
    )
    if (cache / "done").exists():
        return cache
    print(f"making {cache} (once) ...", file=sys.stderr, flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    (cache / "minutes").mkdir(parents=True)
    (cache / "chunks").mkdir()
    for minute in range(flushes):
        rows = minute_records(minute)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (cache / "minutes" / f"{minute:05d}.jsonl").write_text(text, encoding="utf-8")
    for index in range(chunks):
        stem, text, _ = chunk_lines(index, args.series, args.fields, args.step)
        (cache / "chunks" / f"{stem}.lp").write_text(text, encoding="utf-8")
    (cache / "done").touch()
    return cache


# -- one measured run (a child process) ----------------------------------------------------


class Clock:
    """Wall and CPU seconds (every thread of this process, and its children) of what runs
    inside ``with``, added up."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.laps: list[float] = []

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> Clock:
        self._began = (time.perf_counter(), self._cpu())
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._began[0]
        self.wall += wall
        self.cpu += self._cpu() - self._began[1]
        self.laps.append(wall)


def child(
    mode: str,
    kind: str,
    cache: Path,
    work: Path,
    *,
    every: int,
    warmup: int,
    influx: tuple[Path, Path] | None = None,
    weeks: int = 0,
) -> dict[str, Any]:
    """Do one kind of work with the lake ``mode``, in ``work``: ``warmup`` flushes or chunks
    and a cycle (timed apart), then the rest with a cycle after every ``every`` (and after
    the last); its times and checks."""
    state = work / "state"
    messages_dir = work / "parquet" / "messages"
    influx_dir = work / "influx"
    publisher = None
    if mode == "on":
        # Imported when the lake is on only, as the daemon does.
        from headlined.lake.publisher import LakeSettings, Publisher  # noqa: PLC0415

        # settings_from_config's defaults under this run's (new) state directory.
        publisher = Publisher(
            LakeSettings(
                catalog_url=f"sqlite:///{state / 'lake' / 'catalog.db'}",
                warehouse=str(state / "lake" / "warehouse"),
                s3=None,
                site="bench",
                messages_dir=messages_dir if kind == "messages" else None,
                influx_dir=influx_dir if kind != "messages" else None,
                work_dir=state / "lake" / "work",
            )
        )
    total, lake, first, first_lake = Clock(), Clock(), Clock(), Clock()
    problems: list[str] = []

    def clock(index: int) -> Clock:
        return first if index < warmup else total

    def cycle(index: int, count: int) -> None:
        """After item ``index`` (0-based) of ``count``: a cycle at the end of the warm-up,
        after every ``every`` timed items, and after the last."""
        done = index + 1 - warmup
        if publisher is None or done < 0 or (done % every and index + 1 != count):
            return
        with first_lake if done == 0 else lake:
            result = publisher.cycle()
        if result.errors or result.waiting:
            problems.append(f"a cycle: errors {result.errors}, waiting {result.waiting}")

    if kind == "messages":
        rows = flushes(cache, work, clock, cycle)
    elif kind == "export":
        rows = exports(influx, work, clock, cycle, warmup=warmup, weeks=weeks)
    else:
        rows = chunks(cache, influx_dir, clock, cycle)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    local = local_rows(messages_dir if kind == "messages" else influx_dir)
    if local != rows:
        problems.append(f"{kind}: local Parquet holds {local} rows, {rows} written")
    lake_rows = None
    if publisher is not None:
        publisher.close()
        lake_rows = iceberg_rows(state, kind)
        if lake_rows != rows:
            problems.append(f"{kind}: the Iceberg table holds {lake_rows} rows, {rows} written")
    return {
        "wall": total.wall,
        "cpu": total.cpu,
        "lake_wall": lake.wall,
        "lake_cpu": lake.cpu,
        "cycles": lake.laps,
        "first_wall": first.wall,
        "first_cycle": first_lake.wall,
        "rows": rows,
        "lake_rows": lake_rows,
        "files": sum(
            1 for _ in (messages_dir if kind == "messages" else influx_dir).rglob("*.parquet")
        ),
        "rss": rss,
        "problems": problems,
    }


def flushes(
    cache: Path, work: Path, clock: Callable[[int], Clock], cycle: Callable[[int, int], None]
) -> int:
    """Each cached minute into a real store, flushed to Parquet, then ``cycle(index, count)``,
    timed by ``clock(index)``; the rows flushed."""
    from headlined.poll.parquet import flush_messages  # noqa: PLC0415  measured in the child
    from headlined.store import open_database  # noqa: PLC0415  as above

    rows = 0
    conn = open_database(work / "state" / "headlined.duckdb")
    try:
        minutes = sorted((cache / "minutes").glob("*.jsonl"))
        for index, minute in enumerate(minutes):
            with clock(index):
                conn.execute(
                    """INSERT INTO messages (source, record_key, record_time, payload, first_seen)
                       SELECT source, k, timezone('UTC', make_timestamp(t)), p,
                              timezone('UTC', make_timestamp(seen))
                       FROM read_json($1, format = 'newline_delimited', columns = {
                           source: 'VARCHAR', k: 'VARCHAR', t: 'BIGINT', p: 'VARCHAR',
                           seen: 'BIGINT'})""",
                    [str(minute)],
                )
                rows += flush_messages(conn, work / "parquet")
                cycle(index, len(minutes))
    finally:
        conn.close()
    return rows


def chunks(
    cache: Path, influx_dir: Path, clock: Callable[[int], Clock], cycle: Callable[[int, int], None]
) -> int:
    """Each cached chunk converted and published as the exporter does, then
    ``cycle(index, count)``, timed by ``clock(index)``; the rows written."""
    from headlined import durable  # noqa: PLC0415  measured in the child only
    from headlined.influx.convert import (  # noqa: PLC0415  as above
        STAGED,
        convert,
        published_name,
    )

    rows = 0
    sources = sorted((cache / "chunks").glob("*.lp"))
    for index, lp in enumerate(sources):
        with clock(index):
            stage = influx_dir / ".work" / lp.stem
            result = convert(
                lp,
                stage / "out",
                layout="database",
                file_stem=lp.stem,
                default_database=DATABASE,
                default_rp=RP,
                work_dir=stage / "duckdb",
                threads=1,
                suffix=STAGED,
            )
            for written in result.files:
                relative = written.relative_to(stage / "out")
                final = influx_dir / relative.parent / published_name(relative.name)
                final.parent.mkdir(parents=True, exist_ok=True)
                durable.publish(written, final)
            shutil.rmtree(stage)
            rows += result.points
            cycle(index, len(sources))
    return rows


def exports(
    influx: tuple[Path, Path] | None,
    work: Path,
    clock: Callable[[int], Clock],
    cycle: Callable[[int, int], None],
    *,
    warmup: int,
    weeks: int,
) -> int:
    """A real export (headlined's Exporter: its helper, influx_inspect on the TSM files, the
    converter, published chunks) of the first ``warmup`` weeks, then of the next ``weeks``,
    each followed by ``cycle``; the rows exported. The default config but the paths, as the
    daemon's first export of a history."""
    import asyncio  # noqa: PLC0415  measured in the child only

    from headlined.config import InfluxConfig  # noqa: PLC0415  as above
    from headlined.influx.exporter import Exporter  # noqa: PLC0415  as above
    from headlined.store import Store  # noqa: PLC0415  as above

    assert influx is not None
    data_dir, wal_dir = influx
    store = Store(work / "state" / "headlined.duckdb")

    async def export(end: datetime) -> int:
        cfg = InfluxConfig(
            data_dir=data_dir,
            wal_dir=wal_dir,
            output_dir=work / "influx",
            inspect_socket=None,
            databases=[DATABASE],
            start=CHUNKS_T0,
            end=end,
            follow=None,
        )
        exporter = Exporter(cfg, store)
        try:
            await exporter.plan()
            if not await exporter.run():
                raise SystemExit(f"the export did not complete: {exporter.failures}")
        finally:
            await exporter.close()
        return int(exporter.progress.rows)

    async def steps() -> int:
        await store.open()
        rows = 0
        try:
            # As items (clock, cycle): the warm-up's weeks end at item warmup - 1, the
            # timed weeks at the last item.
            for end in (warmup, warmup + weeks) if warmup else (weeks,):
                with clock(end - 1):
                    # The exporter's progress counts the rows of the chunks done before too.
                    rows = await export(CHUNKS_T0 + end * WEEK)
                    cycle(end - 1, warmup + weeks)
        finally:
            await store.close()
        return rows

    return asyncio.run(steps())


def local_rows(root: Path) -> int:
    """The rows of the Parquet files under ``root`` (footers only)."""
    import duckdb  # noqa: PLC0415  after the clock

    files = sorted(str(p) for p in root.rglob("*.parquet"))
    if not files:
        return 0
    con = duckdb.connect()
    try:
        found = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata($1)", [files])
        row = found.fetchone()
    finally:
        con.close()
    return int(row[0]) if row and row[0] is not None else 0


def iceberg_rows(state: Path, kind: str) -> int:
    """The rows an Iceberg client reads from the run's table (a full scan, with pyiceberg)."""
    from pyiceberg.catalog.sql import SqlCatalog  # noqa: PLC0415  after the clock

    catalog = SqlCatalog(
        "headlined",
        uri=f"sqlite:///{state / 'lake' / 'catalog.db'}",
        warehouse=(state / "lake" / "warehouse").as_uri(),
    )
    try:
        name = "headlined.messages" if kind == "messages" else f"{DATABASE}.{MEASUREMENT}"
        table = catalog.load_table(name)
        column = "record_key" if kind == "messages" else "time_ns"
        return int(table.scan(selected_fields=(column,)).to_arrow().num_rows)
    finally:
        catalog.engine.dispose()


def run(
    mode: str,
    kind: str,
    cache: Path,
    *,
    every: int,
    warmup: int,
    influx: tuple[Path, Path],
    weeks: int,
) -> dict[str, Any]:
    """One child process, in a new temporary directory."""
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / ".cache", prefix="lake-run-") as tmp:
        out = Path(tmp) / "result.json"
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                kind,
                str(cache),
                f"{tmp}/work",
                str(out),
                str(every),
                str(warmup),
                str(influx[0]),
                str(influx[1]),
                str(weeks),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the {mode} {kind} run failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- the report ------------------------------------------------------------------------------


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """``median (min-max)``."""
    fmt = f"{{:.{digits}f}}"
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return f"{fmt.format(statistics.median(values))}{unit} ({low}-{high})"


def report(
    label: str, off: list[dict[str, Any]], on: list[dict[str, Any]], per: str, count: int
) -> float:
    """Print one block (a kind, or both added run by run); return the median ratio."""
    ratio = [b["wall"] / a["wall"] for a, b in zip(off, on, strict=True)]
    cpu = [b["cpu"] / a["cpu"] for a, b in zip(off, on, strict=True)]
    share = [b["lake_wall"] / b["wall"] for b in on]
    cycles = [c for b in on for c in b["cycles"]]
    print(f"{label}: {count} {per}")
    print(f"  off: {spread([r['wall'] for r in off], ' s')}  CPU {spread([r['cpu'] for r in off])}")
    print(f"  on : {spread([r['wall'] for r in on], ' s')}  CPU {spread([r['cpu'] for r in on])}")
    print(f"  ratio on/off: {spread(ratio)}  (target <= {TARGET}); CPU ratio {spread(cpu)}")
    print(
        f"  the lake: {spread([r['lake_wall'] for r in on], ' s')} = {spread(share)} of the "
        f"on time; {len(on[0]['cycles'])} cycles a run, a cycle "
        f"{spread([1000 * c for c in cycles], ' ms', 0)}"
    )
    quarter = len(on[0]["cycles"]) // 4
    if quarter >= 2 and "rss" in on[0]:  # a kind's own runs: do its cycles grow?
        early = [1000 * c for b in on for c in b["cycles"][:quarter]]
        late = [1000 * c for b in on for c in b["cycles"][-quarter:]]
        print(
            f"  a cycle in the first quarter of a run {spread(early, ' ms', 0)}, "
            f"in the last {spread(late, ' ms', 0)}"
        )
    if all("first_wall" in r for r in off + on) and on[0]["first_wall"]:
        print(
            f"  the warm-up, apart: off {spread([r['first_wall'] for r in off], ' s')}, on "
            f"{spread([r['first_wall'] for r in on], ' s')}, of which its cycle (creating the "
            f"table) {spread([1000 * r['first_cycle'] for r in on], ' ms', 0)}"
        )
    if all("rss" in r for r in off + on):
        print(
            f"  peak RSS: off {max(r['rss'] for r in off) / 2**20:.0f} MiB, "
            f"on {max(r['rss'] for r in on) / 2**20:.0f} MiB"
        )
    return float(statistics.median(ratio))


def added(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two runs' times added up (messages + chunks of the same run)."""
    keys = ("wall", "cpu", "lake_wall", "lake_cpu")
    return {**{k: a[k] + b[k] for k in keys}, "cycles": a["cycles"] + b["cycles"]}


def main() -> None:
    """Print the benchmark report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flushes", type=int, default=20, help="minutes of records flushed")
    parser.add_argument("--chunks", type=int, default=4, help="7-day chunks converted")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--series", type=int, default=10, help="series of each chunk")
    parser.add_argument("--fields", type=int, default=5, choices=range(1, len(FIELDS) + 1))
    parser.add_argument("--step", type=int, default=60, help="seconds between points")
    parser.add_argument(
        "--cycle-every",
        type=int,
        default=5,
        metavar="K",
        help="a lake cycle after every K flushes and every K chunks (and after the last): "
        "a lake.interval K times the flush_interval (default 5: 5m and 60 s, the defaults)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        metavar="W",
        help="flushes and chunks done first, with a cycle that creates the tables, timed "
        "apart (a daemon creates its tables once and then publishes for months; default 1)",
    )
    parser.add_argument("--child", nargs=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, kind, cache, work, out, every, warmup, data_dir, wal_dir, weeks = args.child
        logs.configure("warning", sys.stderr)  # the store's migrations are no news here
        result = child(
            mode,
            kind,
            Path(cache),
            Path(work),
            every=int(every),
            warmup=int(warmup),
            influx=(Path(data_dir), Path(wal_dir)),
            weeks=int(weeks),
        )
        Path(out).write_text(json.dumps(result))
        return
    cache = make_input(args)
    influx = influx_data(args)
    order = [(mode, kind) for kind in KINDS for mode in MODES]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in order}
    started = time.perf_counter()
    for n in range(args.runs):
        for k in range(len(order)):
            mode, kind = order[(n + k) % len(order)]
            runs[mode, kind].append(
                run(
                    mode,
                    kind,
                    cache,
                    every=args.cycle_every,
                    warmup=args.warmup,
                    influx=influx,
                    weeks=args.chunks,
                )
            )
        print(f"  run {n + 1}/{args.runs} done", file=sys.stderr, flush=True)
    first = {kind: runs["on", kind][0] for kind in KINDS}
    print(
        f"{args.runs} runs of each, {time.perf_counter() - started:.0f} s; messages: "
        f"{first['messages']['rows']:,} records in {first['messages']['files']} files; weeks "
        f"exported and chunks converted: {first['chunks']['rows']:,} rows ({args.series} "
        f"series x {args.fields} fields x {int(WEEK.total_seconds()) // args.step} points a "
        f"week, {args.series * args.fields * int(WEEK.total_seconds()) // args.step:,} lines "
        f"a chunk) in {first['chunks']['files']} files; a lake cycle after every "
        + ("flush and every chunk" if args.cycle_every == 1 else f"{args.cycle_every} of each")
    )
    ratios = {}
    for kind in KINDS:
        count = args.flushes if kind == "messages" else args.chunks
        ratios[kind] = report(kind, runs["off", kind], runs["on", kind], PER[kind], count)
    both = {
        mode: [
            added(a, b) for a, b in zip(runs[mode, "messages"], runs[mode, "export"], strict=True)
        ]
        for mode in MODES
    }
    ratios["combined"] = report(
        "combined (messages + export, run by run)",
        both["off"],
        both["on"],
        "flushes and weeks",
        args.flushes + args.chunks,
    )
    print(
        "ratio on/off, medians: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
        + f"  (target <= {TARGET})"
    )
    problems = [p for result in (r for v in runs.values() for r in v) for p in result["problems"]]
    checked = sum(len(runs["on", kind]) for kind in KINDS)
    if problems:
        for problem in dict.fromkeys(problems):
            print(f"  FAIL {problem}")
        raise SystemExit(1)
    print(
        f"  ok   every on run's Iceberg tables read back the rows written locally "
        f"({checked} runs); no cycle reported an error or left files waiting"
    )


if __name__ == "__main__":
    main()
