"""Publishes headlined's Parquet files to Apache Iceberg tables (the `lake:` section)."""
