"""Names on disk: a directory name for any measurement, database or policy name, and the final
file of each output group."""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from headlined.influx.convert.groups import GroupId, group_order

MAX_SEGMENT_BYTES = 255
_STEM_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
# `=` too: DuckDB reads a directory named `k=v` as a Hive partition and adds a column.
_PATH_UNSAFE = re.compile(r"[%/=\\\x00-\x1f\x7f]")


def path_segment(name: str) -> str:
    """Encode ``name`` as one safe directory name; ``urllib.parse.unquote`` gives it back.

    ``%``, ``/``, ``\\``, ``=`` (DuckDB would take ``k=v`` for a Hive partition), control
    characters and a leading ``.`` (so also ``.`` and ``..``) are percent-encoded as UTF-8;
    everything else (spaces, commas, Thai, emoji) is kept.
    Raises ValueError for an empty name, or one longer than 255 bytes once encoded.
    """
    if not name:
        raise ValueError("an empty name cannot be a directory name")
    encoded = _PATH_UNSAFE.sub(lambda m: urllib.parse.quote(m.group(), safe=""), name)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise ValueError(
            f"name {name[:40]!r}... is longer than {MAX_SEGMENT_BYTES} bytes as a directory name"
        )
    return encoded


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can be a file stem: one visible path component of at most 200 bytes."""
    # (path_segment()'s output is one); room is left for "-<n>.parquet" and the hidden
    # temporary name.
    return (
        0 < len(name.encode("utf-8", "surrogatepass")) <= 200
        and not name.startswith(".")
        and not _STEM_UNSAFE.search(name)
    )


PARQUET = ".parquet"
# The suffix of a file written to be published elsewhere later (a chunk, an import): a
# reader's `<output_dir>/**/*.parquet` glob, which walks hidden folders such as `.work/`
# too (DuckDB, polars), must not count it beside the published file.
STAGED = ".parquet-staged"


def published_name(staged: str) -> str:
    """The name a file written with the STAGED suffix is published under."""
    return staged.removesuffix(STAGED) + PARQUET


@dataclass(frozen=True)
class Destination:
    """Where the Parquet files go: ``out_dir``, its layout, the files' stem and suffix."""

    out_dir: Path
    layout: str  # "measurement" or "database"
    file_stem: str
    suffix: str = PARQUET

    def targets(self, groups: Iterable[GroupId]) -> dict[GroupId, Path]:
        """The final file of each group; groups whose names cannot be directories are left out."""
        # Layout "database": <database>/<rp>/<measurement>/<stem>.parquet.  Layout
        # "measurement": <measurement>/<stem>.parquet, or <stem>-0, -1... in (database, policy)
        # order when the input holds the measurement under several of them.
        targets: dict[GroupId, Path] = {}
        if self.layout == "database":
            for ident in groups:
                with contextlib.suppress(ValueError):
                    parts = [path_segment(str(name)) for name in ident]
                    targets[ident] = self.out_dir.joinpath(*parts, f"{self.file_stem}{self.suffix}")
            return targets
        by_measurement: dict[str, list[GroupId]] = defaultdict(list)
        for ident in groups:
            by_measurement[ident[2]].append(ident)
        for measurement, idents in by_measurement.items():
            try:
                directory = self.out_dir / path_segment(measurement)
            except ValueError:
                continue
            idents.sort(key=group_order)
            for index, ident in enumerate(idents):
                name = self.file_stem if len(idents) == 1 else f"{self.file_stem}-{index}"
                targets[ident] = directory / f"{name}{self.suffix}"
        return targets

    def no_directory_reason(self) -> str:
        """Why the lines of a group that has no target are rejected."""
        what = (
            "database, retention policy or measurement"
            if self.layout == "database"
            else "measurement"
        )
        return f"{what} name longer than {MAX_SEGMENT_BYTES} bytes as a directory name"
