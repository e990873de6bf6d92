"""Publish headlined's local Parquet files to Apache Iceberg tables, each exactly once.

One ``Publisher.cycle()`` reconciles from scratch: it lists the local files (layout.py), and
for each table reads the data files of this site that the table's current snapshot holds,
plans what to add and remove (plan.py), writes the lake copy of each file to add
(rewrite.py), and commits the additions and removals in one snapshot (several for a large
backlog, never splitting a replaced file from its successor).

Why every file is registered exactly once, whatever crashes where:

- What is registered is read from the table itself (its current snapshot), never from a
  record of ours that a crash could leave behind or ahead of it.
- A local file's lake name is a function of the file (relative path, size, mtime_ns), so the
  same file always gets the same name, and a plan adds only names the snapshot lacks.
- A commit is atomic: the catalog swaps the table's metadata pointer only if nobody else
  moved it since we read it (SqlCatalog's compare-and-swap), else CommitFailedException.
- So: a crash before the lake copy is complete leaves a hidden temporary file (or a piece of
  work_dir) that nothing references; a crash after the copy and before the commit leaves an
  unreferenced copy, which the next cycle writes again under the same name and registers; a
  crash after the commit leaves it registered, and the next plan does not add it again. A lost
  commit race reloads the table, plans again (the winner may have been ourselves: the plan is
  then empty) and retries, bounded, with jitter.
- A re-exported chunk has a new fingerprint, hence a new name: its old lake file is removed in
  the same snapshot that adds the new one, so readers see the old rows or the new ones. Old
  snapshots keep referencing the old file, which is never deleted here.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import secrets
import shutil
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy.exc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.io.pyarrow import (
    StatisticsCollector,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestFile,
)
from pyiceberg.table import Table, TableProperties
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from headlined import durable
from headlined.config import Config, LakeConfig, LakeS3Config
from headlined.lake import append, durable_io, layout, rewrite, sweep
from headlined.lake import catalog as lake_catalog
from headlined.lake.catalog import LakeError
from headlined.lake.layout import LocalFile, TableId, table_name
from headlined.lake.plan import Change, TablePlan, plan_table

__all__ = [
    "CycleResult",
    "LakeError",
    "LakeSettings",
    "Publisher",
    "settings_from_config",
]

SITE_PROPERTY = "headlined.site"
# Files per commit: a first publish of years of history commits as it goes, so a crash
# redoes at most one batch of copies.
BATCH_FILES = 500
COMMIT_ATTEMPTS = 8
_SITE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_EPOCH = datetime.date(1970, 1, 1)
# (table location, schema id, properties) -> its statistics plan and Parquet column ids.
_Plans = dict[tuple[str, int, str], tuple[dict[int, StatisticsCollector], dict[str, int]]]


@dataclass(frozen=True)
class LakeSettings:
    """Everything a Publisher needs, resolved from the config."""

    catalog_url: str  # SQLAlchemy URL (resolved default: sqlite under state_dir)
    warehouse: str  # absolute directory or s3://bucket/prefix
    s3: LakeS3Config | None
    site: str
    messages_dir: Path | None  # <parquet_path>/messages, None if no sources
    influx_dir: Path | None  # influx.output_dir, None if no influx section
    work_dir: Path  # local scratch for lake copies before upload/rename
    keep_snapshots: float = 3600.0  # seconds a replaced snapshot stays readable
    # Snapshots past keep_snapshots are forgotten once this many are: one commit for them all.
    expire_at_once: int = 10


def settings_from_config(cfg: Config) -> LakeSettings:
    """The lake's settings, defaults filled in: the catalog ``sqlite:///<state_dir>/lake/
    catalog.db``, the warehouse ``<state_dir>/lake/warehouse``, the site from ``lake.site`` or
    a name made once (hostname and a random suffix) and kept in ``<state_dir>/lake/site``."""
    lake = cfg.lake if cfg.lake is not None else LakeConfig()
    home = cfg.state_dir / "lake"
    return LakeSettings(
        catalog_url=lake.catalog or f"sqlite:///{home / 'catalog.db'}",
        warehouse=lake.warehouse or str(home / "warehouse"),
        s3=lake.s3,
        site=lake.site or _kept_site(home / "site"),
        messages_dir=cfg.parquet_path / "messages" if cfg.sources else None,
        influx_dir=cfg.influx.output_dir if cfg.influx is not None else None,
        work_dir=home / "work",
        keep_snapshots=lake.keep_snapshots,
    )


def _kept_site(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    host = host.strip("-_.")[:40] or "site"
    site = f"{host}-{''.join(secrets.choice(_SITE_CHARS) for _ in range(6))}"
    path.parent.mkdir(parents=True, exist_ok=True)
    durable.write_atomic(path, f"{site}\n".encode())
    return site


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did, for the service's status."""

    added: int  # data files registered this cycle
    removed: int  # data files dropped from the current snapshots this cycle
    waiting: int  # files still to publish after it (0 when all done)
    snapshots: dict[str, int]  # table name -> current snapshot id, for status
    errors: dict[str, str]  # table name -> why that table did not publish


class _StoppedError(Exception):
    """The caller asked the cycle to stop between batches."""


class _ChangedError(Exception):
    """A local file changed while it was copied: it waits for the next cycle."""


@dataclass
class _Tally:
    added: int = 0
    removed: int = 0
    waiting: int = 0
    snapshot: int | None = None
    errors: list[str] = field(default_factory=list)


class Publisher:
    """Publishes the local Parquet files to the lake; one cycle at a time, blocking."""

    def __init__(self, settings: LakeSettings) -> None:
        self._settings = settings
        self._catalog: SqlCatalog | None = None
        self._duck: duckdb.DuckDBPyConnection | None = None
        # table -> manifest path -> this site's data files in it (manifests never change).
        self._manifests: dict[TableId, dict[str, tuple[DataFile, ...]]] = {}
        # Which local trees are mirrored this cycle ("messages", "influx.output_dir").
        self._mirrored: set[str] = set()
        self._plans: _Plans = {}  # per table schema: statistics plan and column ids
        self.swept = 0  # lake copies deleted since start, none of the table's snapshots' any more
        # Local folder listings, kept while a folder does not change (years of flushes).
        self._folders = layout.Folders()
        # (table, schema id, Arrow schema of a lake copy) known to fit without a change.
        self._fitting: set[tuple[str, int, str]] = set()
        # The tables as this publisher's last cycle left them (taken again if unchanged).
        self._loaded: dict[TableId, Table] = {}
        # table -> (manifest list, its manifests) of the snapshot last seen or committed.
        self._lists: dict[TableId, tuple[str, list[ManifestFile]]] = {}
        # Folders that got new lake names (links) since the last commit: synced before it.
        self._unsynced: set[Path] = set()
        # Lake folders this publisher made or found (a link into one needs no check first).
        self._made: set[Path] = set()
        # Tables that had nothing to do: (metadata location, local files, snapshot id) then.
        self._idle: dict[TableId, tuple[str, tuple[LocalFile, ...], int | None]] = {}

    @property
    def settings(self) -> LakeSettings:
        """What it publishes, where to."""
        return self._settings

    def close(self) -> None:
        """Release the catalog's connections and the DuckDB used for copies."""
        if self._catalog is not None:
            self._catalog.engine.dispose()
            self._catalog = None
        if self._duck is not None:
            self._duck.close()
            self._duck = None

    def cycle(
        self,
        should_stop: Callable[[], bool] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> CycleResult:
        """Publish what is missing and drop what is gone; idempotent.

        Raises LakeError when the catalog or the storage cannot be reached (nothing is lost:
        the next cycle carries on). A table that refuses a file (a schema conflict, a file that
        cannot be read) is reported in ``errors``; the other tables go on. ``should_stop`` is
        asked between commits: True ends the cycle early (the rest is ``waiting``).
        ``progress`` is called after each lake copy and each commit (a watchdog's beat).
        """
        stop = should_stop or (lambda: False)
        beat = progress or (lambda: None)
        catalog = self._open()
        local, errors = self._local_files()
        try:
            pointers = lake_catalog.metadata_locations(catalog)
        except sqlalchemy.exc.SQLAlchemyError as why:
            raise self._outage(why) from None
        tables = set(local) | self._known_tables(pointers)
        result = CycleResult(0, 0, 0, {}, errors)
        self._clean_work_dir()
        stopped = False
        for table in sorted(tables):
            if stopped or stop():
                stopped = True
                result = _add(result, table, _Tally(waiting=len(local.get(table, []))))
                continue
            files = local.get(table, [])
            signature = tuple(files)
            idle = self._idle.get(table)
            if idle is not None and idle[:2] == (pointers.get(table), signature):
                # Its local files and its snapshot are as they were when it last had nothing
                # to do: it still has nothing to do (and is not loaded).
                result = _add(result, table, _Tally(snapshot=idle[2]))
                continue
            self._idle.pop(table, None)
            tally = _Tally()
            try:
                current = self._publish_table(
                    catalog,
                    table,
                    files,
                    tally,
                    pointer=pointers.get(table),
                    stop=stop,
                    beat=beat,
                )
                done = not (tally.added or tally.removed or tally.waiting or tally.errors)
                if current is not None and done:
                    self._idle[table] = (current.metadata_location, signature, tally.snapshot)
            except _StoppedError:
                stopped = True
            except (sqlalchemy.exc.SQLAlchemyError, OSError) as why:
                raise self._outage(why) from None
            except LakeError as why:
                tally.errors.append(str(why))
            except CommitFailedException:
                tally.errors.append(
                    f"lost {COMMIT_ATTEMPTS} commit races in a row to other writers of the "
                    "table; tried again next cycle"
                )
            except Exception as why:  # noqa: BLE001  bad remote data must not stop the others
                tally.errors.append(f"{type(why).__name__}: {why}")
            result = _add(result, table, tally)
        return result

    # -- one table ---------------------------------------------------------------------------

    def _publish_table(
        self,
        catalog: SqlCatalog,
        table_id: TableId,
        files: list[LocalFile],
        tally: _Tally,
        *,
        pointer: str | None,
        stop: Callable[[], bool],
        beat: Callable[[], None],
    ) -> Table | None:
        """Make the table mirror ``files``; the table as this left it (None: no such table
        and nothing to put in it). ``pointer``: the catalog's metadata location for it, read
        at the start of the cycle."""
        prepared: dict[str, DataFile] = {}  # lake path -> its DataFile, kept across retries
        current: Table | None = None
        for attempt in Retrying(
            retry=retry_if_exception_type(CommitFailedException),
            stop=stop_after_attempt(COMMIT_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            reraise=True,
        ):
            with attempt:
                tally.waiting = 0
                # A lost race means another writer moved the table: load it again.
                reuse = pointer if attempt.retry_state.attempt_number == 1 else None
                table = self._table(catalog, table_id, files, reuse)
                if table is None:
                    return None
                current = self._publish_plan(
                    table, table_id, files, tally, stop=stop, beat=beat, prepared=prepared
                )
        # Snapshots grow only with commits. `current` is the table as our last commit left
        # it (pyiceberg updates it in place): loading it again costs a metadata read and parse,
        # which grow with the snapshots kept; a writer that came in between makes the expiry
        # fail, which only means next time.
        if current is not None and (tally.added or tally.removed):
            self._expire(current)
        if current is not None:
            self._loaded[table_id] = current
        return current

    def _expire(self, table: Table) -> None:
        """Forget the table's snapshots older than ``keep_snapshots`` (never the current one):
        each commit adds one, and every commit rewrites the list of them all."""
        current = _snapshot_id(table)
        cutoff_ms = (time.time() - self._settings.keep_snapshots) * 1000
        old = [
            snapshot.snapshot_id
            for snapshot in table.snapshots()
            if snapshot.timestamp_ms < cutoff_ms and snapshot.snapshot_id != current
        ]
        # In batches: an expiry is a commit of its own, rewriting the metadata.
        if not old or len(old) < self._settings.expire_at_once:
            return
        # Another writer committing first (CommitFailedException) or expiring the same
        # snapshots (ValueError: no such snapshot) only means: next time.
        try:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        except (CommitFailedException, ValueError):
            return
        # What only the forgotten snapshots held can go now (replaced chunks' old copies).
        prefix = layout.site_prefix(table.location(), self._settings.site)
        self.swept += sweep.sweep(table, prefix, self._settings.keep_snapshots)

    def _table(
        self,
        catalog: SqlCatalog,
        table_id: TableId,
        files: list[LocalFile],
        pointer: str | None,
    ) -> Table | None:
        """The table, None if there is none and ``files`` is empty. The one this publisher
        left last time is taken as it is while the catalog's ``pointer`` is still its
        metadata: a load reads and parses the whole metadata again."""
        loaded = self._loaded.pop(table_id, None)
        if loaded is not None and pointer is not None and loaded.metadata_location == pointer:
            return loaded
        try:
            return catalog.load_table(table_id)
        except NoSuchTableError:
            if not files:
                return None
        location = f"{lake_catalog.warehouse_uri(self._settings.warehouse)}/" + (
            layout.table_folder(table_id)
        )
        schema = self._lake_schema(files)
        return lake_catalog.ensure_table(
            catalog, table_id, schema, location, partitioned=files[0].kind == "messages"
        )

    def _publish_plan(
        self,
        table: Table,
        table_id: TableId,
        files: list[LocalFile],
        tally: _Tally,
        *,
        stop: Callable[[], bool],
        beat: Callable[[], None],
        prepared: dict[str, DataFile],
    ) -> Table:
        """Commit the plan's batches; the table as the last commit left it."""
        registered = self._registered(table, table_id)
        plan = plan_table(
            files,
            registered,
            table.location(),
            self._settings.site,
            messages=table_id == layout.MESSAGES_TABLE,
        )
        tally.snapshot = _snapshot_id(table)
        tally.waiting = len(plan)
        for batch in plan.batches(BATCH_FILES):
            if stop():
                raise _StoppedError
            table, adds, skipped = self._prepare(
                table, batch, prepared, tally, stop=stop, beat=beat
            )
            removes = [
                registered[path]
                for change in batch.changes
                if change not in skipped
                for path in change.remove
            ]
            if adds or removes:
                # The new lake names' folder entries, once each, before the commit refers
                # to them.
                for folder in sorted(self._unsynced):
                    durable.fsync(folder)
                self._unsynced.clear()
                table = self._commit(table, table_id, adds, removes)
                beat()
                tally.added += len(adds)
                tally.removed += len(removes)
            tally.waiting -= sum(len(change) for change in batch.changes if change not in skipped)
            tally.snapshot = _snapshot_id(table)
            if stop():  # asked while copying: what was copied is committed, the rest waits
                raise _StoppedError
        return table

    def _prepare(
        self,
        table: Table,
        batch: TablePlan,
        prepared: dict[str, DataFile],
        tally: _Tally,
        *,
        stop: Callable[[], bool],
        beat: Callable[[], None],
    ) -> tuple[Table, list[DataFile], set[Change]]:
        """The DataFiles of the batch's additions, their lake copies in place; the changes
        whose copy failed are skipped whole (a replaced file's old copy stays registered), and
        so are those not reached when ``stop`` says so (a stop need not wait for a batch of
        uploads)."""
        adds: list[DataFile] = []
        skipped: set[Change] = set()
        for change in batch.changes:
            if stop():
                skipped.add(change)
                continue
            ready: list[DataFile] = []
            try:
                for path, local in change.add:
                    if path not in prepared:
                        table, prepared[path] = self._copy(table, path, local)
                        beat()
                    ready.append(prepared[path])
            except (rewrite.RewriteError, LakeError) as why:
                # This file waits (an unreadable file, a schema conflict); the others go on.
                tally.errors.append(str(why))
                skipped.add(change)
                continue
            except _ChangedError:
                skipped.add(change)
                continue
            adds += ready
        return table, adds, skipped

    def _copy(self, table: Table, lake_path: str, local: LocalFile) -> tuple[Table, DataFile]:
        """Put the lake file of ``local`` at ``lake_path``; its DataFile (the table's schema
        widened first if the file has new columns). A flush of messages goes as it is
        (_as_is)."""
        if local.kind == "messages":
            as_is = _as_is(local, table)
            if as_is is not None:
                metadata, partition = as_is
                table = self._fit(table, metadata.schema.to_arrow_schema(), local)
                data_file = _data_file(
                    table, lake_path, metadata, local.size, self._plans, partition=partition
                )
                self._place(table, local, lake_path)
                return table, data_file
        uri = urlsplit(lake_path)
        on_disk = uri.scheme == "file"
        if on_disk:
            final = Path(uri.path)
            durable_io.make_folders(final.parent)
            written = durable.temporary(final)
        else:
            self._settings.work_dir.mkdir(parents=True, exist_ok=True)
            written = self._settings.work_dir / f".{uuid.uuid4().hex}.parquet"
        try:
            self._write_copy(local, written)
            metadata = pq.read_metadata(written)
            arrow_schema = metadata.schema.to_arrow_schema()
            table = self._fit(table, arrow_schema, local)
            data_file = _data_file(table, lake_path, metadata, written.stat().st_size, self._plans)
            if on_disk:
                durable.publish(written, final)
            else:
                _upload(table, written, lake_path)
        finally:
            written.unlink(missing_ok=True)
        return table, data_file

    def _place(self, table: Table, local: LocalFile, lake_path: str) -> None:
        """Put ``local``'s bytes at ``lake_path`` as they are: on a local warehouse a hard
        link (no copy; the flush never writes a published file again, and the lake's name
        keeps the bytes when the local file is merged away), a copy where a link cannot be
        made (another file system); on object storage an upload. _ChangedError if the file
        is gone or is not the one the plan saw."""
        uri = urlsplit(lake_path)
        try:
            if uri.scheme != "file":
                _upload(table, local.path, lake_path)
                info = local.path.stat()
                placed = (info.st_size, info.st_mtime_ns)
            else:
                final = Path(uri.path)
                placed = self._link_into(local.path, final)
                self._unsynced.add(final.parent)
        except FileNotFoundError:
            raise _ChangedError from None
        if placed != (local.size, local.mtime_ns):
            # Replaced since the plan (merged days are new files with new names).
            raise _ChangedError

    def _link_into(self, local: Path, final: Path) -> tuple[int, int]:
        """_link_or_copy, its folder made first unless this publisher made or found it."""
        folder = final.parent
        if folder not in self._made:
            durable_io.make_folders(folder)
            self._made.add(folder)
        try:
            return _link_or_copy(local, final)
        except FileNotFoundError:
            if folder.is_dir() or not local.exists():
                raise
        # Removed behind our back (a lake wiped by hand): made again.
        durable_io.make_folders(folder)
        return _link_or_copy(local, final)

    def _fit(self, table: Table, arrow_schema: pa.Schema, local: LocalFile) -> Table:
        """``table``, its schema widened first if the lake copy of ``local`` needs it."""
        # Most files of a table share a schema: checking each one again costs more than
        # its copy (pyiceberg converts the whole schema).
        known = (table_name(local.table), table.metadata.current_schema_id, str(arrow_schema))
        if known in self._fitting:
            return table
        if not lake_catalog.fits(table, arrow_schema):
            table = lake_catalog.evolve(table, arrow_schema, str(local.path))
            if not lake_catalog.fits(table, arrow_schema):
                raise LakeError(
                    f"table {table_name(local.table)}: {local.path} does not fit the "
                    "table's schema even after adding its columns"
                )
        self._fitting.add(
            (table_name(local.table), table.metadata.current_schema_id, str(arrow_schema))
        )
        return table

    def _write_copy(self, local: LocalFile, written: Path) -> None:
        before = _identity(local.path)
        conn = self._duckdb()
        try:
            if local.source is not None and local.date is not None:
                rewrite.rewrite_messages(conn, local.path, written, local.source, local.date)
            elif local.retention_policy is not None:
                rewrite.rewrite_measurement(conn, local.path, written, local.retention_policy)
        except rewrite.RewriteError:
            # Gone while it was read (a closed day's flushes merged): not an error, the next
            # cycle sees the merged file.
            if _changed(local, before):
                raise _ChangedError from None
            raise
        # Replaced while it was read (a re-export): the copy may hold the new content under
        # the old file's name; the next cycle sees the new file.
        if _changed(local, before):
            raise _ChangedError

    def _lake_schema(self, files: list[LocalFile]) -> pa.Schema:
        """The Arrow schema of the first lake copy that can be made of ``files`` (written to
        work_dir and removed), to create their table with."""
        self._settings.work_dir.mkdir(parents=True, exist_ok=True)
        why = "its local files changed while they were read"
        for local in files:
            written = self._settings.work_dir / f".{uuid.uuid4().hex}.parquet"
            try:
                self._write_copy(local, written)
                return pq.read_schema(written)
            except rewrite.RewriteError as error:
                why = str(error)
            except _ChangedError:
                continue
            finally:
                written.unlink(missing_ok=True)
        raise LakeError(f"table {table_name(files[0].table)} cannot be created: {why}")

    def _commit(
        self, table: Table, table_id: TableId, adds: list[DataFile], removes: list[DataFile]
    ) -> Table:
        properties = {SITE_PROPERTY: self._settings.site}
        existing = self._manifest_files(table, table_id)
        merges = append.merges(table)
        if not removes and (not merges or len(existing) + 1 < append.merge_at(table)):
            appended = append.fast_append(table, adds, properties, existing)
            # Our own manifest and list: the next cycle need not read them back.
            prefix = layout.site_prefix(table.location(), self._settings.site)
            self._manifests.setdefault(table_id, {})[appended.manifest.manifest_path] = tuple(
                data_file for data_file in adds if data_file.file_path.startswith(prefix)
            )
            self._lists[table_id] = (appended.manifest_list, [appended.manifest, *existing])
            return table
        with table.transaction() as tx:
            if merges and TableProperties.MANIFEST_MERGE_ENABLED not in table.metadata.properties:
                # pyiceberg's merge append merges only where the table says so (tables made
                # before 12-03 do not).
                tx.set_properties({TableProperties.MANIFEST_MERGE_ENABLED: "true"})
            update = tx.update_snapshot(snapshot_properties=properties)
            if removes:
                with update.overwrite() as overwrite:
                    for data_file in removes:
                        overwrite.delete_data_file(data_file)
                    for data_file in adds:
                        overwrite.append_data_file(data_file)
            else:
                # pyiceberg's merge append folds the manifests together: readers and the
                # next plan read fewer files.
                with update.merge_append() as merge:
                    for data_file in adds:
                        merge.append_data_file(data_file)
        return table

    def _registered(self, table: Table, table_id: TableId) -> dict[str, DataFile]:
        """This site's data files in the table's current snapshot, by path."""
        prefix = layout.site_prefix(table.location(), self._settings.site)
        cached = self._manifests.get(table_id, {})
        seen: dict[str, tuple[DataFile, ...]] = {}
        found: dict[str, DataFile] = {}
        for manifest in self._manifest_files(table, table_id):
            if manifest.content != ManifestContent.DATA:
                continue
            ours = cached.get(manifest.manifest_path)
            if ours is None:
                ours = tuple(
                    entry.data_file
                    for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
                    if entry.data_file.file_path.startswith(prefix)
                )
            seen[manifest.manifest_path] = ours
            found.update((data_file.file_path, data_file) for data_file in ours)
        self._manifests[table_id] = seen
        return found

    def _manifest_files(self, table: Table, table_id: TableId) -> list[ManifestFile]:
        """The manifests of the table's current snapshot (its manifest list read once)."""
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        kept = self._lists.get(table_id)
        if kept is not None and kept[0] == snapshot.manifest_list:
            return kept[1]
        manifests = snapshot.manifests(table.io)
        self._lists[table_id] = (snapshot.manifest_list, manifests)
        return manifests

    # -- around the tables -------------------------------------------------------------------

    def _open(self) -> SqlCatalog:
        if self._catalog is None:
            settings = self._settings
            self._catalog = lake_catalog.open_catalog(
                settings.catalog_url, settings.warehouse, settings.s3
            )
        return self._catalog

    def _duckdb(self) -> duckdb.DuckDBPyConnection:
        if self._duck is None:
            self._duck = rewrite.connect()
        return self._duck

    def _outage(self, why: Exception) -> LakeError:
        where = lake_catalog.redacted(self._settings.catalog_url)
        text = str(why).split("\n", 1)[0]
        for secret in _secrets(self._settings):
            text = text.replace(secret, "***")
        return LakeError(
            f"the lake cannot be reached (catalog {where}, warehouse "
            f"{self._settings.warehouse}): {type(why).__name__}: {text}"
        )

    def _local_files(self) -> tuple[dict[TableId, list[LocalFile]], dict[str, str]]:
        settings = self._settings
        roots = {"messages": settings.messages_dir, "influx.output_dir": settings.influx_dir}
        errors: dict[str, str] = {}
        usable: dict[str, Path | None] = {}
        for what, root in roots.items():
            # A configured folder that is missing (not created yet, or a disk not mounted) is
            # left alone: mirroring it would drop every file of its tables from the lake.
            usable[what] = root if root is not None and root.is_dir() else None
        self._mirrored = {what for what, root in usable.items() if root is not None}
        grouped: dict[TableId, list[LocalFile]] = defaultdict(list)
        for local in layout.scan(usable["messages"], usable["influx.output_dir"], self._folders):
            if local.kind == "measurement" and local.table == layout.MESSAGES_TABLE:
                errors[table_name(local.table)] = (
                    f"{local.path}: the measurement {local.table[1]!r} of database "
                    f"{local.table[0]!r} has the name of headlined's messages table; it is "
                    "left out of the lake"
                )
                continue
            grouped[local.table].append(local)
        return dict(grouped), errors

    def _known_tables(self, pointers: dict[TableId, str | None]) -> set[TableId]:
        """The catalog's tables (``pointers``) that this site may hold files in and mirrors
        this cycle."""
        known: set[TableId] = set()
        for table_id in pointers:
            messages = table_id == layout.MESSAGES_TABLE
            if ("messages" if messages else "influx.output_dir") in self._mirrored:
                known.add(table_id)
        return known

    def _clean_work_dir(self) -> None:
        # Copies a crash left behind: nothing references them.
        work = self._settings.work_dir
        if work.is_dir():
            for leftover in work.glob(".*.parquet"):
                leftover.unlink(missing_ok=True)


def _add(result: CycleResult, table: TableId, tally: _Tally) -> CycleResult:
    name = table_name(table)
    snapshots = dict(result.snapshots)
    if tally.snapshot is not None:
        snapshots[name] = tally.snapshot
    errors = dict(result.errors)
    if tally.errors:
        errors[name] = "; ".join(dict.fromkeys(tally.errors))  # once each, across retries
    return CycleResult(
        added=result.added + tally.added,
        removed=result.removed + tally.removed,
        waiting=result.waiting + max(tally.waiting, 0),
        snapshots=snapshots,
        errors=errors,
    )


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None else None


def _changed(local: LocalFile, before: tuple[int, int] | None) -> bool:
    """Whether ``local`` (``before``: its identity when its copy began) is not, or no
    longer, the file the plan saw."""
    return _identity(local.path) != before or before != (local.size, local.mtime_ns)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def _data_file(
    table: Table,
    lake_path: str,
    metadata: pq.FileMetaData,
    size: int,
    plans: _Plans,
    *,
    partition: Record | None = None,
) -> DataFile:
    """The DataFile of a lake file, from its footer read locally (no extra GET on S3).
    ``plans`` keeps each schema's statistics plan and column ids (most of the cost for a
    small file otherwise). ``partition``: its partition values, when the file does not hold
    its partition columns (else they come from its statistics)."""
    schema = table.schema()
    properties = table.metadata.properties
    known = (table.location(), schema.schema_id, repr(sorted(properties.items())))
    if known not in plans:
        plans[known] = (
            compute_statistics_plan(schema, properties),
            parquet_path_to_id_mapping(schema),
        )
    stats_columns, column_ids = plans[known]
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=metadata,
        stats_columns=stats_columns,
        parquet_column_mapping=column_ids,
    )
    data_file = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=lake_path,
        file_format=FileFormat.PARQUET,
        partition=partition
        if partition is not None
        else statistics.partition(table.spec(), schema),
        file_size_in_bytes=size,
        sort_order_id=None,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )
    # Not a field of the file's entry (from_args has no place for it); pyiceberg's reader sets
    # it on what it reads from a manifest, and an overwrite that drops this file later needs
    # it (the file may come from our cache of our own manifests).
    data_file.spec_id = table.metadata.default_spec_id
    return data_file


def _as_is(local: LocalFile, table: Table) -> tuple[pq.FileMetaData, Record] | None:
    """The footer and partition values of a flush of messages that can be registered as it
    is, None if it needs a lake copy (rewrite.py: older flushes wrote ``payload`` with Parquet's
    JSON type). As it is, a flush lacks the ``source`` and ``date`` columns, which only its
    folder names: Iceberg readers take an identity partition's value from the table's
    manifests for a file without that column (the spec's rule, which pyiceberg, polars, Spark
    and Trino follow; it is how Hive tables are moved to Iceberg in place)."""
    try:
        metadata = pq.read_metadata(local.path)
    except FileNotFoundError:
        raise _ChangedError from None
    except (OSError, pa.ArrowException):
        return None  # the copy reports why it cannot be read
    columns = [metadata.schema.column(i) for i in range(metadata.num_columns)]
    names = {column.path for column in columns}
    if (
        rewrite.MESSAGES_ADDED[0] in names
        or rewrite.MESSAGES_ADDED[1] in names
        or not all(_plain(column) for column in columns)
        or local.source is None
        or local.date is None
    ):
        return None
    schema = table.schema()
    fields = table.spec().fields
    partitioned = [schema.find_column_name(spec_field.source_id) for spec_field in fields]
    # Exactly the identity partitions on source and date: else a reader would not find a
    # value for a column the file lacks.
    if sorted(str(name) for name in partitioned) != sorted(rewrite.MESSAGES_ADDED) or not all(
        isinstance(spec_field.transform, IdentityTransform) for spec_field in fields
    ):
        return None
    values = [
        local.source if name == "source" else (local.date - _EPOCH).days for name in partitioned
    ]
    return metadata, Record(*values)


def _plain(column: pq.ColumnSchema) -> bool:
    """Whether a top-level Parquet column reads the same in every Iceberg v2 engine."""
    if "." in column.path:
        return False
    logical = column.logical_type
    kind = logical.type
    if kind == "TIMESTAMP":
        return "timeUnit=microseconds" in str(logical)
    if kind == "INT":
        return "isSigned=true" in str(logical)
    return kind in ("STRING", "DATE", "NONE")


def _link_or_copy(local: Path, final: Path) -> tuple[int, int]:
    """``local`` also named ``final`` (its bytes copied, and synced, where a hard link cannot
    be made); the (size, mtime_ns) of the file that ``final`` now holds. The caller syncs the
    folder."""
    try:
        # Most often the name is new: linked in one step.
        os.link(local, final)
    except FileExistsError:
        linkable = True  # left by a cycle that did not commit: replaced below
    except OSError as why:
        if why.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        linkable = False
    else:
        placed = final.stat()
        return placed.st_size, placed.st_mtime_ns
    temporary = durable.temporary(final)
    temporary.unlink(missing_ok=True)
    if linkable:
        os.link(local, temporary)
        placed = temporary.stat()
    else:
        shutil.copyfile(local, temporary)
        durable.fsync(temporary)
        # A file replaced before or during the copy shows in its status afterwards.
        placed = local.stat()
    temporary.replace(final)
    return placed.st_size, placed.st_mtime_ns


def _upload(table: Table, local: Path, lake_path: str) -> None:
    with (
        local.open("rb") as source,
        table.io.new_output(lake_path).create(overwrite=True) as target,
    ):
        shutil.copyfileobj(source, target, 8 << 20)


def _secrets(settings: LakeSettings) -> Iterable[str]:
    password = urlsplit(settings.catalog_url).password
    values = [password] if password else []
    if settings.s3 is not None:
        values += [v for v in (settings.s3.secret_access_key, settings.s3.session_token) if v]
    return values
