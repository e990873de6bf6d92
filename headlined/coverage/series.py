"""``scan()``: the coverage of every exported series, read through DuckDB over the Parquet.

Per measurement folder, DuckDB reads each file's time range and columns from the Parquet
footers (cheap), the files are grouped into clusters (:mod:`headlined.coverage.layout`) and
read in time order: consecutive exporter files together, a query giving each file's series in
row order with their row counts (the *runs*), then the C extension
:mod:`headlined.coverage._runs` consuming the times alone as an Arrow stream; a cluster of
overlapping files is sorted by DuckDB first. Memory is bounded by the series and their gaps,
never by the points; files are only read (and read again if the daemon replaces one
meanwhile), so this works while the daemon exports.

See docs/coverage.md for the algorithm and the causes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from headlined import sql
from headlined.coverage import causes, gaps, layout
from headlined.coverage._runs import Tracker
from headlined.coverage.model import ChunkState, SeriesCoverage
from headlined.coverage.summary import Context, Tracked, summarize

TIME = "time"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SECOND = 1_000_000_000

SeriesKey = tuple[str | None, ...]


class ScanError(Exception):
    """An exported file cannot be read as the exporter writes them; the message names it."""


def scan(
    output_dir: Path,
    chunks: Sequence[ChunkState],
    *,
    now_ns: int,
    database: str | None = None,
    measurement: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    fields: Mapping[tuple[str, str], Collection[str]] | None = None,
    threads: int | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> Iterator[SeriesCoverage]:
    """One entry per series of the export in ``output_dir``, measurement by measurement.

    ``chunks``: the rows of ``export_chunks`` (they give the causes). ``since_ns``/``until_ns``
    bound the report (``until`` exclusive). ``fields``: the field keys of each (database,
    measurement), as ``export_fields`` has them: a VARCHAR column that is not a field is a tag.
    Without it, the tags are the VARCHAR columns right after ``time`` in name order (the
    converter writes tags, then fields, each sorted), which takes a string field whose name
    sorts after every tag for a tag. ``threads`` bounds DuckDB's threads; ``connection``: a
    DuckDB connection to read with (a cursor of it), instead of a new in-memory one (which
    takes 10-50 ms to make).
    """
    by_policy = causes.by_policy(chunks)
    if connection is not None:
        con = connection.cursor()
    else:
        con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        for folder in layout.measurements(output_dir, database, measurement):
            known = None if fields is None else fields.get((folder.database, folder.measurement))
            yield from _measurement(
                con,
                folder,
                Context(
                    chunks=by_policy.get((folder.database, folder.retention_policy), []),
                    data_end_ns=0,
                    now_ns=now_ns,
                    since_ns=since_ns,
                    until_ns=until_ns,
                ),
                known,
            )
    finally:
        con.close()


ATTEMPTS = 3  # reads of a measurement whose files the exporter replaced meanwhile


def _measurement(
    con: duckdb.DuckDBPyConnection,
    folder: layout.MeasurementDir,
    context: Context,
    known_fields: Collection[str] | None,
) -> Iterator[SeriesCoverage]:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            tags, tracked = _track(con, folder, context, known_fields)
            break
        except _VanishedError:
            # The daemon re-exported a chunk while we read it (it swaps files whole, and
            # removes files a chunk no longer has): read the folder again.
            if attempt == ATTEMPTS:
                raise ScanError(
                    f"{folder.path}: files kept changing while being read ({ATTEMPTS} tries)"
                ) from None
    if not tracked:
        return
    judged = dataclasses.replace(
        context, data_end_ns=max(t.last_ns for t in tracked.values() if t.count)
    )
    for key in sorted(tracked, key=lambda key: [(v is None, v or "") for v in key]):
        found = summarize(
            database=folder.database,
            retention_policy=folder.retention_policy,
            measurement=folder.measurement,
            tags={tag: value for tag, value in zip(tags, key, strict=True) if value is not None},
            tracked=tracked[key],
            context=judged,
        )
        if found is not None:
            yield found


class _VanishedError(Exception):
    """A file was replaced or removed while being read."""


def _identity(paths: Sequence[Path]) -> list[tuple[int, int] | None]:
    """What tells whether a file was replaced (renamed over) or removed."""
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((stat.st_ino, stat.st_mtime_ns))
    return out


def _track(
    con: duckdb.DuckDBPyConnection,
    folder: layout.MeasurementDir,
    context: Context,
    known_fields: Collection[str] | None,
) -> tuple[list[str], dict[SeriesKey, Tracked]]:
    """The measurement's tag columns, and what the tracker found for each of its series."""
    listed = layout.data_files(folder.path)
    if not listed:
        return [], {}
    before = _identity(listed)
    try:
        spans, columns = _inspect(con, listed)
    except duckdb.Error as exc:
        if _identity(listed) != before:
            raise _VanishedError from exc
        raise ScanError(f"reading the Parquet metadata in {folder.path}: {exc}") from exc
    tags = tag_columns(columns.values(), known_fields)
    lo = INT64_MIN if context.since_ns is None else context.since_ns
    hi = INT64_MAX if context.until_ns is None else context.until_ns - 1
    tracker = Tracker(gaps.K, lo, hi)
    sids: dict[SeriesKey, int] = {}
    read = _Read(con, tracker, tags, columns, sids)
    for files, sort in _reads(
        layout.around(layout.clusters(spans), context.since_ns, context.until_ns)
    ):
        if any(TIME not in dict(columns[p]) for p in files):
            raise ScanError(f"a file of {folder.path} has no `time` column: {files}")
        try:
            if sort:
                read.sorting(files)
            else:
                read.in_order(files)
        except (duckdb.Error, ValueError) as exc:
            if _identity(listed) != before:
                raise _VanishedError from exc
            names = ", ".join(str(p) for p in files)
            raise ScanError(f"reading {names}: {exc}") from exc
    if _identity(listed) != before:
        raise _VanishedError
    results = tracker.results()
    return tags, {key: Tracked.of(results[sid]) for key, sid in sids.items()}


def tag_columns(
    files: Collection[Sequence[tuple[str, bool]]], known_fields: Collection[str] | None
) -> list[str]:
    """The tag columns of a measurement, sorted, from each file's ``(column, is VARCHAR)``."""
    tags: set[str] = set()
    for columns in files:
        if known_fields is not None:
            # A field called `time` is written as `time_field` (docs/converter.md).
            fields = {*known_fields, "time_field"} if TIME in known_fields else set(known_fields)
            tags.update(n for n, text in columns if text and n != TIME and n not in fields)
            continue
        names = [name for name, _ in columns]
        after = names.index(TIME) + 1 if TIME in names else 0
        previous = ""
        for name, text in columns[after:]:
            if not text or name <= previous:
                break
            tags.add(name)
            previous = name
    return sorted(tags)


def _inspect(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path]
) -> tuple[list[layout.FileSpan], dict[Path, list[tuple[str, bool]]]]:
    """Each file's time range and its columns in order (and whether each is text), in one
    read of the files' footers. The range comes from the row groups' statistics, widened to
    whole seconds (DuckDB may print them without fractions); a file without them is read. A
    file without rows is left out."""
    rows = con.execute(
        f"""SELECT file_name, row_group_id, path_in_schema, type = 'BYTE_ARRAY',
                   CASE WHEN path_in_schema = '{TIME}'
                        THEN epoch_ns(TRY_CAST(stats_min_value AS TIMESTAMPTZ)) END,
                   CASE WHEN path_in_schema = '{TIME}'
                        THEN epoch_ns(TRY_CAST(stats_max_value AS TIMESTAMPTZ)) END,
                   row_group_num_rows
            FROM parquet_metadata($1) ORDER BY file_name, row_group_id, column_id""",
        [[str(p) for p in files]],
    ).fetchall()
    columns: dict[Path, list[tuple[str, bool]]] = {}
    ranges: dict[Path, list[int | None]] = {}
    for name, group, column, text, low, high, count in rows:
        path = Path(name)
        if group == 0:
            columns.setdefault(path, []).append((column, bool(text)))
        if column != TIME or not count:
            continue
        lows_highs = ranges.setdefault(path, [low, high])
        if None in (low, high, *lows_highs):
            ranges[path] = [None, None]
        else:
            ranges[path] = [min(low, lows_highs[0]), max(high, lows_highs[1])]
    spans = []
    for path, stats in ranges.items():
        low, high = stats
        if low is None or high is None:
            low, high = con.execute(
                f"SELECT epoch_ns(min({TIME})), epoch_ns(max({TIME})) FROM read_parquet($1)",
                [str(path)],
            ).fetchone() or (None, None)
        if low is not None and high is not None:
            spans.append(layout.FileSpan(path, low - SECOND, high + SECOND))
    return spans, columns


def _reads(found: Sequence[layout.Cluster]) -> Iterator[tuple[list[Path], bool]]:
    """The clusters as reads, in time order: (files, whether DuckDB must sort them). Files of
    consecutive one-file clusters that need no sort are read together: one query each costs
    more than reading a file."""
    together: list[Path] = []
    for cluster in found:
        if cluster.sort:
            if together:
                yield together, False
                together = []
            yield list(cluster.files), True
        else:
            together += cluster.files
    if together:
        yield together, False


@dataclass
class _Read:
    """Reads files of one measurement into its tracker, numbering its series in ``sids``."""

    con: duckdb.DuckDBPyConnection
    tracker: Tracker
    tags: list[str]
    columns: dict[Path, list[tuple[str, bool]]]
    sids: dict[SeriesKey, int]

    def _select(self, files: Sequence[Path]) -> list[str]:
        """The tag columns as SQL: NULL for a tag none of ``files`` has."""
        present = {name for path in files for name, _ in self.columns[path]}
        return [
            sql.ident(tag) if tag in present else f"NULL::VARCHAR AS {sql.ident(tag)}"
            for tag in self.tags
        ]

    def in_order(self, files: Sequence[Path]) -> None:
        """Exporter files (disjoint in time, in time order), each grouped by series and in
        time order, in one stream; a file whose series turn out not to be contiguous is
        sorted."""
        # Per file, each series' first row and rows: grouped by a hash of the tags, cheaper than
        # by the tags (two series of one file would have to collide, 64 bits, and be neighbours
        # in it for the check below to miss it).
        picked = "".join(f", any_value({sql.ident(tag)})" for tag in self.tags)
        by_hash = f", hash({', '.join(sql.ident(t) for t in self.tags)})" if self.tags else ""
        rows = self.con.execute(
            f"""SELECT file_index, min(file_row_number) AS first_row, count(*){picked}
                FROM (SELECT {"".join(s + ", " for s in self._select(files))}file_index,
                             file_row_number
                      FROM read_parquet($1, file_row_number = true, union_by_name = true))
                GROUP BY file_index{by_hash}
                ORDER BY file_index, first_row""",
            [[str(p) for p in files]],
        ).fetchall()
        per_file: list[list[tuple[int, int]]] = [[] for _ in files]
        unsorted: set[int] = set()
        sids = self.sids
        current, expected = -1, 0
        for row in rows:
            index, first_row, count = row[0], row[1], row[2]
            if index != current:
                current, expected = index, 0
            # Contiguous when each series starts where the one before ends in its file: then
            # no series has rows elsewhere.
            if first_row != expected:
                unsorted.add(index)
            expected = first_row + count
            key = row[3:]
            sid = sids.get(key)
            if sid is None:
                sid = sids[key] = len(sids)
            per_file[index].append((sid, count))
        streamed: list[Path] = []
        runs: list[tuple[int, int]] = []
        for index, path in enumerate(files):
            if index not in unsorted:
                streamed.append(path)
                runs += per_file[index]
                continue
            self._stream(streamed, runs)
            streamed, runs = [], []
            self.sorting([path])
        self._stream(streamed, runs)

    def sorting(self, files: Sequence[Path]) -> None:
        """Files read together, sorted by DuckDB by series then time."""
        source = (
            f"(SELECT {''.join(s + ', ' for s in self._select(files))}{TIME} "
            f"FROM read_parquet($1, union_by_name = true) WHERE {TIME} IS NOT NULL)"
        )
        order = "".join(sql.ident(tag) + ", " for tag in self.tags)
        names = [[str(p) for p in files]]
        rows = self.con.execute(
            f"SELECT {order}count(*) FROM {source} GROUP BY ALL"
            + (f" ORDER BY {order.removesuffix(', ')}" if self.tags else ""),
            names,
        ).fetchall()
        runs = [(self._sid(tuple(row[:-1])), row[-1]) for row in rows if row[-1]]
        self.tracker.feed(
            self.con.sql(
                f"SELECT epoch_ns({TIME}) FROM {source} ORDER BY {order}{TIME}", params=names
            ),
            runs,
        )

    def _stream(self, files: Sequence[Path], runs: list[tuple[int, int]]) -> None:
        """The times of ``files`` into the tracker. DuckDB keeps the order of the rows of one
        table function, the files' order included (docs: "order preservation")."""
        if files:
            self.tracker.feed(
                self.con.sql(
                    f"SELECT epoch_ns({TIME}) FROM read_parquet($1)",
                    params=[[str(p) for p in files]],
                ),
                runs,
            )

    def _sid(self, key: SeriesKey) -> int:
        return self.sids.setdefault(key, len(self.sids))
