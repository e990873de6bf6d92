"""The general way's output: the lines and exact-path points of a group merged into points by
SQL, keyed by (series, time) with a later line winning, as the WAL does after TSM data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from headlined import sql
from headlined.influx.convert.exact import FIELD_SLOTS
from headlined.influx.convert.groups import Group, Series, column_names
from headlined.influx.convert.read import BATCH, BULK, LINE_COLUMNS, Split, line_text
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.segments import Segments
from headlined.influx.convert.values import TYPE_CODES, TYPE_SQL, value_sql
from headlined.influx.convert.write import copy_parquet


@dataclass(frozen=True, kw_only=True)
class Merge:
    """Writes a group's merged points, or rejects its lines; needs Output.prepare() first."""

    con: duckdb.DuckDBPyConnection
    split: Split
    segments: Segments
    series: Series
    mult: int
    mitems: bool  # whether multi-field lines were split into the table `mitems`
    rejects: Rejects

    def write(self, group: Group, target: Path) -> int:
        """The group's points into the Parquet file ``target``, sorted by tags, then time;
        returns the rows written."""
        # A point's field takes the value of the latest line that gives it, and only that
        # type's column is set when the field has several.
        field_columns, tag_columns = column_names(group.tag_keys, group.fields)
        with_type = any(len(kinds) > 1 for kinds in group.fields.values())
        # Raw value text is aggregated and converted afterwards: one conversion per output
        # value instead of one per line and type.  When no line can override another (the
        # splitter saw each series key's field times only increase, no two keys are one series
        # (tags in another order), and no exact-path or multi-field values join them), a
        # field's only value needs no ordering.
        one_key_each = len(self.series.of(group)) == len(group.kids)
        only = self.split.unique and one_key_each and not group.canons and not self.mitems
        latest = "any_value(v)" if only else "arg_max(v, o)"
        aggregates = []
        values = []
        for name, key, kind, conflicting in field_columns:
            lit, column = sql.literal(key), sql.ident(name)
            if conflicting:
                code = TYPE_CODES[kind]
                aggregates.append(
                    f"CASE WHEN arg_max(ty, o) FILTER (WHERE fk = {lit}) = {code} THEN "
                    f"arg_max(v, o) FILTER (WHERE fk = {lit} AND ty = {code}) END AS {column}"
                )
            else:
                aggregates.append(f"{latest} FILTER (WHERE fk = {lit}) AS {column}")
            values.append(f"{value_sql(kind, f'p.{column}')} AS {column}")
        columns = ['make_timestamp_ns(p.t) AS "time"']
        columns += [f"g.t{index} AS {sql.ident(name)}" for index, name in enumerate(tag_columns)]
        columns += values
        return copy_parquet(
            self.con,
            f"""SELECT {", ".join(columns)}
                FROM (SELECT sid, t, {", ".join(aggregates)}
                      FROM ({self._sources(group, with_type)}) GROUP BY sid, t) p
                JOIN group_tags g ON p.sid = g.sid
                ORDER BY p.sid, p.t""",
            target,
        )

    def reject(self, group: Group, reason: str) -> None:
        """Reject every line of the group (of a multi-line one: its first line)."""
        cursor = self.con.cursor()
        cursor.execute(
            f"SELECT rowid, {LINE_COLUMNS} FROM lines WHERE rowid IN "
            f"(SELECT o // {FIELD_SLOTS} FROM ({self._sources(group, False)})) ORDER BY rowid"
        )
        while batch := cursor.fetchmany(BATCH):
            for rowid, *row in batch:
                self.rejects.add(rowid, reason, line_text(self.split.keys, row))
        cursor.close()

    def _sources(self, group: Group, with_type: bool) -> str:
        """SQL for every (order, series id, time, field key, raw value[, type]) of the group."""
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
        type_column = f", {TYPE_SQL} AS ty" if with_type else ""
        where = self.segments.rows_sql(group.segments, "n")
        return f"SELECT o, sid, t, fk, v{type_column} FROM ({union}) WHERE {where}"
