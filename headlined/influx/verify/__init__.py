"""``headlined verify``: count points per series per day in the Parquet mirror and in InfluxDB
itself (over its HTTP API), and list every difference.

- :mod:`.compare`: the pure part: windows, days, the comparison, chunk states, the report.
- :mod:`.parquet`: the Parquet side's counts (DuckDB, one measurement and window at a time).
- :mod:`.influxql`: InfluxDB's counts (``SELECT count(*) … GROUP BY *, time(1d)``, streamed).
- :mod:`.command`: the command: the plan, the progress bar, the output, the exit code.

docs/verify.md says what is compared and why.
"""
