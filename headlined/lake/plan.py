"""What one table needs so that its current snapshot mirrors this site's local files (pure).

Desired: the lake name of every local file of the table (``layout.LocalFile.lake_path``).
Registered: the data files of the table's current snapshot. Only the registered paths under
this site's prefix (``<location>/data/<site>/``) are looked at: other sites' files are never
touched. The plan adds each desired name that is not registered, and removes each of this
site's registered names that is not desired (its local file was replaced, so it has a new
name, or it is gone: the lake mirrors the local tree; older snapshots keep the old file).

Changes are grouped by key (a lake name without its fingerprint): a replaced file's removal
and its successor's addition share a key, so a batch never splits them and a reader sees the
old rows or the new ones, never both or neither.

Each local file becomes one lake file: a flush of messages is registered as it is (linked
or uploaded, headlined/lake/publisher.py), so there is nothing to gain from bundling flushes.
Versions before that bundled a partition's flushes into one copy (``layout.bundle_path``); such
a registered bundle stays while the local flushes in its id range are exactly the ones it was
made of (they are then in no other lake file), and is otherwise dropped and its flushes
registered one by one, in the same change (all of a partition's changes are one change).
Flushes never overlap (each takes the ids after the last), so a range holds its own flushes
only.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from headlined.lake.layout import LocalFile, bundle_path, key_of, site_prefix
from headlined.poll.parquet import flush_range

Add = tuple[str, LocalFile]  # a lake path and the local file it is made of
Span = tuple[int, int]  # the first and last record id of a flush
_Flush = tuple[Span, LocalFile, str]  # a flush, its id range and its lake name


@dataclass(frozen=True)
class Change:
    """What one key needs: files to add and registered paths to drop, in the same commit."""

    add: tuple[Add, ...] = ()
    remove: tuple[str, ...] = ()

    def __len__(self) -> int:
        """Local files it publishes plus lake files it drops: what waits for it."""
        return len(self.add) + len(self.remove)


@dataclass(frozen=True)
class TablePlan:
    """The changes that make one table mirror this site's local files, by key."""

    changes: tuple[Change, ...] = ()

    @property
    def add(self) -> tuple[Add, ...]:
        """The files to register: (lake path, its local file)."""
        return tuple(a for change in self.changes for a in change.add)

    @property
    def remove(self) -> tuple[str, ...]:
        """The registered lake paths of this site to drop."""
        return tuple(r for change in self.changes for r in change.remove)

    def __len__(self) -> int:
        """Local files to publish plus lake files to drop: what waits."""
        return sum(len(change) for change in self.changes)

    def batches(self, max_files: int) -> list[TablePlan]:
        """This plan cut into plans of about ``max_files`` files each (one commit each),
        never splitting the removal of a file from the addition of its successor."""
        out: list[TablePlan] = []
        batch: list[Change] = []
        size = 0
        for change in self.changes:
            batch.append(change)
            size += len(change)
            if size >= max_files:
                out.append(TablePlan(tuple(batch)))
                batch, size = [], 0
        if batch:
            out.append(TablePlan(tuple(batch)))
        return out


def plan_table(
    local: Iterable[LocalFile],
    registered: Iterable[str],
    location: str,
    site: str,
    *,
    messages: bool = False,
) -> TablePlan:
    """The plan that makes this site's part of the table equal to ``local``.

    ``registered``: every data file path of the table's current snapshot (any site's).
    ``location``: the table's location URI, ``site``: this site's name. ``messages``: the
    table is ``headlined.messages``, whose flushes are bundled (no other table's files are,
    whatever their names).
    """
    prefix = site_prefix(location, site)
    mine = {path for path in registered if path.startswith(prefix)}
    singles: list[LocalFile] = []
    # partition folder -> its flushes with their id ranges and lake names (each worked out
    # once: the open days of a busy site are ~20,000 flushes, planned again every cycle)
    flushes: dict[str, list[_Flush]] = defaultdict(list)
    names: dict[str, str] = {}  # a flush's lake name -> its partition folder
    for f in local:
        key = f.key if messages and f.kind == "messages" else None
        span = flush_range(key) if key is not None else None
        if key is not None and span is not None:
            folder = key.rpartition("/")[0]
            name = f.lake_path(location, site)
            flushes[folder].append((span, f, name))
            names[name] = folder
        else:
            singles.append(f)
    kept: dict[str, set[str]] = defaultdict(set)  # by partition: flushes registered as such
    copies: dict[str, list[tuple[Span, str]]] = defaultdict(list)  # by partition: others
    for path in mine if messages else ():
        if path in names:
            kept[names[path]].add(path)
            continue
        key = key_of(path, prefix)
        span = flush_range(key) if key is not None else None
        if key is not None and span is not None:
            copies[key.rpartition("/")[0]].append((span, path))
    by_key: dict[str, tuple[list[Add], list[str]]] = defaultdict(lambda: ([], []))
    for folder in flushes.keys() | copies.keys():
        adds, removes = _plan_partition(
            flushes[folder], kept[folder], copies[folder], location, site
        )
        if adds or removes:
            by_key[folder] = (adds, removes)
    taken = {path for folder_copies in copies.values() for _, path in folder_copies}
    taken.update(path for paths in kept.values() for path in paths)
    desired = {f.lake_path(location, site): f for f in singles}
    for path in sorted(desired.keys() - mine):
        by_key[desired[path].key][0].append((path, desired[path]))
    for path in sorted(mine - desired.keys() - taken):
        # A path of ours that is not one of our names (key None) is dropped on its own.
        by_key[key_of(path, prefix) or path][1].append(path)
    return TablePlan(tuple(Change(tuple(a), tuple(r)) for _, (a, r) in sorted(by_key.items())))


def _plan_partition(
    flushes: list[_Flush],
    kept: set[str],
    bundles: list[tuple[Span, str]],
    location: str,
    site: str,
) -> tuple[list[Add], list[str]]:
    """One partition's flushes (id range, file, lake name), the lake names of those
    registered as they are (``kept``) and this site's other registered lake files of the
    partition (id range, path: an older version's bundles): (flushes to add, registered
    files to drop)."""
    flushes = sorted(flushes, key=lambda flush: (flush[0], flush[1].relative))
    starts = [first for (first, _), _, _ in flushes]
    # The relative paths of flushes a kept lake file holds: first those registered as they
    # are (a bundle that also holds one of them is dropped, its others added one by one).
    held = {f.relative for _, f, name in flushes if name in kept}
    removes: list[str] = []
    for (first, last), path in sorted(bundles):
        # Flushes never overlap, so those within [first, last] lie side by side in id order.
        members = []
        for index in range(bisect.bisect_left(starts, first), len(flushes)):
            (start, end), f, _ = flushes[index]
            if start > last:
                break
            if end <= last:
                members.append(f)
        relatives = {f.relative for f in members}
        if members and not relatives & held and bundle_path(location, site, members) == path:
            held |= relatives
        else:
            removes.append(path)
    adds: list[Add] = [(name, f) for _, f, name in flushes if f.relative not in held]
    return adds, removes
