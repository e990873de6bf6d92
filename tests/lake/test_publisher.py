"""The lake end to end: real local files (a poller flush, converted line protocol), a real
pyiceberg SQL catalog (SQLite) and a local warehouse, read back by pyiceberg and polars."""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import sqlalchemy
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from headlined.config import Config, InfluxConfig, LakeConfig, LakeS3Config, SourceConfig
from headlined.influx.convert import convert
from headlined.lake import layout
from headlined.lake import publisher as publisher_module
from headlined.lake.publisher import (
    SITE_PROPERTY,
    LakeError,
    LakeSettings,
    Publisher,
    settings_from_config,
)
from headlined.poll.compact import CLOSED_AFTER_DAYS, Compactor
from headlined.poll.parquet import flush_messages
from headlined.store import open_database
from tests.support.s3_server import S3Bucket

NOW = datetime.datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=datetime.UTC)
T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
MESSAGES = ("headlined", "messages")
CPU = ("db", "cpu")


class Site:
    """One headlined's local files: a state DuckDB to flush messages from, an export tree."""

    def __init__(self, root: Path, name: str, lake: Path) -> None:
        self.root = root
        self.store = open_database(root / "h.duckdb")
        self.next_key = 0
        self.settings = LakeSettings(
            catalog_url=f"sqlite:///{lake / 'catalog.db'}",
            warehouse=str(lake / "warehouse"),
            s3=None,
            site=name,
            messages_dir=root / "pq" / "messages",
            influx_dir=root / "influx",
            work_dir=root / "work",
        )
        (root / "influx").mkdir(parents=True, exist_ok=True)

    def poll(self, source: str, count: int, day: int = 0) -> None:
        """Store ``count`` new records of ``source`` and flush them to Parquet."""
        when = NOW + datetime.timedelta(days=day)
        for _ in range(count):
            n = self.next_key
            self.next_key += 1
            self.store.execute(
                "INSERT INTO messages (source, record_key, record_time, payload, first_seen) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    source,
                    f"[{n}]",
                    when if n % 2 else None,
                    f'{{"n": {n}, "t": "ก \\"q\\""}}',
                    when,
                ],
            )
        flush_messages(self.store, self.root / "pq")

    def export(self, stem: str, lines: list[str], rp: str = "autogen") -> None:
        """Publish a chunk file the way the exporter does (converted, then renamed in)."""
        source = self.root / "in.lp"
        source.write_text(
            f"# CONTEXT-DATABASE:db\n# CONTEXT-RETENTION-POLICY:{rp}\n" + "\n".join(lines) + "\n"
        )
        staging = self.root / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        result = convert(source, staging, layout="database", file_stem=stem)
        for written in result.files:
            final = self.root / "influx" / written.relative_to(staging)
            final.parent.mkdir(parents=True, exist_ok=True)
            written.replace(final)

    def local_messages(self) -> list[tuple[Any, ...]]:
        return rows(
            "SELECT source, date::DATE AS date, record_key, record_time, payload::VARCHAR, "
            f"first_seen, id FROM read_parquet('{self.root}/pq/messages/**/*.parquet', "
            "hive_partitioning = true)"
        )

    def local_cpu(self) -> list[tuple[Any, ...]]:
        return rows(
            "SELECT epoch_ns(time), host, v, n FROM "
            f"read_parquet('{self.root}/influx/db/*/cpu/*.parquet')"
        )


def rows(query: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect()
    try:
        return sorted(conn.execute(query).fetchall(), key=repr)
    finally:
        conn.close()


def cpu_lines(first: int, count: int, value: float = 0.5) -> list[str]:
    return [
        f"cpu,host=h{i % 3} v={i + value},n={i}i {T0 + i * 1_000_000_007 - 10**18 * (i % 2)}"
        for i in range(first, first + count)
    ]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def site(tmp_path: Path, lake: Path) -> Site:
    return Site(tmp_path / "site-a", "site-a", lake)


@pytest.fixture(autouse=True)
def _polars_plans_with_pyiceberg(monkeypatch: pytest.MonkeyPatch) -> None:
    # polars warns that its faster planner plugin is not installed; pyiceberg plans here.
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")


@pytest.fixture
def publisher(site: Site) -> Iterator[Publisher]:
    pub = Publisher(site.settings)
    yield pub
    pub.close()


def catalog(settings: LakeSettings) -> SqlCatalog:
    """The catalog as any Iceberg client opens it: type sql, the URL, the warehouse."""
    return SqlCatalog(
        "headlined", uri=settings.catalog_url, warehouse=f"file://{settings.warehouse}"
    )


def lake_messages(table: Table, snapshot_id: int | None = None) -> list[tuple[Any, ...]]:
    got = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted(
        (
            (
                r["source"],
                r["date"],
                r["record_key"],
                r["record_time"],
                r["payload"],
                r["first_seen"],
                r["id"],
            )
            for r in got
        ),
        key=repr,
    )


def lake_cpu(table: Table, snapshot_id: int | None = None) -> list[tuple[Any, ...]]:
    got = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return sorted(((r["time_ns"], r["host"], r["v"], r["n"]) for r in got), key=repr)


def test_tables_hold_exactly_the_local_rows_for_pyiceberg_and_polars(
    site: Site, publisher: Publisher
) -> None:
    site.poll("alpha", 7)
    site.poll("beta gamma", 5, day=1)
    site.export("100_200", cpu_lines(0, 20))
    site.export("200_300", cpu_lines(20, 10), rp="one week")
    result = publisher.cycle()
    assert result.errors == {}
    assert result.added == 2 + 2  # a file per source and day, then the two chunk files
    assert result.waiting == 0
    assert set(result.snapshots) == {"headlined.messages", "db.cpu"}

    cat = catalog(site.settings)
    messages = cat.load_table(MESSAGES)
    assert lake_messages(messages) == site.local_messages()
    assert len(site.local_messages()) == 12
    cpu = cat.load_table(CPU)
    assert lake_cpu(cpu) == site.local_cpu()
    assert len(site.local_cpu()) == 30
    types = {f.name: str(f.field_type) for f in cpu.schema().fields}
    assert types == {
        "time": "timestamptz",
        "time_ns": "long",
        "retention_policy": "string",
        "host": "string",
        "v": "double",
        "n": "long",
    }
    assert [str(f.transform) for f in messages.spec().fields] == ["identity", "identity"]
    snapshot = messages.current_snapshot()
    assert snapshot is not None
    assert snapshot.summary is not None
    assert snapshot.summary[SITE_PROPERTY] == "site-a"

    # polars' own Iceberg reader: the same rows, the same types.
    frame = pl.scan_iceberg(messages).collect()
    assert frame.schema["payload"] == pl.String
    assert frame.schema["date"] == pl.Date
    assert (
        sorted(
            frame.select(
                "source", "date", "record_key", "record_time", "payload", "first_seen", "id"
            ).rows(),
            key=repr,
        )
        == site.local_messages()
    )
    cpu_frame = pl.scan_iceberg(cpu).collect()
    assert cpu_frame.schema["time"] == pl.Datetime("us", "UTC")
    assert sorted(cpu_frame.select("time_ns", "host", "v", "n").rows(), key=repr) == (
        site.local_cpu()
    )
    by_rp = cpu_frame.group_by("retention_policy").len().sort("retention_policy").rows()
    assert by_rp == [("autogen", 20), ("one week", 10)]
    # `time` is time_ns floored to the microsecond.
    for at, ns in cpu_frame.select("time", "time_ns").rows():
        assert at == datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            microseconds=ns // 1000
        )

    again = publisher.cycle()
    assert (again.added, again.removed, again.waiting) == (0, 0, 0)
    assert again.snapshots == result.snapshots


def test_a_reexported_chunk_replaces_its_rows_in_one_snapshot(
    site: Site, publisher: Publisher
) -> None:
    site.export("100_200", cpu_lines(0, 20))
    site.export("200_300", cpu_lines(20, 5))
    publisher.cycle()
    table = catalog(site.settings).load_table(CPU)
    old_snapshot = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    old_rows = lake_cpu(table)

    site.export("100_200", cpu_lines(0, 15, value=0.25))  # InfluxDB changed: re-exported
    result = publisher.cycle()
    assert (result.added, result.removed, result.errors) == (1, 1, {})
    table = catalog(site.settings).load_table(CPU)
    assert lake_cpu(table) == site.local_cpu()
    assert len(lake_cpu(table)) == 20  # never both (40) or neither
    assert table.current_snapshot().parent_snapshot_id == old_snapshot  # type: ignore[union-attr]
    assert lake_cpu(table, old_snapshot) == old_rows  # the old snapshot still reads the old

    (site.root / "influx" / "db" / "autogen" / "cpu" / "200_300.parquet").unlink()
    result = publisher.cycle()
    assert (result.added, result.removed) == (0, 1)
    assert lake_cpu(catalog(site.settings).load_table(CPU)) == site.local_cpu()


def test_a_merged_day_replaces_its_flushes_in_one_snapshot(
    site: Site, publisher: Publisher
) -> None:
    """headlined/poll/compact.py merges a closed day's flushes: the lake drops that day's
    flushes and registers the merged file in the same snapshot (never both, never neither),
    and a reader of the older snapshot still gets the old files (the lake's links keep them
    when the local ones are deleted)."""
    for _ in range(3):
        site.poll("a", 4)
        site.poll("b", 3)
    publisher.cycle()
    site.poll("a", 2)  # a flush after the first cycle
    publisher.cycle()
    table = catalog(site.settings).load_table(MESSAGES)
    old_snapshot = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    before = lake_messages(table)
    assert len(_data_files(table)) == 7  # each flush as it is: a 4, b 3

    later = NOW + datetime.timedelta(days=CLOSED_AFTER_DAYS)
    merged = Compactor(site.root / "pq" / "messages", clock=lambda: later)
    assert len(merged.run(budget_s=60)) == 2
    result = publisher.cycle()
    assert (result.added, result.removed, result.errors) == (2, 7, {})
    table = catalog(site.settings).load_table(MESSAGES)
    assert lake_messages(table) == before == site.local_messages()
    assert len(_data_files(table)) == 2
    assert table.current_snapshot().parent_snapshot_id == old_snapshot  # type: ignore[union-attr]
    assert lake_messages(table, old_snapshot) == before
    assert publisher.cycle().added == 0  # the merged files are planned as kept


def test_a_day_merged_while_a_cycle_copies_it_is_no_error_and_taken_next_cycle(
    site: Site, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.poll("a", 4)
    publisher.cycle()
    site.poll("a", 4)
    site.poll("a", 4)
    later = NOW + datetime.timedelta(days=CLOSED_AFTER_DAYS)
    compactor = Compactor(site.root / "pq" / "messages", clock=lambda: later)
    link = publisher_module._link_or_copy

    def merged_first(local: Path, final: Path) -> tuple[int, int]:
        assert len(compactor.run(budget_s=60)) == 1  # the folder is swapped under the link
        return link(local, final)

    monkeypatch.setattr(publisher_module, "_link_or_copy", merged_first)
    result = publisher.cycle()
    assert (result.added, result.removed, result.errors) == (0, 0, {})
    monkeypatch.setattr(publisher_module, "_link_or_copy", link)
    result = publisher.cycle()
    assert (result.added, result.removed, result.errors) == (1, 1, {})
    table = catalog(site.settings).load_table(MESSAGES)
    assert lake_messages(table) == site.local_messages()
    assert len(site.local_messages()) == 12


def _lake_path(data_file: Any) -> Path:
    return Path(urlsplit(data_file.file_path).path)


def test_a_flush_is_registered_as_it_is_without_a_copy(site: Site, publisher: Publisher) -> None:
    """A flush goes into the lake as it is: on a local warehouse a hard link to the very
    file (no bytes copied), without the source and date columns, which Iceberg readers take
    from the partition (pyiceberg and polars above read them back)."""
    site.poll("alpha", 5)
    site.poll("beta", 2)
    assert publisher.cycle().added == 2
    table = catalog(site.settings).load_table(MESSAGES)
    local = {p.stat().st_ino: p for p in (site.root / "pq" / "messages").rglob("*.parquet")}
    for data_file in _data_files(table):
        assert _lake_path(data_file).stat().st_ino in local
        columns = rows(
            f"DESCRIBE SELECT * FROM read_parquet('{_lake_path(data_file)}', "
            "hive_partitioning = false)"
        )
        assert {c[0] for c in columns} == {
            "record_key",
            "record_time",
            "payload",
            "first_seen",
            "id",
        }
    assert lake_messages(table) == site.local_messages()
    frame = pl.scan_iceberg(table).filter(pl.col("source") == "beta").collect()
    assert sorted(frame["id"].to_list()) == [6, 7]
    summary = table.current_snapshot().summary  # type: ignore[union-attr]
    assert summary is not None
    assert summary["total-records"] == "7"
    assert summary["total-data-files"] == "2"


def _as_json_typed(flush: Path, work: Path) -> None:
    """``flush`` as versions before 12-03 wrote it: ``payload`` with Parquet's JSON type."""
    duckdb.execute(
        f"COPY (SELECT * REPLACE (payload::JSON AS payload) FROM '{flush}') "
        f"TO '{work / 'older.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
    )
    (work / "older.parquet").replace(flush)


def test_an_older_flush_with_the_json_type_is_copied(site: Site, publisher: Publisher) -> None:
    """Flushes of versions before 12-03 wrote ``payload`` with Parquet's JSON type, which
    Iceberg engines do not read as a string: those still get a lake copy."""
    site.poll("alpha", 4)
    (older,) = (site.root / "pq" / "messages").rglob("*.parquet")
    _as_json_typed(older, site.root)
    site.poll("alpha", 3)
    assert publisher.cycle().added == 2
    table = catalog(site.settings).load_table(MESSAGES)
    inodes = {_lake_path(f).stat().st_ino for f in _data_files(table)}
    assert older.stat().st_ino not in inodes  # a copy
    assert len(inodes & {p.stat().st_ino for p in older.parent.glob("*.parquet")}) == 1
    assert lake_messages(table) == site.local_messages()
    assert pl.scan_iceberg(table).collect()["payload"].dtype == pl.String


def test_a_lake_an_older_version_filled_with_bundles_goes_on_without_a_double(
    site: Site, publisher: Publisher
) -> None:
    """An older version bundled a partition's JSON-typed flushes into one lake copy. After
    the upgrade the bundle stays while its flushes do, new flushes are linked one by one, and
    when the day is merged the bundle and the links give way to the merged file in one
    snapshot: every row once at every step."""
    site.poll("a", 3)
    site.poll("a", 2)
    older = sorted((site.root / "pq" / "messages").rglob("*.parquet"))
    for flush in older:
        _as_json_typed(flush, site.root)
    members = tuple(f for f in layout.scan(site.root / "pq" / "messages", None) if f.path in older)
    assert len(members) == 2
    # The older version's cycle: one copy of both flushes, committed.
    assert publisher.cycle().added == 2  # (this version: each flush a copy of its own)
    table = catalog(site.settings).load_table(MESSAGES)
    bundle = layout.bundle_path(table.location(), "site-a", members)
    # Made and committed the way the older version did: one copy of both, with the source
    # and date columns, replacing their copies.
    made = Path(urlsplit(bundle).path)
    files = ", ".join(f"'{member.path}'" for member in members)
    duckdb.execute(
        f"COPY (SELECT '{members[0].source}' AS source, DATE '{members[0].date}' AS date, "
        f"* REPLACE (payload::VARCHAR AS payload) FROM read_parquet([{files}], "
        f"hive_partitioning = false)) TO '{made}' (FORMAT parquet, COMPRESSION zstd)"
    )
    old = Publisher(site.settings)
    data_file = publisher_module._data_file(
        table, bundle, pq.read_metadata(made), made.stat().st_size, {}
    )
    table = old._commit(table, MESSAGES, [data_file], _data_files(table))
    old.close()
    assert [f.file_path for f in _data_files(table)] == [bundle]

    fresh = Publisher(site.settings)
    try:
        assert fresh.cycle().added == 0  # the bundle holds exactly its flushes: kept
        site.poll("a", 4)
        result = fresh.cycle()
        assert (result.added, result.removed) == (1, 0)
        table = catalog(site.settings).load_table(MESSAGES)
        assert lake_messages(table) == site.local_messages()
        later = NOW + datetime.timedelta(days=CLOSED_AFTER_DAYS)
        assert len(Compactor(site.root / "pq" / "messages", clock=lambda: later).run(60)) == 1
        result = fresh.cycle()
        assert (result.added, result.removed, result.errors) == (1, 2, {})
    finally:
        fresh.close()
    table = catalog(site.settings).load_table(MESSAGES)
    assert lake_messages(table) == site.local_messages()
    assert len(site.local_messages()) == 9
    assert len(_data_files(table)) == 1


def test_a_warehouse_on_another_file_system_gets_byte_copies(
    site: Site, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    site.poll("alpha", 4)
    assert publisher.cycle().added == 1
    table = catalog(site.settings).load_table(MESSAGES)
    (data_file,) = _data_files(table)
    (local,) = (site.root / "pq" / "messages").rglob("*.parquet")
    assert _lake_path(data_file).stat().st_ino != local.stat().st_ino
    assert _lake_path(data_file).read_bytes() == local.read_bytes()
    assert lake_messages(table) == site.local_messages()


def test_a_lake_folder_removed_behind_the_publisher_is_made_again(
    site: Site, publisher: Publisher, tmp_path: Path
) -> None:
    site.poll("alpha", 4)
    assert publisher.cycle().added == 1
    (first,) = Path(site.settings.warehouse).rglob("data/site-a/source=alpha/*/*.parquet")
    kept = tmp_path / "kept"
    first.parent.rename(kept)  # the folder the publisher made (and remembers) is gone
    site.poll("alpha", 4)
    result = publisher.cycle()
    assert (result.added, result.errors) == (1, {})
    for moved in kept.iterdir():
        moved.rename(first.parent / moved.name)
    table = catalog(site.settings).load_table(MESSAGES)
    assert lake_messages(table) == site.local_messages()
    assert len(site.local_messages()) == 8


def test_appends_keep_the_manifest_list_short(site: Site, publisher: Publisher) -> None:
    """Each append commit adds one manifest; once a snapshot holds the table's
    commit.manifest.min-count-to-merge, the next commit merges them (as pyiceberg and Java
    do), so a lake of years of cycles is not a list of thousands of manifests."""
    site.poll("alpha", 2)
    publisher.cycle()
    table = catalog(site.settings).load_table(MESSAGES)
    with table.transaction() as tx:
        tx.set_properties({"commit.manifest.min-count-to-merge": "4"})
    counts = []
    for _ in range(8):
        site.poll("alpha", 2)
        assert publisher.cycle().added == 1
        table = catalog(site.settings).load_table(MESSAGES)
        counts.append(len(table.current_snapshot().manifests(table.io)))  # type: ignore[union-attr]
    assert max(counts) <= 4
    assert 1 in counts[2:]  # merged at least once
    assert lake_messages(table) == site.local_messages()
    assert len(_data_files(table)) == 9


class Crash(BaseException):
    """A kill -9 as far as the publisher can tell: nothing after it runs."""


def test_a_crash_between_copy_and_commit_registers_each_file_once(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.poll("alpha", 4)
    site.export("100_200", cpu_lines(0, 10))
    real_commit = Publisher._commit

    def crash(self: Publisher, *args: Any) -> Any:
        raise Crash

    monkeypatch.setattr(Publisher, "_commit", crash)
    with pytest.raises(Crash):
        Publisher(site.settings).cycle()
    copies = list((Path(site.settings.warehouse)).rglob("data/site-a/**/*.parquet"))
    assert copies  # the lake copy was written, never committed

    def commit_then_crash(self: Publisher, *args: Any) -> Any:
        real_commit(self, *args)
        raise Crash

    monkeypatch.setattr(Publisher, "_commit", commit_then_crash)
    with pytest.raises(Crash):
        Publisher(site.settings).cycle()

    monkeypatch.setattr(Publisher, "_commit", real_commit)
    restarted = Publisher(site.settings)
    result = restarted.cycle()
    restarted.close()
    assert result.errors == {}
    cat = catalog(site.settings)
    assert lake_cpu(cat.load_table(CPU)) == site.local_cpu()
    assert lake_messages(cat.load_table(MESSAGES)) == site.local_messages()
    files = [f.file_path for t in (CPU, MESSAGES) for f in _data_files(cat.load_table(t))]
    assert len(files) == len(set(files)) == 2


def _data_files(table: Table) -> list[Any]:
    return [
        entry.data_file
        for manifest in table.current_snapshot().manifests(table.io)  # type: ignore[union-attr]
        for entry in manifest.fetch_manifest_entry(table.io)
    ]


def test_a_commit_race_between_two_sites_loses_nothing(
    tmp_path: Path, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Site(tmp_path / "a", "site-a", lake)
    b = Site(tmp_path / "b", "site-b", lake)
    a.poll("from-a", 6)
    b.poll("from-b", 4)
    a.export("100_200", cpu_lines(0, 10))
    b.export("100_200", cpu_lines(100, 10))
    pub_a, pub_b = Publisher(a.settings), Publisher(b.settings)
    pub_b.cycle()  # b creates the tables first

    b.poll("from-b", 3)
    b.export("300_400", cpu_lines(200, 5))
    real_commit = Publisher._commit
    raced: list[str] = []

    def commit_after_b(self: Publisher, *args: Any) -> Any:
        if self is pub_a and not raced:
            # Site b commits to the same tables between a's plan and a's commit.
            raced.append("b")
            other = threading.Thread(target=pub_b.cycle)
            other.start()
            other.join()
        return real_commit(self, *args)

    monkeypatch.setattr(Publisher, "_commit", commit_after_b)
    result = pub_a.cycle()
    assert raced
    assert result.errors == {}
    assert result.waiting == 0
    cat = catalog(a.settings)
    assert lake_messages(cat.load_table(MESSAGES)) == sorted(
        a.local_messages() + b.local_messages(), key=repr
    )
    assert lake_cpu(cat.load_table(CPU)) == sorted(a.local_cpu() + b.local_cpu(), key=repr)
    # Each site mirrors only its own files: a's next cycle leaves b's alone.
    (a.root / "influx" / "db" / "autogen" / "cpu" / "100_200.parquet").unlink()
    pub_a.cycle()
    assert lake_cpu(catalog(a.settings).load_table(CPU)) == b.local_cpu()
    pub_a.close()
    pub_b.close()


def test_new_columns_widen_the_table_and_a_type_conflict_is_named(
    site: Site, publisher: Publisher
) -> None:
    site.export("100_200", cpu_lines(0, 5))
    site.poll("alpha", 2)
    publisher.cycle()
    site.export("200_300", [f"cpu,host=x,zone=eu v=1.5,n=1i,extra=true {T0 + 5}"])
    result = publisher.cycle()
    assert result.errors == {}
    table = catalog(site.settings).load_table(CPU)
    assert {"zone", "extra"} <= {f.name for f in table.schema().fields}
    got = table.scan().to_arrow().to_pylist()
    assert sorted(str(r["zone"]) for r in got) == ["None"] * 5 + ["eu"]
    # Readers find the new columns of files without field ids through the name mapping.
    mapping = table.properties["schema.name-mapping.default"]
    assert '"zone"' in mapping
    assert '"extra"' in mapping
    frame = pl.scan_iceberg(table).collect()
    assert frame["zone"].drop_nulls().to_list() == ["eu"]
    assert frame["zone"].null_count() == 5

    site.export("300_400", [f'cpu,host=x v="text" {T0 + 9}'])
    site.poll("alpha", 1)
    result = publisher.cycle()
    error = result.errors["db.cpu"]
    assert "'v'" in error
    assert "double" in error
    assert "string" in error
    assert "300_400.parquet" in error
    assert "headlined.messages" not in result.errors  # the other tables go on
    assert result.added == 1
    assert result.waiting == 1


def test_an_unreachable_catalog_is_a_lake_error_without_its_password(site: Site) -> None:
    settings = LakeSettings(
        **{
            **site.settings.__dict__,
            "catalog_url": "postgresql://headlined:s3cr3t-pw@127.0.0.1:9/lake",
        }
    )
    pub = Publisher(settings)
    with pytest.raises(LakeError) as caught:
        pub.cycle()
    pub.close()
    assert "s3cr3t-pw" not in str(caught.value)
    assert "127.0.0.1:9" in str(caught.value)


def test_settings_default_under_the_state_dir_and_keep_the_site_name(tmp_path: Path) -> None:
    cfg = Config(
        state_dir=tmp_path / "state",
        sources=[SourceConfig(name="s", url="http://127.0.0.1:1/", key=["id"], window=10)],
        influx=InfluxConfig(data_dir=tmp_path / "influx"),
        lake=LakeConfig(),
    )
    settings = settings_from_config(cfg)
    assert settings.catalog_url == f"sqlite:///{tmp_path}/state/lake/catalog.db"
    assert settings.warehouse == str(tmp_path / "state" / "lake" / "warehouse")
    assert settings.messages_dir == tmp_path / "state" / "parquet" / "messages"
    assert settings.influx_dir == cfg.influx.output_dir  # type: ignore[union-attr]
    assert settings_from_config(cfg).site == settings.site  # made once, then kept
    assert (tmp_path / "state" / "lake" / "site").read_text().strip() == settings.site
    named = settings_from_config(cfg.model_copy(update={"lake": LakeConfig(site="north-1")}))
    assert named.site == "north-1"
    assert publisher_module.settings_from_config(Config(state_dir=tmp_path)).messages_dir is None


def test_a_backlog_commits_in_batches_and_a_stop_leaves_the_rest_waiting(
    site: Site, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "BATCH_FILES", 2)
    for n in range(5):
        site.export(f"{n}00_{n + 1}00", cpu_lines(n * 3, 3))
    commits: list[int] = []
    real_commit = Publisher._commit

    def counted(self: Publisher, *args: Any) -> Any:
        commits.append(1)
        return real_commit(self, *args)

    monkeypatch.setattr(Publisher, "_commit", counted)
    result = publisher.cycle(should_stop=lambda: len(commits) >= 1)
    table = catalog(site.settings).load_table(CPU)
    assert (result.added, result.waiting) == (2, 3)
    assert len(lake_cpu(table)) == 6
    result = publisher.cycle()
    assert (result.added, result.waiting) == (3, 0)
    assert lake_cpu(catalog(site.settings).load_table(CPU)) == site.local_cpu()


def test_a_stop_while_copying_commits_what_was_copied_and_leaves_the_rest_waiting(
    site: Site, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        site.export(f"{n}00_{n + 1}00", cpu_lines(n * 3, 3))
    copies: list[int] = []
    real_copy = Publisher._copy

    def counted(self: Publisher, *args: Any) -> Any:
        copies.append(1)
        return real_copy(self, *args)

    monkeypatch.setattr(Publisher, "_copy", counted)
    # One batch of five; the stop comes after the second copy (a daemon being stopped).
    result = publisher.cycle(should_stop=lambda: len(copies) >= 2)
    assert (result.added, result.waiting) == (2, 3)
    assert len(copies) == 2
    assert len(lake_cpu(catalog(site.settings).load_table(CPU))) == 6
    result = publisher.cycle()
    assert (result.added, result.waiting) == (3, 0)
    assert lake_cpu(catalog(site.settings).load_table(CPU)) == site.local_cpu()


def test_an_unreadable_local_file_waits_and_the_rest_is_published(
    site: Site, publisher: Publisher
) -> None:
    site.export("100_200", cpu_lines(0, 5))
    site.poll("alpha", 2)
    bad = site.root / "influx" / "db" / "autogen" / "cpu" / "200_300.parquet"
    bad.write_bytes(b"PAR1 not really")
    result = publisher.cycle()
    assert "200_300.parquet" in result.errors["db.cpu"]
    assert (result.added, result.waiting) == (2, 1)
    assert len(lake_cpu(catalog(site.settings).load_table(CPU))) == 5
    bad.unlink()
    result = publisher.cycle()
    assert (result.added, result.waiting, result.errors) == (0, 0, {})


def test_snapshots_older_than_keep_snapshots_are_forgotten_and_metadata_bounded(
    site: Site,
) -> None:
    settings = dataclasses.replace(site.settings, keep_snapshots=0.5, expire_at_once=3)
    publisher = Publisher(settings)
    try:
        for cycle in range(4):
            site.poll("a", 3)
            assert publisher.cycle().added == 1, cycle
            time.sleep(0.6)  # the snapshot just made is now older than keep_snapshots
    finally:
        publisher.close()
    table = catalog(settings).load_table(MESSAGES)
    # The fourth commit made three expired: it forgot them; what is current reads the same.
    current = table.current_snapshot()
    assert current is not None
    assert [s.snapshot_id for s in table.snapshots()] == [current.snapshot_id]
    assert lake_messages(table) == sorted(site.local_messages(), key=repr)
    assert len(lake_messages(table)) == 12
    assert table.properties["write.metadata.delete-after-commit.enabled"] == "true"


def test_copies_no_snapshot_refers_to_any_more_are_deleted_and_only_this_sites(
    tmp_path: Path, site: Site, lake: Path
) -> None:
    other = Site(tmp_path / "site-b", "site-b", lake)
    other_publisher = Publisher(other.settings)
    other.export("100_200", cpu_lines(100, 3))
    other_publisher.cycle()
    other_publisher.close()
    settings = dataclasses.replace(site.settings, keep_snapshots=0.5, expire_at_once=1)
    publisher = Publisher(settings)
    try:
        for version in range(4):  # the chunk holding "now", exported again each follow
            site.export("100_200", cpu_lines(0, 5, value=version + 0.25))
            assert publisher.cycle().added == 1
            time.sleep(0.6)
        assert publisher.swept >= 2
    finally:
        publisher.close()
    table = catalog(settings).load_table(CPU)
    warehouse = Path(settings.warehouse)
    on_disk = {f"file://{p}" for p in warehouse.rglob("*.parquet") if "/data/site-a/" in str(p)}
    current = {df.file_path for df in _data_files(table) if "/data/site-a/" in df.file_path}
    # Only copies a snapshot still refers to are left: the last one, and (until the next
    # expiry) the one before it.
    assert current <= on_disk
    assert len(on_disk) <= 2
    assert [p for p in warehouse.rglob("*.parquet") if "/data/site-b/" in str(p)]
    assert lake_cpu(table) == sorted(site.local_cpu() + other.local_cpu(), key=repr)


def test_on_s3_copies_no_snapshot_refers_to_any_more_are_deleted(
    site: Site, s3_bucket: S3Bucket
) -> None:
    s3 = LakeS3Config(
        endpoint=s3_bucket.endpoint,
        region=s3_bucket.region,
        access_key_id=s3_bucket.access_key_id,
        secret_access_key=s3_bucket.secret_access_key,
    )
    settings = dataclasses.replace(
        site.settings,
        warehouse=f"s3://{s3_bucket.bucket}/lake",
        s3=s3,
        keep_snapshots=1.5,  # S3's LastModified has whole seconds
        expire_at_once=1,
    )
    publisher = Publisher(settings)
    try:
        for version in range(4):
            site.export("100_200", cpu_lines(0, 5, value=version + 0.25))
            assert publisher.cycle().added == 1
            time.sleep(1.6)
        assert publisher.swept >= 2
    finally:
        publisher.close()
    listed = s3_bucket.pyarrow_filesystem().get_file_info(
        pafs.FileSelector(f"{s3_bucket.bucket}/lake", recursive=True)
    )
    copies = [i.path for i in listed if i.path.endswith(".parquet") and "/data/site-a/" in i.path]
    assert 1 <= len(copies) <= 2


def test_on_a_local_warehouse_a_commits_files_are_on_disk_before_the_catalog_points_at_them(
    site: Site, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyiceberg's own writes (manifests, manifest list, table metadata) are fsynced, file and
    folder, before the catalog's UPDATE that makes the table point at them: a power cut can
    lose the commit, never leave the table pointing at a file that is not on disk."""
    events: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(("fsync", str(Path(f"/proc/self/fd/{fd}").readlink())))
        real_fsync(fd)

    def statement(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("UPDATE ICEBERG_TABLES"):
            events.append(("update", ""))

    monkeypatch.setattr(os, "fsync", fsync)
    sqlalchemy.event.listen(sqlalchemy.Engine, "before_cursor_execute", statement)
    try:
        site.poll("alpha", 7)
        assert publisher.cycle().added == 1
        site.poll("alpha", 3)
        assert publisher.cycle().added == 1
    finally:
        sqlalchemy.event.remove(sqlalchemy.Engine, "before_cursor_execute", statement)
    table = catalog(site.settings).load_table(MESSAGES)
    snapshot = table.current_snapshot()
    assert snapshot is not None
    written = [
        urlsplit(location).path
        for location in (
            table.metadata_location,
            snapshot.manifest_list,
            *(m.manifest_path for m in snapshot.manifests(table.io)),
        )
    ]
    commit = max(i for i, (kind, _) in enumerate(events) if kind == "update")
    synced = [path for kind, path in events[:commit] if kind == "fsync"]
    for path in written:
        assert path in synced, f"{path} not fsynced before the commit"
        folder = str(Path(path).parent)
        assert folder in synced[synced.index(path) :], f"{folder} not fsynced after {path}"
    # The flushes' lake names (hard links): their folder's entries too.
    for data_file in _data_files(table):
        assert str(Path(urlsplit(data_file.file_path).path).parent) in synced


def test_a_table_with_nothing_new_is_not_loaded_until_its_files_or_snapshot_change(
    tmp_path: Path, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle reads each table's metadata pointer in one query; a table whose local files
    and pointer are as they were when it last had nothing to do is not loaded (a lake of
    hundreds of measurements would otherwise parse every table's metadata every cycle)."""
    a = Site(tmp_path / "a", "site-a", lake)
    b = Site(tmp_path / "b", "site-b", lake)
    a.poll("alpha", 3)
    for n in range(3):
        a.export(f"{n}00_{n + 1}00", [f"m{n},host=h v=1.5,n=1i {T0 + n}"])
    pub_a, pub_b = Publisher(a.settings), Publisher(b.settings)
    loaded: list[str] = []
    real_load = SqlCatalog.load_table

    def counted(self: SqlCatalog, identifier: Any) -> Table:
        loaded.append(".".join(identifier))
        return real_load(self, identifier)

    monkeypatch.setattr(SqlCatalog, "load_table", counted)
    first = pub_a.cycle()
    assert (first.added, first.errors) == (4, {})
    pub_a.cycle()  # plans each table once more: now it knows they have nothing to do
    loaded.clear()
    idle = pub_a.cycle()
    assert loaded == []
    assert (idle.added, idle.waiting, idle.errors) == (0, 0, {})
    assert idle.snapshots == first.snapshots

    a.export("000_100", ["m0,host=h v=2.5,n=2i 5"])  # re-exported: a file replaced
    b.export("500_600", [f"m2,host=h v=9.5,n=9i {T0 + 9}"])
    assert pub_b.cycle().added == 1  # another site commits to db.m2
    loaded.clear()
    result = pub_a.cycle()
    assert sorted(set(loaded)) == ["db.m0", "db.m2"]  # (a commit loads the table again too)
    assert (result.added, result.removed, result.errors) == (1, 1, {})
    rows = lake_rows(catalog(a.settings).load_table(("db", "m0")))
    assert rows == [(5, 2.5)]
    loaded.clear()
    pub_a.cycle()
    # It committed: it learns it is done from the table its commit left (the catalog still
    # points at that metadata), not by loading it again.
    assert loaded == []
    loaded.clear()
    pub_a.cycle()
    assert loaded == []
    pub_a.close()
    pub_b.close()


def lake_rows(table: Table) -> list[tuple[Any, ...]]:
    got = table.scan().to_arrow().to_pylist()
    return sorted((r["time_ns"], r["v"]) for r in got)
