"""`headlined coverage`'s series analysis vs a plain DuckDB count of the same Parquet files.

    .venv/bin/python bench/coverage.py [--series 50] [--years 2] [--step 300] [--runs 5]
        [--threads 2]

The input is an export in the exporter's layout (``<db>/<rp>/<measurement>/<chunk>.parquet``,
one file per 7-day chunk, rows sorted by series then time, ZSTD, written by DuckDB as the
converter writes them), made once and cached under bench/.cache/: ``--series`` series one
point every ``--step`` seconds for ``--years`` years (50 x 2 years x 5 minutes: 10,483,200
points), with planted holes: series 1 misses 37 days in October-November, series 2 moves
from 5-minute to 15-minute readings half-way, series 3 ends half-way, and one chunk failed
(its file is missing). Each run is a fresh child process, the two kinds taking turns:
- baseline: ``SELECT host, site, count(*) FROM read_parquet(<the same files>) GROUP BY ALL``;
- coverage: ``headlined.coverage.series.scan`` over the folder, every series to the end.
Both read through a DuckDB connection made before the clock starts (``scan`` makes its own
when given none: 10-50 ms more here).
Prints the median and best time of each, their ratio (target <= 3), and the peak RSS of each
child (its own ru_maxrss); checks that the planted holes were found.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
START = datetime(2024, 1, 1, tzinfo=UTC)
NS = 1_000_000_000
WEEK = timedelta(days=7)
HOLE = (datetime(2024, 10, 10, tzinfo=UTC), datetime(2024, 11, 16, tzinfo=UTC))
FAILED_WEEK = 30  # the chunk whose export failed: no file


def ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * NS


def layout(series: int, years: int, step: int) -> tuple[Path, Path, list[tuple[int, int, str]]]:
    """The cached export: (its output dir, its measurement folder, the chunks' (start, end,
    state)), made when missing."""
    out = CACHE / f"coverage-{series}x{years}y-{step}s"
    folder = out / "bench" / "autogen" / "sensor"
    weeks = (years * 365 + 6) // 7
    chunks = [
        (
            ns(START + i * WEEK),
            ns(START + (i + 1) * WEEK),
            "failed" if i == FAILED_WEEK else "done",
        )
        for i in range(weeks)
    ]
    if (out / "done").exists():
        return out, folder, chunks
    print(f"making {out} (once) ...", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    end = START + weeks * WEEK
    half = ns(START) + (ns(end) - ns(START)) // 2
    con = duckdb.connect()
    # Every series' point times: hole, change of pace and end planted by filters.
    con.execute(
        f"""CREATE TABLE points AS
            SELECT s, t FROM range({series}) a(s),
                 range({ns(START)}, {ns(end)}, {step * NS}) b(t)
            WHERE NOT (s = 1 AND t >= {ns(HOLE[0])} AND t < {ns(HOLE[1])})
              AND NOT (s = 2 AND t >= {half} AND (t - {ns(START)}) % {3 * step * NS} != 0)
              AND NOT (s = 3 AND t >= {half})"""
    )
    for i, (lo, hi, state) in enumerate(chunks):
        if state == "failed":
            continue
        stem = f"{START + i * WEEK:%Y%m%dT%H%M%SZ}_{START + (i + 1) * WEEK:%Y%m%dT%H%M%SZ}"
        con.execute(
            f"""COPY (SELECT timezone('UTC', make_timestamp_ns(t)) AS time,
                             'host-' || lpad(s::VARCHAR, 3, '0') AS host,
                             'site-' || (s % 7)::VARCHAR AS site,
                             sin(t / 1e12) * 10 + s AS value, (t // {NS}) % 1000 AS status
                      FROM points WHERE t >= {lo} AND t < {hi}
                      ORDER BY host, site, t)
                TO '{folder / f"{stem}.parquet"}' (FORMAT parquet, COMPRESSION zstd)"""
        )
    (out / "done").touch()
    return out, folder, chunks


def child(kind: str, out: Path, folder: Path, chunks_json: str, threads: int) -> dict[str, Any]:
    """One measured run in this (fresh) process."""
    # Both read through a connection made beforehand (making one takes 10-50 ms here).
    con = duckdb.connect(config={"threads": threads})
    if kind == "baseline":
        files = sorted(str(p) for p in folder.glob("*.parquet"))
        began = time.perf_counter()
        rows = con.execute(
            "SELECT host, site, count(*) FROM read_parquet($1) GROUP BY ALL", [files]
        ).fetchall()
        seconds = time.perf_counter() - began
        result: Any = sum(r[2] for r in rows)
    else:
        sys.path.insert(0, str(ROOT))
        from headlined.coverage import series  # noqa: PLC0415  measured in the child only
        from headlined.coverage.model import ChunkState  # noqa: PLC0415  as above

        chunks = [ChunkState("bench", "autogen", a, b, s) for a, b, s in json.loads(chunks_json)]
        began = time.perf_counter()
        found = list(series.scan(out, chunks, now_ns=time.time_ns(), connection=con))
        seconds = time.perf_counter() - began
        result = {
            "points": sum(s.points for s in found),
            "missing": {
                s.tags["host"]: [[m.start_ns, m.end_ns, m.cause] for m in s.missing]
                for s in found
                if s.missing
            },
            "ended": sorted(s.tags["host"] for s in found if s.ended),
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "rss": rss, "result": result}


def run(kind: str, args: argparse.Namespace, out: Path, folder: Path, chunks: list[Any]) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            str(out),
            str(folder),
            json.dumps(chunks),
            str(args.threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    """Print the benchmark report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--step", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, out, folder, chunks_json, threads = args.child
        print(json.dumps(child(kind, Path(out), Path(folder), chunks_json, int(threads))))
        return
    out, folder, chunks = layout(args.series, args.years, args.step)
    files = sorted(folder.glob("*.parquet"))
    size = sum(p.stat().st_size for p in files)
    runs: dict[str, list[Any]] = {"baseline": [], "coverage": []}
    for _ in range(args.runs):
        for kind, measured in runs.items():
            measured.append(run(kind, args, out, folder, chunks))
    points = runs["baseline"][0]["result"]
    print(
        f"input: {len(files)} files, {size / 1e6:.0f} MB, {points:,} points, {args.series} "
        f"series; {args.threads} threads, {args.runs} runs each"
    )
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    rss = {k: max(r["rss"] for r in v) for k, v in runs.items()}
    for kind in runs:
        print(
            f"  {kind:9} median {median[kind]:6.3f} s  best {best[kind]:6.3f} s  "
            f"{points / median[kind] / 1e6:6.1f} M points/s  peak RSS {rss[kind] / 2**20:5.0f} MiB"
        )
    found = runs["coverage"][0]["result"]
    hole = found["missing"].get("host-001", [])
    failed = [m for m in found["missing"].get("host-000", []) if m[2] == "failed"]
    ratio, best_ratio = median["coverage"] / median["baseline"], best["coverage"] / best["baseline"]
    checks = [
        (
            f"coverage vs count: {ratio:.2f}x median, {best_ratio:.2f}x best (target <= 3)",
            ratio <= 3,
        ),
        (f"points counted alike ({found['points']:,})", found["points"] == points),
        (
            "the 37-day hole of host-001 found: "
            + ", ".join(f"{m[2]} {(m[1] - m[0]) / 86400e9:.2f} d" for m in hole),
            any(m[2] == "not in InfluxDB" and m[1] - m[0] >= 36.9 * 86400 * NS for m in hole),
        ),
        (f"the failed chunk is a hole of every series ({len(failed)} piece)", len(failed) == 1),
        (
            "host-002's change of pace is no hole (only the failed chunk is)",
            all(m[2] == "failed" for m in found["missing"].get("host-002", [])),
        ),
        (f"host-003 ended ({found['ended']})", "host-003" in found["ended"]),
    ]
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")


if __name__ == "__main__":
    main()
