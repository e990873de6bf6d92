"""headlined: keeps rolling-window JSON feeds and InfluxDB 1.x history in DuckDB and Parquet."""

__version__ = "0.1.0"
