"""Deleting this site's lake copies that no snapshot of their table refers to any more.

A chunk that InfluxDB changed is exported again, and the lake replaces its copy in one
snapshot; the copy it replaced stays readable through the older snapshots until they expire
(``lake.keep_snapshots``). The chunk holding "now" changes with every follow, so without a
sweep its old copies would pile up in the warehouse for ever. A copy that a crash left
unregistered, whose local file then went away, is swept the same way.

Safe because: only paths under this site's prefix are considered (other sites' files are
never touched); a path is deleted only when no snapshot the table still has refers to it,
and only when it is older than ``keep_snapshots`` itself, so a copy written moments ago for a
commit still to come is left alone (this site's publisher is the only writer there, and it
sweeps between its commits).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyarrow import fs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table

from headlined.lake.layout import SUFFIX


def referenced(table: Table, prefix: str) -> set[str]:
    """The data files under ``prefix`` that any snapshot the table keeps refers to."""
    found: set[str] = set()
    read: set[str] = set()  # manifests are shared by snapshots: each is read once
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DATA or manifest.manifest_path in read:
                continue
            read.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.data_file.file_path.startswith(prefix):
                    found.add(entry.data_file.file_path)
    return found


def sweep(
    table: Table, prefix: str, older_than_s: float, clock: Callable[[], float] = time.time
) -> int:
    """Delete the ``.parquet`` files under ``prefix`` that no snapshot of ``table`` refers to
    and that are older than ``older_than_s``; return how many were deleted."""
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        return 0  # another FileIO cannot list; nothing is deleted then
    scheme, netloc, root = PyArrowFileIO.parse_location(prefix)
    filesystem = io.fs_by_scheme(scheme, netloc)
    keep = referenced(table, prefix)
    cutoff_ns = int((clock() - older_than_s) * 1e9)
    deleted = 0
    selector = fs.FileSelector(root, recursive=True, allow_not_found=True)
    for info in filesystem.get_file_info(selector):
        name = info.base_name
        if info.type != fs.FileType.File or name.startswith(".") or not name.endswith(SUFFIX):
            continue  # a copy being written has a hidden name
        uri = f"{scheme}://{info.path}"
        if uri in keep or info.mtime_ns is None or info.mtime_ns > cutoff_ns:
            continue
        io.delete(uri)
        deleted += 1
    return deleted
