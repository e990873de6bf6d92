"""Quoting for generated SQL (headlined/sql.py), checked by DuckDB reading it back."""

from __future__ import annotations

import duckdb
from hypothesis import given
from hypothesis import strategies as st

from headlined import sql

CONN = duckdb.connect()  # one for every example: a connection costs more than a query


@given(st.text())
def test_a_literal_reads_back_as_the_text(text: str) -> None:
    assert CONN.execute(f"SELECT {sql.literal(text)}").fetchone() == (text,)


@given(st.text(min_size=1).filter(lambda t: "\x00" not in t))
def test_an_identifier_names_the_column(name: str) -> None:
    CONN.execute(f"SELECT 1 AS {sql.ident(name)}")
    assert CONN.description is not None
    assert CONN.description[0][0] == name
