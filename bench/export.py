"""End-to-end `headlined export` vs `influx_inspect export` alone, on two databases.

    .venv/bin/python bench/export.py [--databases sparse,dense] [--runs 3] [--chunk DURATION]
        [--set KEY=VALUE ...]                               # other influx settings
        [--stations 12] [--years 4] [--first-year 2013]     # sparse
        [--series 2000] [--points 1000]                     # dense
        [--tree OTHER_TREE ...]                             # also measure a changed copy
        [--settle 0.9]                        # wait for an idle machine before each run

Two real influxd databases are filled once each (cached under bench/.cache/) and stopped:
- sparse: ``--stations`` air-quality stations x 6 fields (pm25, pm10, no2, o3, temp, hum),
  one point an hour for ``--years`` years from 1 January of ``--first-year`` (12 x 4 from
  2013: about 2.5M exported lines), with outages; InfluxDB's default 7-day shards, so
  the data lies in ~200 shards;
- dense: ``--series`` series x ``--points`` points (a minute apart) x 5 fields
  (2000 x 1000 = 10,000,000 exported lines, within 17 hours: one default shard).
Then, per database, in the same script and on the same files, runs alternating, best of
``--runs``:
- baseline: ``influx_inspect export -database DB -out FILE`` (what it takes to get the text);
- ours: ``headlined export`` from an empty state (plan, export, convert, typed ZSTD Parquet),
  with the default config: no ``chunk:`` unless ``--chunk`` is given (nor any other
  influx setting but the paths, unless ``--set``), so the chunks are whatever headlined
  plans by default (counted from ``export_chunks`` afterwards).
Prints per database the times and their ratio (target <= 1.5; best against best, and each
run against the baseline of its run, with their median), the least CPU time (user +
system, children included) a run took (a busy machine disturbs it less than the time), the
chunks run, the peak RSS of `headlined export` (its largest process: wait4's ru_maxrss
covers its children, the helper and influx_inspect), the Parquet size against the
line-protocol size, and the Parquet rows against the points written. ``headlined export``
runs in the tree beside this script (as its working directory, and first on PYTHONPATH), so
a copy of the tree benchmarks its own code; each ``--tree`` (another copy, e.g. a git
worktree with a change) is measured in the same runs, the variants taking turns, each with
its own lines. ``--settle`` waits for others' load to pass before each run.
"""

from __future__ import annotations

import argparse
import compileall
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.influxdb_server import (  # noqa: E402  after the path set-up above
    RunningInflux,
    running_influxd,
)

BASE = 1_704_067_200 * 10**9
TARGET = 1.5  # the ratio, for both databases
HOUR_NS = 3600 * 10**9


@dataclass(frozen=True)
class Database:
    """A cached influxd data set: where it is, and what was written to it."""

    kind: str  # "sparse" or "dense"
    name: str  # the InfluxDB database
    describe: str
    data_dir: Path
    wal_dir: Path
    points: int  # points written (distinct series and time): the Parquet rows expected


def sensor_line(series: int, i: int) -> str:
    """One point of a plausible sensor: noisy readings, so Parquet sizes mean something."""
    noise = (series * 2_654_435_761 + i * 40_503) % 10_007 / 10_007  # deterministic
    return (
        f"pm,id=s{series:04d},site=north\\ gate pm10={12 + 30 * noise:.2f},"
        f"pm25={8 + 20 * noise * noise:.2f},temp={24 + 6 * noise - i % 60 / 20:.1f},"
        f"hum={40 + int(50 * noise)}i,ok={'true' if noise < 0.9 else 'false'} "
        f"{BASE + i * 60 * 10**9}"
    )


STATIONS = [
    ("bkk01", "Bangkok", "roadside"),
    ("bkk02", "Bangkok", "urban"),
    ("bkk03", "Bangkok", "suburban"),
    ("cnx01", "Chiang Mai", "urban"),
    ("cnx02", "Chiang Mai", "rural"),
    ("cri01", "Chiang Rai", "urban"),
    ("kkn01", "Khon Kaen", "urban"),
    ("nma01", "Nakhon Ratchasima", "urban"),
    ("ryg01", "Rayong", "industrial"),
    ("ryg02", "Rayong", "roadside"),
    ("hdy01", "Hat Yai", "urban"),
    ("pkt01", "Phuket", "coastal"),
]


def air_lines(stations: int, first_year: int, years: int) -> tuple[list[list[str]], int]:
    """Hourly air-quality points of ``stations`` stations: (batches of lines, points).

    Seasonal and daily cycles, autocorrelated noise, outages of 1-72 h (about 2% of the
    hours), and no ozone at every fourth station: deterministic (seeded).
    """
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(first_year + years, 1, 1, tzinfo=UTC)
    hours = int((end - start).total_seconds()) // 3600
    first_s = int(start.timestamp())
    rng = random.Random(20130101)  # noqa: S311  data, not secrets
    names = [
        (
            STATIONS[s % len(STATIONS)][0] + ("" if s < len(STATIONS) else f"-{s}"),
            STATIONS[s % len(STATIONS)][1].replace(" ", "\\ "),
            STATIONS[s % len(STATIONS)][2],
        )
        for s in range(stations)
    ]
    level = [8 + 10 * rng.random() for _ in range(stations)]  # the station's usual PM2.5
    drift = [0.0] * stations
    down = [0] * stations  # hours of outage left
    batches, batch, points = [], [], 0
    for h in range(hours):
        day = (h / 24) % 365.25 / 365.25  # fraction of the year
        hod = h % 24
        dry = 1 + 1.2 * max(0.0, math.cos(2 * math.pi * (day - 0.15)))  # Feb-Mar haze
        rush = 1 + 0.35 * (math.exp(-((hod - 8) ** 2) / 6) + math.exp(-((hod - 18) ** 2) / 8))
        sun = max(0.0, math.sin(math.pi * (hod - 6) / 12))
        for s, (station, city, kind) in enumerate(names):
            if down[s]:
                down[s] -= 1
                continue
            if rng.random() < 0.0003:
                down[s] = rng.randint(1, 72)
                continue
            drift[s] = 0.92 * drift[s] + rng.gauss(0, 1.6)
            pm25 = max(0.5, level[s] * dry * rush + 2.5 * drift[s])
            pm10 = pm25 * (1.35 + 0.25 * rng.random()) + rng.gauss(0, 2)
            no2 = max(0.5, 14 * rush + 3 * drift[s] + rng.gauss(0, 3))
            temp = 27 + 4 * math.sin(2 * math.pi * (day - 0.25)) + 5 * sun + rng.gauss(0, 0.6)
            hum = 78 - 25 * sun + 8 * math.cos(2 * math.pi * day) + 3 * (s % 5) + rng.gauss(0, 3)
            hum = min(100, max(20, round(hum)))
            fields = f"pm25={pm25:.1f},pm10={max(pm25, pm10):.1f},no2={no2:.1f}"
            if s % 4 != 3:
                o3 = max(0.5, 8 + 38 * sun * (1.3 - 0.3 * dry) + rng.gauss(0, 4))
                fields += f",o3={o3:.1f}"
            fields += f",temp={temp:.2f},hum={hum}i"
            batch.append(
                f"air,station={station},city={city},type={kind} {fields} {first_s + h * 3600}"
            )
            points += 1
        if len(batch) >= 20_000:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches, points


def build(cache: Path, db: str, fill: Callable[[RunningInflux], int]) -> tuple[Path, Path, int]:
    """influxd's data, meta and wal folders holding ``db``, filled by ``fill`` (cached):
    (data dir, wal dir, points written, as ``fill`` returned them)."""
    done = cache / "complete"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        started = time.perf_counter()
        print(f"building {cache.name} (once) ...", file=sys.stderr, flush=True)
        with running_influxd(cache) as influx:
            influx.create_database(db)
            points = fill(influx)
            influx.flush_to_tsm(db)
            data_dir, wal_dir = influx.data_dir, influx.wal_dir
        (cache / "points").write_text(f"{points}\n")
        done.write_text(f"{data_dir}\n{wal_dir}\n")  # last: the mark of a complete build
        print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    data_dir, wal_dir = (Path(p) for p in done.read_text().split())
    points_file = cache / "points"  # absent from caches built before it was written
    return data_dir, wal_dir, int(points_file.read_text()) if points_file.exists() else -1


def dense(args: argparse.Namespace) -> Database:
    """``--series`` x ``--points`` x 5 fields, a minute apart."""
    series, points = int(args.series), int(args.points)

    def fill(influx: RunningInflux) -> int:
        for first in range(0, series, 20):
            lines = [
                sensor_line(s, i)
                for s in range(first, min(series, first + 20))
                for i in range(points)
            ]
            influx.write("big", lines)
        return series * points

    cache = ROOT / "bench" / ".cache" / f"influx-v2-{series}x{points}"
    data_dir, wal_dir, _ = build(cache, "big", fill)
    return Database(
        "dense",
        "big",
        f"{series} series x {points} points (a minute apart) x 5 fields",
        data_dir,
        wal_dir,
        series * points,
    )


def sparse(args: argparse.Namespace) -> Database:
    """``--stations`` x 6 fields, hourly, ``--years`` years: many 7-day shards."""

    def fill(influx: RunningInflux) -> int:
        batches, points = air_lines(args.stations, args.first_year, args.years)
        for batch in batches:
            influx.write("air", batch, precision="s")
        return points

    cache = (
        ROOT
        / "bench"
        / ".cache"
        / f"influx-sparse-v1-{args.stations}x{args.years}y{args.first_year}"
    )
    data_dir, wal_dir, points = build(cache, "air", fill)
    return Database(
        "sparse",
        "air",
        f"{args.stations} stations x 6 fields, hourly, "
        f"{args.first_year}-01-01..{args.first_year + args.years}-01-01",
        data_dir,
        wal_dir,
        points,
    )


def idle_share(seconds: float) -> float:
    """The share of the machine's CPU time that was idle over the next ``seconds``."""

    def sample() -> tuple[int, int]:
        with Path("/proc/stat").open(encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    idle, total = sample()
    time.sleep(seconds)
    idle2, total2 = sample()
    return (idle2 - idle) / max(1, total2 - total)


@dataclass
class Settle:
    """``--settle``: wait before each run until the machine is nearly idle (others' load)."""

    idle: float  # the share of idle CPU to wait for; 0: never wait
    limit: float = 120.0  # seconds at most per run
    waited: float = 0.0
    busy_starts: int = 0

    def __call__(self) -> None:
        if not self.idle:
            return
        started = time.perf_counter()
        while idle_share(0.5) < self.idle:
            if time.perf_counter() - started > self.limit:
                self.busy_starts += 1
                break
        self.waited += time.perf_counter() - started

    def report(self) -> str:
        if not self.idle:
            return ""
        busy = f"; {self.busy_starts} run(s) started busy all the same" if self.busy_starts else ""
        return f"waited {self.waited:.0f} s for a machine {self.idle:.0%} idle{busy}"


@dataclass(frozen=True)
class Timing:
    """One run of a child process."""

    wall: float  # seconds
    cpu: float  # user + system seconds of it and the children it waited for
    peak: int  # KiB, its largest process's peak RSS


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Timing:
    """How one child process ran; it must succeed."""
    # stderr into a file, not a pipe: a long run's progress bar would fill a pipe and stall.
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        if status != 0:
            err.seek(0)
            text = err.read().decode(errors="replace")
            raise SystemExit(f"{argv[0]} failed ({status}): {text[-2000:]}")
    return Timing(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def write_config(state: Path, db: Database, chunk: str | None, settings: list[str]) -> Path:
    """A config for ``headlined export`` of ``db``: the defaults but for the paths, ``chunk``
    and ``settings`` (``KEY=VALUE`` of the influx section, the value read as YAML)."""
    influx: dict[str, object] = {
        "data_dir": str(db.data_dir),
        "wal_dir": str(db.wal_dir),
        "output_dir": str(state / "out"),
        "inspect_socket": None,  # a local helper, whatever this machine has installed
    }
    if chunk is not None:
        influx["chunk"] = chunk
    for setting in settings:
        key, _, value = setting.partition("=")
        influx[key.strip()] = yaml.safe_load(value)
    config = state / "headlined.yaml"
    state.mkdir()
    config.write_text(
        yaml.safe_dump(
            {"state_dir": str(state / "state"), "log_level": "warning", "influx": influx}
        )
    )
    return config


def chunks_run(state: Path) -> str:
    """How many chunks the run planned (from ``export_chunks``), as text."""
    try:
        con = duckdb.connect(str(state / "state" / "headlined.duckdb"), read_only=True)
        try:
            total, done = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM export_chunks"
            ).fetchone()  # type: ignore[misc]
        finally:
            con.close()
    except duckdb.Error as exc:
        return f"? ({exc})"
    return f"{total}" if total == done else f"{total} ({done} done)"


def parquet_rows(out: Path) -> tuple[int, int]:
    """(bytes, rows) of the Parquet files under ``out``."""
    files = sorted(out.rglob("*.parquet"))
    if not files:
        return 0, 0
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    con = duckdb.connect()
    try:
        found = con.execute(f"SELECT sum(num_rows) FROM parquet_file_metadata([{listed}])")
        rows = found.fetchone()
    finally:
        con.close()
    return sum(f.stat().st_size for f in files), int(rows[0]) if rows else 0


def spread(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


@dataclass
class Variant:
    """A headlined tree being measured: its times, peak RSS and first run's output."""

    tree: Path
    label: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak: int = 0
    chunks: str = ""
    out: Path | None = None

    def env(self) -> dict[str, str]:
        """The environment its ``headlined export`` runs in: its tree first on the path."""
        path = [str(self.tree), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def measure(
    db: Database, args: argparse.Namespace, inspect: str, variants: list[Variant], settle: Settle
) -> float:
    """Baseline and each variant on ``db``, runs alternating; prints the block; returns the
    ratio of the first variant (the tree beside this script)."""
    for variant in variants:
        variant.times, variant.cpu, variant.peak, variant.chunks = [], [], 0, ""
        variant.out = None
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / ".cache") as tmp:
        work = Path(tmp)
        lp = work / "export.lp"
        dirs = ["-datadir", str(db.data_dir), "-waldir", str(db.wal_dir)]
        base_times, base_cpu = [], []
        for run in range(args.runs):
            lp.unlink(missing_ok=True)
            settle()
            run_base = timed([inspect, "export", *dirs, "-database", db.name, "-out", str(lp)])
            base_times.append(run_base.wall)
            base_cpu.append(run_base.cpu)
            # Each run starts with another variant, so none always follows the baseline.
            for k in range(len(variants)):
                n = (run + k) % len(variants)
                variant = variants[n]
                state = work / f"v{n}-run{run}"
                config = write_config(state, db, args.chunk, args.set)
                argv = [sys.executable, "-m", "headlined", "export", "-c", str(config)]
                settle()
                # In its tree: `python -m` looks in the working directory before PYTHONPATH.
                run_ours = timed(argv, variant.env(), variant.tree)
                variant.times.append(run_ours.wall)
                variant.cpu.append(run_ours.cpu)
                variant.peak = max(variant.peak, run_ours.peak)
                variant.chunks = chunks_run(state)
                if variant.out is None:  # keep the first run's output to look at
                    variant.out = state / "out"
                else:  # and free the disk of the others
                    shutil.rmtree(state / "out", ignore_errors=True)
        lines = sum(1 for line in lp.open("rb") if not line.startswith((b"#", b"CREATE")))
        lp_bytes = lp.stat().st_size
        outputs = [parquet_rows(v.out) if v.out is not None else (0, 0) for v in variants]
    base = min(base_times)
    print(f"{db.kind}: {db.describe} = {lines:,} lines ({lp_bytes / 1e6:.0f} MB of line protocol)")
    print(f"influx_inspect export alone : {base:6.2f} s  ({rate(lines, base_times, base_cpu)})")
    for variant, (parquet, rows) in zip(variants, outputs, strict=True):
        ours = min(variant.times)
        label = f" [{variant.label}]" if len(variants) > 1 else ""
        if rows == db.points:
            check = "= the points written"
        else:
            check = f"!= the {db.points:,} points written" if db.points >= 0 else "(points unknown)"
        share = parquet / lp_bytes
        runs = rate(lines, variant.times, variant.cpu)
        print(f"headlined export end to end{label} : {ours:6.2f} s  ({runs})")
        print(f"ratio headlined / influx_inspect{label}: {ours / base:.2f}  (target <= {TARGET})")
        paired = sorted(t / b for t, b in zip(variant.times, base_times, strict=True))
        print(
            f"ratio per run (each against the baseline of its run){label}: "
            f"{spread(paired)}; median {statistics.median(paired):.2f}"
        )
        print(f"chunks run by headlined export{label}: {variant.chunks}")
        print(f"peak RSS of headlined export{label}: {variant.peak / 1024:.0f} MB")
        print(
            f"Parquet{label} {parquet / 1e6:.1f} MB = {share:.1%} of the line protocol; "
            f"{rows:,} rows {check}"
        )
    sys.stdout.flush()
    return min(variants[0].times) / base


def rate(lines: int, times: list[float], cpu: list[float]) -> str:
    """Lines/s of the best run, every run's time, and the least CPU time a run took."""
    return f"{lines / min(times):,.0f} lines/s; runs: {spread(times)}; CPU {min(cpu):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sparse,dense", help="which, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--chunk", default=None, help="influx.chunk (default: none set, headlined's default)"
    )
    parser.add_argument("--stations", type=int, default=12, help="sparse: stations")
    parser.add_argument("--years", type=int, default=4, help="sparse: years of hourly points")
    parser.add_argument("--first-year", type=int, default=2013, help="sparse: from 1 January")
    parser.add_argument("--series", type=int, default=2000, help="dense: series")
    parser.add_argument("--points", type=int, default=1000, help="dense: points per series")
    parser.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        help="also measure the headlined of this source tree (a copy with a change), "
        "alternating with this one; repeatable",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an influx setting for every run, e.g. chunk_points=20000000; repeatable",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="before each run, wait (2 min at most) until this share of the CPU is idle, "
        "e.g. 0.9 on a machine that others' tests share (default 0: never wait)",
    )
    args = parser.parse_args()
    makers = {"sparse": sparse, "dense": dense}
    chosen = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(chosen) - makers.keys()
    if unknown or not chosen:
        raise SystemExit(f"--databases: choose from {', '.join(makers)}, not {args.databases!r}")
    databases = [makers[name](args) for name in chosen]
    # An installed package has its bytecode; without it (PYTHONDONTWRITEBYTECODE, as on the
    # CI machines) every run would compile headlined again, about 0.14 s of its start-up.
    variants = [Variant(ROOT, "this tree")]
    variants += [Variant(tree.resolve(), str(tree)) for tree in args.tree]
    for variant in variants:
        if not (variant.tree / "headlined" / "__main__.py").is_file():
            raise SystemExit(f"--tree {variant.tree}: no headlined/ in it")
        compileall.compile_dir(variant.tree / "headlined", quiet=1)
        probe = [sys.executable, "-c", "import headlined; print(headlined.__file__)"]
        found = subprocess.run(
            probe, env=variant.env(), cwd=variant.tree, capture_output=True, text=True, check=True
        ).stdout.strip()
        if not Path(found).resolve().is_relative_to(variant.tree):
            raise SystemExit(f"{variant.tree}: its runs would import {found}")
    inspect = shutil.which("influx_inspect")
    if inspect is None:
        raise SystemExit("influx_inspect not found: run scripts/install-influxdb")
    settle = Settle(args.settle)
    ratios = {}
    for n, db in enumerate(databases):
        if n:
            print()
        ratios[db.kind] = measure(db, args, inspect, variants, settle)
    if len(ratios) > 1:
        print()
        print(
            "ratios: "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            + f"  (target <= {TARGET} each)"
        )
    if args.settle:
        print(settle.report())


if __name__ == "__main__":
    main()
