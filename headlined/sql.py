"""Quoting for the SQL we build: names, and string literals where DuckDB takes no parameter
(file names in COPY, ATTACH and table functions; values spliced into generated queries)."""

from __future__ import annotations


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
