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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from headlined.lake.layout import LocalFile, key_of, site_prefix

Add = tuple[str, LocalFile]  # (lake path, the local file it copies)


@dataclass(frozen=True)
class Change:
    """What one key needs: files to add and registered paths to drop, in the same commit."""

    add: tuple[Add, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class TablePlan:
    """The changes that make one table mirror this site's local files, by key."""

    changes: tuple[Change, ...] = ()

    @property
    def add(self) -> tuple[Add, ...]:
        """The files to register: (lake path, local file)."""
        return tuple(a for change in self.changes for a in change.add)

    @property
    def remove(self) -> tuple[str, ...]:
        """The registered lake paths of this site to drop."""
        return tuple(r for change in self.changes for r in change.remove)

    def __len__(self) -> int:
        return sum(len(change.add) + len(change.remove) for change in self.changes)

    def batches(self, max_files: int) -> list[TablePlan]:
        """This plan cut into plans of about ``max_files`` files each (one commit each),
        never splitting the removal of a file from the addition of its successor."""
        out: list[TablePlan] = []
        batch: list[Change] = []
        size = 0
        for change in self.changes:
            batch.append(change)
            size += len(change.add) + len(change.remove)
            if size >= max_files:
                out.append(TablePlan(tuple(batch)))
                batch, size = [], 0
        if batch:
            out.append(TablePlan(tuple(batch)))
        return out


def plan_table(
    local: Iterable[LocalFile], registered: Iterable[str], location: str, site: str
) -> TablePlan:
    """The plan that makes this site's part of the table equal to ``local``.

    ``registered``: every data file path of the table's current snapshot (any site's).
    ``location``: the table's location URI, ``site``: this site's name.
    """
    prefix = site_prefix(location, site)
    mine = {path for path in registered if path.startswith(prefix)}
    desired = {f.lake_path(location, site): f for f in local}
    by_key: dict[str, tuple[list[Add], list[str]]] = defaultdict(lambda: ([], []))
    for path in sorted(desired.keys() - mine):
        by_key[desired[path].key][0].append((path, desired[path]))
    for path in sorted(mine - desired.keys()):
        # A path of ours that is not one of our names (key None) is dropped on its own.
        by_key[key_of(path, prefix) or path][1].append(path)
    return TablePlan(tuple(Change(tuple(a), tuple(r)) for _, (a, r) in sorted(by_key.items())))
