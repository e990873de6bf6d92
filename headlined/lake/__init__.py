"""Publishes headlined's Parquet files to Apache Iceberg tables (the `lake:` section)."""

from __future__ import annotations

import importlib.util


def missing_dependency() -> str | None:
    """Why ``lake:`` cannot work in this installation (pyiceberg absent), or None."""
    try:
        spec = importlib.util.find_spec("pyiceberg")
    except (ImportError, ValueError):  # a broken or blocked installation
        spec = None
    if spec is None:
        return (
            "lake: needs pyiceberg, which is not installed: pip install 'headlined[lake]' "
            "(the .deb has it), or remove the lake: section"
        )
    return None
