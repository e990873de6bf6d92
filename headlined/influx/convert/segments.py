"""Which database and retention policy each line belongs to: the context headers, and the
segments of lines that they start."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from headlined.influx.convert.groups import GroupId
from headlined.influx.convert.job import ConvertError
from headlined.influx.convert.read import SKIP

HEADER_DB = "# CONTEXT-DATABASE:"
HEADER_RP = "# CONTEXT-RETENTION-POLICY:"


def header(text: str) -> tuple[str, str] | None:
    """``("database" | "rp", name)`` when ``text`` is a context header line, else None."""
    if "\n" in text:
        return None
    if text.startswith(HEADER_DB):
        return "database", text[len(HEADER_DB) :]
    if text.startswith(HEADER_RP):
        return "rp", text[len(HEADER_RP) :]
    return None


@dataclass(frozen=True)
class Segment:
    """Lines from rowid `start` on, up to the next segment, share a database and policy."""

    start: int
    database: str | None
    rp: str | None


class Segments:
    """The segments of the input, in line order; the first starts at line 1 with the defaults."""

    def __init__(self, segments: list[Segment]) -> None:
        self.items = segments

    @classmethod
    def find(
        cls,
        con: duckdb.DuckDBPyConnection,
        headers: dict[int, tuple[str, str]],
        default_database: str | None,
        default_rp: str | None,
    ) -> Segments:
        """The segments that the skipped header rows of `lines` and ``headers`` (rowid ->
        header, of lines the exact parser saw) start; a database header keeps the default
        policy."""
        headers = dict(headers)
        rows = con.execute(
            f"SELECT rowid, raw FROM lines WHERE kind = {SKIP} AND starts_with(raw, '# CONTEXT-')"
        ).fetchall()
        for rowid, raw in rows:
            found = header(raw)
            if found is not None:
                headers[rowid] = found
        segments = [Segment(0, default_database, default_rp)]
        for rowid in sorted(headers):
            kind, name = headers[rowid]
            if kind == "database":
                segments.append(Segment(rowid, name, default_rp))
            else:
                segments.append(Segment(rowid, segments[-1].database, name))
        return cls(segments)

    def __getitem__(self, index: int) -> Segment:
        return self.items[index]

    def containing(self, rowid: int) -> int:
        """The index of the segment of row ``rowid``."""
        return max(i for i, segment in enumerate(self.items) if segment.start <= rowid)

    def index_sql(self, column: str) -> str:
        """SQL for the segment index of rowid `column`."""
        if len(self.items) == 1:
            return "0"
        cases = " ".join(
            f"WHEN {column} < {segment.start} THEN {index}"
            for index, segment in enumerate(self.items[1:])
        )
        return f"CASE {cases} ELSE {len(self.items) - 1} END"

    def rows_sql(self, indexes: Iterable[int], column: str) -> str:
        """SQL for whether rowid `column` lies in one of the segments ``indexes``."""
        ranges = []
        for index in sorted(indexes):
            start = self.items[index].start
            if index + 1 < len(self.items):
                ranges.append(f"{column} BETWEEN {start} AND {self.items[index + 1].start - 1}")
            else:
                ranges.append(f"{column} >= {start}")
        return " OR ".join(ranges)


def check_layout(groups: Iterable[GroupId], layout: str, source: Path) -> None:
    """Raise ConvertError when layout "database" meets lines without database or policy."""
    if layout == "database":
        for database, rp, measurement in groups:
            if database is None or rp is None:
                raise ConvertError(
                    f"{source}: lines of measurement {measurement!r} come before any "
                    f"'{HEADER_DB}'/'{HEADER_RP}' header and no default_database/"
                    "default_rp was given"
                )
