"""What an input of ``headlined import`` is, and what its points become (pure: no files).

Two layouts are known (docs/import.md):

- **raw**: a ``raw_line`` VARCHAR column holding one line-protocol line per row, plus one
  timestamp column (an integer of nanoseconds, or a TIMESTAMP of any precision): what a
  script gets by reading ``influx_inspect export`` output with DuckDB and writing Parquet.
- **influx_tools**: what ``influx_tools export-parquet`` (InfluxDB 1.11+) writes, one file per
  measurement and shard: ``time`` (TIMESTAMP(NANOS), no zone), one string column per tag key,
  one typed column per field, and the file's key-value metadata naming the ``measurement``,
  its ``tags`` and ``fields`` (comma-joined).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headlined import sql
from headlined.influx.schema import resolve

RAW_COLUMN = "raw_line"
# A raw file's timestamp column, when it has several candidates: the first of these names.
TIME_NAMES = ("time", "timestamp", "ts")
# DuckDB's name of each Parquet column type a field can have, and back (headlined's kinds are
# those of headlined.lineprotocol.grammar.TYPES).
KIND_OF_TYPE = {
    "DOUBLE": "float",
    "BIGINT": "integer",
    "UBIGINT": "unsigned",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
}
TYPE_OF_KIND = {kind: type_ for type_, kind in KIND_OF_TYPE.items()}
INTEGER_TYPES = ("BIGINT", "INTEGER", "UBIGINT", "HUGEINT")
# Nanoseconds per unit of each timestamp type: a raw line's own time is checked against its
# timestamp column to that precision.
TIMESTAMP_UNITS = {
    "TIMESTAMP_NS": 1,
    "TIMESTAMP WITH TIME ZONE": 1000,
    "TIMESTAMP": 1000,
    "TIMESTAMPTZ_NS": 1,
    "TIMESTAMP_MS": 1_000_000,
    "TIMESTAMP_S": 1_000_000_000,
}
TOOLS_TIME_TYPES = ("TIMESTAMP_NS", "TIMESTAMPTZ_NS")
IMPORT_PREFIX = "import-"
METADATA_KEY = "headlined.import"


class ImportInputError(ValueError):
    """An input file is of neither layout; the message names the file and what it lacks."""


@dataclass(frozen=True, slots=True)
class RawInput:
    """A raw-layout file: its ``raw_line`` column and timestamp column."""

    path: Path
    time_column: str
    time_type: str  # DuckDB's type name

    @property
    def unit_ns(self) -> int:
        """Nanoseconds per unit of the timestamp column (integers are taken as nanoseconds)."""
        return TIMESTAMP_UNITS.get(self.time_type, 1)

    def time_ns_sql(self) -> str:
        """SQL: the timestamp column as nanoseconds since the epoch (BIGINT)."""
        column = sql.ident(self.time_column)
        if self.time_type in TIMESTAMP_UNITS:
            return f"epoch_ns({column})"
        return f"{column}::BIGINT"


@dataclass(frozen=True, slots=True)
class ToolsInput:
    """An ``influx_tools export-parquet`` file: its measurement, tag and field columns."""

    path: Path
    measurement: str
    tags: tuple[str, ...]
    fields: Mapping[str, str]  # column -> kind
    retention: str | None  # the retention policy its metadata names


Input = RawInput | ToolsInput


def classify(path: Path, columns: Sequence[tuple[str, str]], metadata: Mapping[str, str]) -> Input:
    """The layout of the Parquet file ``path``, from its ``columns`` ((name, DuckDB type), in
    order) and key-value ``metadata``; ImportInputError says what is missing."""
    names = [name for name, _ in columns]
    if RAW_COLUMN in names:
        return _raw(path, columns)
    if "time" in names and "measurement" in metadata:
        return _tools(path, columns, metadata)
    have = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise ImportInputError(
        f"{path}: neither layout: no {RAW_COLUMN!r} column (raw line protocol) and not "
        f"influx_tools export-parquet output (a 'time' column and key-value metadata "
        f"'measurement', 'tags', 'fields'); its columns: {have or 'none'}"
    )


def _raw(path: Path, columns: Sequence[tuple[str, str]]) -> RawInput:
    types = dict(columns)
    if types[RAW_COLUMN] != "VARCHAR":
        raise ImportInputError(
            f"{path}: column {RAW_COLUMN!r} is {types[RAW_COLUMN]}, not VARCHAR (text)"
        )
    candidates = [
        (name, type_)
        for name, type_ in columns
        if name != RAW_COLUMN and (type_ in TIMESTAMP_UNITS or type_ in INTEGER_TYPES)
    ]
    if len(candidates) > 1:
        by_name = {name.casefold(): (name, type_) for name, type_ in candidates}
        chosen = next((by_name[n] for n in TIME_NAMES if n in by_name), None)
        if chosen is None:
            raise ImportInputError(
                f"{path}: several columns could be the timestamp "
                f"({', '.join(n for n, _ in candidates)}); name it one of {', '.join(TIME_NAMES)}"
            )
        candidates = [chosen]
    if not candidates:
        raise ImportInputError(
            f"{path}: a {RAW_COLUMN!r} column but no timestamp column beside it (an integer "
            "of nanoseconds or a TIMESTAMP)"
        )
    name, type_ = candidates[0]
    return RawInput(path, name, type_)


def _tools(
    path: Path, columns: Sequence[tuple[str, str]], metadata: Mapping[str, str]
) -> ToolsInput:
    missing = [key for key in ("tags", "fields") if key not in metadata]
    if missing:
        raise ImportInputError(
            f"{path}: influx_tools key-value metadata lacks {', '.join(map(repr, missing))}"
        )
    types = dict(columns)
    if types["time"] not in TOOLS_TIME_TYPES:
        raise ImportInputError(
            f"{path}: column 'time' is {types['time']}, not a TIMESTAMP of nanoseconds"
        )
    rest = [name for name, _ in columns if name != "time"]
    tags = tag_prefix(rest, metadata["tags"])
    if tags is None:
        raise ImportInputError(
            f"{path}: the tag keys its metadata names ({metadata['tags']!r}) are not its "
            "first columns after 'time'"
        )
    fields: dict[str, str] = {}
    for name in rest[len(tags) :]:
        kind = KIND_OF_TYPE.get(types[name])
        if kind is None:
            raise ImportInputError(
                f"{path}: field column {name!r} is {types[name]}, not one of "
                f"{', '.join(KIND_OF_TYPE)}"
            )
        fields[name] = kind
    odd = [name for name in tags if types[name] != "VARCHAR"]
    if odd:
        raise ImportInputError(f"{path}: tag column {odd[0]!r} is {types[odd[0]]}, not VARCHAR")
    if not fields:
        raise ImportInputError(f"{path}: no field columns")
    return ToolsInput(
        path, metadata["measurement"], tuple(tags), fields, metadata.get("retention") or None
    )


def tag_prefix(columns: Sequence[str], joined: str) -> list[str] | None:
    """The tag columns: the first columns whose names, comma-joined, are ``joined`` (the
    ``tags`` metadata; a tag key may itself hold a comma), or None when none are."""
    if joined == "":
        return []
    for count in range(1, len(columns) + 1):
        if ",".join(columns[:count]) == joined:
            return list(columns[:count])
    return None


def content_digest(digests: Iterable[str]) -> str:
    """The import's name part: from the inputs' content digests, in command-line order (which
    decides which input wins a point), so the same import gets the same name."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]


def file_name(digest: str) -> str:
    """The Parquet file an import writes in each measurement folder."""
    return f"{IMPORT_PREFIX}{digest}.parquet"


@dataclass(frozen=True)
class Part:
    """One input's points of one measurement, as SQL giving ``time`` (TIMESTAMPTZ_NS), its tag
    columns and its typed field columns."""

    select: str
    tags: tuple[str, ...]
    fields: Mapping[str, str]  # column -> kind


@dataclass(frozen=True)
class Plan:
    """The columns of a measurement's import file: tags, then fields with their one type."""

    tags: tuple[str, ...]
    fields: dict[str, str] = field(default_factory=dict)  # column -> kind
    widened: dict[str, str] = field(default_factory=dict)  # column -> kind, over the exported

    def select(self, part: Part) -> str:
        """SQL: ``part``'s rows with every column of the plan, cast to its type."""
        columns = ['"time"'] + [
            sql.ident(tag) if tag in part.tags else f"NULL::VARCHAR AS {sql.ident(tag)}"
            for tag in self.tags
        ]
        for name, kind in self.fields.items():
            type_ = TYPE_OF_KIND[kind]
            value = sql.ident(name) if name in part.fields else "NULL"
            columns.append(f"CAST({value} AS {type_}) AS {sql.ident(name)}")
        return f"SELECT {', '.join(columns)} FROM ({part.select})"


def plan(parts: Sequence[Part], existing: Mapping[str, str]) -> Plan:
    """One schema for the parts of a measurement that fits its files already in place.

    ``existing``: column -> DuckDB type of those files. A field's type is
    :func:`headlined.influx.schema.resolve` of its kinds in the parts and in the files in
    place, so the measurement's view (``union_by_name``) reads one type; where that is not
    the type the files in place have, ``widened`` says so (the view then reads theirs as it).
    """
    tags = sorted({tag for part in parts for tag in part.tags})
    kinds: dict[str, set[str]] = {}
    for part in parts:
        for name, kind in part.fields.items():
            kinds.setdefault(name, set()).add(kind)
    fields: dict[str, str] = {}
    widened: dict[str, str] = {}
    for name in sorted(kinds):
        there = KIND_OF_TYPE.get(existing.get(name, ""))
        fields[name] = resolve(kinds[name] | ({there} if there else set()))
        if there and fields[name] != there:
            widened[name] = fields[name]
    return Plan(tuple(tags), fields, widened)
