"""Where the exported Parquet files are, and which of them must be read together.

``<output_dir>/<db>/<rp>/<measurement>/<file>.parquet``, names percent-encoded (see
:func:`headlined.influx.convert.path_segment`); names starting with ``.`` or ``_`` are not data
(the exporter's work folder, rejected lines). The exporter's files are one chunk each, sorted by
series then time, and disjoint in time; imported files may overlap them. Files whose time
ranges overlap form a *cluster*, read as one with DuckDB sorting it; a cluster of one
exporter file needs no sort. Clusters are disjoint in time, so reading them in time order
meets every series' points in time order.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# The exporter's file names: <chunk start>_<chunk end>.parquet (chunkplan.Chunk.stem), with
# -<n> when one conversion wrote several (layout "measurement").
CHUNK_FILE = re.compile(r"\d{8}T\d{6}Z_\d{8}T\d{6}Z(?:-\d+)?\.parquet")


@dataclass(frozen=True, slots=True)
class MeasurementDir:
    """One measurement's folder, with its decoded names."""

    database: str
    retention_policy: str
    measurement: str
    path: Path


@dataclass(frozen=True, slots=True)
class FileSpan:
    """A Parquet file and the time range of its rows (from its statistics)."""

    path: Path
    first_ns: int
    last_ns: int


@dataclass(frozen=True, slots=True)
class Cluster:
    """Files to read together, in time order; ``sort``: DuckDB must sort them by series, time."""

    files: tuple[Path, ...]
    first_ns: int
    last_ns: int
    sort: bool


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "_"))


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and _visible(p))


def measurements(
    output_dir: Path, database: str | None = None, measurement: str | None = None
) -> Iterator[MeasurementDir]:
    """The measurement folders under ``output_dir`` (optionally of one database/measurement)."""
    if not output_dir.is_dir():
        return
    for db_dir in _subdirs(output_dir):
        db = urllib.parse.unquote(db_dir.name)
        if database is not None and db != database:
            continue
        for rp_dir in _subdirs(db_dir):
            for m_dir in _subdirs(rp_dir):
                name = urllib.parse.unquote(m_dir.name)
                if measurement is None or name == measurement:
                    yield MeasurementDir(db, urllib.parse.unquote(rp_dir.name), name, m_dir)


def data_files(directory: Path) -> list[Path]:
    """The Parquet data files of a measurement folder."""
    return sorted(p for p in directory.glob("*.parquet") if _visible(p) and p.is_file())


def clusters(files: Sequence[FileSpan]) -> list[Cluster]:
    """Files grouped where their ``[first, last]`` ranges overlap, in time order."""
    out: list[Cluster] = []
    group: list[FileSpan] = []
    for span in sorted(files, key=lambda f: (f.first_ns, f.last_ns, f.path)):
        if group and span.first_ns > max(f.last_ns for f in group):
            out.append(_cluster(group))
            group = []
        group.append(span)
    if group:
        out.append(_cluster(group))
    return out


def _cluster(group: list[FileSpan]) -> Cluster:
    return Cluster(
        tuple(f.path for f in group),
        min(f.first_ns for f in group),
        max(f.last_ns for f in group),
        sort=len(group) > 1 or not CHUNK_FILE.fullmatch(group[0].path.name),
    )


def around(found: Sequence[Cluster], since_ns: int | None, until_ns: int | None) -> list[Cluster]:
    """The clusters (in time order) to read for ``[since, until)``: those that overlap it, and
    the last one wholly before it and the first one wholly after it, whose points bound a hole
    that reaches into the range."""
    before = sum(1 for c in found if since_ns is not None and c.last_ns < since_ns)
    after = [i for i, c in enumerate(found) if until_ns is not None and c.first_ns >= until_ns]
    return list(found[max(0, before - 1) : after[0] + 1 if after else len(found)])
