"""pyiceberg's file IO, with what it writes on a local warehouse on disk before the commit.

pyiceberg writes a commit's manifests, manifest list and table metadata, then swaps the
catalog's pointer to the new metadata file. Its local writes are never fsynced: after a
power cut the catalog (SQLite or PostgreSQL, both durable) could point at a metadata file,
or a manifest, that never reached the disk, and the table would not open again. Here every
file pyiceberg writes under a ``file://`` warehouse is fsynced, and its folder too, when its
stream closes, which is before the pointer swap. S3 writes are whole once their upload
returns, and go through pyiceberg's own IO unchanged.

The catalog is opened with ``py-io-impl`` naming ``DurableFileIO`` (catalog.py); any other
Iceberg client reads the same files with its own IO.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from pyiceberg.io import OutputStream
from pyiceberg.io.pyarrow import PyArrowFile, PyArrowFileIO

from headlined import durable

IMPLEMENTATION = f"{__name__}.DurableFileIO"
_BUFFER = 1 << 20


class DurableFileIO(PyArrowFileIO):
    """``PyArrowFileIO`` whose local files are on disk once their stream is closed."""

    def new_output(self, location: str) -> PyArrowFile:
        """The file at ``location`` to write; a local one is fsynced as it closes."""
        scheme, _, path = self.parse_location(location, self.properties)
        if scheme != "file":
            return super().new_output(location)
        return _LocalFile(location=location, path=path, fs=self.fs_by_scheme(scheme, None))


class _LocalFile(PyArrowFile):
    def create(self, overwrite: bool = False) -> OutputStream:
        """A buffered stream to the file; its data and folder entry are synced on close."""
        target = Path(self._path)
        make_folders(target.parent)
        raw = _SyncedFile(target, "wb" if overwrite else "xb")
        return io.BufferedWriter(raw, buffer_size=_BUFFER)


class _SyncedFile(io.FileIO):
    """A file whose close waits until its data, and its name in its folder, are on disk."""

    def close(self) -> None:
        if self.closed:
            return
        try:
            os.fsync(self.fileno())
        finally:
            super().close()
        durable.fsync(Path(str(self.name)).parent)


def make_folders(folder: Path) -> None:
    """``folder`` and any missing parents, each new one's entry synced in its parent."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        durable.fsync(new.parent)
