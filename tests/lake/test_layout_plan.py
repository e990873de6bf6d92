"""Which local files the lake mirrors, their lake names, and the plan per table (pure)."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from headlined.lake import layout
from headlined.lake.layout import (
    MESSAGES_TABLE,
    LocalFile,
    bundle_path,
    key_of,
    safe_segment,
    scan,
    site_prefix,
)
from headlined.lake.plan import TablePlan, plan_table

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
    assert [p.name for p, _, _ in folders.parquet_files(folder)] == ["a.parquet"]
    # A file slipped in with the folder's mtime put back: the kept listing is used (this is
    # what makes a cycle cheap), so it is not seen...
    (folder / "b.parquet").write_bytes(b"2")
    os.utime(folder, ns=(old, old))
    assert [p.name for p, _, _ in folders.parquet_files(folder)] == ["a.parquet"]
    # ...while any real change (a rename in, as headlined publishes) moves the mtime.
    (tmp_path / "c.parquet").write_bytes(b"3")
    (tmp_path / "c.parquet").rename(folder / "c.parquet")
    names = [p.name for p, _, _ in folders.parquet_files(folder)]
    assert names == ["a.parquet", "b.parquet", "c.parquet"]
    # Changed just now: listed again every time (a change in the same clock tick as the
    # listing would not move the mtime).
    (folder / "d.parquet").write_bytes(b"4")
    recent = folder.stat().st_mtime_ns
    assert len(folders.parquet_files(folder)) == 4
    (folder / "e.parquet").write_bytes(b"5")
    os.utime(folder, ns=(recent, recent))
    assert len(folders.parquet_files(folder)) == 5


def test_a_scan_makes_a_local_file_again_only_when_it_is_new_or_changed(tmp_path: Path) -> None:
    """Years of folders and the open days' ~20,000 flushes are scanned every cycle: a file
    seen before is the same LocalFile (its key and fingerprint worked out once)."""
    root = tmp_path / "messages"
    day = root / "source=a" / "date=2026-11-23"
    day.mkdir(parents=True)
    for n in (1, 2):
        (day / f"part-{n:012d}-{n:012d}.parquet").write_bytes(b"x" * n)
    folders = layout.Folders()
    first = scan(root, None, folders)
    assert scan(root, None, folders) == first
    (tmp_path / "new.parquet").write_bytes(b"3")
    (tmp_path / "new.parquet").rename(day / "part-000000000003-000000000003.parquet")
    replaced = day / "part-000000000002-000000000002.parquet"
    (tmp_path / "again.parquet").write_bytes(b"yy!")
    (tmp_path / "again.parquet").rename(replaced)
    later = scan(root, None, folders)
    assert len(later) == 3
    assert later[0] is first[0]  # unchanged: the very object
    assert later[1] is not first[1]
    assert (later[1].size, later[1].fingerprint) != (first[1].size, first[1].fingerprint)
    assert later[1].key == first[1].key  # replaced: same key, new lake name
    assert [f.relative for f in later] == [
        f"source=a/date=2026-11-23/part-{n:012d}-{n:012d}.parquet" for n in (1, 2, 3)
    ]


def test_a_scan_forgets_the_folders_it_no_longer_reaches(tmp_path: Path) -> None:
    """A folder removed from the tree (a source dropped, a day's folder gone) is not kept for
    the daemon's lifetime."""
    root = tmp_path / "messages"
    days = [root / "source=a" / f"date=2026-11-{d}" for d in (22, 23)]
    for n, day in enumerate(days, 1):
        day.mkdir(parents=True)
        (day / f"part-{n:012d}-{n:012d}.parquet").write_bytes(b"x")
    folders = layout.Folders()
    assert len(scan(root, None, folders)) == 2
    assert set(folders._files) == set(days)
    shutil.rmtree(days[0])
    assert len(scan(root, None, folders)) == 1
    assert set(folders._files) == {days[1]}
    assert set(folders._listings) <= {days[1]}


# -- messages: one lake file a flush (older versions' bundles recognised) ---------------------


def flush(
    first: int, last: int, day: str = "2026-11-23", source: str = "a", **kw: int
) -> LocalFile:
    """A flush's local messages file (``part-<first>-<last>``, headlined/poll/parquet.py)."""
    name = f"part-{first:012d}-{last:012d}{kw.pop('part', '') and '-data_' + str(kw['n'])}"
    relative = f"source={source}/date={day}/{name}.parquet"
    return LocalFile(
        table=MESSAGES_TABLE,
        kind="messages",
        path=Path("/pq/messages") / relative,
        relative=relative,
        size=kw.get("size", 100),
        mtime_ns=kw.get("mtime_ns", 1),
        source=source,
        date=datetime.date.fromisoformat(day),
    )


MESSAGES_AT = "file:///lake/headlined.db/messages"


def applied(registered: list[str], plan: TablePlan) -> list[str]:
    """The registered paths once ``plan`` is committed."""
    return sorted((set(registered) - set(plan.remove)) | {path for path, _ in plan.add})


def test_each_flush_is_one_lake_file_under_its_own_name() -> None:
    first = [flush(1, 5), flush(6, 9), flush(10, 12), flush(1, 5, source="b")]
    plan = plan_table(first, [], MESSAGES_AT, "me", messages=True)
    assert sorted(plan.add, key=repr) == sorted(
        ((f.lake_path(MESSAGES_AT, "me"), f) for f in first), key=repr
    )
    assert len(plan) == 4  # what waits: the local files
    path = first[0].lake_path(MESSAGES_AT, "me")
    assert key_of(path, site_prefix(MESSAGES_AT, "me")) == (
        "source=a/date=2026-11-23/part-000000000001-000000000005"
    )
    registered = applied([], plan)
    assert len(plan_table(first, registered, MESSAGES_AT, "me", messages=True)) == 0
    later = [*first, flush(13, 20), flush(21, 30)]
    plan = plan_table(later, registered, MESSAGES_AT, "me", messages=True)
    assert plan.remove == ()
    assert [f for _, f in plan.add] == [later[4], later[5]]
    assert len(plan_table(later, applied(registered, plan), MESSAGES_AT, "me", messages=True)) == 0


def test_an_older_versions_bundle_stays_until_its_flushes_change() -> None:
    files = [flush(1, 5), flush(6, 9), flush(10, 12)]
    bundle = bundle_path(MESSAGES_AT, "me", files)
    registered = [bundle]
    assert len(plan_table(files, registered, MESSAGES_AT, "me", messages=True)) == 0
    # New flushes go one by one; the bundle stays.
    later = [*files, flush(13, 20)]
    plan = plan_table(later, registered, MESSAGES_AT, "me", messages=True)
    assert (plan.remove, [f for _, f in plan.add]) == ((), [later[3]])
    # One of its flushes rewritten, or gone (a closed day merged): the bundle is dropped and
    # what is left is registered file by file, in the same change.
    for now in ([files[0], files[2]], [files[0], flush(6, 9, size=7), files[2]]):
        plan = plan_table(now, registered, MESSAGES_AT, "me", messages=True)
        (change,) = plan.changes
        assert change.remove == (bundle,)
        assert [f for _, f in change.add] == now
    plan = plan_table([], registered, MESSAGES_AT, "me", messages=True)
    assert (plan.add, plan.remove) == ((), (bundle,))


def test_flushes_of_one_range_are_each_their_own_lake_file() -> None:
    kept = flush(6, 9)
    split = [flush(10, 12, part=1, n=0), flush(10, 12, part=1, n=1)]
    registered = [kept.lake_path(MESSAGES_AT, "me"), split[0].lake_path(MESSAGES_AT, "me")]
    files = [flush(1, 5), kept, *split]
    plan = plan_table(files, registered, MESSAGES_AT, "me", messages=True)
    assert plan.remove == ()
    assert [f for _, f in plan.add] == [files[0], split[1]]
    assert len(plan_table(files, applied(registered, plan), MESSAGES_AT, "me", messages=True)) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.lists(st.tuples(st.sampled_from("aaadrc"), st.integers(0, 3)), max_size=40),
)
def test_any_history_of_flushes_leaves_each_one_in_exactly_one_lake_file(
    bundled: bool, steps: list[tuple[str, int]]
) -> None:
    """Flushes added (a), dropped (d), rewritten (r) and cycles (c), in any order, from a lake
    an older version may have filled with bundles (``bundled``: its cycle after the first
    flushes): after a cycle every local flush is in exactly one registered lake file, and
    nothing is left to do."""
    local: dict[str, LocalFile] = {}
    registered: list[str] = []
    holds: dict[str, tuple[LocalFile, ...]] = {}
    next_id, stamp = 1, 1
    for op, which in steps:
        names = sorted(local)
        if op == "a":
            width = which + 1
            day = "2026-11-23" if which < 3 else "2026-11-24"
            made = flush(next_id, next_id + width - 1, day=day)
            local[made.relative] = made
            next_id += width
        elif op == "d" and names:
            del local[names[which % len(names)]]
        elif op == "r" and names:
            name = names[which % len(names)]
            stamp += 1
            local[name] = dataclasses.replace(local[name], mtime_ns=stamp)
        elif bundled and not registered and local:
            # An older version's first cycle: each partition's flushes in one bundle.
            by_day: dict[str, list[LocalFile]] = {}
            for f in sorted(local.values(), key=lambda f: f.relative):
                by_day.setdefault(str(f.date), []).append(f)
            for members in by_day.values():
                path = bundle_path(MESSAGES_AT, "me", members)
                holds[path] = tuple(members)
                registered.append(path)
        else:
            plan = plan_table(list(local.values()), registered, MESSAGES_AT, "me", messages=True)
            holds.update((path, (f,)) for path, f in plan.add)
            registered = applied(registered, plan)
            held = [f for path in registered for f in holds[path]]
            assert sorted(held, key=repr) == sorted(local.values(), key=repr)
            assert (
                len(plan_table(list(local.values()), registered, MESSAGES_AT, "me", messages=True))
                == 0
            )


def test_only_the_messages_table_bundles_whatever_the_names() -> None:
    """A measurement file named like a flush is planned as a file of its own."""
    files = [local("autogen/part-000000000001-000000000005.parquet"), local("autogen/1_2.parquet")]
    plan = plan_table(files, [], LOCATION, "me")
    assert [f for _, f in plan.add] == [files[1], files[0]]
    registered = applied([], plan)
    assert len(plan_table(files, registered, LOCATION, "me")) == 0
