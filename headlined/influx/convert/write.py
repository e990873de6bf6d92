"""Writing a conversion's output: each group's Parquet file, published whole (stale files of the
stem removed, so a redone chunk replaces its files), then the rejected lines' file."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from headlined import durable, logs, sql
from headlined.influx.convert.groups import Group, GroupId, Series, SeriesId, group_order
from headlined.influx.convert.job import ConvertResult
from headlined.influx.convert.rejects import Rejects

log = logs.get("convert")


def copy_parquet(con: duckdb.DuckDBPyConnection, select: str, target: Path) -> int:
    """The rows of ``select`` into the Parquet file ``target`` (ZSTD), published whole; returns
    the rows written."""
    tmp = durable.temporary(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    row = con.execute(
        f"COPY ({select}) TO {sql.literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
    ).fetchone()
    durable.publish(tmp, target)
    return int(row[0]) if row else 0


def _remove_stale(directory: Path, stem: str, keep: set[str]) -> None:
    """Delete files of this stem that this run did not write (a redo must replace, not add)."""
    pattern = re.compile(re.escape(stem) + r"(?:-[0-9]+)?\.parquet")
    removed = False
    for path in directory.iterdir():
        if pattern.fullmatch(path.name) and path.name not in keep:
            path.unlink()
            removed = True
    if removed:
        durable.fsync(directory)


@dataclass(kw_only=True)
class Output:
    """The files of one conversion, written group by group in (database, policy, measurement)
    order."""

    con: duckdb.DuckDBPyConnection
    source: Path
    file_stem: str
    series: Series
    rejects: Rejects
    _sid_of: dict[SeriesId, int] = field(init=False)

    def __post_init__(self) -> None:
        self._sid_of = self.series.numbered()

    def prepare(self, group: Group) -> None:
        """Temp tables of the group's series: `group_keys` (kid -> sid), `group_canons`
        (canonical text -> sid) and `group_tags` (sid -> tag values t0, t1...); sets
        ``group.tag_keys``."""
        sid_of = self._sid_of
        kids = sorted(group.kids)
        canons = sorted(group.canons)
        self.con.execute(
            "CREATE OR REPLACE TABLE group_keys AS "
            "SELECT unnest($1)::INTEGER AS kid, unnest($2)::INTEGER AS sid",
            [kids, [sid_of[self.series.bulk[kid]] for kid in kids]],
        )
        self.con.execute(
            "CREATE OR REPLACE TABLE group_canons AS "
            "SELECT unnest($1) AS canon, unnest($2)::INTEGER AS sid",
            [canons, [sid_of[self.series.exact[canon]] for canon in canons]],
        )
        series = sorted(self.series.of(group), key=sid_of.__getitem__)
        tag_keys = sorted({tag for sid in series for tag, _ in sid[1]})
        columns = [[dict(sid[1]).get(tag) for sid in series] for tag in tag_keys]
        select = "".join(f"unnest(${i + 2}) AS t{i}, " for i in range(len(tag_keys)))
        self.con.execute(
            f"CREATE OR REPLACE TABLE group_tags AS SELECT {select}unnest($1)::INTEGER AS sid",
            [[sid_of[sid] for sid in series], *columns],
        )
        group.tag_keys = tag_keys

    def write(
        self,
        groups: dict[GroupId, Group],
        targets: dict[GroupId, Path],
        write: Callable[[Group, Path], int],
        *,
        lines: int,
        pivoted: bool,
    ) -> ConvertResult:
        """Write each group that has a target with ``write`` (group, file -> rows), remove stale
        files, write the rejected lines; ``lines``: data lines seen, for the result."""
        files: list[Path] = []
        written: dict[Path, set[str]] = defaultdict(set)
        measurements: dict[GroupId, int] = {}
        for ident in sorted(targets, key=group_order):
            target = targets[ident]
            self.prepare(groups[ident])
            measurements[ident] = write(groups[ident], target)
            files.append(target)
            written[target.parent].add(target.name)
        for directory, names in written.items():
            _remove_stale(directory, self.file_stem, names)
        self.rejects.write()
        result = ConvertResult(
            lines, sum(measurements.values()), self.rejects.count, files, measurements, pivoted
        )
        log.info(
            "converted",
            file=str(self.source),
            lines=result.lines,
            points=result.points,
            rejected=result.rejected,
            files=len(files),
            pivoted=result.pivoted,
        )
        return result
