"""The general way's middle passes: multi-field lines split into their fields, values checked,
each distinct series key parsed once, and the fields and types of each output group gathered."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from headlined.influx.convert.exact import ExactPath
from headlined.influx.convert.groups import Group, GroupId, SeriesId, series_of_key
from headlined.influx.convert.read import BULK, Split
from headlined.influx.convert.segments import Segments
from headlined.influx.convert.values import BAD_SQL, TYPE_SQL
from headlined.lineprotocol.grammar import TYPES, series_key_fits


def split_multi_field_lines(con: duckdb.DuckDBPyConnection, exact: ExactPath) -> bool:
    """Unnest plain multi-field lines into the table `mitems` (n, kid, ts, idx, eq, fk, v); odd
    ones go to the exact parser.  Returns whether there were any (and so the table)."""
    row = con.execute(f"SELECT count(*) FROM lines WHERE kind = {BULK} AND fk IS NULL").fetchone()
    if not row or not row[0]:
        return False
    con.execute(f"""
        CREATE TABLE mitems AS
        SELECT n, kid, ts, idx, eq, substr(item, 1, eq - 1) AS fk, substr(item, eq + 1) AS v
        FROM (SELECT n, kid, ts, idx, item, strpos(item, '=') AS eq FROM (
            SELECT n, kid, ts, unnest(items) AS item, unnest(range(1, len(items) + 1)) AS idx
            FROM (SELECT rowid AS n, kid, ts, string_split(v, ',') AS items
                  FROM lines WHERE kind = {BULK} AND fk IS NULL)))
    """)
    # An empty field or key, or a key given twice in one line (parse() keeps only the last,
    # so the first one's type must not count), is left to the exact parser.
    exact.reparse_bulk(
        "rowid IN (SELECT n FROM mitems WHERE eq <= 1 OR v = '' "
        "UNION SELECT n FROM mitems GROUP BY n, fk HAVING count(*) > 1)",
        mitems=True,
    )
    return True


@dataclass(frozen=True)
class Collected:
    """The output groups, the series of bulk lines by key number, and the bulk lines kept."""

    groups: dict[GroupId, Group]
    bulk_series: dict[int, SeriesId]
    lines: int


def collect(
    con: duckdb.DuckDBPyConnection,
    split: Split,
    segments: Segments,
    exact: ExactPath,
    *,
    mitems: bool,
) -> Collected:
    """Validate values, parse distinct series keys, and gather fields per output group; a
    line with a bad value or an odd series key goes to the exact path (which rejects it)."""
    # The splitter typed and checked one-field lines; the fields of others are done here.
    items = f"SELECT rowid AS n, kid, fk, ty, bad FROM lines WHERE kind = {BULK} AND fk IS NOT NULL"
    if mitems:
        items += (
            f" UNION ALL SELECT n, kid, fk, ty, {BAD_SQL} AS bad "
            f"FROM (SELECT n, kid, fk, v, {TYPE_SQL} AS ty FROM mitems)"
        )
    scan = f"SELECT {segments.index_sql('n')} AS seg, n, kid, fk, ty, bad FROM ({items})"
    rows = con.execute(
        f"SELECT seg, kid, fk, ty, count(*) FILTER (WHERE NOT bad), "
        f"count(*) FILTER (WHERE bad) FROM ({scan}) GROUP BY ALL"
    ).fetchall()
    if any(row[5] for row in rows):
        # Bad numbers, overflows, infinities: the exact parser gives the reason.
        exact.reparse_bulk(f"rowid IN (SELECT n FROM ({scan}) WHERE bad)", mitems=mitems)
    parsed = {kid: series_of_key(split.keys[kid]) for kid in {row[1] for row in rows if row[4]}}
    key_bytes = {kid: len(split.keys[kid].encode()) for kid in parsed}
    for _, kid, fk, _, good, _ in rows:
        # Bulk field keys hold no backslash: their escaped size is their size.
        if good and not series_key_fits(key_bytes[kid], len(fk.encode())):
            parsed[kid] = None
    odd = [kid for kid, sid in parsed.items() if sid is None]
    if odd:
        con.execute("CREATE OR REPLACE TABLE odd_kids AS SELECT unnest($1) AS kid", [odd])
        exact.reparse_bulk("kid IN (SELECT kid FROM odd_kids)", mitems=mitems)
    bulk_series = {kid: sid for kid, sid in parsed.items() if sid is not None}
    slow_rows = con.execute(
        f"SELECT {segments.index_sql('n')} AS seg, canon, fk, {TYPE_SQL} AS ty "
        "FROM slow_items GROUP BY ALL"
    ).fetchall()
    groups: dict[GroupId, Group] = {}

    def group(segment: int, measurement: str) -> Group:
        where = segments[segment]
        ident = (where.database, where.rp, measurement)
        found = groups.get(ident)
        if found is None:
            found = groups[ident] = Group(where.database, where.rp, measurement)
        found.segments.add(segment)
        return found

    for segment, kid, fk, ty, good, _ in rows:
        sid = bulk_series.get(kid)
        if good and sid is not None:
            target = group(segment, sid[0])
            target.kids.add(kid)
            target.fields[fk].add(TYPES[ty])
    for segment, canon, fk, ty in slow_rows:
        target = group(segment, exact.series[canon][0])
        target.canons.add(canon)
        target.fields[fk].add(TYPES[ty])
    row = con.execute(f"SELECT count(*) FROM lines WHERE kind = {BULK}").fetchone()
    return Collected(groups, bulk_series, int(row[0]) if row else 0)
