"""The lake across processes: real publishers (`tests/lake/runner.py`, each a process of its
own) against a real catalog (SQLite, or PostgreSQL from Debian) and a warehouse on disk or on
an S3 emulator (moto) on loopback. What is checked is what a user of the tables sees: every
local file registered exactly once, the rows and types of the local Parquet, a replaced
chunk seen whole or not at all, nothing lost to kill -9 or to a second daemon.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from pyiceberg.table import Table

from headlined.lake import layout
from headlined.lake.layout import table_name
from headlined.lake.plan import plan_table
from tests.lake.local_files import DAY_NS, OLD_NS, RECENT_NS, Tree
from tests.lake.runner import MEASUREMENT, PREFIX, reader_catalog
from tests.support.s3_server import S3Bucket

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
AIR = (MEASUREMENT[0], MEASUREMENT[2])  # the Iceberg table of the measurement: sensors.air
MESSAGES = layout.MESSAGES_TABLE
RUNNER_TIMEOUT_S = 120


@dataclass(frozen=True)
class Lake:
    """Where the lake is: a catalog URL, a warehouse, and S3 settings for an s3:// one."""

    catalog_url: str
    warehouse: str
    s3: dict[str, Any] | None = None

    def settings(self, tree: Tree, site: str) -> Path:
        """Write the runner's settings for a publisher of `tree` as `site`; their path."""
        path = tree.root / f"lake-{site}.json"
        tree.root.mkdir(parents=True, exist_ok=True)
        document = {
            "catalog_url": self.catalog_url,
            "warehouse": self.warehouse,
            "s3": self.s3,
            "site": site,
            "messages_dir": str(tree.messages_dir),
            "influx_dir": str(tree.influx_dir),
            "work_dir": str(tree.root / "lake-work"),
        }
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    def table(self, table_id: tuple[str, str]) -> Table:
        """The table as a separate Iceberg client loads it now."""
        settings = {"catalog_url": self.catalog_url, "warehouse": self.warehouse, "s3": self.s3}
        return reader_catalog(settings).load_table(table_id)


def s3_settings(bucket: S3Bucket) -> dict[str, Any]:
    """`lake.s3` for the emulator's bucket (path-style, as S3-compatible servers want)."""
    return {
        "endpoint": bucket.endpoint,
        "region": bucket.region,
        "access_key_id": bucket.access_key_id,
        "secret_access_key": bucket.secret_access_key,
        "path_style": True,
    }


def sqlite_lake(tmp_path: Path, warehouse: str, s3: dict[str, Any] | None = None) -> Lake:
    return Lake(f"sqlite:///{tmp_path / 'catalog.db'}", warehouse, s3)


def runner_argv(command: str, settings: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "tests.lake.runner", command, str(settings), *options]


def said(output: str, what: str) -> list[Any]:
    """The data of each `RUNNER <what> …` line in a runner's output."""
    found = []
    for line in output.splitlines():
        if line.startswith(f"{PREFIX}{what}"):
            data = line[len(PREFIX) + len(what) :].strip()
            found.append(json.loads(data) if data else None)
    return found


def run(command: str, settings: Path, *options: str) -> list[dict[str, Any]]:
    """Run the runner to its end; its cycle results. Fails on a non-zero exit."""
    done = subprocess.run(
        runner_argv(command, settings, *options),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUNNER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"runner {command} failed:\n{done.stdout}\n{done.stderr}"
    return said(done.stdout, "result")


_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_runner_left() -> Iterator[None]:
    """A test that fails half-way must not leave a runner publishing into the next one."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.wait()


def start(command: str, settings: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """Start the runner in the background, its output going to `log`."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            runner_argv(command, settings, *options),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    _started.append(process)
    return process


def wait_for(log: Path, what: str, count: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until the runner said `what` `count` times (fail if it ends first)."""
    deadline = time.monotonic() + RUNNER_TIMEOUT_S
    while len(said(log.read_text(encoding="utf-8", errors="replace"), what)) < count:
        if process.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace")
            if len(said(text, what)) >= count:
                return
            raise AssertionError(f"the runner ended ({process.returncode}) first:\n{text}")
        assert time.monotonic() < deadline, f"no {what!r} from the runner in time"
        time.sleep(0.02)


def assert_clean(results: list[dict[str, Any]]) -> None:
    """Every cycle went without a table error, and the last left nothing waiting."""
    assert results, "no cycle ran"
    for result in results:
        assert result["errors"] == {}, result
    assert results[-1]["waiting"] == 0, results[-1]


def local_files(tree: Tree, table_id: tuple[str, str]) -> list[layout.LocalFile]:
    return [f for f in layout.scan(tree.messages_dir, tree.influx_dir) if f.table == table_id]


def data_files(table: Table) -> list[tuple[str, int]]:
    """(path, rows) of every data file in the table's current snapshot, one per entry: a
    file registered twice is listed twice."""
    return [(task.file.file_path, task.file.record_count) for task in table.scan().plan_files()]


def read_local(files: list[layout.LocalFile]) -> list[tuple[Any, ...]]:
    """The rows of local files in the lake's column order (the columns the path holds put
    in), sorted: messages (source, date, record_key, record_time, payload, first_seen, id);
    measurements (time_ns, retention_policy, station, count, pm25, ok, note)."""
    conn = duckdb.connect()
    rows: list[tuple[Any, ...]] = []
    try:
        for f in files:
            if f.kind == "messages":
                query = (
                    "SELECT ?, ?, record_key, record_time, payload::VARCHAR, first_seen, id "
                    "FROM read_parquet(?)"
                )
                rows += conn.execute(query, [f.source, f.date, str(f.path)]).fetchall()
            else:
                query = (
                    "SELECT epoch_ns(time), ?, station, count, pm25, ok, note FROM read_parquet(?)"
                )
                rows += conn.execute(query, [f.retention_policy, str(f.path)]).fetchall()
    finally:
        conn.close()
    return sorted(rows, key=repr)


MESSAGE_COLUMNS = ("source", "date", "record_key", "record_time", "payload", "first_seen", "id")
AIR_COLUMNS = ("time_ns", "retention_policy", "station", "count", "pm25", "ok", "note")


def read_lake(table: Table, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The table's rows (pyiceberg's reader) in `columns`, sorted like `read_local`."""
    scanned = table.scan(selected_fields=columns).to_arrow()
    return sorted(
        zip(*(scanned[c].to_pylist() for c in columns), strict=True),
        key=repr,
    )


def assert_exactly_once(lake: Lake, sites: dict[str, Tree]) -> None:
    """Each table's current snapshot holds, for every site, the copies its local files call
    for (nothing left to add or drop), each once, and exactly the local rows."""
    for table_id, columns in ((MESSAGES, MESSAGE_COLUMNS), (AIR, AIR_COLUMNS)):
        table = lake.table(table_id)
        registered = [path for path, _ in data_files(table)]
        twice = [path for path, n in Counter(registered).items() if n > 1]
        assert twice == [], f"{table_id}: registered more than once: {twice}"
        everything: list[layout.LocalFile] = []
        for site, tree in sites.items():
            files = local_files(tree, table_id)
            everything += files
            left = plan_table(
                files, registered, table.location(), site, messages=table_id == MESSAGES
            )
            assert len(left) == 0, f"{table_id}: {site}'s copies differ: {left}"
        assert read_lake(table, columns) == read_local(everything), f"{table_id}: rows differ"


# -- 1. messages and measurements to S3, read back by pyiceberg and polars ---------------------


def test_s3_tables_read_back_the_local_rows_and_types(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published to an S3 warehouse (moto) with a SQLite catalog, the tables hold exactly the
    local Parquet's rows, with its types, whether pyiceberg or polars reads them."""
    tree = Tree(tmp_path / "site")
    tree.add_messages(["feed-a", "ฟีด b"], days=3, per_day=4, seed=1)
    tree.write_chunk(MEASUREMENT, RECENT_NS, 30)
    tree.write_chunk(MEASUREMENT, OLD_NS, 30, stem="import-0001")
    lake = sqlite_lake(tmp_path, f"s3://{s3_bucket.bucket}/lake", s3_settings(s3_bucket))

    first, again = run("publish", lake.settings(tree, "site-1"), "--cycles", "2")
    assert_clean([first, again])
    assert first["added"] == len(local_files(tree, MESSAGES)) + 2
    assert (again["added"], again["removed"]) == (0, 0)  # nothing new: nothing committed
    assert_exactly_once(lake, {"site-1": tree})
    assert all(
        path.startswith(f"s3://{s3_bucket.bucket}/lake/") for path, _ in data_files(lake.table(AIR))
    )

    messages, air = lake.table(MESSAGES), lake.table(AIR)
    types = {f.name: str(f.field_type) for f in messages.schema().fields}
    assert types == {
        "source": "string",
        "date": "date",
        "record_key": "string",
        "record_time": "timestamptz",
        "payload": "string",
        "first_seen": "timestamptz",
        "id": "long",
    }
    types = {f.name: str(f.field_type) for f in air.schema().fields}
    assert types == {
        "time": "timestamptz",
        "time_ns": "long",
        "retention_policy": "string",
        "station": "string",
        "count": "long",
        "note": "string",
        "ok": "boolean",
        "pm25": "double",
    }
    # `time` is the exact time floored to the microsecond, before 1970 too.
    scanned = air.scan(selected_fields=("time", "time_ns")).to_arrow()
    micros = scanned["time"].cast("int64").to_pylist()
    assert micros == [ns // 1000 for ns in scanned["time_ns"].to_pylist()]
    assert min(micros) < 0
    assert any(ns % 1000 for ns in scanned["time_ns"].to_pylist())

    # polars' own Iceberg reader, given the table as pyiceberg loads it. Its optional scan
    # planner plugin is not installed: say that pyiceberg plans, rather than be warned.
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    # polars reads the files itself (object_store): it takes the bucket's settings as
    # storage options, as a polars user passes them.
    storage = {
        "aws_endpoint_url": s3_bucket.endpoint,
        "aws_region": s3_bucket.region,
        "aws_access_key_id": s3_bucket.access_key_id,
        "aws_secret_access_key": s3_bucket.secret_access_key,
        "aws_allow_http": "true",
        "aws_virtual_hosted_style_request": "false",
    }
    frame = pl.scan_iceberg(air, storage_options=storage).collect()
    assert dict(frame.schema) == {
        "time": pl.Datetime("us", "UTC"),
        "time_ns": pl.Int64,
        "retention_policy": pl.String,
        "station": pl.String,
        "count": pl.Int64,
        "note": pl.String,
        "ok": pl.Boolean,
        "pm25": pl.Float64,
    }
    assert sorted(frame.select(AIR_COLUMNS).rows(), key=repr) == read_local(local_files(tree, AIR))
    frame = pl.scan_iceberg(messages, storage_options=storage).collect()
    assert frame.schema["payload"] == pl.String
    assert frame.schema["record_time"] == pl.Datetime("us", "UTC")
    assert frame.schema["date"] == pl.Date
    assert sorted(frame.select(MESSAGE_COLUMNS).rows(), key=repr) == read_local(
        local_files(tree, MESSAGES)
    )


# -- 2. kill -9 at random moments -------------------------------------------------------------


@pytest.mark.parametrize("where", ["local", "s3"])
def test_kill_9_while_publishing_loses_and_doubles_nothing(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """Publishers killed at random moments (while new files keep coming and a chunk is
    re-exported each time), then one undisturbed cycle: every file registered exactly once."""
    if where == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        lake = sqlite_lake(tmp_path, f"s3://{bucket.bucket}/wh", s3_settings(bucket))
    else:
        lake = sqlite_lake(tmp_path, str(tmp_path / "warehouse"))
    seed = int(os.environ.get("LAKE_KILL_SEED", str(time.time_ns() % 1_000_000)))
    print(f"kill -9 test ({where}): seed {seed} (set LAKE_KILL_SEED={seed} to repeat)")
    rng = random.Random(seed)  # noqa: S311  reproducible test timing, not cryptography
    tree = Tree(tmp_path / "site")
    settings = lake.settings(tree, "killed")
    log = tmp_path / "runner.log"

    def add_batch(n: int) -> None:
        # New messages in every partition, a new chunk, and a re-export of the first chunk.
        tree.add_messages([f"src-{k}" for k in range(3)], days=4, per_day=2, seed=n)
        tree.write_chunk(MEASUREMENT, RECENT_NS + (n + 1) * DAY_NS, 20)
        tree.write_chunk(MEASUREMENT, RECENT_NS, 20, version=n)

    def publish(n: int) -> subprocess.Popen[bytes]:
        process = start("publish", settings, log, "--cycles", "1")
        wait_for(log, "ready", n + 1, process)
        return process

    add_batch(0)
    assert publish(0).wait(RUNNER_TIMEOUT_S) == 0, log.read_text(encoding="utf-8")
    # The next batch is published undisturbed (the tables exist now, as in every later run):
    # its time is the window the kills fall in, each later run having at least as much to do.
    add_batch(1)
    process = publish(1)
    began = time.monotonic()
    assert process.wait(RUNNER_TIMEOUT_S) == 0, log.read_text(encoding="utf-8")
    window = time.monotonic() - began
    print(f"an undisturbed publish of a batch: {window:.2f} s")
    killed = 0
    for n in range(2, 5):
        add_batch(n)
        process = publish(n)
        delay = rng.uniform(0.0, window)
        time.sleep(delay)
        alive = process.poll() is None
        if alive:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(RUNNER_TIMEOUT_S)
        what = "killed at" if alive else "finished before its kill at"
        print(f"run {n}: {what} {delay:.2f} s (exit {process.returncode})")
    # A publisher that always finishes before its kill would test nothing.
    assert killed >= 2, f"seed {seed}: only {killed} of 3 publishers were killed"

    results = run("publish", settings, "--cycles", "2")
    assert_clean(results)
    assert (results[1]["added"], results[1]["removed"]) == (0, 0), f"seed {seed}: {results}"
    assert_exactly_once(lake, {"killed": tree})


# -- 3. two daemons, one PostgreSQL catalog, one bucket -----------------------------------------


def test_two_sites_publish_at_once_to_one_postgres_catalog_and_bucket(
    tmp_path: Path, postgres_url: str, s3_bucket: S3Bucket
) -> None:
    """Two publishers with their own local trees and sites, each adding files and cycling
    several times at the same moment into the shared tables: both complete, nothing lost."""
    lake = Lake(postgres_url, f"s3://{s3_bucket.bucket}/shared", s3_settings(s3_bucket))
    trees = {"site-a": Tree(tmp_path / "a"), "site-b": Tree(tmp_path / "b")}
    go = tmp_path / "go"
    processes = {}
    for seed, (site, tree) in enumerate(trees.items(), start=1):
        log = tmp_path / f"{site}.log"
        processes[site] = (
            start(
                "produce",
                lake.settings(tree, site),
                log,
                "--tree",
                str(tree.root),
                "--rounds",
                "4",
                "--sources",
                f"{site}-feed,shared-name",
                "--seed",
                str(seed),
                "--go",
                str(go),
            ),
            log,
        )
    for process, log in processes.values():
        wait_for(log, "ready", 1, process)
    go.touch()  # both begin their rounds together
    for site, (process, log) in processes.items():
        code = process.wait(RUNNER_TIMEOUT_S)
        text = log.read_text(encoding="utf-8", errors="replace")
        assert code == 0, f"{site} failed:\n{text}"
        results = said(text, "result")
        assert len(results) == 4
        assert_clean(results)
    assert_exactly_once(lake, trees)
    # Both sites committed to both tables, each commit marked with its site, and their
    # commits overlapped in time (each site committed before the other's last commit).
    for table_id in (MESSAGES, AIR):
        order = [s.summary["headlined.site"] for s in lake.table(table_id).snapshots() if s.summary]
        print(f"{table_name(table_id)}: commits by {order}")
        assert set(order) == set(trees)
        for site in trees:
            last_other = max(i for i, s in enumerate(order) if s != site)
            assert order.index(site) < last_other, f"the sites took turns: {order}"


# -- 4. a re-exported chunk: old rows or new ones, never both or neither --------------------------


def test_a_reader_sees_a_replaced_chunk_whole_before_or_after(tmp_path: Path) -> None:
    """While a re-exported chunk is published, a reader process scanning the table over and
    over sees all the old rows or all the new ones, never a mix, never a gap."""
    lake = sqlite_lake(tmp_path, str(tmp_path / "warehouse"))
    tree = Tree(tmp_path / "site")
    tree.write_chunk(MEASUREMENT, OLD_NS, 15, stem="import-0001")  # stays as it is
    replaced = tree.write_chunk(MEASUREMENT, RECENT_NS, 25)
    settings = lake.settings(tree, "site-r")
    assert_clean(run("publish", settings, "--cycles", "1"))

    def expected() -> list[list[Any]]:
        rows = read_local(local_files(tree, AIR))
        return sorted([r[0], r[2], r[3]] for r in rows)  # time_ns, station, count

    old = expected()
    out, stop = tmp_path / "scans.jsonl", tmp_path / "stop"
    log = tmp_path / "reader.log"
    reader = start(
        "read", settings, log, "--table", "sensors.air", "--out", str(out), "--stop", str(stop)
    )
    try:
        wait_for(log, "scanned", 3, reader)
        tree.write_chunk(MEASUREMENT, RECENT_NS, 25, version=1)
        new = expected()
        assert new != old
        result = run("publish", settings, "--cycles", "1")
        assert_clean(result)
        assert (result[0]["added"], result[0]["removed"]) == (1, 1)
        seen_before = len(said(log.read_text(encoding="utf-8"), "scanned"))
        wait_for(log, "scanned", seen_before + 3, reader)
    finally:
        stop.touch()
        reader.wait(RUNNER_TIMEOUT_S)
    assert reader.returncode == 0, log.read_text(encoding="utf-8")
    scans = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    verdicts = [
        "old" if s["rows"] == old else "new" if s["rows"] == new else "MIXED" for s in scans
    ]
    assert "MIXED" not in verdicts, f"a scan saw neither the old nor the new chunk: {verdicts}"
    assert verdicts[0] == "old", verdicts
    assert verdicts[-1] == "new", verdicts
    # Once new, never old again: one snapshot switched them.
    assert verdicts == sorted(verdicts, key=["old", "new"].index)
    assert replaced.exists()
