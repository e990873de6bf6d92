"""SQL over raw field-value text ``v``: its type by shape, whether the parser would refuse it,
and its typed value, all built from headlined.lineprotocol.grammar; and typed values converted
into a field's column type (headlined.influx.schema.resolve says which)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from headlined import sql
from headlined.influx.schema import EXACT_IN_DOUBLE
from headlined.lineprotocol.grammar import (
    BOOLEANS,
    FLOAT,
    INT64_MAX,
    INTEGER,
    INTEGER_SUFFIX,
    STRING_QUOTE,
    TYPES,
    UINT64_MAX,
    UNSIGNED,
    UNSIGNED_SUFFIX,
    FieldValue,
)

TYPE_CODES = {name: code for code, name in enumerate(TYPES)}
SQL_TYPES = {
    "float": "DOUBLE",
    "integer": "BIGINT",
    "unsigned": "UBIGINT",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
}


def _in_list(values: Iterable[str]) -> str:
    return "(" + ", ".join(sql.literal(v) for v in values) + ")"


_TRUE = [spelling for spelling, value in BOOLEANS.items() if value]
_NUMBER_BODY = "substr(v, 1, strlen(v) - 1)"


def type_sql(v: str) -> str:
    """SQL: the type code of the raw value text `v` by its shape."""
    return (
        f"CASE WHEN starts_with({v}, {sql.literal(STRING_QUOTE)}) THEN {TYPE_CODES['string']} "
        f"WHEN {v} IN {_in_list(BOOLEANS)} THEN {TYPE_CODES['boolean']} "
        f"WHEN suffix({v}, {sql.literal(INTEGER_SUFFIX)}) THEN {TYPE_CODES['integer']} "
        f"WHEN suffix({v}, {sql.literal(UNSIGNED_SUFFIX)}) THEN {TYPE_CODES['unsigned']} "
        f"ELSE {TYPE_CODES['float']} END"
    )


TYPE_SQL = type_sql("v")


def _refused(pattern: str, in_range: str) -> str:
    """SQL: whether `v` breaks ``pattern`` or fails ``in_range``."""
    return f"NOT coalesce(regexp_full_match(v, {sql.literal(pattern)}) AND {in_range}, false)"


def _fits(sql_type: str, limit: int) -> str:
    """SQL: whether the number `v` spells before its suffix is at most ``limit``.

    Text no longer than the limit's digits (the suffix included) cannot reach it: the cast is
    needed only for longer text.
    """
    return f"(strlen(v) <= {len(str(limit))} OR TRY_CAST({_NUMBER_BODY} AS {sql_type}) IS NOT NULL)"


# Whether `v`, of type code `ty`, is a value the parser refuses.
BAD_SQL = (
    f"CASE ty WHEN {TYPE_CODES['float']} THEN "
    f"{_refused(FLOAT, 'isfinite(TRY_CAST(v AS DOUBLE))')} "
    f"WHEN {TYPE_CODES['integer']} THEN {_refused(INTEGER, _fits('BIGINT', INT64_MAX))} "
    f"WHEN {TYPE_CODES['unsigned']} THEN {_refused(UNSIGNED, _fits('UBIGINT', UINT64_MAX))} "
    "ELSE false END"
)


def value_sql(kind: str, v: str) -> str:
    """SQL turning raw value text `v` (validated to be of type `kind`) into its typed value."""
    body = f"substr({v}, 1, strlen({v}) - 1)"
    if kind == "float":
        return f"CAST({v} AS DOUBLE)"
    if kind == "integer":
        return f"CAST({body} AS BIGINT)"
    if kind == "unsigned":
        return f"CAST({body} AS UBIGINT)"
    if kind == "boolean":
        return f"{v} IN {_in_list(_TRUE)}"
    # A string: inside the quotes only \" and \\ are escapes.
    inner = f"substr({v}, 2, length({v}) - 2)"
    return (
        f"(CASE WHEN contains({inner}, '\\') THEN "
        f"regexp_replace({inner}, '\\\\([\"\\\\])', '\\1', 'g') ELSE {inner} END)"
    )


def cast_sql(kind: str, to: str, x: str) -> str:
    """SQL turning `x`, a typed value of type ``kind``, into column type ``to``.

    Only what headlined.influx.schema.resolve() can ask for: integers and unsigned into
    DOUBLE (the nearest double), anything into VARCHAR (integers as their digits, booleans as
    ``true``/``false``, doubles as DuckDB prints them, which reads back as the same double).
    """
    if kind == to:
        return x
    if to == "string" or (to == "float" and kind in ("integer", "unsigned")):
        return f"CAST({x} AS {SQL_TYPES[to]})"
    raise ValueError(f"a {kind} value cannot be written as {to}")


def column_sql(kinds: Sequence[str], to: str, v: str) -> str:
    """SQL turning raw value text `v`, of one of ``kinds``, into column type ``to``."""
    if len(kinds) == 1:
        return cast_sql(kinds[0], to, value_sql(kinds[0], v))
    cases = " ".join(
        f"WHEN {TYPE_CODES[kind]} THEN {cast_sql(kind, to, value_sql(kind, v))}" for kind in kinds
    )
    return f"CASE {type_sql(v)} {cases} END"


def lost_sql(kind: str, x: str) -> str:
    """SQL: whether `x`, an integer or unsigned value, is not exactly a double (beyond 2**53)."""
    # HUGEINT holds every double that an integer or unsigned rounds to, 2**63 and 2**64 too.
    outside = f"{x} > {EXACT_IN_DOUBLE}"
    if kind == "integer":
        outside = f"{x} NOT BETWEEN {-EXACT_IN_DOUBLE} AND {EXACT_IN_DOUBLE}"
    return f"({outside} AND CAST(CAST({x} AS DOUBLE) AS HUGEINT) <> {x})"


def text_lost_sql(kinds: Sequence[str], v: str) -> str:
    """SQL: whether raw value text `v`, of one of ``kinds`` (integer or unsigned among them),
    is an integer or unsigned value that is not exactly a double."""
    cases = " ".join(
        f"WHEN {TYPE_CODES[kind]} THEN {lost_sql(kind, value_sql(kind, v))}"
        for kind in kinds
        if kind in ("integer", "unsigned")
    )
    return f"CASE {type_sql(v)} {cases} ELSE false END"


def value_text(value: FieldValue, kind: str) -> str:
    """A parsed value back in the raw text form that value_sql reads."""
    if kind == "string":
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "integer":
        return f"{value}i"
    if kind == "unsigned":
        return f"{value}u"
    return repr(float(value))  # the shortest text that reads back as the same double
