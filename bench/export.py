"""End-to-end `headlined export` vs `influx_inspect export` alone, on a ≥ 2M-line database.

    .venv/bin/python bench/export.py [--series 400] [--points 1000] [--runs 3]

A real influxd is filled once (400 series x 1000 points x 5 fields = 2,000,000 exported
lines by default; cached under bench/.cache/) and stopped. Then, in the same script and on
the same files, best of ``--runs``:
- baseline: ``influx_inspect export -database big -out FILE`` (what it takes to get the text);
- ours: ``headlined export`` from an empty state (plan, export, convert, typed ZSTD Parquet).
Prints the time ratio (required ≤ 2.0, aim ≤ 1.3), the peak RSS of `headlined export`, and
the Parquet size against the line-protocol size.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.influxdb_server import running_influxd  # noqa: E402  after the path set-up above

BASE = 1_704_067_200 * 10**9


def sensor_line(series: int, i: int) -> str:
    """One point of a plausible sensor: noisy readings, so Parquet sizes mean something."""
    noise = (series * 2_654_435_761 + i * 40_503) % 10_007 / 10_007  # deterministic
    return (
        f"pm,id=s{series:04d},site=north\\ gate pm10={12 + 30 * noise:.2f},"
        f"pm25={8 + 20 * noise * noise:.2f},temp={24 + 6 * noise - i % 60 / 20:.1f},"
        f"hum={40 + int(50 * noise)}i,ok={'true' if noise < 0.9 else 'false'} "
        f"{BASE + i * 60 * 10**9}"
    )


def build(cache: Path, series: int, points: int) -> Path:
    """influxd's data, meta and wal folders holding the benchmark database (cached)."""
    done = cache / "complete"
    if done.exists():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    with running_influxd(cache) as influx:
        influx.create_database("big")
        for first in range(0, series, 20):
            lines = [
                sensor_line(s, i)
                for s in range(first, min(series, first + 20))
                for i in range(points)
            ]
            influx.write("big", lines)
        influx.flush_to_tsm("big")
        data_dir, wal_dir = influx.data_dir, influx.wal_dir
    done.write_text(f"{data_dir}\n{wal_dir}\n")
    return cache


def timed(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one child process, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{argv[0]} failed ({status}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", default="7d", help="influx.chunk (7d: the data is one chunk)")
    args = parser.parse_args()
    cache = build(
        ROOT / "bench" / ".cache" / f"influx-v2-{args.series}x{args.points}",
        args.series,
        args.points,
    )
    data_dir, wal_dir = (Path(p) for p in (cache / "complete").read_text().split())
    # An installed package has its bytecode; without it (PYTHONDONTWRITEBYTECODE, as on the
    # CI machines) every run would compile headlined again, about 0.14 s of its start-up.
    compileall.compile_dir(ROOT / "headlined", quiet=1)
    inspect = shutil.which("influx_inspect")
    if inspect is None:
        raise SystemExit("influx_inspect not found: run scripts/install-influxdb")
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / ".cache") as tmp:
        work = Path(tmp)
        lp = work / "export.lp"
        base_times = []
        for _ in range(args.runs):
            elapsed, _ = timed(
                [
                    inspect,
                    "export",
                    "-datadir",
                    str(data_dir),
                    "-waldir",
                    str(wal_dir),
                    "-database",
                    "big",
                    "-out",
                    str(lp),
                ]
            )
            base_times.append(elapsed)
        lines = sum(1 for line in lp.open("rb") if not line.startswith((b"#", b"CREATE")))
        lp_bytes = lp.stat().st_size
        ours_times, peak = [], 0
        for run in range(args.runs):
            state = work / f"run{run}"
            config = state / "headlined.yaml"
            state.mkdir()
            config.write_text(
                yaml.safe_dump(
                    {
                        "state_dir": str(state / "state"),
                        "log_level": "warning",
                        "influx": {
                            "data_dir": str(data_dir),
                            "wal_dir": str(wal_dir),
                            "output_dir": str(state / "out"),
                            "chunk": args.chunk,
                        },
                    }
                )
            )
            elapsed, rss = timed([sys.executable, "-m", "headlined", "export", "-c", str(config)])
            ours_times.append(elapsed)
            peak = max(peak, rss)
        parquet = sum(p.stat().st_size for p in (work / "run0" / "out").rglob("*.parquet"))
    base, ours = min(base_times), min(ours_times)
    print(
        f"database: {args.series} series x {args.points} points x 5 fields = {lines:,} lines "
        f"({lp_bytes / 1e6:.0f} MB of line protocol)"
    )
    print(f"influx_inspect export alone : {base:6.2f} s  ({lines / base:,.0f} lines/s)")
    print(f"headlined export end to end : {ours:6.2f} s  ({lines / ours:,.0f} lines/s)")
    print(f"ratio headlined / influx_inspect: {ours / base:.2f}  (required <= 2.0, aim <= 1.3)")
    print(f"peak RSS of headlined export: {peak / 1024:.0f} MB")
    print(f"Parquet {parquet / 1e6:.1f} MB = {parquet / lp_bytes:.1%} of the line protocol")


if __name__ == "__main__":
    main()
