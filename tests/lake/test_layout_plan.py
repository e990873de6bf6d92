"""Which local files the lake mirrors, their lake names, and the plan per table (pure)."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from headlined.lake import layout
from headlined.lake.layout import (
    MESSAGES_TABLE,
    LocalFile,
    key_of,
    safe_segment,
    scan,
    site_prefix,
)
from headlined.lake.plan import plan_table

LOCATION = "s3://bucket/lake/db.db/cpu"


def local(relative: str, size: int = 100, mtime_ns: int = 1) -> LocalFile:
    return LocalFile(
        table=("db", "cpu"),
        kind="measurement",
        path=Path("/x") / relative,
        relative=relative,
        size=size,
        mtime_ns=mtime_ns,
        retention_policy=relative.split("/", maxsplit=1)[0],
    )


def touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_scan_finds_published_files_and_skips_the_rest(tmp_path: Path) -> None:
    messages = tmp_path / "pq" / "messages"
    touch(messages / "source=a" / "date=2026-11-23" / "part-1-2.parquet")
    touch(messages / "source=b%20c" / "date=2026-11-24" / "part-3-4.parquet")
    touch(messages / ".tmp-0-4" / "source=a" / "date=2026-11-23" / "data_0.parquet")
    touch(messages / "source=a" / "date=2026-11-23" / ".part-5-6.parquet.tmp")
    touch(messages / "source=a" / "date=not-a-date" / "part-1-2.parquet")
    influx = tmp_path / "influx"
    touch(influx / "db" / "autogen" / "cpu" / "100_200.parquet")
    touch(influx / "db" / "autogen" / "cpu" / "import-abc.parquet")
    touch(influx / "db%2Fx" / "one%2Eweek" / "m%3Dn" / "1_2.parquet")
    touch(influx / "db" / "autogen" / "cpu" / "notes.txt")
    touch(influx / "_rejected" / "db" / "autogen" / "100_200.parquet")
    touch(influx / ".work" / "db-autogen-1_2" / "out" / "db" / "autogen" / "cpu" / "1_2.parquet")
    found = scan(messages, influx)
    seen = {(f.table, f.relative, f.source, f.date, f.retention_policy) for f in found}
    day = datetime.date.fromisoformat
    assert seen == {
        (MESSAGES_TABLE, "source=a/date=2026-11-23/part-1-2.parquet", "a", day("2026-11-23"), None),
        (
            MESSAGES_TABLE,
            "source=b%20c/date=2026-11-24/part-3-4.parquet",
            "b c",
            day("2026-11-24"),
            None,
        ),
        (("db", "cpu"), "autogen/100_200.parquet", None, None, "autogen"),
        (("db", "cpu"), "autogen/import-abc.parquet", None, None, "autogen"),
        (("db/x", "m=n"), "one%2Eweek/1_2.parquet", None, None, "one.week"),
    }
    assert all(f.path.is_file() for f in found)


def test_lake_names_are_safe_stable_and_change_with_the_content() -> None:
    first = local("autogen/100_200.parquet", size=10, mtime_ns=5)
    path = first.lake_path(LOCATION, "site-1")
    assert path.startswith(site_prefix(LOCATION, "site-1"))
    assert path == local("autogen/100_200.parquet", size=10, mtime_ns=5).lake_path(
        LOCATION, "site-1"
    )
    assert path != local("autogen/100_200.parquet", size=11, mtime_ns=5).lake_path(
        LOCATION, "site-1"
    )
    assert path != local("autogen/100_200.parquet", size=10, mtime_ns=6).lake_path(
        LOCATION, "site-1"
    )
    assert key_of(path, site_prefix(LOCATION, "site-1")) == "autogen/100_200"
    assert key_of(path, site_prefix(LOCATION, "site-2")) is None
    odd = local("one%2Eweek/ทดสอบ 1.parquet").lake_path(LOCATION, "s")
    assert odd.isascii()
    assert " " not in odd
    assert "%" not in odd
    assert safe_segment("a b") != safe_segment("a_b")


def test_plan_adds_the_missing_and_never_touches_another_sites_files() -> None:
    files = [local("autogen/1_2.parquet"), local("autogen/3_4.parquet")]
    theirs = files[0].lake_path(LOCATION, "other")
    registered = [files[0].lake_path(LOCATION, "me"), theirs]
    plan = plan_table(files, registered, LOCATION, "me")
    assert [f for _, f in plan.add] == [files[1]]
    assert plan.remove == ()
    # All registered: nothing to do; the other site's file is never removed.
    registered.append(files[1].lake_path(LOCATION, "me"))
    assert len(plan_table(files, registered, LOCATION, "me")) == 0
    assert len(plan_table([], [theirs], LOCATION, "me")) == 0


def test_a_replaced_file_is_removed_and_added_in_one_change() -> None:
    old = local("autogen/1_2.parquet", size=10)
    new = local("autogen/1_2.parquet", size=20)
    other = local("autogen/3_4.parquet")
    registered = [old.lake_path(LOCATION, "me"), other.lake_path(LOCATION, "me")]
    plan = plan_table([new, other], registered, LOCATION, "me")
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert change.add == ((new.lake_path(LOCATION, "me"), new),)
    assert change.remove == (old.lake_path(LOCATION, "me"),)


def test_a_vanished_file_is_removed() -> None:
    gone = local("autogen/1_2.parquet")
    kept = local("autogen/3_4.parquet")
    registered = [gone.lake_path(LOCATION, "me"), kept.lake_path(LOCATION, "me")]
    plan = plan_table([kept], registered, LOCATION, "me")
    assert plan.add == ()
    assert plan.remove == (gone.lake_path(LOCATION, "me"),)


def test_batches_never_split_a_replacement() -> None:
    olds = [local(f"autogen/{n}_{n + 1}.parquet", size=1) for n in range(10)]
    news = [local(f"autogen/{n}_{n + 1}.parquet", size=2) for n in range(10)]
    plan = plan_table(news, [f.lake_path(LOCATION, "me") for f in olds], LOCATION, "me")
    batches = plan.batches(3)
    assert sum(len(b) for b in batches) == len(plan) == 20
    for batch in batches:
        assert {key_of(p, site_prefix(LOCATION, "me")) for p, _ in batch.add} == {
            key_of(p, site_prefix(LOCATION, "me")) for p in batch.remove
        }


def test_folders_list_a_folder_again_only_when_it_changed(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"1")
    old = time.time_ns() - 3600 * 10**9
    os.utime(folder, ns=(old, old))
    folders = layout.Folders()
    assert [p.name for p, _ in folders.parquet_files(folder)] == ["a.parquet"]
    # A file slipped in with the folder's mtime put back: the kept listing is used (this is
    # what makes a cycle cheap), so it is not seen...
    (folder / "b.parquet").write_bytes(b"2")
    os.utime(folder, ns=(old, old))
    assert [p.name for p, _ in folders.parquet_files(folder)] == ["a.parquet"]
    # ...while any real change (a rename in, as headlined publishes) moves the mtime.
    (tmp_path / "c.parquet").write_bytes(b"3")
    (tmp_path / "c.parquet").rename(folder / "c.parquet")
    names = [p.name for p, _ in folders.parquet_files(folder)]
    assert names == ["a.parquet", "b.parquet", "c.parquet"]
    # Changed just now: listed again every time (a change in the same clock tick as the
    # listing would not move the mtime).
    (folder / "d.parquet").write_bytes(b"4")
    recent = folder.stat().st_mtime_ns
    assert len(folders.parquet_files(folder)) == 4
    (folder / "e.parquet").write_bytes(b"5")
    os.utime(folder, ns=(recent, recent))
    assert len(folders.parquet_files(folder)) == 5
