"""Quoting for the SQL we build: names, and string literals where DuckDB takes no parameter
(file names in COPY, ATTACH and table functions; values spliced into generated queries); and
the COPY options shared by the writers of measurement files."""

from __future__ import annotations

# COPY options for the Parquet files of measurements (the converter's, the importer's and the
# lake's copies). DuckDB dictionary-encodes a column of a row group until the dictionary
# passes this many entries; its own limit is higher, so timestamps and readings with ~10k
# distinct values a row group went into dictionaries that were larger than ZSTD over plain
# values, and slower to build. 4096, measured on three data sets (bench/RESULTS.md, 12-04):
# never a larger file, writes 10-20% faster. A lower limit halved one set's files but grew
# another's by 10% (readings with ~1-2k distinct values compress better as a dictionary).
PARQUET_MEASUREMENTS = "FORMAT parquet, COMPRESSION zstd, DICTIONARY_SIZE_LIMIT 4096"


def literal(text: str) -> str:
    """A SQL string literal (control characters through chr(), which literals cannot hold)."""
    parts: list[str] = []
    plain: list[str] = []
    for char in text:
        if ord(char) < 32 or char == "\x7f":
            if plain:
                parts.append("'" + "".join(plain).replace("'", "''") + "'")
                plain = []
            parts.append(f"chr({ord(char)})")
        else:
            plain.append(char)
    if plain or not parts:
        parts.append("'" + "".join(plain).replace("'", "''") + "'")
    return " || ".join(parts)


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
