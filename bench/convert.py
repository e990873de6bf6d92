"""Benchmark headlined.influx.convert on a real influx_inspect export.

    .venv/bin/python bench/convert.py [--lines N] [--repeat 3] [--threads T]

The input is a real export: a throwaway influxd (tests/support/influxdb_server.py) is filled with
sensor-like data (400 series x 1000 points x 5 fields: 2,000,000 field values, 90% flushed to
TSM, the rest left in the WAL) and exported with influx_inspect.  The export is cached under
bench/.cache/, so later runs skip this.  With --lines N above that, a bigger input is made by
repeating the export's data lines with their timestamps shifted past the previous copy (cached
too).

Measured on the same input, each in a fresh child process, best of --repeat runs:
  baseline  the method used before: DuckDB read_csv of each line into one VARCHAR column plus
            regexp_extract of its timestamp, written to ZSTD Parquet, no parsing;
  convert   headlined.influx.convert.convert (its peak RSS is the child's own high-water mark);
  parse     lineprotocol.parse per line, timed on a 200,000-line sample and extrapolated.
It prints throughput, the ratios against the targets (convert vs baseline >= 0.7x, aim 1.2x;
convert vs parse >= 5x), Parquet sizes (convert's <= 40% of the raw-line Parquet) and peak RSS
(<= 1 GB).  The machine may be noisy: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from headlined.influx.convert import convert
from headlined.lineprotocol import parse

ROOT = Path(__file__).resolve().parent.parent

CACHE = ROOT / "bench" / ".cache"
EXPORT = CACHE / "export-2M.lp"
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
STEP = 60 * 10**9
SERIES = 400
POINTS = 1000
FIELDS = 5
SAMPLE_LINES = 200_000
GIB = 1 << 30


# --------------------------------------------------------------------------
# Input


def sensor_lines() -> list[list[str]]:
    """Line protocol for each time step: every series' point with 5 fields (random walks)."""
    rnd = random.Random(20240101)  # noqa: S311 - reproducible synthetic data, not security
    keys = [f"pm,id=db{i:03d},model=v2\\ x,site=s{i % 17:02d}" for i in range(SERIES)]
    state = [
        [rnd.uniform(5, 80), rnd.uniform(2, 40), rnd.uniform(20, 35), rnd.uniform(40, 90)]
        for _ in keys
    ]
    steps = []
    for step in range(POINTS):
        lines = []
        for key, values in zip(keys, state, strict=True):
            values[0] = max(0.0, values[0] + rnd.gauss(0, 2))
            values[1] = max(0.0, values[1] + rnd.gauss(0, 1))
            values[2] += rnd.gauss(0, 0.2)
            values[3] = min(100.0, max(0.0, values[3] + rnd.gauss(0, 1)))
            ok = "true" if values[0] < 150 else "false"
            lines.append(
                f"{key} pm10={values[0]:.2f},pm25={values[1]:.2f},temp={values[2]:.1f},"
                f"rh={round(values[3])}i,ok={ok} {T0 + step * STEP}"
            )
        steps.append(lines)
    return steps


def make_export() -> Path:
    """The cached real export, made with influxd and influx_inspect when missing."""
    if EXPORT.exists():
        return EXPORT
    # The test helper lives in the repository, not in the installed package.
    sys.path.insert(0, str(ROOT))
    from tests.support.influxdb_server import find_binary, running_influxd  # noqa: PLC0415

    inspect = find_binary("influx_inspect")
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"making {EXPORT} with a real influxd (once) ...", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-influxd-") as tmp,
        running_influxd(Path(tmp)) as server,
    ):
        server.create_database("dustboy")
        batch: list[str] = []
        for step, lines in enumerate(sensor_lines()):
            batch += lines
            if len(batch) >= 20_000:
                server.write("dustboy", batch)
                batch = []
            if step == POINTS * 9 // 10:  # the last 10% stay in the WAL
                server.write("dustboy", batch)
                batch = []
                server.flush_to_tsm("dustboy")
        server.write("dustboy", batch)
        partial = EXPORT.with_suffix(".part")
        subprocess.run(
            [
                inspect,
                "export",
                "-datadir",
                str(server.data_dir),
                "-waldir",
                str(server.wal_dir),
                "-out",
                str(partial),
                "-database",
                "dustboy",
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        partial.rename(EXPORT)
    return EXPORT


def make_bigger(export: Path, lines: int) -> Path:
    """`lines` data lines: the export's, repeated with timestamps shifted past each copy."""
    target = CACHE / f"export-{lines}.lp"
    if target.exists():
        return target
    print(f"making {target} (once) ...", flush=True)
    shift = POINTS * STEP
    partial = target.with_suffix(".part")
    with partial.open("w", encoding="utf-8") as out:
        written, copy = 0, 0
        while written < lines:
            with export.open(encoding="utf-8") as source:
                for line in source:
                    if line.startswith(("#", "CREATE")):
                        if copy == 0:
                            out.write(line)  # the header, once (and the section comments)
                        continue
                    rest, stamp = line.rsplit(" ", 1)
                    out.write(f"{rest} {int(stamp) + copy * shift}\n")
                    written += 1
                    if written == lines:
                        break
            copy += 1
    partial.rename(target)
    return target


def data_lines(path: Path) -> int:
    """Lines that are neither comments nor DDL."""
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            count += not line.startswith((b"#", b"CREATE "))
    return count


# --------------------------------------------------------------------------
# Measurements (each in a child process: clean memory, its own peak RSS)


def child(kind: str, source: Path, out: Path, threads: int) -> dict[str, float]:
    """Run one measurement here (the child) and return seconds, peak RSS and output bytes."""
    started = time.perf_counter()
    if kind == "baseline":
        con = duckdb.connect(config={"threads": threads, "memory_limit": "512MB"})
        out.mkdir(parents=True, exist_ok=True)
        con.execute(
            "COPY (SELECT line, TRY_CAST(regexp_extract(line, ' (-?[0-9]+)$', 1) AS BIGINT) AS ts "
            "FROM read_csv(?, columns={'line': 'VARCHAR'}, header=false, auto_detect=false, "
            "quote='', escape='', delim=chr(1), strict_mode=false)) "
            f"TO '{out / 'raw.parquet'}' (FORMAT parquet, COMPRESSION zstd)",
            [str(source)],
        )
    else:
        result = convert(source, out, threads=threads)
        assert result.rejected == 0, result
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {"seconds": seconds, "rss": peak_rss(), "bytes": size}


def peak_rss() -> float:
    """Bytes at the high-water mark of this process's resident set.

    VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child started by a big
    parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def measure(kind: str, source: Path, threads: int, repeat: int) -> dict[str, float]:
    """Best time of `repeat` child runs (with the peak RSS and output size of that run)."""
    best: dict[str, float] | None = None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-out-", dir=CACHE) as out:
            done = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(source), out, str(threads)],
                check=True,
                capture_output=True,
                text=True,
            )
        run = json.loads(done.stdout.strip().splitlines()[-1])
        if best is None or run["seconds"] < best["seconds"]:
            best = run
    assert best is not None
    return best


def parse_rate(source: Path) -> float:
    """Lines per second of lineprotocol.parse on the first SAMPLE_LINES data lines."""
    sample = []
    with source.open(encoding="utf-8") as stream:
        for line in stream:
            if not line.startswith(("#", "CREATE")):
                sample.append(line)
                if len(sample) == SAMPLE_LINES:
                    break
    text = "".join(sample)
    started = time.perf_counter()
    points = parse(text)
    seconds = time.perf_counter() - started
    assert len(points) == len(sample)
    return len(sample) / seconds


def main() -> None:
    """Print the benchmark report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=SERIES * POINTS * FIELDS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, source, out, threads = args.child
        print(json.dumps(child(kind, Path(source), Path(out), int(threads))))
        return

    export = make_export()
    source = export if args.lines <= SERIES * POINTS * FIELDS else make_bigger(export, args.lines)
    lines = data_lines(source)
    print(
        f"input: {source.name}: {lines:,} data lines, {source.stat().st_size / 1e6:.0f} MB; "
        f"{args.threads} threads, best of {args.repeat}"
    )
    baseline = measure("baseline", source, args.threads, args.repeat)
    ours = measure("convert", source, args.threads, args.repeat)
    per_line = parse_rate(source)
    rate = {
        name: lines / run["seconds"] for name, run in (("baseline", baseline), ("convert", ours))
    }
    print(
        f"  baseline (raw lines + time)  {baseline['seconds']:6.2f} s  "
        f"{rate['baseline']:>12,.0f} lines/s  Parquet {baseline['bytes'] / 1e6:7.1f} MB  "
        f"peak RSS {baseline['rss'] / 1e6:5.0f} MB"
    )
    print(
        f"  convert                      {ours['seconds']:6.2f} s  "
        f"{rate['convert']:>12,.0f} lines/s  Parquet {ours['bytes'] / 1e6:7.1f} MB  "
        f"peak RSS {ours['rss'] / 1e6:5.0f} MB"
    )
    print(
        f"  parse() per line             {lines / per_line:6.2f} s  {per_line:>12,.0f} lines/s"
        f"  (timed on {SAMPLE_LINES:,} lines, extrapolated)"
    )
    vs_baseline = rate["convert"] / rate["baseline"]
    vs_parse = rate["convert"] / per_line
    size_ratio = ours["bytes"] / baseline["bytes"]
    checks = [
        (
            f"convert vs baseline {vs_baseline:.2f}x (required >= 0.7x, aim 1.2x)",
            vs_baseline >= 0.7,
        ),
        (f"convert vs parse() {vs_parse:.1f}x (required >= 5x)", vs_parse >= 5),
        (
            f"Parquet size {size_ratio:.0%} of the raw-line Parquet (required <= 40%)",
            size_ratio <= 0.4,
        ),
        (f"peak RSS {ours['rss'] / GIB:.2f} GiB (required <= 1 GiB)", ours["rss"] <= GIB),
    ]
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    shutil.rmtree(CACHE / "tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
