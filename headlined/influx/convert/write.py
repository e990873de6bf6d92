"""Writing a conversion's output: each group's Parquet file, published whole (stale files of the
stem removed, so a redone chunk replaces its files), then the rejected lines' file."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import duckdb

from headlined import durable, logs, sql
from headlined.influx.convert.groups import (
    Columns,
    Group,
    GroupId,
    Series,
    SeriesId,
    columns,
    group_order,
)
from headlined.influx.convert.job import ConvertResult
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.values import SQL_TYPES
from headlined.influx.schema import MeasurementSchema

log = logs.get("convert")


@dataclass(frozen=True)
class GroupSeries:
    """A group's series, numbered (sid, see Series.numbered): of its bulk lines by key number
    (kid), of its exact-path points by canonical text, and each series' tag values."""

    kids: list[int]
    kid_sids: list[int]
    canons: list[str]
    canon_sids: list[int]
    sids: list[int]  # in tag order
    tags: list[list[str | None]]  # per tag key (Group.tag_keys), the values by series (sids)

    def tables(self, con: duckdb.DuckDBPyConnection) -> None:
        """Temp tables of these series for SQL that joins them: `group_keys` (kid -> sid),
        `group_canons` (canonical text -> sid) and `group_tags` (sid -> tag values t0, t1...)."""
        con.execute(
            "CREATE OR REPLACE TABLE group_keys AS "
            "SELECT unnest($1)::INTEGER AS kid, unnest($2)::INTEGER AS sid",
            [self.kids, self.kid_sids],
        )
        con.execute(
            "CREATE OR REPLACE TABLE group_canons AS "
            "SELECT unnest($1) AS canon, unnest($2)::INTEGER AS sid",
            [self.canons, self.canon_sids],
        )
        select = "".join(f"unnest(${i + 2}) AS t{i}, " for i in range(len(self.tags)))
        con.execute(
            f"CREATE OR REPLACE TABLE group_tags AS SELECT {select}unnest($1)::INTEGER AS sid",
            [self.sids, *self.tags],
        )


class Written(NamedTuple):
    """What writing one group's file gave: its rows, and per field the values that lost digits
    (big integers in a float column; zero counts may be left out)."""

    rows: int
    rounded: dict[str, int]


def tag_sql(columns: Columns, tags: str) -> list[str]:
    """SQL for the tag columns: from `tags` (the table group_tags) or NULL when this input has no
    such tag."""
    return [
        f"{tags}.t{index} AS {sql.ident(name)}"
        if index is not None
        else f"NULL::VARCHAR AS {sql.ident(name)}"
        for name, index in columns.tags
    ]


def null_sql(kind: str) -> str:
    """SQL: a NULL of the column type of ``kind`` (a schema's field absent from this input)."""
    return f"NULL::{SQL_TYPES[kind]}"


def copy_parquet(con: duckdb.DuckDBPyConnection, select: str, target: Path) -> int:
    """The rows of ``select`` into the Parquet file ``target`` (ZSTD), published whole; returns
    the rows written."""
    tmp = durable.temporary(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    row = con.execute(
        f"COPY ({select}) TO {sql.literal(str(tmp))} ({sql.PARQUET_MEASUREMENTS})"
    ).fetchone()
    durable.publish(tmp, target)
    return int(row[0]) if row else 0


def _remove_stale(directory: Path, stem: str, suffix: str, keep: set[str]) -> None:
    """Delete files of this stem that this run did not write (a redo must replace, not add)."""
    pattern = re.compile(re.escape(stem) + r"(?:-[0-9]+)?" + re.escape(suffix))
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
    suffix: str  # the files' (paths.PARQUET, or paths.STAGED)
    series: Series
    rejects: Rejects
    schema: Mapping[str, MeasurementSchema]  # measurement -> the columns its files must have
    _sid_of: dict[SeriesId, int] = field(init=False)

    def __post_init__(self) -> None:
        self._sid_of = self.series.numbered()

    def prepare(self, group: Group) -> GroupSeries:
        """The group's series, numbered; sets ``group.tag_keys``. No SQL: a writer that joins
        them makes their tables (GroupSeries.tables)."""
        sid_of = self._sid_of
        kids = sorted(group.kids)
        canons = sorted(group.canons)
        series = sorted(self.series.of(group), key=sid_of.__getitem__)
        tag_keys = sorted({tag for sid in series for tag, _ in sid[1]})
        group.tag_keys = tag_keys
        tags = [dict(sid[1]) for sid in series]
        return GroupSeries(
            kids=kids,
            kid_sids=[sid_of[self.series.bulk[kid]] for kid in kids],
            canons=canons,
            canon_sids=[sid_of[self.series.exact[canon]] for canon in canons],
            sids=[sid_of[sid] for sid in series],
            tags=[[values.get(tag) for values in tags] for tag in tag_keys],
        )

    def write(
        self,
        groups: dict[GroupId, Group],
        targets: dict[GroupId, Path],
        write: Callable[[Group, Columns, Path, GroupSeries], Written],
        *,
        lines: int,
        pivoted: bool,
    ) -> ConvertResult:
        """Write each group that has a target with ``write`` (group, its columns, file, its
        series), remove stale files, write the rejected lines; ``lines``: data lines seen,
        for the result."""
        files: list[Path] = []
        written: dict[Path, set[str]] = defaultdict(set)
        measurements: dict[GroupId, int] = {}
        widened: dict[GroupId, dict[str, str]] = {}
        rounded: dict[tuple[GroupId, str], int] = {}
        tag_columns: dict[GroupId, tuple[str, ...]] = {}
        for ident in sorted(targets, key=group_order):
            target = targets[ident]
            group = groups[ident]
            series = self.prepare(group)
            plan = columns(group, self.schema.get(group.measurement))
            if plan.widened:
                widened[ident] = plan.widened
            tag_columns[ident] = tuple(name for name, _ in plan.tags)
            measurements[ident], lost = write(group, plan, target, series)
            rounded.update(((ident, key), count) for key, count in lost.items() if count)
            files.append(target)
            written[target.parent].add(target.name)
        for directory, names in written.items():
            _remove_stale(directory, self.file_stem, self.suffix, names)
        self.rejects.write()
        result = ConvertResult(
            lines,
            sum(measurements.values()),
            self.rejects.count,
            files,
            measurements,
            pivoted,
            widened,
            rounded,
            tag_columns,
        )
        log.info(
            "converted",
            file=str(self.source),
            lines=result.lines,
            points=result.points,
            rejected=result.rejected,
            files=len(files),
            pivoted=result.pivoted,
            rounded=sum(rounded.values()),
        )
        return result
