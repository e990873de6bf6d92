"""One schema per exported measurement, whatever the chunking (pure: no files, no DuckDB).

InfluxDB 1.x fixes a field's type per shard, so a field may be float in one shard and integer
in the next. Discovery reads every field's types from the TSM indexes (and the WAL) before
anything is exported; :func:`resolve` picks one column type per field, the same for every
file of the measurement; the converter casts the other types into it. docs/exporter.md says
what each conflict becomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from headlined.lineprotocol.grammar import TYPES

NUMBERS = frozenset(("float", "integer", "unsigned"))
# Integers beyond ±2**53 cannot all be held exactly by a double.
EXACT_IN_DOUBLE = 2**53


def resolve(kinds: Iterable[str]) -> str:
    """The one column type for a field seen with ``kinds`` (names from grammar.TYPES).

    One kind: itself. Only numbers: ``float`` (exact for integers within ±2**53; beyond, the
    nearest double). Any string or boolean among others: ``string``, exact for every value
    (integers and unsigned as digits, floats in their shortest round-trip form, booleans as
    ``true``/``false``).
    """
    seen = set(kinds)
    unknown = seen - set(TYPES)
    if unknown or not seen:
        raise ValueError(f"field types must be some of {', '.join(TYPES)}, not {sorted(seen)}")
    if len(seen) == 1:
        return seen.pop()
    if seen <= NUMBERS:
        return "float"
    return "string"


def may_round(kinds: Iterable[str], resolved: str) -> bool:
    """Whether values of ``kinds`` stored as ``resolved`` can lose digits (big integers as
    doubles)."""
    return resolved == "float" and bool(set(kinds) & {"integer", "unsigned"})


@dataclass(slots=True)
class MeasurementTypes:
    """What the indexes say of one measurement: its tag keys and each field's types."""

    tags: set[str] = field(default_factory=set)
    fields: dict[str, set[str]] = field(default_factory=dict)

    def add(self, other: MeasurementTypes) -> None:
        """Merge what another file (or the WAL) says of the same measurement."""
        self.tags |= other.tags
        for key, kinds in other.fields.items():
            self.fields.setdefault(key, set()).update(kinds)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form (sorted, so equal types give equal documents)."""
        return {
            "tags": sorted(self.tags),
            "fields": {key: sorted(kinds) for key, kinds in sorted(self.fields.items())},
        }

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> MeasurementTypes:
        """The inverse of :meth:`to_json`; TypeError/ValueError on a bad document."""
        tags = document.get("tags", [])
        fields = document.get("fields", {})
        if not isinstance(tags, list) or not isinstance(fields, dict):
            raise TypeError(f"bad measurement types: {document!r}")
        return cls(
            {str(t) for t in tags},
            {str(k): {str(kind) for kind in v} for k, v in fields.items()},
        )


@dataclass(frozen=True, slots=True)
class MeasurementSchema:
    """The columns every file of one measurement gets: all its tag keys, each field once with
    its resolved type. Given to the converter for each chunk."""

    tags: tuple[str, ...]
    fields: Mapping[str, str]  # field key -> resolved type (one of grammar.TYPES)

    @classmethod
    def of(cls, types: MeasurementTypes) -> MeasurementSchema:
        """The schema that ``types`` resolve to."""
        return cls(
            tuple(sorted(types.tags)),
            {key: resolve(kinds) for key, kinds in sorted(types.fields.items())},
        )


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field whose type differs between shards, and what it became."""

    measurement: str
    field: str
    kinds: tuple[str, ...]  # in grammar.TYPES order
    resolved: str
    may_round: bool


def conflicts(types: Mapping[str, MeasurementTypes]) -> list[Conflict]:
    """Every field of ``types`` (measurement -> types) seen with more than one type."""
    out = []
    for measurement, seen in sorted(types.items()):
        for key, kinds in sorted(seen.fields.items()):
            if len(kinds) > 1:
                resolved = resolve(kinds)
                out.append(
                    Conflict(
                        measurement,
                        key,
                        tuple(k for k in TYPES if k in kinds),
                        resolved,
                        may_round(kinds, resolved),
                    )
                )
    return out
