"""Local Parquet trees made the way headlined makes them, for the lake's cross-process tests.

Messages go through the real store and `headlined.poll.parquet.flush_messages` (one file per
source and day, published by an atomic rename); measurement chunks through the real
converter (`headlined.influx.convert.convert`, layout "database") and `durable.publish`, as
the exporter publishes a chunk: `<influx>/<database>/<rp>/<measurement>/<start>_<end>.parquet`.
A re-exported chunk is a new file renamed over the old one.
"""

from __future__ import annotations

import datetime
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from headlined import durable
from headlined.influx.convert import convert
from headlined.poll.parquet import flush_messages
from headlined.store import open_database

DAY_NS = 86_400 * 10**9
# 1965-03-07: before the epoch, as some of the real data is (negative nanoseconds).
OLD_NS = -152_150_400 * 10**9
RECENT_NS = 1_764_547_200 * 10**9  # 2025-12-01T00:00:00Z


@dataclass(frozen=True)
class Tree:
    """One site's local files: a state directory (the store), messages and measurements."""

    root: Path

    @property
    def parquet_path(self) -> Path:
        """The poller's `parquet_path`."""
        return self.root / "parquet"

    @property
    def messages_dir(self) -> Path:
        """`<parquet_path>/messages`, what the lake publishes as `headlined.messages`."""
        return self.parquet_path / "messages"

    @property
    def influx_dir(self) -> Path:
        """The exporter's `influx.output_dir`."""
        return self.root / "influx"

    def add_messages(self, sources: list[str], days: int, per_day: int, seed: int) -> int:
        """Store `per_day` new records for each source on each of `days` days, then flush
        them to Parquet as the poller does; returns the number of rows written."""
        rng = random.Random(seed)  # noqa: S311  test data, reproducible from the seed
        conn = open_database(self.root / "state" / "headlined.duckdb")
        try:
            start = datetime.datetime(2025, 11, 1, tzinfo=datetime.UTC)
            for source in sources:
                rows = []
                for day in range(days):
                    for n in range(per_day):
                        # Microseconds: what TIMESTAMPTZ holds; random, so keys never repeat.
                        at = start + datetime.timedelta(
                            days=day, microseconds=rng.randrange(86_400 * 10**6)
                        )
                        key = f"[{seed},{day},{n}]"
                        payload = (
                            f'{{"n": {n}, "text": "ข่าว \\"{seed}\\" {rng.random()}", '
                            f'"ok": {"true" if n % 2 else "false"}}}'
                        )
                        rows.append([source, key, at if n % 5 else None, payload, at])
                conn.executemany(
                    "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            return flush_messages(conn, self.parquet_path)
        finally:
            conn.close()

    def write_chunk(
        self,
        where: tuple[str, str, str],
        start_ns: int,
        points: int,
        *,
        version: int = 0,
        stem: str | None = None,
    ) -> Path:
        """Export a chunk of `points` points of `where` = (database, rp, measurement)
        from `start_ns` on and publish it (replacing a file of the same name): the name is
        `<start>_<end>.parquet` unless `stem` says otherwise. `version` changes its rows, as
        a re-export after InfluxDB changed does: other values and one point more per
        version."""
        db, rp, measurement = where
        end_ns = start_ns + DAY_NS
        stem = stem if stem is not None else f"{start_ns}_{end_ns}"
        lines = []
        for i in range(points + version):
            # Odd nanoseconds: below a microsecond, which Iceberg v2 timestamps cannot hold.
            t = start_ns + i * 37_000_001_003 % DAY_NS
            station = ("s1", "s 2", "ส,3")[i % 3].replace(" ", "\\ ").replace(",", "\\,")
            lines.append(
                f"{measurement},station={station} pm25={i + 0.25 + version * 1000},"
                f"count={i + version * 1000}i,ok={'true' if i % 2 else 'false'},"
                f'note="v{version} \\"{i}\\"" {t}'
            )
        work = self.root / ".work" / stem
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        source = work / "in.lp"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = convert(
            source,
            work / "out",
            layout="database",
            file_stem=stem,
            default_database=db,
            default_rp=rp,
            threads=1,
        )
        if result.rejected or len(result.files) != 1:
            raise AssertionError(f"conversion of {where} went wrong: {result}")
        written = result.files[0]
        final = self.influx_dir / written.relative_to(work / "out")
        final.parent.mkdir(parents=True, exist_ok=True)
        durable.publish(written, final)
        shutil.rmtree(work, ignore_errors=True)
        return final
