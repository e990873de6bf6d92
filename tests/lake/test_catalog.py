"""The catalog's commit onto a table held by its caller (headlined/lake/catalog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.schema import Schema
from pyiceberg.table.update import SetPropertiesUpdate
from pyiceberg.types import LongType, NestedField

from headlined.lake.catalog import HeadlinedCatalog, open_catalog

TABLE = ("site", "readings")


@pytest.fixture
def catalog(tmp_path: Path) -> HeadlinedCatalog:
    opened = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}", str(tmp_path / "warehouse"), None)
    assert isinstance(opened, HeadlinedCatalog)
    opened.create_namespace(TABLE[0])
    opened.create_table(TABLE, Schema(NestedField(1, "value", LongType(), required=False)))
    return opened


def test_a_commit_onto_the_current_table_moves_the_catalog_to_it(
    catalog: HeadlinedCatalog,
) -> None:
    held = catalog.load_table(TABLE)
    first = catalog.commit_onto(held, (), (SetPropertiesUpdate(updates={"a": "1"}),))
    held.metadata, held.metadata_location = first.metadata, first.metadata_location
    second = catalog.commit_onto(held, (), (SetPropertiesUpdate(updates={"b": "2"}),))

    loaded = catalog.load_table(TABLE)
    assert loaded.metadata_location == second.metadata_location
    assert loaded.properties["a"] == "1"
    assert loaded.properties["b"] == "2"


def test_a_commit_onto_a_table_another_writer_moved_fails_and_keeps_theirs(
    catalog: HeadlinedCatalog,
) -> None:
    stale = catalog.load_table(TABLE)
    theirs = catalog.load_table(TABLE)
    won = catalog.commit_onto(theirs, (), (SetPropertiesUpdate(updates={"theirs": "1"}),))

    # No requirement of its own catches it: the catalog's pointer moved under the held table.
    with pytest.raises(CommitFailedException):
        catalog.commit_onto(stale, (), (SetPropertiesUpdate(updates={"mine": "1"}),))

    loaded = catalog.load_table(TABLE)
    assert loaded.metadata_location == won.metadata_location
    assert loaded.properties.get("theirs") == "1"
    assert "mine" not in loaded.properties
    # Loading is loading again once the commit is over, not the table it was handed.
    assert catalog.load_table(TABLE) is not stale
