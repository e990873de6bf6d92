"""The rolling-window feeds: fetch, scan, detect gaps, schedule, journal, DuckDB, Parquet."""
