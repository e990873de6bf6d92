"""``headlined import``: Parquet exported earlier, landed beside the export as typed Parquet.

Every input is staged first (raw line protocol through the converter, influx_tools files as
they are), then each measurement's points are written once, as one file
``<output_dir>/<db>/<rp>/<measurement>/import-<digest>.parquet``: deduplicated within the
input (the last input on the command line holding a point wins, whole), without the points
that the files already in place hold (an exported chunk, or an earlier import, wins), cast to
the measurement's one type per field, sorted by series then time, ZSTD. The digest comes from
the inputs' contents, so the same import run again replaces its files. Only Parquet is read
and written (no state file), so it works while the daemon runs. docs/import.md says more.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import duckdb

from headlined import durable, logs, sql
from headlined.influx import convert
from headlined.influx.importlayout import (
    KIND_OF_TYPE,
    METADATA_KEY,
    TIMESTAMP_UNITS,
    ImportInputError,
    Input,
    Part,
    RawInput,
    ToolsInput,
    classify,
    content_digest,
    file_name,
    plan,
)

log = logs.get("influx_import")

PART = "#import part"  # the staged rows' input number; '#' keeps it off any field's name
CONTEXT_HEADER = "# CONTEXT-"
# A raw line's own time: its last space-separated word, when that is an integer (the field
# set before it always holds a '=' or ends in a quote).
LINE_TIME = r"regexp_extract(raw_line, ' (-?[0-9]+)$', 1)"


class ImportDataError(Exception):
    """The import could not be done; nothing was published. The message says why."""


@dataclass
class ImportResult:
    """What one import wrote."""

    digest: str
    database: str
    retention_policy: str
    files: list[Path] = field(default_factory=list)
    points: dict[str, int] = field(default_factory=dict)  # measurement -> rows written
    skipped: dict[str, int] = field(default_factory=dict)  # measurement -> rows held already
    widened: dict[str, dict[str, str]] = field(default_factory=dict)  # measurement -> col -> kind
    removed: list[Path] = field(default_factory=list)  # this import's files no longer needed
    rejected: int = 0
    rejected_file: Path | None = None


def run_import(
    output_dir: Path,
    database: str,
    inputs: Sequence[Path],
    *,
    retention_policy: str | None = None,
    memory_limit: str = "512MB",
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
) -> ImportResult:
    """Import the Parquet files ``inputs`` into ``output_dir`` as ``database``/``retention_policy``.

    ``retention_policy`` None: the one influx_tools files name, else the only one already
    exported for the database, else ``autogen``. ``say`` gets a line per step (progress).
    Raises ImportInputError (bad usage: a file missing or of neither layout) or ImportDataError
    (its data cannot be imported as it is); either way nothing is published.
    """
    notes = say or (lambda _: None)
    if not inputs:
        raise ImportInputError("no input files given")
    con = duckdb.connect(":memory:")
    try:
        layouts = [_inspect(con, Path(path)) for path in inputs]
    finally:
        con.close()
    rp = retention_policy or _default_rp(output_dir, database, layouts)
    try:
        rp_dir = output_dir / convert.path_segment(database) / convert.path_segment(rp)
    except ValueError as exc:
        raise ImportInputError(str(exc)) from None
    digests = []
    for layout in layouts:
        notes(f"{layout.path}: {_describe(layout)}")
        with layout.path.open("rb") as handle:
            digests.append(hashlib.file_digest(handle, "sha256").hexdigest())
    result = ImportResult(content_digest(digests), database, rp)
    work = output_dir / ".work" / f"import-{result.digest}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": memory_limit,
        "temp_directory": str(work / "spill"),
        "preserve_insertion_order": True,  # a raw file's lines keep their order (later wins)
    }
    if threads is not None:
        config["threads"] = threads
    try:
        con = duckdb.connect(":memory:", config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")
            parts, rejected = _stage(con, layouts, work, result, threads)
            metadata: dict[str, object] = {
                "inputs": [
                    {"file": str(layout.path), "sha256": sha, "layout": _layout_name(layout)}
                    for layout, sha in zip(layouts, digests, strict=True)
                ],
                "imported": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            staged = _write_all(con, parts, rp_dir, work, metadata, result, notes)
        except duckdb.Error as exc:
            raise ImportDataError(f"DuckDB failed: {str(exc).strip()}") from None
        finally:
            con.close()
        # Everything is staged and checked: only now does anything reach the output folder.
        for file, target in sorted(staged.items(), key=lambda item: item[1]):
            target.parent.mkdir(parents=True, exist_ok=True)
            durable.publish(file, target)
            result.files.append(target)
        result.removed = _remove_stale(rp_dir, result.digest, set(result.files))
        result.rejected_file = _publish_rejects(rejected, output_dir, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info(
        "imported",
        database=database,
        retention_policy=rp,
        digest=result.digest,
        points=sum(result.points.values()),
        skipped=sum(result.skipped.values()),
        files=len(result.files),
        rejected=result.rejected,
    )
    return result


def _stage(
    con: duckdb.DuckDBPyConnection,
    layouts: Sequence[Input],
    work: Path,
    result: ImportResult,
    threads: int | None,
) -> tuple[dict[str, list[Part]], list[Path]]:
    """Each measurement's parts, in input order, and the files of rejected lines."""
    parts: dict[str, list[Part]] = defaultdict(list)
    rejected: list[Path] = []
    for number, layout in enumerate(layouts):
        if isinstance(layout, RawInput):
            staged = _stage_raw(
                con,
                layout,
                work / f"input-{number}",
                (result.database, result.retention_policy),
                threads,
            )
            for measurement, part in staged.parts.items():
                parts[measurement].append(part)
            result.rejected += staged.rejected
            rejected += staged.rejected_files
        else:
            parts[layout.measurement].append(_tools_part(layout))
    return parts, rejected


def _write_all(  # noqa: PLR0917  private: one caller, every argument a different thing
    con: duckdb.DuckDBPyConnection,
    parts: dict[str, list[Part]],
    rp_dir: Path,
    work: Path,
    metadata: dict[str, object],
    result: ImportResult,
    notes: Callable[[str], None],
) -> dict[Path, Path]:
    """Write each measurement's import file into ``work``; returns file -> where it goes."""
    staged: dict[Path, Path] = {}
    for measurement in sorted(parts):
        try:
            target = rp_dir / convert.path_segment(measurement) / file_name(result.digest)
        except ValueError as exc:
            raise ImportDataError(f"measurement {measurement[:40]!r}: {exc}") from None
        outcome = _write_measurement(
            con,
            parts[measurement],
            target,
            work / "files" / f"{len(staged)}{convert.STAGED}",
            metadata,
        )
        if outcome.widened:
            result.widened[measurement] = outcome.widened
        result.skipped[measurement] = outcome.staged - outcome.written
        if outcome.written:
            staged[outcome.file] = target
            result.points[measurement] = outcome.written
        notes(
            f"{measurement}: {outcome.written} points to import, "
            f"{outcome.staged - outcome.written} held already or given twice"
        )
    return staged


def _inspect(con: duckdb.DuckDBPyConnection, path: Path) -> Input:
    """The layout of one input file; ImportInputError when it is missing or not Parquet."""
    if not path.is_file():
        raise ImportInputError(f"{path}: no such file")
    literal = sql.literal(str(path))
    try:
        columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal})").fetchall()
        pairs = con.execute(f"SELECT key, value FROM parquet_kv_metadata({literal})").fetchall()
    except duckdb.Error as exc:
        raise ImportInputError(f"{path}: not a Parquet file DuckDB can read ({exc})") from None
    metadata = {
        bytes(key).decode("utf-8", "replace"): bytes(value).decode("utf-8", "replace")
        for key, value in pairs
    }
    return classify(path, [(str(c[0]), str(c[1])) for c in columns], metadata)


def _describe(layout: Input) -> str:
    if isinstance(layout, RawInput):
        return f"raw line protocol, time from column {layout.time_column!r} ({layout.time_type})"
    return (
        f"influx_tools export of measurement {layout.measurement!r} "
        f"({len(layout.tags)} tags, {len(layout.fields)} fields)"
    )


def _layout_name(layout: Input) -> str:
    return "raw" if isinstance(layout, RawInput) else "influx_tools"


def _default_rp(output_dir: Path, database: str, layouts: Sequence[Input]) -> str:
    """The retention policy when none is given (see run_import)."""
    named = {layout.retention for layout in layouts if isinstance(layout, ToolsInput)}
    named.discard(None)
    if len(named) > 1:
        listed = ", ".join(sorted(map(str, named)))
        raise ImportInputError(
            f"the influx_tools files name several retention policies ({listed}): "
            "import each with --retention-policy"
        )
    if named:
        return str(named.pop())
    try:
        db_dir = output_dir / convert.path_segment(database)
    except ValueError as exc:
        raise ImportInputError(str(exc)) from None
    exported = (
        sorted(p.name for p in db_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
        if db_dir.is_dir()
        else []
    )
    if len(exported) == 1:
        return unquote(exported[0])
    if len(exported) > 1:
        raise ImportInputError(
            f"database {database!r} has several retention policies exported: "
            "say which with --retention-policy"
        )
    return "autogen"


@dataclass
class _Staged:
    parts: dict[str, Part]
    rejected: int
    rejected_files: list[Path]


def _stage_raw(
    con: duckdb.DuckDBPyConnection,
    layout: RawInput,
    work: Path,
    where: tuple[str, str],
    threads: int | None,
) -> _Staged:
    """A raw file through the converter: its lines (with the timestamp column's time where a
    line has none) into line protocol, converted into typed Parquet per measurement."""
    source = sql.literal(str(layout.path))
    column_ns = layout.time_ns_sql()
    # A column of a coarser unit was cut or rounded from the line's time, maybe through a
    # double (seconds as a float): two of its units apart still agree.
    slack = 1 if layout.unit_ns == 1 else 2 * layout.unit_ns
    data_line = (
        "raw_line IS NOT NULL AND trim(raw_line) <> '' AND NOT starts_with(raw_line, '#') "
        "AND NOT starts_with(upper(raw_line), 'CREATE ')"
    )
    row = con.execute(
        f"""SELECT
                count(*) FILTER (WHERE t IS NOT NULL AND c IS NOT NULL
                                 AND abs(t::HUGEINT - c) >= {slack}),
                any_value(raw_line) FILTER (WHERE t IS NOT NULL AND c IS NOT NULL
                                 AND abs(t::HUGEINT - c) >= {slack}),
                count(*) FILTER (WHERE t IS NULL AND c IS NULL)
            FROM (SELECT raw_line, TRY_CAST({LINE_TIME} AS BIGINT) AS t, {column_ns} AS c
                  FROM read_parquet({source}) WHERE {data_line})"""
    ).fetchone()
    mismatched, example, timeless = row if row is not None else (0, None, 0)
    if mismatched:
        unit = "nanoseconds" if layout.time_type not in TIMESTAMP_UNITS else layout.time_type
        raise ImportDataError(
            f"{layout.path}: {mismatched} lines carry another time than column "
            f"{layout.time_column!r} ({unit}), e.g. {str(example)[:200]!r}: is it the "
            "right column, in nanoseconds if an integer?"
        )
    if timeless:
        raise ImportDataError(
            f"{layout.path}: {timeless} lines have no time, neither in the line nor in column "
            f"{layout.time_column!r}; they cannot be placed"
        )
    work.mkdir(parents=True)
    lines = work / "input.lp"
    # A line without its own time gets the column's; influx_inspect's `# CONTEXT-` headers
    # are dropped: the whole file lands in the database and policy asked for.
    context = sql.literal(CONTEXT_HEADER)
    con.execute(
        f"""COPY (SELECT CASE WHEN {LINE_TIME} <> '' OR {column_ns} IS NULL THEN raw_line
                         ELSE raw_line || ' ' || {column_ns} END
                  FROM read_parquet({source})
                  WHERE raw_line IS NOT NULL AND NOT starts_with(raw_line, {context}))
            TO {sql.literal(str(lines))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')"""
    )
    out = work / "out"
    try:
        converted = convert.convert(
            lines,
            out,
            layout="database",
            file_stem="part",
            default_database=where[0],
            default_rp=where[1],
            rejected_dir=work / "rejected",
            work_dir=work / "duckdb",
            threads=threads,
            source_done=lines.unlink,
            suffix=convert.STAGED,
        )
    except convert.ConvertError as exc:
        raise ImportDataError(f"{layout.path}: {exc}") from None
    parts: dict[str, Part] = {}
    for ident, rows in converted.measurements.items():
        _, _, measurement = ident
        if not rows:
            continue
        staged = out.joinpath(
            *(convert.path_segment(str(name)) for name in ident), f"part{convert.STAGED}"
        )
        literal = sql.literal(str(staged))
        tags = converted.tag_columns[ident]
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal})").fetchall()
        fields = {
            str(name): KIND_OF_TYPE[str(type_)]
            for name, type_, *_ in described
            if name != "time" and name not in tags
        }
        parts[measurement] = Part(f"SELECT * FROM read_parquet({literal})", tags, fields)
    rejected_files = sorted((work / "rejected").glob("*.txt"))
    return _Staged(parts, converted.rejected, rejected_files)


def _tools_part(layout: ToolsInput) -> Part:
    """An influx_tools file as a part: its zone-less nanosecond times read as UTC."""
    columns = [sql.ident(name) for name in (*layout.tags, *layout.fields)]
    return Part(
        f"""SELECT timezone('UTC', make_timestamp_ns(epoch_ns("time"))) AS "time", """
        f"{', '.join(columns)} FROM read_parquet({sql.literal(str(layout.path))})",
        layout.tags,
        layout.fields,
    )


@dataclass
class _Written:
    file: Path
    staged: int  # rows of the input, duplicates included
    written: int
    widened: dict[str, str]


def _write_measurement(
    con: duckdb.DuckDBPyConnection,
    parts: Sequence[Part],
    target: Path,
    file: Path,
    metadata: dict[str, object],
) -> _Written:
    """One measurement's import file, written as ``file`` (to be published as ``target``):
    every point once, none that the measurement's other files in place hold."""
    others = sorted(
        p
        for p in target.parent.glob("*.parquet")
        if p.name != target.name and not p.name.startswith((".", "_"))
    )
    existing: dict[str, str] = {}
    if others:
        existing = {
            str(row[0]): str(row[1])
            for row in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_list(others)}, union_by_name = true)"
            ).fetchall()
        }
    shape = plan(parts, existing)
    staged = " UNION ALL ".join(
        f"SELECT *, {number} AS {sql.ident(PART)} FROM ({shape.select(part)})"
        for number, part in enumerate(parts)
    )
    key = [*map(sql.ident, shape.tags), '"time"']
    count, low, high = con.execute(
        f'SELECT count(*), epoch_ns(min("time")), epoch_ns(max("time")) FROM ({staged})'
    ).fetchone() or (0, None, None)
    points = staged
    if len(parts) > 1:
        # The same point from several inputs: the last input's, whole.
        points = (
            f"SELECT * FROM ({staged}) QUALIFY row_number() OVER "
            f"(PARTITION BY {', '.join(key)} ORDER BY {sql.ident(PART)} DESC) = 1"
        )
    if others and count:
        held = ['e."time" = d."time"'] + [
            f"e.{sql.ident(tag)} IS NOT DISTINCT FROM d.{sql.ident(tag)}"
            if tag in existing
            else f"d.{sql.ident(tag)} IS NULL"
            for tag in shape.tags
        ]
        points = (
            f"SELECT d.* FROM ({points}) d ANTI JOIN (SELECT * FROM read_parquet("
            f"{_list(others)}, union_by_name = true) "
            f'WHERE "time" BETWEEN {_utc(low)} AND {_utc(high)}) e ON {" AND ".join(held)}'
        )
    columns = ['"time"', *map(sql.ident, shape.tags), *map(sql.ident, shape.fields)]
    order = [f"{sql.ident(tag)} NULLS LAST" for tag in shape.tags] + ['"time"']
    document = json.dumps(
        {**metadata, "tags": list(shape.tags), "fields": shape.fields}, ensure_ascii=False
    )
    file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    if count:
        row = con.execute(
            f"COPY (SELECT {', '.join(columns)} FROM ({points}) ORDER BY {', '.join(order)}) "
            f"TO {sql.literal(str(file))} ({sql.PARQUET_MEASUREMENTS}, KV_METADATA "
            f"{{{sql.literal(METADATA_KEY)}: {sql.literal(document)}}})",
        ).fetchone()
        written = int(row[0]) if row else 0
    return _Written(file, int(count), written, shape.widened)


def _utc(ns: int) -> str:
    """SQL: the TIMESTAMPTZ_NS constant of ``ns`` (exact: a Python datetime holds only µs)."""
    return f"timezone('UTC', make_timestamp_ns({int(ns)}))"


def _list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join(sql.literal(str(p)) for p in paths) + "]"


def _remove_stale(rp_dir: Path, digest: str, kept: set[Path]) -> list[Path]:
    """This import's files from an earlier run that this run did not write (their points are
    all held elsewhere now, or the measurement is no longer in the input)."""
    removed = []
    for old in sorted(rp_dir.glob(f"*/{file_name(digest)}")):
        if old not in kept:
            old.unlink()
            durable.fsync(old.parent)
            removed.append(old)
    return removed


def _publish_rejects(files: Sequence[Path], output_dir: Path, result: ImportResult) -> Path | None:
    """The lines the converter could not read, kept as the exporter keeps a chunk's."""
    final = (
        output_dir
        / "_rejected"
        / convert.path_segment(result.database)
        / convert.path_segment(result.retention_policy)
        / f"import-{result.digest}.txt"
    )
    if not files:
        if final.exists():
            final.unlink()
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    durable.write_atomic(final, b"".join(f.read_bytes() for f in files))
    return final
