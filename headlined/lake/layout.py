"""Which local Parquet files the lake mirrors, and the lake name each one gets.

Two trees are mirrored (docs/poller.md, docs/exporter.md):

- messages: ``<parquet_path>/messages/source=<S>/date=<D>/part-*.parquet`` → the table
  ``headlined.messages``;
- measurements: ``<output_dir>/<database>/<rp>/<measurement>/*.parquet`` (chunk files and
  ``import-<digest>.parquet``) → the table ``<database>.<measurement>``; directory names are
  percent-encoded (``headlined.influx.convert.paths.path_segment``) and decoded here.

Hidden names (``.tmp-*``, ``.work``, a file being written), ``_rejected`` and anything that is
not ``.parquet`` are skipped: what is left was published whole by an atomic rename.

A local file's lake name is ``<table location>/data/<site>/<its path under the table's folder,
without .parquet>-<fingerprint>.parquet``; the fingerprint digests (relative path, size,
mtime_ns), so a re-exported chunk (same name, new content) gets a new lake name, and the same
file always gets the same one. Only the lake names under ``data/<site>/`` are this site's.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from headlined.poll.parquet import FLUSH_NAME

MESSAGES_NAMESPACE = "headlined"
MESSAGES_TABLE: tuple[str, str] = (MESSAGES_NAMESPACE, "messages")
SUFFIX = ".parquet"
FINGERPRINT_CHARS = 16
# A name kept as it is in a lake path; anything else is spelt safely (plus a digest of the
# real name, so that two names never meet): object stores and the engines that read file
# URIs disagree about spaces, '%' and non-ASCII in paths.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.=-]")
_PARTITION = re.compile(r"(?P<key>source|date)=(?P<value>.+)")

Kind = Literal["messages", "measurement"]
# A folder's .parquet files with their size and mtime_ns (not the whole os.stat_result:
# years of folders are kept).
Listing = list[tuple[Path, int, int]]
TableId = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One published local Parquet file and where it belongs in the lake."""

    table: TableId
    kind: Kind
    path: Path  # the file on disk
    relative: str  # its path under the table's own folder, "/"-separated
    size: int
    mtime_ns: int
    source: str | None = None  # messages: the source=<S> folder
    date: datetime.date | None = None  # messages: the date=<D> folder
    retention_policy: str | None = None  # measurements: the <rp> folder
    # Worked out once (a file is planned every cycle, and Folders keeps it while its folder
    # does not change): the part of the lake name that stays when the file is replaced, and
    # a short digest of (relative path, size, mtime_ns): new content, new lake name.
    key: str = field(init=False, compare=False, repr=False)
    fingerprint: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        stem = self.relative.removesuffix(SUFFIX)
        object.__setattr__(self, "key", "/".join(safe_segment(p) for p in stem.split("/")))
        object.__setattr__(self, "fingerprint", _digest(self.identity))

    @property
    def identity(self) -> str:
        """(relative path, size, mtime_ns) as text: what a lake name digests."""
        return f"{self.relative}\0{self.size}\0{self.mtime_ns}"

    def lake_path(self, table_location: str, site: str) -> str:
        """This file's lake name under ``table_location`` (a URI, no trailing "/")."""
        return f"{site_prefix(table_location, site)}{self.key}-{self.fingerprint}{SUFFIX}"


def bundle_path(table_location: str, site: str, members: Sequence[LocalFile]) -> str:
    """The lake name of one copy of ``members`` (messages of one partition, flushes in id
    order): ``<folder>/part-<first>-<last>-<fingerprint>.parquet``, the fingerprint digesting
    every member's, so that the same members always give the same name. One member keeps its
    own name (``LocalFile.lake_path``)."""
    if len(members) == 1:
        return members[0].lake_path(table_location, site)
    head, tail = members[0], members[-1]
    first, last = FLUSH_NAME.fullmatch(head.path.name), FLUSH_NAME.fullmatch(tail.path.name)
    if first is None or last is None:
        raise ValueError(f"{head.path}, {tail.path}: not flushes of messages to bundle")
    folder = head.key.rpartition("/")[0]
    fingerprint = _digest("\n".join(m.identity for m in members))
    name = f"part-{first['first']}-{last['last']}-{fingerprint}{SUFFIX}"
    return f"{site_prefix(table_location, site)}{folder}/{name}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:FINGERPRINT_CHARS]


def site_prefix(table_location: str, site: str) -> str:
    """Where this site's lake files of a table live: every path that starts with it is ours."""
    return f"{table_location.rstrip('/')}/data/{site}/"


def key_of(lake_path: str, prefix: str) -> str | None:
    """The key (LocalFile.key) of one of this site's lake paths, None if it is not one."""
    if not lake_path.startswith(prefix) or not lake_path.endswith(SUFFIX):
        return None
    stem = lake_path[len(prefix) : -len(SUFFIX)]
    key, dash, fingerprint = stem.rpartition("-")
    if not dash or len(fingerprint) != FINGERPRINT_CHARS or not key:
        return None
    return key


def safe_segment(name: str) -> str:
    """``name`` as one path segment that every object store and engine reads the same way."""
    if _PLAIN.fullmatch(name) and len(name) <= 120:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    spelt = _UNSAFE_CHAR.sub("_", name)[:100].lstrip(".") or "_"
    return f"{spelt}-{digest}"


def table_folder(table: TableId) -> str:
    """The table's folder under the warehouse: ``<namespace>.db/<name>``, spelt safely."""
    return f"{safe_segment(table[0])}.db/{safe_segment(table[1])}"


def table_name(table: TableId) -> str:
    """How a table is named in results and messages: ``namespace.name``."""
    return f"{table[0]}.{table[1]}"


def _visible(name: str) -> bool:
    # Hidden: temporary files, .tmp-* staging and .work folders; _rejected: rejected lines.
    return not name.startswith(".") and name != "_rejected"


class Folders:
    """The Parquet files of each folder, listed again only when the folder changed.

    A file published, replaced or removed (all by rename or unlink) changes its folder's
    mtime, so an unchanged mtime means an unchanged listing: a cycle then stats one folder
    per partition instead of every file of years of flushes. A folder changed within
    ``RECENT_NS`` of now is listed every time, since a change in the same clock tick as our
    listing would leave its mtime as it was. A folder swapped for another (a closed day's
    flushes merged: headlined/poll/compact.py) is a new inode, listed afresh. What is kept of
    a folder no scan reaches any more goes at the end of the scan (:meth:`forget_unseen`).
    """

    RECENT_NS = 2 * 10**9

    def __init__(self) -> None:
        self._listings: dict[Path, tuple[tuple[int, int], Listing]] = {}
        # folder -> (its last listing, the LocalFiles made of it)
        self._files: dict[Path, tuple[Listing, list[LocalFile]]] = {}
        self._seen: set[Path] = set()  # the folders asked about since forget_unseen

    def parquet_files(self, directory: Path) -> Listing:
        """The visible .parquet files of ``directory`` with their size and mtime_ns, by
        name."""
        self._seen.add(directory)
        try:
            info = directory.stat()
        except (FileNotFoundError, NotADirectoryError):
            self._listings.pop(directory, None)
            return []
        seen = (info.st_ino, info.st_mtime_ns)
        kept = self._listings.get(directory)
        if kept is not None and kept[0] == seen:
            return kept[1]
        listing = list(_parquet_files(directory))
        if time.time_ns() - info.st_mtime_ns > self.RECENT_NS:
            self._listings[directory] = (seen, listing)
        else:
            self._listings.pop(directory, None)
        return listing

    def local_files(
        self, directory: Path, folder: str, new: Callable[..., LocalFile]
    ) -> list[LocalFile]:
        """The LocalFiles of ``directory`` (``folder``: its path under the table's folder;
        ``new``: a LocalFile with the folder's own fields given). Those made before are
        taken again while unchanged (path, size, mtime_ns): a cycle over years of folders
        makes none, and one over today's folder only those of its new flushes."""
        listing = self.parquet_files(directory)
        kept = self._files.get(directory)
        if kept is not None and kept[0] is listing:
            return kept[1]
        before = {(f.path, f.size, f.mtime_ns): f for f in kept[1]} if kept is not None else {}
        files = [
            before.get((path, size, mtime_ns))
            or new(path=path, relative=f"{folder}/{path.name}", size=size, mtime_ns=mtime_ns)
            for path, size, mtime_ns in listing
        ]
        if listing:
            self._files[directory] = (listing, files)
        else:
            self._files.pop(directory, None)
        return files

    def forget_unseen(self) -> None:
        """Drop what is kept of the folders not asked about since the last call (removed
        from the tree, or outside it now), so that years of daemon uptime keep only what the
        tree holds."""
        for kept in (self._listings, self._files):
            for directory in kept.keys() - self._seen:
                del kept[directory]
        self._seen = set()


def scan(
    messages_dir: Path | None, influx_dir: Path | None, folders: Folders | None = None
) -> list[LocalFile]:
    """Every local file the lake mirrors, sorted by table and relative path; ``folders``
    keeps listings from one scan to the next."""
    folders = folders if folders is not None else Folders()
    found = list(_scan_messages(messages_dir, folders)) if messages_dir is not None else []
    if influx_dir is not None:
        found += _scan_measurements(influx_dir, folders)
    folders.forget_unseen()
    found.sort(key=lambda f: (f.table, f.relative))
    return found


def _stat(path: Path) -> os.stat_result | None:
    try:
        info = path.stat()
    except FileNotFoundError:  # renamed away between the listing and now
        return None
    return info if path.is_file() else None


def _subdirs(directory: Path) -> Iterator[Path]:
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _visible(entry.name) and entry.is_dir():
            yield entry


def _parquet_files(directory: Path) -> Iterator[tuple[Path, int, int]]:
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _visible(entry.name) and entry.name.endswith(SUFFIX):
            info = _stat(entry)
            if info is not None:
                yield entry, info.st_size, info.st_mtime_ns


def _scan_messages(root: Path, folders: Folders) -> Iterator[LocalFile]:
    for source_dir in _subdirs(root):
        source = _partition(source_dir.name, "source")
        if source is None:
            continue
        for date_dir in _subdirs(source_dir):
            day = _partition(date_dir.name, "date")
            try:
                date = datetime.date.fromisoformat(day) if day is not None else None
            except ValueError:
                date = None
            if date is None:
                continue
            new = functools.partial(
                LocalFile, table=MESSAGES_TABLE, kind="messages", source=source, date=date
            )
            folder = f"{source_dir.name}/{date_dir.name}"
            yield from folders.local_files(date_dir, folder, new)


def _partition(name: str, key: str) -> str | None:
    match = _PARTITION.fullmatch(name)
    if match is None or match["key"] != key:
        return None
    # DuckDB's PARTITION_BY escapes values in folder names the URL way.
    return urllib.parse.unquote(match["value"])


def _scan_measurements(root: Path, folders: Folders) -> Iterator[LocalFile]:
    for db_dir in _subdirs(root):
        database = urllib.parse.unquote(db_dir.name)
        for rp_dir in _subdirs(db_dir):
            retention_policy = urllib.parse.unquote(rp_dir.name)
            for m_dir in _subdirs(rp_dir):
                table = (database, urllib.parse.unquote(m_dir.name))
                new = functools.partial(
                    LocalFile,
                    table=table,
                    kind="measurement",
                    retention_policy=retention_policy,
                )
                yield from folders.local_files(m_dir, rp_dir.name, new)
