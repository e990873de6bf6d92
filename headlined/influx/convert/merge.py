"""The general way's output: the lines and exact-path points of a group merged into points by
SQL, keyed by (series, time) with a later line winning, as the WAL does after TSM data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from headlined import sql
from headlined.influx.convert.exact import FIELD_SLOTS
from headlined.influx.convert.groups import Columns, FieldColumn, Group, Series
from headlined.influx.convert.read import BATCH, BULK, LINE_COLUMNS, Split, line_text
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.segments import Segments
from headlined.influx.convert.values import column_sql, text_lost_sql
from headlined.influx.convert.write import GroupSeries, Written, copy_parquet, null_sql, tag_sql

# `time` as TIMESTAMPTZ_NS, which Parquet stores as TIMESTAMP(NANOS, isAdjustedToUTC=true), so
# readers see UTC times.  timezone('UTC', ...) reads the plain timestamp as UTC whatever the
# session's TimeZone; a cast would read it in that zone, the process's TZ by default.
_TIME = "timezone('UTC', make_timestamp_ns(p.t))"


@dataclass(frozen=True, kw_only=True)
class Merge:
    """Writes a group's merged points, or rejects its lines (after series.tables())."""

    con: duckdb.DuckDBPyConnection
    split: Split
    segments: Segments
    series: Series
    mult: int
    mitems: bool  # whether multi-field lines were split into the table `mitems`
    rejects: Rejects

    def write(self, group: Group, columns: Columns, target: Path, series: GroupSeries) -> Written:
        """The group's points into the Parquet file ``target``, sorted by tags, then time."""
        series.tables(self.con)
        # A point's field takes the value of the latest line that gives it, whatever its type,
        # converted into the field's one column type.  Raw value text is aggregated and
        # converted afterwards: one conversion per output value instead of one per line.  When
        # no line can override another (the splitter saw each series key's field times only
        # increase, no two keys are one series (tags in another order), and no exact-path or
        # multi-field values join them), a field's only value needs no ordering.
        one_key_each = len(self.series.of(group)) == len(group.kids)
        only = self.split.unique and one_key_each and not group.canons and not self.mitems
        latest = "any_value(v)" if only else "arg_max(v, o)"
        # Merged values are named by position: a field may be called `sid` or `t`.
        merged_as = {
            column.key: f"f{index}" for index, column in enumerate(columns.fields) if column.seen
        }
        merged = (
            "SELECT sid, t, "
            + ", ".join(
                f"{latest} FILTER (WHERE fk = {sql.literal(key)}) AS {name}"
                for key, name in merged_as.items()
            )
            + f" FROM ({self._sources(group)}) GROUP BY sid, t"
        )
        rounding = [column for column in columns.fields if column.may_round]
        rounded: dict[str, int] = {}
        if rounding:
            # Counting the values that lose digits needs the merged points twice: kept in a
            # table.  Only a field whose values have several types, or another type than
            # the schema's, can round, so the common case merges in the query that writes.
            self.con.execute(f"CREATE OR REPLACE TABLE merged AS {merged}")
            (row,) = self.con.execute(
                "SELECT "
                + ", ".join(
                    f"count(*) FILTER (WHERE {text_lost_sql(c.seen, merged_as[c.key])})"
                    for c in rounding
                )
                + " FROM merged"
            ).fetchall()
            rounded = {c.key: int(count) for c, count in zip(rounding, row, strict=True)}
            merged = "SELECT * FROM merged"
        values = [
            f"{_value(column, merged_as)} AS {sql.ident(column.name)}" for column in columns.fields
        ]
        rows = copy_parquet(
            self.con,
            f"""SELECT {_TIME} AS "time", {", ".join([*tag_sql(columns, "g"), *values])}
                FROM ({merged}) p JOIN group_tags g ON p.sid = g.sid
                ORDER BY p.sid, p.t""",
            target,
        )
        if rounding:
            self.con.execute("DROP TABLE merged")
        return Written(rows, rounded)

    def reject(self, group: Group, reason: str) -> None:
        """Reject every line of the group (of a multi-line one: its first line)."""
        cursor = self.con.cursor()
        cursor.execute(
            f"SELECT rowid, {LINE_COLUMNS} FROM lines WHERE rowid IN "
            f"(SELECT o // {FIELD_SLOTS} FROM ({self._sources(group)})) ORDER BY rowid"
        )
        while batch := cursor.fetchmany(BATCH):
            for rowid, *row in batch:
                self.rejects.add(rowid, reason, line_text(self.split.keys, row))
        cursor.close()

    def _sources(self, group: Group) -> str:
        """SQL for every (order, series id, time, field key, raw value) of the group."""
        mult = self.mult
        parts: list[str] = []
        if group.kids:
            # Keys are numbered as they first appear and an export comes sorted by key: the
            # range lets DuckDB skip the row groups of other measurements.
            parts.append(
                f"SELECT l.rowid * {FIELD_SLOTS} AS o, l.rowid AS n, g.sid, "
                f"l.ts * {mult} AS t, l.fk, l.v FROM lines l JOIN group_keys g "
                f"ON l.kid = g.kid WHERE l.kind = {BULK} AND l.fk IS NOT NULL "
                f"AND l.kid BETWEEN {min(group.kids)} AND {max(group.kids)}"
            )
            if self.mitems:
                parts.append(
                    f"SELECT m.n * {FIELD_SLOTS} + m.idx AS o, m.n, g.sid, "
                    f"m.ts * {mult} AS t, m.fk, m.v FROM mitems m JOIN group_keys g "
                    "ON m.kid = g.kid"
                )
        if group.canons:
            parts.append(
                "SELECT s.o, s.n, g.sid, s.t, s.fk, s.v FROM slow_items s JOIN group_canons g "
                "ON s.canon = g.canon"
            )
        union = " UNION ALL ".join(f"({part})" for part in parts)
        where = self.segments.rows_sql(group.segments, "n")
        return f"SELECT o, sid, t, fk, v FROM ({union}) WHERE {where}"


def _value(column: FieldColumn, merged_as: dict[str, str]) -> str:
    """SQL: a field's column from its merged raw value text (column ``merged_as[key]`` of `p`),
    or NULLs for a field of the schema that this input lacks."""
    if not column.seen:
        return null_sql(column.kind)
    return column_sql(column.seen, column.kind, f"p.{merged_as[column.key]}")
