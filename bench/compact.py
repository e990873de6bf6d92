"""Merging a closed day's flushes (headlined/poll/compact.py) vs a plain DuckDB COPY of them.

    .venv/bin/python bench/compact.py [--flushes 1440] [--per-flush 660] [--runs 5]

The input is one closed day of one busy feed as the daemon leaves it: ``--flushes`` flush
files (1,440: a day at the default 60 s ``flush_interval``) of ``--per-flush`` records each
(660: 11 records/s), written by the real ``flush_messages`` from a real store, with ~250-byte
JSON payloads; made once and cached under bench/.cache/. Each run is a fresh child process on
a fresh copy of the day (copied before the clock starts), the two kinds taking turns:

- baseline: ``COPY (SELECT * FROM read_parquet(<the flushes>)) TO <one file>`` on a DuckDB of
  one thread, DuckDB's defaults otherwise (what one would type to merge them by hand);
- merge: ``Compactor.run`` (the footers' row count check, its row groups of ~4 MiB, the
  durable publish, the folder swap and the old folder's removal).

Prints the median time of each, their ratio, each child's peak RSS (VmHWM, and how much of it
came after the clock started), the files and bytes before and after, and what a reader gains:
the median time of ``SELECT count(*), max(id) FROM read_parquet('<day>/*.parquet')`` over the
flushes and over the merged file. Checks that the merged day holds the same rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache"
DAY = datetime(2026, 11, 1, tzinfo=UTC)
LATER = datetime(2026, 11, 5, tzinfo=UTC)
SOURCE = "busy"


def day_tree(flushes: int, per_flush: int) -> Path:
    """The cached parquet_dir holding one closed day of SOURCE; made when missing."""
    from headlined.poll.parquet import flush_messages  # noqa: PLC0415  only when making it
    from headlined.store import open_database  # noqa: PLC0415  as above

    out = CACHE / f"compact-{flushes}x{per_flush}"
    if (out / "done").exists():
        return out / "pq"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    conn = open_database(out / "h.duckdb")
    for flush in range(flushes):
        first = flush * per_flush
        conn.execute(
            "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
            "SELECT $1, '[' || n || ']', $2 + to_seconds(n * 86399 // $5), "
            "json_object('id', n, 'station', 'st-' || (n % 50), 'value', n * 0.37, "
            "'text', repeat(chr(97 + (n % 26)::INTEGER), 160)), $2 + to_seconds(60 * $6) "
            "FROM range($3, $4) AS t(n)",
            [SOURCE, DAY, first, first + per_flush, flushes * per_flush, flush],
        )
        flush_messages(conn, out / "pq")
    conn.close()
    (out / "h.duckdb").unlink()
    (out / "done").touch()
    return out / "pq"


def day_folder(parquet: Path) -> Path:
    return parquet / "messages" / f"source={SOURCE}" / f"date={DAY.date().isoformat()}"


def read_time(folder: Path, repeat: int = 5) -> float:
    """The median time of a reader's count over the day's files (a fresh connection each)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        conn = duckdb.connect()
        conn.execute(f"SELECT count(*), max(id) FROM read_parquet('{folder}/*.parquet')").fetchone()
        conn.close()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def child(kind: str, parquet: Path) -> dict[str, Any]:
    """One timed run in this (fresh) process."""
    from headlined.poll.compact import Compactor  # noqa: PLC0415  imported before the clock

    folder = day_folder(parquet)
    files = sorted(folder.glob("*.parquet"))
    before = sum(path.stat().st_size for path in files)
    rss_before = peak_rss_kib()
    started = time.perf_counter()
    if kind == "baseline":
        conn = duckdb.connect(config={"threads": 1})
        listed = ", ".join(f"'{path}'" for path in files)
        out = folder.parent / "merged.parquet"
        conn.execute(
            f"COPY (SELECT * FROM read_parquet([{listed}])) TO '{out}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        conn.close()
        after = (folder.parent / "merged.parquet").stat().st_size
    else:
        merged = Compactor(parquet / "messages", clock=lambda: LATER).run(budget_s=3600)
        assert len(merged) == 1, merged
        after = merged[0].bytes_after
    elapsed = time.perf_counter() - started
    rss = peak_rss_kib()
    return {
        "seconds": elapsed,
        "rss_mib": rss / 1024,
        "rss_added_mib": (rss - rss_before) / 1024,
        "files": len(files),
        "bytes_before": before,
        "bytes_after": after,
    }


def peak_rss_kib() -> int:
    """This process's peak RSS since its exec (VmHWM; ru_maxrss would start at the parent's
    RSS when it forked, which exec does not reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def rows_digest(folder: Path) -> tuple[Any, ...]:
    conn = duckdb.connect()
    try:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT id), sum(hash(id, record_key, record_time, "
            f"payload::VARCHAR, first_seen)::HUGEINT) FROM read_parquet('{folder}/*.parquet')"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flushes", type=int, default=1440)
    parser.add_argument("--per-flush", type=int, default=660)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PARQUET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    pristine = day_tree(args.flushes, args.per_flush)
    expected = rows_digest(day_folder(pristine))
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "merge": []}
    read_before: list[float] = []
    read_after: list[float] = []
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        for run in range(args.runs):
            kinds = ("baseline", "merge") if run % 2 == 0 else ("merge", "baseline")
            for kind in kinds:
                parquet = Path(scratch) / "pq"
                shutil.rmtree(parquet, ignore_errors=True)
                shutil.copytree(pristine, parquet)
                if kind == "merge":
                    read_before.append(read_time(day_folder(parquet)))
                done = subprocess.run(
                    [sys.executable, __file__, "--child", kind, str(parquet)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[kind].append(json.loads(done.stdout.splitlines()[-1]))
                if kind == "merge":
                    folder = day_folder(parquet)
                    assert len(list(folder.iterdir())) == 1
                    assert rows_digest(folder) == expected, "the merged day lost or doubled rows"
                    read_after.append(read_time(folder))
            print(f"  run {run + 1}/{args.runs} done", flush=True)
    base, merge = results["baseline"], results["merge"]
    ratios = [m["seconds"] / b["seconds"] for m, b in zip(merge, base, strict=True)]

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(row[key] for row in rows))

    print(
        f"one day of {args.flushes} flushes x {args.per_flush} records "
        f"({expected[0]:,} rows), {args.runs} runs of each"
    )
    print(
        f"  baseline COPY: {median(base, 'seconds'):.2f} s, peak RSS "
        f"{median(base, 'rss_mib'):.0f} MiB (+{median(base, 'rss_added_mib'):.0f}), "
        f"{median(base, 'bytes_after') / 1e6:.1f} MB"
    )
    print(
        f"  merge        : {median(merge, 'seconds'):.2f} s, peak RSS "
        f"{median(merge, 'rss_mib'):.0f} MiB (+{median(merge, 'rss_added_mib'):.0f}), "
        f"{median(merge, 'bytes_after') / 1e6:.1f} MB"
    )
    print(
        f"  ratio merge/baseline: {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(
        f"  files {merge[0]['files']} -> 1, bytes {merge[0]['bytes_before'] / 1e6:.1f} -> "
        f"{median(merge, 'bytes_after') / 1e6:.1f} MB; a reader's count over the day "
        f"{statistics.median(read_before):.3f} s -> {statistics.median(read_after):.3f} s"
    )
    print("  ok   every merged day held exactly the flushes' rows")


if __name__ == "__main__":
    main()
