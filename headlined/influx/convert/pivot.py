"""The fast path, tried first on a regular file: when every data line is a one-field bulk line
with a good value (an influx_inspect export nearly always is), the splitter has put each value
straight into its point's cell, one table per measurement; they are written with no merge."""

from __future__ import annotations

import array
from pathlib import Path

import duckdb

from headlined import sql
from headlined.influx.convert import _lines
from headlined.influx.convert.groups import Columns, Group, GroupId, Series, SeriesId
from headlined.influx.convert.job import ConvertResult, Settings
from headlined.influx.convert.read import PivotTable, Split
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.segments import Segments, check_layout
from headlined.influx.convert.values import cast_sql, lost_sql
from headlined.influx.convert.write import (
    GroupSeries,
    Output,
    Written,
    copy_parquet,
    null_sql,
    tag_sql,
)
from headlined.lineprotocol.grammar import TYPES, series_key_fits

PIVOT_BUDGET = 256 << 20  # bytes the pivoted points may take before the general way takes over
IN_ORDER = "points_in_order"  # the name a pivoted table in the file's order is read by
TAGS_BUDGET = PIVOT_BUDGET  # bytes its tag columns may take (see _tags_into)


class NoPivotError(Exception):
    """The pivot cannot decide this input: convert it again, the general way."""


def write_pivoted(
    con: duckdb.DuckDBPyConnection, split: Split, settings: Settings, rejects: Rejects
) -> ConvertResult:
    """Write the points that the splitter pivoted; NoPivotError when it cannot."""
    # Every check comes before the source is let go and the first file is written, so the
    # general way that takes over starts from the same place.
    if split.pivot_failure is not None:
        raise NoPivotError(split.pivot_failure)
    segments = Segments.find(con, {}, settings.default_database, settings.default_rp)
    # Headers after the first point fail the pivot, so one segment holds all the points.
    segment = segments.containing(max(split.pivot_first_line - 1, 0))
    groups, tables, bulk_series = _groups(split, segments, segment)
    check_layout(groups, settings.destination.layout, settings.source)
    targets = settings.destination.targets(groups)
    if len(targets) < len(groups):
        raise NoPivotError("a measurement name that cannot be a directory")
    settings.done_reading()
    output = Output(
        con=con,
        source=settings.source,
        file_stem=settings.destination.file_stem,
        suffix=settings.destination.suffix,
        series=Series(bulk_series, {}),
        rejects=rejects,
        schema=settings.schema,
    )
    return output.write(
        groups,
        targets,
        lambda group, columns, target, series: _write_table(
            con, tables, group, columns, target, series=series
        ),
        lines=split.pivot_lines,
        pivoted=True,
    )


def _groups(
    split: Split, segments: Segments, segment: int
) -> tuple[dict[GroupId, Group], dict[GroupId, PivotTable], dict[int, SeriesId]]:
    """The output group and the pivoted table of each measurement, and the series of each key;
    NoPivotError when a series key is for the exact parser or a measurement or series was
    written in more than one way."""
    where = segments[segment]
    parsed = split.series
    groups: dict[GroupId, Group] = {}
    tables: dict[GroupId, PivotTable] = {}
    for table in split.take_pivot_tables():
        _, kids, fields, _ = table
        series = {parsed[kid] for kid in kids}
        longest_field = max(len(fk.encode()) for fk, _ in fields)
        if None in series or not all(
            series_key_fits(len(split.keys[kid].encode()), longest_field) for kid in kids
        ):
            raise NoPivotError("a series key for the exact parser")
        names = {sid[0] for sid in series if sid is not None}
        ident = (where.database, where.rp, names.pop())
        if names or len(series) != len(kids) or ident in groups:
            raise NoPivotError("a measurement or series written in more than one way")
        group = groups[ident] = Group(*ident, kids=set(kids), segments={segment})
        for fk, ty in fields:
            group.fields[fk].add(TYPES[ty])
        tables[ident] = table
    return groups, tables, {kid: sid for kid, sid in enumerate(parsed) if sid is not None}


def _write_table(
    con: duckdb.DuckDBPyConnection,
    tables: dict[GroupId, PivotTable],
    group: Group,
    columns: Columns,
    target: Path,
    *,
    series: GroupSeries,
) -> Written:
    """One measurement's pivoted points to Parquet, as Merge.write writes merged ones."""
    # Popped: the points are freed once DuckDB has them.
    _, _, fields, batch = tables.pop(group.ident)
    cell = {(fk, TYPES[ty]): f"p.c{index}" for index, (fk, ty) in enumerate(fields)}
    values = []
    for column in columns.fields:
        # A later line empties the point's other cells of the field (see _lines.c): at most one
        # cell of a point's field holds a value, the latest line's, whatever its type.
        cells = [cast_sql(kind, column.kind, cell[column.key, kind]) for kind in column.seen]
        if not cells:
            value = null_sql(column.kind)
        elif len(cells) == 1:
            value = cells[0]
        else:
            value = f"coalesce({', '.join(cells)})"
        values.append(f"{value} AS {sql.ident(column.name)}")
    if _tags_into(batch, series):
        # In the file's order, with its tag columns: copied as it is, from one
        # table and without ORDER BY, which DuckDB keeps in order (no join, no sort).
        con.register(IN_ORDER, batch)
        del batch
        try:
            rounded = _rounded(con, columns, cell, IN_ORDER)
            select = (
                f'SELECT p.ts AS "time", {", ".join([*tag_sql(columns, "p"), *values])} '
                f"FROM {IN_ORDER} p"
            )
            return Written(copy_parquet(con, select, target), rounded)
        finally:
            con.unregister(IN_ORDER)  # frees the points
    # `batch` (read by DuckDB by its name in this frame) is copied into a table first:
    # DuckDB scans one Arrow array in one thread, and the join and sort then ran about
    # 0.1 s slower per 400K points than from a table.
    series.tables(con)
    con.execute("CREATE OR REPLACE TABLE points AS SELECT * FROM batch")
    del batch  # its memory goes before the sort needs more
    rounded = _rounded(con, columns, cell, "points")
    rows = copy_parquet(
        con,
        # The splitter gave the times as TIMESTAMPTZ_NS already.
        f'SELECT p.ts AS "time", {", ".join([*tag_sql(columns, "g"), *values])} '
        "FROM points p JOIN group_keys k ON p.kid = k.kid "
        "JOIN group_tags g ON k.sid = g.sid ORDER BY k.sid, p.ts",
        target,
    )
    return Written(rows, rounded)


def _tags_into(batch: _lines.Batch, series: GroupSeries) -> bool:
    """When the pivoted points of ``batch`` are in the file's order (by series id, then
    time), or can be put in it by moving whole runs of a series' points, give them their
    series' tag values as columns t0, t1... (as `group_tags`) and say True: the file needs
    no join and no sort then. An export lists a shard's series in order, each with its times
    rising, so a chunk of one shard is in order (a dense week of 2M points: its table written
    in 0.19 s instead of 0.31), and a chunk of many shards, in whatever order they come, is
    runs that the splitter moves (4 sparse years in 209 shards, 416K points: 8 ms to move,
    written in 0.10 s instead of 0.13); WAL points after the shard's are a run of their own.
    The tag columns are dictionary-encoded: a row holds its series number, not its values."""
    tag_count = len(series.tags)
    at = {sid: index for index, sid in enumerate(series.sids)}
    size = max(series.kids, default=-1) + 1
    ranks = array.array("i", [-1]) * size
    values: list[list[str | None]] = [[None] * size for _ in range(tag_count)]
    dictionaries = 0  # bytes of the tag values, once per series
    for kid, sid in zip(series.kids, series.kid_sids, strict=True):
        ranks[kid] = sid
        for column, by_series in zip(values, series.tags, strict=True):
            value = column[kid] = by_series[at[sid]]
            dictionaries += len(value.encode()) if value else 0
    # The tag columns hold a 4-byte index per row and tag, and the values: within a budget
    # as large as the pivot's (many tags), or the join and sort make them as they go.
    if len(batch) * 4 * tag_count + dictionaries > TAGS_BUDGET:
        return False
    return batch.with_tags(ranks.tobytes(), values)


def _rounded(
    con: duckdb.DuckDBPyConnection,
    columns: Columns,
    cell: dict[tuple[str, str], str],
    points: str,
) -> dict[str, int]:
    """Per field of a float column, the integer and unsigned values in table ``points`` that
    are not exactly a double (the cells of a point's field hold one value, so none counts
    twice)."""
    checks = [
        (column.key, lost_sql(kind, cell[column.key, kind]))
        for column in columns.fields
        if column.may_round
        for kind in column.seen
        if kind in ("integer", "unsigned")
    ]
    if not checks:
        return {}
    (counts,) = con.execute(
        "SELECT "
        + ", ".join(f"count(*) FILTER (WHERE {lost})" for _, lost in checks)
        + f" FROM {points} p"
    ).fetchall()
    rounded: dict[str, int] = {}
    for (key, _), count in zip(checks, counts, strict=True):
        rounded[key] = rounded.get(key, 0) + int(count)
    return rounded
