"""What one conversion is asked to do, and what it gives back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from headlined.influx.convert.groups import GroupId
from headlined.influx.convert.paths import Destination
from headlined.influx.schema import MeasurementSchema


class ConvertError(ValueError):
    """The conversion cannot be done as asked (bad arguments, or input it cannot place)."""


@dataclass(frozen=True)
class ConvertResult:
    """What one conversion read and wrote."""

    lines: int  # data lines seen (not comments/headers/blank)
    points: int  # rows written (after merging field-per-line into points)
    rejected: int
    files: list[Path]  # final Parquet files written
    measurements: dict[GroupId, int]  # (db, rp, measurement) -> rows
    pivoted: bool = False  # whether the fast path (the pivot) wrote it
    # (db, rp, measurement) -> {field: type written}, for fields whose values did not fit the
    # type the given schema said (data written after the schema was read).
    widened: dict[GroupId, dict[str, str]] = field(default_factory=dict)
    # ((db, rp, measurement), field) -> integer or unsigned values written into a float column
    # that lost digits (beyond 2**53); nonzero counts only.
    rounded: dict[tuple[GroupId, str], int] = field(default_factory=dict)
    # (db, rp, measurement) -> the names of its file's tag columns (the other columns after
    # `time` are fields): a Parquet schema alone cannot tell a tag from a string field.
    tag_columns: dict[GroupId, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """The arguments of one convert() call, checked."""

    source: Path
    destination: Destination
    precision: str
    default_database: str | None
    default_rp: str | None
    rejected_dir: Path
    progress: Callable[[int], None] | None
    growing: Callable[[], bool] | None
    source_done: Callable[[], None] | None
    schema: Mapping[str, MeasurementSchema]  # measurement -> the columns its files must have

    def done_reading(self) -> None:
        """Tell the caller that the source will not be read again."""
        if self.source_done is not None:
            self.source_done()
