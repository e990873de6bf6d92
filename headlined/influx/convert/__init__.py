"""Bulk converter: InfluxDB 1.x line protocol (plain, .gz or a FIFO) to typed Parquet.

It agrees line for line with headlined.lineprotocol, but gets its speed from bulk work: the
source is read once and split in C into a DuckDB table, DuckDB merges and writes the points,
and only awkward lines are parsed in Python.  docs/converter.md tells how a line travels, the
columns and the type-conflict rule, and the files.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import duckdb

from headlined import logs
from headlined.influx.convert import pivot as fast_path
from headlined.influx.convert.collect import collect, split_multi_field_lines
from headlined.influx.convert.exact import ExactPath
from headlined.influx.convert.groups import Series, group_order
from headlined.influx.convert.job import ConvertError, ConvertResult, Settings
from headlined.influx.convert.merge import Merge
from headlined.influx.convert.paths import (
    PARQUET,
    STAGED,
    Destination,
    is_plain_name,
    path_segment,
    published_name,
)
from headlined.influx.convert.read import Split, read_lines
from headlined.influx.convert.rejects import Rejects
from headlined.influx.convert.segments import Segments, check_layout
from headlined.influx.convert.write import Output
from headlined.influx.schema import MeasurementSchema
from headlined.lineprotocol import PRECISION_NS
from headlined.lineprotocol.grammar import TYPES

NoPivotError = fast_path.NoPivotError

__all__ = [
    "STAGED",
    "ConvertError",
    "ConvertResult",
    "NoPivotError",
    "convert",
    "path_segment",
    "published_name",
]

log = logs.get("convert")


def convert(
    source: Path,
    out_dir: Path,
    *,
    precision: str = "ns",
    layout: Literal["measurement", "database"] = "measurement",
    file_stem: str = "part-00000",
    default_database: str | None = None,
    default_rp: str | None = None,
    rejected_dir: Path | None = None,
    work_dir: Path | None = None,
    memory_limit: str = "512MB",
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    pivot: bool = True,
    pivot_only: bool = False,
    growing: Callable[[], bool] | None = None,
    source_done: Callable[[], None] | None = None,
    schema: Mapping[str, MeasurementSchema] | None = None,
    suffix: str = PARQUET,
) -> ConvertResult:
    """Convert line protocol at ``source`` (file, ``.gz`` or FIFO; read once) to Parquet.

    docs/converter.md tells the layout, the columns and the type-conflict rule.
    ``progress`` is called from the splitting thread with the number of physical lines read
    so far (from 0 again if the pivot gives up).  ``pivot``: try the fast path first (a
    regular file only, which is then read twice if the pivot gives up); the output is the
    same either way.  ``pivot_only``: the pivot also on a source that cannot be read twice
    (a pipe), and NoPivotError when it gives up, for the caller to convert the input again
    from a file; nothing is written then.  ``growing``: while it returns True, a plain (not
    gzip) ``source`` is still being written, so reaching its end means waiting for more; the
    conversion ends at the first end reached after it returned False.  ``source_done`` is
    called (from this thread) once the source will not be read again, so that it can be
    removed meanwhile.
    ``schema`` (measurement -> MeasurementSchema, e.g. from discovery: one database per call)
    gives the columns and types that every file of a measurement must have, whatever values
    this input holds; ``ConvertResult.widened`` tells the fields whose values did not fit it.
    ``suffix``: the files' (``STAGED`` for files the caller publishes elsewhere later).

    Raises ConvertError for a bad ``precision``, ``layout``, ``file_stem`` or type in
    ``schema``, or when layout "database" meets data with no database or retention policy (no
    header and no default); OSError when the source cannot be read.
    """
    if precision not in PRECISION_NS:
        raise ConvertError(f"precision must be one of {', '.join(PRECISION_NS)}, not {precision!r}")
    if layout not in ("measurement", "database"):
        raise ConvertError(f"layout must be 'measurement' or 'database', not {layout!r}")
    if not is_plain_name(file_stem):
        raise ConvertError(
            f"file_stem {file_stem!r} must be a plain file name of at most 200 bytes"
        )
    schema = dict(schema or {})
    for measurement, columns in schema.items():
        odd = sorted(kind for kind in columns.fields.values() if kind not in TYPES)
        if odd:
            raise ConvertError(
                f"schema of {measurement!r}: field types must be some of {', '.join(TYPES)}, "
                f"not {odd}"
            )
    settings = Settings(
        source=source,
        destination=Destination(out_dir, layout, file_stem, suffix),
        precision=precision,
        default_database=default_database,
        default_rp=default_rp,
        rejected_dir=rejected_dir if rejected_dir is not None else out_dir / "_rejected",
        progress=progress,
        growing=growing,
        source_done=source_done,
        schema=schema,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_dir)) if work_dir is None else work_dir
    work.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "memory_limit": memory_limit,
        "temp_directory": str(work / "spill"),
        "preserve_insertion_order": True,  # rowid must follow the line order
    }
    if threads is not None:
        config["threads"] = threads
    # The pivot needs a second read when it gives up: only a regular file can be read again
    # (or the caller, with pivot_only, provides the input again).
    pivot = pivot_only or (pivot and source.is_file())
    try:
        while True:
            try:
                return _convert_once(settings, config, pivot=pivot)
            except fast_path.NoPivotError as why:
                if pivot_only:
                    raise
                log.debug("convert_general_way", file=str(source), reason=str(why))
                pivot = False
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _convert_once(settings: Settings, config: dict[str, Any], *, pivot: bool) -> ConvertResult:
    """One try, on a connection of its own: the pivot (NoPivotError), or the general way."""
    mult = PRECISION_NS[settings.precision]
    now = time.time_ns()
    now -= now % mult  # the time of a point without one, truncated as parse() does
    con = duckdb.connect(":memory:", config=config)
    try:
        split = read_lines(
            con,
            settings.source,
            mult=mult,
            pivot_budget=fast_path.PIVOT_BUDGET if pivot else 0,
            growing=settings.growing,
            progress=settings.progress,
        )
        rejects = Rejects(
            con, settings.source, settings.rejected_dir, settings.destination.file_stem
        )
        if pivot:
            return fast_path.write_pivoted(con, split, settings, rejects)
        settings.done_reading()
        return _general_way(con, split, settings, rejects, mult=mult, now=now)
    finally:
        con.close()


def _general_way(
    con: duckdb.DuckDBPyConnection,
    split: Split,
    settings: Settings,
    rejects: Rejects,
    *,
    mult: int,
    now: int,
) -> ConvertResult:
    """The passes after the read: exact path, multi-field lines, collect, merge and write."""
    # From here on the order of rows no longer matters: every query orders explicitly.
    con.execute("SET preserve_insertion_order = false")
    exact = ExactPath(con, split, settings.precision, now, rejects)
    exact.walk()
    mitems = split_multi_field_lines(con, exact)
    segments = Segments.find(con, exact.headers, settings.default_database, settings.default_rp)
    collected = collect(con, split, segments, exact, mitems=mitems)
    groups = collected.groups
    check_layout(groups, settings.destination.layout, settings.source)
    series = Series(collected.bulk_series, exact.series)
    output = Output(
        con=con,
        source=settings.source,
        file_stem=settings.destination.file_stem,
        suffix=settings.destination.suffix,
        series=series,
        rejects=rejects,
        schema=settings.schema,
    )
    merge = Merge(
        con=con,
        split=split,
        segments=segments,
        series=series,
        mult=mult,
        mitems=mitems,
        rejects=rejects,
    )
    targets = settings.destination.targets(groups)
    # A group whose names cannot be directories is rejected, line by line.
    for ident in sorted(groups.keys() - targets.keys(), key=group_order):
        output.prepare(groups[ident]).tables(con)
        merge.reject(groups[ident], settings.destination.no_directory_reason())
    return output.write(
        groups, targets, merge.write, lines=exact.lines + collected.lines, pivoted=False
    )
