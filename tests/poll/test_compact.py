"""Merging a closed day's flushes: the same rows, one file, never both or neither."""

from __future__ import annotations

import datetime
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from headlined.demo.server import DemoFeedServer
from headlined.demo.spec import FeedSpec, Shape
from headlined.poll import compact
from headlined.poll.compact import Compactor, closed, merge_partition, plan_merge
from headlined.poll.parquet import flush_messages
from headlined.status import render
from headlined.store import open_database
from tests.support.daemon_process import Daemon, status, without_dac, write_config

OLD = datetime.datetime(2026, 11, 20, 9, tzinfo=datetime.UTC)
TODAY = datetime.datetime(2026, 11, 23, 12, tzinfo=datetime.UTC)
ROOT = Path(__file__).resolve().parents[2]


# -- pure -------------------------------------------------------------------------------------


def test_a_day_closes_on_its_second_day() -> None:
    day = datetime.date(2026, 11, 20)
    assert not closed(day, day)
    assert not closed(day, day + datetime.timedelta(days=1))
    assert closed(day, day + datetime.timedelta(days=2))
    assert not closed(day + datetime.timedelta(days=5), day)  # a record from the future


def test_flushes_merge_in_id_order_and_other_files_stay() -> None:
    merge = plan_merge(
        [
            "part-000000000021-000000000030.parquet",
            "notes.parquet",
            "part-000000000001-000000000010.parquet",
            "part-000000000001-000000000010-data_1.parquet",
        ]
    )
    assert merge is not None
    assert merge.flushes == (
        "part-000000000001-000000000010-data_1.parquet",
        "part-000000000001-000000000010.parquet",
        "part-000000000021-000000000030.parquet",
    )
    assert merge.kept == ("notes.parquet",)
    assert merge.name == "part-000000000001-000000000030.parquet"


def test_one_flush_or_none_is_nothing_to_merge() -> None:
    assert plan_merge([]) is None
    assert plan_merge(["part-000000000001-000000000010.parquet", "x.parquet"]) is None
    # A merged day and a late flush into it: merged again.
    merge = plan_merge(
        ["part-000000000001-000000000030.parquet", "part-000000000090-000000000095.parquet"]
    )
    assert merge is not None
    assert merge.name == "part-000000000001-000000000095.parquet"


def test_a_foreign_file_with_the_merged_name_leaves_the_folder_alone() -> None:
    names = ["part-1-5.parquet", "part-6-9.parquet", "part-000000000001-000000000009.parquet"]
    # "part-000000000001-000000000009.parquet" is itself named like a flush: all three merge.
    merge = plan_merge(names)
    assert merge is not None
    assert len(merge.flushes) == 3


# -- a real tree ------------------------------------------------------------------------------


def insert(
    conn: duckdb.DuckDBPyConnection, source: str, keys: range, when: datetime.datetime
) -> None:
    conn.execute(
        "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
        "SELECT $1, '[' || n || ']', $2, json_object('id', n, 'text', 'r' || n), $2 "
        "FROM range($3, $4) AS t(n)",
        [source, when, keys.start, keys.stop],
    )


def build_tree(tmp_path: Path, flushes: int = 6, per_flush: int = 50) -> tuple[Path, Path]:
    """A messages tree of ``flushes`` flushes of two sources into a closed day (OLD) and an
    open one (TODAY); returns (parquet_dir, the DuckDB file)."""
    db = tmp_path / "h.duckdb"
    conn = open_database(db)
    parquet = tmp_path / "pq"
    for n in range(flushes):
        keys = range(n * per_flush, (n + 1) * per_flush)
        insert(conn, "a", keys, OLD)
        insert(conn, "b", keys, OLD if n % 2 else TODAY)
        insert(conn, "b", range(10**9 + n, 10**9 + n + 1), TODAY)
        assert flush_messages(conn, parquet) == 2 * per_flush + 1
    conn.close()
    return parquet, db


def rows(parquet: Path) -> list[tuple[Any, ...]]:
    """Every row of the tree (hive columns too), in one order: what a reader gets."""
    conn = duckdb.connect()
    try:
        return conn.execute(
            f"SELECT source, date::VARCHAR, id, record_key, record_time, payload::VARCHAR, "
            f"first_seen FROM read_parquet('{parquet}/messages/**/*.parquet', "
            "hive_partitioning = true) ORDER BY source, id"
        ).fetchall()
    finally:
        conn.close()


def digest(parquet: Path) -> tuple[Any, ...]:
    """Rows, distinct (source, id) and a sum of row hashes: equal digests, equal rows (for
    trees too big to compare row by row quickly)."""
    conn = duckdb.connect()
    try:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT (source, id)), sum(hash(source, date, id, "
            f"record_key, record_time, payload::VARCHAR, first_seen)::HUGEINT) FROM "
            f"read_parquet('{parquet}/messages/**/*.parquet', hive_partitioning = true)"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def files(parquet: Path) -> list[str]:
    return sorted(p.relative_to(parquet).as_posix() for p in parquet.rglob("*") if p.is_file())


def test_a_closed_partition_becomes_one_file_with_the_same_rows(tmp_path: Path) -> None:
    parquet, _ = build_tree(tmp_path)
    before = rows(parquet)
    folder = parquet / "messages" / "source=a" / "date=2026-11-20"
    assert len(list(folder.iterdir())) == 6
    conn = duckdb.connect()
    # One flush as versions before 12-03 wrote it: `payload` with Parquet's JSON type.
    older = sorted(folder.iterdir())[1]
    conn.execute(
        f"COPY (SELECT * REPLACE (payload::JSON AS payload) FROM '{older}') "
        f"TO '{tmp_path / 'older.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
    )
    (tmp_path / "older.parquet").replace(older)
    merged = merge_partition(conn, folder, tmp_path / "work" / "1")
    assert merged is not None
    assert (merged.files, merged.rows) == (6, 300)
    assert merged.bytes_after < merged.bytes_before  # one footer, better compression
    assert [p.name for p in folder.iterdir()] == ["part-000000000001-000000000606.parquet"]
    assert rows(parquet) == before
    # Still in id order inside the file; the payload plain text, as flushes write it now.
    ids = conn.execute(f"SELECT id FROM read_parquet('{folder}/*.parquet')").fetchall()
    assert ids == sorted(ids)
    kinds = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{folder}/*.parquet')").fetchall()
    assert ("payload", "VARCHAR") in {(k[0], k[1]) for k in kinds}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert not (tmp_path / "work" / "1").exists()  # the old folder, swapped out, deleted
    assert merge_partition(conn, folder, tmp_path / "work" / "2") is None  # nothing left


def test_flushes_whose_columns_differ_merge_by_name(tmp_path: Path) -> None:
    """Flushes with the same columns merge as they are (less memory); a flush lacking one
    (an older version's) or holding one more (a newer one's) is matched by name, so that no
    value is dropped and no merge refused."""
    parquet, _ = build_tree(tmp_path)
    folder = parquet / "messages" / "source=a" / "date=2026-11-20"
    flushes = sorted(folder.iterdir())
    conn = duckdb.connect()
    for flush, select in (
        (flushes[2], "* EXCLUDE (first_seen)"),
        (flushes[4], "*, 'n' || id AS note"),
    ):
        conn.execute(
            f"COPY (SELECT {select} FROM '{flush}') TO '{tmp_path / 'x.parquet'}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
        (tmp_path / "x.parquet").replace(flush)
    ids = []
    for flush in (flushes[2], flushes[4]):
        row = conn.execute(f"SELECT list(id ORDER BY id) FROM '{flush}'").fetchone()
        assert row is not None
        ids.append(row[0])
    merged = merge_partition(conn, folder, tmp_path / "work" / "1")
    assert merged is not None
    assert (merged.files, merged.rows) == (6, 300)
    got = conn.execute(
        f"SELECT list(id ORDER BY id) FILTER (WHERE first_seen IS NULL), "
        f"list(id ORDER BY id) FILTER (WHERE note = 'n' || id), count(*) "
        f"FROM read_parquet('{folder}/*.parquet')"
    ).fetchone()
    assert got == (ids[0], ids[1], 300)


def test_the_compactor_merges_closed_days_only_and_takes_late_flushes_later(
    tmp_path: Path,
) -> None:
    parquet, db = build_tree(tmp_path)
    before = rows(parquet)
    now = [TODAY]
    compactor = Compactor(parquet / "messages", clock=lambda: now[0])
    merged = compactor.run(budget_s=60)
    assert sorted(m.folder.relative_to(parquet).as_posix() for m in merged) == [
        "messages/source=a/date=2026-11-20",
        "messages/source=b/date=2026-11-20",
    ]
    assert rows(parquet) == before
    today = parquet / "messages" / "source=b" / "date=2026-11-23"
    assert len(list(today.iterdir())) == 6  # the open day: untouched
    assert compactor.run(budget_s=60) == []  # searched once a day
    # A late record of the closed day: a flush of its own, merged on the next day's pass.
    conn = open_database(db)
    insert(conn, "a", range(900, 901), OLD)
    flush_messages(conn, parquet)
    conn.close()
    assert compactor.run(budget_s=60) == []
    now[0] += datetime.timedelta(days=1)
    merged = compactor.run(budget_s=60)
    assert [m.folder.name for m in merged] == ["date=2026-11-20"]
    assert merged[0].files == 2
    assert len(rows(parquet)) == len(before) + 1
    assert len(list((parquet / "messages" / "source=a" / "date=2026-11-20").iterdir())) == 1


def test_leftovers_are_removed_at_the_first_pass_only(tmp_path: Path) -> None:
    parquet = tmp_path / "pq"
    (parquet / ".compact" / "source=a" / "date=2026-11-20").mkdir(parents=True)
    (parquet / ".compact" / "source=a" / "date=2026-11-20" / "part-1-9.parquet").touch()
    compactor = Compactor(parquet / "messages", clock=lambda: TODAY)  # no messages/ yet
    assert compactor.run(budget_s=60) == []
    assert not (parquet / ".compact").exists()
    assert compactor.failures == 0
    (parquet / "messages" / ".tmp-1-9").mkdir(parents=True)  # an older version's flush
    assert Compactor(parquet / "messages", clock=lambda: TODAY).run(budget_s=60) == []
    assert not (parquet / "messages" / ".tmp-1-9").exists()


def test_the_budget_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    parquet, _ = build_tree(tmp_path)
    compactor = Compactor(parquet / "messages", clock=lambda: TODAY)
    assert len(compactor.run(budget_s=0)) == 1  # at least one partition each run
    assert len(compactor.run(budget_s=0)) == 1
    assert compactor.run(budget_s=0) == []


def test_a_file_system_without_exchange_is_said_once_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet, _ = build_tree(tmp_path)
    listing = files(parquet)

    def refuse(a: Path, b: Path) -> None:
        raise compact.UnsupportedError(f"{b.parent}: cannot swap (test)")

    monkeypatch.setattr(compact, "exchange", refuse)
    compactor = Compactor(parquet / "messages", clock=lambda: TODAY)
    assert compactor.run(budget_s=60) == []
    assert compactor.run(budget_s=60) == []
    assert files(parquet) == listing  # no staging folder left behind
    assert capsys.readouterr().out.count("compaction_unsupported") == 1


def test_a_merge_that_loses_rows_is_refused(tmp_path: Path) -> None:
    parquet, _ = build_tree(tmp_path)
    folder = parquet / "messages" / "source=a" / "date=2026-11-20"
    listing = files(parquet)
    conn = duckdb.connect()
    # A flush that DuckDB reads as fewer rows than its footer says cannot be merged: the
    # check compares the copy's count with the footers' (here a footer counting one more).
    conn.execute(
        "CREATE MACRO parquet_metadata(f) AS TABLE "
        "SELECT 301 AS row_group_num_rows, 0 AS column_id, 1000 AS total_uncompressed_size"
    )
    with pytest.raises(compact.CompactError, match="merged 300 rows, its flushes hold 301"):
        merge_partition(conn, folder, tmp_path / "work" / "1")
    assert files(parquet) == listing
    assert not (tmp_path / "work" / "1").exists()


def test_row_groups_hold_about_four_mib_whatever_the_records_size() -> None:
    assert compact.row_group_rows(1_000_000, 250_000_000) == (4 << 20) // 250
    assert compact.row_group_rows(1_000, 10_000_000_000) == compact.MIN_GROUP_ROWS
    assert compact.row_group_rows(10, 100) == compact.MAX_GROUP_ROWS
    assert compact.row_group_rows(0, 0) == compact.MAX_GROUP_ROWS


def test_exchange_swaps_two_real_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from-a").touch()
    (tmp_path / "b" / "from-b").touch()
    compact.exchange(tmp_path / "a", tmp_path / "b")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["from-b"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from-a"]
    with pytest.raises(FileNotFoundError):
        compact.exchange(tmp_path / "a", tmp_path / "missing")


def test_a_reader_never_sees_a_row_twice_nor_half_a_day_while_days_are_merged(
    tmp_path: Path,
) -> None:
    """The swap is one rename: a reader of the tree gets each row once. What it can get
    wrong (README) is a day whose files it listed just before the swap: DuckDB fails on a
    listed file gone, or leaves out the whole day, never a part of it."""
    parquet, _ = build_tree(tmp_path, flushes=12, per_flush=200)
    folder = parquet / "messages" / "source=a" / "date=2026-11-20"
    everything = len(rows(parquet))
    day = len([r for r in rows(parquet) if r[0] == "a"])
    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    counts: list[tuple[int, int]] = []
    failures: list[str] = []
    done = threading.Event()

    def read() -> None:
        conn = duckdb.connect()
        while not done.is_set():
            try:
                row = conn.execute(
                    "SELECT count(*), count(DISTINCT id) FROM "
                    f"read_parquet('{parquet}/messages/**/*.parquet')"
                ).fetchone()
                assert row is not None
                counts.append((int(row[0]), int(row[1])))
            except duckdb.Error as why:
                failures.append(str(why))
        conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        conn = duckdb.connect()
        for _ in range(15):
            assert merge_partition(conn, folder, tmp_path / "work" / "merge") is not None
            # Put the flushes back the same way, atomically, for the next merge.
            fresh = tmp_path / "work" / "fresh"
            shutil.copytree(pristine, fresh)
            compact.exchange(fresh, folder)
            shutil.rmtree(fresh)
            time.sleep(0.01)
        conn.close()
    finally:
        done.set()
        reader.join()
    assert len(counts) > 15
    assert all(rows_read == distinct for rows_read, distinct in counts)  # never both
    assert {rows_read for rows_read, _ in counts} <= {everything, everything - day}
    assert all("Cannot open file" in f or "No files found" in f for f in failures), failures[:2]


# -- kill -9 in the middle ----------------------------------------------------------------------

CHILD = """
import sys, datetime
from pathlib import Path
from headlined.poll.compact import Compactor
now = datetime.datetime(2026, 11, 23, 12, tzinfo=datetime.UTC)
print("ready", flush=True)
Compactor(Path(sys.argv[1]), clock=lambda: now).run(budget_s=600)
print("done", flush=True)
"""


@pytest.mark.integration
def test_kill_9_at_any_moment_of_merging_loses_and_doubles_nothing(tmp_path: Path) -> None:
    parquet, _ = build_tree(tmp_path, flushes=30, per_flush=3000)
    expected = digest(parquet)
    pristine = tmp_path / "pristine"
    shutil.copytree(parquet, pristine)

    def start() -> subprocess.Popen[str]:
        shutil.rmtree(parquet)
        shutil.copytree(pristine, parquet)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(parquet / "messages")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        return child

    # How long the merges take uninterrupted here: the kills land within that.
    child = start()
    started = time.monotonic()
    assert child.stdout is not None
    assert "done\n" in child.stdout  # after the merges' log lines
    took = time.monotonic() - started
    child.wait()
    child.stdout.close()
    rng = random.Random(19)  # noqa: S311  kill times, not secrets
    outcomes = set()
    for attempt in range(8):
        child = start()
        time.sleep(rng.uniform(0.0, took))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
        left = [p for p in (parquet / ".compact").rglob("*") if p.is_file()]
        outcomes.add("mid-merge" if left else "between merges")
        assert digest(parquet) == expected, f"attempt {attempt}: before the clean-up"
        # The next start removes the leftovers and merges what is left.
        Compactor(parquet / "messages", clock=lambda: TODAY).run(budget_s=600)
        assert digest(parquet) == expected, f"attempt {attempt}: after the clean-up"
        assert not [p for p in (parquet / ".compact").rglob("*") if p.is_file()]
        for day in ("source=a/date=2026-11-20", "source=b/date=2026-11-20"):
            assert len(list((parquet / "messages" / day).iterdir())) == 1
    assert "mid-merge" in outcomes  # the kills did land inside merges


# -- the daemon -------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_daemon_merges_closed_days_after_a_flush(tmp_path: Path) -> None:
    """Under the daemon, as its own user: closed days it finds are merged after its flush,
    and its own flushes into today are not."""
    old, _ = build_tree(tmp_path / "before")
    specs = [FeedSpec("alpha", rate=5.0, shape=Shape.DATA, seed=7, t0=time.time() - 10)]
    parquet = tmp_path / "pq"
    shutil.copytree(old, parquet)
    # Days long closed, whatever today is.
    for day in sorted(parquet.glob("messages/source=*/date=*")):
        day.rename(day.with_name(day.name.replace("2026-11-", "2020-01-")))
    before = rows(parquet)
    with DemoFeedServer(specs) as server:
        config = write_config(tmp_path / "h.yaml", server, specs, flush_interval="1s")
        daemon = Daemon(config, prefix=without_dac())
        daemon.wait_started()
        deadline = time.monotonic() + 30
        while len(daemon.events("messages_compacted")) < 3:
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        parquet_status = status(config)["parquet"]
        assert daemon.stop() == 0
    assert parquet_status["days_merged"] == 3
    assert parquet_status["merge_failures"] == 0
    assert parquet_status["flush_error"] is None
    assert parquet_status["last_flush"] > time.time() - 60
    merged = daemon.events("messages_compacted")
    assert sorted(Path(e["folder"]).relative_to(parquet).as_posix() for e in merged) == [
        "messages/source=a/date=2020-01-20",
        "messages/source=b/date=2020-01-20",
        "messages/source=b/date=2020-01-23",
    ]
    after = [r for r in rows(parquet) if r[0] in ("a", "b")]
    assert after == before
    assert not list((parquet / ".compact").rglob("*.parquet"))
    for source in ("a", "b"):
        for day in (parquet / "messages" / f"source={source}").iterdir():
            assert len(list(day.iterdir())) == 1, day


def test_status_says_what_the_parquet_copy_needs() -> None:
    figures = {
        "dir": "/var/lib/headlined/parquet/messages",
        "last_flush": time.time() - 30,
        "flush_error": None,
        "days_merged": 14,
        "merge_failures": 0,
        "merge_unsupported": False,
    }
    text = render({"parquet": figures})
    assert "parquet: last flush 30s ago, 14 closed day(s) merged since start" in text
    assert "FAILING" not in text
    assert "failed" not in text
    text = render(
        {
            "parquet": figures
            | {"flush_error": "[Errno 28] No space left on device", "merge_failures": 2}
            | {"merge_unsupported": True}
        }
    )
    assert "parquet: FLUSH FAILING: [Errno 28] No space left on device" in text
    assert "2 merge(s) of a closed day failed (compaction_failed in the log)" in text
    assert "the file system cannot swap folders" in text
